"""Weight initialisers: numpy arrays drawn from a seeded numpy generator.

Each initialiser takes ``(shape, rng=None, dtype="float32")``. ``rng`` is a
``numpy.random.Generator``, an int seed, or None for this module's default
generator (seeded with 0 at import; reseed it with :func:`seed`), so a script
that builds the same layers in the same order gets the same weights.

Fans follow the usual conventions: a dense weight ``(in, out)`` has fan_in = in,
fan_out = out; a convolution weight ``(O, I, kh, kw)`` has fan_in = I*kh*kw,
fan_out = O*kh*kw.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

_default = np.random.default_rng(0)


def seed(value: int) -> None:
    """Reseed the default generator used when no ``rng`` is given."""
    global _default
    _default = np.random.default_rng(value)


def as_rng(rng=None) -> np.random.Generator:
    """A Generator from None (the module default), an int seed, or a Generator."""
    if rng is None:
        return _default
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")


def fans(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _cast(a, dtype):
    return np.asarray(a, dtype=np.dtype(str(dtype)))


def zeros(shape, rng=None, dtype="float32") -> np.ndarray:
    return np.zeros(shape, dtype=np.dtype(str(dtype)))


def ones(shape, rng=None, dtype="float32") -> np.ndarray:
    return np.ones(shape, dtype=np.dtype(str(dtype)))


def glorot_uniform(shape, rng=None, dtype="float32", gain: float = 1.0) -> np.ndarray:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fi, fo = fans(shape)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return _cast(as_rng(rng).uniform(-a, a, shape), dtype)


def glorot_normal(shape, rng=None, dtype="float32", gain: float = 1.0) -> np.ndarray:
    """N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out))."""
    fi, fo = fans(shape)
    return _cast(as_rng(rng).normal(0.0, gain * math.sqrt(2.0 / (fi + fo)), shape), dtype)


def he_uniform(shape, rng=None, dtype="float32") -> np.ndarray:
    """U(-a, a), a = sqrt(6 / fan_in) (He et al. 2015, for ReLU)."""
    fi, _ = fans(shape)
    a = math.sqrt(6.0 / fi)
    return _cast(as_rng(rng).uniform(-a, a, shape), dtype)


def he_normal(shape, rng=None, dtype="float32") -> np.ndarray:
    """N(0, 2 / fan_in)."""
    fi, _ = fans(shape)
    return _cast(as_rng(rng).normal(0.0, math.sqrt(2.0 / fi), shape), dtype)


def normal(shape, rng=None, dtype="float32", std: float = 0.01) -> np.ndarray:
    return _cast(as_rng(rng).normal(0.0, std, shape), dtype)


INITIALIZERS = {
    "zeros": zeros, "ones": ones, "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform, "xavier_normal": glorot_normal,
    "he_uniform": he_uniform, "he_normal": he_normal, "normal": normal,
}


def get(init):
    """An initialiser by name, or the callable itself."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except (KeyError, TypeError):
        raise ValueError(f"unknown initialiser {init!r}; known: {sorted(INITIALIZERS)}") from None
