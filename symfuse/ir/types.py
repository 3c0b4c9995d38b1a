"""Tensor types: a dtype and a static shape.

Types are small frozen values; they are interned so that type equality in hot
passes is usually an identity check.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import DTypeError, ShapeError
from .symdim import SymInt, is_symbolic

# generated code indexes with int64_t, and numpy's sizes are ssize_t
MAX_SIZE = 2 ** 63 - 1


@dataclass(frozen=True)
class DType:
    name: str          # numpy name: "float32"
    short: str         # IR spelling: "f32"
    kind: str          # "f" float, "i" signed int, "u" unsigned int, "b" bool
    bits: int
    c_type: str        # scalar type in generated C/CUDA

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.name)

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


DTYPES: dict[str, DType] = {}
for _d in (
    DType("float16", "f16", "f", 16, "half"),
    DType("float32", "f32", "f", 32, "float"),
    DType("float64", "f64", "f", 64, "double"),
    DType("int8", "i8", "i", 8, "int8_t"),
    DType("int16", "i16", "i", 16, "int16_t"),
    DType("int32", "i32", "i", 32, "int32_t"),
    DType("int64", "i64", "i", 64, "int64_t"),
    DType("uint8", "u8", "u", 8, "uint8_t"),
    DType("uint32", "u32", "u", 32, "uint32_t"),
    DType("uint64", "u64", "u", 64, "uint64_t"),
    DType("bool", "i1", "b", 8, "bool"),
):
    DTYPES[_d.name] = _d
    DTYPES[_d.short] = _d

float16, float32, float64 = DTYPES["float16"], DTYPES["float32"], DTYPES["float64"]
int32, int64, uint32, bool_ = DTYPES["int32"], DTYPES["int64"], DTYPES["uint32"], DTYPES["bool"]


# The deep-learning convention (PyTorch's torch.float, TensorFlow's "float", and symfuse's
# own Python-scalar constants): "float" and Python's float are float32, "int" and Python's
# int int32, where numpy would read them as 64-bit. "float64"/"double" and "int64" say 64.
_CONVENTION = {"float": "float32", "int": "int32"}


def as_dtype(d) -> DType:
    """Accept a DType, a name ("float32"/"f32"), a numpy dtype or a Python type.
    "float" (and ``float``) is float32 and "int" (and ``int``) int32, as in the
    deep-learning frameworks, not numpy's float64/int64."""
    if isinstance(d, DType):
        return d
    if d is float or d is int:
        d = d.__name__
    if isinstance(d, str):
        d = _CONVENTION.get(d, d)
        if d in DTYPES:
            return DTYPES[d]
    try:
        name = np.dtype(d).name
    except TypeError:
        name = None
    if name in DTYPES:
        return DTYPES[name]
    raise DTypeError(f"unsupported dtype {d!r}; supported: "
                     + ", ".join(sorted({t.name for t in DTYPES.values()})))


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(map(repr, self.shape))}]"

    __repr__ = __str__


def tensor_type(dtype, shape) -> TensorType:
    """Interned constructor: the same (dtype, shape) gives the same object.

    Raises ShapeError for a dimension that is not an integer (2.7 is not
    truncated), is negative, or makes the size overflow int64."""
    shape = tuple(shape)
    for s in shape:
        if type(s) is not int:
            shape = _as_int_dims(shape)
            if is_symbolic(shape):
                # a run-time size equals its trace value as an int: the key keeps them apart
                return _interned(dtype if isinstance(dtype, DType) else as_dtype(dtype), shape,
                                 tuple(repr(s) for s in shape))
            break
    return _interned(dtype if isinstance(dtype, DType) else as_dtype(dtype), shape)


def _as_int_dims(shape: tuple) -> tuple:
    for k, s in enumerate(shape):
        if isinstance(s, str):
            continue
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise ShapeError(f"shape {shape}: dimension {k} is {s!r}, not an integer")
    return tuple(SymInt.dim(s) if isinstance(s, str) else s if type(s) is SymInt else int(s) for s in shape)


@lru_cache(maxsize=None)
def _interned(dtype: DType, shape: tuple, spelling: tuple = ()) -> TensorType:
    # checked here, once per distinct shape: the key holds exact ints, so a hit is valid
    n = 1
    for k, s in enumerate(shape):
        if s < 0:
            raise ShapeError(f"shape {shape}: dimension {k} is negative ({s})")
        n *= s
    if n * dtype.itemsize > MAX_SIZE or any(s > MAX_SIZE for s in shape):
        raise ShapeError(f"shape {shape}: {n} elements of {dtype.name} exceed the 2**63 - 1 "
                         "bytes an index can address")
    return TensorType(dtype, shape)


def cast_exactly(arr: np.ndarray, dtype: np.dtype, label: str) -> np.ndarray:
    """``arr`` as ``dtype`` when numpy's same-kind cast keeps every value; integers
    that do not fit (``[2**32 + 3]`` into int32) raise instead of wrapping."""
    if arr.dtype.kind in "iub" and dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise DTypeError(f"{label}: value {int(bad)} does not fit in {dtype.name} "
                             f"[{info.min}, {info.max}]")
    return arr.astype(dtype, copy=False)


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """numpy broadcasting of static shapes; None when they do not broadcast."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        dim = 1
        for s in shapes:
            k = i - (nd - len(s))
            if k < 0:
                continue
            d = s[k]
            if d == 1:
                continue
            if dim == 1:
                dim = d
            elif d != dim:
                return None
        out.append(dim)
    return tuple(out)
