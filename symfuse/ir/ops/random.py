"""Counter-based random numbers (Philox4x32-10), reproducible on every backend.

An op's output depends only on (seed, salt, shape, dtype): there is no hidden
state, so the ops are pure (CSE may merge identical draws, which are identical
anyway) and a varying seed -- e.g. a shared counter updated on each call --
gives fresh numbers per call. The C and CUDA backends must reproduce this stream
bit for bit; here is its exact definition.

Philox4x32-10 (Salmon et al., SC'11; Random123):
    M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85
    round(c, k):  p0 = M0 * c0, p1 = M1 * c2        (32x32 -> 64-bit products)
                  c = (hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0))
    10 rounds; the key is bumped (k0 += W0, k1 += W1, mod 2^32) between rounds,
    i.e. before rounds 2..10, not before the first.

Stream. Output element i (its row-major flat index, as uint64) uses
    counter = (lo32(i), hi32(i), salt, 0)
    key     = (seed, 0x53594D46)           # 0x53594D46 = "SYMF"
and the four outputs x0..x3 of Philox4x32-10:
    seed    = the integer value of the seed tensor & 0xFFFFFFFF (two's complement,
              i.e. a C cast of the value to uint32_t);
    uniform = (float)(x0 >> 8) * 2^-24                   float32, in [0, 1)
    normal  = u1 = (float)((x0 >> 8) + 1) * 2^-24        float32, in (0, 1]
              u2 = (float)(x1 >> 8) * 2^-24              float32, in [0, 1)
              z  = sqrtf(-2.0f * logf(u1)) * cosf(6.2831855f * u2)
              every step rounded to float32 (6.2831855f is 2*pi rounded to float32)
    bernoulli = 1 if (double)uniform < (double)p else 0  (p broadcast to the shape)
The result is then converted to the op's dtype (float32 or float64; for uniform
the conversion is exact). uniform and bernoulli are exact integer/float
arithmetic, so every backend agrees bit for bit; normal additionally depends on
the float32 logf/cosf/sqrtf of the platform (agreement to a few ulp).
"""
from __future__ import annotations

import numpy as np

from ...errors import DTypeError, ShapeError, VerifyError
from ..core import defop
from ..types import as_dtype, broadcast_shapes, tensor_type
from ._rules import require_float, require_int

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
KEY1 = 0x53594D46
MASK32 = np.uint64(0xFFFFFFFF)
TWO_M24 = np.float32(2.0 ** -24)
TWO_PI_F32 = np.float32(2 * np.pi)


def philox4x32(counter, key, rounds: int = 10):
    """Philox4x32-``rounds`` on uint32 values held in uint64 arrays (so the 32x32
    products are exact). counter: 4 arrays/ints, key: 2; all broadcast together.
    Returns the 4 output words as uint64 arrays with values < 2^32."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = (np.asarray(k, dtype=np.uint64) for k in key)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0, p1 = c0 * M0, c2 * M1
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & MASK32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & MASK32
    return c0, c1, c2, c3


def _stream(seed: np.ndarray, shape, salt: int, words: int):
    """The first ``words`` Philox outputs for every element of ``shape``."""
    s = np.asarray(seed).reshape(()).astype(np.uint64) & MASK32   # wraps negatives like a C cast
    i = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64)
    out = philox4x32((i & MASK32, i >> np.uint64(32), np.uint64(salt), np.uint64(0)), (s, np.uint64(KEY1)))
    return [w.reshape(shape) for w in out[:words]]


def _unit(x):
    """24 high bits of a uint32 word as a float32 in [0, 1) (exact)."""
    return (x >> np.uint64(8)).astype(np.float32) * TWO_M24


def _uniform_ref(xs, a):
    (x0,) = _stream(xs[0], a["shape"], a["salt"], 1)
    return _unit(x0).astype(a["dtype"].np)


def _normal_ref(xs, a):
    x0, x1 = _stream(xs[0], a["shape"], a["salt"], 2)
    u1 = ((x0 >> np.uint64(8)) + np.uint64(1)).astype(np.float32) * TWO_M24
    z = np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(TWO_PI_F32 * _unit(x1))
    return z.astype(a["dtype"].np)


def _bernoulli_ref(xs, a):
    (x0,) = _stream(xs[0], a["shape"], a["salt"], 1)
    return (_unit(x0).astype(np.float64) < xs[1].astype(np.float64)).astype(a["dtype"].np)


def _random_infer(types, a):
    seed = types[0]
    require_int(seed, "seed")
    if seed.size != 1:
        raise ShapeError(f"seed must be a scalar integer tensor, got {seed}")
    shape = a["shape"]
    if not (isinstance(shape, (tuple, list)) and all(isinstance(d, int) and not isinstance(d, bool)
                                                    and d >= 0 for d in shape)):
        raise ShapeError(f"shape must be a tuple of non-negative ints, got {shape!r}")
    a["shape"] = tuple(shape)
    dt = a["dtype"] = as_dtype(a["dtype"])
    if dt.name not in ("float32", "float64"):
        # float16 would round values near 1 up to 1.0; cast a float32 draw instead
        raise DTypeError(f"dtype must be float32 or float64, got {dt}")
    salt = a["salt"]
    if not isinstance(salt, int) or isinstance(salt, bool) or not 0 <= salt < 2 ** 32:
        raise VerifyError(f"salt must be an int in [0, 2**32), got {salt!r}")
    return (tensor_type(dt, a["shape"]),)


def _bernoulli_infer(types, a):
    out = _random_infer(types[:1], a)
    p = types[1]
    require_float(p, "p")
    if broadcast_shapes(p.shape, a["shape"]) != a["shape"]:
        raise ShapeError(f"p {p} does not broadcast to the shape {list(a['shape'])}")
    return out


def _onnx_refused(g, op, names):
    g.unsupported(op, "ONNX's random ops draw from the runtime's own generator, not this Philox stream, so "
                      "the model would compute other numbers; draw them outside the model and pass them as an input")


ATTRS = {"shape": (), "dtype": "float32", "salt": 0}
for _name, _infer, _ref in (("random_uniform", _random_infer, _uniform_ref),
                            ("random_normal", _random_infer, _normal_ref),
                            ("random_bernoulli", _bernoulli_infer, _bernoulli_ref)):
    defop(_name, kind="random", attrs=dict(ATTRS), infer=_infer, ref=_ref, foldable=False, differentiable=False,
          onnx=_onnx_refused, doc="Philox4x32-10 stream; see symfuse.ir.ops.random for the exact definition.")
