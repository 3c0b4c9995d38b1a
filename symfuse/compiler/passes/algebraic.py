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
"""
from __future__ import annotations

import numpy as np

from ...ir import build as F
from ...ir.core import OPS, Op, Value, apply
from ...ir.types import broadcast_shapes
from .rewrite import RewriteContext, rewrite

SIMPLIFY = ("simplify",)
FAST = ("fast_math",)

# asked of the op definitions: a binary elementwise op added to ir/ops is matched too
BINARY_ELEMENTWISE = tuple(n for n, d in OPS.items() if d.fusion == "pointwise" and d.arity == 2)
REDUCTIONS = tuple(n for n, d in OPS.items() if d.fusion == "reduce")


# --------------------------------------------------------------------------- helpers
def out_type(op: Op):
    return op.outputs[0].type


def fit(v: Value | None, op: Op) -> Value | None:
    """``v`` with exactly the type of ``op``'s result: broadcast when ``v`` is smaller
    (an identity dropped the operand that made the result larger). None when ``v``
    cannot be made to fit (other dtype, shape not broadcastable)."""
    if v is None:
        return None
    t = out_type(op)
    if v.type is t:
        return v
    if v.dtype is not t.dtype or broadcast_shapes(v.shape, t.shape) != t.shape:
        return None
    return F.broadcast_to(v, t.shape)


def fill(op: Op, value) -> Value:
    """A uniform constant of ``op``'s result type (a scalar broadcast to its shape)."""
    t = out_type(op)
    return F.full(t.shape, np.asarray(value).astype(t.dtype.np), t.dtype)


def is_const(ctx: RewriteContext, v: Value) -> bool:
    return ctx.const_value(v) is not None


def const_operand(op: Op, ctx: RewriteContext, value, commutative: bool):
    """The operand that is not the uniform constant ``value`` (right operand first;
    the left too for commutative ops), or None."""
    a, b = op.inputs
    if ctx.is_scalar(b, value):
        return a
    if commutative and ctx.is_scalar(a, value):
        return b
    return None


def int_dtype(op: Op) -> bool:
    return out_type(op).dtype.is_int


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


# --------------------------------------------------------------------------- shape ops
@rewrite("transpose_identity", "transpose", tags=SIMPLIFY)
def transpose_identity(op, ctx):
    """``transpose(x, identity perm) -> x``. Exact."""
    if tuple(op.attrs["perm"]) == tuple(range(op.inputs[0].ndim)):
        return op.inputs[0]
    return None


@rewrite("transpose_transpose", "transpose", tags=SIMPLIFY)
def transpose_transpose(op, ctx):
    """``transpose(transpose(x, p), q) -> transpose(x, p[q])`` (or x). Exact."""
    p = ctx.producer(op.inputs[0], "transpose")
    if p is None:
        return None
    p1, p2 = p.attrs["perm"], op.attrs["perm"]
    return F.transpose(p.inputs[0], tuple(p1[j] for j in p2))


@rewrite("reshape_identity", "reshape", tags=SIMPLIFY)
def reshape_identity(op, ctx):
    """``reshape(x, shape(x)) -> x``. Exact."""
    x = op.inputs[0]
    return x if x.type is out_type(op) else None


@rewrite("reshape_reshape", "reshape", tags=SIMPLIFY)
def reshape_reshape(op, ctx):
    """``reshape(reshape(x, s1), s2) -> reshape(x, s2)`` (or x). Exact."""
    p = ctx.producer(op.inputs[0], "reshape")
    return F.reshape(p.inputs[0], out_type(op).shape) if p is not None else None


@rewrite("reshape_of_broadcast_scalar", "reshape", tags=SIMPLIFY)
def reshape_of_broadcast_scalar(op, ctx):
    """``reshape(broadcast_to(x, S), S2) -> broadcast_to(reshape(x, ()), S2)`` when x
    has one element: every element is that one value, so only the shape matters
    (the reshape of a constant folds, and elementwise users absorb the broadcast).
    Exact."""
    p = ctx.producer(op.inputs[0], "broadcast_to")
    if p is None or p.inputs[0].size != 1:
        return None
    return F.broadcast_to(F.reshape(p.inputs[0], ()), out_type(op).shape)


@rewrite("broadcast_identity", "broadcast_to", tags=SIMPLIFY)
def broadcast_identity(op, ctx):
    """``broadcast_to(x, shape(x)) -> x``. Exact."""
    x = op.inputs[0]
    return x if x.type is out_type(op) else None


@rewrite("broadcast_broadcast", "broadcast_to", tags=SIMPLIFY)
def broadcast_broadcast(op, ctx):
    """``broadcast_to(broadcast_to(x, s1), s2) -> broadcast_to(x, s2)``. Exact."""
    p = ctx.producer(op.inputs[0], "broadcast_to")
    return F.broadcast_to(p.inputs[0], out_type(op).shape) if p is not None else None


@rewrite("slice_full", "slice", tags=SIMPLIFY)
def slice_full(op, ctx):
    """A slice from 0 that keeps every element -> its operand. Exact."""
    x = op.inputs[0]
    if x.type is out_type(op) and not any(op.attrs["start"]):
        return x
    return None


@rewrite("slice_slice", "slice", tags=SIMPLIFY)
def slice_slice(op, ctx):
    """``x[b1:e1:s1][b2:e2:s2] -> x[b1+b2*s1 : ... : s1*s2]`` (one slice). Exact."""
    p = ctx.producer(op.inputs[0], "slice")
    if p is None:
        return None
    x = p.inputs[0]
    start, stop, step = [], [], []
    for b1, s1, b2, s2, n in zip(p.attrs["start"], p.attrs["step"], op.attrs["start"],
                                 op.attrs["step"], out_type(op).shape):
        b, s = b1 + b2 * s1, s1 * s2
        start.append(b if n else 0)
        step.append(s if n else 1)
        stop.append(b + (n - 1) * s + 1 if n else 0)
    return F.slice_general(x, start, stop, step)


@rewrite("flip_flip", "flip", tags=SIMPLIFY)
def flip_flip(op, ctx):
    """``flip(flip(x, A), B) -> flip(x, A xor B)`` (or x). Exact."""
    p = ctx.producer(op.inputs[0], "flip")
    if p is None:
        return None
    axes = sorted(set(p.attrs["axes"]) ^ set(op.attrs["axes"]))
    return F.flip(p.inputs[0], axes) if axes else p.inputs[0]


@rewrite("flip_trivial", "flip", tags=SIMPLIFY)
def flip_trivial(op, ctx):
    """A flip over no axes, or only over axes of extent <= 1 -> its operand. Exact."""
    x = op.inputs[0]
    if all(x.shape[a] <= 1 for a in op.attrs["axes"]):
        return x
    return None


@rewrite("concat_single", "concatenate", tags=SIMPLIFY)
def concat_single(op, ctx):
    """``concatenate([x]) -> x``. Exact."""
    return op.inputs[0] if len(op.inputs) == 1 else None


# --------------------------------------------------------------------------- reductions
@rewrite("reduce_empty_axes", REDUCTIONS, tags=SIMPLIFY)
def reduce_empty_axes(op, ctx):
    """A sum/prod/max/min over no axes -> its operand. Exact."""
    return op.inputs[0] if not op.attrs["axis"] else None


@rewrite("reduce_unit_axes", REDUCTIONS, tags=SIMPLIFY)
def reduce_unit_axes(op, ctx):
    """A reduction over axes of extent 1 only -> a reshape (one element per group).
    Exact (a sum of one ``-0.0`` gives ``+0.0``: the sign-of-zero convention)."""
    x = op.inputs[0]
    axes = op.attrs["axis"]
    if not axes or any(x.shape[a] != 1 for a in axes):
        return None
    return F.reshape(x, out_type(op).shape)


@rewrite("sum_of_neg", "sum", tags=SIMPLIFY)
def sum_of_neg(op, ctx):
    """``sum(-x) -> -sum(x)``: one negation of the (smaller) result. Exact: rounding
    is symmetric in sign and the summation order is unchanged (up to the sign of a
    zero sum)."""
    p = ctx.producer(op.inputs[0], "neg")
    if p is None:
        return None
    return F.negative(apply("sum", [p.inputs[0]], dict(op.attrs)))


@rewrite("max_of_neg", ("max", "min"), tags=SIMPLIFY)
def max_of_neg(op, ctx):
    """``max(-x) -> -min(x)`` and ``min(-x) -> -max(x)``. Exact (NaN propagates in
    both)."""
    p = ctx.producer(op.inputs[0], "neg")
    if p is None:
        return None
    other = "min" if op.opdef.name == "max" else "max"
    return F.negative(apply(other, [p.inputs[0]], dict(op.attrs)))


def _sum_of_broadcast(op, ctx):
    """sum(broadcast_to(x, S), A) with A only over broadcast axes -> count * x, reshaped
    and broadcast to the result."""
    p = ctx.producer(op.inputs[0], "broadcast_to")
    if p is None:
        return None
    x = p.inputs[0]
    S = p.outputs[0].shape
    axes = op.attrs["axis"]
    padded = (1,) * (len(S) - x.ndim) + x.shape
    if not axes or any(padded[a] != 1 for a in axes):
        return None
    count = 1
    for a in axes:
        count *= S[a]
    keep = op.attrs["keepdims"]
    small = [1 if a in axes else d for a, d in enumerate(padded)] if keep else \
            [d for a, d in enumerate(padded) if a not in axes]
    y = F.reshape(x, small)
    if count != 1:
        dt = x.dtype.np
        y = F.multiply(y, F.constant(np.array(count, dtype=np.int64).astype(dt)))
    return fit(y, op)


@rewrite("sum_of_broadcast", "sum", tags=SIMPLIFY)
def sum_of_broadcast(op, ctx):
    """Integer dtypes: ``sum(broadcast_to(x, S), A) -> x * n`` when every summed axis
    was created by the broadcast (n = number of copies). Exact, also on wrap-around."""
    if not int_dtype(op):
        return None
    return _sum_of_broadcast(op, ctx)


@rewrite("sum_of_broadcast_float", "sum", tags=FAST)
def sum_of_broadcast_float(op, ctx):
    """fast_math, float dtypes: ``sum(broadcast_to(x, S), A) -> x * n`` as
    ``sum_of_broadcast``. Not bit-exact: n additions round differently from one
    multiply, and ``inf * 0`` (an empty sum) is NaN."""
    if not out_type(op).dtype.is_float:
        return None
    return _sum_of_broadcast(op, ctx)
