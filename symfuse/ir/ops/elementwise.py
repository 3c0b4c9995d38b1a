"""Elementwise ops: one table row per op (type rule, numpy reference, VJP, C expression).

Binary ops broadcast with numpy rules; operands must share a dtype (Python
scalars are converted to the tensor's dtype by the API before they get here).
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import DTypeError
from ..core import defop
from ..types import as_dtype, bool_, tensor_type
from ._rules import elementwise_type, require_float
from .. import build as F


def _float_unary(types, attrs):
    require_float(types[0])
    return (types[0],)


def _num_unary(types, attrs):
    if types[0].dtype.is_bool:
        raise DTypeError(f"operand must be numeric, got {types[0]}")
    return (types[0],)


def _num_binary(types, attrs):
    out = elementwise_type(types)
    if out[0].dtype.is_bool:
        raise DTypeError(f"operands must be numeric, got {types[0]} and {types[1]}; cast booleans with .astype()")
    return out


def _float_binary(types, attrs):
    out = elementwise_type(types)
    require_float(out[0], "operands")
    return out


def _compare(types, attrs):
    return elementwise_type(types, bool_)


def _logical(types, attrs):
    out = elementwise_type(types)
    if not out[0].dtype.is_bool:
        raise DTypeError(f"operands must be bool, got {types[0]} and {types[1]}")
    return out


def _int_unary(types, attrs):
    if not types[0].dtype.is_int:
        raise DTypeError(f"operand must be an integer tensor, got {types[0]}; "
                         "for bool use logical_not")
    return (types[0],)


def _int_binary(types, attrs):
    out = elementwise_type(types)
    if not out[0].dtype.is_int:
        raise DTypeError(f"operands must be integer tensors, got {types[0]} and {types[1]}; for bool use "
                         "logical_and / logical_or / not_equal, for floats cast to an integer dtype first")
    return out


def _erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _sign_ref(x):
    return np.sign(x)


# ONNX has no op of these: compositions (log1p and expm1 lose the bits of their small
# arguments in float32 that the fused functions keep)
def _onnx_log1p(g, op, names):
    return g.node("Log", g.node("Add", [names[0], g.scalar(1, op.inputs[0].dtype)]))


def _onnx_expm1(g, op, names):
    return g.node("Sub", g.node("Exp", names) + [g.scalar(1, op.inputs[0].dtype)])


def _onnx_rsqrt(g, op, names):
    return g.node("Reciprocal", g.node("Sqrt", names))


def _onnx_ne(g, op, names):
    return g.node("Not", g.node("Equal", names))


def _onnx_bitwise(op_type):
    def rule(g, op, names):
        if g.opset < 18:
            g.unsupported(op, f"ONNX has {op_type} from opset 18 on; save with opset=18 or newer")
        return g.node(op_type, names)
    return rule


def _onnx_shift(direction):
    def rule(g, op, names):
        # BitShift takes unsigned integers, and signed ones (numpy's semantics) from opset 28
        dtype = op.inputs[0].dtype
        schema = g.onnx.defs.get_schema("BitShift", g.opset)
        if f"tensor({dtype.name})" not in {t for c in schema.type_constraints for t in c.allowed_type_strs}:
            g.unsupported(op, f"BitShift of opset {g.opset} does not take {dtype} (signed integers: from opset 28)")
        return g.node("BitShift", names, direction=direction)
    return rule


# ---------------------------------------------------------------- unary table
# name: (type rule, numpy reference, C expression, vjp(g, x, y) or None, ONNX export); vjp None:
# the op is piecewise constant (zero gradient), registered with differentiable=False
UNARY = {
    "neg": (_num_unary, np.negative, "(-{0})", lambda g, x, y: -g, "Neg"),
    "exp": (_float_unary, np.exp, "sf_exp({0})", lambda g, x, y: g * y, "Exp"),
    "log": (_float_unary, np.log, "sf_log({0})", lambda g, x, y: g / x, "Log"),
    "log1p": (_float_unary, np.log1p, "log1p({0})", lambda g, x, y: g / (x + 1), _onnx_log1p),
    "expm1": (_float_unary, np.expm1, "expm1({0})", lambda g, x, y: g * (y + 1), _onnx_expm1),
    "sqrt": (_float_unary, np.sqrt, "sqrt({0})", lambda g, x, y: g * 0.5 / y, "Sqrt"),
    "rsqrt": (_float_unary, lambda x: 1 / np.sqrt(x), "(({T})1 / sqrt({0}))",
              lambda g, x, y: g * (-0.5) * y / x, _onnx_rsqrt),
    "abs": (_num_unary, np.abs, "sf_abs({0})", lambda g, x, y: g * F.sign(x), "Abs"),
    "sign": (_num_unary, _sign_ref, "({0} != {0} ? {0} : ({T})(({0} > 0) - ({0} < 0)))", None, "Sign"),
    "reciprocal": (_float_unary, lambda x: 1 / x, "(({T})1 / {0})", lambda g, x, y: -(g * y * y), "Reciprocal"),
    "tanh": (_float_unary, np.tanh, "sf_tanh({0})", lambda g, x, y: g * (1 - y * y), "Tanh"),
    "sigmoid": (_float_unary, lambda x: 1 / (1 + np.exp(-x)), "(({T})1 / (({T})1 + sf_exp(-{0})))",
                lambda g, x, y: g * y * (1 - y), "Sigmoid"),
    "relu": (_num_unary, lambda x: np.maximum(x, 0), "(({0} > ({T})0 || {0} != {0}) ? {0} : ({T})0)",
             # y > 0 exactly where x > 0: reading y lets x fuse away into relu's producer
             lambda g, x, y: F.where(y > 0, g, F.zeros_like(g)), "Relu"),
    "softplus": (_float_unary, lambda x: np.logaddexp(x, 0).astype(x.dtype),
                 "(fmax({0}, ({T})0) + log1p(exp(-fabs({0}))))", lambda g, x, y: g * F.sigmoid(x), "Softplus"),
    "erf": (_float_unary, _erf, "erf({0})",
            lambda g, x, y: g * (2 / math.sqrt(math.pi)) * F.exp(-(x * x)), "Erf"),
    "sin": (_float_unary, np.sin, "sin({0})", lambda g, x, y: g * F.cos(x), "Sin"),
    "cos": (_float_unary, np.cos, "cos({0})", lambda g, x, y: -(g * F.sin(x)), "Cos"),
    "floor": (_float_unary, np.floor, "floor({0})", None, "Floor"),
    "ceil": (_float_unary, np.ceil, "ceil({0})", None, "Ceil"),
    "round": (_float_unary, np.round, "nearbyint({0})", None, "Round"),
    "logical_not": (lambda t, a: (_bool_only(t[0]),), np.logical_not, "(!{0})", None, "Not"),
    "bitwise_not": (_int_unary, np.invert, "(~{0})", None, _onnx_bitwise("BitwiseNot")),
}


def _bool_only(t):
    if not t.dtype.is_bool:
        raise DTypeError(f"operand must be bool, got {t}")
    return t


def _unary_vjp(rule):
    def vjp(op, cts):
        g = cts[0]
        return [rule(g, op.inputs[0], op.outputs[0])]
    return vjp


for _name, (_infer, _ref, _c, _vjp, _onnx) in UNARY.items():
    defop(_name, kind="elementwise", infer=_infer,
          ref=(lambda f: lambda xs, a: f(xs[0]))(_ref),
          vjp=_unary_vjp(_vjp) if _vjp else None, differentiable=_vjp is not None, c_expr=_c, arity=1,
          onnx=_onnx)


# ---------------------------------------------------------------- binary table
def _pow_ref(a, b):
    with np.errstate(all="ignore"):
        return np.power(a, b)


BINARY = {
    # name: (type rule, numpy ref, C expression, vjp(g, a, b, y) -> (ga, gb), commutative, ONNX
    # export); vjp None: a comparison or logical op, differentiable=False
    "add": (_num_binary, np.add, "({0} + {1})", lambda g, a, b, y: (g, g), True, "Add"),
    "sub": (_num_binary, np.subtract, "({0} - {1})", lambda g, a, b, y: (g, -g), False, "Sub"),
    "mul": (_num_binary, np.multiply, "({0} * {1})", lambda g, a, b, y: (g * b, g * a), True, "Mul"),
    "div": (_float_binary, np.divide, "({0} / {1})",
            lambda g, a, b, y: (g / b, -(g * y / b)), False, "Div"),
    "pow": (_float_binary, _pow_ref, "pow({0}, {1})",
            lambda g, a, b, y: (g * b * F.power(a, b - 1),
                                g * F.where(a > 0, y * F.log(F.where(a > 0, a, F.ones_like(a))),
                                            F.zeros_like(y))), False, "Pow"),
    "maximum": (_num_binary, np.maximum, "(({0} >= {1} || {0} != {0}) ? {0} : {1})",
                lambda g, a, b, y: (F.where(a >= b, g, F.zeros_like(g)),
                                    F.where(a >= b, F.zeros_like(g), g)), True, "Max"),
    "minimum": (_num_binary, np.minimum, "(({0} <= {1} || {0} != {0}) ? {0} : {1})",
                lambda g, a, b, y: (F.where(a <= b, g, F.zeros_like(g)),
                                    F.where(a <= b, F.zeros_like(g), g)), True, "Min"),
    "lt": (_compare, np.less, "({0} < {1})", None, False, "Less"),
    "le": (_compare, np.less_equal, "({0} <= {1})", None, False, "LessOrEqual"),
    "gt": (_compare, np.greater, "({0} > {1})", None, False, "Greater"),
    "ge": (_compare, np.greater_equal, "({0} >= {1})", None, False, "GreaterOrEqual"),
    "eq": (_compare, np.equal, "({0} == {1})", None, True, "Equal"),
    "ne": (_compare, np.not_equal, "({0} != {1})", None, True, _onnx_ne),
    "logical_and": (_logical, np.logical_and, "({0} && {1})", None, True, "And"),
    "logical_or": (_logical, np.logical_or, "({0} || {1})", None, True, "Or"),
    "bitwise_and": (_int_binary, np.bitwise_and, "({0} & {1})", None, True, _onnx_bitwise("BitwiseAnd")),
    "bitwise_or": (_int_binary, np.bitwise_or, "({0} | {1})", None, True, _onnx_bitwise("BitwiseOr")),
    "bitwise_xor": (_int_binary, np.bitwise_xor, "({0} ^ {1})", None, True, _onnx_bitwise("BitwiseXor")),
    # a shift by the width or more (or by a negative amount) is undefined in C: numpy's
    # result instead, 0 (or -1 shifting a negative signed value right); a left shift goes
    # through uint64_t, where shifting a negative signed value is undefined too
    "left_shift": (_int_binary, np.left_shift,
                   "((uint64_t)({1}) < 8 * sizeof({T}) ? ({T})((uint64_t)({0}) << {1}) : ({T})0)",
                   None, False, _onnx_shift("LEFT")),
    # signed: arithmetic (numpy's, and gcc's >> on a negative value); unsigned: logical
    "right_shift": (_int_binary, np.right_shift,
                    "((uint64_t)({1}) < 8 * sizeof({T}) ? ({T})({0} >> {1}) : ({0} < 0 ? ({T})-1 : ({T})0))",
                    None, False, _onnx_shift("RIGHT")),
}


def _binary_vjp(rule):
    def vjp(op, cts):
        a, b = op.inputs
        ga, gb = rule(cts[0], a, b, op.outputs[0])
        return [F.unbroadcast(ga, a.shape), F.unbroadcast(gb, b.shape)]
    return vjp


def _binary_ref(f):
    def ref(xs, attrs):
        out = f(xs[0], xs[1])
        return out
    return ref


for _name, (_infer, _ref, _c, _vjp, _comm, _onnx) in BINARY.items():
    defop(_name, kind="elementwise", infer=_infer, ref=_binary_ref(_ref),
          vjp=_binary_vjp(_vjp) if _vjp else None, differentiable=_vjp is not None, c_expr=_c,
          commutative=_comm, arity=2, onnx=_onnx)


# ---------------------------------------------------------------- where, cast
def _where_infer(types, attrs):
    c, a, b = types
    if not c.dtype.is_bool:
        raise DTypeError(f"condition must be bool, got {c}")
    out = elementwise_type((a, b))[0]
    from ._rules import broadcast
    return (tensor_type(out.dtype, broadcast(types)),)


def _where_vjp(op, cts):
    c, a, b = op.inputs
    g = cts[0]
    z = F.zeros_like(g)
    return [None, F.unbroadcast(F.where(c, g, z), a.shape), F.unbroadcast(F.where(c, z, g), b.shape)]


defop("where", kind="elementwise", infer=_where_infer,
      ref=lambda xs, a: np.where(xs[0], xs[1], xs[2]),
      vjp=_where_vjp, c_expr="({0} ? {1} : {2})", onnx="Where")


def _cast_infer(types, attrs):
    attrs["dtype"] = as_dtype(attrs["dtype"])
    return (tensor_type(attrs["dtype"], types[0].shape),)


def _cast_vjp(op, cts):
    x = op.inputs[0]
    if not (x.dtype.is_float and op.outputs[0].dtype.is_float):
        return [None]
    return [F.cast(cts[0], x.dtype)]


defop("cast", kind="elementwise", infer=_cast_infer, attrs={"dtype": None},
      ref=lambda xs, a: xs[0].astype(a["dtype"].np), vjp=_cast_vjp, c_expr="(({T}){0})",
      onnx=lambda g, op, names: g.node("Cast", names, to=g.dtype(op.attrs["dtype"])))
