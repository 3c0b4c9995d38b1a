"""Algebraic simplification rewrites (tag "simplify", some "fast_math").

Every rewrite is ``fn(op, ctx) -> Value | None`` (see ``rewrite.py``); its result
has exactly the type of ``op``'s output (``fit`` re-broadcasts an operand when an
identity drops the operand that made the result larger). Operands are always
inspected through ``ctx.producer`` / ``ctx.const_value``, so values that a pending
``grad`` differentiates with respect to (pinned values) are never looked through.

Semantics policy
----------------
"simplify" rewrites keep IEEE-754 results exactly: every finite value, every
infinity and every NaN is produced where the original graph produces it. The one
convention, shared with XLA's algebraic simplifier (which rewrites ``A + 0 -> A``),
is that **the sign of a zero result is not significant**: ``x + 0 -> x`` keeps
``-0.0`` where IEEE gives ``+0.0`` (likewise ``0 - x -> -x``, ``-(a - b) -> b - a``,
``sum(-x) -> -sum(x)`` on an empty or all-zero sum, and reducing over extent-1
axes). ``-0.0 == +0.0`` compares equal; only ``1/x``, ``copysign`` and the raw bits
can tell. ``pow`` with the exponents 2 and -1 is taken to be correctly rounded (as
XLA's ``pow(A, 2) -> A*A`` and ``pow(A, -1) -> 1/A`` do; numpy/glibc agree).

"fast_math" rewrites (off unless ``sf.function(..., fast_math=True)``) may change
results for NaN/inf operands, on overflow, or by rounding; each says how in its
docstring. Integer-only forms of some of them (``x - x -> 0`` for ints) are exact
and registered separately as "simplify".

The rewrites are split by family, registered in this order (a sweep tries an
op's rewrites in registration order): canonical form, additive and
multiplicative identities here; powers, unary idempotence, ``where`` and casts
in ``algebraic_unary.py``; shape ops and reductions in ``algebraic_shape.py``.
"""
from __future__ import annotations

import numpy as np

from ...ir import build as F
from ...ir.core import apply
from ...ir.types import broadcast_shapes
from .algebraic_common import (  # noqa: F401  (fit, out_type: also the stabiliser's, by this name)
    BINARY_ELEMENTWISE, FAST, SIMPLIFY, const_operand, fill, fit, int_dtype, is_const, out_type,
)
from .rewrite import rewrite


# --------------------------------------------------------------------------- canonical form
@rewrite("commute_constants", ("add", "mul", "eq", "ne", "logical_and", "logical_or"), tags=SIMPLIFY)
def commute_constants(op, ctx):
    """``c op x -> x op c`` for commutative ops: constants go right, so later rewrites
    (and CSE) see one form. Exact. (maximum/minimum are left alone: their C
    expressions are not symmetric in NaN.)"""
    a, b = op.inputs
    if is_const(ctx, a) and not is_const(ctx, b):
        return apply(op.opdef, [b, a], dict(op.attrs))
    return None


@rewrite("operand_broadcast_absorb", BINARY_ELEMENTWISE + ("where",), tags=SIMPLIFY)
def operand_broadcast_absorb(op, ctx):
    """``f(broadcast_to(x, s), y) -> f(x, y)`` when the result shape is unchanged:
    elementwise ops broadcast their operands themselves. Exact."""
    inputs = list(op.inputs)
    changed = False
    for i, v in enumerate(inputs):
        p = ctx.producer(v, "broadcast_to")
        if p is None:
            continue
        trial = inputs[:i] + [p.inputs[0]] + inputs[i + 1:]
        if broadcast_shapes(*(u.shape for u in trial)) == out_type(op).shape:
            inputs = trial
            changed = True
    if not changed:
        return None
    return apply(op.opdef, inputs, dict(op.attrs))


# --------------------------------------------------------------------------- additive identities
@rewrite("add_zero", "add", tags=SIMPLIFY)
def add_zero(op, ctx):
    """``x + 0 -> x`` (either side). Exact for NaN/inf; keeps ``-0.0 + 0.0`` as ``-0.0``
    (XLA's convention: the sign of a zero result is not significant)."""
    return fit(const_operand(op, ctx, 0, True), op)


@rewrite("sub_zero", "sub", tags=SIMPLIFY)
def sub_zero(op, ctx):
    """``x - 0 -> x``. Exact (``x - (-0.0)`` only differs in the sign of a zero)."""
    a, b = op.inputs
    return fit(a, op) if ctx.is_scalar(b, 0) else None


@rewrite("zero_sub", "sub", tags=SIMPLIFY)
def zero_sub(op, ctx):
    """``0 - x -> -x``. Exact up to the sign of zero (``0 - 0 = +0``, ``-(0) = -0``)."""
    a, b = op.inputs
    if ctx.is_scalar(a, 0) and not is_const(ctx, b):
        return fit(F.negative(b), op)
    return None


@rewrite("sub_self_int", "sub", tags=SIMPLIFY)
def sub_self_int(op, ctx):
    """``x - x -> 0`` for integer dtypes (exact, also on wrap-around)."""
    a, b = op.inputs
    if a is b and int_dtype(op):
        return fill(op, 0)
    return None


@rewrite("sub_self", "sub", tags=FAST)
def sub_self(op, ctx):
    """fast_math: ``x - x -> 0``. Wrong for inf and NaN operands (IEEE gives NaN)."""
    a, b = op.inputs
    return fill(op, 0) if a is b else None


@rewrite("neg_neg", "neg", tags=SIMPLIFY)
def neg_neg(op, ctx):
    """``-(-x) -> x``. Exact (integers wrap symmetrically too)."""
    p = ctx.producer(op.inputs[0], "neg")
    return p.inputs[0] if p is not None else None


@rewrite("sub_neg", "sub", tags=SIMPLIFY)
def sub_neg(op, ctx):
    """``a - (-b) -> a + b``. Exact: IEEE defines ``a - b`` as ``a + (-b)``."""
    a, b = op.inputs
    p = ctx.producer(b, "neg")
    return apply("add", [a, p.inputs[0]]) if p is not None else None


@rewrite("add_neg", "add", tags=SIMPLIFY)
def add_neg(op, ctx):
    """``a + (-b) -> a - b`` and ``(-a) + b -> b - a``. Exact."""
    a, b = op.inputs
    p = ctx.producer(b, "neg")
    if p is not None:
        return apply("sub", [a, p.inputs[0]])
    p = ctx.producer(a, "neg")
    if p is not None:
        return apply("sub", [b, p.inputs[0]])
    return None


@rewrite("neg_sub", "neg", tags=SIMPLIFY)
def neg_sub(op, ctx):
    """``-(a - b) -> b - a``. Exact up to the sign of zero (``a == b`` gives ``+0``
    instead of ``-0``)."""
    p = ctx.producer(op.inputs[0], "sub")
    if p is None or not ctx.single_use(op.inputs[0]):
        return None
    a, b = p.inputs
    return apply("sub", [b, a])


# --------------------------------------------------------------------------- multiplicative identities
@rewrite("mul_one", "mul", tags=SIMPLIFY)
def mul_one(op, ctx):
    """``x * 1 -> x`` (either side). Exact."""
    return fit(const_operand(op, ctx, 1, True), op)


@rewrite("mul_neg_one", "mul", tags=SIMPLIFY)
def mul_neg_one(op, ctx):
    """``x * -1 -> -x`` (either side). Exact (NaN stays NaN)."""
    x = const_operand(op, ctx, -1, True)
    if x is None or is_const(ctx, x):
        return None
    return fit(F.negative(x), op)


@rewrite("mul_zero_int", "mul", tags=SIMPLIFY)
def mul_zero_int(op, ctx):
    """``x * 0 -> 0`` for integer dtypes. Exact."""
    if int_dtype(op) and const_operand(op, ctx, 0, True) is not None:
        return fill(op, 0)
    return None


@rewrite("mul_zero", "mul", tags=FAST)
def mul_zero(op, ctx):
    """fast_math: ``x * 0 -> 0``. Wrong for NaN/inf ``x`` (IEEE: NaN) and for the
    sign of the zero (``-3 * 0 = -0``)."""
    if const_operand(op, ctx, 0, True) is not None:
        return fill(op, 0)
    return None


@rewrite("neg_mul_neg", ("mul", "div"), tags=SIMPLIFY)
def neg_mul_neg(op, ctx):
    """``(-a) * (-b) -> a * b`` and ``(-a) / (-b) -> a / b``. Exact: rounding is
    symmetric in sign."""
    a, b = op.inputs
    pa, pb = ctx.producer(a, "neg"), ctx.producer(b, "neg")
    if pa is None or pb is None:
        return None
    return apply(op.opdef, [pa.inputs[0], pb.inputs[0]])


@rewrite("neg_mul_const", ("neg", "mul"), tags=SIMPLIFY)
def neg_mul_const(op, ctx):
    """``-(a * c) -> a * (-c)`` and ``(-a) * c -> a * (-c)`` for a constant c (the
    negated constant folds). Exact: rounding is symmetric in sign, signed zeros
    included."""
    if op.opdef.name == "neg":
        m = ctx.producer(op.inputs[0], "mul")
        if m is None:
            return None
        a, c = m.inputs
        if not is_const(ctx, c):
            a, c = c, a
        if not is_const(ctx, c) or is_const(ctx, a):
            return None
        return apply("mul", [a, F.negative(c)])
    a, c = op.inputs
    n = ctx.producer(a, "neg")
    if n is None:
        a, c = c, a
        n = ctx.producer(a, "neg")
    if n is None or not is_const(ctx, c):
        return None
    return apply("mul", [n.inputs[0], F.negative(c)])


@rewrite("div_one", "div", tags=SIMPLIFY)
def div_one(op, ctx):
    """``x / 1 -> x``. Exact."""
    a, b = op.inputs
    return fit(a, op) if ctx.is_scalar(b, 1) else None


@rewrite("div_neg_one", "div", tags=SIMPLIFY)
def div_neg_one(op, ctx):
    """``x / -1 -> -x``. Exact."""
    a, b = op.inputs
    if ctx.is_scalar(b, -1) and not is_const(ctx, a):
        return fit(F.negative(a), op)
    return None


@rewrite("one_div", "div", tags=SIMPLIFY)
def one_div(op, ctx):
    """``1 / x -> reciprocal(x)``: the reciprocal op is defined as ``1 / x``. Exact."""
    a, b = op.inputs
    if ctx.is_scalar(a, 1) and not is_const(ctx, b):
        return fit(F.reciprocal(b), op)
    return None


@rewrite("div_by_constant", "div", tags=SIMPLIFY)
def div_by_constant(op, ctx):
    """``x / c -> x * (1/c)`` when ``c`` is a uniform power of two whose reciprocal is
    exactly representable: both sides are one rounding of the same exact value.
    Exact (a multiply is cheaper than a divide)."""
    a, b = op.inputs
    s = ctx.scalar(b)
    if s is None or is_const(ctx, a) or s in (1, -1):
        return None
    dt = out_type(op).dtype.np
    c = np.asarray(s, dtype=dt)
    if not np.isfinite(c) or c == 0:
        return None
    with np.errstate(all="ignore"):
        r = (np.asarray(1, dt) / c).astype(dt)
    if not np.isfinite(r) or r == 0 or abs(float(np.frexp(c)[0])) != 0.5 or abs(float(np.frexp(r)[0])) != 0.5:
        return None
    if float(r) * float(c) != 1.0:
        return None
    return fit(F.multiply(a, F.constant(r)), op)


@rewrite("div_self", "div", tags=FAST)
def div_self(op, ctx):
    """fast_math: ``x / x -> 1``. Wrong for 0, inf and NaN (IEEE: NaN)."""
    a, b = op.inputs
    return fill(op, 1) if a is b else None


@rewrite("mul_by_reciprocal", "mul", tags=FAST)
def mul_by_reciprocal(op, ctx):
    """fast_math: ``a * reciprocal(b) -> a / b``. One rounding instead of two: the
    last bit can change."""
    a, b = op.inputs
    p = ctx.producer(b, "reciprocal")
    if p is not None:
        return apply("div", [a, p.inputs[0]])
    p = ctx.producer(a, "reciprocal")
    if p is not None:
        return apply("div", [b, p.inputs[0]])
    return None


@rewrite("reciprocal_reciprocal", "reciprocal", tags=FAST)
def reciprocal_reciprocal(op, ctx):
    """fast_math: ``1/(1/x) -> x``. Not exact (two roundings; subnormal/huge ``x``
    overflow or flush)."""
    p = ctx.producer(op.inputs[0], "reciprocal")
    return p.inputs[0] if p is not None else None


@rewrite("reciprocal_sqrt", "reciprocal", tags=SIMPLIFY)
def reciprocal_sqrt(op, ctx):
    """``reciprocal(sqrt(x)) -> rsqrt(x)``: rsqrt is defined as ``1 / sqrt(x)``. Exact."""
    p = ctx.producer(op.inputs[0], "sqrt")
    return F.rsqrt(p.inputs[0]) if p is not None else None
