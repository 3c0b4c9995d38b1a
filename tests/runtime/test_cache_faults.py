"""Cache faults under load (issue 20, items 6 and 8c): many processes compiling at
once, processes killed mid-compile, `cache prune` / `cache clear` running beside
compiles, and a cache on a full disk. Every compile must give correct results; a
fault may cost a recompile, never a failure or a wrong answer."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from symfuse.runtime.cache import DiskCache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import symfuse as sf
    k = int(sys.argv[1])                       # which of a few functions: processes race on the same ones
    x = sf.tensor("x", (8, 6)); W = sf.tensor("W", (6, 5))
    h = sf.tanh(x @ W) * (k + 1)
    loss = (sf.softmax(h) ** 2).sum()
    f = sf.function([x, W], [loss, sf.grad(loss, W)], device="cpu")
    rng = np.random.default_rng(k)
    xv, Wv = rng.normal(size=(8, 6)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    l, g = f(xv, Wv)
    hv = np.tanh(xv @ Wv) * (k + 1); e = np.exp(hv - hv.max(1, keepdims=True)); p = e / e.sum(1, keepdims=True)
    dp = 2 * p; dh = p * (dp - (dp * p).sum(1, keepdims=True)) * (k + 1); dW = xv.T @ (dh * (1 - np.tanh(xv @ Wv) ** 2))
    ok = np.allclose(l, (p ** 2).sum(), rtol=1e-4) and np.allclose(g, dW, rtol=1e-3, atol=1e-4)
    print(json.dumps({"ok": bool(ok), "graph_cache": f.report.info.get("graph_cache")}))
""")


def _env(cache):
    return dict(os.environ, SYMFUSE_CACHE_DIR=str(cache), PYTHONPATH=ROOT)


def _spawn(cache, k):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(cache))


def _result(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def test_eight_racing_processes(tmp_path):
    """8 processes, two functions, one empty cache: all correct, and the cache they
    leave is good (a ninth process hits)."""
    procs = [_spawn(tmp_path, k % 2) for k in range(8)]
    for p in procs:
        out, err = _result(p)
        assert out["ok"] and "Traceback" not in err
    for k in (0, 1):
        out, err = _result(_spawn(tmp_path, k))
        assert out["ok"] and out["graph_cache"] == "hit", err
    assert not any(n.startswith(".tmp-") for _, _, files in os.walk(tmp_path) for n in files)


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.6, 1.0, 1.5])
def test_kill_9_mid_compile_leaves_a_usable_cache(tmp_path, delay):
    victim = _spawn(tmp_path, 0)
    time.sleep(delay)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    out, err = _result(_spawn(tmp_path, 0))
    assert out["ok"], err
    # leftovers of the killed writer are temporaries, never entries
    entries = DiskCache(str(tmp_path)).info()["entries"]
    assert all(not n.endswith((".c", ".o", ".cu")) for where, _, files in os.walk(tmp_path) for n in files
               if not any(part.startswith(".tmp-") for part in where.split(os.sep)))
    assert entries >= 1


def test_prune_and_clear_beside_compiles(tmp_path):
    """A maintenance process pruning and clearing in a loop while compiles run:
    every compile succeeds (in-progress files are temporaries, which maintenance
    leaves alone while they are fresh)."""
    stop = tmp_path / "stop"
    maint = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, time
        from symfuse.runtime.cache import DiskCache
        c = DiskCache({str(tmp_path)!r})
        while not os.path.exists({str(stop)!r}):
            c.prune(1); c.clear(); time.sleep(0.01)
    """)], env=_env(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        for round_ in range(3):
            procs = [_spawn(tmp_path, k % 3) for k in range(4)]
            for p in procs:
                out, err = _result(p)
                assert out["ok"], err
    finally:
        stop.write_text("")
        _, err = maint.communicate(timeout=60)
    assert maint.returncode == 0, err


def test_stale_temporaries_are_cleaned_by_maintenance(tmp_path):
    c = DiskCache(str(tmp_path))
    d = c.private_dir("cpu-lib", "ab")
    old = os.path.join(d, ".tmp-build-dead")
    os.makedirs(old)
    open(os.path.join(old, "module.c"), "w").write("int x;")
    fresh = os.path.join(d, ".tmp-build-live")
    os.makedirs(fresh)
    past = time.time() - 2 * 3600
    os.utime(old, (past, past))
    c.prune(1 << 30)
    assert not os.path.exists(old) and os.path.exists(fresh)


def _mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a small tmpfs")
def test_full_disk_compiles_without_caching(tmp_path):
    disk = tmp_path / "tiny"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        (disk / "filler").write_bytes(b"\0" * (60 * 1024))   # nearly full: the first library does not fit
        out, err = _result(_spawn(disk / "cache", 0))
        assert out["ok"], err
        assert "ENOSPC" not in err and "No space left" in err and "compiling without caching" in err
        assert err.count("compiling without caching") == 1
        out, err = _result(_spawn(disk / "cache", 1))
        assert out["ok"], err
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
def test_compiling_without_a_cache_leaves_no_temporary_files(tmp_path, device):
    """An uncached compile builds in a temporary directory and removes it once the
    library is loaded (a mapped library needs no file)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = ("import numpy as np, symfuse as sf; x = sf.tensor('x', (3,)); "
            f"f = sf.function([x], sf.exp(x) + 1, device='{device}'); print(f(np.zeros(3, np.float32)).tolist())")
    env = dict(_env("/dev/null/no-cache"), TMPDIR=str(tmp))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2.0, 2.0, 2.0]" and "compiling without caching" in out.stderr
    assert os.listdir(tmp) == []
