"""Reductions over static axes (axis tuple canonicalised, keepdims flag)."""
from __future__ import annotations

import numpy as np

from ...errors import AxisError, DTypeError, ShapeError
from ..core import defop
from ..types import int32, tensor_type
from ._rules import norm_axes, norm_axis, reduced_shape
from .. import build as F


def _reduce_infer(types, attrs):
    (t,) = types
    if t.dtype.is_bool:
        raise DTypeError(f"cannot reduce a bool tensor {t}; cast it first")
    if not isinstance(attrs["axis"], (int, tuple, type(None))):     # norm_axes would iterate a float
        raise AxisError(f"axis must be an int, a tuple of ints or None, got {attrs['axis']!r}")
    attrs["axis"] = norm_axes(attrs["axis"], t.ndim, t)
    attrs["keepdims"] = bool(attrs["keepdims"])
    return (tensor_type(t.dtype, reduced_shape(t.shape, attrs["axis"], attrs["keepdims"])),)


def _extreme_infer(types, attrs):
    out = _reduce_infer(types, attrs)
    _nonempty(types[0], attrs["axis"], "the reduction has no identity")
    return out


def _nonempty(t, axes, why):
    # as numpy and JAX: an error, where a backend's -inf/+inf start value would be a silent answer
    empty = [a for a in axes if t.shape[a] == 0]
    if empty:
        raise ShapeError(f"axis {empty[0]} of {t} is empty and {why}")


def _keep(g, op):
    """Reshape a reduction's cotangent to keepdims form, then broadcast to the input."""
    x = op.inputs[0]
    shape = reduced_shape(x.shape, op.attrs["axis"], True)
    return F.broadcast_to(F.reshape(g, shape), x.shape)


def _sum_vjp(op, cts):
    return [_keep(cts[0], op)]


def _extreme_vjp(op, cts):
    # Theano semantics: every tied maximum receives the full cotangent.
    x = op.inputs[0]
    y = _keep(op.outputs[0], op)
    g = _keep(cts[0], op)
    return [F.where(F.equal(x, y), g, F.zeros_like(g))]


def _prod_vjp(op, cts):
    # y / x is undefined where x == 0; documented limitation (as in Theano's default).
    x = op.inputs[0]
    return [_keep(cts[0], op) * _keep(op.outputs[0], op) / x]


def _reducer(f):
    def ref(xs, a):
        x = xs[0]
        return np.asarray(f(x, axis=a["axis"], keepdims=a["keepdims"]), dtype=x.dtype)
    return ref


def _onnx_reduce(op_type):
    def rule(g, op, names):
        axes = op.attrs["axis"]
        if not axes:                    # no axis (a 0-d operand): ONNX would reduce them all
            return g.node("Identity", names)
        return g.reduce(op_type, names[0], axes, op.attrs["keepdims"])
    return rule


# name: numpy reference, VJP, has an identity (else an empty axis is an error),
# (identity, C statement combining x into acc: NaN wins max/min, as in numpy), ONNX op
REDUCTIONS = {
    "sum": (np.sum, _sum_vjp, True, ("0", "acc += x;"), "ReduceSum"),
    "prod": (np.prod, _prod_vjp, True, ("1", "acc *= x;"), "ReduceProd"),
    "max": (np.max, _extreme_vjp, False, ("{lo}", "if (x > acc || x != x) acc = x;"), "ReduceMax"),
    "min": (np.min, _extreme_vjp, False, ("{hi}", "if (x < acc || x != x) acc = x;"), "ReduceMin"),
}

for _name, (_f, _vjp, _identity, _rule, _onnx) in REDUCTIONS.items():
    defop(_name, kind="reduce", infer=_reduce_infer if _identity else _extreme_infer,
          ref=_reducer(_f), vjp=_vjp, attrs={"axis": None, "keepdims": False}, fusion="reduce", reduction=_rule,
          onnx=_onnx_reduce(_onnx))


def _arg_infer(types, attrs):
    (t,) = types
    if t.dtype.is_bool:
        raise DTypeError(f"cannot take argmax/argmin of a bool tensor {t}")
    if attrs["axis"] is None:
        shape = (1,) * t.ndim if attrs["keepdims"] else ()
        axes = range(t.ndim)
    else:
        ax = attrs["axis"] = norm_axis(attrs["axis"], t.ndim, t)
        shape, axes = reduced_shape(t.shape, (ax,), attrs["keepdims"]), (ax,)
    _nonempty(t, axes, "argmax/argmin need at least one element")
    return (tensor_type(int32, shape),)


def _arg_ref(f):
    def ref(xs, a):
        return np.asarray(f(xs[0], axis=a["axis"], keepdims=a["keepdims"]), dtype=np.int32)
    return ref


def _onnx_arg(op_type):
    # ONNX's ArgMax/ArgMin take one axis and return int64; axis None is over the flattened tensor
    def rule(g, op, names):
        x, axis, keep = names[0], op.attrs["axis"], int(op.attrs["keepdims"])
        if axis is None:
            (i,) = g.node(op_type, g.node("Reshape", [x, g.ints([-1])]), axis=0, keepdims=0)
            if keep:
                (i,) = g.node("Reshape", [i, g.ints(op.outputs[0].shape)])
        else:
            (i,) = g.node(op_type, [x], axis=axis, keepdims=keep)
        return g.node("Cast", [i], to=g.dtype("int32"))
    return rule


defop("argmax", kind="reduce", infer=_arg_infer, ref=_arg_ref(np.argmax),
      attrs={"axis": None, "keepdims": False}, differentiable=False, onnx=_onnx_arg("ArgMax"))
defop("argmin", kind="reduce", infer=_arg_infer, ref=_arg_ref(np.argmin),
      attrs={"axis": None, "keepdims": False}, differentiable=False, onnx=_onnx_arg("ArgMin"))
