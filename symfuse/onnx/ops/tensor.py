"""Shape, layout and indexing ops. Shapes, axes, pads, repeats and counts are import-time
constants (``Node.static``); data may be computed at run time. Gathers compose a flat
index with integer arithmetic and one ``take``; scatters need static indices, which
become a static write map."""
from __future__ import annotations

import math

import numpy as np

from ...frontend import api as F
from ...frontend import nn_api as NN
from ...ir.symdim import SymInt
from ...ir.types import DTYPES
from ..importer import symfuse_dtype
from ..registry import converter

_SYMFUSE_NP = {d.np for d in DTYPES.values()}


def _axis(n, a: int, ndim: int) -> int:
    if not -ndim <= a < ndim:
        n.fail(f"axis {a} is out of range for rank {ndim}")
    return a % ndim


def _literal(n, arr: np.ndarray, what: str):
    arr = np.asarray(arr)
    if arr.dtype not in _SYMFUSE_NP:
        n.unsupported(f"{what} of dtype {arr.dtype}", f"{n.op_type}: dtype {arr.dtype}")
    return F.constant(arr)


# ---------------------------------------------------------------- constants
@converter("Constant", since=1)
def _constant(n):
    a = n.attrs
    if "value" in a:
        return _literal(n, a["value"], "value")
    if "value_float" in a:
        return F.constant(np.float32(a["value_float"]))
    if "value_floats" in a:
        return F.constant(np.asarray(a["value_floats"], np.float32))
    if "value_int" in a:
        return F.constant(np.int64(a["value_int"]))
    if "value_ints" in a:
        return F.constant(np.asarray(a["value_ints"], np.int64))
    if a:
        n.unsupported(f"attribute {next(iter(a))!r}")
    n.fail("needs one value attribute")


@converter("ConstantOfShape", since=9)
def _constant_of_shape(n):
    value = n.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    if value.size != 1:
        n.fail(f"value must hold one element, got {value.size}")
    shape = n.ints(0)
    return _literal(n, np.full(shape, value.reshape(()), value.dtype), "value")


@converter("Range", since=11)
def _range(n):
    start, limit, delta = (n.static(i).reshape(()) for i in range(3))
    if delta == 0:
        n.fail("delta must not be 0")
    count = max(int(math.ceil((limit - start) / delta)), 0)
    return _literal(n, (start + np.arange(count) * delta).astype(start.dtype), "start")


@converter("Shape", since=1)
def _shape(n):
    shape = n.value(0).shape
    r = len(shape)
    start, end = n.attr("start", 0), n.attr("end", r)
    clamp = lambda a: min(max(a + r if a < 0 else a, 0), r)  # noqa: E731
    dims = shape[clamp(start):clamp(end)]
    sized = [repr(d) for d in dims if type(d) is SymInt]
    if sized:       # the importer reads shapes at import time: a run-time size has no value then
        n.unsupported(f"the shape of an input whose size {sized[0]!r} is chosen at run time (shapes= gave it a "
                      f"name); give {sized[0]!r} a number", reason="Shape of a run-time size")
    return F.constant(np.asarray(dims, np.int64))


@converter("Size", since=1)
def _size(n):
    size = n.value(0).size
    if type(size) is SymInt:
        n.unsupported(f"the size of an input whose size {size!r} is chosen at run time; give it a number",
                      reason="Size of a run-time size")
    return F.constant(np.int64(size))


@converter("EyeLike", since=9)
def _eye_like(n):
    x = n.value(0)
    if x.ndim != 2:
        n.fail(f"input must be 2-D, got {x.type}")
    code = n.attr("dtype")
    dtype = symfuse_dtype(code, f"{n.where}: dtype") if code is not None else x.dtype.name
    return F.constant(np.eye(*x.shape, k=n.attr("k", 0), dtype=np.dtype(dtype)))


# ---------------------------------------------------------------- reshaping
@converter("Reshape", since=5)
def _reshape(n):
    x, shape = n.value(0), n.ints(1)
    if not n.attr("allowzero", 0):
        shape = [x.shape[i] if s == 0 and i < x.ndim else s for i, s in enumerate(shape)]
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        n.fail(f"shape {shape} has more than one -1 or a negative size")
    return F.reshape(x, shape)


@converter("Flatten", since=1)
def _flatten(n):
    x = n.value(0)
    axis = n.attr("axis", 1)
    if not -x.ndim <= axis <= x.ndim:
        n.fail(f"axis {axis} is out of range for rank {x.ndim}")
    axis = axis + x.ndim if axis < 0 else axis
    return F.reshape(x, [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])])


def _axes_arg(n, i: int):
    """Axes from input ``i`` (opset 13 on) or the ``axes`` attribute (before)."""
    return n.ints(i) if n.opset >= 13 else n.attr("axes")


@converter("Squeeze", since=1)
def _squeeze(n):
    x = n.value(0)
    axes = _axes_arg(n, 1)
    if axes is None:
        return F.squeeze(x)
    axes = [_axis(n, a, x.ndim) for a in axes]
    if any(x.shape[a] != 1 for a in axes):
        n.fail(f"axes {axes} of {x.type} are not all of size 1")
    return F.squeeze(x, axes)


@converter("Unsqueeze", since=1)
def _unsqueeze(n):
    x = n.value(0)
    axes = _axes_arg(n, 1)
    if not axes:
        n.fail("axes are required")
    nd = x.ndim + len(axes)
    axes = sorted(_axis(n, a, nd) for a in axes)
    if len(set(axes)) != len(axes):
        n.fail(f"axes {axes} repeat an axis")
    return F.expand_dims(x, axes)


@converter("Transpose", since=1)
def _transpose(n):
    x = n.value(0)
    perm = n.attr("perm")
    if perm is not None and sorted(perm) != list(range(x.ndim)):
        n.fail(f"perm {perm} is not a permutation of the {x.ndim} axes")
    return F.transpose(x, perm)


@converter("Expand", since=8)
def _expand(n):
    x, shape = n.value(0), n.ints(1)
    try:
        out = np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        n.fail(f"{x.type} does not broadcast with shape {shape}")
    return F.broadcast_to(x, out)


@converter("Tile", since=6)
def _tile(n):
    x, reps = n.value(0), n.ints(1)
    if len(reps) != x.ndim or min(reps, default=0) < 0:
        n.fail(f"repeats {reps} must be {x.ndim} non-negative counts")
    # (d0, d1) -> (1, d0, 1, d1) -> (r0, d0, r1, d1) -> (r0*d0, r1*d1)
    inter = [v for d in x.shape for v in (1, d)]
    wide = [v for r, d in zip(reps, x.shape) for v in (r, d)]
    y = F.broadcast_to(F.reshape(x, inter), wide)
    return F.reshape(y, [r * d for r, d in zip(reps, x.shape)])


@converter("Concat", since=4)
def _concat(n):
    xs = n.values(0)
    if not xs:
        n.fail("needs at least one input")
    axis = _axis(n, n.attr("axis", 0), xs[0].ndim)
    return F.concatenate(xs, axis)


def _split_sizes(n, dim: int) -> list[int]:
    if n.has(1):
        return n.ints(1)
    if n.opset >= 18:
        num = n.attr("num_outputs")
        if num is None:
            n.fail("needs the split input or the num_outputs attribute")
        chunk = -(-dim // num)
        return [min(chunk, max(dim - k * chunk, 0)) for k in range(num)]
    if dim % n.n_outputs:
        n.fail(f"axis of size {dim} does not split into {n.n_outputs} equal parts")
    return [dim // n.n_outputs] * n.n_outputs


@converter("Split", since=2)
def _split(n):
    x = n.value(0)
    axis = _axis(n, n.attr("axis", 0), x.ndim)
    sizes = _split_sizes(n, x.shape[axis])
    if sum(sizes) != x.shape[axis] or len(sizes) != n.n_outputs or min(sizes, default=0) < 0:
        n.fail(f"split sizes {sizes} do not cut axis {axis} of size {x.shape[axis]} into {n.n_outputs} outputs")
    outs, off = [], 0
    for s in sizes:
        start, stop = [0] * x.ndim, list(x.shape)
        start[axis], stop[axis] = off, off + s
        outs.append(F.slice_general(x, start, stop, [1] * x.ndim))
        off += s
    return outs


@converter("Slice", since=10)
def _slice(n):
    x = n.value(0)
    starts, ends = n.ints(1), n.ints(2)
    axes = n.ints(3) if n.has(3) else list(range(len(starts)))
    steps = n.ints(4) if n.has(4) else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        n.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    index = [slice(None)] * x.ndim
    for b, e, a, s in zip(starts, ends, axes, steps):
        if s == 0:
            n.fail("a step is 0")
        index[_axis(n, a, x.ndim)] = slice(b, e, s)     # Python's clamping is ONNX's
    return F.getitem(x, tuple(index))


# ---------------------------------------------------------------- layout
@converter("DepthToSpace", since=13)
def _depth_to_space(n):
    x, b = n.value(0), n.attr("blocksize")
    if x.ndim != 4 or not b or x.shape[1] % (b * b):
        n.fail(f"needs an NCHW input whose channels divide by blocksize**2, got {x.type}, blocksize {b}")
    N, C, H, W = x.shape
    c = C // (b * b)
    if n.attr("mode", "DCR") == "DCR":
        y = F.transpose(F.reshape(x, [N, b, b, c, H, W]), [0, 3, 4, 1, 5, 2])
    elif n.attr("mode") == "CRD":
        y = F.transpose(F.reshape(x, [N, c, b, b, H, W]), [0, 1, 4, 2, 5, 3])
    else:
        n.fail(f"mode must be DCR or CRD, got {n.attr('mode')!r}")
    return F.reshape(y, [N, c, H * b, W * b])


@converter("SpaceToDepth", since=13)
def _space_to_depth(n):
    x, b = n.value(0), n.attr("blocksize")
    if x.ndim != 4 or not b or x.shape[2] % b or x.shape[3] % b:
        n.fail(f"needs an NCHW input whose height and width divide by blocksize, got {x.type}, blocksize {b}")
    N, C, H, W = x.shape
    perm = {"DCR": [0, 3, 5, 1, 2, 4], "CRD": [0, 1, 3, 5, 2, 4]}.get(n.attr("mode", "DCR"))
    if perm is None:
        n.fail(f"mode must be DCR or CRD, got {n.attr('mode')!r}")
    y = F.transpose(F.reshape(x, [N, C, H // b, b, W // b, b]), perm)
    return F.reshape(y, [N, C * b * b, H // b, W // b])


@converter("Trilu", since=14)
def _trilu(n):
    x = n.value(0)
    k = int(n.static(1).reshape(-1)[0]) if n.has(1) else 0
    if x.ndim < 2:
        n.fail(f"input must have rank >= 2, got {x.type}")
    ones = np.ones(x.shape[-2:], bool)
    keep = np.triu(ones, k) if n.attr("upper", 1) else np.tril(ones, k)
    return F.where(F.constant(keep), x, F.zeros_like(x))


# ---------------------------------------------------------------- Pad
def _pad_edges(x, axis, lo, hi, mode):
    """reflect / edge / wrap along one axis, from slices of x."""
    d = x.shape[axis]

    def part(start, stop, flip=False):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, stop)
        p = F.getitem(x, tuple(idx))
        return F.flip(p, axis) if flip else p

    def edge(at, count):
        shape = list(x.shape)
        shape[axis] = count
        return F.broadcast_to(part(at, at + 1), shape)

    pieces = {
        "reflect": (lambda: part(1, lo + 1, True), lambda: part(d - 1 - hi, d - 1, True)),
        "edge": (lambda: edge(0, lo), lambda: edge(d - 1, hi)),
        "wrap": (lambda: part(d - lo, d), lambda: part(0, hi)),
    }[mode]
    return F.concatenate(([pieces[0]()] if lo else []) + [x] + ([pieces[1]()] if hi else []), axis)


@converter("Pad", since=11)
def _pad(n):
    x, mode = n.value(0), n.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        n.fail(f"mode must be constant, reflect, edge or wrap, got {mode!r}")
    pads = n.ints(1)
    axes = [_axis(n, a, x.ndim) for a in n.ints(3)] if n.has(3) else list(range(x.ndim))
    if len(pads) != 2 * len(axes):
        n.fail(f"pads {pads} must hold 2 values for each of the {len(axes)} axes")
    lo, hi = [0] * x.ndim, [0] * x.ndim
    for k, a in enumerate(axes):
        lo[a], hi[a] = pads[k], pads[k + len(axes)]
    # negative pads crop
    crop = tuple(slice(max(-l, 0), d - max(-h, 0)) for l, h, d in zip(lo, hi, x.shape))
    x = F.getitem(x, crop)
    lo, hi = [max(v, 0) for v in lo], [max(v, 0) for v in hi]
    if mode == "constant":
        return _pad_constant(n, x, lo, hi)
    for a in range(x.ndim):
        if lo[a] or hi[a]:
            limit = x.shape[a] - (1 if mode == "reflect" else 0)
            if x.shape[a] == 0 or max(lo[a], hi[a]) > limit and mode != "edge":
                n.unsupported(f"{mode} padding of {max(lo[a], hi[a])} on an axis of size {x.shape[a]}",
                              f"Pad: {mode} wider than the input")
            x = _pad_edges(x, a, lo[a], hi[a], mode)
    return x


def _pad_constant(n, x, lo, hi):
    if not n.has(2):
        return F.pad_general(x, lo, hi)
    if n.is_static(2):
        return F.pad_general(x, lo, hi, None, n.static(2).reshape(-1)[0].item())
    inside = F.pad_general(F.ones_like(x, "bool"), lo, hi, None, False)
    return F.where(inside, F.pad_general(x, lo, hi), F.reshape(n.value(2), ()))


# ---------------------------------------------------------------- gathers
def _index64(v, size):
    """Integer indices as int64 with negatives counted from the end."""
    i = F.cast(v, "int64")
    return F.where(i < 0, i + size, i)


@converter("Gather", since=1)
def _gather(n):
    x = n.value(0)
    axis = _axis(n, n.attr("axis", 0), x.ndim)
    if n.is_static(1) and n.static(1).ndim == 0:
        i = int(n.static(1))
        if not -x.shape[axis] <= i < x.shape[axis]:
            n.fail(f"index {i} is out of range for axis {axis} of size {x.shape[axis]}")
        return F.getitem(x, (slice(None),) * axis + (i,))
    return NN.take(x, n.value(1), axis)


def _strides(shape):
    return [math.prod(shape[k + 1:]) for k in range(len(shape))]


@converter("GatherElements", since=11)
def _gather_elements(n):
    x, idx = n.value(0), n.value(1)
    axis = _axis(n, n.attr("axis", 0), x.ndim)
    if idx.ndim != x.ndim:
        n.fail(f"indices {idx.type} must have the rank of data {x.type}")
    strides = _strides(x.shape)
    flat = _index64(idx, x.shape[axis]) * strides[axis]
    grid = np.indices(idx.shape, dtype=np.int64)
    offset = sum(grid[d] * strides[d] for d in range(x.ndim) if d != axis)
    if x.ndim > 1:
        flat = flat + F.constant(np.asarray(offset, np.int64))
    return NN.take(F.reshape(x, [-1]), flat, 0)


@converter("GatherND", since=11)
def _gather_nd(n):
    x, idx = n.value(0), n.value(1)
    bd = n.attr("batch_dims", 0)
    k = idx.shape[-1] if idx.ndim else 0
    if idx.ndim < 1 or k < 1 or bd + k > x.ndim or x.shape[:bd] != idx.shape[:bd]:
        n.fail(f"indices {idx.type} do not index data {x.type} with batch_dims {bd}")
    dims, rest = x.shape[bd:bd + k], x.shape[bd + k:]
    block = math.prod(dims)
    i = _index64(idx, F.constant(np.asarray(dims, np.int64)))
    flat = F.sum(i * F.constant(np.asarray(_strides(dims), np.int64)), -1)
    if bd:
        batch = np.arange(math.prod(x.shape[:bd]), dtype=np.int64).reshape(x.shape[:bd]) * block
        flat = flat + F.constant(batch.reshape(batch.shape + (1,) * (flat.ndim - bd)))
    return NN.take(F.reshape(x, [math.prod(x.shape[:bd]) * block] + list(rest)), flat, 0)


@converter("OneHot", since=11)
def _one_hot(n):
    idx, values = n.value(0), n.value(2)
    depth = int(n.static(1).reshape(-1)[0])
    if depth < 1 or values.size != 2:
        n.fail(f"depth {depth} must be >= 1 and values [off, on] must hold 2 elements")
    axis = _axis(n, n.attr("axis", -1), idx.ndim + 1)
    hot = NN.one_hot(_index64(idx, depth), depth, "bool")
    v = F.reshape(values, [2])
    y = F.where(hot, F.getitem(v, 1), F.getitem(v, 0))
    return F.transpose(y, list(range(axis)) + [idx.ndim] + list(range(axis, idx.ndim)))


# ---------------------------------------------------------------- scatters (static indices)
SCATTER_COMBINE = {"none": lambda old, new: new, "add": F.add, "mul": F.multiply,
                   "max": F.maximum, "min": F.minimum}


def _scatter(n, data, updates, targets: np.ndarray):
    """data with ``updates`` (in row-major order) written at the flat positions
    ``targets``; repeated targets combine in update order (the r-th write of each
    position goes in round r)."""
    how = n.attr("reduction", "none")
    if how not in SCATTER_COMBINE:
        n.fail(f"reduction must be one of {', '.join(SCATTER_COMBINE)}, got {how!r}")
    if targets.size and (targets.min() < 0 or targets.max() >= data.size):
        n.fail("an index is out of range")
    order = np.argsort(targets, kind="stable")
    sorted_t = targets[order]
    first = np.searchsorted(sorted_t, sorted_t, side="left")
    rank = np.arange(targets.size) - first
    out, upd = F.reshape(data, [-1]), F.reshape(updates, [-1])
    for r in range(int(rank.max()) + 1 if targets.size else 0):
        src = np.full(data.size, -1, np.int64)
        sel = order[rank == r]
        src[targets[sel]] = sel
        new = NN.take(upd, F.constant(np.maximum(src, 0)), 0)
        out = F.where(F.constant(src >= 0), SCATTER_COMBINE[how](out, new), out)
    return F.reshape(out, data.shape)


@converter("ScatterElements", since=11)
def _scatter_elements(n):
    data, updates = n.value(0), n.value(2)
    idx = n.static(1).astype(np.int64)
    axis = _axis(n, n.attr("axis", 0), data.ndim)
    if idx.shape != updates.shape or idx.ndim != data.ndim:
        n.fail(f"indices {idx.shape} and updates {updates.type} must match, with the rank of data {data.type}")
    coords = list(np.indices(idx.shape, dtype=np.int64))
    coords[axis] = np.where(idx < 0, idx + data.shape[axis], idx)
    if np.any(coords[axis] < 0) or np.any(coords[axis] >= data.shape[axis]):
        n.fail("an index is out of range")
    return _scatter(n, data, updates, np.ravel_multi_index(coords, data.shape).reshape(-1) if idx.size else
                    np.zeros(0, np.int64))


@converter("ScatterND", since=11)
def _scatter_nd(n):
    data, updates = n.value(0), n.value(2)
    idx = n.static(1).astype(np.int64)
    k = idx.shape[-1] if idx.ndim else 0
    if idx.ndim < 1 or k > data.ndim or updates.shape != idx.shape[:-1] + data.shape[k:]:
        n.fail(f"indices {idx.shape} and updates {updates.type} do not fit data {data.type}")
    dims = np.asarray(data.shape[:k], np.int64)
    rows = np.where(idx < 0, idx + dims, idx).reshape(-1, k)
    if np.any(rows < 0) or np.any(rows >= dims):
        n.fail("an index is out of range")
    block = math.prod(data.shape[k:])
    base = rows @ np.asarray(_strides(data.shape[:k]), np.int64) * block
    targets = (base[:, None] + np.arange(block, dtype=np.int64)[None, :]).reshape(-1)
    return _scatter(n, data, updates, targets)
