"""Reverse-mode differentiation of IR values: the cotangents of ``wrt`` given the
cotangents of some outputs, built as ordinary IR with the ops' VJPs. The
differentiate pass uses it for ``grad`` ops, and control-flow VJPs use it on their
region bodies (so a gradient through a loop is again IR, differentiable again)."""
from __future__ import annotations

from typing import Sequence

from ..errors import GradError
from . import build as F
from .core import Op, Value, location, toposort


def backprop(outputs: Sequence[Value], cotangents: Sequence[Value], wrt: Sequence[Value],
             loc=None) -> list[Value]:
    """d(sum_i <outputs[i], cotangents[i]>)/d(wrt): one Value per ``wrt`` (zeros where
    no path leads from it to an output)."""
    ops = toposort(list(outputs), allow_free=True)
    active: set[int] = {id(w) for w in wrt}
    path: list[Op] = []
    for op in ops:
        if any(id(v) in active for v in op.inputs):
            path.append(op)
            for o in op.outputs:
                active.add(id(o))
    cts: dict[int, Value] = {}
    for o, c in zip(outputs, cotangents):
        prev = cts.get(id(o))
        cts[id(o)] = c if prev is None else prev + c
    for op in reversed(path):
        out_cts = [cts.get(id(o)) for o in op.outputs]
        if all(c is None for c in out_cts) or op.opdef.vjp is None:
            continue  # no cotangent flows here, or a piecewise-constant op: zero gradient
        with location(op.loc):
            # an op with regions takes None for a result no cotangent reaches (a loop then
            # skips that output's backward work); other ops get zeros
            if len(out_cts) > 1 and not op.regions and any(c is None for c in out_cts):
                out_cts = [c if c is not None else F.zeros_like(o) for c, o in zip(out_cts, op.outputs)]
            in_cts = op.opdef.vjp(op, out_cts)
            for v, g in zip(op.inputs, in_cts):
                if g is None or id(v) not in active or not v.dtype.is_float:
                    continue
                if g.type is not v.type:
                    raise GradError(f"internal: VJP of {op.opdef.name} produced {g.type} for operand {v.type}")
                prev = cts.get(id(v))
                cts[id(v)] = g if prev is None else prev + g
    out = []
    for w in wrt:
        g = cts.get(id(w))
        if g is None:
            with location(loc):
                g = F.zeros_like(w)
        out.append(g)
    return out
