"""The table of ONNX op converters: one entry per ONNX op type, registered next to
its conversion rule in ``ops_*.py`` with ``@converter("Relu")``.

A converter is ``fn(node) -> Value | sequence of Values`` where ``node`` is a
:class:`symfuse.onnx.importer.Node` (attributes, inputs as symfuse values or as
import-time constants, the opset in force). ``since`` is the first opset of the
default domain whose semantics the rule implements; a model whose opset is older is
refused by name for that op."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Converter:
    op_type: str
    fn: Callable
    since: int = 1
    domain: str = ""


CONVERTERS: dict[tuple[str, str], Converter] = {}


def converter(*op_types: str, since: int = 1, domain: str = ""):
    def register(fn):
        for op_type in op_types:
            key = (domain, op_type)
            if key in CONVERTERS:
                raise ValueError(f"ONNX op {op_type!r} already has a converter")
            CONVERTERS[key] = Converter(op_type, fn, since, domain)
        return fn
    return register


def lookup(domain: str, op_type: str) -> Converter | None:
    if domain == "ai.onnx":
        domain = ""
    _load_rules()
    return CONVERTERS.get((domain, op_type))


_LOADED = []


def _load_rules():
    if not _LOADED:
        _LOADED.append(True)
        from . import ops  # noqa: F401  (registers every converter)
