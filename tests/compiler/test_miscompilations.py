"""Regression tests for miscompilations found by differential testing (issue 20, item 4).

Oracles: numpy in float64 and central finite differences, never symfuse's own
interpreter alone (it shares symfuse's assumptions)."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.compiler.pipeline import optimize
from symfuse.errors import GradError

DEVICES = ["interp", "cpu", "cuda-emu"]
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-12, atol=1e-12)}


def _central_fd(f, x, eps=1e-6):
    """d f(x) / dx for a scalar function of a float64 array, central differences."""
    g = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[k] += eps
        xm[k] -= eps
        g[k] = (f(xp) - f(xm)) / (2 * eps)
    return g


# ---------------------------------------------------------------- (a) gemm accumulator read through a transpose
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_transposed_product_plus_product(device, dtype, rng):
    a, b = sf.tensor("a", (5, 5), dtype), sf.tensor("b", (5, 5), dtype)
    f = sf.function([a, b], (a @ b).T + b @ a, device=device)
    an, bn = rng.standard_normal((2, 5, 5))
    want = (an @ bn).T + bn @ an
    np.testing.assert_allclose(f(an.astype(dtype), bn.astype(dtype)), want, **TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_of_gram_matrix(device, dtype, rng):
    """d/dx sum(x.T @ x) = 2 x 1 1^T: the backward pass adds two products, one transposed."""
    x = sf.tensor("x", (6, 4), dtype)
    w = sf.tensor("w", (4, 4), dtype)
    f = sf.function([x, w], sf.grad(((x.T @ x) * w).sum(), x), device=device)
    xn, wn = rng.standard_normal((6, 4)), rng.standard_normal((4, 4))
    want = xn @ (wn + wn.T)
    np.testing.assert_allclose(f(xn.astype(dtype), wn.astype(dtype)), want, **TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
def test_tied_weight_gradient_matches_finite_differences(device, rng):
    """A weight used as W and W.T (tied embeddings, autoencoders): its gradient sums both."""
    x = sf.tensor("x", (8, 5), "float64")
    W = sf.tensor("W", (5, 3), "float64")
    loss = ((sf.tanh(x @ W) @ W.T - x) ** 2).sum()
    f = sf.function([x, W], [loss, sf.grad(loss, W)], device=device)
    xn, Wn = rng.standard_normal((8, 5)), rng.standard_normal((5, 3))
    want = _central_fd(lambda w: (((np.tanh(xn @ w) @ w.T) - xn) ** 2).sum(), Wn)
    np.testing.assert_allclose(f(xn, Wn)[1], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_transpose_as_both_operand_and_accumulator(device, rng):
    """The same transpose feeds a gemm as operand a (read transposed) and as accumulator."""
    w, b = sf.tensor("w", (4, 4), "float64"), sf.tensor("b", (4, 4), "float64")
    wt = w.T
    f = sf.function([w, b], wt @ b + wt, device=device)
    wn, bn = rng.standard_normal((2, 4, 4))
    np.testing.assert_allclose(f(wn, bn), wn.T @ bn + wn.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_sgd_update_of_tied_weight(device, rng):
    """The BLAS lowering's own pattern (W - lr * g) with W also read transposed."""
    W = sf.shared(rng.standard_normal((4, 4)), name="W")
    x = sf.tensor("x", (3, 4), "float64")
    loss = ((x @ W @ W.T) ** 2).sum()
    g = sf.grad(loss, W)
    f = sf.function([x], loss, updates=[(W, W.T - 0.01 * g)], device=device)
    w0, xn = W.get_value().copy(), rng.standard_normal((3, 4))
    f(xn)
    gw = _central_fd(lambda w: ((xn @ w @ w.T) ** 2).sum(), w0)
    np.testing.assert_allclose(W.get_value(), w0.T - 0.01 * gw, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- (b) one load shared by a reduction's prologue and epilogue
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["sum", "max", "min"])
def test_prologue_and_epilogue_read_the_same_value(device, dtype, reduction, rng):
    y, s = sf.tensor("y", (3, 7), dtype), sf.tensor("s", (7,), dtype)
    red = getattr(y / s, reduction)(axis=0)
    f = sf.function([y, s], red * s + s, device=device)
    yn, sn = rng.standard_normal((3, 7)), rng.random(7) + 0.5
    want = getattr(yn / sn, reduction)(axis=0) * sn + sn
    np.testing.assert_allclose(f(yn.astype(dtype), sn.astype(dtype)), want, **TOL[dtype])


# ---------------------------------------------------------------- (c) a path removed by simplification has a zero gradient
CASES_REMOVED_BY_SIMPLIFICATION = {
    "pow0": lambda x, y: (y ** 0 * x).sum(),
    "where_true": lambda x, y: (sf.where(True, x, y) * x).sum(),
    "where_same_branches": lambda x, y: sf.where(y > 0, x, x).sum(),
    "times_zero": lambda x, y: (x * x + 0 * y).sum(),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(CASES_REMOVED_BY_SIMPLIFICATION))
def test_gradient_through_a_simplified_away_path_is_zero(device, case, rng):
    x, y = sf.tensor("x", (3,), "float64"), sf.tensor("y", (3,), "float64")
    cost = CASES_REMOVED_BY_SIMPLIFICATION[case](x, y)
    gx, gy = sf.grad(cost, [x, y])
    f = sf.function([x, y], [cost, gx, gy], device=device)
    xn, yn = rng.standard_normal(3), rng.standard_normal(3) + 3
    c, gxn, gyn = f(xn, yn)
    py = {"pow0": lambda x, y: (y ** 0 * x).sum(), "where_true": lambda x, y: (x * x).sum(),
          "where_same_branches": lambda x, y: x.sum(), "times_zero": lambda x, y: (x * x + 0 * y).sum()}[case]
    np.testing.assert_allclose(gxn, _central_fd(lambda v: py(v, yn), xn), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(gyn, np.zeros(3))
    np.testing.assert_allclose(c, py(xn, yn), rtol=1e-12)


def test_truly_disconnected_still_raises_at_the_users_line():
    x, y = sf.tensor("x", (3,)), sf.tensor("y", (3,))
    with pytest.raises(GradError, match=r"does not depend on y \(at .*test_miscompilations.py:\d+\)"):
        sf.grad((x * x).sum(), [x, y])


def test_parsed_grad_with_disconnected_raise_is_checked_by_the_verifier():
    x, y = sf.tensor("x", (3,)), sf.tensor("y", (3,))
    g = sf.grad((x * x).sum(), [x, y], disconnected="zero")
    from symfuse.ir.core import Function
    from symfuse.ir.printer import print_function
    text = print_function(Function([x, y], g, "f")).replace('"zero"', '"raise"')
    with pytest.raises(GradError, match="does not depend on y"):
        optimize(sf.ir.parse(text))
    # the same text with disconnected="zero" compiles, with a zero gradient for y
    ok = optimize(sf.ir.parse(text.replace('"raise"', '"zero"')))
    from symfuse.runtime.interp import evaluate
    gx, gy = evaluate(ok, [np.ones(3, np.float32), np.ones(3, np.float32)])
    np.testing.assert_array_equal(gx, 2 * np.ones(3))
    np.testing.assert_array_equal(gy, np.zeros(3))


# ---------------------------------------------------------------- (d) sizes and integers that do not fit never wrap
@pytest.mark.parametrize("build", [
    lambda: sf.sum(sf.ones((2 ** 64 + 5,))),
    lambda: sf.tensor("t", (2 ** 63, 2)),
    lambda: sf.zeros((2 ** 40, 2 ** 40)),
])
def test_sizes_past_int64_are_a_shape_error(build):
    from symfuse.errors import ShapeError
    with pytest.raises(ShapeError, match=r"exceed the 2\*\*63 - 1 bytes .*test_miscompilations.py:\d+"):
        build()


@pytest.mark.parametrize("device", DEVICES)
def test_int_list_out_of_range_is_refused_not_wrapped(device):
    from symfuse.errors import InputError
    y = sf.tensor("y", (2,), "int32")
    f = sf.function([y], y + 1, device=device)
    with pytest.raises(InputError, match=r"argument 0 \('y'\): value 4294967299 does not fit in int32"):
        f([2 ** 32 + 3, 1])
    with pytest.raises(InputError, match="value -2147483649 does not fit"):
        f([-2 ** 31 - 1, 0])
    np.testing.assert_array_equal(f([2 ** 31 - 2, -2 ** 31]), [2 ** 31 - 1, -2 ** 31 + 1])


def test_set_value_out_of_range_is_refused_and_keeps_the_value():
    from symfuse.errors import DTypeError
    s = sf.shared(np.array([7, 8], np.int32), name="labels")
    with pytest.raises(DTypeError, match="set_value on shared labels: value 4294967299 does not fit in int32"):
        s.set_value([2 ** 32 + 3, 0])
    np.testing.assert_array_equal(s.get_value(), [7, 8])
    s.set_value(np.array([2 ** 31 - 1, 3], np.int64))
    np.testing.assert_array_equal(s.get_value(), [2 ** 31 - 1, 3])


# ---------------------------------------------------------------- found by the fuzzer
@pytest.mark.parametrize("device", ["cuda-emu", "cpu"])
def test_float4_kernel_with_sixteen_inputs(device, rng):
    """F2: a float32 elementwise kernel reads inputs in0..in15 through float4 copies;
    the copy of in1 was named in14, like input 14, and the kernel did not compile."""
    xs = [sf.tensor(f"x{k}", (8,)) for k in range(16)]
    out = xs[0]
    for k, x in enumerate(xs[1:], 1):
        out = out + x * (k + 1)
    f = sf.function(xs, out, device=device)
    vals = [rng.standard_normal(8).astype(np.float32) for _ in xs]
    want = vals[0] + sum(v * (k + 1) for k, v in enumerate(vals[1:], 1))
    np.testing.assert_allclose(f(*vals), want, rtol=1e-5, atol=1e-5)


def test_constants_are_stabilised_before_they_are_folded():
    """Fuzzer finding F4: folding ran before the stabilising rewrites, so a naive form
    over constants was computed as written (exp(1e-10) - 1 with a relative error of
    8e-8, log(1 + exp(-40)) as 0); the rewrites now see the form first."""
    import symfuse as sf
    c = sf.constant(np.array(1e-10), "float64")
    d = sf.constant(np.array(-40.0), "float64")
    x = sf.tensor("x", (), "float64")
    outs = [sf.exp(c) - 1 + x * 0, sf.log(1 + sf.exp(d)) + x * 0]
    for dev in ("interp", "cpu"):
        a, b = sf.function([x], outs, device=dev)(0.0)
        assert abs(float(a) - np.expm1(1e-10)) <= 1e-15 * 1e-10, dev
        assert abs(float(b) - np.log1p(np.exp(-40.0))) <= 1e-15 * np.exp(-40.0), dev
