"""sf.export / `symfuse export` (issue 17): a cpu function as a directory that a C
program uses with no Python, no symfuse and no virtual environment. The directory
is copied to a fresh place (the original removed) and every C program runs in a
fresh process with `env -i PATH=/usr/bin:/bin`."""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import symfuse as sf
from symfuse.nn import zoo
from symfuse.runtime.export import read_params

CC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="export tests compile C programs with gcc")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "c")
MISUSE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_c", "misuse.c")
THREADS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_c", "threads.c")
SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")


def _exported_copy(f, tmp_path, name=None):
    """Export ``f``, move the directory to a fresh path (nothing may point back), return (dir, name)."""
    first = tmp_path / "first"
    done = sf.export(f, str(first), name)
    moved = tmp_path / "moved" / "model"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    return str(moved), done.name


def _build(src, d, name, out, *extra):
    exe = os.path.join(d, out)
    subprocess.run([CC, "-O2", "-Wall", "-Werror", src, "-I", d, f'-DSF_MODEL_HEADER="{name}.h"', "-L", d,
                    f"-l{name}", "-Wl,-rpath,$ORIGIN", *extra, "-o", exe], check=True, capture_output=True, text=True)
    return exe


def _run_c(args, check=True):
    """A fresh process with the smallest environment: no venv, no LD_LIBRARY_PATH."""
    proc = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _write_inputs(d, arrays):
    paths = []
    for i, a in enumerate(arrays):
        paths.append(os.path.join(d, f"in{i}.bin"))
        np.ascontiguousarray(a).tofile(paths[-1])
    return paths


@pytest.mark.parametrize("model", ["lenet", "mlp"])
def test_predict_from_c_equals_python(model, tmp_path):
    m = zoo.get(model, batch=8)
    f = m.predict_function("cpu")
    d, name = _exported_copy(f, tmp_path)
    x = m.example_batch(0)[0]
    want = f(x)
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, name, "predict")
    out = os.path.join(d, "out0.bin")
    _run_c([exe, *_write_inputs(d, [x]), out])
    got = np.fromfile(out, want.dtype).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    manifest = json.load(open(os.path.join(d, f"{name}.json")))
    assert manifest["inputs"][0]["shape"] == list(x.shape) and manifest["updates"] == []
    assert {p["name"] for p in manifest["params"]} == {s.name for s in f.shared}


@pytest.mark.parametrize("model", ["lenet", "mlp"])
def test_training_steps_from_c_equal_python(model, tmp_path):
    m = zoo.get(model, batch=8)
    f = m.train_function("cpu")
    d, name = _exported_copy(f, tmp_path)        # the parameters before any step
    batch = m.example_batch(1)
    losses = [float(np.asarray(f(*batch)[0])) for _ in range(5)]
    exe = _build(os.path.join(EXAMPLES, "train.c"), d, name, "train")
    saved = os.path.join(d, "trained.params")
    proc = _run_c([exe, "-s", "5", "-o", saved, *_write_inputs(d, batch)])
    c_losses = [float(re.search(r"output0=(\S+)", ln).group(1)) for ln in proc.stdout.splitlines()]
    np.testing.assert_allclose(c_losses, losses, rtol=1e-6)
    trained = read_params(saved)
    manifest = json.load(open(os.path.join(d, f"{name}.json")))
    assert len(trained) == len(f.shared) == len(manifest["params"])
    for p, s in zip(manifest["params"], f.shared):
        np.testing.assert_allclose(trained[p["name"]], s.get_value(), rtol=1e-6, atol=1e-6, err_msg=p["name"])
    assert set(manifest["updates"]) <= {p["name"] for p in manifest["params"]}
    assert all(p["updated"] == (p["name"] in manifest["updates"]) for p in manifest["params"])


def test_dependencies_resolve_inside_the_directory(tmp_path):
    f = zoo.get("mlp", batch=8).predict_function("cpu")
    d, name = _exported_copy(f, tmp_path)
    for lib in os.listdir(d):
        if not lib.endswith(".so") and ".so." not in lib:
            continue
        path = os.path.join(d, lib)
        dyn = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
        assert re.findall(r"R(?:UN)?PATH.*\[(.*)\]", dyn) in ([], ["$ORIGIN"]), (lib, dyn)
    ldd = _run_c(["ldd", os.path.join(d, f"lib{name}.so")]).stdout
    assert "not found" not in ldd, ldd
    for target in re.findall(r"=> (\S+)", ldd):
        real = os.path.realpath(target)
        assert real.startswith(os.path.realpath(d) + "/") or real.startswith(SYSTEM_DIRS), (target, ldd)
    assert os.path.exists(os.path.join(d, "libsymfuse_rt.so")) and f"{d}/libsymfuse_rt.so" in ldd.replace("/./", "/")


def test_bad_use_from_c_gives_distinct_codes(tmp_path):
    f = zoo.get("lenet", batch=8).predict_function("cpu")
    d, name = _exported_copy(f, tmp_path)
    other = sf.export(zoo.get("mlp", batch=8).predict_function("cpu"), str(tmp_path / "other"))
    params = open(os.path.join(d, f"{name}.params"), "rb").read()
    files = {"truncated": params[:-1000], "bad_magic": b"XX" + params[2:],
             "checksum": params[:-10] + bytes([params[-10] ^ 0xFF]) + params[-9:]}
    paths = [str(tmp_path / "missing.params")]
    for k, blob in files.items():
        (tmp_path / f"{k}.params").write_bytes(blob)
    paths += [str(tmp_path / "truncated.params"), other.files["params"], str(tmp_path / "bad_magic.params"),
              str(tmp_path / "checksum.params")]
    exe = _build(MISUSE, d, name, "misuse")
    proc = _run_c([exe, *paths])
    got = {}
    for line in proc.stdout.splitlines():
        case, code, msg = line.split(" ", 2)
        got[case] = (int(code), msg)
    assert "handle-not-null" not in proc.stdout
    want = {"missing": 7, "truncated": 11, "other_model": 10, "bad_magic": 8, "checksum": 12,
            "create_null_out": 1, "create_default": 0, "run_null_handle": 1, "run_null_inputs": 1,
            "run_null_input0": 1, "run_small_input": 3, "run_big_output": 3, "run_count": 2, "run_overlap": 4,
            "get_unknown": 6, "get_wrong_size": 3, "set_null_buf": 1, "load_other_model": 10,
            "query_out_of_range": 0, "run_after_errors": 0}
    assert {k: v[0] for k, v in got.items()} == want, proc.stdout
    assert "No such file" in got["missing"][1] and "another model" in got["other_model"][1]
    assert "25084 bytes, it needs 25088" in got["run_small_input"][1]
    failures = [k for k in want if want[k] and k != "load_other_model"]    # that one repeats other_model's
    assert len({got[k][1] for k in failures}) == len(failures)             # every message its own


def test_one_handle_per_thread_runs_concurrently(tmp_path):
    d, name = _exported_copy(zoo.get("lenet", batch=8).predict_function("cpu"), tmp_path)
    exe = _build(THREADS, d, name, "threads", "-pthread")
    # one OpenMP thread per handle: the handles' teams would otherwise oversubscribe 2 cores 4 times
    proc = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "OMP_NUM_THREADS=1", exe], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "same", proc.stdout + proc.stderr


def test_names_are_checked_and_escaped(tmp_path):
    x = sf.tensor('in "*/ ??/ x\n', (4, 3), "float32")
    w = sf.shared(np.arange(6, dtype=np.float32).reshape(3, 2), name='W"); abort(); /*')
    f = sf.function([x], x @ w, device="cpu", name="tiny")
    with pytest.raises(sf.InputError, match="C identifier"):
        sf.export(f, str(tmp_path / "bad"), name="../evil")
    d, name = _exported_copy(f, tmp_path, name="tiny_model")
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, name, "predict")
    xv = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    out = os.path.join(d, "y.bin")
    _run_c([exe, *_write_inputs(d, [xv]), out])
    np.testing.assert_allclose(np.fromfile(out, np.float32).reshape(4, 2), f(xv), rtol=1e-6)
    assert list(read_params(os.path.join(d, "tiny_model.params"))) == ['W"); abort(); /*']


def test_cli_export(tmp_path):
    from click.testing import CliRunner
    from symfuse.cli import main
    res = CliRunner().invoke(main, ["export", "mlp", "--batch", "4", "--train", "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    manifest = json.load(open(tmp_path / "e" / "mlp_train.json"))
    assert manifest["inputs"][0]["shape"][0] == 4 and manifest["updates"]
    bad = CliRunner().invoke(main, ["export", "mlp", "--name", "1x", "-o", str(tmp_path / "f")])
    assert bad.exit_code == 2 and "C identifier" in bad.output
