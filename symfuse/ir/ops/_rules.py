"""Shared type/shape rules used by several op families."""
from __future__ import annotations

from ...errors import AxisError, DTypeError, ShapeError
from ..types import TensorType, bool_, broadcast_shapes, tensor_type


def same_dtype(name_types, what="operands"):
    dts = {t.dtype for t in name_types}
    if len(dts) > 1:
        raise DTypeError(f"{what} have different dtypes: "
                         + ", ".join(str(t) for t in name_types)
                         + "; cast one with .astype()")
    return next(iter(dts))


def broadcast(types) -> tuple[int, ...]:
    shape = broadcast_shapes(*(t.shape for t in types))
    if shape is None:
        raise ShapeError("shapes do not broadcast: " + ", ".join(str(t) for t in types))
    return shape


def require_float(t: TensorType, what="operand"):
    if not t.dtype.is_float:
        raise DTypeError(f"{what} must be floating point, got {t}")


def require_int(t: TensorType, what="operand"):
    if not t.dtype.is_int:
        raise DTypeError(f"{what} must be an integer tensor, got {t}")


def norm_axis(axis: int, ndim: int, t=None) -> int:
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise AxisError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise AxisError(f"axis {axis} is out of range for {t if t is not None else f'rank {ndim}'} "
                        f"(valid: {-ndim}..{ndim - 1})")
    return axis % ndim


def norm_axes(axis, ndim: int, t=None) -> tuple[int, ...]:
    """None -> all axes; int or sequence -> sorted, non-negative, unique."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = sorted(norm_axis(a, ndim, t) for a in axis)
    if len(set(out)) != len(out):
        raise AxisError(f"repeated axis in {tuple(axis)} for {t}")
    return tuple(out)


def elementwise_type(types, out_dtype=None) -> tuple[TensorType]:
    dt = same_dtype(types)
    return (tensor_type(out_dtype or dt, broadcast(types)),)


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


__all__ = ["same_dtype", "broadcast", "require_float", "require_int", "norm_axis", "norm_axes",
           "elementwise_type", "reduced_shape", "bool_", "tensor_type"]
