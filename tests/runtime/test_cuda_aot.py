"""Ahead-of-time CUDA compilation without a GPU (issue 4): the MLP and LeNet-5
training steps compile with NVRTC for sm_80 and sm_90 with zero spills; a warm
compile makes zero NVRTC calls; every kernel can be inspected; calling needs a
GPU and says so."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import symfuse as sf
from symfuse.errors import DeviceUnavailable
from test_fusion_golden import mlp
from test_models_grad import lenet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_step(model, arch, batch=128):
    rng = np.random.default_rng(0)
    x, y, loss, params = mlp(rng, batch) if model == "mlp" else lenet(rng, batch, "float32")
    grads = sf.grad(loss, params)
    return sf.function([x, y], loss, updates=[(p, p - 0.01 * g) for p, g in zip(params, grads)],
                       device="cuda", arch=arch)


@pytest.fixture(scope="module", params=[("mlp", "sm_80"), ("mlp", "sm_90"), ("lenet", "sm_80"), ("lenet", "sm_90")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def compiled(request):
    model, arch = request.param
    return model, arch, train_step(model, arch)


def test_every_kernel_compiles_without_spills(compiled):
    model, arch, f = compiled
    assert f.report.info["arch"] == arch
    res = f.report.info["resources"]
    launches = [ln["kernel"] for k in f.kernels for ln in k.launch_config]
    assert set(launches) == set(res), (set(launches) ^ set(res))
    for name, r in res.items():
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, (name, r)
        assert 0 < r["registers"] <= 255, (name, r)
    assert f.kernels[0].cubin[:4] == b"\x7fELF"


def test_same_partition_as_cpu(compiled):
    """The CUDA backend reuses fusion: the same groups as the cpu golden numbers."""
    from test_fusion_golden import GOLDEN
    model, _, f = compiled
    assert len(f.kernels) == GOLDEN[model]["total"]


def test_kernels_are_inspectable(compiled):
    model, arch, f = compiled
    k = next(k for k in f.kernels if k.kind == "pointwise")
    assert f".entry {k.name}" in k.ptx
    assert k.fused_ops and k.provenance and k.launch_config[0]["block"][0] > 0
    assert "__global__" in k.source and k.name in f.source
    try:
        sass = k.sass
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"nvdisasm (nvidia-cuda-nvdisasm, a dev dependency) should disassemble: {e}")
    assert k.name in sass


def test_calling_without_a_gpu_names_the_cpu_device(compiled):
    from symfuse.runtime.cuda import gpu_arch
    if gpu_arch() is not None:
        pytest.skip("a GPU is present: tests marked cuda run instead")
    _, _, f = compiled
    with pytest.raises(DeviceUnavailable, match="device='cpu'"):
        f(np.zeros(f.inputs[0].type.shape, np.float32), np.zeros(128, np.int32))


def test_warm_aot_compile_makes_no_nvrtc_calls(tmp_path):
    """A second process compiling the LeNet-5 step for sm_90 gets every CUBIN from the cache."""
    code = ("import json, sys; sys.path[:0] = ['tests', 'tests/compiler', 'tests/runtime']; import test_cuda_aot as t; "
            "f = t.train_step('lenet', 'sm_90'); "
            "print(json.dumps({'calls': f.report.info['nvrtc_calls'], "
            "'stages': {s.name: s.note for s in f.report.stages}}))")
    env = dict(os.environ, SYMFUSE_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["calls"] >= 1 and "cache miss" in runs[0]["stages"]["nvrtc"]
    assert runs[1]["calls"] == 0 and "cache hit" in runs[1]["stages"]["nvrtc"]
