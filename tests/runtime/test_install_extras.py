"""A plain install runs on the CPU without NVIDIA wheels: NVRTC is the ``cuda`` extra,
PyCUDA the ``gpu`` extra, and a missing one is named with the command that installs it."""
import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WITHOUT_CUDA = """
import sys
for name in ("cuda", "cuda.bindings", "cuda.bindings.nvrtc", "pycuda"):
    sys.modules[name] = None          # as if the wheels were not installed
import numpy as np
import symfuse as sf
x = sf.tensor("x", (3,))
print("cpu", sf.function([x], sf.exp(x), device="cpu")(np.zeros(3, np.float32)).tolist())
print("emu", sf.function([x], sf.exp(x), device="cuda-emu")(np.zeros(3, np.float32)).tolist())
try:
    sf.function([x], sf.exp(x), device="cuda", arch="sm_90")
except sf.DeviceUnavailable as e:
    print("cuda:", e)
"""


def test_base_dependencies_hold_no_nvidia_wheels():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert not [d for d in project["dependencies"] if "cuda" in d or "nvidia" in d]
    extras = project["optional-dependencies"]
    assert any(d.startswith("nvidia-cuda-nvrtc") for d in extras["cuda"])
    assert any(d.startswith("pycuda") for d in extras["gpu"]) and "symfuse[cuda]" in extras["gpu"]
    assert not [d for d in extras["cuda"] if d.startswith("pycuda")]     # wheels only


def test_cpu_and_emulator_work_without_the_cuda_extra(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", WITHOUT_CUDA], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "cpu [1.0, 1.0, 1.0]" and lines[1] == "emu [1.0, 1.0, 1.0]"
    assert lines[2].startswith("cuda:") and "pip install 'symfuse[cuda]'" in lines[2]
    assert "no GPU, driver or CUDA toolkit needed" in lines[2]
