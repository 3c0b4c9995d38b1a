"""Algebraic rewrites, continued (policy: ``algebraic.py``): shape ops (views
of views, identities) and reductions."""
from __future__ import annotations

import numpy as np

from ...ir import build as F
from ...ir.core import apply
from .algebraic_common import FAST, REDUCTIONS, SIMPLIFY, fit, int_dtype, out_type
from .rewrite import rewrite


# --------------------------------------------------------------------------- shape ops
@rewrite("transpose_identity", "transpose", tags=SIMPLIFY)
def transpose_identity(op, ctx):
    """``transpose(x, identity perm) -> x``. Exact."""
    if tuple(op.attrs["perm"]) == tuple(range(op.inputs[0].ndim)):
        return op.inputs[0]
    return None


@rewrite("transpose_transpose", "transpose", tags=SIMPLIFY)
def transpose_transpose(op, ctx):
    """``transpose(transpose(x, p), q) -> transpose(x, p[q])`` (or x). Exact."""
    p = ctx.producer(op.inputs[0], "transpose")
    if p is None:
        return None
    p1, p2 = p.attrs["perm"], op.attrs["perm"]
    return F.transpose(p.inputs[0], tuple(p1[j] for j in p2))


@rewrite("reshape_identity", "reshape", tags=SIMPLIFY)
def reshape_identity(op, ctx):
    """``reshape(x, shape(x)) -> x``. Exact."""
    x = op.inputs[0]
    return x if x.type is out_type(op) else None


@rewrite("reshape_reshape", "reshape", tags=SIMPLIFY)
def reshape_reshape(op, ctx):
    """``reshape(reshape(x, s1), s2) -> reshape(x, s2)`` (or x). Exact."""
    p = ctx.producer(op.inputs[0], "reshape")
    return F.reshape(p.inputs[0], out_type(op).shape) if p is not None else None


@rewrite("reshape_of_broadcast_scalar", "reshape", tags=SIMPLIFY)
def reshape_of_broadcast_scalar(op, ctx):
    """``reshape(broadcast_to(x, S), S2) -> broadcast_to(reshape(x, ()), S2)`` when x
    has one element: every element is that one value, so only the shape matters
    (the reshape of a constant folds, and elementwise users absorb the broadcast).
    Exact."""
    p = ctx.producer(op.inputs[0], "broadcast_to")
    if p is None or p.inputs[0].size != 1:
        return None
    return F.broadcast_to(F.reshape(p.inputs[0], ()), out_type(op).shape)


@rewrite("broadcast_identity", "broadcast_to", tags=SIMPLIFY)
def broadcast_identity(op, ctx):
    """``broadcast_to(x, shape(x)) -> x``. Exact."""
    x = op.inputs[0]
    return x if x.type is out_type(op) else None


@rewrite("broadcast_broadcast", "broadcast_to", tags=SIMPLIFY)
def broadcast_broadcast(op, ctx):
    """``broadcast_to(broadcast_to(x, s1), s2) -> broadcast_to(x, s2)``. Exact."""
    p = ctx.producer(op.inputs[0], "broadcast_to")
    return F.broadcast_to(p.inputs[0], out_type(op).shape) if p is not None else None


@rewrite("slice_full", "slice", tags=SIMPLIFY)
def slice_full(op, ctx):
    """A slice from 0 that keeps every element -> its operand. Exact."""
    x = op.inputs[0]
    if x.type is out_type(op) and not any(op.attrs["start"]):
        return x
    return None


@rewrite("slice_slice", "slice", tags=SIMPLIFY)
def slice_slice(op, ctx):
    """``x[b1:e1:s1][b2:e2:s2] -> x[b1+b2*s1 : ... : s1*s2]`` (one slice). Exact."""
    p = ctx.producer(op.inputs[0], "slice")
    if p is None:
        return None
    x = p.inputs[0]
    start, stop, step = [], [], []
    for b1, s1, b2, s2, n in zip(p.attrs["start"], p.attrs["step"], op.attrs["start"],
                                 op.attrs["step"], out_type(op).shape):
        b, s = b1 + b2 * s1, s1 * s2
        start.append(b if n else 0)
        step.append(s if n else 1)
        stop.append(b + (n - 1) * s + 1 if n else 0)
    return F.slice_general(x, start, stop, step)


@rewrite("flip_flip", "flip", tags=SIMPLIFY)
def flip_flip(op, ctx):
    """``flip(flip(x, A), B) -> flip(x, A xor B)`` (or x). Exact."""
    p = ctx.producer(op.inputs[0], "flip")
    if p is None:
        return None
    axes = sorted(set(p.attrs["axes"]) ^ set(op.attrs["axes"]))
    return F.flip(p.inputs[0], axes) if axes else p.inputs[0]


@rewrite("flip_trivial", "flip", tags=SIMPLIFY)
def flip_trivial(op, ctx):
    """A flip over no axes, or only over axes of extent <= 1 -> its operand. Exact."""
    x = op.inputs[0]
    if all(x.shape[a] <= 1 for a in op.attrs["axes"]):
        return x
    return None


@rewrite("concat_single", "concatenate", tags=SIMPLIFY)
def concat_single(op, ctx):
    """``concatenate([x]) -> x``. Exact."""
    return op.inputs[0] if len(op.inputs) == 1 else None


# --------------------------------------------------------------------------- reductions
@rewrite("reduce_empty_axes", REDUCTIONS, tags=SIMPLIFY)
def reduce_empty_axes(op, ctx):
    """A sum/prod/max/min over no axes -> its operand. Exact."""
    return op.inputs[0] if not op.attrs["axis"] else None


@rewrite("reduce_unit_axes", REDUCTIONS, tags=SIMPLIFY)
def reduce_unit_axes(op, ctx):
    """A reduction over axes of extent 1 only -> a reshape (one element per group).
    Exact (a sum of one ``-0.0`` gives ``+0.0``: the sign-of-zero convention)."""
    x = op.inputs[0]
    axes = op.attrs["axis"]
    if not axes or any(x.shape[a] != 1 for a in axes):
        return None
    return F.reshape(x, out_type(op).shape)


@rewrite("sum_of_neg", "sum", tags=SIMPLIFY)
def sum_of_neg(op, ctx):
    """``sum(-x) -> -sum(x)``: one negation of the (smaller) result. Exact: rounding
    is symmetric in sign and the summation order is unchanged (up to the sign of a
    zero sum)."""
    p = ctx.producer(op.inputs[0], "neg")
    if p is None:
        return None
    return F.negative(apply("sum", [p.inputs[0]], dict(op.attrs)))


@rewrite("max_of_neg", ("max", "min"), tags=SIMPLIFY)
def max_of_neg(op, ctx):
    """``max(-x) -> -min(x)`` and ``min(-x) -> -max(x)``. Exact (NaN propagates in
    both)."""
    p = ctx.producer(op.inputs[0], "neg")
    if p is None:
        return None
    other = "min" if op.opdef.name == "max" else "max"
    return F.negative(apply(other, [p.inputs[0]], dict(op.attrs)))


def _sum_of_broadcast(op, ctx):
    """sum(broadcast_to(x, S), A) with A only over broadcast axes -> count * x, reshaped
    and broadcast to the result."""
    p = ctx.producer(op.inputs[0], "broadcast_to")
    if p is None:
        return None
    x = p.inputs[0]
    S = p.outputs[0].shape
    axes = op.attrs["axis"]
    padded = (1,) * (len(S) - x.ndim) + x.shape
    if not axes or any(padded[a] != 1 for a in axes):
        return None
    count = 1
    for a in axes:
        count *= S[a]
    if type(count) is not int:      # a run-time count stays the sum that counts it (build.size_value)
        return None
    keep = op.attrs["keepdims"]
    small = [1 if a in axes else d for a, d in enumerate(padded)] if keep else \
            [d for a, d in enumerate(padded) if a not in axes]
    y = F.reshape(x, small)
    if count != 1:
        dt = x.dtype.np
        y = F.multiply(y, F.constant(np.array(count, dtype=np.int64).astype(dt)))
    return fit(y, op)


@rewrite("sum_of_broadcast", "sum", tags=SIMPLIFY)
def sum_of_broadcast(op, ctx):
    """Integer dtypes: ``sum(broadcast_to(x, S), A) -> x * n`` when every summed axis
    was created by the broadcast (n = number of copies). Exact, also on wrap-around."""
    if not int_dtype(op):
        return None
    return _sum_of_broadcast(op, ctx)


@rewrite("sum_of_broadcast_float", "sum", tags=FAST)
def sum_of_broadcast_float(op, ctx):
    """fast_math, float dtypes: ``sum(broadcast_to(x, S), A) -> x * n`` as
    ``sum_of_broadcast``. Not bit-exact: n additions round differently from one
    multiply, and ``inf * 0`` (an empty sum) is NaN."""
    if not out_type(op).dtype.is_float:
        return None
    return _sum_of_broadcast(op, ctx)
