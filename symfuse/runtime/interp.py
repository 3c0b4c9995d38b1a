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
        # a constant's value is the op's own attribute array: the caller owns its results
        # and may write into them, so those are handed out as copies
        self._constant = [r.op is not None and r.op.opdef.name == "constant" for r in fn.results]

    def __call__(self, arrays):
        out = evaluate(self.function, arrays)
        return [np.array(v, copy=True) if c else v for v, c in zip(out, self._constant)]


class InterpBackend(Backend):
    """``device="interp"``: no compilation, numpy at run time."""

    name = "interp"

    def compile(self, fn: Function, options: dict, report) -> InterpProgram:
        return InterpProgram(fn)
