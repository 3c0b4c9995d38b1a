"""Numerical stabilisation rewrites (tag "stabilise").

Each replaces a numerically fragile expression by an op (or a short expression)
that computes the same mathematical function without intermediate overflow,
underflow or cancellation, and whose VJP is stable too. Results agree with the
original graph wherever the original is accurate (allclose, not bit-exact), and
are finite where the original overflowed to inf or produced NaN.

The pipeline runs these before differentiation, so the gradient is taken of the
stable form (``log(softmax(x))`` becomes ``log_softmax(x)`` before its VJP is
emitted). Operands are inspected through ``ctx.producer``: values a pending
``grad`` differentiates with respect to are never looked through.
"""
from __future__ import annotations

from ...ir import build as F
from ...ir.core import apply
from .algebraic_common import fit, out_type
from .rewrite import rewrite

STABILISE = ("stabilise",)


def _plus_one_operand(op, ctx):
    """For ``add(a, b)``: the operand that is not the uniform constant 1, else None."""
    a, b = op.inputs
    if ctx.is_scalar(b, 1):
        return a
    if ctx.is_scalar(a, 1):
        return b
    return None


def _log_arg(op, ctx):
    """For ``log(1 + y)`` return y; for ``log1p(y)`` return y; else None."""
    if op.opdef.name == "log1p":
        return op.inputs[0]
    p = ctx.producer(op.inputs[0], "add")
    return _plus_one_operand(p, ctx) if p is not None else None


# --------------------------------------------------------------------------- log of exp-like
@rewrite("log_exp", "log", tags=STABILISE)
def log_exp(op, ctx):
    """``log(exp(x)) -> x``: no overflow of exp for large x (f32: x > 88 gives
    ``log(inf) = inf``), no underflow to ``-inf`` for very negative x, and no
    rounding of exp. NaN and ±inf map as before."""
    p = ctx.producer(op.inputs[0], "exp")
    return p.inputs[0] if p is not None else None


@rewrite("softplus", ("log", "log1p"), tags=STABILISE)
def softplus(op, ctx):
    """``log(1 + exp(x))``, ``log(exp(x) + 1)`` and ``log1p(exp(x))`` -> ``softplus(x)``
    (``max(x, 0) + log1p(exp(-|x|))``: finite for large x)."""
    y = _log_arg(op, ctx)
    if y is None:
        return None
    e = ctx.producer(y, "exp")
    if e is None:
        return None
    return fit(F.softplus(e.inputs[0]), op)


@rewrite("log_sigmoid", "log", tags=STABILISE)
def log_sigmoid(op, ctx):
    """``log(sigmoid(x)) -> -softplus(-x)``: sigmoid underflows to 0 for x << 0 and
    the log becomes -inf; softplus stays finite (and so does its gradient)."""
    p = ctx.producer(op.inputs[0], "sigmoid")
    if p is None:
        return None
    return F.negative(F.softplus(F.negative(p.inputs[0])))


@rewrite("log_one_minus_sigmoid", ("log", "log1p"), tags=STABILISE)
def log_one_minus_sigmoid(op, ctx):
    """``log(1 - sigmoid(x))`` and ``log1p(-sigmoid(x))`` -> ``-softplus(x)``:
    ``1 - sigmoid(x)`` cancels to 0 for x >> 0."""
    if op.opdef.name == "log1p":
        n = ctx.producer(op.inputs[0], "neg")
        s = ctx.producer(n.inputs[0], "sigmoid") if n is not None else None
    else:
        d = ctx.producer(op.inputs[0], "sub")
        s = ctx.producer(d.inputs[1], "sigmoid") if d is not None and ctx.is_scalar(d.inputs[0], 1) else None
    if s is None:
        return None
    return fit(F.negative(F.softplus(s.inputs[0])), op)


@rewrite("log_one_plus", "log", tags=STABILISE)
def log_one_plus(op, ctx):
    """``log(1 + x)`` and ``log(x + 1)`` -> ``log1p(x)``: accurate for |x| << 1, where
    ``1 + x`` rounds x away."""
    y = _log_arg(op, ctx)
    if y is None or ctx.const_value(y) is not None:
        return None
    return fit(F.log1p(y), op)


@rewrite("exp_minus_one", ("sub", "add"), tags=STABILISE)
def exp_minus_one(op, ctx):
    """``exp(x) - 1``, ``exp(x) + (-1)`` and ``-1 + exp(x)`` -> ``expm1(x)``: no
    cancellation for |x| << 1."""
    a, b = op.inputs
    if op.opdef.name == "sub":
        e = ctx.producer(a, "exp") if ctx.is_scalar(b, 1) else None
    elif ctx.is_scalar(b, -1):
        e = ctx.producer(a, "exp")
    elif ctx.is_scalar(a, -1):
        e = ctx.producer(b, "exp")
    else:
        e = None
    if e is None:
        return None
    return fit(F.expm1(e.inputs[0]), op)


# --------------------------------------------------------------------------- softmax family
@rewrite("log_softmax", "log", tags=STABILISE)
def log_softmax(op, ctx):
    """``log(softmax(x, axis)) -> log_softmax(x, axis)``: softmax underflows to 0
    (log: -inf) for logits far below the row maximum, and the VJP of ``log``
    divides by it; log_softmax and its VJP stay finite."""
    p = ctx.producer(op.inputs[0], "softmax")
    if p is None:
        return None
    return apply("log_softmax", [p.inputs[0]], {"axis": p.attrs["axis"]})


@rewrite("log_sum_exp", "log", tags=STABILISE)
def log_sum_exp(op, ctx):
    """``log(sum(exp(x), axes, keepdims)) -> logsumexp(x, ...)`` with the same axes
    and keepdims (several axes are moved last and merged into one): exp overflows
    for x > 88 in f32; logsumexp subtracts the maximum first."""
    s = ctx.producer(op.inputs[0], "sum")
    if s is None:
        return None
    e = ctx.producer(s.inputs[0], "exp")
    if e is None:
        return None
    x = e.inputs[0]
    axes = tuple(s.attrs["axis"])
    keep = s.attrs["keepdims"]
    if not axes or any(x.shape[a] == 0 for a in axes):
        return None
    if len(axes) == 1:
        return apply("logsumexp", [x], {"axis": axes[0], "keepdims": keep})
    rest = [i for i in range(x.ndim) if i not in axes]
    xt = F.reshape(F.transpose(x, rest + list(axes)), [x.shape[i] for i in rest] + [-1])
    y = apply("logsumexp", [xt], {"axis": -1, "keepdims": False})
    return F.reshape(y, out_type(op).shape)


def _xent_factors(ctx, p):
    """For ``p = ±t * ±log_softmax(x, axis)`` (either factor order) return
    (x, t, axis, sign) with ``p = sign * t * log_softmax(x)``; t must have exactly
    x's type. None when p has another form."""
    sign = 1
    n = ctx.producer(p, "neg")
    if n is not None:
        p, sign = n.inputs[0], -1
    m = ctx.producer(p, "mul")
    if m is None:
        return None
    for ls_v, t in ((m.inputs[1], m.inputs[0]), (m.inputs[0], m.inputs[1])):
        s = sign
        nl = ctx.producer(ls_v, "neg")
        if nl is not None:
            ls_v, s = nl.inputs[0], -s
        ls = ctx.producer(ls_v, "log_softmax")
        if ls is None:
            continue
        nt = ctx.producer(t, "neg")
        if nt is not None:
            t, s = nt.inputs[0], -s
        x = ls.inputs[0]
        if t.type is not x.type:
            continue
        return x, t, ls.attrs["axis"], s
    return None


@rewrite("softmax_cross_entropy", "sum", tags=STABILISE)
def softmax_cross_entropy(op, ctx):
    """``sum(±t * ±log_softmax(x, axis), axes)`` with ``axis`` among the summed axes
    -> ``±softmax_xent(x, t, axis)`` (then summed over the other axes, reshaped for
    keepdims). The leading minus of ``-(t * log_softmax(x)).sum(axis)`` cancels
    against the one this produces (``neg_neg``). One fused op whose VJP is
    ``softmax(x) * sum(t) - t``: finite for any logits. Only when t and the logits
    have the same shape and dtype."""
    f = _xent_factors(ctx, op.inputs[0])
    if f is None:
        return None
    x, t, ax, sign = f
    axes = tuple(op.attrs["axis"])
    if ax not in axes:
        return None
    y = apply("softmax_xent", [x, t], {"axis": ax})
    rest = tuple(a - (a > ax) for a in axes if a != ax)
    if rest:
        y = F.sum(y, rest)
    y = F.reshape(y, out_type(op).shape)
    return F.negative(y) if sign > 0 else y     # sum(t * ls) = -xent
