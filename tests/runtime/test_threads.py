"""One compiled function called from several threads (issue 20, item 2): every call
gives the result it would give alone, and a training step's updates are applied
once per call, as if the calls ran one after another."""
import threading

import numpy as np
import pytest

import symfuse as sf
from symfuse.nn import zoo

DEVICES = ["cpu", "cuda-emu", "interp"]
THREADS, CALLS = 4, 6


def _hammer(fn, args_of, n_threads=THREADS, calls=CALLS):
    """Run fn(*args_of(t, i)) for every thread t and call i; {(t, i): result}."""
    out, errors, start = {}, [], threading.Barrier(n_threads)

    def work(t):
        start.wait()
        try:
            for i in range(calls):
                out[(t, i)] = fn(*args_of(t, i))
        except Exception as e:       # noqa: BLE001 -- reported below with the thread
            errors.append((t, e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_concurrent_inference_calls_agree_with_serial_calls(device):
    m = zoo.get("lenet", batch=8)
    f = m.predict_function(device) if hasattr(m, "predict_function") else None
    assert f is not None
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=f.inputs[0].type.shape).astype(np.float32) for _ in range(THREADS * CALLS)]
    serial = [np.array(f(x), copy=True) for x in xs]
    got = _hammer(f, lambda t, i: (xs[t * CALLS + i],))
    for (t, i), r in got.items():
        np.testing.assert_array_equal(np.asarray(r), serial[t * CALLS + i], err_msg=f"thread {t} call {i}")


@pytest.mark.parametrize("device", DEVICES)
def test_concurrent_training_steps_apply_every_update_once(device):
    """The same batch every call: the final parameters do not depend on the order
    of the calls, only on their number, so they must equal N serial steps."""
    def build():
        rng = np.random.default_rng(1)
        W = sf.shared(rng.normal(0, 0.3, (12, 5)).astype(np.float32), name="W")
        b = sf.shared(np.zeros(5, np.float32), name="b")
        x, y = sf.tensor("x", (16, 12)), sf.tensor("y", (16,), "int32")
        loss = -(sf.one_hot(y, 5) * sf.log_softmax(sf.tanh(x @ W) + b)).sum(axis=1).mean()
        gW, gb = sf.grad(loss, [W, b])
        return sf.function([x, y], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)], device=device), W, b

    rng = np.random.default_rng(2)
    xv, yv = rng.normal(size=(16, 12)).astype(np.float32), rng.integers(0, 5, 16).astype(np.int32)
    f, W, b = build()
    losses = [float(f(xv, yv)) for _ in range(THREADS * CALLS)]
    want_W, want_b = W.get_value(), b.get_value()
    g, W2, b2 = build()
    got = _hammer(g, lambda t, i: (xv, yv))
    np.testing.assert_allclose(W2.get_value(), want_W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b2.get_value(), want_b, rtol=1e-5, atol=1e-6)
    # each call saw the parameters of exactly one earlier step: the losses are the serial ones, in some order
    np.testing.assert_allclose(sorted(float(v) for v in got.values()), sorted(losses), rtol=1e-5)
