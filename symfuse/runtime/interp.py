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

    def __call__(self, arrays):
        # a constant's value is the op's own attribute array, also when a loop passes it
        # through unchanged (evaluate makes it read-only): the caller owns its results
        # and may write into them, so those are handed out as copies
        return [v if v.flags.writeable else np.array(v, copy=True) for v in evaluate(self.function, arrays)]


class InterpBackend(Backend):
    """``device="interp"``: no compilation, numpy at run time."""

    name = "interp"

    def compile(self, fn: Function, options: dict, report) -> InterpProgram:
        return InterpProgram(fn)
