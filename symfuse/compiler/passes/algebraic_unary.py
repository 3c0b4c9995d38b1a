"""Algebraic rewrites, continued (policy: ``algebraic.py``): powers, exp/log,
unary idempotence, ``where`` and casts."""
from __future__ import annotations

from ...ir import build as F
from ...ir.core import apply
from .algebraic_common import FAST, SIMPLIFY, fill, fit, is_const, out_type
from .rewrite import rewrite


# --------------------------------------------------------------------------- powers
def _pow_base(op, ctx, value):
    a, b = op.inputs
    if ctx.is_scalar(b, value) and not is_const(ctx, a):
        return a
    return None


@rewrite("pow_one", "pow", tags=SIMPLIFY)
def pow_one(op, ctx):
    """``x ** 1 -> x``. Exact."""
    return fit(_pow_base(op, ctx, 1), op)


@rewrite("pow_zero", "pow", tags=SIMPLIFY)
def pow_zero(op, ctx):
    """``x ** 0 -> 1``. Exact: IEEE/C ``pow(x, 0)`` is 1 for every x, NaN included."""
    return fill(op, 1) if _pow_base(op, ctx, 0) is not None else None


@rewrite("pow_two", "pow", tags=SIMPLIFY)
def pow_two(op, ctx):
    """``x ** 2 -> x * x``. Exact for a correctly rounded pow (XLA does the same)."""
    x = _pow_base(op, ctx, 2)
    return fit(F.multiply(x, x), op) if x is not None else None


@rewrite("pow_neg_one", "pow", tags=SIMPLIFY)
def pow_neg_one(op, ctx):
    """``x ** -1 -> reciprocal(x)``. Exact for a correctly rounded pow, ±0 -> ±inf
    and ±inf -> ±0 included (XLA does the same)."""
    x = _pow_base(op, ctx, -1)
    return fit(F.reciprocal(x), op) if x is not None else None


@rewrite("pow_half", "pow", tags=FAST)
def pow_half(op, ctx):
    """fast_math: ``x ** 0.5 -> sqrt(x)``. Differs at ``x = -inf`` (pow: +inf, sqrt:
    NaN) and ``x = -0`` (pow: +0, sqrt: -0)."""
    x = _pow_base(op, ctx, 0.5)
    return fit(F.sqrt(x), op) if x is not None else None


@rewrite("pow_neg_half", "pow", tags=FAST)
def pow_neg_half(op, ctx):
    """fast_math: ``x ** -0.5 -> rsqrt(x)``. rsqrt rounds twice (``1/sqrt``), and
    differs at ``x = -inf`` (pow: 0, rsqrt: NaN)."""
    x = _pow_base(op, ctx, -0.5)
    return fit(F.rsqrt(x), op) if x is not None else None


@rewrite("sqrt_square", "sqrt", tags=FAST)
def sqrt_square(op, ctx):
    """fast_math: ``sqrt(x * x) -> abs(x)``. Differs where ``x * x`` overflows to inf
    or underflows to 0, and by rounding."""
    p = ctx.producer(op.inputs[0], "mul")
    if p is not None and p.inputs[0] is p.inputs[1]:
        return fit(F.abs(p.inputs[0]), op)
    return None


@rewrite("exp_log", "exp", tags=FAST)
def exp_log(op, ctx):
    """fast_math: ``exp(log(x)) -> x``. Differs for ``x < 0`` (IEEE: NaN) and by
    rounding."""
    p = ctx.producer(op.inputs[0], "log")
    return p.inputs[0] if p is not None else None


# --------------------------------------------------------------------------- unary idempotence
def _same_inner(op, ctx, *names):
    p = ctx.producer(op.inputs[0], *names)
    return p


@rewrite("abs_abs", "abs", tags=SIMPLIFY)
def abs_abs(op, ctx):
    """``abs(abs(x)) -> abs(x)``. Exact."""
    p = _same_inner(op, ctx, "abs")
    return op.inputs[0] if p is not None else None


@rewrite("abs_neg", "abs", tags=SIMPLIFY)
def abs_neg(op, ctx):
    """``abs(-x) -> abs(x)``. Exact."""
    p = _same_inner(op, ctx, "neg")
    return F.abs(p.inputs[0]) if p is not None else None


@rewrite("relu_relu", "relu", tags=SIMPLIFY)
def relu_relu(op, ctx):
    """``relu(relu(x)) -> relu(x)``. Exact (NaN stays NaN)."""
    p = _same_inner(op, ctx, "relu")
    return op.inputs[0] if p is not None else None


@rewrite("sign_sign", "sign", tags=SIMPLIFY)
def sign_sign(op, ctx):
    """``sign(sign(x)) -> sign(x)``. Exact."""
    p = _same_inner(op, ctx, "sign")
    return op.inputs[0] if p is not None else None


@rewrite("logical_not_not", "logical_not", tags=SIMPLIFY)
def logical_not_not(op, ctx):
    """``not(not(c)) -> c``. Exact."""
    p = _same_inner(op, ctx, "logical_not")
    return p.inputs[0] if p is not None else None


def _self_binary(op, ctx):
    a, b = op.inputs
    return a if a is b else None


@rewrite("maximum_self", "maximum", tags=SIMPLIFY)
def maximum_self(op, ctx):
    """``maximum(x, x) -> x``. Exact (NaN stays NaN)."""
    return _self_binary(op, ctx)


@rewrite("minimum_self", "minimum", tags=SIMPLIFY)
def minimum_self(op, ctx):
    """``minimum(x, x) -> x``. Exact (NaN stays NaN)."""
    return _self_binary(op, ctx)


# --------------------------------------------------------------------------- where, cast
@rewrite("where_same", "where", tags=SIMPLIFY)
def where_same(op, ctx):
    """``where(c, x, x) -> x``. Exact."""
    c, a, b = op.inputs
    return fit(a, op) if a is b else None


@rewrite("where_const_cond", "where", tags=SIMPLIFY)
def where_const_cond(op, ctx):
    """``where(True, a, b) -> a``, ``where(False, a, b) -> b`` for a uniform constant
    condition. Exact."""
    c, a, b = op.inputs
    s = ctx.scalar(c)
    if s is True:
        return fit(a, op)
    if s is False:
        return fit(b, op)
    return None


@rewrite("where_not", "where", tags=SIMPLIFY)
def where_not(op, ctx):
    """``where(not c, a, b) -> where(c, b, a)``. Exact."""
    c, a, b = op.inputs
    p = ctx.producer(c, "logical_not")
    return apply("where", [p.inputs[0], b, a]) if p is not None else None


@rewrite("cast_identity", "cast", tags=SIMPLIFY)
def cast_identity(op, ctx):
    """``cast(x, dtype(x)) -> x``. Exact."""
    x = op.inputs[0]
    return x if x.type is out_type(op) else None


_MANTISSA = {16: 11, 32: 24, 64: 53}


def lossless(src, dst) -> bool:
    """Can every value of dtype ``src`` be represented exactly in ``dst``?"""
    if src is dst:
        return True
    if src.is_bool:
        return True
    if dst.is_bool:
        return False
    if src.is_float:
        return dst.is_float and dst.bits >= src.bits
    magnitude = src.bits - 1 if src.kind == "i" else src.bits
    if dst.is_float:
        return magnitude <= _MANTISSA[dst.bits]
    if src.kind == dst.kind:
        return dst.bits >= src.bits
    if src.kind == "u":          # unsigned into signed
        return dst.bits > src.bits
    return False                 # signed into unsigned loses negatives


@rewrite("double_cast", "cast", tags=SIMPLIFY)
def double_cast(op, ctx):
    """``cast(cast(x, a), b) -> cast(x, b)`` when the first cast is lossless (every
    value of x's dtype is exact in ``a``), so the second cast sees x's own value.
    Not applied to float -> int chains (NaN/out-of-range conversions are
    implementation-defined per source type). Exact."""
    p = ctx.producer(op.inputs[0], "cast")
    if p is None:
        return None
    x = p.inputs[0]
    src, mid, dst = x.dtype, p.outputs[0].dtype, out_type(op).dtype
    if not lossless(src, mid) or (src.is_float and not dst.is_float):
        return None
    return F.cast(x, dst)
