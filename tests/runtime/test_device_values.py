"""Device-resident state: a backend may return results that live in its own
memory (``DeviceValue``); shared variables keep them between calls and copy
to the host only when asked. Checked with a fake device backend whose memory
is a dict, against the interpreter and the cpu backend."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.runtime import backends
from symfuse.runtime.backend import Backend, Program
from symfuse.runtime.device_values import DeviceValue
from symfuse.runtime.interp import InterpBackend


class FakeMemory:
    def __init__(self):
        self.cells, self.uploads, self.downloads = {}, 0, 0


class FakeValue(DeviceValue):
    __slots__ = ("mem", "key")

    def __init__(self, mem, arr):
        self.mem, self.key = mem, object()
        mem.cells[self.key] = np.array(arr, copy=True)
        self.shape, self.dtype = arr.shape, arr.dtype

    def to_host(self):
        self.mem.downloads += 1
        return self.mem.cells[self.key].copy()

    def copy(self):
        return FakeValue(self.mem, self.mem.cells[self.key])


class FakeDeviceRun(Program):
    device_values = True

    def __init__(self, run, mem):
        self.run, self.mem = run, mem

    def __call__(self, arrays):
        host = []
        for a in arrays:
            if isinstance(a, FakeValue):
                host.append(self.mem.cells[a.key])
            else:
                self.mem.uploads += 1
                host.append(a)
        return [FakeValue(self.mem, r) for r in self.run(host)]


class FakeDevice(Backend):
    name = "fake-device"

    def __init__(self):
        self.mem = FakeMemory()

    def compile(self, fn, options, report):
        return FakeDeviceRun(InterpBackend().compile(fn, options, report), self.mem)


@pytest.fixture
def fake():
    dev = FakeDevice()
    backends.register_backend(dev)
    yield dev
    del backends.BACKENDS[dev.name]


def _model(rng):
    W = sf.shared(rng.normal(0, 0.3, (6, 3)).astype(np.float32), name="W")
    b = sf.shared(np.zeros(3, np.float32), name="b")
    x = sf.tensor("x", (5, 6))
    loss = (sf.tanh(x @ W + b) ** 2).mean()
    gW, gb = sf.grad(loss, [W, b])
    return x, W, b, loss, [(W, W - 0.5 * gW), (b, b - 0.5 * gb)]


def test_shared_state_stays_on_the_device_between_steps(fake, rng):
    xv = rng.normal(size=(5, 6)).astype(np.float32)
    x, W, b, loss, ups = _model(np.random.default_rng(1))
    ref_step = sf.function([x], loss, updates=ups, device="interp")
    ref = [ref_step(xv) for _ in range(4)]
    ref_W, ref_b = W.get_value(), b.get_value()

    x, W, b, loss, ups = _model(np.random.default_rng(1))
    step = sf.function([x], loss, updates=ups, device="fake-device")
    got = [step(xv) for _ in range(4)]
    for g, r in zip(got, ref):
        assert isinstance(g, np.ndarray) and float(g) == pytest.approx(float(r), rel=1e-6)
    assert isinstance(W._value, FakeValue) and isinstance(b._value, FakeValue)
    # uploads: x every call, W and b only on the first; downloads: the loss of each call
    assert fake.mem.uploads == 4 + 2 and fake.mem.downloads == 4
    np.testing.assert_allclose(W.get_value(), ref_W, rtol=1e-6)
    np.testing.assert_allclose(b.get_value(), ref_b, rtol=1e-6)
    assert fake.mem.downloads == 6
    w = W.get_value()
    w[:] = 7                                     # a copy: the device value is untouched
    np.testing.assert_allclose(W.get_value(), ref_W, rtol=1e-6)


def test_other_devices_read_a_device_resident_variable(fake, rng):
    xv = rng.normal(size=(5, 6)).astype(np.float32)
    x, W, b, loss, ups = _model(np.random.default_rng(2))
    step = sf.function([x], loss, updates=ups, device="fake-device")
    step(xv)
    on_device = W.get_value()
    for device in ("interp", "cpu"):
        probe = sf.function([], W.sum(), device=device)
        assert float(probe()) == pytest.approx(float(on_device.sum()), rel=1e-5)
        assert isinstance(W._value, FakeValue)    # reading it does not move it
    cpu_step = sf.function([x], loss, updates=ups, device="cpu")
    cpu_step(xv)                                  # a host backend's update brings it home
    assert isinstance(W._value, np.ndarray)
    W.set_value(np.ones((6, 3), np.float32))
    step(xv)
    assert isinstance(W._value, FakeValue)


def test_one_device_value_for_two_results_is_copied(fake):
    s = sf.shared(np.arange(3, dtype=np.float32), name="s")
    t = sf.shared(np.zeros(3, dtype=np.float32), name="t")
    f = sf.function([], s * 2, updates=[(s, s + 1), (t, s + 1)], device="fake-device")
    out = f()
    np.testing.assert_array_equal(out, [0, 2, 4])
    assert s._value is not t._value
    np.testing.assert_array_equal(s.get_value(), [1, 2, 3])
    np.testing.assert_array_equal(t.get_value(), [1, 2, 3])
