"""The user's symbolic API: inputs (``tensor``), state (``shared``), gradients
(``grad``), and every numpy-like function of the IR builder (``ir/build.py``),
re-exported here.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from ..errors import DTypeError, GradError, InputError, ShapeError
from ..ir.build import *  # noqa: F401,F403  (the numpy-like API)
from ..ir.build_control import cond, scan, stop_gradient, while_loop  # noqa: F401
from ..ir.build import _at, _default_array, _dtype, _short
from ..ir.core import Value, ancestors, apply, format_loc, user_location
from ..ir.types import cast_exactly, tensor_type

# --------------------------------------------------------------------------- leaves
def tensor(name: str, shape: Sequence[int] = (), dtype="float32") -> Value:
    """A symbolic input with a static shape. ``dtype`` "float" is float32 and "int"
    int32 (the frameworks' convention, not numpy's 64-bit reading)."""
    if not isinstance(name, str) or not name:
        raise InputError(f"tensor name must be a non-empty string, got {name!r}{_at()}")
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    dt = _dtype(dtype, f"tensor {name!r}")
    try:
        ty = tensor_type(dt, tuple(shape))
    except TypeError:
        raise ShapeError(f"tensor {name!r}: shape must be a sequence of ints, got {shape!r} "
                         f"(at {format_loc(user_location())})") from None
    except ShapeError as e:
        raise ShapeError(f"tensor {name!r}: {e} (at {format_loc(user_location())})") from None
    return Value(ty, name=name)


class SharedVariable(Value):
    """State that persists across calls of compiled functions (Theano's shared)."""

    __slots__ = ("_value", "default_update")

    def __init__(self, array, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise InputError(f"shared variable name must be a string or None, got {name!r}{_at()}")
        arr = _default_array(array)
        super().__init__(tensor_type(_dtype(arr.dtype, f"shared {name or '<unnamed>'}"), arr.shape), name=name)
        self._value = np.array(arr, copy=True, order="C")
        self.default_update = None

    def get_value(self) -> np.ndarray:
        """A copy of the current value (from the device, where a compiled function left it there)."""
        v = self._value
        return v.copy() if isinstance(v, np.ndarray) else v.to_host()

    def set_value(self, array) -> None:
        label = f"set_value on shared {self.name or '<unnamed>'}"
        try:
            arr = np.asarray(array)
        except ValueError:
            raise ShapeError(f"{label}: {_short(array)} is not a rectangular array{_at()}") from None
        if not np.can_cast(arr.dtype, self.type.dtype.np, casting="same_kind"):
            raise DTypeError(f"{label}: cannot store {arr.dtype} in {self.type.dtype}{_at()}")
        if arr.shape != self.type.shape:
            raise ShapeError(f"{label}: shape {arr.shape} does not match {self.type.shape}{_at()}")
        try:
            arr = cast_exactly(arr, self.type.dtype.np, label)
        except DTypeError as e:
            raise DTypeError(f"{e}{_at()}") from None
        self._value = np.array(arr, copy=True, order="C")

    def __repr__(self):
        return f"<SharedVariable {self.name or ''} {self.type}>"


def shared(array, name: str | None = None) -> SharedVariable:
    return SharedVariable(array, name)


# --------------------------------------------------------------------------- gradients
def grad(cost: Value, wrt, disconnected: str = "raise"):
    """Symbolic gradient of a scalar ``cost`` with respect to one tensor or a list.

    The result is recorded as a deferred ``grad`` op and expanded by the
    differentiate pass, after the forward graph has been stabilised."""
    loc = user_location()
    where = f" (at {format_loc(loc)})" if loc else ""
    single = isinstance(wrt, Value)
    try:
        wrt_list = [wrt] if single else list(wrt)
    except TypeError:
        raise GradError(f"grad: wrt must be a symbolic tensor or a list of them, "
                        f"got {type(wrt).__name__}{where}") from None
    if not isinstance(cost, Value):
        raise GradError(f"grad: cost must be a symbolic tensor, got {type(cost).__name__}{where}")
    for w in wrt_list:
        if not isinstance(w, Value):
            raise GradError(f"grad: wrt must be symbolic tensors, got {type(w).__name__}{where}")
    if cost.size != 1:
        raise GradError(f"grad: the cost must be a scalar, got {cost.type}; reduce it with .sum() or .mean(){where}")
    if disconnected not in ("raise", "zero"):
        raise GradError(f"grad: disconnected must be 'raise' or 'zero', got {disconnected!r}{where}")
    if disconnected == "raise":
        reach = ancestors(cost)
        for w in wrt_list:
            if id(w) not in reach:
                label = w.name or str(w.type)
                raise GradError(f"grad: the cost does not depend on {label}{where}; "
                                "pass disconnected='zero' to get zeros instead")
    if not wrt_list:
        return []
    out = apply("grad", [cost] + wrt_list, {"disconnected": disconnected}, loc=loc)
    outs = [out] if isinstance(out, Value) else list(out)
    return outs[0] if single else outs
