"""Random tensors from a counter-based generator (``sf.random``).

Draws are pure functions of (seed, salt, shape): the same arguments give the
same numbers on every backend. For fresh numbers on every call of a compiled
function, pass a symbolic seed that changes, e.g. a shared counter::

    step = sf.shared(np.int64(0), name="step")
    rs = sf.random.RandomStream(step)
    mask = rs.bernoulli(0.5, shape=(128, 500))       # dropout mask
    f = sf.function([x], y, updates=[(step, step + 1)])

Two draws with the same seed and salt are identical: use different salts (or a
RandomStream, which numbers its draws) for independent tensors. The stream is
defined exactly in :mod:`symfuse.ir.ops.random`.
"""
from __future__ import annotations

import itertools
import numbers

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir.core import Value, apply
from ..ir.types import as_dtype
from .api import as_tensor, constant
from ..ir.build import _at


def _seed(seed, fn) -> Value:
    if isinstance(seed, Value):
        return seed            # the op checks it is an integer scalar
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        return constant(np.uint32(int(seed) & 0xFFFFFFFF))
    raise DTypeError(f"{fn}: seed must be a Python int or a symbolic integer scalar, got {seed!r}{_at()}")


def _shape(shape, fn) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"{fn}: shape must be an int or a sequence of ints, got {shape!r}{_at()}") from None
    if any(s < 0 for s in out):
        raise ShapeError(f"{fn}: negative dimension in shape {out}{_at()}")
    return out


def _draw(name, shape, seed, dtype, salt, extra=()):
    fn = name[len("random_"):]
    return apply(name, [_seed(seed, fn), *extra], {"shape": _shape(shape, fn), "dtype": dtype, "salt": salt})


def _is_const(v, c) -> bool:
    return isinstance(v, numbers.Real) and v == c


def uniform(shape, seed, low=0.0, high=1.0, dtype="float32", salt=0) -> Value:
    """Uniform numbers in [low, high) (low and high may be tensors that broadcast). The
    unit draw is in [0, 1); after scaling, float rounding can land exactly on high."""
    u = _draw("random_uniform", shape, seed, dtype, salt)
    if _is_const(low, 0) and _is_const(high, 1):
        return u
    return low + (high - low) * u


def normal(shape, seed, mean=0.0, std=1.0, dtype="float32", salt=0) -> Value:
    """Normal numbers with the given mean and standard deviation (Box-Muller)."""
    z = _draw("random_normal", shape, seed, dtype, salt)
    if not _is_const(std, 1):
        z = std * z
    return z if _is_const(mean, 0) else mean + z


def bernoulli(p, seed, shape=None, dtype="float32", salt=0) -> Value:
    """1.0 with probability p, else 0.0 (p: a float or a float tensor broadcastable to shape;
    shape defaults to p's shape)."""
    if not isinstance(p, Value):
        if not isinstance(p, (numbers.Real, np.ndarray, list, tuple)) or isinstance(p, bool):
            raise DTypeError(f"bernoulli: p must be a probability or a float tensor, got {p!r}{_at()}")
        dt = as_dtype(dtype)
        p = np.asarray(p, dtype=dt.np if dt.is_float else np.float32)   # the op rejects a bad dtype
    p = as_tensor(p)
    return _draw("random_bernoulli", p.shape if shape is None else shape, seed, dtype, salt, (p,))


class RandomStream:
    """Numbers its draws: each call uses the next salt (salt0, salt0 + 1, ...), so two
    draws from one stream differ while the whole sequence stays reproducible."""

    def __init__(self, seed, salt: int = 0):
        self.seed = _seed(seed, "RandomStream")
        self._salts = itertools.count(salt)

    def uniform(self, shape, low=0.0, high=1.0, dtype="float32") -> Value:
        return uniform(shape, self.seed, low, high, dtype, next(self._salts))

    def normal(self, shape, mean=0.0, std=1.0, dtype="float32") -> Value:
        return normal(shape, self.seed, mean, std, dtype, next(self._salts))

    def bernoulli(self, p, shape=None, dtype="float32") -> Value:
        return bernoulli(p, self.seed, shape, dtype, next(self._salts))
