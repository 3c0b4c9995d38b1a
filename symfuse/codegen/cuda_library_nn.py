"""CUDA library lowering of the neural-network ops: the softmax family,
pooling, gathers and one_hot, argmax/argmin and random numbers (see
``cuda_library.py``)."""
from __future__ import annotations

import math

from .cuda_lib_kernels import KINDS, POOL_ARGS, LibKernel, lib_call, lits
from .cuda_library_base import (ARG_BLOCK, BLOCK, GRID_CAP, ROW_BLOCK, SM_COUNT, WARP_ROW_MAX, Launch, Lowering, cdiv,
                                element_type, elementwise, float_type, grid_for, index_type, is_empty, local_arrays,
                                numeric_type, one_launch)
from .index import collapse_dims, row_major_strides, split_axis
from .kernel import c_type


def _rowwise_scheme(outer, n, inner, T, hints) -> str:
    s = hints.get("rowwise")
    if s is not None:
        return s
    if inner > 1 and (outer * inner >= 2048 or n < 32):
        return "column"
    return "warp" if n <= WARP_ROW_MAX[T] else "block"


def rowwise(name):
    kind = KINDS[name]

    def lower(op, ins, outs, hints) -> Lowering:
        x = op.inputs[0].type
        T = float_type(x.dtype, op)
        if is_empty(op) or x.size == 0:
            return Lowering()
        outer, n, inner = split_axis(x.shape, op.attrs["axis"])
        rows = outer * inner
        I = index_type(x.size)
        t = ins[1] if kind == 3 else "(const " + T + "*)0"
        args = f"({ins[0]}, {t}, {outs[0]}, {rows}, {n}, {inner})"
        scheme = _rowwise_scheme(outer, n, inner, T, hints)
        if scheme == "warp":
            if n > WARP_ROW_MAX[T]:
                raise ValueError(f"warp-per-row {name} keeps at most {WARP_ROW_MAX[T]} elements of {T}, got {n}")
            lanes = 32 if n >= 32 else 1 << max(1, (n - 1).bit_length())   # short rows: a group of lanes
            per = cdiv(n, lanes)
            rows_per_block = (BLOCK // 32) * (32 // lanes)
            return one_launch(f"sf_rowwise_warp<{kind}, {T}, {I}, {per}, {lanes}>{args};",
                              (max(1, min(cdiv(rows, rows_per_block), GRID_CAP)), 1, 1), (BLOCK, 1, 1),
                              lib_call(LibKernel("rowwise_warp", T, I, kind=kind, per=per, lanes=lanes),
                                       dict(rows=rows, n=n, inner=inner)))
        if scheme == "block":
            threads = ROW_BLOCK if n >= ROW_BLOCK else max(32, cdiv(n, 32) * 32)
            return one_launch(f"sf_rowwise_block<{kind}, {T}, {I}>{args};", (max(1, min(rows, GRID_CAP)), 1, 1),
                              (threads, 1, 1))
        if scheme == "column":
            return one_launch(f"sf_rowwise_column<{kind}, {T}, {I}>{args};", grid_for(rows), (BLOCK, 1, 1))
        raise ValueError(f"unknown rowwise scheme {scheme!r}")
    return lower



# =========================================================================== pooling
def _pool_values(xs, ys, a) -> dict:
    """The SfPoolShape fields (sizes and divisors; runtime.cuh) by name."""
    n, c, h, w = xs
    ho, wo = ys[2:]
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    return dict(planes=n * c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, HO=ho, WO=wo,
                dWO=wo, dHO=ho, HW=h * w, dW=w, dSH=sh, dSW=sw)


def _pool_shape(I, vals) -> str:
    """The shape-specialised kernel's SfPoolShape: every size and divisor a literal."""
    ints = lits(vals[n] for n in POOL_ARGS[0])
    divs = ", ".join("{" + lits([vals[n]]) + "}" for n in POOL_ARGS[1])
    return f"const SfPoolShape<{I}, SfDivLit<{I}>> sf_ps = {{{ints}, {divs}}};"


def _pool_launch(family, T, I, vals, call, total) -> Launch:
    return Launch(f"{{ {_pool_shape(I, vals)} {call} }}", grid_for(total), (BLOCK, 1, 1),
                  lib=lib_call(LibKernel(family, T, I), vals))


def lower_max_pool2d(op, ins, outs, hints) -> Lowering:
    x, y = op.inputs[0].type, op.outputs[0].type
    T = float_type(x.dtype, op)
    if is_empty(op):
        return Lowering()
    I = index_type(x.size, y.size)
    vals = _pool_values(x.shape, y.shape, op.attrs)
    return Lowering([_pool_launch("max_pool2d", T, I, vals, f"sf_max_pool2d<{T}, {I}>({ins[0]}, {outs[0]}, sf_ps);",
                                  y.size)])


def lower_max_pool2d_grad(op, ins, outs, hints) -> Lowering:
    x, _, g = (v.type for v in op.inputs)
    T = float_type(x.dtype, op)
    if is_empty(op):
        return Lowering()
    I = index_type(x.size, g.size)
    vals = _pool_values(x.shape, g.shape, op.attrs)
    stage1 = _pool_launch("max_pool2d_argmax", T, I, vals,
                          f"sf_max_pool2d_argmax<{T}, {I}>({ins[0]}, (int*)scratch, sf_ps);", g.size)
    stage2 = _pool_launch("max_pool2d_grad", T, I, vals,
                          f"sf_max_pool2d_grad<{T}, {I}>((const int*)scratch, {ins[2]}, {outs[0]}, sf_ps);", x.size)
    return Lowering([stage1, stage2], scratch_bytes=4 * g.size)


def lower_avg_pool2d(op, ins, outs, hints) -> Lowering:
    x, y = op.inputs[0].type, op.outputs[0].type
    T = float_type(x.dtype, op)
    if is_empty(op):
        return Lowering()
    I = index_type(x.size, y.size)
    vals = _pool_values(x.shape, y.shape, op.attrs)
    return Lowering([_pool_launch("avg_pool2d", T, I, vals, f"sf_avg_pool2d<{T}, {I}>({ins[0]}, {outs[0]}, sf_ps);",
                                  y.size)])


def lower_avg_pool2d_grad(op, ins, outs, hints) -> Lowering:
    g = op.inputs[0].type
    T = float_type(g.dtype, op)
    if is_empty(op):
        return Lowering()
    xs = op.attrs["input_shape"]
    I = index_type(g.size, math.prod(xs))
    vals = _pool_values(xs, g.shape, op.attrs)
    return Lowering([_pool_launch("avg_pool2d_grad", T, I, vals,
                                  f"sf_avg_pool2d_grad<{T}, {I}>({ins[0]}, {outs[0]}, sf_ps);", math.prod(xs))])


# =========================================================================== gather / one-hot
def lower_take(op, ins, outs, hints) -> Lowering:
    x, idx = (v.type for v in op.inputs)
    out = op.outputs[0].type
    T, Ii = element_type(x.dtype), element_type(idx.dtype)
    if is_empty(op):
        return Lowering()
    pre, n, post = split_axis(x.shape, op.attrs["axis"])
    I = index_type(x.size, out.size)
    return elementwise(f"sf_take<{T}, {Ii}, {I}>({ins[0]}, {ins[1]}, {outs[0]}, {pre}, {n}, {idx.size}, {post});",
                       out.size)


def lower_take_grad(op, ins, outs, hints) -> Lowering:
    g, idx = (v.type for v in op.inputs)
    out = op.outputs[0].type
    T, Ii = float_type(g.dtype, op), element_type(idx.dtype)
    if is_empty(op):
        return Lowering()
    ax, n = op.attrs["axis"], op.attrs["size"]
    pre, post = math.prod(g.shape[:ax]), math.prod(g.shape[ax + idx.ndim:])
    I = index_type(g.size, out.size, idx.size)
    if post == 0 or pre == 0:
        return Lowering()
    v = max(1, min(4, cdiv(post, 32)))
    warps = pre * n * cdiv(post, 32 * v)
    wpb = BLOCK // 32
    return one_launch(f"sf_take_grad<{T}, {Ii}, {I}, {v}>({ins[0]}, {ins[1]}, {outs[0]}, {pre}, {n}, {idx.size}, "
                      f"{post});", (max(1, min(cdiv(warps, wpb), GRID_CAP)), 1, 1), (BLOCK, 1, 1))


def lower_one_hot(op, ins, outs, hints) -> Lowering:
    idx, out = op.inputs[0].type, op.outputs[0].type
    T, Ii = element_type(out.dtype), element_type(idx.dtype)
    if is_empty(op):
        return Lowering()
    I = index_type(out.size)
    return elementwise(f"sf_one_hot<{T}, {Ii}, {I}>({ins[0]}, {outs[0]}, {idx.size}, {op.attrs['depth']});",
                       out.size, lib=lib_call(LibKernel("one_hot", T, I, index=Ii),
                                              dict(m=idx.size, depth=op.attrs["depth"])))


# =========================================================================== argmax / argmin
def argminmax(name):
    is_max = "true" if name == "argmax" else "false"

    def lower(op, ins, outs, hints) -> Lowering:
        x = op.inputs[0].type
        T = numeric_type(x.dtype, op)
        ax = op.attrs["axis"]
        outer, n, inner = (1, x.size, 1) if ax is None else split_axis(x.shape, ax)
        rows = outer * inner
        if rows == 0:
            return Lowering()
        I = index_type(x.size)
        scheme = hints.get("arg")
        if scheme is None:
            if inner > 1 or n < 32:
                scheme = "column"
            elif n >= 8192 and outer < 2 * SM_COUNT:
                scheme = "block"
            else:
                scheme = "warp"
        if scheme == "column":
            return one_launch(f"sf_arg_column<{is_max}, {T}, {I}>({ins[0]}, {outs[0]}, {rows}, {n}, {inner});",
                              grid_for(rows), (BLOCK, 1, 1))
        if inner != 1:
            raise ValueError(f"argmax scheme {scheme!r} needs contiguous rows")
        if scheme == "warp":
            wpb = BLOCK // 32
            return one_launch(f"sf_arg_warp<{is_max}, {T}, {I}>({ins[0]}, {outs[0]}, {rows}, {n});",
                              (max(1, min(cdiv(rows, wpb), GRID_CAP)), 1, 1), (BLOCK, 1, 1))
        if scheme == "block":
            threads = min(ARG_BLOCK, max(32, cdiv(n, 32) * 32))
            return one_launch(f"sf_arg_block<{is_max}, {T}, {I}>({ins[0]}, {outs[0]}, {rows}, {n});",
                              (max(1, min(rows, GRID_CAP)), 1, 1), (threads, 1, 1))
        raise ValueError(f"unknown argmax scheme {scheme!r}")
    return lower


# =========================================================================== random
def _seed(expr) -> str:
    return f"(uint32_t)(({expr})[0])"


def random_draw(name):
    def lower(op, ins, outs, hints) -> Lowering:
        out = op.outputs[0].type
        T = float_type(out.dtype, op)
        if out.size == 0:
            return Lowering()
        I = index_type(out.size)
        return elementwise(f"sf_{name}<{T}, {I}>({_seed(ins[0])}, {op.attrs['salt']}u, {outs[0]}, {out.size});",
                           out.size)
    return lower


def lower_random_bernoulli(op, ins, outs, hints) -> Lowering:
    out = op.outputs[0].type
    p = op.inputs[1].type
    T = float_type(out.dtype, op)
    if p.dtype.name not in ("float32", "float64"):
        raise NotImplementedError(f"random_bernoulli: p must be float32/float64, got {p.dtype}")
    if out.size == 0:
        return Lowering()
    shape = out.shape
    ps = (1,) * (len(shape) - p.ndim) + p.shape
    pst = [0 if d == 1 else s for d, s in zip(ps, row_major_strides(ps))]
    oshape, pst = collapse_dims(shape, pst)
    if not oshape:
        oshape, pst = [1], [0]
    I = index_type(out.size)
    return elementwise(f"sf_random_bernoulli<{T}, {c_type(p.dtype)}, {I}, {len(oshape)}>({_seed(ins[0])}, "
                       f"{op.attrs['salt']}u, {ins[1]}, {outs[0]}, {out.size}, sf_os, sf_pst);", out.size,
                       local_arrays(I, sf_os=oshape, sf_pst=pst))
