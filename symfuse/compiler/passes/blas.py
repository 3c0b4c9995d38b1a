"""BLAS lowering rewrites (tag "blas"), run by backends that call a BLAS.

``gemm_accumulate`` turns ``z + c * (a @ b)`` (and ``z - ...``, ``... + z``,
``... - z``, with or without the scalar ``c``) into one ``gemm`` op, BLAS's
``C = alpha * A @ B + beta * C``: the SGD update of a weight matrix,
``W - lr * (x.T @ dy)``, becomes the weight gradient's own GEMM accumulating
into a copy of ``W``, instead of a GEMM that writes the gradient and a pass
that reads it back. PyTensor's Gemm rewrite does the same. The product is
rounded once more or less than before (BLAS may fuse ``alpha * acc + C``), so
this runs only when lowering for such a backend, not in the portable passes.
"""
from __future__ import annotations

from collections import Counter

from ...ir.core import Function, apply
from .rewrite import REWRITES, RewriteContext, apply_rewrites, rewrite

BLAS = ("blas",)


def _scaled_product(v, ctx):
    """(matmul op, alpha) when ``v`` is ``a @ b`` or a scalar constant times it,
    used nowhere else; else None."""
    if not ctx.single_use(v):
        return None
    op = ctx.producer(v, "matmul", "mul")
    if op is None:
        return None
    if op.opdef.name == "matmul":
        return op, 1.0
    for p, c in (op.inputs, op.inputs[::-1]):
        s = ctx.scalar(c)
        mm = ctx.producer(p, "matmul")
        if mm is not None and ctx.single_use(p) and isinstance(s, (int, float)) and p.type is op.outputs[0].type:
            return mm, float(s)
    return None


@rewrite("gemm_accumulate", ("add", "sub"), tags=BLAS)
def gemm_accumulate(op, ctx):
    """z + alpha * (a @ b) -> gemm(a, b, z) {alpha, beta}, z of the product's type."""
    out = op.outputs[0].type
    if not out.dtype.is_float:
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
        return apply("gemm", [mm.inputs[0], mm.inputs[1], z], {"alpha": alpha_sign * alpha, "beta": beta})
    return None


def lower_blas(fn: Function, counts: Counter | None = None) -> Function:
    """``fn`` with its BLAS-shaped patterns as gemm ops (one sweep: the patterns do not nest)."""
    return apply_rewrites(fn, REWRITES.table(include=BLAS), RewriteContext(), counts if counts is not None
                          else Counter())
