"""An export whose batch is chosen at run time (issue 17 item 1 with item 2): one
library serves every batch size from C, in a fresh process with `env -i`, the
directory copied to a new place. Oracle: the same function called from Python."""
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
from test_export import _build, _exported_copy

CC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="export tests compile C programs with gcc")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "c")
BATCH_USE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_c", "batch_use.c")


def _run_c(args):
    proc = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "OMP_NUM_THREADS=1", *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_predict_from_c_at_every_batch(tmp_path):
    m = zoo.get("lenet", batch="batch", seed=0)
    f = m.predict_function("cpu")
    d, name = _exported_copy(f, tmp_path)
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, name, "predict")
    for b in (1, 7, 32, 128):
        x = m.example_batch(seed=b, size=b)[0]
        x.tofile(os.path.join(d, "x.bin"))
        _run_c([exe, os.path.join(d, "x.bin"), os.path.join(d, "y.bin")])
        got = np.fromfile(os.path.join(d, "y.bin"), np.float32)
        np.testing.assert_allclose(got.reshape(b, 10), f(x), rtol=1e-6, atol=1e-7, err_msg=f"batch {b}")
    manifest = json.load(open(os.path.join(d, f"{name}.json")))
    assert manifest["inputs"][0]["shape"] == ["batch", 1, 28, 28]
    assert manifest["sizes"] == {"batch": {"max": None, "from_input": "x", "bytes_per_row": 3136, "specialized": []}}
    header = open(os.path.join(d, f"{name}.h")).read()
    assert "float32[batch,1,28,28], 3136 bytes a row" in header and "sf_dim" not in header


def test_training_steps_from_c_at_a_run_time_batch(tmp_path):
    m = zoo.get("lenet", batch="batch", seed=0)
    f = m.train_function("cpu")
    d, name = _exported_copy(f, tmp_path)             # the parameters before any step
    batch = m.example_batch(seed=3, size=7)
    losses = [float(np.asarray(f(*batch)[0])) for _ in range(5)]
    exe = _build(os.path.join(EXAMPLES, "train.c"), d, name, "train")
    paths = []
    for i, a in enumerate(batch):
        paths.append(os.path.join(d, f"in{i}.bin"))
        a.tofile(paths[-1])
    saved = os.path.join(d, "trained.params")
    proc = _run_c([exe, "-s", "5", "-o", saved, *paths])
    c_losses = [float(re.search(r"output0=(\S+)", ln).group(1)) for ln in proc.stdout.splitlines()]
    np.testing.assert_allclose(c_losses, losses, rtol=1e-5)
    trained = read_params(saved)
    for s in f.shared:
        np.testing.assert_allclose(trained[s.name], s.get_value(), rtol=1e-5, atol=1e-6, err_msg=s.name)


def test_bad_sizes_and_threads_from_c(tmp_path):
    f = zoo.get("mlp", batch="batch", seed=0).predict_function("cpu", max_batch=16)
    d, name = _exported_copy(f, tmp_path)
    out = _run_c([_build(BATCH_USE, d, name, "batch_use", "-pthread")]).stdout.splitlines()
    assert out[0] == "max_batch 16 row 3136 shape0 -1 bytes_for_3 9408"
    got = {ln.split(" ", 2)[0]: (int(ln.split(" ", 2)[1]), ln.split(" ", 2)[2]) for ln in out[1:-1]}
    assert {k: v[0] for k, v in got.items()} == {"run_3": 0, "partial_row": 3, "output_for_other_batch": 3,
                                                 "empty": 3, "run_after_errors": 0}
    assert "not a whole number of rows of 3136 bytes" in got["partial_row"][1]
    assert "output 0 (output0) has 80 bytes, it needs 120" in got["output_for_other_batch"][1]
    assert "at least 1" in got["empty"][1]
    assert out[-1] == "threads same"


def test_export_refuses_r_for_a_run_time_batch(tmp_path):
    f = zoo.get("mlp", batch="batch", seed=0).predict_function("cpu")
    with pytest.raises(sf.InputError, match="R wrapper takes static shapes"):
        sf.export(f, str(tmp_path / "r"), r=True)


def test_specialized_sizes_are_built_into_the_export(tmp_path):
    m = zoo.get("mlp", batch="batch", seed=0)
    f = m.predict_function("cpu", specialize=[7])
    d, name = _exported_copy(f, tmp_path)
    lib = os.path.join(d, f"lib{name}.so")
    symbols = subprocess.run(["nm", lib], capture_output=True, text=True).stdout
    assert "sf_entry_7" in symbols                   # the literal-size unit is in the library
    exe = _build(os.path.join(EXAMPLES, "predict.c"), d, name, "predict")
    for b in (7, 8):
        x = m.example_batch(seed=b, size=b)[0]
        x.tofile(os.path.join(d, "x.bin"))
        _run_c([exe, os.path.join(d, "x.bin"), os.path.join(d, "y.bin")])
        np.testing.assert_allclose(np.fromfile(os.path.join(d, "y.bin"), np.float32).reshape(b, 10), f(x),
                                   rtol=1e-6, atol=1e-7, err_msg=f"batch {b}")
    assert json.load(open(os.path.join(d, f"{name}.json")))["sizes"]["batch"]["specialized"] == [7]
