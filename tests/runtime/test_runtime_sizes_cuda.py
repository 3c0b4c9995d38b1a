"""Run-time sizes on the GPU backends: ``sf.tensor("x", ("batch", 784))`` compiled
once for cuda-emu (and cuda) serves any batch. The kernels take the sizes as
parameters, grids, arena and results follow each call. Oracles: the same model
built with the batch as a number and run by the interpreter, as in
test_runtime_sizes.py (the cpu backend's)."""
import importlib.util
import os

import numpy as np
import pytest

import symfuse as sf
from symfuse.errors import InputError
from symfuse.ir.symdim import check_generated
from symfuse.nn import zoo
from symfuse.runtime import cuda as cuda_backend
from symfuse.runtime.cuda_emu import find_cxx
from test_cuda_pycuda_executor import _emulate
from test_runtime_sizes import _static_twin

SIZES = (1, 7, 32)
needs_cxx = pytest.mark.skipif(find_cxx() is None, reason="the emulator needs a C++ compiler")


def _train_like_static_builds(name, device, **options):
    m = zoo.get(name, batch="batch", seed=0)
    f = m.train_function(device, **options)
    assert f.sizes.names == ("batch",)
    for b in SIZES:
        data = m.example_batch(seed=b, size=b)
        twin = _static_twin(name, b, [s.get_value() for s in f.shared])
        want = twin(*data)
        got = f(*data)
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), w, rtol=2e-5, atol=2e-6, err_msg=f"{name} batch {b}")
        for p, q in zip(f.shared, twin.shared):
            np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name} batch {b}: {p.name}")
    return f


def _predict_like_interpreter(name, device, **options):
    m = zoo.get(name, batch="batch", seed=0)
    f, interp = m.predict_function(device, **options), m.predict_function("interp")
    for b in SIZES:
        x = m.example_batch(seed=b, size=b)[0]
        got = np.asarray(f(x))
        assert got.shape == (b, 10)
        np.testing.assert_allclose(got, interp(x), rtol=1e-5, atol=1e-6)
    return f


@needs_cxx
@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_one_emulated_compile_trains_every_batch_like_static_builds(name):
    f = _train_like_static_builds(name, "cuda-emu")
    src = f._run.source
    assert "int64_t sf_dim_batch" in src
    check_generated(src, "test", ("batch",))


@needs_cxx
@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_emulated_predict_at_every_batch_equals_interpreter(name):
    _predict_like_interpreter(name, "cuda-emu")


@needs_cxx
def test_grids_and_arena_follow_the_call():
    """A grid that depends on the batch is an expression, evaluated (and capped) per call;
    the arena is made for the first call and grows only for a larger one."""
    m = zoo.get("mlp", batch="batch", seed=0)
    f = m.predict_function("cuda-emu")
    prog = f._run
    sized = [ln for k in prog.launched for ln in k.launches if type(ln.grid[0]) is not int]
    assert sized, "no launch's grid follows the batch"
    f(m.example_batch(seed=0, size=32)[0])
    big = prog._executor.arena.size
    f(m.example_batch(seed=0, size=2)[0])
    assert prog._executor.arena.size == big
    schedule, arena_2, slots = prog.at({"batch": 2})
    assert slots[0][0] == (2, 10)
    assert arena_2 <= prog.at({"batch": 32})[1]
    for ln, refs in schedule:
        assert all(type(g) is int and 1 <= g for g in ln.grid)
        assert all(type(r[1]) is not str for r in refs)     # every size ref is its value


@needs_cxx
def test_multi_kernel_and_reductions_over_the_batch():
    """Horizontal (multi) kernels whose parts follow the batch, a reduction over it and a
    mean that divides by it."""
    x = sf.tensor("x", ("batch", 5))
    w = sf.shared(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3), name="w")
    h = sf.tanh(x @ w)
    outs = [h.sum(axis=0), (x * 2.0).mean(), sf.exp(x).max(axis=1), h * 3.0]
    f = sf.function([x], outs, device="cuda-emu")
    assert {"multi", "reduce"} <= {k.kind for k in f._run.launched}
    g = sf.function([x], outs, device="interp")
    for b in (1, 3, 200):
        xv = np.random.default_rng(b).standard_normal((b, 5)).astype(np.float32)
        for got, want in zip(f(xv), g(xv)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_cxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_library_ops_along_the_batch_axis(dtype):
    """Library ops whose reduced or contracted axis is the batch: softmax, argmax and
    logsumexp over it, and a GEMM that contracts it (no split-K: its split count
    would follow the size)."""
    x = sf.tensor("x", ("batch", 40), dtype)
    w = sf.shared(np.linspace(-1, 1, 40 * 300).reshape(40, 300).astype(dtype), name="w")
    h = x @ w
    outs = [sf.softmax(h, axis=0), sf.softmax(h, axis=1), sf.argmax(h, axis=0), sf.argmax(h, axis=1),
            sf.logsumexp(h, axis=0), h.T @ h]
    g = sf.function([x], outs, device="interp")
    for opts in ({}, {"library": False}):
        f = sf.function([x], outs, device="cuda-emu", **opts)
        for b in (1, 9, 70):
            xv = np.random.default_rng(b).standard_normal((b, 40)).astype(dtype)
            for got, want in zip(f(xv), g(xv)):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cuda_graph_is_refused_with_a_run_time_size():
    x = sf.tensor("x", ("batch", 4))
    with pytest.raises(InputError, match="cuda_graph=True captures fixed launch sizes"):
        sf.function([x], [x * 2.0], device="cuda-emu", cuda_graph=True)


def test_cuda_export_refuses_a_run_time_size(tmp_path):
    from symfuse.runtime.export import export
    m = zoo.get("mlp", batch="batch", seed=0)
    with pytest.raises(InputError, match="export a run-time batch for target cpu"):
        export(m.predict_function("cuda-emu"), str(tmp_path / "out"), target="cuda")


# ----------------------------------------------------------- PyCUDA's executor, on a fake GPU
_spec = importlib.util.spec_from_file_location(
    "fake_pycuda", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fakes", "fake_pycuda.py"))
fake_pycuda = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_pycuda)


@needs_cxx
@pytest.mark.skipif(not cuda_backend.CudaBackend().available(), reason="NVRTC is not installed")
def test_pycuda_executor_on_a_fake_gpu(monkeypatch, tmp_path):
    """The PyCUDA executor's sized path (arena growth, staging buffers that grow, results
    at the call's shape) with kernels run by the emulator from the NVRTC unit's source."""
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    modules: list = []
    fake_pycuda.install(monkeypatch, modules)
    monkeypatch.setattr(cuda_backend, "gpu_arch", lambda: "sm_90")
    m = zoo.get("mlp", batch="batch", seed=0)
    f = m.train_function("cuda", arch="sm_90")
    _emulate(f, modules)
    for b in (7, 32, 1):
        data = m.example_batch(seed=b, size=b)
        twin = _static_twin("mlp", b, [s.get_value() for s in f.shared])
        want = twin(*data)
        for g, w in zip(f(*data), want):
            np.testing.assert_allclose(np.asarray(g), w, rtol=2e-5, atol=2e-6, err_msg=f"batch {b}")
        for p, q in zip(f.shared, twin.shared):
            np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=2e-5, atol=2e-6)


# ----------------------------------------------------------- a real GPU
@pytest.mark.cuda
@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_on_a_real_gpu(name):
    """Where a GPU is lent: one compile for cuda trains and predicts at batches 1, 7 and
    32 like the static builds on the interpreter."""
    assert cuda_backend.CudaBackend().runnable(), "tests marked cuda need an NVIDIA GPU, PyCUDA and NVRTC"
    _train_like_static_builds(name, "cuda")
    _predict_like_interpreter(name, "cuda")
