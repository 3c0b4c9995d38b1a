"""A ``.onnx`` path is a MODEL for every command; ``symfuse onnx check`` lists each
node as supported or not before anything is compiled."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sym(*args, cache):
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "symfuse.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def _write(path, nodes, batch="N"):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), "w")
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


GOOD = [helper.make_node("Relu", ["x"], ["a"], name="act"), helper.make_node("Add", ["a", "a"], ["y"])]


def test_compile_inspect_graph_an_onnx_model(tmp_path):
    path = _write(tmp_path / "tiny.onnx", GOOD)
    out = sym("compile", path, "--batch", "8", "-o", str(tmp_path / "out"), cache=tmp_path / "c")
    assert out.returncode == 0, out.stderr
    assert os.path.exists(tmp_path / "out" / "report.json")
    ins = sym("inspect", path, "--batch", "8", "--json", cache=tmp_path / "c")
    assert ins.returncode == 0, ins.stderr
    kernels = json.loads(ins.stdout)
    assert [k["ops"] for k in kernels] == [["relu", "add"]]
    assert "tiny.onnx:1" in kernels[0]["provenance"][0]       # the node the op came from
    gr = sym("graph", path, "--batch", "8", cache=tmp_path / "c")
    assert gr.returncode == 0 and "f32[8,4]" in gr.stdout, gr.stderr
    tm = sym("time", path, "--batch", "8", "--repeat", "1", "--json", cache=tmp_path / "c")
    assert tm.returncode == 0, tm.stderr
    assert json.loads(tm.stdout)["cold"]["total_s"] > 0


def test_symbolic_batch_without_batch_says_how(tmp_path):
    out = sym("compile", _write(tmp_path / "tiny.onnx", GOOD), cache=tmp_path / "c")
    assert out.returncode == 1
    assert "symbolic size 'N' on axis 0" in out.stderr and "--batch N" in out.stderr
    assert "Traceback" not in out.stderr


def test_train_flag_and_missing_file_are_usage_errors(tmp_path):
    path = _write(tmp_path / "tiny.onnx", GOOD)
    out = sym("compile", path, "--train", "--batch", "2", cache=tmp_path / "c")
    assert out.returncode == 2 and "no training step" in out.stderr
    out = sym("compile", str(tmp_path / "absent.onnx"), cache=tmp_path / "c")
    assert out.returncode == 2 and "no such file" in out.stderr


def test_broken_model_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07\x12garbage")
    out = sym("compile", str(path), cache=tmp_path / "c")
    assert out.returncode == 1 and "broken.onnx: not a valid ONNX model" in out.stderr
    assert "Traceback" not in out.stderr


def test_onnx_check_lists_each_node(tmp_path):
    ok = sym("onnx", "check", _write(tmp_path / "ok.onnx", GOOD), cache=tmp_path / "c")
    assert ok.returncode == 0, ok.stderr
    assert "Relu 'act': supported" in ok.stdout and "NOT SUPPORTED" not in ok.stdout
    bad = _write(tmp_path / "bad.onnx", GOOD[:1] + [helper.make_node("NoSuchOp", ["a"], ["y"], name="odd")])
    out = sym("onnx", "check", bad, "--json", cache=tmp_path / "c")
    assert out.returncode == 1
    rep = json.loads(out.stdout)
    assert [(n["op_type"], n["supported"]) for n in rep["nodes"]] == [("Relu", True), ("NoSuchOp", False)]
    assert rep["nodes"][1]["reason"] == "no converter for this op"
