"""Elementwise ONNX ops: one table row each (ONNX op type -> symfuse function, with
its attributes' defaults where it has some)."""
from __future__ import annotations

import functools
import math

from ...frontend import api as F
from ..importer import symfuse_dtype
from ..registry import converter


# ---------------------------------------------------------------- compositions symfuse has no op for
def _via_f64(fn):
    """Compute in float64 and round once to the input's dtype (the compositions below
    lose bits in float32 where they subtract nearly equal terms)."""
    @functools.wraps(fn)
    def f(x):
        return F.cast(fn(F.cast(x, "float64")), x.dtype)
    return f


# Cephes' atan: reduction to |t| <= 0.66 and a rational approximation (~2e-16 relative)
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (1.0, 2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_TAN_3PI_8, _MOREBITS = 2.41421356237309504880, 6.123233995736765886130e-17


def _poly(coefs, z):
    acc = F.full(z.shape, coefs[0], z.dtype)
    for c in coefs[1:]:
        acc = acc * z + c
    return acc


def _atan64(x):
    a = F.abs(x)
    big = a > _TAN_3PI_8
    mid = (a > 0.66) & ~big
    t = F.where(big, -1.0 / F.where(big, a, F.ones_like(a)), F.where(mid, (a - 1.0) / (a + 1.0), a))
    z = t * t
    t = t + t * (z * _poly(_ATAN_P, z) / _poly(_ATAN_Q, z))
    base = F.where(big, F.full(a.shape, math.pi / 2 + _MOREBITS, a.dtype),
                   F.where(mid, F.full(a.shape, math.pi / 4 + 0.5 * _MOREBITS, a.dtype), F.zeros_like(a)))
    return F.sign(x) * (base + t)


def _asin64(x):
    return _atan64(x / F.sqrt((1.0 - x) * (1.0 + x)))


def _acos64(x):
    # 2 atan(sqrt((1-x)/(1+x))) keeps its bits near x = 1, where pi/2 - asin(x) cancels
    return 2.0 * _atan64(F.sqrt((1.0 - x) / (1.0 + x)))


def _asinh64(x):
    a = F.abs(x)
    return F.sign(x) * F.log1p(a + a * a / (1.0 + F.sqrt(1.0 + a * a)))


def _acosh64(x):
    t = x - 1.0
    return F.log1p(t + F.sqrt(t * (x + 1.0)))


def _atanh64(x):
    a = F.abs(x)     # 1 - |x| is exact near 1, where 1 - x for x near -1 would not be
    return F.sign(x) * 0.5 * F.log1p(2.0 * a / (1.0 - a))


def _sinh(x):
    return (F.expm1(x) - F.expm1(-x)) * 0.5


def _cosh(x):
    return (F.exp(x) + F.exp(-x)) * 0.5


def _div(a, b):
    if a.dtype.is_float:
        return F.divide(a, b)
    # integers: C division, truncating towards zero (float64 is exact below 2**53)
    return F.cast(_trunc(F.cast(a, "float64") / F.cast(b, "float64")), a.dtype)


def _pow(base, exponent):
    """The base's dtype, whatever the exponent's (ONNX lets them differ)."""
    if base.dtype.is_float:
        return F.power(base, F.cast(exponent, base.dtype))
    return F.cast(F.power(F.cast(base, "float64"), F.cast(exponent, "float64")), base.dtype)


def _trunc(q):
    return F.where(q < 0, F.ceil(q), F.floor(q))


UNARY = {
    "Abs": F.abs, "Neg": F.negative, "Exp": F.exp, "Log": F.log, "Sqrt": F.sqrt, "Reciprocal": F.reciprocal,
    "Relu": F.relu, "Sigmoid": F.sigmoid, "Tanh": F.tanh, "Softplus": F.softplus, "Erf": F.erf,
    "Floor": F.floor, "Ceil": F.ceil, "Sign": F.sign, "Sin": F.sin, "Cos": F.cos, "Not": F.logical_not,
    "Round": F.round, "Identity": lambda x: x,
    "Tan": lambda x: F.sin(x) / F.cos(x), "Sinh": _sinh, "Cosh": _cosh,
    "Atan": _via_f64(_atan64), "Asin": _via_f64(_asin64), "Acos": _via_f64(_acos64),
    "Asinh": _via_f64(_asinh64), "Acosh": _via_f64(_acosh64), "Atanh": _via_f64(_atanh64),
    "Softsign": lambda x: x / (F.abs(x) + 1.0),
    "Mish": lambda x: x * F.tanh(F.softplus(x)),
    "IsNaN": lambda x: F.not_equal(x, x),
}
BINARY = {
    "Add": F.add, "Sub": F.subtract, "Mul": F.multiply, "Div": _div, "Pow": _pow,
    "Less": F.less, "LessOrEqual": F.less_equal, "Greater": F.greater, "GreaterOrEqual": F.greater_equal,
    "Equal": F.equal, "And": F.logical_and, "Or": F.logical_or, "Xor": F.not_equal,
    "PRelu": lambda x, slope: F.where(x < 0, x * slope, x),
}
# op type: (attribute defaults, f(x, **attributes))
ACTIVATIONS = {
    "LeakyRelu": ({"alpha": 0.01}, lambda x, alpha: F.where(x < 0, x * alpha, x)),
    "Elu": ({"alpha": 1.0}, lambda x, alpha: F.where(x > 0, x, F.expm1(x) * alpha)),
    "Selu": ({"alpha": 1.67326319217681884765625, "gamma": 1.05070102519302368164},
             lambda x, alpha, gamma: F.where(x > 0, x, F.expm1(x) * alpha) * gamma),
    "Celu": ({"alpha": 1.0}, lambda x, alpha: F.relu(x) + F.minimum(F.expm1(x / alpha) * alpha, 0.0)),
    "HardSigmoid": ({"alpha": 0.2, "beta": 0.5},
                    lambda x, alpha, beta: F.clip(x * alpha + beta, 0.0, 1.0)),
    "HardSwish": ({}, lambda x: x * F.clip(x * (1 / 6) + 0.5, 0.0, 1.0)),
    "ThresholdedRelu": ({"alpha": 1.0}, lambda x, alpha: F.where(x > alpha, x, F.zeros_like(x))),
    "Shrink": ({"bias": 0.0, "lambd": 0.5},
               lambda x, bias, lambd: F.where(x < -lambd, x + bias,
                                              F.where(x > lambd, x - bias, F.zeros_like(x)))),
    "Swish": ({"alpha": 1.0}, lambda x, alpha: x * F.sigmoid(x * alpha)),
    "IsInf": ({"detect_positive": 1, "detect_negative": 1},
              lambda x, detect_positive, detect_negative: _is_inf(x, detect_positive, detect_negative)),
}


def _is_inf(x, positive, negative):
    pos, neg = F.equal(x, math.inf), F.equal(x, -math.inf)
    if positive and negative:
        return pos | neg
    return pos if positive else neg if negative else F.zeros_like(pos)


def _unary(fn):
    return lambda n: fn(n.value(0))


def _binary(fn):
    return lambda n: fn(n.value(0), n.value(1))


def _activation(defaults, fn):
    return lambda n: fn(n.value(0), **{k: n.attr(k, v) for k, v in defaults.items()})


for _op, _fn in UNARY.items():
    converter(_op, since=6)(_unary(_fn))
for _op, _fn in BINARY.items():
    converter(_op, since=7)(_binary(_fn))
for _op, (_defaults, _fn) in ACTIVATIONS.items():
    converter(_op, since=6)(_activation(_defaults, _fn))


# ---------------------------------------------------------------- variadic
VARIADIC = {"Max": F.maximum, "Min": F.minimum, "Sum": F.add, "Mean": F.add}


def _variadic(n):
    xs = n.values(0)
    if not xs:
        n.fail("needs at least one input")
    out = functools.reduce(VARIADIC[n.op_type], xs)
    return out * (1.0 / len(xs)) if n.op_type == "Mean" and len(xs) > 1 else out


converter(*VARIADIC, since=8)(_variadic)


# ---------------------------------------------------------------- attributes that choose the rule
@converter("Gelu", since=20)
def _gelu(n):
    x, how = n.value(0), n.attr("approximate", "none")
    if how == "none":
        return x * 0.5 * (F.erf(x * (1 / math.sqrt(2))) + 1.0)
    if how == "tanh":
        return x * 0.5 * (F.tanh((x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)) + 1.0)
    n.fail(f"approximate must be 'none' or 'tanh', got {how!r}")


@converter("Mod", since=10)
def _mod(n):
    a, b, fmod = n.value(0), n.value(1), n.attr("fmod", 0)
    # float64 holds every int32 and every int64 below 2**53 exactly
    wa, wb = F.cast(a, "float64"), F.cast(b, "float64")
    q = wa / wb
    r = wa - (_trunc(q) if fmod else F.floor(q)) * wb
    if a.dtype.is_float:
        # x mod +-inf: x itself (C fmod), or, flooring, x where it has the divisor's sign and inf otherwise
        inf = F.equal(F.abs(wb), math.inf)
        same_sign = F.equal(wa < 0, wb < 0) | F.equal(wa, 0.0)
        r = F.where(inf, wa if fmod else F.where(same_sign, wa, wb), r)
    return F.cast(r, a.dtype)


@converter("Where", since=9)
def _where(n):
    return F.where(n.value(0), n.value(1), n.value(2))


@converter("Clip", since=11)
def _clip(n):
    x = n.value(0)
    lo = n.value(1) if n.has(1) else None
    hi = n.value(2) if n.has(2) else None
    return F.clip(x, lo, hi)


@converter("Cast", since=6)
def _cast(n):
    to = n.attr("to")
    if to is None:
        n.fail("attribute 'to' is required")
    return F.cast(n.value(0), symfuse_dtype(to, f"{n.where}: 'to'"))


@converter("CastLike", since=15)
def _cast_like(n):
    return F.cast(n.value(0), n.value(1).dtype)
