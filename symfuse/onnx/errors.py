"""Errors of the ONNX importer and exporter (all :class:`symfuse.errors.InputError`s):
each names the file, and where a node is at fault, the node and its op."""
from __future__ import annotations

from ..errors import InputError, SymfuseError


class OnnxError(InputError):
    """An ONNX model could not be read, checked or converted: a truncated or malformed
    file, an opset outside the supported range, a shape that disagrees with the model,
    external data outside the model's directory, or a node whose attributes or inputs
    break the ONNX specification."""


class OnnxUnsupported(OnnxError):
    """The model uses something symfuse does not convert: an op, an opset of an op, an
    attribute value or a dtype. ``op_type`` and ``reason`` say which; the conformance
    report groups by ``reason``."""

    def __init__(self, message: str, op_type: str = "", reason: str = ""):
        super().__init__(message)
        self.op_type, self.reason = op_type, reason or message


class OnnxNeedsConstant(OnnxError):
    """A node needs an input's value at import time (a shape, an axis list, a pad
    width) and the model computes it from a graph input: pass the input's value with
    ``load(..., constants={name: array})``. ``name`` is the graph input."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


class OnnxMissingDependency(SymfuseError, ImportError):
    """The ``onnx`` package is not installed; the message gives the pip command."""
