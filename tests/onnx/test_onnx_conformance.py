"""The ONNX conformance suite (every onnx node test case) and the Backend interface
that runs it.

The suite tests run all 1884 cases on interp and cpu and fail when fewer pass than
bench/results/onnx_conformance.json records (regenerate it with
``python bench/onnx_conformance.py`` after a converter improves), or when any case
crashes. cpu compiles into the symfuse cache, so a second run is much faster.
"""
import json
import os
import signal
import time
import unittest
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from symfuse.onnx import OnnxError, OnnxUnsupported  # noqa: E402
from symfuse.onnx import backend as B  # noqa: E402
from symfuse.onnx import conformance as C  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED = os.path.join(ROOT, "bench", "results", "onnx_conformance.json")


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, code, shape):
    return helper.make_tensor_value_info(name, code, shape)


# ----------------------------------------------------------------------------- the Backend interface
def test_prepare_and_run_a_small_model():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"]),
                helper.make_node("Neg", ["y"], ["z"])],
               [_vi("x", TensorProto.FLOAT, [2, 3])],
               [_vi("y", TensorProto.FLOAT, [2, 4]), _vi("z", TensorProto.FLOAT, [2, 4])],
               [onnx.numpy_helper.from_array(w, "w")])
    rep = B.SymfuseBackend.prepare(m, "CPU", symfuse_device="interp")
    assert isinstance(rep, onnx.backend.base.BackendRep)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    out = rep.run([x])
    want = np.maximum(x @ w, 0)
    np.testing.assert_allclose(out[0], want, rtol=1e-6)
    np.testing.assert_allclose(out["z"], -want, rtol=1e-6)          # onnx's named tuple
    np.testing.assert_allclose(out.y, want, rtol=1e-6)
    np.testing.assert_allclose(rep.run({"x": 2 * x})[0], np.maximum(2 * x @ w, 0), rtol=1e-6)
    assert len(rep.compiled) == 1                                     # compiled once, run twice
    np.testing.assert_allclose(B.run_model(m, [x], symfuse_device="interp")[1], -want, rtol=1e-6)


def test_run_node():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, -1, 2], np.float32)
    out = B.run_node(helper.make_node("Sub", ["a", "b"], ["c"]), [a, b], symfuse_device="interp")
    np.testing.assert_array_equal(out["c"], a - b)
    assert out[0].dtype == np.float32


def test_cpu_device_by_default():
    a = np.array([-1.5, 2.0], np.float32)
    rep = B.prepare(_model([helper.make_node("Abs", ["a"], ["b"])], [_vi("a", TensorProto.FLOAT, [2])],
                           [_vi("b", TensorProto.FLOAT, [2])]))
    assert rep.device == "cpu"
    np.testing.assert_array_equal(rep.run([a])[0], np.abs(a))


@pytest.fixture
def static_reshape(monkeypatch):
    """An op of a test domain whose converter needs its second input at import time
    (as Reshape's does), so the test does not depend on which converters exist."""
    from symfuse.frontend import api as F
    from symfuse.onnx import registry

    def convert(n):
        shape = n.ints(1)
        return F.reshape(n.value(0), [s if s != -1 else n.value(0).size // -np.prod(shape) for s in shape])
    registry.lookup("", "Relu")                                       # load the real table first
    monkeypatch.setitem(registry.CONVERTERS, ("test.symfuse", "StaticReshape"),
                        registry.Converter("StaticReshape", convert, 1, "test.symfuse"))
    return "test.symfuse"


def test_an_input_a_converter_needs_is_bound_from_run_values(static_reshape):
    g = helper.make_graph([helper.make_node("StaticReshape", ["x", "shape"], ["y"], domain=static_reshape)], "g",
                          [_vi("x", TensorProto.FLOAT, [2, 6]), _vi("shape", TensorProto.INT64, [2])],
                          [_vi("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(static_reshape, 1)])
    rep = B.prepare(m, symfuse_device="interp")
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(rep.run([x, np.array([3, 4])])[0], x.reshape(3, 4))
    assert rep.constant_names == ["shape"]
    np.testing.assert_array_equal(rep.run([x, np.array([4, -1])])[0], x.reshape(4, 3))
    assert len(rep.compiled) == 2                                     # one compile per shape value
    np.testing.assert_array_equal(rep.run([x + 1, np.array([3, 4])])[0], (x + 1).reshape(3, 4))
    assert len(rep.compiled) == 2                                     # a value seen before: no compile


def test_symbolic_sizes_come_from_the_arrays():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", TensorProto.FLOAT, ["N", 3])],
               [_vi("y", TensorProto.FLOAT, ["N", 3])])
    rep = B.prepare(m, symfuse_device="interp")
    for n in (1, 4):
        x = np.linspace(-1, 1, 3 * n, dtype=np.float32).reshape(n, 3)
        np.testing.assert_array_equal(rep.run([x])[0], np.maximum(x, 0))
    assert len(rep.compiled) == 2


def test_an_output_dtype_symfuse_lacks_is_refused_by_name():
    m = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)], [_vi("x", TensorProto.FLOAT, [2])],
               [_vi("y", TensorProto.STRING, [2])])
    with pytest.raises(OnnxUnsupported) as e:
        B.prepare(m, symfuse_device="interp")
    assert e.value.reason == "dtype string"


def test_devices():
    assert B.supports_device("CPU")
    assert B.backend_for("interp").supports_device("CUDA")           # every ONNX device on interp
    assert not B.backend_for("no-such-device").supports_device("CPU")
    assert not B.supports_device("TPU")
    rep = B.backend_for("interp").prepare(_model([helper.make_node("Neg", ["a"], ["b"])],
                                                 [_vi("a", TensorProto.FLOAT, [1])],
                                                 [_vi("b", TensorProto.FLOAT, [1])]))
    assert rep.device == "interp"
    with pytest.raises(OnnxError, match="unknown keyword 'colour'"):
        B.prepare(rep.model, colour="red")


def test_onnx_backend_test_runner_drives_the_backend():
    import onnx.backend.test
    runner = onnx.backend.test.BackendTest(B.backend_for("interp"), __name__)
    runner.include(r"^test_(relu|abs|sub_bcast)_cpu$")
    result = unittest.TextTestRunner(verbosity=0, stream=open(os.devnull, "w")).run(runner.test_suite)
    ran = result.testsRun - len(result.skipped)                       # the others are skipped by include()
    assert ran == 3 and result.wasSuccessful(), result.failures + result.errors


# ----------------------------------------------------------------------------- comparing and classifying
def test_compare_checks_shape_dtype_values_and_nans():
    x = np.array([1.0, np.nan, 3.0], np.float32)
    assert C.compare([x], [x.copy()], 1e-3, 1e-7) is None
    assert C.compare([x], [x * (1 + 1e-4)], 1e-3, 1e-7) is None
    assert "shape (1, 3)" in C.compare([x], [x.reshape(1, 3)], 1e-3, 1e-7)
    assert "dtype float64" in C.compare([x], [x.astype(np.float64)], 1e-3, 1e-7)
    assert "NaN positions" in C.compare([x], [np.array([1, 2, 3], np.float32)], 1e-3, 1e-7)
    msg = C.compare([x], [np.array([1, np.nan, 3.5], np.float32)], 1e-3, 1e-7)
    assert "1 of 3 elements differ" in msg and "max abs error 0.5" in msg
    assert "2 outputs, expected 1" in C.compare([x], [x, x], 1e-3, 1e-7)
    assert C.compare([np.array([True])], [np.array([False])], 0, 0).startswith("output 0: 1 of 1")


def _case(name, model, inputs, outputs):
    return SimpleNamespace(name=name, model=model, data_sets=[(inputs, outputs)], rtol=1e-3, atol=1e-7)


def _relu():
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", TensorProto.FLOAT, [2])],
                  [_vi("y", TensorProto.FLOAT, [2])])


def test_run_case_statuses(monkeypatch):
    x = np.array([-1, 2], np.float32)
    assert C.run_case(_case("ok", _relu(), [x], [np.maximum(x, 0)]), "interp").status == "passed"
    wrong = C.run_case(_case("wrong", _relu(), [x], [x]), "interp")
    assert wrong.status == "failed" and "max abs error 1" in wrong.reason
    unknown = _model([helper.make_node("NoSuchOp", ["x"], ["y"])], [_vi("x", TensorProto.FLOAT, [2])],
                     [_vi("y", TensorProto.FLOAT, [2])])
    assert vars(C.run_case(_case("u", unknown, [x], [x]), "interp"))["reason"] == "op NoSuchOp"

    def crash(*a, **k):
        return {}["missing"]
    monkeypatch.setattr(B.SymfuseBackend, "prepare", classmethod(crash))
    out = C.run_case(_case("crash", _relu(), [x], [x]), "interp")
    assert out.status == "errored" and out.reason.startswith("KeyError: 'missing'")
    assert "test_onnx_conformance.py" not in out.reason                    # names symfuse frames only

    def not_implemented(*a, **k):
        raise NotImplementedError("not by symfuse")
    monkeypatch.setattr(B.SymfuseBackend, "prepare", classmethod(not_implemented))
    assert C.run_case(_case("ni", _relu(), [x], [x]), "interp").status == "errored"   # only symfuse names gaps


def _misbehave(case, device):                 # runs in the workers (imported there by name)
    if case.name == "hang":
        time.sleep(60)
    if case.name == "die":
        os.kill(os.getpid(), signal.SIGSEGV)
    return C.run_case(case, device)


def test_a_hang_or_a_dying_worker_does_not_stop_the_run():
    x = np.array([-1, 2], np.float32)
    cases = [_case(n, _relu(), [x], [np.maximum(x, 0)]) for n in ("a", "hang", "b", "die", "c")]
    t0 = time.monotonic()
    # the per-case timeout also covers a fresh worker's start (importing symfuse): on a loaded
    # 2-core machine that alone can take seconds
    res = C.run_cases(cases, "interp", jobs=2, timeout=15, tasks_per_worker=2, runner=_misbehave)
    assert time.monotonic() - t0 < 120
    assert {n: o.status for n, o in res.items()} == {"a": "passed", "hang": "errored", "b": "passed",
                                                      "die": "errored", "c": "passed"}
    assert res["hang"].reason.startswith("timeout") and "SIGSEGV" in res["die"].reason


def test_report_lists_failures_and_groups_unsupported():
    cases = {"test_a": {"status": "passed", "reason": "ok", "op": "Relu"},
             "test_b": {"status": "failed", "reason": "output 0: shape (2,), expected (3,)", "op": "Pad"},
             "test_c": {"status": "unsupported", "reason": "dtype uint8", "op": "Add"},
             "test_d": {"status": "unsupported", "reason": "dtype uint8", "op": "Sub"}}
    dev = {"passed": 1, "failed": 1, "errored": 0, "unsupported": 2, "total": 4, "wall_s": 1.0, "jobs": 2,
           "sample": None, "cases": cases}
    md = C.markdown({"meta": {"onnx_version": "x", "suite_cases": 4}, "devices": {"interp": dev}})
    assert "| interp | 4 | 1 | 1 | 0 | 2 | 25.0 |" in md
    assert "| `test_b` | Pad | interp | failed | output 0: shape (2,), expected (3,) |" in md
    assert "| dtype uint8 | 2 |" in md
    worse = dict(cases, test_a={"status": "errored", "reason": "KeyError: 1", "op": "Relu"})
    assert C.changes(dev, {"cases": worse}) == ["test_a: passed -> errored: KeyError: 1"]


# ----------------------------------------------------------------------------- the whole suite
def _cache_dir():
    from symfuse.runtime.cache import DiskCache
    return DiskCache().root                    # the run's cache (tests/conftest.py): shared by both devices


@pytest.mark.parametrize("device", ["interp", "cpu"])
def test_suite_passes_no_fewer_cases_than_committed(device):
    assert os.path.exists(COMMITTED), "run python bench/onnx_conformance.py to record the suite's results"
    with open(COMMITTED) as f:
        committed = json.load(f)["devices"][device]
    run = C.run_suite([device], sample={}, jobs=2, cache_dir=_cache_dir())
    got = run["devices"][device]
    assert got["total"] == committed["total"] == run["meta"]["suite_cases"]
    errored = [f"{n}: {c['reason']}" for n, c in got["cases"].items() if c["status"] == "errored"]
    changed = C.changes(committed, got)
    assert not errored, f"{len(errored)} case(s) crashed on {device}:\n" + "\n".join(errored)
    assert got["passed"] >= committed["passed"], (
        f"{device}: {got['passed']} cases pass, {committed['passed']} did:\n" + "\n".join(changed))
