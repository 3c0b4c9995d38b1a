"""Integer bit manipulation: bitwise_and / or / xor / not, left_shift, right_shift
(logical on unsigned integers, arithmetic on signed ones), against numpy on the
interpreter, the C backend and the CUDA emulator; shifts by every amount from 0 to
the width - 1, and past it or negative (numpy's 0 or -1, which C leaves undefined);
the operators; type errors; IR text round trips."""
from __future__ import annotations

import numpy as np
import pytest

import symfuse as sf
from symfuse.ir.core import OPS
from symfuse.runtime.interp import evaluate

DTYPES = ("int8", "uint8", "int16", "int32", "uint32", "int64", "uint64")
DEVICES = ("interp", "cpu", "cuda-emu")
BINARY = {"bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
          "left_shift": np.left_shift, "right_shift": np.right_shift}
NAMES = [*BINARY, "bitwise_not"]


def _values(dt, rng, n):
    """Every bit pattern class: the extremes, 0, +-1, and random values over the whole range."""
    info = np.iinfo(dt)
    edge = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1, info.max // 2 + 1], dt)
    if info.min < 0:
        edge = np.concatenate([edge, np.array([-1, -2, info.min // 2], dt)])
    rand = rng.integers(info.min, info.max, n - len(edge), dtype=dt, endpoint=True)
    return np.concatenate([edge, rand]).astype(dt)


def _case(dt, rng):
    """(a, b, shift): operands, and every shift amount 0..width-1 against values of a."""
    width = np.iinfo(dt).bits
    a = _values(dt, rng, 4 * width)
    b = _values(dt, rng, 4 * width)[::-1].copy()
    shift = np.tile(np.arange(width, dtype=dt), 4)
    return a, b, shift


def _program(dt):
    a, b, s = (sf.tensor(n, (4 * np.iinfo(dt).bits,), dt) for n in ("a", "b", "s"))
    outs = [sf.bitwise_and(a, b), sf.bitwise_or(a, b), sf.bitwise_xor(a, b),
            sf.left_shift(a, s), sf.right_shift(a, s), sf.bitwise_not(a),
            a & b, a | b, a ^ b, a << s, a >> s, ~a,       # the operators: the same ops on integers
            sf.right_shift(a, 3), 5 & a, sf.left_shift(a[:1], s)]   # a weak scalar, broadcasting
    return [a, b, s], outs


def _expected(a, b, s):
    dt = a.dtype
    ops = [np.bitwise_and(a, b), np.bitwise_or(a, b), np.bitwise_xor(a, b), np.left_shift(a, s),
           np.right_shift(a, s), np.invert(a)]
    return ops + ops + [np.right_shift(a, dt.type(3)), np.bitwise_and(dt.type(5), a), np.left_shift(a[:1], s)]


@pytest.mark.parametrize("device", DEVICES)
def test_values_match_numpy_for_every_width_and_shift(device, rng):
    inputs, outputs, arrays, want = [], [], [], []
    for dt in DTYPES:
        ins, outs = _program(dt)
        for v in ins:
            v.name = f"{v.name}_{dt}"
        data = _case(np.dtype(dt), rng)
        inputs += ins
        outputs += outs
        arrays += data
        want += _expected(*data)
    got = sf.function(inputs, outputs, device=device)(*arrays)
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.dtype == w.dtype and g.shape == w.shape, (k, g.dtype, w.dtype)
        np.testing.assert_array_equal(g, w, err_msg=f"output {k} on {device}")


def test_logical_right_shift_of_unsigned_and_arithmetic_of_signed():
    x = sf.tensor("x", (3,), "uint8")
    y = sf.tensor("y", (3,), "int8")
    f = sf.function([x, y], [x >> 1, y >> 1], device="cpu")
    u, s = f(np.array([0x80, 0xFF, 6], np.uint8), np.array([-128, -1, 6], np.int8))
    assert u.tolist() == [0x40, 0x7F, 3] and s.tolist() == [-64, -1, 3]


@pytest.mark.parametrize("device", DEVICES)
def test_shifts_past_the_width_or_negative_give_numpy_results(device):
    # C leaves these undefined (x86 masks the amount): numpy gives 0, or -1 shifting a
    # negative value right
    outs, arrays, want = [], [], []
    inputs = []
    for dt in ("int8", "uint8", "int32", "int64", "uint64"):
        info = np.iinfo(dt)
        amounts = [info.bits, info.bits + 1, 2 * info.bits, 100] + ([-1, -info.bits, -100] if info.min < 0 else [])
        s = np.array(amounts, dt)
        a = np.resize(np.array([info.max, info.min + (info.min < 0), 7, 1] + ([-3] if info.min < 0 else []), dt),
                      s.shape)
        x, y = sf.tensor(f"x_{dt}", a.shape, dt), sf.tensor(f"s_{dt}", s.shape, dt)
        inputs += [x, y]
        arrays += [a, s]
        outs += [x << y, x >> y]
        want += [np.left_shift(a, s), np.right_shift(a, s)]
    got = sf.function(inputs, outs, device=device)(*arrays)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"output {k} on {device}")


def test_constant_operands_fold_to_numpy_values():
    c, a = np.array([-100, 3, 127], np.int8), np.array([1, 2, 3], np.int8)
    x = sf.tensor("x", (3,), "int8")
    f = sf.function([x], [(sf.constant(c) << 2) ^ x, ~sf.constant(c) >> 1], device="cpu")
    assert all(op.name in ("bitwise_xor", "constant") for op in f.function.ops)   # the rest folded
    want = [np.left_shift(c, np.int8(2)) ^ a, np.right_shift(np.invert(c), np.int8(1))]
    for g, w in zip(f(a), want):
        np.testing.assert_array_equal(g, w)


def test_operators_stay_logical_on_bool():
    p, q = sf.tensor("p", (4,), "bool"), sf.tensor("q", (4,), "bool")
    f = sf.function([p, q], [p & q, p | q, p ^ q, ~p, True & p], device="interp")
    assert [op.name for op in f.source_function.ops if op.name != "constant"] == \
        ["logical_and", "logical_or", "ne", "logical_not", "logical_and"]
    a, b = np.array([0, 0, 1, 1], bool), np.array([0, 1, 0, 1], bool)
    for g, w in zip(f(a, b), [a & b, a | b, a ^ b, ~a, a]):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("build", [
    lambda f, i, b: sf.bitwise_and(f, f), lambda f, i, b: sf.bitwise_not(f), lambda f, i, b: f << f,
    lambda f, i, b: sf.right_shift(f, 1.0), lambda f, i, b: sf.bitwise_or(b, b), lambda f, i, b: sf.bitwise_not(b),
    lambda f, i, b: sf.left_shift(b, b), lambda f, i, b: f & 1,
])
def test_float_and_bool_operands_are_dtype_errors(build):
    f, i, b = sf.tensor("f", (2,)), sf.tensor("i", (2,), "int32"), sf.tensor("b", (2,), "bool")
    with pytest.raises(sf.DTypeError, match="integer"):
        build(f, i, b)


def test_mixed_integer_dtypes_must_be_cast():
    x, y = sf.tensor("x", (2,), "int32"), sf.tensor("y", (2,), "uint8")
    with pytest.raises(sf.DTypeError, match="different dtypes"):
        sf.left_shift(x, y)
    with pytest.raises(sf.DTypeError, match="does not fit"):
        sf.tensor("u", (2,), "uint8") & 300


def test_bit_ops_have_no_gradient_and_no_vjp():
    for name in NAMES:
        assert OPS[name].differentiable is False and OPS[name].vjp is None
        assert OPS[name].kind == "elementwise" and OPS[name].arity == (1 if name == "bitwise_not" else 2)


def test_ir_text_round_trips(rng):
    a, b = sf.tensor("a", (2, 3), "int16"), sf.tensor("b", (3,), "int16")
    outs = [sf.bitwise_and(a, b), sf.bitwise_or(a, b), sf.bitwise_xor(a, b), sf.bitwise_not(a),
            sf.left_shift(a, b), sf.right_shift(a, b)]
    f = sf.function([a, b], outs, device="interp", optimize_graph=False)
    text = f.ir()
    for name in NAMES:
        assert f" = {name} " in text
    g = sf.ir.parse(text)
    assert str(g) == text
    arrays = [rng.integers(-2 ** 15, 2 ** 15, (2, 3)).astype(np.int16), rng.integers(0, 16, 3).astype(np.int16)]
    for x, y in zip(evaluate(f.function, arrays), evaluate(g, arrays)):
        np.testing.assert_array_equal(x, y)
