"""Lowering table for the C runtime library (``symfuse/templates/c/runtime.h``).

``LIBRARY[op_name](op, ins, outs, hints) -> str`` returns one C statement (a
braced block when it needs several) that computes ``op`` by calling the runtime
library, or a ``Call`` (that statement plus the shape-specialised helper
functions it passes, which the caller renders before it: the convolutions'
im2col / col2im). ``ins`` / ``outs`` are C expressions for the operand / result pointers,
already of the right pointer type (``const float*`` ...). Every size and
attribute is emitted as a literal taken from the op's static types and
attributes, so gcc specialises the ``static`` library functions per call site.

``hints`` is optional; only matmul reads it:
    trans_a / trans_b: bool  -- the buffer passed for that operand holds the
                               transpose of its last two axes (so that
                               ``matmul(transpose(a), b)`` runs on a's buffer);
    a_shape / b_shape: tuple -- the shapes of the buffers actually passed
                               (pre-transpose); default: the op's input shapes.

The translation unit must ``#include "runtime.h"`` (``INCLUDE_DIR``) and be
linked with ``blas_link_flags()``; ``COMPILE_FLAGS`` are the flags it was
tested with.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

from ..ir.symdim import SymInt
from ..install_dirs import C_TEMPLATE_DIR
from .c_collective import COLLECTIVE
from .index import collapse_dims, row_major_strides, split_axis
from .kernel import c_literal, c_type, value_literal

INCLUDE_DIR = C_TEMPLATE_DIR
RUNTIME_HEADER = os.path.join(INCLUDE_DIR, "runtime.h")
COMPILE_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]
REQUIRED_LIBS = ["scipy_openblas"]


def suffix(dtype) -> str:
    """Function-name suffix of a dtype: its IR short name (bool -> u8)."""
    return "u8" if dtype.is_bool else dtype.short


NUMERIC = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64")


def _numeric_sfx(dtype, op) -> str:
    if dtype.name not in NUMERIC:
        raise NotImplementedError(f"the C runtime has no {op.opdef.name} for {dtype}")
    return dtype.short


def _float_sfx(dtype, op) -> str:
    if dtype.name not in ("float32", "float64"):
        raise NotImplementedError(f"the C runtime implements {op.opdef.name} for float32/float64 only, got {dtype}")
    return dtype.short


def _lit(v) -> str:
    return str(v) if type(v) is SymInt else str(int(v))   # a run-time size prints as its C expression


def _arr(xs) -> str:
    xs = list(xs) or [0]
    return "(const int64_t[]){" + ", ".join(_lit(x) for x in xs) + "}"


def _empty(op) -> bool:
    return any(o.type.size == 0 for o in op.outputs)


EMPTY = "/* empty result: nothing to do */;"


# =========================================================================== matmul
def _gemm_args(op, hints) -> str | None:
    """The shape arguments of sf_matmul / sf_gemm (after the pointers), or None
    for an empty result."""
    a_t, b_t = op.inputs[0].type, op.inputs[1].type
    ta, tb = bool(hints.get("trans_a", False)), bool(hints.get("trans_b", False))
    a_shape = tuple(hints.get("a_shape") or a_t.shape)
    b_shape = tuple(hints.get("b_shape") or b_t.shape)

    def logical(shape, t):
        return shape[:-2] + (shape[-1], shape[-2]) if t else shape

    if logical(a_shape, ta) != a_t.shape or logical(b_shape, tb) != b_t.shape:
        raise ValueError(f"{op.opdef.name} hints {hints} do not match operands {a_t} @ {b_t}")
    if _empty(op):
        return None
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
    return f"{len(bshape)}, {_arr(bshape)}, {_arr(ast)}, {_arr(bst)}, {M}, {N}, {K}, {int(ta)}, {int(tb)}"


def lower_matmul(op, ins, outs, hints) -> str:
    args = _gemm_args(op, hints)
    if args is None:
        return EMPTY
    sfx = _numeric_sfx(op.outputs[0].type.dtype, op)
    return f"sf_matmul_{sfx}({ins[0]}, {ins[1]}, {outs[0]}, {args});"


def lower_gemm(op, ins, outs, hints) -> str:
    """C = alpha * A @ B + beta * Z (``passes/blas.py``): Z is copied into C, then
    BLAS accumulates the product into it."""
    args = _gemm_args(op, hints)
    if args is None:
        return EMPTY
    dt = op.outputs[0].type.dtype
    sfx = _float_sfx(dt, op)
    alpha, beta = (c_literal(op.attrs[k], dt) for k in ("alpha", "beta"))
    return f"sf_gemm_{sfx}({ins[0]}, {ins[1]}, {ins[2]}, {outs[0]}, {args}, {alpha}, {beta});"


# =========================================================================== softmax family
def _rowwise(name):
    def lower(op, ins, outs, hints) -> str:
        x = op.inputs[0].type
        if _empty(op) or x.size == 0:
            return EMPTY
        outer, n, inner = split_axis(x.shape, op.attrs["axis"])
        sfx = _float_sfx(x.dtype, op)
        args = ", ".join(ins + outs)
        return f"sf_{name}_{sfx}({args}, {outer}, {n}, {inner});"
    return lower


# =========================================================================== convolution
@dataclass(frozen=True)
class Helper:
    """A shape-specialised C function a library call passes to the runtime,
    rendered from ``templates/c/<template>`` with ``params`` by the C renderer (its
    definition is guarded, so kernels sharing one define it once a unit)."""
    name: str
    template: str
    params: tuple           # (key, value) pairs

    def values(self) -> dict:
        return dict(self.params, name=self.name)


@dataclass(frozen=True)
class Call:
    """A library call that needs helpers defined before it."""
    code: str
    helpers: tuple[Helper, ...]


def _conv_helper(kind: str, dt, xs, ws, ys, a, hints) -> Helper | None:
    """The im2col / col2im of one image specialised to these sizes, where the runtime
    uses one (ungrouped, batched, not 1x1: its per-image path); None otherwise or when
    ``hints["specialise"]`` is False (tests reach the generic loops that way)."""
    n, c, h, w = xs
    kh, kw = ws[2:]
    ho, wo = ys[2:]
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    one_by_one = kh == kw == sh == sw == 1 and ph == pw == 0
    if a["groups"] != 1 or n <= 1 or one_by_one or not hints.get("specialise", True):
        return None
    inside = ph == pw == 0 and (ho - 1) * sh + (kh - 1) * dh < h and (wo - 1) * sw + (kw - 1) * dw < w
    params = dict(ctype=c_type(dt), C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, DH=dh, DW=dw,
                  HO=ho, WO=wo, inside=inside)
    name = f"sf_{kind}_{dt.name}_" + "_".join(str(params[k]) for k in ("C", "H", "W", "KH", "KW", "SH", "SW", "PH",
                                                                         "PW", "DH", "DW", "HO", "WO"))
    return Helper(name, f"conv_{kind}.c.j2", tuple(params.items()))


def _conv_call(fn: str, args: str, helper: Helper | None):
    code = f"{fn}({args}, {helper.name if helper else 'NULL'});"
    return Call(code, (helper,)) if helper else code


def _conv_args(xs, ws, ys, a) -> str:
    n, c, h, w = xs
    o, _, kh, kw = ws
    ho, wo = ys[2:]
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return ", ".join(map(_lit, (n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, a["groups"], ho, wo)))


def lower_conv2d(op, ins, outs, hints):
    x, w = op.inputs
    y = op.outputs[0]
    if _empty(op):
        return EMPTY
    shapes = (x.shape, w.shape, y.shape, op.attrs)
    return _conv_call(f"sf_conv2d_{_float_sfx(x.dtype, op)}", f"{ins[0]}, {ins[1]}, {outs[0]}, {_conv_args(*shapes)}",
                      _conv_helper("im2col", x.dtype, *shapes, hints or {}))


def lower_conv2d_grad_input(op, ins, outs, hints):
    g, w = op.inputs
    if _empty(op):
        return EMPTY
    shapes = (op.attrs["input_shape"], w.shape, g.shape, op.attrs)
    return _conv_call(f"sf_conv2d_grad_input_{_float_sfx(g.dtype, op)}",
                      f"{ins[0]}, {ins[1]}, {outs[0]}, {_conv_args(*shapes)}",
                      _conv_helper("col2im", g.dtype, *shapes, hints or {}))


def lower_conv2d_grad_weight(op, ins, outs, hints):
    x, g = op.inputs
    if _empty(op):
        return EMPTY
    shapes = (x.shape, op.attrs["weight_shape"], g.shape, op.attrs)
    return _conv_call(f"sf_conv2d_grad_weight_{_float_sfx(x.dtype, op)}",
                      f"{ins[0]}, {ins[1]}, {outs[0]}, {_conv_args(*shapes)}",
                      _conv_helper("im2col", x.dtype, *shapes, hints or {}))


# =========================================================================== pooling
def _pool_args(xs, ys, a) -> str:
    n, c, h, w = xs
    ho, wo = ys[2:]
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    return ", ".join(map(_lit, (n * c, h, w, kh, kw, sh, sw, ph, pw, ho, wo)))


def lower_max_pool2d(op, ins, outs, hints) -> str:
    x, y = op.inputs[0], op.outputs[0]
    if _empty(op):
        return EMPTY
    return f"sf_max_pool2d_{_float_sfx(x.dtype, op)}({ins[0]}, {outs[0]}, {_pool_args(x.shape, y.shape, op.attrs)});"


def lower_max_pool2d_grad(op, ins, outs, hints) -> str:
    x, _, g = op.inputs
    if _empty(op):
        return EMPTY
    return (f"sf_max_pool2d_grad_{_float_sfx(x.dtype, op)}({ins[0]}, {ins[2]}, {outs[0]}, "
            f"{_pool_args(x.shape, g.shape, op.attrs)});")


def lower_avg_pool2d(op, ins, outs, hints) -> str:
    x, y = op.inputs[0], op.outputs[0]
    if _empty(op):
        return EMPTY
    return f"sf_avg_pool2d_{_float_sfx(x.dtype, op)}({ins[0]}, {outs[0]}, {_pool_args(x.shape, y.shape, op.attrs)});"


def lower_avg_pool2d_grad(op, ins, outs, hints) -> str:
    g = op.inputs[0]
    if _empty(op):
        return EMPTY
    return (f"sf_avg_pool2d_grad_{_float_sfx(g.dtype, op)}({ins[0]}, {outs[0]}, "
            f"{_pool_args(op.attrs['input_shape'], g.shape, op.attrs)});")


# =========================================================================== gather / one-hot
def lower_take(op, ins, outs, hints) -> str:
    x, idx = op.inputs
    if _empty(op):
        return EMPTY
    pre, n, post = split_axis(x.shape, op.attrs["axis"])
    rb = post * x.dtype.itemsize
    return (f"sf_take_{suffix(idx.dtype)}((const void*)({ins[0]}), {ins[1]}, (void*)({outs[0]}), "
            f"{pre}, {n}, {idx.size}, {rb});")


def lower_take_grad(op, ins, outs, hints) -> str:
    g, idx = op.inputs
    if _empty(op):
        return EMPTY
    ax, n = op.attrs["axis"], op.attrs["size"]
    pre, post = math.prod(g.shape[:ax]), math.prod(g.shape[ax + idx.ndim:])
    return (f"sf_take_grad_{_float_sfx(g.dtype, op)}_{suffix(idx.dtype)}({ins[0]}, {ins[1]}, {outs[0]}, "
            f"{pre}, {n}, {idx.size}, {post});")


def lower_one_hot(op, ins, outs, hints) -> str:
    idx, out = op.inputs[0], op.outputs[0]
    if _empty(op):
        return EMPTY
    dt = out.type.dtype
    return (f"sf_one_hot_{suffix(idx.dtype)}({ins[0]}, (void*)({outs[0]}), {idx.size}, {op.attrs['depth']}, "
            f"{dt.itemsize}, &({c_type(dt)}){{1}});")


# =========================================================================== argmax / argmin
def _arg(name):
    def lower(op, ins, outs, hints) -> str:
        x = op.inputs[0].type
        ax = op.attrs["axis"]
        outer, n, inner = (1, x.size, 1) if ax is None else split_axis(x.shape, ax)
        return f"sf_{name}_{_numeric_sfx(x.dtype, op)}({ins[0]}, {outs[0]}, {outer}, {n}, {inner});"
    return lower


# =========================================================================== random
def _seed(expr) -> str:
    return f"(uint32_t)(({expr})[0])"


def _random(name):
    def lower(op, ins, outs, hints) -> str:
        out = op.outputs[0].type
        if out.size == 0:
            return EMPTY
        return (f"sf_{name}_{_float_sfx(out.dtype, op)}({_seed(ins[0])}, {op.attrs['salt']}u, {outs[0]}, "
                f"{out.size});")
    return lower


def lower_random_bernoulli(op, ins, outs, hints) -> str:
    out = op.outputs[0].type
    p = op.inputs[1].type
    if out.size == 0:
        return EMPTY
    shape = out.shape
    ps = (1,) * (len(shape) - p.ndim) + p.shape
    pst = [0 if d == 1 else s for d, s in zip(ps, row_major_strides(ps))]
    oshape, pst = collapse_dims(shape, pst)
    if not oshape:
        oshape, pst = [1], [0]
    pdouble = {"float32": 0, "float64": 1}.get(p.dtype.name)
    if pdouble is None:
        raise NotImplementedError(f"random_bernoulli: p must be float32/float64, got {p.dtype}")
    return (f"sf_random_bernoulli_{_float_sfx(out.dtype, op)}({_seed(ins[0])}, {op.attrs['salt']}u, "
            f"(const void*)({ins[1]}), {pdouble}, {outs[0]}, {len(oshape)}, {_arr(oshape)}, {_arr(pst)});")


# =========================================================================== data movement
def _copy(src, dst, shape, sst, dst_st, es) -> str:
    """One sf_strided_copy (or memcpy) call; strides in elements."""
    shape, sst, dst_st = collapse_dims(shape, sst, dst_st)
    if not shape:
        shape, sst, dst_st = [1], [1], [1]
    if len(shape) == 1 and sst == [1] and dst_st == [1]:
        return f"memcpy({dst}, {src}, {shape[0] * es});"
    return (f"sf_strided_copy({src}, {dst}, {len(shape)}, {_arr(shape)}, {_arr(sst)}, {_arr(dst_st)}, {es});")


def lower_concatenate(op, ins, outs, hints) -> str:
    out = op.outputs[0].type
    if out.size == 0:
        return EMPTY
    ax = op.attrs["axis"]
    es = out.dtype.itemsize
    outer, total, inner = split_axis(out.shape, ax)
    stmts, off = [], 0
    for e, v in zip(ins, op.inputs):
        n = v.type.shape[ax]
        if n and outer:
            rb = n * inner * es
            stmts.append(f"sf_copy2d((const void*)({e}), (void*)((char*)({outs[0]}) + {off}), {outer}, {rb}, {rb}, "
                         f"{total * inner * es});")
        off += n * inner * es
    return "{ " + " ".join(stmts) + " }"


def lower_pad(op, ins, outs, hints) -> str:
    x, out = op.inputs[0].type, op.outputs[0].type
    if out.size == 0:
        return EMPTY
    dt, es = out.dtype, out.dtype.itemsize
    a = op.attrs
    fill = value_literal(a["value"], dt)
    stmts = [f"sf_fill_bytes((void*)({outs[0]}), {out.size}, {es}, &({c_type(dt)}){{{fill}}});"]
    if x.size:
        ost = row_major_strides(out.shape)
        base = sum(lo * s for lo, s in zip(a["lo"], ost))
        dst_st = [s * (i + 1) for s, i in zip(ost, a["interior"])]
        stmts.append(_copy(f"(const void*)({ins[0]})", f"(void*)((char*)({outs[0]}) + {base * es})",
                           x.shape, row_major_strides(x.shape), dst_st, es))
    return "{ " + " ".join(stmts) + " }"


def _view_copy(op, ins, outs, src_strides, base):
    out = op.outputs[0].type
    if out.size == 0:
        return EMPTY
    es = out.dtype.itemsize
    return _copy(f"(const void*)((const char*)({ins[0]}) + {base * es})", f"(void*)({outs[0]})",
                 out.shape, src_strides, row_major_strides(out.shape), es)


def lower_transpose(op, ins, outs, hints) -> str:
    st = row_major_strides(op.inputs[0].type.shape)
    return _view_copy(op, ins, outs, [st[p] for p in op.attrs["perm"]], 0)


def lower_broadcast_to(op, ins, outs, hints) -> str:
    x = op.inputs[0].type
    shape = op.outputs[0].type.shape
    xs = (1,) * (len(shape) - x.ndim) + x.shape
    return _view_copy(op, ins, outs, [0 if d == 1 else s for d, s in zip(xs, row_major_strides(xs))], 0)


def lower_slice(op, ins, outs, hints) -> str:
    st = row_major_strides(op.inputs[0].type.shape)
    a = op.attrs
    return _view_copy(op, ins, outs, [s * k for s, k in zip(st, a["step"])],
                      sum(b * s for b, s in zip(a["start"], st)))


def lower_flip(op, ins, outs, hints) -> str:
    x = op.inputs[0].type
    st = row_major_strides(x.shape)
    axes = set(op.attrs["axes"])
    return _view_copy(op, ins, outs, [-s if d in axes else s for d, s in enumerate(st)],
                      sum((x.shape[d] - 1) * st[d] for d in axes))


def lower_reshape(op, ins, outs, hints) -> str:
    out = op.outputs[0].type
    if out.size == 0:
        return EMPTY
    return f"memcpy((void*)({outs[0]}), (const void*)({ins[0]}), {out.nbytes});"


# =========================================================================== the table
# Most-used first. Ops the fusion pass normally handles itself (views) are at the end:
# they are here so that a standalone view can also be a library copy.
LIBRARY: dict[str, Callable] = {
    "matmul": lower_matmul,
    "gemm": lower_gemm,
    "softmax_xent": _rowwise("softmax_xent"),
    "softmax": _rowwise("softmax"),
    "log_softmax": _rowwise("log_softmax"),
    "logsumexp": _rowwise("logsumexp"),
    "conv2d": lower_conv2d,
    "conv2d_grad_input": lower_conv2d_grad_input,
    "conv2d_grad_weight": lower_conv2d_grad_weight,
    "max_pool2d": lower_max_pool2d,
    "max_pool2d_grad": lower_max_pool2d_grad,
    "avg_pool2d": lower_avg_pool2d,
    "avg_pool2d_grad": lower_avg_pool2d_grad,
    "one_hot": lower_one_hot,
    "take": lower_take,
    "take_grad": lower_take_grad,
    "argmax": _arg("argmax"),
    "argmin": _arg("argmin"),
    "random_uniform": _random("random_uniform"),
    "random_normal": _random("random_normal"),
    "random_bernoulli": lower_random_bernoulli,
    "concatenate": lower_concatenate,
    "pad": lower_pad,
    "transpose": lower_transpose,
    "broadcast_to": lower_broadcast_to,
    "slice": lower_slice,
    "flip": lower_flip,
    "reshape": lower_reshape,
    **COLLECTIVE,
}

__all__ = ["LIBRARY", "INCLUDE_DIR", "RUNTIME_HEADER", "COMPILE_FLAGS", "REQUIRED_LIBS", "c_type", "suffix"]
