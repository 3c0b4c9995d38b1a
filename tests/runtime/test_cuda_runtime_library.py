"""The precompiled CUDA runtime library (runtime/cuda_runtime.py): GEMM-class
kernels with runtime sizes, built once per installation, NVRTC and arch and
launched by name. Functions launch it on cuda and cuda-emu with the same
numbers as the interpreter (odd sizes, strides, padding, dilation, groups,
transposes); the library is rebuilt when its file is corrupt or missing, a
graph-cache entry whose library build is gone is a miss, a warm compile makes
no NVRTC call, and its kernels can be inspected like any other."""
import os

import numpy as np
import pytest

import symfuse as sf
from symfuse.runtime import cuda as cuda_backend
from symfuse.runtime import cuda_runtime

needs_nvrtc = pytest.mark.skipif(not cuda_backend.CudaBackend().available(), reason="NVRTC not installed")
needs_cxx = pytest.mark.skipif(not cuda_backend.CudaBackend(emulate=True).available(), reason="no C++ compiler")


def _graph(dtype="float32"):
    """A conv net on odd sizes (none a multiple of a tile): strided, padded, dilated and
    grouped convolutions, a transposed-operand matmul, batched matmul; its gradients."""
    rng = np.random.default_rng(11)
    w1 = sf.shared((rng.normal(0, 0.3, (6, 3, 3, 3))).astype(dtype), name="w1")
    w2 = sf.shared((rng.normal(0, 0.3, (10, 3, 3, 2))).astype(dtype), name="w2")
    d = sf.shared((rng.normal(0, 0.2, (10 * 4 * 3, 7))).astype(dtype), name="d")
    x = sf.tensor("x", (5, 3, 13, 11), dtype)
    h = sf.tanh(sf.conv2d(x, w1, stride=2, padding=1))                             # 5x6x7x6
    h = sf.tanh(sf.conv2d(h, w2, stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2))   # 5x10x5x3
    h = h[:, :, :4, :].reshape((5, 10 * 4 * 3))
    z = h @ d                                                                      # 5x7
    b = sf.tanh(z).reshape((5, 7, 1)) @ sf.tanh(z).reshape((5, 1, 7))              # batched 5x7x7
    loss = (z * z).sum() + b.mean()
    params = [w1, w2, d]
    grads = sf.grad(loss, params)
    xv = rng.normal(size=(5, 3, 13, 11)).astype(dtype)
    return [x], [loss, z], [(p, p - 0.05 * g) for p, g in zip(params, grads)], xv


def _run(device, **kw):
    inputs, outs, ups, xv = _graph(kw.pop("dtype", "float32"))
    f = sf.function(inputs, outs, updates=ups, device=device, **kw)
    res = [f(xv) for _ in range(2)]
    return f, [o for r in res for o in r] + [s.get_value() for s, _ in ups]


@needs_cxx
def test_emu_library_kernels_match_the_interpreter_on_odd_sizes(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    _, ref = _run("interp")
    f, got = _run("cuda-emu")
    lib = [k for k in f.kernels if k.in_library]
    ops = {op for k in lib for op in k.fused_ops}
    assert {"matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight"} <= ops, ops
    assert all(ln.kernel.startswith("sf_lib_") for k in lib for ln in k.launches)
    assert "cuda library" in {s.name for s in f.report.stages}
    assert not any(k.name in f.source for k in lib)     # not in the function's own unit
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-5)
    # the shape-specialised kernels (library=False) compute the same numbers
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "spec"))
    g, spec = _run("cuda-emu", library=False)
    assert not any(k.in_library for k in g.kernels) and "cuda library" not in {s.name for s in g.report.stages}
    for a, b in zip(spec, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@needs_cxx
def test_float64_keeps_the_shape_specialised_kernels(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    _, ref = _run("interp", dtype="float64")
    f, got = _run("cuda-emu", dtype="float64")
    gemm = [k for k in f.kernels if k.kind == "library" and "matmul" in k.fused_ops]
    assert gemm and not any(k.in_library for k in f.kernels)
    assert all(k.name in f.source and "sf_matmul<double" in k.source for k in gemm)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


@pytest.fixture
def private_library(monkeypatch, tmp_path):
    """The library built into a directory of this test's own (the installation's stays)."""
    monkeypatch.setattr(cuda_runtime, "build_dirs", lambda: [str(tmp_path / "pkg")])
    monkeypatch.setattr(cuda_runtime, "_loaded", {})
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _stage(f, name):
    return next((s.note for s in f.report.stages if s.name == name), None)


@needs_nvrtc
def test_library_is_rebuilt_when_corrupt_or_missing_and_entries_miss_without_it(private_library):
    inputs, outs, ups, _ = _graph()
    cold = sf.function(inputs, outs, updates=ups, device="cuda", arch="sm_90")
    assert "built" in _stage(cold, "cuda library")
    lib = cold._run.library
    assert lib.path.startswith(str(private_library / "pkg")) and os.path.exists(lib.path)
    assert all(im[:4] == b"\x7fELF" for im in lib.images)
    # warm: the graph entry, the library found, no NVRTC call
    inputs, outs, ups, _ = _graph()
    warm = sf.function(inputs, outs, updates=ups, device="cuda", arch="sm_90")
    assert warm.report.info["graph_cache"] == "hit" and warm.report.info["nvrtc_calls"] == 0
    assert _stage(warm, "cuda library") == "sm_90: found (graph entry)"
    assert warm._run.library.images == lib.images
    assert cuda_runtime.library("sm_90").build_seconds == 0      # found, not built
    # one flipped byte: the checksum fails, the entry misses, the library is rebuilt
    blob = bytearray(open(lib.path, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    with open(lib.path, "wb") as fh:
        fh.write(blob)
    assert cuda_runtime.find_library("sm_90") is None
    inputs, outs, ups, _ = _graph()
    again = sf.function(inputs, outs, updates=ups, device="cuda", arch="sm_90")
    assert again.report.info["graph_cache"] == "miss" and "built" in _stage(again, "cuda library")
    assert again._run.library.images == lib.images and cuda_runtime.find_library("sm_90") is not None
    # missing (and a truncated file): rebuilt
    os.remove(lib.path)
    assert cuda_runtime.find_library("sm_90") is None
    rebuilt = cuda_runtime.library("sm_90")
    assert rebuilt.build_seconds > 0 and rebuilt.images == lib.images
    with open(lib.path, "r+b") as fh:
        fh.truncate(os.path.getsize(lib.path) - 10)
    assert cuda_runtime.find_library("sm_90") is None and cuda_runtime.library("sm_90").images == lib.images


@needs_nvrtc
def test_library_kernels_are_inspectable(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    inputs, outs, ups, _ = _graph()
    f = sf.function(inputs, outs, updates=ups, device="cuda", arch="sm_90")
    assert _stage(f, "cuda library") in ("sm_90: found", ) or "built" in _stage(f, "cuda library")
    k = next(k for k in f.kernels if k.in_library and "conv2d_grad_weight" in k.fused_ops)
    kernel = k.launches[0].kernel
    assert k.name.startswith("L_") and k.fused_ops and k.provenance
    assert f'extern "C" __global__ void __launch_bounds__(256) {kernel}(' in k.source
    cfg = k.launch_config[0]
    assert cfg["kernel"] == kernel and cfg["library"] and cfg["args"] and cfg["block"] == (256, 1, 1)
    assert k.cubin is f._run.library.image(kernel) and kernel.encode() + b"\0" in k.cubin
    assert set(k.resources) == {ln.kernel for ln in k.launches}
    assert all(r.registers > 0 and not r.spills for r in k.resources.values())
    assert f".entry {kernel}" in k.ptx
    assert kernel in k.sass
    assert {ln.kernel for ln in k.launches} <= set(f.report.info["resources"])
    assert set(f.report.info["cuda_library"]["kernels"]) >= {ln.kernel for ln in k.launches}


def test_split_units_leaves_library_kernels_out():
    class K:
        def __init__(self, kind, ops, lib=False):
            self.kind, self.fused_ops, self.in_library, self.parts = kind, ops, lib, [0] * 9
    assert cuda_backend._kernel_cost(K("library", ["matmul"], True)) == 0
    assert cuda_backend._kernel_cost(K("library", ["matmul"])) == 8          # shape-specialised (float64, ...)
    assert cuda_backend._kernel_cost(K("library", ["max_pool2d"])) == 2
    assert cuda_backend._kernel_cost(K("pointwise", ["add"])) == 1
    assert cuda_backend._kernel_cost(K("multi", ["add"])) == 9                # one per part
