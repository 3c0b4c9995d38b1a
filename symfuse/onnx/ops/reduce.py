"""Reductions (Reduce*), ArgMax/ArgMin, CumSum/CumProd and TopK."""
from __future__ import annotations

import math

import numpy as np

from ...frontend import api as F
from ...frontend import nn_api as NN
from ..registry import converter


def _through_f64(fn):
    """For integer data: compute in float64, then truncate back as ONNX's references do."""
    def f(x, axes, keep):
        if x.dtype.is_float:
            return fn(x, axes, keep)
        return F.cast(fn(F.cast(x, "float64"), axes, keep), x.dtype)
    return f


def _extreme(fn):
    def f(x, axes, keep):
        if x.dtype.is_bool:     # False < True
            return F.cast(fn(F.cast(x, "int32"), axes, keep), "bool")
        return fn(x, axes, keep)
    return f


# op type: (f(x, axes, keepdims), the value of a reduction over no elements)
REDUCTIONS = {
    "ReduceSum": (F.sum, 0),
    "ReduceMean": (_through_f64(F.mean), math.nan),
    "ReduceMax": (_extreme(F.max), -math.inf),
    "ReduceMin": (_extreme(F.min), math.inf),
    "ReduceProd": (F.prod, 1),
    "ReduceL1": (lambda x, axes, keep: F.sum(F.abs(x), axes, keep), 0),
    "ReduceL2": (_through_f64(lambda x, axes, keep: F.sqrt(F.sum(x * x, axes, keep))), 0),
    "ReduceSumSquare": (lambda x, axes, keep: F.sum(x * x, axes, keep), 0),
    "ReduceLogSum": (lambda x, axes, keep: F.log(F.sum(x, axes, keep)), -math.inf),
    "ReduceLogSumExp": (lambda x, axes, keep: NN.logsumexp(x, axes, keep), -math.inf),
}
# the opset from which axes are an input rather than an attribute
AXES_INPUT_SINCE = {"ReduceSum": 13}


def _norm_axes(n, axes, ndim):
    out = []
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            n.fail(f"axis {a} is out of range for rank {ndim}")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def _empty_fill(value, dtype):
    if dtype.is_float or not math.isinf(value):
        return value
    info = np.iinfo(dtype.np) if dtype.is_int else None
    if info is None:                      # bool max/min of nothing: False / True
        return value > 0
    return info.max if value > 0 else info.min


@converter(*REDUCTIONS, since=1)
def _reduce(n):
    fn, empty = REDUCTIONS[n.op_type]
    x = n.value(0)
    keep = bool(n.attr("keepdims", 1))
    if n.opset >= AXES_INPUT_SINCE.get(n.op_type, 18):
        axes = n.ints(1)
    else:
        axes = n.attr("axes")
    if not axes:
        if n.attr("noop_with_empty_axes", 0):
            return x
        axes = range(x.ndim)
    axes = _norm_axes(n, axes, x.ndim)
    if x.ndim == 0:
        return fn(x, None, keep) if n.op_type != "ReduceLogSumExp" else x
    if any(x.shape[a] == 0 for a in axes):
        shape = [1 if i in axes else s for i, s in enumerate(x.shape) if keep or i not in axes]
        return F.full(shape, _empty_fill(empty, x.dtype), x.dtype)
    return fn(x, axes, keep)


# ---------------------------------------------------------------- ArgMax, ArgMin
@converter("ArgMax", "ArgMin", since=1)
def _arg(n):
    x = n.value(0)
    axis = _norm_axes(n, [n.attr("axis", 0)], x.ndim)[0]
    keep = bool(n.attr("keepdims", 1))
    fn = F.argmax if n.op_type == "ArgMax" else F.argmin
    if n.attr("select_last_index", 0):
        i = fn(F.flip(x, axis), axis, keep)
        return F.cast(F.full(i.shape, x.shape[axis] - 1, i.dtype) - i, "int64")
    return F.cast(fn(x, axis, keep), "int64")


# ---------------------------------------------------------------- CumSum, CumProd
def _shift(x, axis, by, fill):
    """x moved ``by`` places along ``axis`` towards its end, ``fill`` coming in."""
    lo = [0] * x.ndim
    lo[axis] = by
    padded = F.pad_general(x, lo, [0] * x.ndim, None, fill)
    return F.slice_general(padded, [0] * x.ndim, x.shape, [1] * x.ndim)


SCANS = {"CumSum": (F.add, 0), "CumProd": (F.multiply, 1)}


@converter(*SCANS, since=11)
def _cumulative(n):
    combine, identity = SCANS[n.op_type]
    x = n.value(0)
    axis_in = n.static(1).reshape(-1)
    if axis_in.size != 1:
        n.fail(f"axis must be a scalar, got {axis_in.size} values")
    axis = _norm_axes(n, [int(axis_in[0])], x.ndim)[0]
    if n.attr("reverse", 0):
        x = F.flip(x, axis)
    if n.attr("exclusive", 0) and x.shape[axis]:
        x = _shift(x, axis, 1, identity)
    # Hillis-Steele: after the round with step s, each element combines the 2s before it
    step = 1
    while step < x.shape[axis]:
        x = combine(x, _shift(x, axis, step, identity))
        step *= 2
    return F.flip(x, axis) if n.attr("reverse", 0) else x


# ---------------------------------------------------------------- TopK
def _worst(dtype, largest):
    if dtype.is_float:
        return -math.inf if largest else math.inf
    info = np.iinfo(dtype.np)
    return info.min if largest else info.max


@converter("TopK", since=11)
def _topk(n):
    x = n.value(0)
    k_in = n.static(1).reshape(-1)
    if k_in.size != 1:
        n.fail(f"K must hold one value, got {k_in.size}")
    axis = _norm_axes(n, [n.attr("axis", -1)], x.ndim)[0]
    k, size = int(k_in[0]), x.shape[axis]
    if not 0 <= k <= size:
        n.fail(f"K = {k} is outside [0, {size}] (the size of axis {axis})")
    largest = bool(n.attr("largest", 1))
    perm = [i for i in range(x.ndim) if i != axis] + [axis]
    xt = F.transpose(x, perm)
    if k == 0:
        shape = xt.shape[:-1] + (0,)
        vals, idxs = F.zeros(shape, x.dtype), F.zeros(shape, "int64")
    elif k <= TOPK_ROUNDS_UP_TO or x.size * size > TOPK_RANK_ELEMENTS:
        vals, idxs = _top_rounds(xt, k, largest)
    else:
        vals, idxs = _top_by_rank(xt, k, largest)
    back = list(np.argsort(perm))
    return F.transpose(vals, back), F.transpose(idxs, back)


# a few rounds of max-and-mask are cheapest; for larger k, ranking every element against
# every other is a fixed handful of ops, while its (..., n, n) comparison stays small
TOPK_ROUNDS_UP_TO = 4
TOPK_RANK_ELEMENTS = 1 << 24


def _top_by_rank(xt, k, largest):
    """Each element's place in the sorted order (how many elements go before it: the
    better ones, and equal ones at a lower index), then the first k places."""
    size = xt.shape[-1]
    mine, other = F.expand_dims(xt, -1), F.expand_dims(xt, -2)
    position = np.arange(size, dtype=np.int64)
    lower = F.constant(position[None, :] < position[:, None])      # [i, j]: j < i
    better = F.greater(other, mine) if largest else F.less(other, mine)
    before = better | (F.equal(other, mine) & lower)
    rank = F.sum(F.cast(before, "int64"), -1)                        # (..., n)
    at = F.equal(F.expand_dims(rank, -2), F.constant(np.arange(k, dtype=np.int64)[:, None]))   # (..., k, n)
    idxs = F.sum(F.where(at, F.constant(position), F.constant(np.int64(0))), -1)
    vals = F.sum(F.where(at, F.expand_dims(xt, -2), F.zeros((), xt.dtype)), -1)
    return vals, idxs


def _top_rounds(xt, k, largest):
    """k rounds of: the best value not yet taken, and the first position holding it
    (ties go to the lower index, as ONNX asks), sorted best first."""
    pick = F.max if largest else F.min
    position = F.constant(np.arange(xt.shape[-1], dtype=np.int64))
    worst = F.full(xt.shape, _worst(xt.dtype, largest), xt.dtype)
    taken = F.zeros(xt.shape, "bool")
    vals, idxs = [], []
    for _ in range(k):
        best = pick(F.where(taken, worst, xt), -1, True)
        hit = F.equal(xt, best) & ~taken
        i = F.cast(F.argmax(F.cast(hit, "int32"), -1, True), "int64")
        taken = taken | F.equal(position, i)
        vals.append(best)
        idxs.append(i)
    return F.concatenate(vals, -1), F.concatenate(idxs, -1)
