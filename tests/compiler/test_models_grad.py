"""Gradients of whole models (MLP, classic LeNet-5) against central finite differences."""
import numpy as np
import pytest

import symfuse as sf


def _xent(logits, labels, k):
    return -(sf.one_hot(labels, k, dtype="float64") * sf.log_softmax(logits)).sum(axis=1).mean()


def _check_directional(loss_fn, grad_fn, params, rng, eps=1e-6, rtol=1e-5):
    """<grad, v> against (L(p + eps v) - L(p - eps v)) / 2 eps, one random v per parameter,
    plus a few single coordinates of each parameter."""
    grads = grad_fn()
    for p, g in zip(params, grads):
        base = p.get_value()
        assert g.shape == base.shape
        v = rng.normal(size=base.shape)
        p.set_value(base + eps * v)
        hi = float(loss_fn())
        p.set_value(base - eps * v)
        lo = float(loss_fn())
        p.set_value(base)
        fd = (hi - lo) / (2 * eps)
        an = float((g * v).sum())
        assert abs(fd - an) <= rtol * max(abs(fd), abs(an), 1e-3), (p.name, fd, an)
        for idx in [tuple(rng.integers(0, s) for s in base.shape) for _ in range(2)]:
            e = np.zeros_like(base)
            e[idx] = 1.0
            p.set_value(base + 1e-5 * e)
            hi = float(loss_fn())
            p.set_value(base - 1e-5 * e)
            lo = float(loss_fn())
            p.set_value(base)
            fd = (hi - lo) / 2e-5
            assert abs(fd - g[idx]) <= 1e-5 * max(abs(fd), 1e-2) + 1e-9, (p.name, idx, fd, g[idx])


def test_mlp_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    n, dims = 16, [20, 32, 16, 5]
    params = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        params.append(sf.shared(rng.normal(0, 1 / np.sqrt(a), (a, b)), name=f"W{i}"))
        params.append(sf.shared(rng.normal(0, 0.1, b), name=f"b{i}"))
    x = sf.tensor("x", (n, dims[0]), "float64")
    y = sf.tensor("y", (n,), "int32")
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = sf.tanh(h)
    loss = _xent(h, y, dims[-1])
    xv = rng.normal(size=(n, dims[0]))
    yv = rng.integers(0, dims[-1], n).astype(np.int32)
    f_loss = sf.function([x, y], loss, device="interp")
    f_grad = sf.function([x, y], sf.grad(loss, params), device="interp")
    _check_directional(lambda: f_loss(xv, yv), lambda: f_grad(xv, yv), params, rng)


def lenet(rng, batch, dtype="float64"):
    """The classic Theano-tutorial LeNet-5 layout."""
    def init(shape, fan_in):
        return sf.shared(rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(dtype))
    c1, c1b = init((20, 1, 5, 5), 25), init((20,), 25)
    c2, c2b = init((50, 20, 5, 5), 500), init((50,), 500)
    d1, d1b = init((800, 500), 800), init((500,), 800)
    d2, d2b = init((500, 10), 500), init((10,), 500)
    for p, n in zip([c1, c1b, c2, c2b, d1, d1b, d2, d2b], ["c1", "c1b", "c2", "c2b", "d1", "d1b", "d2", "d2b"]):
        p.name = n
    x = sf.tensor("x", (batch, 1, 28, 28), dtype)
    y = sf.tensor("y", (batch,), "int32")
    h = sf.max_pool2d(sf.tanh(sf.conv2d(x, c1) + c1b.reshape(1, 20, 1, 1)), 2)
    h = sf.max_pool2d(sf.tanh(sf.conv2d(h, c2) + c2b.reshape(1, 50, 1, 1)), 2)
    h = sf.tanh(h.reshape(batch, 800) @ d1 + d1b)
    logits = h @ d2 + d2b
    loss = -(sf.one_hot(y, 10, dtype=dtype) * sf.log_softmax(logits)).sum(axis=1).mean()
    return x, y, loss, [c1, c1b, c2, c2b, d1, d1b, d2, d2b]


def test_lenet5_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, y, loss, params = lenet(rng, batch=2)
    xv = rng.normal(size=(2, 1, 28, 28))
    yv = np.array([3, 7], np.int32)
    f_loss = sf.function([x, y], loss, device="interp")
    f_grad = sf.function([x, y], sf.grad(loss, params), device="interp")
    _check_directional(lambda: f_loss(xv, yv), lambda: f_grad(xv, yv), params, rng)


def test_lenet5_training_step_roundtrips_and_is_stabilised():
    rng = np.random.default_rng(2)
    x, y, loss, params = lenet(rng, batch=4, dtype="float32")
    grads = sf.grad(loss, params)
    step = sf.function([x, y], loss, updates=[(p, p - 0.05 * g) for p, g in zip(params, grads)],
                       device="interp")
    text = step.ir()
    assert str(sf.ir.parse(text)) == text
    assert "conv2d_grad_weight" in text and "max_pool2d_grad" in text
    xv = rng.normal(size=(4, 1, 28, 28)).astype(np.float32)
    yv = np.array([0, 1, 2, 3], np.int32)
    first = float(step(xv, yv))
    for _ in range(5):
        last = float(step(xv, yv))
    assert last < first
