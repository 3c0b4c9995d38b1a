"""Elementwise ONNX ops: one table row each (ONNX op type -> symfuse function)."""
from __future__ import annotations

from ...frontend import api as F
from ..registry import converter

UNARY = {
    "Abs": F.abs, "Neg": F.negative, "Exp": F.exp, "Log": F.log, "Sqrt": F.sqrt, "Reciprocal": F.reciprocal,
    "Relu": F.relu, "Sigmoid": F.sigmoid, "Tanh": F.tanh, "Softplus": F.softplus, "Erf": F.erf,
    "Floor": F.floor, "Ceil": F.ceil, "Sign": F.sign, "Sin": F.sin, "Cos": F.cos, "Not": F.logical_not,
    "Round": F.round, "Identity": lambda x: x,
}
BINARY = {
    "Add": F.add, "Sub": F.subtract, "Mul": F.multiply, "Div": F.divide, "Pow": F.power,
    "Less": F.less, "LessOrEqual": F.less_equal, "Greater": F.greater, "GreaterOrEqual": F.greater_equal,
    "Equal": F.equal, "And": F.logical_and, "Or": F.logical_or,
}


def _unary(fn):
    return lambda n: fn(n.value(0))


def _binary(fn):
    return lambda n: fn(n.value(0), n.value(1))


for _op, _fn in UNARY.items():
    converter(_op, since=6)(_unary(_fn))
for _op, _fn in BINARY.items():
    converter(_op, since=7)(_binary(_fn))
