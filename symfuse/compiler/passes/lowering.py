"""The lowering database (PyTensor's SequenceDB): whole-function passes that
only some targets run, each registered with a name, a position and tags. A
backend names the tags it wants (``Backend.lower_passes``); the pipeline
(``compiler/pipeline.lower``) runs every pass carrying one of them in order of
position, after the portable passes and before fusion. What lands here changes
results within a target's own rounding (BLAS fusing ``alpha * acc + C``), so it
stays out of the portable passes and the interpreter, the oracle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Lowering:
    name: str                # also the report stage it runs in
    fn: Callable             # fn(function, counts) -> function; counts gets the rewrites that fired
    position: float
    tags: frozenset


class LoweringDB:
    def __init__(self):
        self.passes: dict[str, Lowering] = {}

    def register(self, name: str, position: float, tags=()):
        def deco(fn):
            if name in self.passes:
                raise ValueError(f"lowering {name!r} registered twice")
            self.passes[name] = Lowering(name, fn, position, frozenset(tags or (name,)))
            return fn
        return deco

    def query(self, tags) -> list[Lowering]:
        """The passes carrying any of ``tags``, in order of position."""
        want = set(tags)
        return sorted((p for p in self.passes.values() if p.tags & want), key=lambda p: (p.position, p.name))


LOWERINGS = LoweringDB()
lowering = LOWERINGS.register
