"""The compile caches across processes (issue 3): a second process hits the
graph-level cache and skips passes, fusion and codegen; damaged entries and
libraries are recompiled; concurrent compiles of one function all succeed with
identical results; an unwritable cache directory degrades to compiling without
caching, with a warning; the report's stages add up to its total."""
import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a small training step: matmul, bias, relu, softmax-xent, gradients, SGD updates
CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import symfuse as sf
    rng = np.random.default_rng(0)
    W = sf.shared(rng.normal(0, 0.1, (20, 16)).astype(np.float32), name="W")
    b = sf.shared(np.zeros(16, np.float32), name="b")
    V = sf.shared(rng.normal(0, 0.1, (16, 5)).astype(np.float32), name="V")
    x = sf.tensor("x", (8, 20)); y = sf.tensor("y", (8,), "int32")
    logits = sf.relu(x @ W + b) @ V
    loss = -(sf.one_hot(y, 5) * sf.log_softmax(logits)).sum(axis=1).mean()
    gs = sf.grad(loss, [W, b, V])
    t0 = time.perf_counter()
    f = sf.function([x, y], loss, updates=[(p, p - 0.1 * g) for p, g in zip([W, b, V], gs)], device="cpu")
    wall = time.perf_counter() - t0
    xv = rng.normal(size=(8, 20)).astype(np.float32); yv = rng.integers(0, 5, 8).astype(np.int32)
    losses = [float(f(xv, yv)) for _ in range(3)]
    r = f.report
    print(json.dumps({"graph_cache": r.info.get("graph_cache"), "c_cache": r.info.get("c_cache"),
                      "stages": [s.name for s in r.stages], "stage_sum": sum(s.seconds for s in r.children(None)),
                      "total": r.total_seconds, "wall": wall, "losses": losses,
                      "W": f.shared[0].get_value().tolist() if hasattr(f, "shared") else None,
                      "kernels": [k.name for k in f.kernels], "ir": f.ir()}))
""")


def run_child(cache_dir, extra_env=None):
    env = dict(os.environ, SYMFUSE_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    env.update(extra_env or {})
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A cold compile in a fresh cache and its results."""
    d = tmp_path_factory.mktemp("ref-cache")
    cold, _ = run_child(d)
    return d, cold


def test_second_process_hits_graph_cache(reference):
    d, cold = reference
    assert cold["graph_cache"] == "miss" and cold["c_cache"] == "miss"
    assert {"fusion", "codegen", "c compile"} <= set(cold["stages"])
    warm, _ = run_child(d)
    assert warm["graph_cache"] == "hit"
    # passes, fusion, codegen and the C compiler never ran
    assert not {"differentiate", "fusion", "codegen", "c compile"} & set(warm["stages"]), warm["stages"]
    assert warm["losses"] == cold["losses"] and warm["W"] == cold["W"]
    assert warm["kernels"] == cold["kernels"] and warm["ir"] == cold["ir"]


def test_report_stages_add_up_to_total(reference):
    _, cold = reference
    assert abs(cold["stage_sum"] - cold["total"]) <= 0.05 * cold["total"]
    assert abs(cold["total"] - cold["wall"]) <= 0.05 * cold["wall"]


def _corrupt_all(pattern, how):
    paths = glob.glob(pattern, recursive=True)
    assert paths, pattern
    for p in paths:
        with open(p, "r+b") as fh:
            if how == "truncate":
                fh.truncate(os.path.getsize(p) // 2)
            else:
                fh.seek(os.path.getsize(p) // 2)
                fh.write(b"\xde\xad\xbe\xef" * 4)


@pytest.mark.parametrize("how", ["truncate", "overwrite"])
def test_damaged_graph_entry_recompiles(reference, tmp_path, how):
    import shutil
    d = tmp_path / "cache"
    shutil.copytree(reference[0], d)
    _corrupt_all(os.path.join(str(d), "graph", "*", "*"), how)
    again, err = run_child(d)
    assert again["graph_cache"] == "miss"
    assert again["losses"] == reference[1]["losses"]
    third, _ = run_child(d)               # the rewritten entry is good again
    assert third["graph_cache"] == "hit" and third["losses"] == reference[1]["losses"]


@pytest.mark.parametrize("how", ["truncate", "overwrite"])
def test_damaged_library_recompiles(reference, tmp_path, how):
    import shutil
    d = tmp_path / "cache"
    shutil.copytree(reference[0], d)
    shutil.rmtree(d / "graph")           # force the path through the C library cache
    _corrupt_all(os.path.join(str(d), "cpu-lib", "*", "*.so"), how)
    again, _ = run_child(d)
    assert again["c_cache"] == "miss" and again["losses"] == reference[1]["losses"]


def test_concurrent_processes_same_function(reference, tmp_path):
    d = tmp_path / "cache"
    env = dict(os.environ, SYMFUSE_CACHE_DIR=str(d), PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    outs = []
    for p in procs:
        o, e = p.communicate(timeout=300)
        assert p.returncode == 0, e
        outs.append(json.loads(o.strip().splitlines()[-1]))
    for o in outs:
        assert o["losses"] == reference[1]["losses"] and o["W"] == reference[1]["W"]
    warm, _ = run_child(d)
    assert warm["graph_cache"] == "hit" and warm["losses"] == reference[1]["losses"]


def test_unusable_cache_path_warns_and_compiles(reference, tmp_path):
    """A cache 'directory' that is a regular file: unusable even for root (who
    ignores permission bits, so a chmod-ed directory would not test this)."""
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    res, err = run_child(f)
    assert "cache directory" in err and "without caching" in err, err
    assert res["losses"] == reference[1]["losses"] and res["graph_cache"] == "miss"
    again, _ = run_child(f)
    assert again["graph_cache"] == "miss" and again["losses"] == reference[1]["losses"]
