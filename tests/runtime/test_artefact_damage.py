"""Artefacts outside the content cache (issue 20, item 3): the installation's
prebuilt C runtime library, its API header, the precompiled unit prelude and
Jinja's compiled templates are checked before use; a damaged one is rebuilt and
the compile gives correct results, never SIGBUS, a wrong answer or a failure on
every later compile. Each case runs in a fresh process on a private copy of an
installation's build directory ($SYMFUSE_BUILD_DIR, the library built there as
``pip install`` builds it) and of the compile cache, which holds what the run
time builds (the prelude, Jinja's bytecode, a library the installation lacks)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from symfuse.runtime import rt_recipe
from symfuse.runtime.toolchain import blas_lib_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent("""
    import json
    import numpy as np
    import symfuse as sf
    x = sf.tensor("x", (6, 5)); W = sf.tensor("W", (5, 4))
    p = sf.softmax(sf.tanh(x @ W))
    loss = (p * p).sum()
    f = sf.function([x, W], [p, sf.grad(loss, W)], device="cpu")
    rng = np.random.default_rng(0)
    xv, Wv = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    got, g = f(xv, Wv)
    h = np.tanh(xv @ Wv); e = np.exp(h - h.max(1, keepdims=True)); want = e / e.sum(1, keepdims=True)
    # d/dW sum(p^2): through softmax and tanh
    dp = 2 * want; dh = want * (dp - (dp * want).sum(1, keepdims=True)); dW = xv.T @ (dh * (1 - h * h))
    print(json.dumps({"ok": bool(np.allclose(got, want, atol=1e-5) and np.allclose(g, dW, atol=1e-4)),
                      "stages": [s.name for s in f.report.stages]}))
""")


def run_child(build_dir, cache_dir):
    env = dict(os.environ, SYMFUSE_BUILD_DIR=str(build_dir), SYMFUSE_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An installation (``_build``: the runtime library) and a cache (the prelude,
    the templates) after one compile; ``b`` and ``c`` below the returned directory."""
    root = tmp_path_factory.mktemp("built")
    package = root / "symfuse"
    shutil.copytree(os.path.join(ROOT, "symfuse", "templates"), package / "templates")
    if rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None) is None:
        pytest.skip("no install-time build of the runtime library with this compiler")
    os.rename(package / "_build", root / "b")
    out, _ = run_child(root / "b", root / "c")
    assert out["ok"]
    return root


def _damage(path, how):
    data = bytearray(open(path, "rb").read())
    if how == "truncate":
        data = data[: len(data) // 3]
    elif how == "flip16":                # 16 flipped bytes in the middle
        mid = len(data) // 2
        for k in range(16):
            data[mid + k] ^= 0xA5
    elif how == "empty":
        data = bytearray()
    open(path, "wb").write(bytes(data))


ARTEFACTS = {           # below the installation's build directory (b) or the cache (c)
    "runtime library": "b/*/libsymfuse_rt.so",
    "runtime API header": "b/*/sf_runtime_api.h",
    "precompiled prelude": "c/runtime/unit-*/sf_unit.h.gch",
    "prelude header": "c/runtime/unit-*/sf_unit.h",
    "jinja bytecode": "c/jinja/*.cache",
}


@pytest.mark.parametrize("how", ["truncate", "flip16", "empty"])
@pytest.mark.parametrize("what", sorted(ARTEFACTS))
def test_damaged_build_artefact_is_rebuilt(built, tmp_path, what, how):
    for sub in ("b", "c"):
        shutil.copytree(built / sub, tmp_path / sub)
    paths = glob.glob(str(tmp_path / ARTEFACTS[what]))
    assert paths, f"no {what} in {os.listdir(tmp_path)}"
    for p in paths:
        _damage(p, how)
    first, _ = run_child(tmp_path / "b", tmp_path / "c")
    assert first["ok"]
    again, _ = run_child(tmp_path / "b", tmp_path / "c")     # repaired: the next process is fine too
    assert again["ok"] and "runtime library build" not in again["stages"]


def test_damaged_sidecar_is_a_rebuild_not_a_failure(built, tmp_path):
    """A checksum sidecar that is not even text (a non-UTF-8 byte) is damage like any other."""
    d = tmp_path / "b"
    shutil.copytree(built / "b", d)
    paths = glob.glob(str(d / "*" / "libsymfuse_rt.so.sha256"))
    assert paths
    for p in paths:
        open(p, "wb").write(b"\xff\xfe" + os.urandom(30))
    out, err = run_child(d, tmp_path / "c")
    assert out["ok"] and "runtime library build" in out["stages"]
    # a stage of its own, before the graph-cache lookup (whose key names the build), announced first
    assert out["stages"].index("runtime library build") < out["stages"].index("graph cache")
    assert "building the C runtime library once" in err


def test_prebuilt_runtime_with_an_unusable_cache(built, tmp_path):
    """The runtime library prebuilt in the installation, and a cache directory that
    cannot be created: functions with a matmul, softmax and their gradients still
    compile and run (no undefined BLAS symbol), without caching."""
    out, err = run_child(built / "b", "/dev/null/cache")
    assert out["ok"] and "compiling without caching" in err
