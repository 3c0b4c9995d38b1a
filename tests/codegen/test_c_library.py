"""The C runtime library (symfuse/templates/c/runtime.h) against the numpy references.

Every case builds one op with the symfuse API, lowers it with
``symfuse.codegen.c_library.LIBRARY`` into ``void run_<k>(void** p)``, and all
cases are compiled into a few shared objects (in parallel, once per test run),
then called through ctypes on numpy buffers and compared with ``op.opdef.ref``.
"""
from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen import c_library as L
from symfuse.codegen.render_c import CRenderer
from symfuse.ir.core import apply
from symfuse.runtime.toolchain import blas_link_flags

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

RNG = np.random.default_rng(1234)
CASES: list["Case"] = []


class Case:
    def __init__(self, name, op, ref_args, buf_args=None, hints=None, tol=None, exact=False):
        self.name, self.op, self.hints = name, op, hints or {}
        self.ref_args = ref_args
        self.buf_args = [np.ascontiguousarray(a) for a in (buf_args if buf_args is not None else ref_args)]
        self.tol, self.exact = tol, exact
        self.index = len(CASES)
        CASES.append(self)

    def c_function(self) -> str:
        op = self.op
        nin = len(op.inputs)
        ins = [f"((const {L.c_type(v.dtype)}*)p[{k}])" for k, v in enumerate(op.inputs)]
        outs = [f"(({L.c_type(v.dtype)}*)p[{nin + k}])" for k, v in enumerate(op.outputs)]
        body = L.LIBRARY[op.opdef.name](op, ins, outs, self.hints)
        helpers = ""
        if isinstance(body, L.Call):
            body, helpers = body.code, CRenderer().render_helpers(body.helpers) + "\n"
        return f"{helpers}/* {self.name} */\nvoid run_{self.index}(void** p) {{\n  {body}\n}}\n"


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

# --- matmul: batched, broadcast, transposition flags, int
for dt in (F32, F64):
    for sa, sb in [((5, 7), (7, 3)), ((4, 5, 7), (7, 3)), ((7,) * 0 + (4, 5, 7), (4, 7, 3)), ((5, 7), (2, 7, 3)),
                   ((2, 1, 5, 7), (3, 7, 6)), ((1, 5, 7), (4, 7, 3)), ((3, 1, 5, 7), (1, 2, 7, 3)),
                   ((64, 33), (33, 65))]:
        a, b = _arr(sa, dt), _arr(sb, dt)
        case(f"{dt}:{sa}@{sb}", "matmul", [a, b], tol=MM_TOL[dt])
        for ta, tb in [(True, False), (False, True), (True, True)]:
            ab = np.swapaxes(a, -1, -2) if ta else a
            bb = np.swapaxes(b, -1, -2) if tb else b
            Case(f"matmul:{dt}:{sa}@{sb}:T{int(ta)}{int(tb)}", _op("matmul", [a, b]), [a, b], [ab, bb],
                 hints={"trans_a": ta, "trans_b": tb, "a_shape": ab.shape, "b_shape": bb.shape}, tol=MM_TOL[dt])
for dt in ("int32", "int64"):
    case(f"{dt}", "matmul", [_arr((2, 3, 4), dt, -5, 5), _arr((4, 5), dt, -5, 5)], exact=True)
case("K=0", "matmul", [_arr((3, 0)), _arr((0, 4))], exact=True)

# --- softmax family: axis variants
for dt in (F32, F64):
    for shape, ax in [((6, 10), -1), ((6, 10), 0), ((3, 4, 5), 1), ((2, 70, 3), 1), ((2, 3, 130), 0), ((17,), 0),
                      ((4, 1000), -1)]:
        x = _arr(shape, dt, -5, 5)
        for opn in ("softmax", "log_softmax"):
            case(f"{dt}:{shape}:{ax}", opn, [x], {"axis": ax}, tol=ROW_TOL[dt])
        for kd in (False, True):
            case(f"{dt}:{shape}:{ax}:kd{kd}", "logsumexp", [x], {"axis": ax, "keepdims": kd}, tol=ROW_TOL[dt])
        t = RNG.dirichlet(np.ones(shape[ax]), size=int(np.prod(shape)) // shape[ax]).astype(dt)
        t = np.moveaxis(t.reshape(tuple(s for i, s in enumerate(shape) if i != ax % len(shape)) + (shape[ax],)),
                        -1, ax % len(shape))
        case(f"{dt}:{shape}:{ax}", "softmax_xent", [x, np.ascontiguousarray(t)], {"axis": ax}, tol=ROW_TOL[dt])
# non-finite rows: -inf entries, an all -inf row, +inf, NaN
xs = np.array([[1, -np.inf, 2, 3], [-np.inf] * 4, [np.inf, 1, 2, 3], [np.nan, 1, 2, 3], [1e30, 1e30, -1e30, 0]],
              np.float32)
for opn in ("softmax", "log_softmax", "logsumexp"):
    case("nonfinite", opn, [xs], {"axis": -1}, tol=1e-6)
    case("nonfinite-ax0", opn, [np.ascontiguousarray(xs.T)], {"axis": 0}, tol=1e-6)
case("nonfinite", "softmax_xent", [xs, np.full_like(xs, 0.25)], {"axis": -1}, tol=1e-6)

# --- conv2d and its gradients: strides, padding, dilation, groups
CONV = [((2, 3, 8, 9), (4, 3, 3, 3), {}),
        ((2, 3, 8, 9), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
        ((1, 4, 10, 7), (6, 2, 3, 2), {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
        ((2, 6, 7, 7), (6, 1, 3, 3), {"padding": 1, "groups": 6}),            # depthwise
        ((2, 5, 6, 6), (7, 5, 1, 1), {}),                                      # 1x1 direct gemm
        ((1, 2, 9, 9), (3, 2, 2, 2), {"stride": 3}),                           # stride leftovers
        ((2, 8, 12, 12), (16, 8, 3, 3), {"padding": 1}),
        ((2, 2, 9, 8), (3, 2, 3, 2), {"stride": (1, 2), "dilation": (2, 1)})]   # strided, dilated, no padding
# batched ungrouped convolutions pass shape-specialised im2col/col2im helpers; these
# cases also run the runtime's generic loops
GENERIC = {"specialise": False}
for dt in (F32, F64):
    for xs_, ws_, a in CONV:
        if xs_[0] > 1 and a.get("groups", 1) == 1:
            x, w = _arr(xs_, dt), _arr(ws_, dt)
            g = _arr(_op("conv2d", [x, w], a).outputs[0].shape, dt)
            case(f"{dt}:{xs_}*{ws_}:{a}:generic", "conv2d", [x, w], a, tol=MM_TOL[dt], hints=GENERIC)
            case(f"{dt}:{xs_}*{ws_}:{a}:generic", "conv2d_grad_input", [g, w], {**a, "input_shape": xs_},
                 tol=MM_TOL[dt], hints=GENERIC)
            case(f"{dt}:{xs_}*{ws_}:{a}:generic", "conv2d_grad_weight", [x, g], {**a, "weight_shape": ws_},
                 tol=MM_TOL[dt], hints=GENERIC)
    for xs_, ws_, a in CONV:
        x, w = _arr(xs_, dt), _arr(ws_, dt)
        y = _op("conv2d", [x, w], a)
        case(f"{dt}:{xs_}*{ws_}:{a}", "conv2d", [x, w], a, tol=MM_TOL[dt])
        g = _arr(y.outputs[0].shape, dt)
        case(f"{dt}:{xs_}*{ws_}:{a}", "conv2d_grad_input", [g, w], {**a, "input_shape": xs_}, tol=MM_TOL[dt])
        case(f"{dt}:{xs_}*{ws_}:{a}", "conv2d_grad_weight", [x, g], {**a, "weight_shape": ws_}, tol=MM_TOL[dt])

# --- pooling: overlapping windows, padding, ties
POOL = [((2, 3, 8, 8), {"kernel": 2}),
        ((1, 2, 5, 7), {"kernel": 2}),          # 2x2 windows that leave a row and a column out
        ((2, 3, 9, 7), {"kernel": 3, "stride": 2, "padding": 1}),
        ((1, 2, 7, 8), {"kernel": (3, 2), "stride": 1}),
        ((1, 2, 6, 6), {"kernel": 3, "stride": (2, 1), "padding": (1, 0)})]
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
     tol=1e-6)       # overlapping windows: the sums into one element may be taken in another order
# the 2x2 stride-2 path: NaN in each window position, all -inf, signed-zero ties
x22 = _arr((1, 2, 4, 6))
x22[0, 0, 0, 1] = x22[0, 0, 1, 2] = x22[0, 0, 3, 5] = np.nan
x22[0, 0, 2:4, 0:2] = -np.inf
x22[0, 1, 0:2, 0:2] = [[0.0, -0.0], [-0.0, 0.0]]
x22[0, 1, 2, 3] = np.nan
x22[0, 1, 3, 2] = np.nan
y22 = _op("max_pool2d", [x22], {"kernel": 2})
case("nan2x2", "max_pool2d", [x22], {"kernel": 2}, exact=True)
case("nan2x2", "max_pool2d_grad", [x22, y22.opdef.ref([x22], y22.attrs), _arr((1, 2, 2, 3))], {"kernel": 2},
     exact=True)

# --- take / take_grad: axes, index dtypes, negative and out-of-range indices (clamped)
for idt in ("int32", "int64", "uint8", "int8", "uint32"):
    lo = 0 if idt[0] == "u" else -9
    for xs_, ax, ish in [((7, 5), 0, (4,)), ((3, 7, 5), 1, (2, 3)), ((3, 5, 7), 2, (6,)), ((7,), 0, (3, 2))]:
        x = _arr(xs_, F32)
        idx = _arr(ish, idt, lo, 12)
        case(f"{idt}:{xs_}:{ax}:{ish}", "take", [x, idx], {"axis": ax}, exact=True)
        out_shape = xs_[:ax] + ish + xs_[ax + 1:]
        for dt in (F32, F64):
            case(f"{dt}:{idt}:{xs_}:{ax}:{ish}", "take_grad", [_arr(out_shape, dt), idx],
                 {"axis": ax, "size": xs_[ax]}, tol=ROW_TOL[dt])
case("int64-data", "take", [_arr((6, 3), "int64", -100, 100), np.array([5, -1, 0, 9], np.int64)], {"axis": 0},
     exact=True)
case("big-post", "take_grad", [_arr((2, 5000)), np.array([1, 1], np.int32)], {"axis": 0, "size": 3},
     tol=1e-6)
case("u64", "take", [_arr((5, 2)), np.array([0, 4, 2**63 + 5, 7], np.uint64)], {"axis": 0}, exact=True)

# --- one_hot: index dtypes, output dtypes, out-of-range rows
for idt in ("int32", "int64", "uint8"):
    for odt in ("float32", "float64", "int32", "bool"):
        lo = 0 if idt[0] == "u" else -3
        case(f"{idt}->{odt}", "one_hot", [_arr((3, 4), idt, lo, 8)], {"depth": 6, "dtype": odt}, exact=True)

# --- argmax / argmin: axis None/int, keepdims, ties, NaN, int dtypes
for dt in (F32, F64, "int32", "int64", "uint8"):
    x = _arr((4, 6, 5), dt, 0, 4) if dt[0] in "iu" else np.round(_arr((4, 6, 5), dt) * 2) / 2
    for ax in (None, 0, 1, 2):
        for kd in (False, True):
            for opn in ("argmax", "argmin"):
                case(f"{dt}:{ax}:kd{kd}", opn, [x], {"axis": ax, "keepdims": kd}, exact=True)
xa = _arr((3, 5))
xa[1, 2] = np.nan
xa[1, 4] = np.nan
xa[2, 0] = np.nan
for opn in ("argmax", "argmin"):
    case("nan", opn, [xa], {"axis": 1}, exact=True)
    case("nan0", opn, [xa], {"axis": 0}, exact=True)
    case("nanflat", opn, [xa], {"axis": None}, exact=True)
case("wide", "argmax", [_arr((3, 200, 150))], {"axis": 1}, exact=True)

# --- random: bit-exact uniform / bernoulli, normal to a few ulp
for sdt, seed in (("int32", 7), ("int64", -3), ("uint32", 4000000000), ("int64", 2**40 + 9)):
    s = np.array(seed, sdt)
    for dt in (F32, F64):
        for salt in (0, 12345):
            case(f"{sdt}:{seed}:{dt}:{salt}", "random_uniform", [s], {"shape": (5, 37), "dtype": dt, "salt": salt},
                 exact=True)
            case(f"{sdt}:{seed}:{dt}:{salt}", "random_normal", [s], {"shape": (3, 41), "dtype": dt, "salt": salt},
                 tol=1e-5)
        for pshape, pdt in (((), F32), ((37,), F64), ((5, 1), F32), ((5, 37), F64)):
            case(f"{sdt}:{dt}:p{pshape}{pdt}", "random_bernoulli", [s, _arr(pshape, pdt, 0, 1)],
                 {"shape": (5, 37), "dtype": dt, "salt": 3}, exact=True)
case("big", "random_uniform", [np.array(11, np.int32)], {"shape": (300, 301), "salt": 1}, exact=True)

# --- concatenate / pad
for dt in (F32, "int64", "bool", "uint8"):
    mk = (lambda s: _arr(s, dt, 0, 2).astype(dt)) if dt in ("bool", "uint8") else (lambda s: _arr(s, dt, -9, 9))
    for ax, shapes in ((0, [(2, 3), (4, 3), (1, 3)]), (1, [(2, 3, 4), (2, 1, 4), (2, 0, 4), (2, 5, 4)]),
                       (2, [(2, 3, 1), (2, 3, 2)])):
        case(f"{dt}:{ax}", "concatenate", [mk(s) for s in shapes], {"axis": ax}, exact=True)
    for xs_, lo, hi, it, val in (((3, 4), (1, 0), (2, 3), (0, 0), 0.0), ((3, 4), (0, 2), (1, 0), (1, 2), 1.5),
                                 ((2, 3, 4), (1, 1, 1), (0, 2, 0), (0, 1, 0), -2.0), ((0, 3), (1, 1), (1, 0), (0, 0), 3.0)):
        case(f"{dt}:{xs_}:{lo}{hi}{it}:{val}", "pad", [mk(xs_)], {"lo": lo, "hi": hi, "interior": it, "value": val},
             exact=True)
case("inf", "pad", [_arr((2, 2))], {"lo": (1, 1), "hi": (0, 0), "interior": (0, 0), "value": -np.inf}, exact=True)

# --- standalone view copies (strided copy helper)
x4 = _arr((2, 3, 4, 5))
case("perm", "transpose", [x4], {"perm": (2, 0, 3, 1)}, exact=True)
case("bcast", "broadcast_to", [_arr((3, 1, 5))], {"shape": (2, 3, 4, 5)}, exact=True)
case("step", "slice", [x4], {"start": (1, 0, 1, 0), "stop": (2, 3, 4, 5), "step": (1, 2, 2, 1)}, exact=True)
case("axes", "flip", [x4], {"axes": (1, 3)}, exact=True)
case("r", "reshape", [x4], {"shape": (6, 20)}, exact=True)


# --- sizes above the OpenMP thresholds (parallel paths)
for dt in (F32, F64):
    xb = _arr((64, 1000), dt, -5, 5)
    case(f"{dt}:big", "softmax", [xb], {"axis": -1}, tol=ROW_TOL[dt])
    case(f"{dt}:big-ax0", "log_softmax", [xb], {"axis": 0}, tol=ROW_TOL[dt])
    case(f"{dt}:big", "softmax_xent", [xb, np.full_like(xb, 1e-3)], {"axis": -1}, tol=ROW_TOL[dt])
    xc, wc = _arr((2, 16, 32, 32), dt), _arr((24, 16, 3, 3), dt)
    yc = _op("conv2d", [xc, wc], {"padding": 1, "stride": 1})
    gc = _arr(yc.outputs[0].shape, dt)
    case(f"{dt}:big", "conv2d", [xc, wc], {"padding": 1}, tol=MM_TOL[dt])
    case(f"{dt}:big", "conv2d_grad_input", [gc, wc], {"padding": 1, "input_shape": xc.shape}, tol=MM_TOL[dt])
    case(f"{dt}:big", "conv2d_grad_weight", [xc, gc], {"padding": 1, "weight_shape": wc.shape}, tol=MM_TOL[dt])
    xp = _arr((4, 16, 32, 32), dt)
    yp = _op("max_pool2d", [xp], {"kernel": 3, "stride": 2, "padding": 1})
    ypv = yp.opdef.ref([xp], yp.attrs)
    case(f"{dt}:big", "max_pool2d", [xp], {"kernel": 3, "stride": 2, "padding": 1}, exact=True)
    case(f"{dt}:big", "max_pool2d_grad", [xp, ypv, _arr(ypv.shape, dt)], {"kernel": 3, "stride": 2, "padding": 1},
         tol=ROW_TOL[dt])
    case(f"{dt}:big", "avg_pool2d", [xp], {"kernel": 2}, tol=ROW_TOL[dt])
    case(f"{dt}:big", "avg_pool2d_grad", [_arr((4, 16, 16, 16), dt)], {"kernel": 2, "input_shape": xp.shape},
         tol=ROW_TOL[dt])
    case(f"{dt}:big", "take_grad", [_arr((64, 300, 40), dt), _arr((300,), "int64", -50, 50)],
         {"axis": 1, "size": 37}, tol=ROW_TOL[dt])
    case(f"{dt}:big", "matmul", [_arr((8, 64, 48), dt), _arr((8, 48, 40), dt)], tol=MM_TOL[dt])
case("big", "take", [_arr((500, 256)), _arr((800,), "int32", -600, 600)], {"axis": 0}, exact=True)
case("big", "concatenate", [_arr((300, 200)), _arr((300, 500))], {"axis": 1}, exact=True)
case("big", "pad", [_arr((300, 300))], {"lo": (2, 2), "hi": (3, 3), "interior": (1, 0), "value": 1.0}, exact=True)
case("big", "random_normal", [np.array(5, np.int64)], {"shape": (200, 300)}, tol=1e-5)
case("big", "random_bernoulli", [np.array(5, np.int64), _arr((300,), F32, 0, 1)], {"shape": (200, 300)}, exact=True)
case("big", "argmin", [_arr((300, 400))], {"axis": 1}, exact=True)
case("big", "matmul", [_arr((400, 300), "int32", -3, 3), _arr((300, 50), "int32", -3, 3)], exact=True)


# =========================================================================== build + run
NCHUNKS = 4


@pytest.fixture(scope="module")
def libs():
    tmp = tempfile.mkdtemp(prefix="sf_clib_")
    chunks = [CASES[k::NCHUNKS] for k in range(NCHUNKS)]

    def build(k):
        src = os.path.join(tmp, f"lib{k}.c")
        so = os.path.join(tmp, f"lib{k}.so")
        with open(src, "w") as f:
            f.write('#include <stdint.h>\n#include <math.h>\n#include <tgmath.h>\n#include "runtime.h"\n\n')
            f.write("\n".join(c.c_function() for c in chunks[k]))
        cmd = ["cc", *L.COMPILE_FLAGS, f"-I{L.INCLUDE_DIR}", "-o", so, src, *blas_link_flags(), "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"compile failed: {' '.join(cmd)}\n{r.stderr[:20000]}")
        return ctypes.CDLL(so)

    with ThreadPoolExecutor(NCHUNKS) as ex:
        dlls = list(ex.map(build, range(NCHUNKS)))
    yield {c.index: dlls[k] for k in range(NCHUNKS) for c in chunks[k]}
    shutil.rmtree(tmp, ignore_errors=True)


def _reference(c: Case):
    op = c.op
    with np.errstate(all="ignore"):
        out = op.opdef.ref([np.asarray(a) for a in c.ref_args], op.attrs)
    v = op.outputs[0]
    return np.asarray(out, dtype=v.type.dtype.np).reshape(v.type.shape)


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_library_op(c: Case, libs):
    op = c.op
    outs = [np.full(v.type.shape, 77, v.type.dtype.np) for v in op.outputs]   # garbage-filled
    bufs = c.buf_args + outs
    arr = (ctypes.c_void_p * max(1, len(bufs)))(*[b.ctypes.data for b in bufs])
    getattr(libs[c.index], f"run_{c.index}")(arr)
    got, want = outs[0], _reference(c)
    assert got.shape == want.shape and got.dtype == want.dtype
    if c.exact:
        np.testing.assert_array_equal(got, want)
    else:
        scale = np.nanmax(np.abs(want[np.isfinite(want)]), initial=1.0)
        np.testing.assert_allclose(got, want, rtol=c.tol, atol=c.tol * scale, equal_nan=True)
