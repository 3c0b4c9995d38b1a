"""The IR builder: numpy-like functions that build IR ops through ``apply``.

Everything that builds IR uses these: the user API (``symfuse.frontend``
re-exports them), the ops' VJPs and the rewrites. Importing this module also
gives ``Value`` its operators (``x + y``, ``x @ W``, ``x[1:]``, ``x.T``).

Python and 0-d numpy scalars are *weakly typed*: they take the dtype of the
tensor they meet (``x * 2`` keeps ``x``'s float32). Two tensors of different
dtypes never mix silently: cast one with ``.astype``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import AxisError, DTypeError, ShapeError
from .core import Value, apply, format_loc, user_location
from .symdim import SymInt, maybe_nonzero
from .types import as_dtype

# --------------------------------------------------------------------------- leaves
def _at() -> str:
    """`` (at file:line)`` of the user's code, for messages raised outside ``apply``."""
    where = format_loc(user_location())
    return f" (at {where})" if where else ""


def _dtype(dtype, what):
    try:
        return as_dtype(dtype)
    except DTypeError as e:
        raise DTypeError(f"{what}: {e}{_at()}") from None


def _default_array(x) -> np.ndarray:
    """Python floats become float32 and ints int32 (the deep-learning defaults)."""
    if isinstance(x, bool):
        return np.asarray(x)
    if isinstance(x, numbers.Integral) and not isinstance(x, np.generic):
        return np.asarray(x, dtype=np.int32)
    if isinstance(x, numbers.Real) and not isinstance(x, np.generic):
        return np.asarray(x, dtype=np.float32)
    try:
        arr = np.asarray(x)
    except ValueError:
        raise ShapeError(f"cannot make a tensor from {type(x).__name__} {_short(x)}: its nested sequences "
                         f"have different lengths{_at()}") from None
    if arr.dtype.kind not in "biuf":       # strings, objects, complex: not numbers a tensor can hold
        raise DTypeError(f"cannot make a tensor from {type(x).__name__} {_short(x)} (numpy dtype {arr.dtype}); "
                         f"use numbers, bools or numeric arrays{_at()}")
    if isinstance(x, (list, tuple)) and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr


def _short(x) -> str:
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def size_value(n, dtype="float32") -> Value:
    """A size as a 0-d tensor; a run-time size (``SymInt``) is counted when the
    function runs (a sum of ones, exact in its double or int64 accumulator)."""
    dt = _dtype(dtype, "size")
    if type(n) is not SymInt:
        return constant(np.asarray(n, dt.np))
    return sum(broadcast_to(constant(np.ones((), dt.np)), (n,)))


def constant(array, dtype=None) -> Value:
    if type(array) is SymInt:       # x / x.shape[0]: the size of this call, not the trace value
        return size_value(array, dtype or "int32")
    arr = _default_array(array)
    if dtype is not None:
        arr = arr.astype(_dtype(dtype, "constant").np)
    _dtype(arr.dtype, "constant")
    return apply("constant", [], {"value": np.array(arr, order="C")})


def _is_weak(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic)) or (isinstance(x, np.ndarray) and x.ndim == 0)


def as_tensor(x, like: Value | None = None) -> Value:
    if isinstance(x, Value):
        return x
    if type(x) is SymInt:
        return size_value(x, like.dtype if like is not None else "int32")
    if like is not None and _is_weak(x):
        dt = like.dtype
        v = x.item() if isinstance(x, (np.generic, np.ndarray)) else x
        if isinstance(v, complex):
            raise DTypeError(f"cannot combine {like.type} with the complex scalar {v!r}{_at()}")
        if dt.is_int and isinstance(v, float) and not float(v).is_integer():
            raise DTypeError(f"cannot combine {like.type} with the float scalar {v!r}; cast the tensor first{_at()}")
        if dt.is_bool and not isinstance(v, (bool, np.bool_)):
            raise DTypeError(f"cannot combine bool tensor {like.type} with the number {v!r}{_at()}")
        if dt.is_int and not np.iinfo(dt.np).min <= v <= np.iinfo(dt.np).max:
            raise DTypeError(f"the scalar {v!r} does not fit in {like.type}'s {dt}; cast the tensor first{_at()}")
        return constant(np.asarray(v, dtype=dt.np))
    return constant(x)


def _binary(name, a, b):
    if not isinstance(a, Value) and not isinstance(b, Value):
        a = constant(a)
    if isinstance(a, Value):
        b = as_tensor(b, a)
    else:
        a = as_tensor(a, b)
    return apply(name, [a, b])


# --------------------------------------------------------------------------- elementwise
def _unary(name):
    def f(x):
        return apply(name, [as_tensor(x)])
    f.__name__ = name
    f.__doc__ = f"Elementwise {name}."
    return f


exp, log, log1p, expm1, sqrt, rsqrt = (_unary(n) for n in ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt"))
abs, sign, reciprocal, tanh, sigmoid = (_unary(n) for n in ("abs", "sign", "reciprocal", "tanh", "sigmoid"))
relu, softplus, erf, sin, cos = (_unary(n) for n in ("relu", "softplus", "erf", "sin", "cos"))
floor, ceil, round, logical_not = (_unary(n) for n in ("floor", "ceil", "round", "logical_not"))
bitwise_not = _unary("bitwise_not")
negative = _unary("neg")


def _bin(name):
    def f(a, b):
        return _binary(name, a, b)
    f.__name__ = name
    return f


add, subtract, multiply, divide = _bin("add"), _bin("sub"), _bin("mul"), _bin("div")
power, maximum, minimum = _bin("pow"), _bin("maximum"), _bin("minimum")
less, less_equal, greater, greater_equal = _bin("lt"), _bin("le"), _bin("gt"), _bin("ge")
equal, not_equal = _bin("eq"), _bin("ne")
logical_and, logical_or = _bin("logical_and"), _bin("logical_or")
bitwise_and, bitwise_or, bitwise_xor = _bin("bitwise_and"), _bin("bitwise_or"), _bin("bitwise_xor")
left_shift, right_shift = _bin("left_shift"), _bin("right_shift")   # right: arithmetic for signed ints


def _by_dtype(logical, bitwise):
    """``&``, ``|``, ``^``, ``~`` as numpy reads them: logical on bool tensors, bitwise on integers."""
    def f(a, *b):
        x = a if isinstance(a, Value) else b[0]
        return (logical if x.dtype.is_bool else bitwise)(a, *b)
    return f


def square(x):
    return multiply(x, x)


def where(cond, a, b):
    cond = as_tensor(cond)
    if isinstance(a, Value):
        b = as_tensor(b, a)
    elif isinstance(b, Value):
        a = as_tensor(a, b)
    else:
        a, b = constant(a), constant(b)
    return apply("where", [cond, a, b])


def clip(x, lo, hi):
    x = as_tensor(x)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def cast(x, dtype) -> Value:
    x = as_tensor(x)
    dt = _dtype(dtype, "cast")
    if dt is x.dtype:
        return x
    return apply("cast", [x], {"dtype": dt})


def zeros(shape, dtype="float32") -> Value:
    return full(shape, 0, dtype)


def ones(shape, dtype="float32") -> Value:
    return full(shape, 1, dtype)


def full(shape, value, dtype="float32") -> Value:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    c = constant(np.asarray(value, dtype=_dtype(dtype, "full").np))
    return c if shape == () else broadcast_to(c, shape)


def zeros_like(x, dtype=None) -> Value:
    return full(x.shape, 0, dtype or x.dtype)


def ones_like(x, dtype=None) -> Value:
    return full(x.shape, 1, dtype or x.dtype)


# --------------------------------------------------------------------------- reductions
def _reduce(name):
    def f(x, axis=None, keepdims=False):
        return apply(name, [as_tensor(x)], {"axis": axis, "keepdims": keepdims})
    f.__name__ = name
    return f


sum, prod, max, min = _reduce("sum"), _reduce("prod"), _reduce("max"), _reduce("min")


def _argreduce(name):
    def f(x, axis=None, keepdims=False):
        return apply(name, [as_tensor(x)], {"axis": axis, "keepdims": keepdims})
    f.__name__ = name
    return f


argmax, argmin = _argreduce("argmax"), _argreduce("argmin")


def mean(x, axis=None, keepdims=False):
    x = as_tensor(x)
    if not x.dtype.is_float:
        raise DTypeError(f"mean of {x.type}: cast it to a float dtype first{_at()}")
    s = sum(x, axis, keepdims)
    n = x.size // s.size if s.size else 1
    if n == 0:      # no elements: nan, as numpy and JAX give (the empty sum is 0, times nan)
        return s * math.nan
    if type(n) is SymInt:       # a run-time count, never a Python float
        return s / size_value(n, x.dtype)
    return s if n == 1 else s * (1.0 / n)


def var(x, axis=None, keepdims=False):
    x = as_tensor(x)
    m = mean(x, axis, keepdims=True)
    return mean(square(x - m), axis, keepdims)


def std(x, axis=None, keepdims=False):
    return sqrt(var(x, axis, keepdims))


# --------------------------------------------------------------------------- shapes
def reshape(x, shape) -> Value:
    x = as_tensor(x)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if shape == x.shape:
        return x
    return apply("reshape", [x], {"shape": shape})


def flatten(x) -> Value:
    return reshape(x, (-1,))


def transpose(x, axes=None) -> Value:
    x = as_tensor(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
    if perm == tuple(range(x.ndim)):
        return x
    return apply("transpose", [x], {"perm": perm})


def broadcast_to(x, shape) -> Value:
    x = as_tensor(x)
    shape = tuple(shape)
    if shape == x.shape:
        return x
    return apply("broadcast_to", [x], {"shape": shape})


def expand_dims(x, axis) -> Value:
    x = as_tensor(x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    norm = sorted(a % nd if -nd <= a < nd else _bad_axis("expand_dims", a, nd, x) for a in axes)
    shape = list(x.shape)
    for a in norm:
        shape.insert(a, 1)
    return reshape(x, shape)


def _bad_axis(op, a, nd, x):
    what = f"result rank {nd} of {x.type}" if op == "expand_dims" else f"{x.type}"
    raise AxisError(f"{op}: axis {a} out of range for {what}{_at()}")


def squeeze(x, axis=None) -> Value:
    x = as_tensor(x)
    if axis is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
    else:
        axes = [axis] if isinstance(axis, int) else list(axis)
        axes = [a % x.ndim if -x.ndim <= a < x.ndim else _bad_axis("squeeze", a, x.ndim, x) for a in axes]
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(f"squeeze: axis {a} of {x.type} has size {x.shape[a]}, not 1 "
                                 f"(at {format_loc(user_location())})")
    return reshape(x, [s for i, s in enumerate(x.shape) if i not in axes])


def concatenate(xs, axis=0) -> Value:
    xs = [as_tensor(x) for x in xs]
    if len(xs) == 1:
        return xs[0]
    return apply("concatenate", xs, {"axis": axis})


def stack(xs, axis=0) -> Value:
    xs = [as_tensor(x) for x in xs]
    if not xs:
        raise ShapeError(f"stack needs at least one tensor{_at()}")
    return concatenate([expand_dims(x, axis) for x in xs], axis)


def pad(x, pad_width, value=0.0) -> Value:
    """numpy-style constant padding: pad_width is an int, (lo, hi), or one pair per axis."""
    x = as_tensor(x)
    try:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2)) if x.ndim else np.zeros((0, 2), int)
    except (ValueError, TypeError):
        raise ShapeError(f"pad: pad_width {pad_width!r} is not an int, a (lo, hi) pair or one pair per axis "
                         f"of {x.type}{_at()}") from None
    return pad_general(x, pw[:, 0].tolist(), pw[:, 1].tolist(), None, value)


def pad_general(x, lo, hi, interior=None, value=0.0) -> Value:
    x = as_tensor(x)
    if not isinstance(value, (numbers.Real, np.generic)) or isinstance(value, np.ndarray):
        raise DTypeError(f"pad: value must be a number, got {value!r}{_at()}")
    interior = tuple(interior) if interior is not None else (0,) * x.ndim
    if not any(map(maybe_nonzero, (*lo, *hi, *interior))):
        return x
    return apply("pad", [x], {"lo": tuple(lo), "hi": tuple(hi), "interior": interior, "value": value})


def slice_general(x, start, stop, step) -> Value:
    x = as_tensor(x)
    if tuple(start) == (0,) * x.ndim and tuple(stop) == x.shape and tuple(step) == (1,) * x.ndim:
        return x
    return apply("slice", [x], {"start": tuple(start), "stop": tuple(stop), "step": tuple(step)})


def flip(x, axis=None) -> Value:
    x = as_tensor(x)
    return apply("flip", [x], {"axes": axis})


def getitem(x: Value, index) -> Value:
    """Static basic indexing: ints, slices (any step), None, Ellipsis; an integer
    tensor as the only index gathers along axis 0."""
    if isinstance(index, Value):
        return take(x, index, axis=0)
    idx = index if isinstance(index, tuple) else (index,)
    if builtins_sum(1 for i in idx if i is Ellipsis) > 1:
        raise ShapeError(f"an index can only have a single ellipsis{_at()}")
    consumed = builtins_sum(1 for i in idx if i is not None and i is not Ellipsis)
    if consumed > x.ndim:
        raise ShapeError(f"too many indices ({consumed}) for {x.type} (at {format_loc(user_location())})")
    if Ellipsis in [i if i is Ellipsis else None for i in idx]:
        k = [j for j, i in enumerate(idx) if i is Ellipsis][0]
        idx = idx[:k] + (slice(None),) * (x.ndim - consumed) + idx[k + 1:]
    else:
        idx = idx + (slice(None),) * (x.ndim - consumed)
    start, stop, step, flips, out_shape = [], [], [], [], []
    ax = 0
    for i in idx:
        if i is None:
            out_shape.append(1)
            continue
        d = x.shape[ax]
        if isinstance(i, slice) and type(d) is SymInt:
            b, e, s, n = _run_time_slice(i, d, ax, x)
            start.append(b), stop.append(e), step.append(s)
            out_shape.append(n)
        elif isinstance(i, (numbers.Integral, np.integer)) and not isinstance(i, bool) and type(d) is SymInt:
            j = int(i)
            j = j if j >= 0 else d + j          # Python's index from the end, at the call's size
            start.append(j), stop.append(j + 1), step.append(1)
        elif isinstance(i, slice):
            try:
                r = range(*i.indices(d))
            except (ValueError, TypeError) as e:
                raise ShapeError(f"bad slice {i} for axis {ax} of {x.type}: {e}{_at()}") from None
            if len(r) == 0:
                start.append(0), stop.append(0), step.append(1)
            elif r.step > 0:
                start.append(r.start), stop.append(r[-1] + 1), step.append(r.step)
            else:
                start.append(r[-1]), stop.append(r[0] + 1), step.append(-r.step)
                flips.append(ax)
            out_shape.append(len(r))
        elif isinstance(i, (numbers.Integral, np.integer)) and not isinstance(i, bool):
            j = int(i)
            if not -d <= j < d:
                raise ShapeError(f"index {j} is out of range for axis {ax} of {x.type} "
                                 f"(at {format_loc(user_location())})")
            j %= d
            start.append(j), stop.append(j + 1), step.append(1)
        else:
            raise ShapeError(f"unsupported index {i!r}: use ints, slices, None, ... or one integer tensor{_at()}")
        ax += 1
    y = slice_general(x, start, stop, step)
    if flips:
        y = flip(y, flips)
    return reshape(y, out_shape)


def _run_time_slice(i: slice, d, ax, x):
    """(start, stop, step, length) of a slice of an axis whose size ``d`` is chosen at
    run time: bounds from the end are expressions of it; a bound past the end is not
    clipped (the function then requires that size: ``symdim.Assumption``)."""
    s = 1 if i.step is None else int(i.step)
    if s < 1:
        raise ShapeError(f"slice {i.start}:{i.stop}:{i.step} of axis {ax} of {x.type}: an axis of run-time size "
                         f"takes positive steps only{_at()}")

    def bound(v, default):
        return default if v is None else int(v) if int(v) >= 0 else d + int(v)
    b, e = bound(i.start, 0), bound(i.stop, d)
    return b, e, s, (e - b + s - 1) // s


builtins_sum = __builtins__["sum"] if isinstance(__builtins__, dict) else __builtins__.sum


def unbroadcast(g: Value, shape: tuple[int, ...]) -> Value:
    """Sum a cotangent back down to an operand's (broadcast-from) shape."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = sum(g, axes)
    return reshape(g, shape)


# --------------------------------------------------------------------------- linear algebra
def matmul(a, b) -> Value:
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 1 and b.ndim == 1:
        return sum(a * b) if a.shape == b.shape else apply("matmul", [reshape(a, (1, -1)), reshape(b, (-1, 1))])
    if a.ndim == 1:
        return squeeze(apply("matmul", [reshape(a, (1, a.shape[0])), b]), -2)
    if b.ndim == 1:
        return squeeze(apply("matmul", [a, reshape(b, (b.shape[0], 1))]), -1)
    return apply("matmul", [a, b])


def dot(a, b) -> Value:
    """numpy.dot for vectors and matrices (rank <= 2)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(f"dot supports rank <= 2, got {a.type} and {b.type}; use matmul for batches{_at()}")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return matmul(a, b)


def take(x, indices, axis=0) -> Value:
    """Gather slices of x along ``axis``: shape x.shape[:axis] + indices.shape + x.shape[axis+1:].

    Indices never fault: a negative index counts from the end, then every index is
    clamped into [0, n-1] (so -1 is the last slice and n + 5 is also the last slice)."""
    return apply("take", [as_tensor(x), as_tensor(indices)], {"axis": axis})


# --------------------------------------------------------------------------- numpy ufuncs on Value
# numpy ufuncs (by ``ufunc.__name__``) with a symfuse function of the same meaning;
# numpy hands a call with a symbolic operand to ``Value.__array_ufunc__``
_UFUNCS = {name: globals()[name] for name in (
    "add", "subtract", "multiply", "divide", "power", "negative", "maximum", "minimum", "matmul",
    "exp", "expm1", "log", "log1p", "sqrt", "square", "reciprocal", "sign", "sin", "cos", "tanh",
    "floor", "ceil", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "left_shift", "right_shift")}
_UFUNCS["absolute"] = abs
_UFUNCS["invert"] = _by_dtype(logical_not, bitwise_not)
_UFUNCS["positive"] = lambda x: as_tensor(x)

# what to write instead, for ufuncs without a symfuse op
_UFUNC_HINTS = {
    "tan": "sf.sin(x) / sf.cos(x)", "log2": "sf.log(x) / np.log(2)", "log10": "sf.log(x) / np.log(10)",
    "exp2": "2.0 ** x", "fabs": "sf.abs", "fmax": "sf.maximum",
    "fmin": "sf.minimum", "rint": "sf.round", "isnan": "x != x",
    "logical_xor": "sf.not_equal on bool tensors", "sinh": "(sf.exp(x) - sf.exp(-x)) / 2",
    "cosh": "(sf.exp(x) + sf.exp(-x)) / 2", "logaddexp": "sf.logsumexp over a stacked axis",
}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """``np.exp(x)`` on a symbolic tensor builds ``sf.exp(x)``; numpy calls this for any
    ufunc with a symbolic operand (``ndarray + x`` too)."""
    name = ufunc.__name__
    f = _UFUNCS.get(name)
    if f is None:
        hint = _UFUNC_HINTS.get(name)
        raise TypeError(f"numpy.{name} has no symfuse op for symbolic tensors"
                        + (f"; write {hint}" if hint else "; write it with symfuse functions "
                           "(sf.exp, sf.log, sf.where, ...) or define an op (docs/custom_ops.md)") + _at())
    if method != "__call__":
        raise TypeError(f"numpy.{name}.{method} is not supported on symbolic tensors; use the "
                        f"symfuse function (sf.{_sf_name(name)}, or x.sum()/x.max()/x.min() for a "
                        f"reduction){_at()}")
    if kwargs:
        raise TypeError(f"numpy.{name}: keyword(s) {', '.join(sorted(kwargs))} are not supported on symbolic "
                        f"tensors; call sf.{_sf_name(name)} (the result is a new symbolic tensor){_at()}")
    return f(*inputs)


def _sf_name(name: str) -> str:
    return {"absolute": "abs", "invert": "bitwise_not", "positive": "as_tensor"}.get(name, name)


# --------------------------------------------------------------------------- methods on Value
def _install_methods():
    r = lambda f: (lambda self, other: f(other, self))  # noqa: E731
    methods = {
        "__add__": add, "__radd__": r(add), "__sub__": subtract, "__rsub__": r(subtract),
        "__mul__": multiply, "__rmul__": r(multiply), "__truediv__": divide, "__rtruediv__": r(divide),
        "__pow__": power, "__rpow__": r(power), "__matmul__": matmul, "__rmatmul__": r(matmul),
        "__neg__": negative, "__abs__": abs, "__pos__": lambda self: self,
        "__lt__": less, "__le__": less_equal, "__gt__": greater, "__ge__": greater_equal,
        "__eq__": equal, "__ne__": not_equal,
        "__and__": _by_dtype(logical_and, bitwise_and), "__rand__": r(_by_dtype(logical_and, bitwise_and)),
        "__or__": _by_dtype(logical_or, bitwise_or), "__ror__": r(_by_dtype(logical_or, bitwise_or)),
        "__invert__": _by_dtype(logical_not, bitwise_not),
        "__xor__": _by_dtype(not_equal, bitwise_xor), "__rxor__": r(_by_dtype(not_equal, bitwise_xor)),
        "__lshift__": left_shift, "__rlshift__": r(left_shift), "__rshift__": right_shift,
        "__rrshift__": r(right_shift),
        "__getitem__": getitem,
        "reshape": lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape),
        "transpose": lambda self, *axes: transpose(self, (axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes) or None),
        "flatten": flatten, "sum": sum, "mean": mean, "max": max, "min": min, "prod": prod,
        "argmax": argmax, "argmin": argmin, "astype": cast, "var": var, "std": std,
        "dot": dot,
    }
    for k, f in methods.items():
        setattr(Value, k, f)
    Value.__hash__ = object.__hash__
    Value.__array_ufunc__ = _array_ufunc
    Value.T = property(lambda self: transpose(self))


_install_methods()
