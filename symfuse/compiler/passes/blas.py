"""BLAS lowering rewrites (tag "blas"), run by backends that call a BLAS (they
name the tag in ``Backend.lower_passes``; the lowering database runs it).

``gemm_accumulate`` turns ``z + c * (a @ b)`` (and ``z - ...``, ``... + z``,
``... - z``, with or without the scalar ``c``) into one ``gemm`` op, BLAS's
``C = alpha * A @ B + beta * C`` (a scalar multiple of ``z`` goes into beta):
the SGD update of a weight matrix,
``W - lr * (x.T @ dy)``, becomes the weight gradient's own GEMM accumulating
into a copy of ``W``, instead of a GEMM that writes the gradient and a pass
that reads it back. PyTensor's Gemm rewrite does the same. The product is
rounded once more or less than before (BLAS may fuse ``alpha * acc + C``), so
this runs only when lowering for such a backend, not in the portable passes.
``column_sum_gemv`` computes a large sum over leading axes as a matrix-vector
product (``COLUMN_SUM_ROWS``).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ...ir import build as F
from ...ir.core import Function, apply
from .lowering import lowering
from .rewrite import REWRITES, RewriteContext, apply_rewrites, rewrite

BLAS = ("blas",)


def _scaled(v, ctx):
    """(w, c) when ``v`` is ``w * c`` for a scalar constant c, used nowhere else, of w's type."""
    op = ctx.producer(v, "mul")
    if op is None or not ctx.single_use(v):
        return None
    for w, c in (op.inputs, op.inputs[::-1]):
        s = ctx.scalar(c)
        if isinstance(s, (int, float)) and w.type is v.type and ctx.scalar(w) is None:
            return w, float(s)
    return None


def _scaled_product(v, ctx):
    """(matmul op, alpha) when ``v`` is ``a @ b`` or a scalar constant times it,
    used nowhere else; else None."""
    if not ctx.single_use(v):
        return None
    mm = ctx.producer(v, "matmul")
    if mm is not None:
        return mm, 1.0
    scaled = _scaled(v, ctx)
    if scaled is None or not ctx.single_use(scaled[0]):
        return None
    mm = ctx.producer(scaled[0], "matmul")
    return (mm, scaled[1]) if mm is not None else None


@rewrite("gemm_accumulate", ("add", "sub"), tags=BLAS)
def gemm_accumulate(op, ctx):
    """beta * z + alpha * (a @ b) -> gemm(a, b, z) {alpha, beta}, z of the product's type."""
    out = op.outputs[0].type
    # a sum used twice stays a pointwise kernel: SGD with momentum's velocity, v' = mu*v - lr*g,
    # also feeds p + v', and one kernel writing v' and p' beats a gemm then a pass over v'
    # (measured: the MLP momentum step 3-5 % slower with the gemm)
    if not out.dtype.is_float or not ctx.single_use(op.outputs[0]):
        return None
    x, y = op.inputs
    sign = -1.0 if op.opdef.name == "sub" else 1.0
    for prod, z, alpha_sign, beta in ((y, x, sign, 1.0), (x, y, 1.0, sign)):
        hit = _scaled_product(prod, ctx)
        if hit is None or z.type is not out:
            continue
        mm, alpha = hit
        if mm.outputs[0].type is not out:
            continue
        scaled = _scaled(z, ctx)      # weight decay: (1 - wd) * W - lr * g is gemm(.., W, beta=1 - wd)
        if scaled is not None:
            z, beta = scaled[0], beta * scaled[1]
        return apply("gemm", [mm.inputs[0], mm.inputs[1], z], {"alpha": alpha_sign * alpha, "beta": beta})
    return None


# a sum over the leading axes of at least this many rows (and this many columns) is a
# product with a row of ones: the reduction kernel reads each column with the row stride
# (the bias gradient of a recurrent layer, 3200 x 1024: 20 ms as a reduction, 1.5 ms as gemv)
COLUMN_SUM_ROWS = 1024
COLUMN_SUM_COLS = 64


@rewrite("column_sum_gemv", "sum", tags=BLAS)
def column_sum_gemv(op, ctx):
    """sum(x, leading axes) of a large float x -> ones(1, rows) @ reshape(x, (rows, cols)):
    BLAS's matrix-vector product streams the rows (another summation order)."""
    x = op.inputs[0]
    axes = tuple(op.attrs["axis"])
    k = len(axes)
    if not x.dtype.is_float or op.attrs["keepdims"] or axes != tuple(range(k)) or k == x.ndim or x.dtype.name == "float16":
        return None
    rows, cols = math.prod(x.shape[:k]), math.prod(x.shape[k:])   # math.prod keeps a run-time size
    if rows < COLUMN_SUM_ROWS or cols < COLUMN_SUM_COLS:
        return None
    # a broadcast scalar, filled at run time: a literal array would grow the source with x
    ones = F.broadcast_to(F.constant(np.ones((), x.dtype.np)), (1, rows))
    return F.reshape(F.matmul(ones, F.reshape(x, (rows, cols))), op.outputs[0].shape)


@lowering("blas", position=10, tags=BLAS)
def lower_blas(fn: Function, counts: Counter) -> Function:
    """``fn`` with its BLAS-shaped patterns as gemm ops (one sweep: the patterns do not
    nest); ``counts`` gets the rewrites that fired."""
    return apply_rewrites(fn, REWRITES.table(include=BLAS), RewriteContext(), counts)
