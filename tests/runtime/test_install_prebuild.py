"""Installing builds the C runtime library (setup.py -> rt_recipe.prebuild) under the
key that the run-time lookup computes, so the first compile after ``pip install``
finds it instead of spending ~5 s building it."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from symfuse.runtime import rt_recipe
from symfuse.runtime.c_runtime import header_bytes
from symfuse.runtime.toolchain import blas_lib_dir, find_compiler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMPILE_ONCE = """
import json, sys
import numpy as np
import symfuse as sf
x = sf.tensor("x", (4, 3))
w = sf.shared(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
f = sf.function([x], sf.relu(x @ w), device="cpu")
rows = [[s.name, s.note] for s in f.report.stages]
print(json.dumps({"rows": rows, "out": f(np.ones((4, 3), np.float32)).tolist()}))
"""


def _gcc():
    found = find_compiler()
    if found is None or "clang" in found[1].lower():
        pytest.skip("the runtime library needs gcc (-aux-info); this machine's compiler is " + repr(found))
    return found


def _expected_key(version):
    return rt_recipe.library_key(header_bytes(), version, rt_recipe.cpu_identity())


def test_prebuilt_library_is_found_by_the_first_compile(tmp_path):
    _, version = _gcc()
    package = tmp_path / "symfuse"
    shutil.copytree(os.path.join(ROOT, "symfuse", "templates"), package / "templates")
    path = rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None)
    assert path is not None
    assert os.path.basename(os.path.dirname(path)) == _expected_key(version)
    built = os.stat(path).st_mtime_ns
    # the run path is the installed package's sibling, not this build's OpenBLAS directory
    runpath = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    assert "$ORIGIN/../../../scipy_openblas32/lib" in runpath and blas_lib_dir() not in runpath

    env = dict(os.environ, SYMFUSE_BUILD_DIR=str(package / "_build"), SYMFUSE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", COMPILE_ONCE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    builds = [detail for name, detail in result["rows"] if name == "runtime library build"]
    assert not [d for d in builds if d.endswith(rt_recipe.LIBRARY_NAME)], builds
    expect = np.maximum(np.ones((4, 3), np.float32) @ np.arange(6, dtype=np.float32).reshape(3, 2), 0)
    np.testing.assert_array_equal(np.array(result["out"], np.float32), expect)
    assert os.stat(path).st_mtime_ns == built
    # a second prebuild (pip install -e again) keeps the sealed library
    assert rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None) == path
    assert os.stat(path).st_mtime_ns == built


def test_damaged_prebuilt_library_is_rebuilt_not_loaded(tmp_path):
    _gcc()
    package = tmp_path / "symfuse"
    shutil.copytree(os.path.join(ROOT, "symfuse", "templates"), package / "templates")
    path = rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None)
    with open(path, "r+b") as fh:
        fh.seek(200)
        fh.write(b"\0" * 16)
    assert rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None) == path
    with open(path, "rb") as fh, open(path + ".sha256") as seal:
        import hashlib
        assert hashlib.sha256(fh.read()).hexdigest() == seal.read().strip()


def test_wheel_carries_the_library_under_the_runtime_key(tmp_path):
    _, version = _gcc()
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    # a copy without build outputs: setuptools builds in the source tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "_build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".hypothesis"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("symfuse-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    key = _expected_key(version)
    for name in (rt_recipe.LIBRARY_NAME, rt_recipe.API_HEADER):
        assert f"symfuse/_build/{key}/{name}" in names
        assert f"symfuse/_build/{key}/{name}.sha256" in names
    assert not [n for n in names if "/_build/" in n and f"/_build/{key}/" not in n]
