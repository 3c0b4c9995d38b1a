"""sf.function semantics: outputs, Theano-style updates, shared state, grad."""
import numpy as np
import pytest

import symfuse as sf


def test_updates_see_values_from_before_the_call():
    a = sf.shared(np.float32(1.0), name="a")
    b = sf.shared(np.float32(10.0), name="b")
    x = sf.tensor("x", ())
    f = sf.function([x], [a + b + x], updates=[(a, b), (b, a + x)], device="interp")
    out = f(np.float32(0.5))
    assert out[0] == pytest.approx(11.5)
    assert a.get_value() == pytest.approx(10.0) and b.get_value() == pytest.approx(1.5)
    out = f(np.float32(0.0))
    assert out[0] == pytest.approx(11.5)
    assert a.get_value() == pytest.approx(1.5) and b.get_value() == pytest.approx(10.0)


def test_single_output_returns_array_list_returns_list():
    x = sf.tensor("x", (2,))
    f1 = sf.function([x], x * 2, device="interp")
    f2 = sf.function([x], [x * 2], device="interp")
    assert isinstance(f1(np.ones(2, np.float32)), np.ndarray)
    assert isinstance(f2(np.ones(2, np.float32)), list)


def test_get_value_is_a_copy_and_set_value_is_seen():
    s = sf.shared(np.zeros(3, np.float32), name="s")
    f = sf.function([], s + 1, device="interp")
    v = s.get_value()
    v[:] = 100
    np.testing.assert_array_equal(f(), np.ones(3))
    s.set_value(np.full(3, 2, np.float32))
    np.testing.assert_array_equal(f(), np.full(3, 3))


def test_second_derivative():
    x = sf.tensor("x", (4,), "float64")
    y = (sf.sin(x) * x).sum()
    g = sf.grad(y, x)
    h = sf.grad(g.sum(), x)
    f = sf.function([x], [g, h], device="interp")
    xv = np.linspace(-1, 1, 4)
    gv, hv = f(xv)
    np.testing.assert_allclose(gv, np.cos(xv) * xv + np.sin(xv), rtol=1e-12)
    np.testing.assert_allclose(hv, -np.sin(xv) * xv + 2 * np.cos(xv), rtol=1e-12)


def test_grad_wrt_intermediate_value():
    x = sf.tensor("x", (3,), "float64")
    h = sf.exp(x)
    cost = (h * h).sum() + h.sum()
    f = sf.function([x], sf.grad(cost, h), device="interp")
    xv = np.array([0.1, 0.2, -0.3])
    np.testing.assert_allclose(f(xv), 2 * np.exp(xv) + 1, rtol=1e-12)


def test_grad_of_broadcast_operand_is_reduced():
    x = sf.tensor("x", (4, 3), "float64")
    b = sf.tensor("b", (3,), "float64")
    g = sf.grad(((x + b) ** 2).sum(), b)
    f = sf.function([x, b], g, device="interp")
    xv, bv = np.arange(12.0).reshape(4, 3), np.array([1.0, 2.0, 3.0])
    assert f(xv, bv).shape == (3,)
    np.testing.assert_allclose(f(xv, bv), (2 * (xv + bv)).sum(0))


def test_mlp_training_on_the_interpreter_lowers_the_loss():
    rng = np.random.default_rng(0)
    n, d, k = 64, 8, 3
    centers = rng.normal(0, 2, (k, d))
    labels = rng.integers(0, k, n)
    xs = (centers[labels] + rng.normal(0, 1, (n, d))).astype(np.float32)
    onehot = np.eye(k, dtype=np.float32)[labels]
    W1 = sf.shared(rng.normal(0, 0.3, (d, 16)).astype(np.float32), name="W1")
    b1 = sf.shared(np.zeros(16, np.float32), name="b1")
    W2 = sf.shared(rng.normal(0, 0.3, (16, k)).astype(np.float32), name="W2")
    x = sf.tensor("x", (n, d))
    t = sf.tensor("t", (n, k))
    logits = sf.relu(x @ W1 + b1) @ W2
    # a hand-written stable log-softmax so this test needs only the core ops
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - sf.log(sf.exp(z).sum(axis=1, keepdims=True))
    loss = -(t * logp).sum(axis=1).mean()
    params = [W1, b1, W2]
    grads = sf.grad(loss, params)
    step = sf.function([x, t], loss, updates=[(p, p - 0.2 * g) for p, g in zip(params, grads)], device="interp")
    losses = [float(step(xs, onehot)) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(losses))


def test_default_device_is_available_backend():
    x = sf.tensor("x", (2,))
    f = sf.function([x], x + 1)
    assert f.device in ("interp", "cpu")
    np.testing.assert_array_equal(f(np.zeros(2, np.float32)), np.ones(2))


@pytest.mark.parametrize("device", ["interp", "cpu", "cuda-emu"])
def test_writing_into_a_constant_result_changes_nothing_else(device):
    """The caller owns its results: writing into a result that is a constant (or the
    constant gradient of x wrt x) changes neither the next call nor the user's graph
    (found by the differential fuzzer)."""
    x = sf.tensor("x", (2,), "float32")
    c = sf.constant(np.array([1.0, 2.0], np.float32))
    f = sf.function([x], [x + 1, c, sf.grad(x.sum(), [x])[0]], device=device)
    first = f(np.zeros(2, np.float32))
    first[1][:] = 99
    first[2][:] = 99
    again = f(np.zeros(2, np.float32))
    np.testing.assert_array_equal(again[1], [1.0, 2.0])
    np.testing.assert_array_equal(again[2], [1.0, 1.0])
    g = sf.function([x], x + c, device="interp")
    np.testing.assert_array_equal(g(np.zeros(2, np.float32)), [1.0, 2.0])
