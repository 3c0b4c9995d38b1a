"""ReverseSequence, CenterCropPad, Det, GridSample; and Compress, NonZero and Unique,
whose output shapes depend on values: those values must be known at import time
(symfuse's shapes are static), else the op is refused as a dynamic output shape."""
from __future__ import annotations

import itertools
import math

import numpy as np

from ...frontend import api as F
from ...frontend import nn_api as NN
from ..errors import OnnxNeedsConstant
from ..registry import converter


def _axis(n, a: int, ndim: int) -> int:
    if not -ndim <= a < ndim:
        n.fail(f"axis {a} is out of range for rank {ndim}")
    return a % ndim


def _known(n, i: int, what: str) -> np.ndarray:
    """Input ``i``, which fixes the output's shape, at import time."""
    try:
        return n.static(i)
    except OnnxNeedsConstant as e:
        if not e.name:
            n.unsupported(f"a run-time {what} (the output's shape depends on its values)", "dynamic output shape")
        # symfuse's shapes are static: the graph input it comes from is fixed at import time
        raise OnnxNeedsConstant(f"{n.where}: the output's shape depends on the values of its {what}, so {e}",
                                e.name) from None


# ---------------------------------------------------------------- ReverseSequence
@converter("ReverseSequence", since=10)
def reverse_sequence(n):
    x, lens = n.value(0), F.cast(n.value(1), "int64")
    batch_axis, time_axis = n.attr("batch_axis", 1), n.attr("time_axis", 0)
    if x.ndim < 2 or {batch_axis, time_axis} != {0, 1} or lens.shape != (x.shape[batch_axis],):
        n.fail(f"batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1, sequence_lens {lens.type} "
               f"one length per batch entry of {x.type}")
    rows = F.transpose(x, [batch_axis, time_axis] + list(range(2, x.ndim)))         # (B, T, ...)
    b, t = rows.shape[:2]
    step = F.constant(np.arange(t, dtype=np.int64)[None, :])
    length = F.reshape(lens, (b, 1))
    source = F.where(step < length, length - 1 - step, step)                          # (B, T)
    flat = source + F.constant(np.arange(b, dtype=np.int64)[:, None] * t)
    y = F.reshape(NN.take(F.reshape(rows, (b * t,) + rows.shape[2:]), flat, 0), rows.shape)
    return F.transpose(y, [batch_axis, time_axis] + list(range(2, x.ndim)))


# ---------------------------------------------------------------- CenterCropPad
@converter("CenterCropPad", since=18)
def center_crop_pad(n):
    x, shape = n.value(0), n.ints(1)
    axes = n.attr("axes")
    axes = list(range(x.ndim)) if axes is None else [_axis(n, a, x.ndim) for a in axes]
    if len(shape) != len(axes) or len(set(axes)) != len(axes) or min(shape, default=0) < 0:
        n.fail(f"shape {shape} must give one non-negative size for each of the axes {axes}")
    crop = [slice(None)] * x.ndim
    lo, hi = [0] * x.ndim, [0] * x.ndim
    for a, want in zip(axes, shape):
        have = x.shape[a]
        if want < have:
            start = (have - want) // 2
            crop[a] = slice(start, start + want)
        elif want > have:
            lo[a] = (want - have) // 2
            hi[a] = want - have - lo[a]
    return F.pad_general(F.getitem(x, tuple(crop)), lo, hi)


# ---------------------------------------------------------------- Det
DET_MAX_SIZE = 4      # Leibniz's formula has n! terms


def _permutation_sign(p) -> int:
    inversions = sum(1 for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] > p[j])
    return -1 if inversions % 2 else 1


@converter("Det", since=11)
def det(n):
    x = n.value(0)
    if not x.dtype.is_float or x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        n.fail(f"input {x.type} must be floating point square matrices (..., n, n)")
    size = x.shape[-1]
    if size > DET_MAX_SIZE:
        n.unsupported(f"a {size}x{size} determinant (up to {DET_MAX_SIZE}x{DET_MAX_SIZE})",
                      f"Det: larger than {DET_MAX_SIZE}x{DET_MAX_SIZE}")
    if size == 0:
        return F.ones(x.shape[:-2], x.dtype)
    wide = F.cast(x, "float64")
    entry = lambda i, j: F.getitem(wide, (Ellipsis, i, j))  # noqa: E731
    total = None
    for p in itertools.permutations(range(size)):
        term = entry(0, p[0])
        for i in range(1, size):
            term = term * entry(i, p[i])
        term = term if _permutation_sign(p) > 0 else -term
        total = term if total is None else total + term
    return F.cast(total, x.dtype)


# ---------------------------------------------------------------- Compress, NonZero, Unique
@converter("Compress", since=11)
def compress(n):
    x = n.value(0)
    keep = np.flatnonzero(_known(n, 1, "condition").reshape(-1).astype(bool))
    axis = n.attr("axis")
    if axis is None:
        x, axis = F.reshape(x, (-1,)), 0
    axis = _axis(n, axis, x.ndim)
    if keep.size and keep[-1] >= x.shape[axis]:
        n.fail(f"condition selects index {int(keep[-1])} beyond axis {axis} of size {x.shape[axis]}")
    return NN.take(x, F.constant(keep.astype(np.int64)), axis)


@converter("NonZero", since=9)
def nonzero(n):
    x = _known(n, 0, "input")
    if x.ndim == 0:
        return F.constant(np.zeros((0, int(np.count_nonzero(x))), np.int64))
    return F.constant(np.vstack(np.nonzero(x)).astype(np.int64))


def _unique(x: np.ndarray, axis, sorted_: bool):
    y, first, inverse, counts = np.unique(x, True, True, True, axis=axis)
    if not sorted_:
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        first, counts, inverse = first[order], counts[order], rank[inverse.reshape(-1)]
        y = np.take(x if axis is not None else x.reshape(-1), first, axis=axis or 0)
    return y, first, inverse.reshape(-1), counts


@converter("Unique", since=11)
def unique(n):
    x = _known(n, 0, "input")
    axis = n.attr("axis")
    if axis is not None:
        axis = _axis(n, axis, x.ndim)
    y, first, inverse, counts = _unique(x, axis, bool(n.attr("sorted", 1)))
    return [F.constant(y)] + [F.constant(np.asarray(v, np.int64)) for v in (first, inverse, counts)]


# ---------------------------------------------------------------- GridSample
MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic", "bicubic": "cubic"}
PADDINGS = ("zeros", "border", "reflection")
CUBIC_A = -0.75


def _reflect(v, lo: float, hi: float):
    """v folded back into [lo, hi] by reflections at the borders."""
    span = hi - lo
    below, above = v < lo, v > hi
    if span <= 0:
        return F.where(below | above, F.full((), lo, v.dtype), v)
    dx = F.where(below, lo - v, v - hi)
    k = F.floor(dx / span)
    r = dx - k * span
    even = F.equal(k - 2.0 * F.floor(k * 0.5), 0.0)
    folded_below = F.where(even, lo + r, hi - r)
    folded_above = F.where(even, hi - r, lo + r)
    return F.where(below, folded_below, F.where(above, folded_above, v))


def _cubic_weights(t):
    """Keys' cubic convolution weights of the taps at -1, 0, 1, 2 from the fraction t."""
    a = CUBIC_A
    near = lambda d: ((a + 2) * d - (a + 3)) * d * d + 1          # noqa: E731
    far = lambda d: ((a * d - 5 * a) * d + 8 * a) * d - 4 * a     # noqa: E731
    return [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]


def _pixel(i, size: int, lo: float, hi: float, padding: str):
    """A tap's integer index (float) as the index it reads, and whether it reads data (zeros padding)."""
    if padding == "border":
        return F.clip(i, 0.0, float(size - 1)), None
    if padding == "reflection":
        return F.floor(F.maximum(_reflect(i, lo, hi), 0.0)), None
    inside = (i >= 0.0) & (i <= float(size - 1))
    return F.clip(i, 0.0, float(size - 1)), inside


def _axis_taps(c, size: int, mode: str, padding: str, align: bool):
    """[(index, weight or None, inside or None)] of one spatial axis, from coordinates c."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    if mode == "nearest":
        c = F.round(c)
    outside = (c < lo) | (c > hi)
    if padding == "border":
        c = F.where(outside, F.clip(c, 0.0, float(size - 1)), c)
    elif padding == "reflection":
        c = _reflect(c, lo, hi)
    if mode == "nearest":
        trunc = F.where(c < 0.0, F.ceil(c), F.floor(c))
        return [_pixel(trunc, size, lo, hi, padding) + (None,)]
    base = F.floor(c)
    t = c - base
    if mode == "linear":
        offsets, weights = (0, 1), [1.0 - t, t]
    else:
        offsets, weights = (-1, 0, 1, 2), _cubic_weights(t)
    return [_pixel(base + float(o), size, lo, hi, padding) + (w,) for o, w in zip(offsets, weights)]


def _denormalize(g, size: int, align: bool):
    return (g + 1.0) / 2.0 * float(size - 1) if align else ((g + 1.0) * float(size) - 1.0) / 2.0


@converter("GridSample", since=16)
def grid_sample(n):
    x, grid = n.value(0), n.value(1)
    dims = x.ndim - 2
    if dims < 1 or grid.ndim != x.ndim or grid.shape[0] != x.shape[0] or grid.shape[-1] != dims:
        n.fail(f"X {x.type} (N, C, spatial...) and grid {grid.type} (N, out..., {dims}) do not fit")
    if not x.dtype.is_float or not grid.dtype.is_float:
        n.fail(f"X {x.type} and grid {grid.type} must be floating point")
    mode, padding = MODES.get(n.attr("mode", "linear")), n.attr("padding_mode", "zeros")
    if mode is None or padding not in PADDINGS:
        n.fail(f"mode {n.attr('mode')!r} or padding_mode {padding!r} is not one ONNX defines")
    align = bool(n.attr("align_corners", 0))
    batch, channels, sizes = x.shape[0], x.shape[1], x.shape[2:]
    out = grid.shape[1:-1]
    taps = []
    for i, size in enumerate(sizes):           # the grid lists coordinates innermost axis first
        c = _denormalize(F.getitem(grid, (Ellipsis, dims - 1 - i)), size, align)
        taps.append(_axis_taps(c, size, mode, padding, align))
    strides = [math.prod(sizes[i + 1:]) for i in range(dims)]
    pixels = math.prod(sizes)
    rows = F.reshape(F.transpose(x, [0] + list(range(2, x.ndim)) + [1]), (batch * pixels, channels))
    first = F.constant((np.arange(batch, dtype=np.int64) * pixels).reshape((batch,) + (1,) * len(out)))
    total = None
    for combo in itertools.product(*taps):
        flat = first
        inside = weight = None
        for (index, ok, w), stride in zip(combo, strides):
            flat = flat + F.cast(index, "int64") * stride
            inside = ok if inside is None else inside if ok is None else inside & ok
            weight = w if weight is None else weight * w
        part = NN.take(rows, flat, 0)                                  # (N, out..., C)
        if inside is not None:
            part = F.where(F.expand_dims(inside, -1), part, F.zeros((), x.dtype))
        if weight is not None:
            part = part * F.expand_dims(F.cast(weight, x.dtype), -1)
        total = part if total is None else total + part
    return F.transpose(total, [0, x.ndim - 1] + list(range(1, x.ndim - 1)))
