"""CUDA library lowering of data movement: a view materialised as a copy
(transpose, broadcast, slice, flip, reshape), concatenate and pad (see
``cuda_library.py``)."""
from __future__ import annotations

import math

from .cuda_library_base import (BLOCK, GRID_CAP, MAX_GRID_YZ, Launch, Lowering, cdiv, element_type, elementwise,
                                grid_for, index_type, local_arrays, one_launch)
from .index import collapse_dims, row_major_strides, split_axis
from .kernel import value_literal


def _gather(T, src, dst, shape, sst) -> Lowering:
    """dst (contiguous, shape) = src read with element strides sst."""
    size = math.prod(shape)
    shape, sst, _ = collapse_dims(shape, sst, row_major_strides(shape))
    if not shape:
        shape, sst = [1], [1]
    I = index_type(size, sum((-s if s < 0 else s) * (d - 1) for s, d in zip(sst, shape)) + 1)
    if len(shape) == 1 and sst == [1]:
        return elementwise(f"sf_copy<{T}, {I}>({src}, {dst}, {size});", size)
    if sst[-1] != 1 and sst[:-1].count(1) == 1 and shape[-1] >= 8 and shape[sst.index(1)] >= 8:
        b = sst.index(1)                  # a transpose: tile it through shared memory
        tiles = cdiv(shape[-1], 32) * cdiv(shape[b], 32) * (size // (shape[-1] * shape[b]))
        return one_launch(local_arrays(I, sf_sh=shape, sf_st=sst) +
                          f" sf_transpose_tiled<{T}, {I}, {len(shape)}>({src}, {dst}, sf_sh, sf_st, {b});",
                          (max(1, min(tiles, GRID_CAP)), 1, 1), (32, 8, 1))
    return elementwise(f"sf_gather_copy<{T}, {I}, {len(shape)}>({src}, {dst}, {size}, sf_sh, sf_st);", size,
                       local_arrays(I, sf_sh=shape, sf_st=sst))


def _view(op, ins, outs, src_strides, base) -> Lowering:
    out = op.outputs[0].type
    T = element_type(out.dtype)
    if out.size == 0:
        return Lowering()
    src = ins[0] if base == 0 else f"({ins[0]} + {base})"
    return _gather(T, src, outs[0], out.shape, src_strides)


def lower_transpose(op, ins, outs, hints) -> Lowering:
    st = row_major_strides(op.inputs[0].type.shape)
    return _view(op, ins, outs, [st[p] for p in op.attrs["perm"]], 0)


def lower_broadcast_to(op, ins, outs, hints) -> Lowering:
    x = op.inputs[0].type
    shape = op.outputs[0].type.shape
    xs = (1,) * (len(shape) - x.ndim) + x.shape
    return _view(op, ins, outs, [0 if d == 1 else s for d, s in zip(xs, row_major_strides(xs))], 0)


def lower_slice(op, ins, outs, hints) -> Lowering:
    st = row_major_strides(op.inputs[0].type.shape)
    a = op.attrs
    return _view(op, ins, outs, [s * k for s, k in zip(st, a["step"])], sum(b * s for b, s in zip(a["start"], st)))


def lower_flip(op, ins, outs, hints) -> Lowering:
    x = op.inputs[0].type
    st = row_major_strides(x.shape)
    axes = set(op.attrs["axes"])
    return _view(op, ins, outs, [-s if d in axes else s for d, s in enumerate(st)],
                 sum((x.shape[d] - 1) * st[d] for d in axes))


def lower_reshape(op, ins, outs, hints) -> Lowering:
    out = op.outputs[0].type
    T = element_type(out.dtype)
    if out.size == 0:
        return Lowering()
    I = index_type(out.size)
    return elementwise(f"sf_copy<{T}, {I}>({ins[0]}, {outs[0]}, {out.size});", out.size)


def lower_concatenate(op, ins, outs, hints) -> Lowering:
    out = op.outputs[0].type
    T = element_type(out.dtype)
    if out.size == 0:
        return Lowering()
    ax = op.attrs["axis"]
    outer, total, inner = split_axis(out.shape, ax)
    I = index_type(out.size)
    cases, off, biggest = [], 0, 1
    for e, v in zip(ins, op.inputs):
        n = v.type.shape[ax]
        if n:
            cases.append(f"case {len(cases)}: sf_copy_rows<{T}, {I}>({e}, {outs[0]} + {off}, {outer}, {n * inner}, "
                         f"{total * inner}); break;")
            biggest = max(biggest, outer * n * inner)
        off += n * inner
    if len(cases) > MAX_GRID_YZ:
        raise NotImplementedError(f"concatenate of {len(cases)} operands")
    body = "switch (blockIdx.y) { " + " ".join(cases) + " default: break; }"
    return Lowering([Launch("{ " + body + " }", (grid_for(biggest)[0], len(cases), 1), (BLOCK, 1, 1))])


def lower_pad(op, ins, outs, hints) -> Lowering:
    x, out = op.inputs[0].type, op.outputs[0].type
    T = element_type(out.dtype)
    if out.size == 0:
        return Lowering()
    a = op.attrs
    value = value_literal(a["value"], out.dtype)
    # dims as (out extent, lo, step, x extent); merge a dim into its outer neighbour when
    # the inner one is unpadded and the outer one has no interior padding
    dims = [(o, lo, i + 1, d) for o, lo, i, d in zip(out.shape, a["lo"], a["interior"], x.shape)
            if not (o == 1 and d == 1)]
    merged: list = []
    for o, lo, st, d in dims:
        if merged and o == d and lo == 0 and merged[-1][2] == 1:
            po, plo, pst, pd = merged[-1]
            merged[-1] = (po * o, plo * o, 1, pd * d)
        else:
            merged.append((o, lo, st, d))
    if not merged:
        merged = [(1, 0, 1, 1)]
    I = index_type(out.size, x.size + 1)
    arrs = local_arrays(I, sf_os=[m[0] for m in merged], sf_lo=[m[1] for m in merged], sf_step=[m[2] for m in merged],
                        sf_xs=[m[3] for m in merged])
    return elementwise(f"sf_pad<{T}, {I}, {len(merged)}>({ins[0]}, {outs[0]}, {out.size}, sf_os, sf_lo, sf_step, "
                       f"sf_xs, ({T})({value}));", out.size, arrs)
