"""Elementwise integer arithmetic of every width on the compiled backends (ONNX models
bring int8, uint8, int16, uint32 and uint64 tensors): each integer elementwise op,
the reductions, where and casts, on the extremes of each dtype and random values
over its whole range, equal to the interpreter (numpy's wrap-around included).
abs went through C's double fabs, which rounded 64-bit values."""
from __future__ import annotations

import numpy as np
import pytest

import symfuse as sf
from symfuse.ir.core import OPS, apply
from symfuse.ir.types import as_dtype, tensor_type

DTYPES = ("int8", "uint8", "int16", "int32", "uint32", "int64", "uint64")
N = 48
CASTS = ("float32", "float64", "int8", "uint8", "int32", "int64", "uint64", "bool")


def _int_ops(dtype: str, arity: int) -> list[str]:
    """Elementwise ops whose type rule takes ``arity`` integer operands of ``dtype``."""
    out = []
    for name, op in sorted(OPS.items()):
        if op.kind != "elementwise" or op.arity != arity or name == "cast":
            continue
        try:
            op.infer((tensor_type(as_dtype(dtype), (N,)),) * arity, dict(op.attrs))
        except sf.DTypeError:
            continue
        out.append(name)
    return out


def _values(dt, rng):
    info = np.iinfo(dt)
    edge = [info.min, info.max, 0, 1, 2, 3, info.max - 1, info.min + 1] + ([-1, -2] if info.min < 0 else [])
    return np.concatenate([np.array(edge, dt), rng.integers(info.min, info.max, N - len(edge), dt, endpoint=True)])


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
def test_integer_elementwise_ops_reductions_and_casts_match_the_interpreter(device, rng):
    inputs, outputs, arrays, labels = [], [], [], []
    for dt in DTYPES:
        x, y = sf.tensor(f"x_{dt}", (N,), dt), sf.tensor(f"y_{dt}", (N,), dt)
        a = _values(dt, rng)
        inputs += [x, y]
        arrays += [a, a[::-1].copy()]
        ops = [(n, apply(n, [x])) for n in _int_ops(dt, 1)] + [(n, apply(n, [x, y])) for n in _int_ops(dt, 2)]
        ops += [("sum", sf.sum(x)), ("max", sf.max(x)), ("min", sf.min(x)), ("prod", sf.prod(x[:6])),
                ("where", sf.where(x > y, x, y)), ("argmax", sf.argmax(x)), ("argmin", sf.argmin(x))]
        ops += [(f"cast to {to}", sf.cast(x, to)) for to in CASTS]
        assert {"abs", "add", "mul", "maximum", "bitwise_and"} <= {n for n, _ in ops}
        outputs += [v for _, v in ops]
        labels += [f"{name} {dt}" for name, _ in ops]
    with np.errstate(all="ignore"):
        want = sf.function(inputs, outputs, device="interp")(*arrays)
        got = sf.function(inputs, outputs, device=device)(*arrays)
    bad = [label for label, g, w in zip(labels, got, want)
           if np.asarray(g).dtype != np.asarray(w).dtype or not np.array_equal(g, w)]
    assert not bad, f"{device} differs from the interpreter: {bad}"


def test_abs_of_64_bit_extremes_is_exact_on_cpu():
    x = sf.tensor("x", (4,), "int64")
    u = sf.tensor("u", (2,), "uint64")
    f = sf.function([x, u], [sf.abs(x), sf.abs(u)], device="cpu")
    big = 2 ** 63 - 1
    sx, su = f(np.array([-big, big - 1, -(2 ** 63), -3], np.int64), np.array([2 ** 64 - 1, 2 ** 53 + 1], np.uint64))
    assert sx.tolist() == [big, big - 1, -(2 ** 63), 3]       # the minimum wraps, as in numpy
    assert su.tolist() == [2 ** 64 - 1, 2 ** 53 + 1]
