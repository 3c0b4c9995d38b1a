"""What the algebraic rewrites (``algebraic.py``, ``algebraic_unary.py``,
``algebraic_shape.py``) and the stabiliser share: their tags, the op families
they match, and helpers that build a replacement of exactly the op's type."""
from __future__ import annotations

import numpy as np

from ...ir import build as F
from ...ir.core import OPS, Op, Value
from ...ir.types import broadcast_shapes
from .rewrite import RewriteContext

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
