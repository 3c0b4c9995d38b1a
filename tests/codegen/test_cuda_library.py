"""The CUDA runtime library (symfuse/templates/cuda/runtime.cuh) against the numpy references.

Every case builds one op with the symfuse API and lowers it with
``symfuse.codegen.cuda_library.CUDA_LIBRARY`` into one ``extern "C" __global__``
kernel per launch (parameters in0.., out0.., [scratch]). The cases are gathered
into a few translation units, each run under the CUDA emulator (cuda-emu: the
real CUDA source, threads as CPU fibers) on numpy buffers and compared with
``op.opdef.ref``; every unit is also compiled by NVRTC for sm_80 and sm_90 and
the float32 kernels must not spill.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen import c_library as CL
from symfuse.codegen import cuda_library as L
from symfuse.ir.core import apply

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="cuda-emu needs a C++ compiler")

RNG = np.random.default_rng(4321)
CASES: list["Case"] = []


class Case:
    def __init__(self, name, op, ref_args, buf_args=None, hints=None, tol=None, exact=False, ulp=None):
        self.name, self.op, self.hints, self.ulp = name, op, hints or {}, ulp
        self.ref_args = ref_args
        self.buf_args = [np.ascontiguousarray(a) for a in (buf_args if buf_args is not None else ref_args)]
        self.tol, self.exact = tol, exact
        self.index = len(CASES)
        CASES.append(self)
        op = self.op
        ins = [f"in{k}" for k in range(len(op.inputs))]
        outs = [f"out{k}" for k in range(len(op.outputs))]
        self.lowering = L.CUDA_LIBRARY[op.opdef.name](op, ins, outs, self.hints)

    @property
    def float32(self) -> bool:
        return any(v.type.dtype.name == "float32" for v in list(self.op.inputs) + list(self.op.outputs))

    def kernel_names(self) -> list[str]:
        return [f"k{self.index}_{j}" for j in range(len(self.lowering.launches))]

    def source(self) -> str:
        op = self.op
        params = [f"const {CL.c_type(v.type.dtype)}* __restrict__ in{k}" for k, v in enumerate(op.inputs)]
        params += [f"{CL.c_type(v.type.dtype)}* __restrict__ out{k}" for k, v in enumerate(op.outputs)]
        if self.lowering.scratch_bytes:
            params.append("char* __restrict__ scratch")
        sig = ", ".join(params)
        return "".join(f'/* {self.name} */\nextern "C" __global__ void {k}({sig}) {{\n  {ln.body}\n}}\n'
                       for k, ln in zip(self.kernel_names(), self.lowering.launches))


def _arr(shape, dtype="float32", lo=-2.0, hi=2.0):
    if np.dtype(dtype).kind == "f":
        return RNG.uniform(lo, hi, shape).astype(dtype)
    return RNG.integers(int(lo), int(hi), shape).astype(dtype)


def _op(name, inputs, attrs=None):
    vals = [sf.tensor(f"x{k}", a.shape, a.dtype.name) for k, a in enumerate(inputs)]
    out = apply(name, vals, attrs or {})
    return (out if not isinstance(out, tuple) else out[0]).op


def case(name, opname, inputs, attrs=None, **kw):
    return Case(f"{opname}:{name}", _op(opname, inputs, attrs), inputs, **kw)


# =========================================================================== cases
F32, F64 = "float32", "float64"
MM_TOL = {F32: 1e-4, F64: 1e-10}
ROW_TOL = {F32: 1e-5, F64: 1e-12}
RED_TOL = {F32: 1e-4, F64: 1e-12}

# --- matmul: batched, broadcast batch, transposition flags, both tile configs, odd sizes, ints
ALL_T = ((False, False), (True, False), (False, True), (True, True))
MM_SHAPES = {   # shapes -> transposition flags tried (float32; float64: MM_F64)
    ((5, 7), (7, 3)): ALL_T,
    ((4, 5, 7), (7, 3)): ((False, False), (True, False)),           # shared B: one gemm over all rows of A
    ((5, 7), (2, 7, 3)): ((False, False), (False, True)),           # broadcast A
    ((2, 1, 5, 7), (3, 7, 6)): ALL_T,                               # broadcast on both sides
    ((3, 1, 5, 7), (1, 2, 7, 3)): ((False, False), (True, True)),
    ((64, 33), (33, 65)): ALL_T,                                    # ragged 32x32 tiles, several k-tiles
    ((1, 37), (37, 70)): ((False, False), (True, True)),            # one row
}
MM_F64 = {((5, 7), (7, 3)): ((False, False), (True, True)), ((2, 1, 5, 7), (3, 7, 6)): ((False, False),),
          ((64, 33), (33, 65)): ALL_T}
for dt in (F32, F64):
    for (sa, sb), flags in (MM_SHAPES if dt == F32 else MM_F64).items():
        a, b = _arr(sa, dt), _arr(sb, dt)
        for ta, tb in flags:
            ab = np.swapaxes(a, -1, -2) if ta else a
            bb = np.swapaxes(b, -1, -2) if tb else b
            Case(f"matmul:{dt}:{sa}@{sb}:T{int(ta)}{int(tb)}", _op("matmul", [a, b]), [a, b], [ab, bb],
                 hints={"trans_a": ta, "trans_b": tb, "a_shape": ab.shape, "b_shape": bb.shape}, tol=MM_TOL[dt])
    a, b = _arr((70, 40), dt), _arr((40, 130), dt)     # 64x64 tiles, ragged edges, several k-tiles
    for ta, tb in ALL_T if dt == F32 else [(False, False), (True, True)]:
        ab = np.swapaxes(a, -1, -2) if ta else a
        bb = np.swapaxes(b, -1, -2) if tb else b
        Case(f"matmul:{dt}:tile64:T{int(ta)}{int(tb)}", _op("matmul", [a, b]), [a, b], [ab, bb],
             hints={"trans_a": ta, "trans_b": tb, "a_shape": ab.shape, "b_shape": bb.shape, "tile": 64},
             tol=MM_TOL[dt])
    case(f"{dt}:tile64-batch", "matmul", [_arr((3, 64, 64), dt), _arr((3, 64, 64), dt)], hints={"tile": 64},
         tol=MM_TOL[dt])
for dt in ("int32", "int64"):
    case(f"{dt}", "matmul", [_arr((2, 3, 4), dt, -5, 5), _arr((4, 5), dt, -5, 5)], exact=True)
case("K=0", "matmul", [_arr((3, 0)), _arr((0, 4))], exact=True)
case("empty-batch", "matmul", [_arr((0, 3, 2)), _arr((2, 4))], exact=True)
# --- gemm (C = alpha * A @ B + beta * Z): transposition flags, batches, both tiles, K = 0
for dt in (F32, F64):
    for (sa, sb, sz), (ta, tb) in [(((37, 20), (20, 45), (37, 45)), (False, False)),
                                   (((37, 20), (20, 45), (37, 45)), (True, True)),
                                   (((2, 5, 7), (7, 3), (2, 5, 3)), (False, True)),
                                   (((70, 40), (40, 130), (70, 130)), (True, False))]:
        a, b, z = _arr(sa, dt), _arr(sb, dt), _arr(sz, dt)
        ab = np.swapaxes(a, -1, -2) if ta else a
        bb = np.swapaxes(b, -1, -2) if tb else b
        Case(f"gemm:{dt}:{sa}@{sb}:T{int(ta)}{int(tb)}", _op("gemm", [a, b, z], {"alpha": -0.5, "beta": 1.5}),
             [a, b, z], [ab, bb, z], hints={"trans_a": ta, "trans_b": tb, "a_shape": ab.shape,
                                            "b_shape": bb.shape}, tol=MM_TOL[dt])
case("K=0", "gemm", [_arr((3, 0)), _arr((0, 4)), _arr((3, 4))], {"alpha": 2.0, "beta": -3.0}, tol=1e-6)

# --- softmax family: axis variants, every scheme (warp / block / column)
for dt in (F32, F64):
    # schemes: warp, column, warp over strided rows, warp (one lane-chunk), warp (32 values a lane),
    # block, block over strided rows, column (inner > 1 with few rows)
    for shape, ax in [((6, 10), -1), ((6, 10), 0), ((2, 70, 3), 1), ((17,), 0), ((3, 1000), -1), ((2, 1500), -1),
                      ((2, 1100, 2), 1), ((2, 3, 130), 0)][:None if dt == F32 else 5]:
        x = _arr(shape, dt, -5, 5)
        for opn in ("softmax", "log_softmax"):
            case(f"{dt}:{shape}:{ax}", opn, [x], {"axis": ax}, tol=ROW_TOL[dt])
        case(f"{dt}:{shape}:{ax}", "logsumexp", [x], {"axis": ax, "keepdims": ax == 0}, tol=ROW_TOL[dt])
        t = RNG.dirichlet(np.ones(shape[ax]), size=int(np.prod(shape)) // shape[ax]).astype(dt)
        t = np.moveaxis(t.reshape(tuple(s for i, s in enumerate(shape) if i != ax % len(shape)) + (shape[ax],)),
                        -1, ax % len(shape))
        case(f"{dt}:{shape}:{ax}", "softmax_xent", [x, np.ascontiguousarray(t)], {"axis": ax}, tol=RED_TOL[dt])
for n in (1, 2, 3, 9, 16, 31):        # short rows: groups of 2..32 lanes, several rows a warp, ragged last warp
    xq = _arr((37, n), F32, -5, 5)
    case(f"short{n}", "softmax", [xq], {"axis": -1}, tol=1e-5)
    case(f"short{n}", "logsumexp", [xq], {"axis": -1}, tol=1e-5)
    case(f"short{n}", "softmax_xent", [xq, np.full_like(xq, 1 / n)], {"axis": -1}, tol=1e-4)
for n in (2, 3, 7, 13, 29, 50, 100, 250):   # every warp-per-row kernel of the library: (lanes, per) = (2, 1) .. (32, 8)
    xl = _arr((9, n), F32, -5, 5)
    for opn in ("softmax", "log_softmax", "logsumexp"):
        case(f"lib{n}", opn, [xl], {"axis": -1}, tol=1e-5)
    case(f"lib{n}", "softmax_xent", [xl, np.full_like(xl, 1 / n)], {"axis": -1}, tol=1e-4)
xw = _arr((3, 500), F64, -5, 5)           # float64 warp rows cache 16 values a lane
case("f64-warp16", "softmax", [xw], {"axis": -1}, tol=1e-12)
case("f64-warp16", "softmax_xent", [xw, np.full_like(xw, 1 / 500)], {"axis": -1}, tol=1e-12)
xr = _arr((5, 300), F32, -5, 5)
for scheme in ("warp", "block", "column"):
    for opn in ("softmax", "log_softmax", "logsumexp"):
        case(f"forced-{scheme}", opn, [xr], {"axis": -1}, hints={"rowwise": scheme}, tol=1e-5)
    case(f"forced-{scheme}", "softmax_xent", [xr, np.full_like(xr, 1 / 300)], {"axis": -1},
         hints={"rowwise": scheme}, tol=1e-4)
# non-finite rows: -inf entries, an all -inf row, +inf, NaN
xs = np.array([[1, -np.inf, 2, 3], [-np.inf] * 4, [np.inf, 1, 2, 3], [np.nan, 1, 2, 3], [1e30, 1e30, -1e30, 0]],
              np.float32)
for scheme in ("warp", "block", "column"):
    for opn in ("softmax", "log_softmax", "logsumexp"):
        case(f"nonfinite-{scheme}", opn, [xs], {"axis": -1}, hints={"rowwise": scheme}, tol=1e-6)
    case(f"nonfinite-{scheme}", "softmax_xent", [xs, np.full_like(xs, 0.25)], {"axis": -1},
         hints={"rowwise": scheme}, tol=1e-6)
for opn in ("softmax", "log_softmax", "logsumexp"):
    case("nonfinite-ax0", opn, [np.ascontiguousarray(xs.T)], {"axis": 0}, tol=1e-6)

# --- conv2d and its gradients: strides, padding, dilation, groups, split-K
CONV = [((2, 3, 8, 9), (4, 3, 3, 3), {}),
        ((2, 3, 8, 9), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
        ((1, 4, 10, 7), (6, 2, 3, 2), {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
        ((2, 6, 7, 7), (6, 1, 3, 3), {"padding": 1, "groups": 6}),            # depthwise
        ((2, 5, 6, 6), (7, 5, 1, 1), {}),                                      # 1x1
        ((1, 2, 9, 9), (3, 2, 2, 2), {"stride": 3}),                           # stride leftovers
        ((2, 8, 12, 12), (16, 8, 3, 3), {"padding": 1})]
for dt in (F32, F64):
    for xs_, ws_, a in (CONV if dt == F32 else CONV[1:4]):    # float64: the same code, fewer shapes
        x, w = _arr(xs_, dt), _arr(ws_, dt)
        y = _op("conv2d", [x, w], a)
        case(f"{dt}:{xs_}*{ws_}:{a}", "conv2d", [x, w], a, tol=MM_TOL[dt])
        g = _arr(y.outputs[0].shape, dt)
        case(f"{dt}:{xs_}*{ws_}:{a}", "conv2d_grad_input", [g, w], {**a, "input_shape": xs_}, tol=MM_TOL[dt])
        case(f"{dt}:{xs_}*{ws_}:{a}", "conv2d_grad_weight", [x, g], {**a, "weight_shape": ws_}, tol=MM_TOL[dt])
# 64x64 tiles (ragged), forced split-K counts (incl. uneven last split)
xc, wc = _arr((2, 16, 10, 10)), _arr((70, 16, 3, 3))
yc = _op("conv2d", [xc, wc], {"padding": 1})
gc = _arr(yc.outputs[0].shape)
case("tile64", "conv2d", [xc, wc], {"padding": 1}, hints={"tile": 64}, tol=1e-4)
case("tile64", "conv2d_grad_input", [gc, wc], {"padding": 1, "input_shape": xc.shape}, hints={"tile": 64}, tol=1e-4)
for s in (1, 3, 5):
    case(f"tile64-splits{s}", "conv2d_grad_weight", [xc, gc], {"padding": 1, "weight_shape": wc.shape},
         hints={"tile": 64, "splits": s}, tol=1e-4)
xg, wg = _arr((3, 4, 9, 9)), _arr((6, 2, 3, 3))
yg = _op("conv2d", [xg, wg], {"stride": 2, "dilation": 2, "groups": 2, "padding": 2})
case("groups-splits4", "conv2d_grad_weight", [xg, _arr(yg.outputs[0].shape)],
     {"stride": 2, "dilation": 2, "groups": 2, "padding": 2, "weight_shape": wg.shape}, hints={"splits": 4}, tol=1e-4)

# --- pooling: overlapping windows, padding, ties, NaN
POOL = [((2, 3, 8, 8), {"kernel": 2}),
        ((2, 3, 9, 7), {"kernel": 3, "stride": 2, "padding": 1}),
        ((1, 2, 7, 8), {"kernel": (3, 2), "stride": 1}),
        ((1, 2, 6, 6), {"kernel": 3, "stride": (2, 1), "padding": (1, 0)}),
        ((1, 2, 9, 9), {"kernel": 2, "stride": 3})]                           # stride leftovers
for dt in (F32, F64):
    for xs_, a in POOL:
        x = _arr(xs_, dt)
        xt = np.round(x * 2) / 2            # many ties: first maximum wins
        y = _op("max_pool2d", [x], a)
        case(f"{dt}:{xs_}:{a}", "max_pool2d", [x], a, exact=True)
        case(f"{dt}:{xs_}:{a}", "avg_pool2d", [x], a, tol=ROW_TOL[dt])
        for name, xx in (("", x), (":ties", xt)):
            yy = y.opdef.ref([xx], y.attrs)
            g = _arr(yy.shape, dt)
            case(f"{dt}:{xs_}:{a}{name}", "max_pool2d_grad", [xx, yy, g], a, tol=ROW_TOL[dt])
        case(f"{dt}:{xs_}:{a}", "avg_pool2d_grad", [_arr(y.outputs[0].shape, dt)], {**a, "input_shape": xs_},
             tol=ROW_TOL[dt])
xn = _arr((1, 1, 4, 4))
xn[0, 0, 1, 1] = np.nan
xn[0, 0, 2, 3] = -np.inf
case("nan", "max_pool2d", [xn], {"kernel": 2}, exact=True)
yn = _op("max_pool2d", [xn], {"kernel": 2, "stride": 1})
case("nan", "max_pool2d_grad", [xn, yn.opdef.ref([xn], yn.attrs), _arr((1, 1, 3, 3))], {"kernel": 2, "stride": 1},
     tol=1e-6)     # the NaN wins 4 windows: the reference sums their g in float64
xi = np.full((1, 1, 3, 3), -np.inf, np.float32)      # -inf everywhere: padding (first) is chosen, gradient dropped
xi[0, 0, 1, 1] = 1.0
yi = _op("max_pool2d", [xi], {"kernel": 2, "padding": 1, "stride": 1})
case("neginf-pad", "max_pool2d_grad", [xi, yi.opdef.ref([xi], yi.attrs), _arr((1, 1, 4, 4))],
     {"kernel": 2, "padding": 1, "stride": 1}, tol=1e-6)

# --- take / take_grad: axes, index dtypes, negative and out-of-range indices (clamped)
for idt in ("int32", "int64", "uint8", "int8", "uint32"):
    lo = 0 if idt[0] == "u" else -9
    for xs_, ax, ish in [((7, 5), 0, (4,)), ((3, 7, 5), 1, (2, 3)), ((3, 5, 7), 2, (6,)), ((7,), 0, (3, 2))]:
        x = _arr(xs_, F32)
        idx = _arr(ish, idt, lo, 12)
        case(f"{idt}:{xs_}:{ax}:{ish}", "take", [x, idx], {"axis": ax}, exact=True)
        out_shape = xs_[:ax] + ish + xs_[ax + 1:]
        for dt in ((F32, F64) if idt == "int64" else (F32,)):
            case(f"{dt}:{idt}:{xs_}:{ax}:{ish}", "take_grad", [_arr(out_shape, dt), idx],
                 {"axis": ax, "size": xs_[ax]}, tol=ROW_TOL[dt])
case("int64-data", "take", [_arr((6, 3), "int64", -100, 100), np.array([5, -1, 0, 9], np.int64)], {"axis": 0},
     exact=True)
case("bool-data", "take", [_arr((6, 3), "int64", 0, 2).astype(bool), np.array([5, -1, 0, 9], np.int64)],
     {"axis": 0}, exact=True)
case("u64", "take", [_arr((5, 2)), np.array([0, 4, 2**63 + 5, 7], np.uint64)], {"axis": 0}, exact=True)
case("wide-post", "take_grad", [_arr((2, 300)), np.array([1, 1], np.int32)], {"axis": 0, "size": 3}, tol=1e-6)
case("many-idx", "take_grad", [_arr((70, 45)), _arr((70,), "int64", -20, 20)], {"axis": 0, "size": 13}, tol=1e-5)

# --- one_hot: index dtypes, output dtypes, out-of-range rows
for idt in ("int32", "int64", "uint8"):
    for odt in ("float32", "float64", "int32", "bool"):
        lo = 0 if idt[0] == "u" else -3
        case(f"{idt}->{odt}", "one_hot", [_arr((3, 4), idt, lo, 8)], {"depth": 6, "dtype": odt}, exact=True)

# --- argmax / argmin: axis None/int, keepdims, ties, NaN, int dtypes, every scheme
for dt in (F32, F64, "int32", "int64", "uint8", "int8"):
    x = _arr((4, 6, 5), dt, 0, 4) if dt[0] in "iu" else np.round(_arr((4, 6, 5), dt) * 2) / 2
    for ax in ((None, 0, 1, 2) if dt in (F32, F64, "int32") else (None, 1)):
        for opn in ("argmax", "argmin"):
            case(f"{dt}:{ax}", opn, [x], {"axis": ax, "keepdims": ax == 1}, exact=True)
xa = np.round(_arr((3, 70)) * 2) / 2
xa[1, 2] = np.nan
xa[1, 40] = np.nan
xa[2, 65] = np.nan
for opn in ("argmax", "argmin"):
    for scheme in ("warp", "block", "column"):
        case(f"nan-{scheme}", opn, [xa], {"axis": 1}, hints={"arg": scheme}, exact=True)
    case("nan0", opn, [xa], {"axis": 0}, exact=True)
    case("nanflat", opn, [xa], {"axis": None}, exact=True)
    case("flat-ties", opn, [np.round(_arr((9000,)))], {"axis": None}, exact=True)
    case("ints-warp", opn, [_arr((5, 100), "int16", -3, 3)], {"axis": 1}, exact=True)

# --- random: bit-exact uniform / bernoulli; normal within a few float32 ulp: the stream's
# words and u1, u2 are exact, but the reference's float32 logf / cosf are numpy's SIMD ones
# (measured: up to 3.1 / 1.4 ulp from the exact values; glibc's, which cuda-emu runs, 0.8 /
# 0.6; CUDA documents 1 / 1.5), so the same formula differs by a few ulp between platforms
# (symfuse/ir/ops/random.py: "agreement to a few ulp")
NORMAL_ULP = 8
for sdt, seed in (("int32", 7), ("int64", -3), ("uint32", 4000000000), ("int64", 2**40 + 9)):
    s = np.array(seed, sdt)
    for dt in (F32, F64):
        for salt in (0, 12345):
            case(f"{sdt}:{seed}:{dt}:{salt}", "random_uniform", [s], {"shape": (5, 37), "dtype": dt, "salt": salt},
                 exact=True)
            case(f"{sdt}:{seed}:{dt}:{salt}", "random_normal", [s], {"shape": (3, 41), "dtype": dt, "salt": salt},
                 ulp=NORMAL_ULP)
        for pshape, pdt in (((), F32), ((37,), F64), ((5, 1), F32), ((5, 37), F64))[::1 if sdt == "int64" else 3]:
            case(f"{sdt}:{dt}:p{pshape}{pdt}", "random_bernoulli", [s, _arr(pshape, pdt, 0, 1)],
                 {"shape": (5, 37), "dtype": dt, "salt": 3}, exact=True)
case("big", "random_uniform", [np.array(11, np.int32)], {"shape": (300, 301), "salt": 1}, exact=True)
case("big", "random_normal", [np.array(5, np.int64)], {"shape": (200, 300)}, ulp=NORMAL_ULP)
case("empty", "random_uniform", [np.array(1, np.int32)], {"shape": (0, 3)}, exact=True)

# --- concatenate / pad
for dt in (F32, "int64", "bool", "uint8"):
    mk = (lambda s: _arr(s, dt, 0, 2).astype(dt)) if dt in ("bool", "uint8") else (lambda s: _arr(s, dt, -9, 9))
    for ax, shapes in ((0, [(2, 3), (4, 3), (1, 3)]), (1, [(2, 3, 4), (2, 1, 4), (2, 0, 4), (2, 5, 4)]),
                       (2, [(2, 3, 1), (2, 3, 2)])):
        case(f"{dt}:{ax}", "concatenate", [mk(s) for s in shapes], {"axis": ax}, exact=True)
    for xs_, lo, hi, it, val in (((3, 4), (1, 0), (2, 3), (0, 0), 0.0),
                                 ((3, 4), (0, 2), (1, 0), (1, 2), 1.5),            # interior padding
                                 ((2, 3, 4), (1, 1, 1), (0, 2, 0), (0, 1, 0), -2.0),
                                 ((0, 3), (1, 1), (1, 0), (0, 0), 3.0),            # empty x: all value
                                 ((2, 3, 4), (0, 0, 0), (0, 0, 2), (0, 0, 0), 1.0),  # merged dims
                                 ((2, 1, 4), (1, 0, 0), (0, 0, 0), (0, 3, 0), 1.0)):  # interior of a size-1 dim
        case(f"{dt}:{xs_}:{lo}{hi}{it}:{val}", "pad", [mk(xs_)], {"lo": lo, "hi": hi, "interior": it, "value": val},
             exact=True)
case("inf", "pad", [_arr((2, 2))], {"lo": (1, 1), "hi": (0, 0), "interior": (0, 0), "value": -np.inf}, exact=True)
case("f64-nan", "pad", [_arr((2, 3), F64)], {"lo": (0, 1), "hi": (1, 0), "interior": (1, 1), "value": np.nan},
     exact=True)

# --- standalone view copies (strided gather)
x4 = _arr((2, 3, 4, 5))
for dt in (F32, F64, "int8", "bool"):
    xx = x4.astype(dt) if dt != "bool" else x4 > 0
    case(f"perm:{dt}", "transpose", [xx], {"perm": (2, 0, 3, 1)}, exact=True)
    case(f"axes:{dt}", "flip", [xx], {"axes": (1, 3)}, exact=True)
case("bcast", "broadcast_to", [_arr((3, 1, 5))], {"shape": (2, 3, 4, 5)}, exact=True)
case("bcast-scalar", "broadcast_to", [_arr(())], {"shape": (3, 4)}, exact=True)
case("step", "slice", [x4], {"start": (1, 0, 1, 0), "stop": (2, 3, 4, 5), "step": (1, 2, 2, 1)}, exact=True)
case("contig", "slice", [x4], {"start": (1, 0, 0, 0), "stop": (2, 3, 4, 5), "step": (1, 1, 1, 1)}, exact=True)
case("r", "reshape", [x4], {"shape": (6, 20)}, exact=True)
# tiled (shared-memory) transposes: 2-D, batched, with other dims on both sides, ragged tiles
for dt in (F32, F64, "int8", "bool"):
    xt_ = _arr((40, 70)).astype(dt) if dt != "bool" else _arr((40, 70)) > 0
    case(f"tiled2d:{dt}", "transpose", [xt_], {"perm": (1, 0)}, exact=True)
case("tiled-batch", "transpose", [_arr((3, 20, 37))], {"perm": (0, 2, 1)}, exact=True)
case("tiled-mixed", "transpose", [_arr((9, 3, 10, 2, 12))], {"perm": (1, 4, 3, 0, 2)}, exact=True)
case("row-step", "slice", [_arr((50, 40))], {"start": (0, 0), "stop": (50, 40), "step": (2, 1)},
     exact=True)
case("perm8", "transpose", [_arr((2, 1, 3, 2, 2, 3, 2, 2))], {"perm": (7, 5, 3, 1, 0, 2, 4, 6)}, exact=True)

# --- larger sizes (several blocks / tiles / grid-stride paths)
for dt in (F32, F64):
    xb = _arr((64, 1000), dt, -5, 5)
    case(f"{dt}:big", "softmax", [xb], {"axis": -1}, tol=ROW_TOL[dt])
    case(f"{dt}:big-ax0", "log_softmax", [xb], {"axis": 0}, tol=ROW_TOL[dt])
    case(f"{dt}:big", "softmax_xent", [xb, np.full_like(xb, 1e-3)], {"axis": -1}, tol=RED_TOL[dt])
    if dt == F32:
        xc, wc = _arr((2, 16, 16, 16), dt), _arr((24, 16, 3, 3), dt)
        yc = _op("conv2d", [xc, wc], {"padding": 1, "stride": 1})
        gc = _arr(yc.outputs[0].shape, dt)
        case(f"{dt}:big", "conv2d", [xc, wc], {"padding": 1}, tol=MM_TOL[dt])
        case(f"{dt}:big", "conv2d_grad_input", [gc, wc], {"padding": 1, "input_shape": xc.shape}, tol=MM_TOL[dt])
        case(f"{dt}:big", "conv2d_grad_weight", [xc, gc], {"padding": 1, "weight_shape": wc.shape}, tol=MM_TOL[dt])
    xp = _arr((2, 8, 32, 32), dt)
    yp = _op("max_pool2d", [xp], {"kernel": 3, "stride": 2, "padding": 1})
    ypv = yp.opdef.ref([xp], yp.attrs)
    case(f"{dt}:big", "max_pool2d", [xp], {"kernel": 3, "stride": 2, "padding": 1}, exact=True)
    case(f"{dt}:big", "max_pool2d_grad", [xp, ypv, _arr(ypv.shape, dt)], {"kernel": 3, "stride": 2, "padding": 1},
         tol=ROW_TOL[dt])
    case(f"{dt}:big", "take_grad", [_arr((4, 300, 40), dt), _arr((300,), "int64", -50, 50)],
         {"axis": 1, "size": 37}, tol=ROW_TOL[dt])
    case(f"{dt}:big", "matmul", [_arr((4, 64, 48), dt), _arr((4, 48, 40), dt)], tol=MM_TOL[dt])
case("big", "take", [_arr((500, 64)), _arr((800,), "int32", -600, 600)], {"axis": 0}, exact=True)
case("big", "concatenate", [_arr((300, 200)), _arr((300, 500))], {"axis": 1}, exact=True)
case("big", "pad", [_arr((300, 300))], {"lo": (2, 2), "hi": (3, 3), "interior": (1, 0), "value": 1.0}, exact=True)
case("big", "random_bernoulli", [np.array(5, np.int64), _arr((300,), F32, 0, 1)], {"shape": (200, 300)}, exact=True)
case("big", "argmin", [_arr((300, 400))], {"axis": 1}, exact=True)
case("big", "matmul", [_arr((200, 100), "int32", -3, 3), _arr((100, 50), "int32", -3, 3)], exact=True)


# --- empty operands with non-empty results
case("empty-idx", "take_grad", [_arr((0, 5)), np.zeros((0,), np.int32)], {"axis": 0, "size": 3}, exact=True)
case("N=0", "conv2d_grad_weight", [_arr((0, 3, 8, 9)), _arr((0, 4, 6, 7))], {"weight_shape": (4, 3, 3, 3)},
     exact=True)
case("empty-rows", "softmax", [_arr((0, 7))], {"axis": -1}, exact=True)
case("empty-idx", "take", [_arr((4, 3)), np.zeros((0,), np.int64)], {"axis": 0}, exact=True)

# --- float64 on 64x64 tiles
xd, wd = _arr((2, 8, 9, 9), F64), _arr((70, 8, 3, 3), F64)
yd = _op("conv2d", [xd, wd], {"stride": 2})
case("f64-tile64", "conv2d", [xd, wd], {"stride": 2}, hints={"tile": 64}, tol=1e-10)
case("f64-tile64", "conv2d_grad_input", [_arr(yd.outputs[0].shape, F64), wd], {"stride": 2, "input_shape": xd.shape},
     hints={"tile": 64}, tol=1e-10)
case("f64-tile64", "conv2d_grad_weight", [xd, _arr(yd.outputs[0].shape, F64)], {"stride": 2, "weight_shape": wd.shape},
     hints={"tile": 64, "splits": 2}, tol=1e-10)

# --- 64-bit indexing (chosen by the lowering for tensors past 2^30 elements): forced here
_limit, L.INT_LIMIT = L.INT_LIMIT, 0
try:
    a64, b64 = _arr((2, 33, 20)), _arr((20, 40))
    Case("matmul:i64:T01", _op("matmul", [a64, b64]), [a64, b64], [a64, np.swapaxes(b64, 0, 1)],
         hints={"trans_b": True, "b_shape": (40, 20)}, tol=1e-4)
    xi64, wi64 = _arr((2, 4, 7, 7)), _arr((6, 2, 3, 3))
    ai64 = {"padding": 1, "groups": 2, "stride": 2}
    yi64 = _op("conv2d", [xi64, wi64], ai64)
    gi64 = _arr(yi64.outputs[0].shape)
    case("i64", "conv2d", [xi64, wi64], ai64, tol=1e-4)
    case("i64", "conv2d_grad_input", [gi64, wi64], {**ai64, "input_shape": xi64.shape}, tol=1e-4)
    case("i64", "conv2d_grad_weight", [xi64, gi64], {**ai64, "weight_shape": wi64.shape}, hints={"splits": 2},
         tol=1e-4)
    xp64 = _arr((1, 2, 7, 7))
    yp64 = _op("max_pool2d", [xp64], {"kernel": 3, "stride": 2, "padding": 1})
    case("i64", "max_pool2d", [xp64], {"kernel": 3, "stride": 2, "padding": 1}, exact=True)
    case("i64", "max_pool2d_grad", [xp64, yp64.opdef.ref([xp64], yp64.attrs), _arr((1, 2, 4, 4))],
         {"kernel": 3, "stride": 2, "padding": 1}, tol=1e-6)
    case("i64", "avg_pool2d_grad", [_arr((1, 2, 4, 4))], {"kernel": 3, "stride": 2, "padding": 1,
                                                          "input_shape": (1, 2, 7, 7)}, tol=1e-6)
    for opn in ("softmax", "logsumexp"):
        case("i64", opn, [_arr((3, 50, 2))], {"axis": 1}, tol=1e-5)
    case("i64-column", "log_softmax", [_arr((3, 5, 4))], {"axis": 1}, tol=1e-5)
    case("i64-block", "softmax_xent", [_arr((2, 1200)), np.full((2, 1200), 1 / 1200, np.float32)], {"axis": 1},
         tol=1e-4)
    case("i64", "take_grad", [_arr((3, 4, 40)), np.array([2, -1, 2, 0], np.int32)], {"axis": 1, "size": 3},
         tol=1e-6)
    case("i64", "take", [_arr((3, 4, 5)), np.array([2, -1, 9], np.int64)], {"axis": 1}, exact=True)
    case("i64", "argmax", [_arr((3, 70))], {"axis": 1}, exact=True)
    case("i64-flat", "argmin", [_arr((9000,))], {"axis": None}, exact=True)
    case("i64", "pad", [_arr((3, 4))], {"lo": (1, 0), "hi": (0, 2), "interior": (1, 1), "value": 2.0}, exact=True)
    case("i64", "transpose", [_arr((3, 4, 5))], {"perm": (2, 0, 1)}, exact=True)
    case("i64-tiled", "transpose", [_arr((2, 12, 40))], {"perm": (2, 0, 1)}, exact=True)
    case("i64", "random_uniform", [np.array(3, np.int64)], {"shape": (7, 9), "salt": 2}, exact=True)
    case("i64", "random_bernoulli", [np.array(3, np.int64), _arr((9,), F32, 0, 1)], {"shape": (7, 9)}, exact=True)
    case("i64", "one_hot", [np.array([0, 3, -1, 7], np.int32)], {"depth": 5}, exact=True)
    case("i64", "concatenate", [_arr((2, 3)), _arr((2, 4))], {"axis": 1}, exact=True)
finally:
    L.INT_LIMIT = _limit


# =========================================================================== build + run
NCHUNKS = 4
ARCHS = ("sm_80", "sm_90")


def _chunks():
    live = [c for c in CASES if c.lowering.launches]
    return [live[k::NCHUNKS] for k in range(NCHUNKS)]


def _unit(cases) -> str:
    return '#include "runtime.cuh"\n\n' + "\n".join(c.source() for c in cases)


def _nvrtc_compile(src, name, arch):
    from symfuse.runtime import nvrtc
    return nvrtc.compile_cuda(src, name, arch=arch, include_dirs=[L.INCLUDE_DIR])


@pytest.fixture(scope="module")
def builds(request):
    """Every unit built for cuda-emu and compiled by NVRTC for each arch, all at once on a
    thread pool (g++ runs as a subprocess and NVRTC releases the GIL): the emulator
    modules are waited for first, the NVRTC compiles go on while the cases run (only
    when an NVRTC test is selected)."""
    from symfuse.runtime.cuda_emu import EmuModule
    chunks = _chunks()
    units = [_unit(ch) for ch in chunks]
    ex = ThreadPoolExecutor(max(2, min(4, os.cpu_count() or 2)))
    want_nv = any("test_nvrtc" in item.nodeid for item in request.session.items)
    nv = {arch: [ex.submit(_nvrtc_compile, u, f"cuda_library_{k}", arch) for k, u in enumerate(units)]
          for arch in (ARCHS if want_nv else ())}
    emu = [ex.submit(EmuModule, u, f"cuda_library_{k}", [L.INCLUDE_DIR]) for k, u in enumerate(units)]
    yield chunks, emu, nv
    ex.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def modules(builds):
    chunks, emu, _ = builds
    mods = [f.result() for f in emu]
    return {c.index: mods[k] for k in range(NCHUNKS) for c in chunks[k]}


def _reference(c: Case):
    op = c.op
    with np.errstate(all="ignore"):
        out = op.opdef.ref([np.asarray(a) for a in c.ref_args], op.attrs)
    v = op.outputs[0]
    return np.asarray(out, dtype=v.type.dtype.np).reshape(v.type.shape)


def _run(c: Case, mod):
    op = c.op
    outs = [np.full(v.type.shape, 77, v.type.dtype.np) for v in op.outputs]   # garbage-filled
    args = c.buf_args + outs
    if c.lowering.scratch_bytes:
        args = args + [np.full(c.lowering.scratch_bytes, 0xAB, np.uint8)]      # garbage-filled
    for name, ln in zip(c.kernel_names(), c.lowering.launches):
        mod.launch(name, ln.grid, ln.block, args, shared_bytes=ln.shared_bytes)
    return outs


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_library_op(c: Case, modules):
    if not c.lowering.launches:
        assert c.op.outputs[0].type.size == 0 or c.op.opdef.name == "matmul"
        assert all(v.type.size == 0 for v in c.op.outputs)
        return
    got, want = _run(c, modules[c.index])[0], _reference(c)
    assert got.shape == want.shape and got.dtype == want.dtype
    if c.exact:
        np.testing.assert_array_equal(got, want)
    elif c.ulp is not None:
        np.testing.assert_array_max_ulp(got.astype(np.float32), want.astype(np.float32), maxulp=c.ulp)
    else:
        scale = np.nanmax(np.abs(want[np.isfinite(want)]), initial=1.0)
        np.testing.assert_allclose(got, want, rtol=c.tol, atol=c.tol * scale, equal_nan=True)


def test_deterministic_across_grids(modules):
    """Smaller grids (x and z) give the same bits: every kernel loops grid-stride over its
    work items and sums in an order fixed by the sizes alone."""
    picks, per_op = [], {}
    for c in CASES:
        name = c.op.opdef.name
        if c.lowering.launches and any(ln.grid[0] > 1 or ln.grid[2] > 1 for ln in c.lowering.launches) and \
                per_op.get(name, 0) < 2:
            per_op[name] = per_op.get(name, 0) + 1
            picks.append(c)
    assert len(per_op) >= 15
    for c in picks:
        want = _run(c, modules[c.index])[0]
        saved = list(c.lowering.launches)
        try:
            c.lowering.launches = [dataclasses.replace(ln, grid=(max(1, ln.grid[0] // 3), ln.grid[1],
                                                                 max(1, ln.grid[2] // 2))) for ln in saved]
            got = _run(c, modules[c.index])[0]
        finally:
            c.lowering.launches = saved
        np.testing.assert_array_equal(got, want, err_msg=c.name)


def test_covers_c_library():
    assert set(L.CUDA_LIBRARY) == set(CL.LIBRARY)
    # a collective launches nothing (the host runs it: tests/distributed/test_collectives.py)
    from symfuse.ir.core import OPS
    assert {c.op.opdef.name for c in CASES} == {n for n in CL.LIBRARY if OPS[n].kind != "collective"}


def test_launch_shapes():
    for c in CASES:
        for ln in c.lowering.launches:
            bx, by, bz = ln.block
            assert bx * by * bz <= 1024 and bx % 32 == 0, c.name
            gx, gy, gz = ln.grid
            assert 1 <= gx < 2**31 and 1 <= gy <= 65535 and 1 <= gz <= 65535, c.name


@pytest.fixture(scope="module")
def nvrtc_results(builds):
    pytest.importorskip("cuda.bindings", reason="NVRTC (cuda-bindings) is not installed")
    return {arch: [f.result() for f in futs] for arch, futs in builds[2].items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_no_spills(arch, nvrtc_results):
    res = {}
    for r in nvrtc_results[arch]:
        res.update(r.resources)
    bad = []
    for c in CASES:
        for k in c.kernel_names():
            assert k in res, f"{k} ({c.name}) missing from the {arch} cubin"
            r = res[k]
            if c.float32 and (r.spill_stores or r.spill_loads or r.stack_bytes):
                bad.append(f"{c.name} [{k}]: {r}")
    assert not bad, "\n".join(bad)


# =========================================================================== the precompiled library
# The GEMM-class, pooling, warp-per-row softmax-family and one_hot lowerings also name a
# kernel of the precompiled library (sizes and fast-divmod magic as kernel arguments,
# runtime/cuda_runtime.py). Every case that has one runs it here from the library's
# cuda-emu build: against the reference and against the shape-specialised kernel of the
# same case (same arithmetic, same order: the same bits).
LIB_CASES = [c for c in CASES if c.lowering.launches and all(ln.lib is not None for ln in c.lowering.launches)]


@pytest.fixture(scope="module")
def lib_module():
    from symfuse.runtime import cuda_runtime
    return cuda_runtime.emu_library()[0]


def _run_lib(c: Case, mod):
    op = c.op
    outs = [np.full(v.type.shape, 77, v.type.dtype.np) for v in op.outputs]
    scratch = np.full(c.lowering.scratch_bytes, 0xAB, np.uint8) if c.lowering.scratch_bytes else None
    for ln in c.lowering.launches:
        k = L.LIB_KERNELS[ln.lib.kernel]
        args = c.buf_args + outs + ([scratch] if k.scratch else []) + [v for v, _ in ln.lib.args]
        mod.launch(k.name, ln.grid, ln.block, args, shared_bytes=ln.shared_bytes)
    return outs


def test_library_covers_the_gemm_pooling_and_rowwise_cases():
    names = {c.op.opdef.name for c in LIB_CASES}
    assert names == {"matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "max_pool2d", "max_pool2d_grad",
                     "avg_pool2d", "avg_pool2d_grad", "softmax", "log_softmax", "logsumexp", "softmax_xent", "one_hot"}
    assert {ln.lib.kernel for c in LIB_CASES for ln in c.lowering.launches} == set(L.LIB_KERNELS)
    # float64 and 64-bit indexing stay shape-specialised
    assert all(c.op.outputs[0].type.dtype.name == "float32" for c in LIB_CASES)
    assert any(c.op.outputs[0].type.dtype.name == "float64" and c.op.opdef.name in L.LIB_GEMM and
               c.lowering.launches and c.lowering.launches[0].lib is None for c in CASES)


@pytest.mark.parametrize("c", LIB_CASES, ids=[c.name for c in LIB_CASES])
def test_library_kernel(c: Case, lib_module, modules):
    got = _run_lib(c, lib_module)[0]
    want = _reference(c)
    scale = np.nanmax(np.abs(want[np.isfinite(want)]), initial=1.0)
    np.testing.assert_allclose(got, want, rtol=c.tol or 1e-4, atol=(c.tol or 1e-4) * scale, equal_nan=True)
    np.testing.assert_array_equal(got, _run(c, modules[c.index])[0])


def test_fast_divmod_matches_python_divmod():
    """n // d == umulhi(2n, mul) >> shift for every divisor tried, on the numerators
    where a rounding error would show first (multiples of d and their neighbours,
    the top of the range)."""
    rng = np.random.default_rng(7)
    divisors = list(range(1, 2050)) + [2**k + e for k in range(11, 32) for e in (-1, 0, 1)] + \
        [int(d) for d in rng.integers(1, 2**31, 3000)]
    for d in divisors:
        if d > 2**31:
            continue
        mul, shift = L.fast_divmod(d)
        assert 0 < mul < 2**32 and 0 <= shift <= 31
        top = 2**31 - 1
        ns = [0, 1, d - 1, d, d + 1, top, top - 1, top - top % d, top - top % d - 1]
        ns += [int(n) for n in rng.integers(0, 2**31, 40)]
        ns += [q * d + r for q in (1, 2, 3, top // d) for r in (0, d - 1) if 0 <= q * d + r <= top]
        for n in ns:
            if not 0 <= n <= top:
                continue
            q = ((2 * n) * mul >> 32) >> shift
            assert (q, n - q * d) == divmod(n, d), (n, d, mul, shift)
    with pytest.raises(ValueError):
        L.fast_divmod(0)


def test_fast_divmod_on_the_device_code():
    """SfFastDiv as compiled (cuda-emu's __umulhi): the quotients and remainders of many
    divisors against numpy."""
    from symfuse.runtime.cuda_emu import EmuModule
    src = ('#include "runtime.cuh"\n'
           'extern "C" __global__ void divs(const int* __restrict__ n, int* __restrict__ q, int* __restrict__ r, '
           'int count, int dv_d, unsigned dv_m, unsigned dv_s) {\n'
           '  const SfFastDiv dv = SF_FASTDIV(dv);\n'
           '  SF_GRID_LOOP(int, i, count) { q[i] = dv.div(n[i]); r[i] = dv.mod(n[i]); }\n}\n')
    mod = EmuModule(src, "fastdiv", [L.INCLUDE_DIR])
    rng = np.random.default_rng(3)
    n = np.concatenate([np.arange(0, 5000), rng.integers(0, 2**31 - 1, 5000), [2**31 - 1, 2**31 - 2]]).astype(np.int32)
    for d in [1, 2, 3, 5, 7, 24, 25, 576, 1000, 4097, 65537, 99991, 2**20 + 7, 2**30 + 3, 2**31 - 1]:
        mul, shift = L.fast_divmod(d)
        q, r = np.zeros_like(n), np.zeros_like(n)
        mod.launch("divs", 16, 256, [n, q, r, n.size, d, mul, shift])
        np.testing.assert_array_equal(q, n // d, err_msg=str(d))
        np.testing.assert_array_equal(r, n % d, err_msg=str(d))


@pytest.mark.parametrize("arch", ARCHS)
def test_library_kernels_do_not_spill(arch):
    """Every kernel of the precompiled library, as built for this installation (built
    here if it is not yet), without spills or a stack frame."""
    pytest.importorskip("cuda.bindings", reason="NVRTC (cuda-bindings) is not installed")
    from symfuse.runtime import cuda_runtime
    lib = cuda_runtime.library(arch)
    assert set(lib.kernel_image) == set(L.LIB_KERNELS)
    for name in L.LIB_KERNELS:
        r = lib.resources[name]
        assert lib.image(name)[:4] == b"\x7fELF" and name.encode() + b"\0" in lib.image(name)
        assert 0 < r.registers <= 255 and not r.spills and r.stack_bytes == 0, (name, r)
