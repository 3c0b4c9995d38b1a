"""Counter-based random numbers: Philox known answers, the stream definition,
statistics, determinism, symbolic seeds, and argument errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symfuse as sf
from symfuse.errors import DTypeError, ShapeError, SymfuseError
from symfuse.ir.ops.random import philox4x32

N = 100_000


def run(inputs, outputs, *args):
    return sf.function(inputs, outputs, device="interp")(*args)


# Random123 known-answer vectors for philox4x32-10 (kat_vectors).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    assert tuple(int(v) for v in philox4x32(ctr, key)) == expected


def philox_scalar(ctr, key):
    """Plain-int Philox4x32-10, written independently of the vectorised one."""
    c, (k0, k1) = list(ctr), key
    for r in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c


def test_vectorised_philox_matches_scalar_on_wide_counters():
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2 ** 32, size=(50, 6), dtype=np.uint64)
    out = philox4x32(words[:, :4].T, words[:, 4:].T)
    for j, w in enumerate(words.tolist()):
        assert [int(o[j]) for o in out] == philox_scalar(w[:4], w[4:])


def test_stream_definition():
    """Element i of a draw uses counter (lo32(i), hi32(i), salt, 0), key (seed, 0x53594D46)."""
    seed, salt = 1234, 7
    u, z, b = run([], [sf.random.uniform((2, 3), seed, salt=salt), sf.random.normal((2, 3), seed, salt=salt),
                       sf.random.bernoulli(np.full(3, 0.5, np.float32), seed, (2, 3), salt=salt)])
    for i in range(6):
        x0, x1, _, _ = philox_scalar([i, 0, salt, 0], (seed, 0x53594D46))
        uu = np.float32(x0 >> 8) * np.float32(2 ** -24)
        u1 = np.float32((x0 >> 8) + 1) * np.float32(2 ** -24)
        u2 = np.float32(x1 >> 8) * np.float32(2 ** -24)
        zz = np.sqrt(np.float32(-2) * np.log(u1)) * np.cos(np.float32(6.2831855) * u2)
        assert u.flat[i] == uu
        assert z.flat[i] == pytest.approx(float(zz), rel=1e-6, abs=1e-6)
        assert b.flat[i] == float(uu < 0.5)


def test_uniform_statistics_and_range():
    u = run([], sf.random.uniform((N,), 42))
    assert u.dtype == np.float32 and u.shape == (N,)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5e-3 and abs(u.var() - 1 / 12) < 2e-3
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(hist - N / 10) < 5 * np.sqrt(N / 10))


def test_normal_statistics():
    z = run([], sf.random.normal((N,), 42))
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 0.02 and abs(z.var() - 1) < 0.02
    assert abs(np.mean(z ** 3)) < 0.05 and abs(np.mean(z ** 4) - 3) < 0.1


def test_scaled_draws():
    u, z = run([], [sf.random.uniform((N,), 1, low=-2.0, high=4.0), sf.random.normal((N,), 1, mean=3.0, std=0.5)])
    assert -2 <= u.min() and u.max() < 4 and abs(u.mean() - 1) < 0.05
    assert abs(z.mean() - 3) < 0.01 and abs(z.std() - 0.5) < 0.01


def test_bernoulli_statistics_and_broadcast_p():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0], np.float32)
    b = run([], sf.random.bernoulli(p, 5, shape=(N // 5, 5)))
    assert b.dtype == np.float32 and set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_allclose(b.mean(0), p, atol=0.015)
    assert b[:, 0].max() == 0 and b[:, 4].min() == 1
    pt = sf.tensor("p", ())
    m = run([pt], sf.random.bernoulli(pt, 5, shape=(N,)), np.float32(0.3))
    assert abs(m.mean() - 0.3) < 0.01


def test_float64_uniform_is_the_float32_stream_exactly():
    a, b = run([], [sf.random.uniform((1000,), 9), sf.random.uniform((1000,), 9, dtype="float64")])
    assert b.dtype == np.float64
    np.testing.assert_array_equal(a.astype(np.float64), b)


def test_determinism_and_independence():
    s = sf.tensor("s", (), "int64")
    draws = [sf.random.uniform((1000,), s), sf.random.uniform((1000,), s), sf.random.uniform((1000,), s, salt=1)]
    f = sf.function([s], draws, device="interp")
    a, a2, c = f(np.int64(1))
    b = f(np.int64(2))[0]
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(a, f(np.int64(1))[0])
    for other in (b, c):
        assert not np.any(a == other) or np.mean(a == other) < 0.01
        assert abs(np.corrcoef(a, other)[0, 1]) < 0.1


def test_seed_is_taken_modulo_2_32_from_any_int_dtype():
    outs = []
    for dt, v in (("int8", -1), ("int64", -1), ("uint32", 0xFFFFFFFF), ("uint64", 0xFFFFFFFF)):
        s = sf.tensor("s", (), dt)
        outs.append(run([s], sf.random.uniform((50,), s), np.array(v, dt)))
    outs.append(run([], sf.random.uniform((50,), -1)))
    outs.append(run([], sf.random.uniform((50,), 2 ** 33 - 1)))
    for o in outs[1:]:
        np.testing.assert_array_equal(outs[0], o)


def test_shared_counter_seed_gives_fresh_numbers_per_call():
    step = sf.shared(np.int64(0), name="step")
    f = sf.function([], sf.random.normal((100,), step), updates=[(step, step + 1)], device="interp")
    a, b = f(), f()
    assert not np.array_equal(a, b)
    step.set_value(np.int64(0))
    np.testing.assert_array_equal(f(), a)


def test_random_stream_salts_each_draw():
    rs = sf.random.RandomStream(11)
    a, b, c, d = rs.uniform((100,)), rs.uniform((100,)), rs.normal((100,)), rs.bernoulli(0.5, shape=(100,))
    av, bv, cv, dv = run([], [a, b, c, d])
    assert not np.array_equal(av, bv)
    np.testing.assert_array_equal(av, run([], sf.random.uniform((100,), 11, salt=0)))
    np.testing.assert_array_equal(bv, run([], sf.random.uniform((100,), 11, salt=1)))
    np.testing.assert_array_equal(cv, run([], sf.random.normal((100,), 11, salt=2)))
    assert set(np.unique(dv)) <= {0.0, 1.0}


def test_random_ops_survive_optimisation_and_are_not_differentiable():
    x = sf.tensor("x", (5,), "float64")
    u = sf.random.uniform((5,), 3, dtype="float64")
    f = sf.function([x], [u, sf.grad((u * x).sum(), x)], device="interp")
    uv, g = f(np.zeros(5))
    np.testing.assert_array_equal(uv, g)
    assert any(op.name == "random_uniform" for op in f.function.ops)


def test_random_ops_print_and_parse():
    s = sf.tensor("s", (), "int32")
    f = sf.function([s], [sf.random.normal((3, 2), s, dtype="float64", salt=4),
                          sf.random.bernoulli(0.25, s, (4,))], device="interp")
    text = str(f.function)
    assert "salt = 4" in text and str(sf.ir.parse(text)) == text


@settings(max_examples=20)
@given(seed=st.integers(-2 ** 63, 2 ** 64 - 1), salt=st.integers(0, 2 ** 32 - 1),
       shape=st.lists(st.integers(0, 4), max_size=3))
def test_ranges_for_any_seed_and_salt(seed, salt, shape):
    u, z = run([], [sf.random.uniform(shape, seed, salt=salt), sf.random.normal(shape, seed, salt=salt)])
    assert u.shape == tuple(shape) and z.shape == tuple(shape)
    assert np.all((0 <= u) & (u < 1)) and np.isfinite(z).all()


BAD = [
    (lambda: sf.random.uniform((2, -1), 0), ShapeError, "negative"),
    (lambda: sf.random.uniform("abc", 0), ShapeError, "shape"),
    (lambda: sf.random.uniform((2,), 1.5), DTypeError, "seed"),
    (lambda: sf.random.uniform((2,), sf.tensor("s", ())), DTypeError, "seed"),
    (lambda: sf.random.uniform((2,), sf.tensor("s", (2,), "int32")), ShapeError, "scalar"),
    (lambda: sf.random.uniform((2,), 0, dtype="int32"), DTypeError, "float32 or float64"),
    (lambda: sf.random.normal((2,), 0, dtype="float16"), DTypeError, "float32 or float64"),
    (lambda: sf.random.uniform((2,), 0, salt=-1), SymfuseError, "salt"),
    (lambda: sf.random.normal((2,), 0, salt=2 ** 32), SymfuseError, "salt"),
    (lambda: sf.random.bernoulli(sf.tensor("p", (3,), "int32"), 0), DTypeError, "p must be floating"),
    (lambda: sf.random.bernoulli(np.full(3, 0.5), 0, shape=(2, 4)), ShapeError, "does not broadcast"),
    (lambda: sf.random.bernoulli("half", 0), DTypeError, "p must be"),
]


@pytest.mark.parametrize("build,exc,fragment", BAD)
def test_bad_arguments(build, exc, fragment):
    with pytest.raises(exc, match=fragment) as e:
        build()
    assert isinstance(e.value, SymfuseError)
