"""Reference interpreter: evaluates a Function op by op with the numpy references.

This is the semantics every pass and backend must match."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SymfuseError
from ..ir.core import Function, format_loc
from .backend import Backend, Program


def evaluate(fn: Function, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    env: dict[int, np.ndarray] = {id(p): a for p, a in zip(fn.params, args)}
    with np.errstate(all="ignore"):
        for op in fn.ops:
            try:
                out = op.opdef.ref([env[id(v)] for v in op.inputs], op.attrs)
            except SymfuseError:
                raise
            except Exception as e:  # a reference failing is a bug or bad data: say which op
                where = format_loc(op.loc)
                raise SymfuseError(f"interpreter: {op.opdef.name} failed: {e}"
                                   + (f" (at {where})" if where else "")) from e
            if len(op.outputs) == 1:
                out = (out,)
            for v, a in zip(op.outputs, out):
                a = np.asarray(a)
                if a.dtype != v.type.dtype.np or a.shape != v.type.shape:
                    a = np.asarray(a, dtype=v.type.dtype.np).reshape(v.type.shape)
                env[id(v)] = a
    return [env[id(r)] for r in fn.results]


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
