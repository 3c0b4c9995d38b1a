"""CUDA library lowering of the GEMM family: matmul, gemm and the three
convolutions as implicit GEMMs (see ``cuda_library.py``)."""
from __future__ import annotations

import math

from ..ir.symdim import SymInt
from .cuda_lib_kernels import CONV_ARGS, LIB_MATMUL_ND, LibKernel, cfg_args, lib_call, lits
from .cuda_library_base import (BLOCK, SM_COUNT, Launch, Lowering, cdiv, elementwise, float_type, gemm_launch,
                                gemm_tile, grid_for, index_type, is_empty, local_arrays, numeric_type)
from .index import collapse_dims, row_major_strides


def lower_matmul(op, ins, outs, hints, acc: str = "") -> Lowering:
    """``acc``: for gemm, the extra arguments ``Z, alpha, beta`` of sf_matmul's
    accumulating store (shape-specialised only: the library has no such kernel)."""
    a_t, b_t = op.inputs[0].type, op.inputs[1].type
    ta, tb = bool(hints.get("trans_a", False)), bool(hints.get("trans_b", False))
    a_shape = tuple(hints.get("a_shape") or a_t.shape)
    b_shape = tuple(hints.get("b_shape") or b_t.shape)

    def logical(shape, t):
        return shape[:-2] + (shape[-1], shape[-2]) if t else shape

    if logical(a_shape, ta) != a_t.shape or logical(b_shape, tb) != b_t.shape:
        raise ValueError(f"matmul hints {hints} do not match operands {a_t} @ {b_t}")
    T = numeric_type(op.outputs[0].type.dtype, op)
    if is_empty(op):
        return Lowering()
    M, K = a_t.shape[-2:]
    N = b_t.shape[-1]
    batch = op.outputs[0].type.shape[:-2]
    nbd = len(batch)

    def batch_strides(shape):
        bs = (1,) * (nbd - (len(shape) - 2)) + shape[:-2]
        st = row_major_strides(bs)
        mat = shape[-2] * shape[-1]
        return [0 if d == 1 else s * mat for d, s in zip(bs, st)]

    bshape, ast, bst = collapse_dims(batch, batch_strides(a_shape), batch_strides(b_shape))
    if len(bshape) == 1 and not ta and bst[0] == 0 and ast[0] == M * K:
        M, bshape, ast, bst = M * bshape[0], [], [], []   # shared B: one gemm over all rows of A
    if not bshape:
        bshape, ast, bst = [1], [0], [0]
    nb = math.prod(bshape)
    I = index_type(a_t.size, b_t.size, op.outputs[0].type.size, nb * M * N)
    cfg = gemm_tile(M, N, nb, hints)
    nd = len(bshape)
    ntl = cdiv(N, cfg[1])
    body = (f"const SfDivLit<{I}> sf_bd[{nd}] = {{{', '.join('{' + lits([d]) + '}' for d in bshape)}}}; " +
            local_arrays(I, sf_as=ast, sf_bst=bst) +
            f" sf_matmul<{T}, {I}, {cfg_args(cfg)}, {str(ta).lower()}, {str(tb).lower()}, {nd}>"
            f"({ins[0]}, {ins[1]}, {outs[0]}, {M}, {N}, {K}, sf_bd, sf_as, sf_bst, SfDivLit<{I}>{{{ntl}}}{acc});")
    lib = None
    if nd <= LIB_MATMUL_ND and not acc:
        pad = LIB_MATMUL_ND - nd
        bshape, ast, bst = [1] * pad + list(bshape), [0] * pad + list(ast), [0] * pad + list(bst)
        vals = dict(M=M, N=N, K=K, ntl=ntl, **{f"as{d}": ast[d] for d in range(LIB_MATMUL_ND)},
                    **{f"bs{d}": bst[d] for d in range(LIB_MATMUL_ND)},
                    **{f"b{d}": bshape[d] for d in range(LIB_MATMUL_ND)})
        lib = lib_call(LibKernel("matmul", T, I, cfg[0], ta, tb), vals)
    return Lowering([gemm_launch(body, M, N, nb, cfg, lib)])


def lower_gemm(op, ins, outs, hints) -> Lowering:
    """C = alpha * A @ B + beta * Z (formed by the cpu backend's BLAS lowering,
    or written in IR text): the tiled GEMM with an accumulating store."""
    T = float_type(op.outputs[0].type.dtype, op)
    if is_empty(op) and op.outputs[0].type.size:     # an empty contraction: C = beta * Z
        n = op.outputs[0].type.size
        return elementwise(f"sf_scale<{T}, {index_type(n)}>({ins[2]}, {outs[0]}, {n}, "
                           f"({T}){float(op.attrs['beta'])!r});", n)
    alpha, beta = (f"({T}){float(op.attrs[k])!r}" for k in ("alpha", "beta"))
    return lower_matmul(op, ins, outs, hints, acc=f", {ins[2]}, {alpha}, {beta}")


# =========================================================================== convolution
def _conv_values(xs, ws, ys, a, ntl, splits=1, kper=0) -> dict:
    """The SfConvShape fields (sizes and divisors; runtime.cuh) by name."""
    n, c, h, w = xs
    o, _, kh, kw = ws
    ho, wo = ys[2:]
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return dict(N=n, C=c, H=h, W=w, O=o, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, DH=dh, DW=dw, G=a["groups"],
                HO=ho, WO=wo, kper=kper, ntl=ntl, HOWO=ho * wo, dWO=wo, HW=h * w, dW=w, KK=kh * kw, dKW=kw, dSH=sh,
                dSW=sw, S=splits)


def _conv_shape(I, vals) -> str:
    """The shape-specialised kernel's SfConvShape: every size and divisor a literal."""
    ints = lits(vals[n] for n in CONV_ARGS[0])
    divs = ", ".join("{" + lits([vals[n]]) + "}" for n in CONV_ARGS[1])
    return f"const SfConvShape<{I}, SfDivLit<{I}>> sf_cs = {{{ints}, {divs}}};"


def _conv_launch(family, T, I, cfg, vals, call, rows, cols, nz, hints) -> Launch:
    return gemm_launch(_conv_shape(I, vals) + " " + call, rows, cols, nz, cfg,
                       lib_call(LibKernel(family, T, I, cfg[0]), vals))


def lower_conv2d(op, ins, outs, hints) -> Lowering:
    x, w = op.inputs
    y = op.outputs[0]
    T = float_type(x.type.dtype, op)
    if is_empty(op):
        return Lowering()
    n, c = x.shape[:2]
    o = w.shape[0]
    g = op.attrs["groups"]
    ho, wo = y.shape[2:]
    kk = w.shape[2] * w.shape[3]
    I = index_type(x.type.size, w.type.size, y.type.size, (c // g) * kk * n * ho * wo)
    cfg = gemm_tile(o // g, n * ho * wo, g, hints)
    vals = _conv_values(x.shape, w.shape, y.shape, op.attrs, cdiv(n * ho * wo, cfg[1]))
    call = f"sf_conv2d<{T}, {I}, {cfg_args(cfg)}>({ins[0]}, {ins[1]}, {outs[0]}, sf_cs);"
    return Lowering([_conv_launch("conv2d", T, I, cfg, vals, call, o // g, n * ho * wo, g, hints)])


def lower_conv2d_grad_input(op, ins, outs, hints) -> Lowering:
    gy, w = op.inputs
    T = float_type(gy.type.dtype, op)
    if is_empty(op):
        return Lowering()
    xs = op.attrs["input_shape"]
    n, c, h, wd = xs
    g = op.attrs["groups"]
    I = index_type(gy.type.size, w.type.size, math.prod(xs))
    cfg = gemm_tile(c // g, n * h * wd, g, hints)
    vals = _conv_values(xs, w.shape, gy.shape, op.attrs, cdiv(n * h * wd, cfg[1]))
    call = f"sf_conv2d_grad_input<{T}, {I}, {cfg_args(cfg)}>({ins[0]}, {ins[1]}, {outs[0]}, sf_cs);"
    return Lowering([_conv_launch("conv2d_grad_input", T, I, cfg, vals, call, c // g, n * h * wd, g, hints)])


def lower_conv2d_grad_weight(op, ins, outs, hints) -> Lowering:
    x, gy = op.inputs
    T = float_type(x.type.dtype, op)
    if is_empty(op):
        return Lowering()
    ws = op.attrs["weight_shape"]
    o, ci, kh, kw = ws
    g = op.attrs["groups"]
    n, _, ho, wo = gy.shape
    og, r, nq = o // g, ci * kh * kw, n * ho * wo
    cfg = gemm_tile(og, r, g, hints)
    bm, bn, bk = cfg[:3]
    tiles = cdiv(og, bm) * cdiv(r, bn) * g
    nkt = cdiv(nq, bk)
    splits = hints.get("splits")
    if type(nq) is SymInt:
        splits = 1      # the split count would follow the call's size, and with it the scratch and launches
    if splits is None:
        splits = 1
        if tiles < 2 * SM_COUNT:      # too few tiles for the GPU: split the long reduction
            splits = max(1, min(cdiv(2 * SM_COUNT, tiles), nkt // 8, 64))
    if type(nq) is SymInt:
        kper = nkt * bk
    else:
        splits = max(1, min(int(splits), max(nkt, 1)))
        kper = cdiv(max(nkt, 1), splits) * bk
        splits = max(1, cdiv(nq, kper))
    wsize = o * r
    I = index_type(x.type.size, gy.type.size, splits * wsize, nq * max(og, r))
    vals = _conv_values(x.shape, ws, gy.shape, op.attrs, cdiv(r, bn), splits, kper)
    dst = f"({T}*)scratch" if splits > 1 else outs[0]
    call = f"sf_conv2d_grad_weight<{T}, {I}, {cfg_args(cfg)}>({ins[0]}, {ins[1]}, {dst}, sf_cs);"
    launches = [_conv_launch("conv2d_grad_weight", T, I, cfg, vals, call, og, r, g * splits, hints)]
    if splits == 1:
        return Lowering(launches)
    total = Launch(f"{{ sf_sum_partials<{T}, {I}>((const {T}*)scratch, {outs[0]}, {wsize}, {splits}); }}",
                   grid_for(wsize), (BLOCK, 1, 1), lib=lib_call(LibKernel("sum_partials", T, I),
                            dict(count=wsize, S=splits)))
    launches.append(total)
    return Lowering(launches, scratch_bytes=splits * wsize * x.type.dtype.itemsize)
