"""Reference interpreter: evaluates a Function op by op with the numpy references.

This is the semantics every pass and backend must match."""
from __future__ import annotations

import numpy as np

from ..ir.core import Function
from ..ir.evaluate import evaluate  # noqa: F401  (the interpreter's semantics)
from .backend import Backend, Program


class InterpProgram(Program):
    def __init__(self, fn: Function):
        self.function = fn

    def __call__(self, arrays, sizes=None):
        # a constant's value is the op's own attribute array, also when a loop passes it
        # through unchanged (evaluate makes it read-only): the caller owns its results
        # and may write into them, so those are handed out as copies
        return [v if v.flags.writeable else np.array(v, copy=True) for v in evaluate(self.function, arrays, sizes)]


class InterpBackend(Backend):
    """``device="interp"``: no compilation, numpy at run time."""

    name = "interp"
    runtime_sizes = True

    def compile(self, fn: Function, options: dict, report, sizes=None) -> InterpProgram:
        return InterpProgram(fn)
