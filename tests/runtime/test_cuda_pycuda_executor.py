"""The PyCUDA executor (symfuse/runtime/cuda_exec.py) run without a GPU: a fake
PyCUDA (tests/fakes/fake_pycuda.py) keeps "device memory" in host buffers and
runs the NVRTC-compiled program's kernels on the CUDA emulator, from the same
source. Checked against the interpreter: training steps with parameters that
stay on the device, the transfers that implies, and CUDA-graph replay."""
import importlib.util
import os

import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen import cuda_module
from symfuse.runtime import cuda as cuda_backend
from symfuse.runtime import cuda_runtime
from symfuse.runtime.cuda_emu import EmuModule, find_cxx
from symfuse.runtime.cuda_exec import GpuArray

_spec = importlib.util.spec_from_file_location(
    "fake_pycuda", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fakes", "fake_pycuda.py"))
fake_pycuda = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_pycuda)

pytestmark = pytest.mark.skipif(find_cxx() is None, reason="the emulator needs a C++ compiler")


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    modules: list = []
    drv = fake_pycuda.install(monkeypatch, modules)
    monkeypatch.setattr(cuda_backend, "gpu_arch", lambda: "sm_90")
    return drv, modules


def _emulate(f, modules):
    """Make the fake GPU able to run ``f``'s kernels: its own, and the library's."""
    prog = f._run
    launches = [ln for k in prog.launched for ln in k.launches]
    if any(not ln.library for ln in launches):
        modules.append(EmuModule(prog.source, name=prog.name, include_dirs=[cuda_module.TEMPLATE_DIR]))
    if any(ln.library for ln in launches):
        modules.append(cuda_runtime.emu_library()[0])


def _mlp(seed=3):
    rng = np.random.default_rng(seed)
    W1 = sf.shared(rng.normal(0, 0.5, (6, 16)).astype(np.float32), name="W1")
    b1 = sf.shared(np.zeros(16, np.float32), name="b1")
    W2 = sf.shared(rng.normal(0, 0.5, (16, 3)).astype(np.float32), name="W2")
    x = sf.tensor("x", (8, 6))
    y = sf.tensor("y", (8,), "int32")
    logits = sf.relu(x @ W1 + b1) @ W2
    loss = -(sf.one_hot(y, 3) * sf.log_softmax(logits)).sum(axis=1).mean()
    params = [W1, b1, W2]
    grads = sf.grad(loss, params)
    return [x, y], loss, [(p, p - 0.2 * g) for p, g in zip(params, grads)], params


def _data():
    rng = np.random.default_rng(11)
    return rng.normal(size=(8, 6)).astype(np.float32), rng.integers(0, 3, 8).astype(np.int32)


def _step_on_fake_gpu(modules, **options):
    """A training step compiled for cuda (sm_90) whose kernels the fake GPU can run."""
    inputs, loss, ups, params = _mlp()
    f = sf.function(inputs, loss, updates=ups, device="cuda", arch="sm_90", **options)
    _emulate(f, modules)
    return f, inputs, loss, params


def _reference(steps):
    inputs, loss, ups, params = _mlp()
    f = sf.function(inputs, loss, updates=ups, device="interp")
    xv, yv = _data()
    return [float(f(xv, yv)) for _ in range(steps)], [p.get_value() for p in params]


@pytest.mark.parametrize("graph", [False, True])
def test_training_on_the_fake_gpu_matches_the_interpreter(gpu, graph):
    drv, modules = gpu
    ref_losses, ref_params = _reference(4)
    f, _, _, params = _step_on_fake_gpu(modules, cuda_graph=graph)
    xv, yv = _data()
    losses = []
    for step in range(4):
        out = f(xv, yv)
        assert isinstance(out, np.ndarray)
        losses.append(float(out))
        assert all(isinstance(p._value, GpuArray) for p in params)      # the parameters stay on the device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-6)
    assert losses[-1] < losses[0]
    for p, r in zip(params, ref_params):
        np.testing.assert_allclose(p.get_value(), r, rtol=1e-4, atol=1e-6)
    launches = len(f._run.launches)
    assert drv.stats.launches == 4 * launches
    if graph:   # captured once, replayed every call
        assert drv.stats.captures == 1 and drv.stats.graph_launches == 4
    else:
        assert drv.stats.captures == 0


def test_host_transfers_are_the_inputs_and_outputs_only(gpu):
    drv, modules = gpu
    f, _, _, params = _step_on_fake_gpu(modules)
    xv, yv = _data()
    f(xv, yv)
    first = drv.stats.htod
    assert first == 2 + len(params) + len(f._run.constants)    # x, y, the parameters once, constants
    for _ in range(3):
        f(xv, yv)
    assert drv.stats.htod - first == 3 * 2                     # then only x and y
    dtoh = drv.stats.dtoh
    assert dtoh == 4                                           # one loss a call
    values = [p.get_value() for p in params]
    assert drv.stats.dtoh == dtoh + len(params)
    values[0][:] = 0                                           # a copy: the device value is untouched
    assert np.abs(params[0].get_value()).sum() > 0


def test_set_value_and_other_devices(gpu):
    drv, modules = gpu
    f, inputs, loss, params = _step_on_fake_gpu(modules)
    xv, yv = _data()
    f(xv, yv)
    W1 = params[0]
    on_device = W1.get_value()
    probe = sf.function([], (W1 * 2.0).sum(), device="cpu")     # a host backend reads a host copy
    assert float(probe()) == pytest.approx(2.0 * float(on_device.sum()), rel=1e-5)
    assert isinstance(W1._value, GpuArray)
    W1.set_value(np.zeros((6, 16), np.float32))                # a host value replaces the device one
    want = sf.function(inputs, loss, device="interp")(xv, yv)   # before f's own update
    np.testing.assert_allclose(f(xv, yv), want, rtol=1e-5)


def test_without_pycuda_calling_names_device_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cuda_backend, "gpu_arch", lambda: None)
    inputs, loss, ups, _ = _mlp()
    f = sf.function(inputs, loss, updates=ups, device="cuda", arch="sm_90")
    with pytest.raises(sf.errors.DeviceUnavailable, match="device='cpu'"):
        f(*_data())


@pytest.mark.parametrize("graph", [False, True])
def test_loops_and_branches_on_the_fake_gpu(gpu, graph):
    """A scan (its gradient: a saving scan and a reverse one), a while loop and a cond
    run from the PyCUDA executor's schedule; with cuda_graph a program of scans only is
    captured (the loop unrolled into the graph), one with a while loop runs eagerly."""
    drv, modules = gpu
    x = sf.tensor("x", (5, 3), "float32")
    W = sf.shared(np.eye(3, dtype=np.float32) * 0.5, name="W")
    h, ys = sf.scan(lambda c, e: (sf.tanh(c @ W + e), c.sum()), sf.zeros((3,)), x)
    loss = (h ** 2).sum() + ys.sum()
    scans = [loss, sf.grad(loss, W)]
    n, v = sf.while_loop(lambda c: c[1] < 50.0, lambda c: (c[0] + 1, c[1] * 2.0),
                         (sf.constant(0, "int32"), x.sum() * 0.0 + 1.5))
    picked = sf.cond(h.sum() > 0, lambda a: a * 2.0, lambda a: a - 1.0, h)
    xv = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    for outs, captured in ((scans, graph), ([n, v, picked], False)):
        want = sf.function([x], outs, device="interp")(xv)
        f = sf.function([x], outs, device="cuda", arch="sm_90", cuda_graph=graph)
        _emulate(f, modules)
        before = drv.stats.captures
        for _ in range(2):
            got = f(xv)
            for a, b in zip(got, want):
                np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)
        assert drv.stats.captures - before == (1 if captured else 0)
    assert int(got[0]) == 6 and float(got[1]) == 96.0
