"""BitwiseAnd / Or / Xor / Not and BitShift: the onnx node suite's cases on the
interpreter, the C backend and the CUDA emulator, a hand-made BitShift of every
integer dtype with shifts past the width, and sf.onnx.save of symfuse's bit ops,
run by onnxruntime where it has the op (not BitShift of signed integers, opset 28)
and read back by sf.onnx.load."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.onnx import OnnxError, OnnxUnsupported

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from symfuse.onnx import conformance as C  # noqa: E402

# the suite's cases of an element type symfuse does not have
NO_DTYPE = {"test_bitshift_left_uint16": "dtype uint16", "test_bitshift_right_uint16": "dtype uint16",
            "test_bitwise_not_3d": "dtype uint16"}


def _suite():
    return [c for c in C.collect_cases() if c.name.startswith(("test_bitwise_", "test_bitshift_"))]


CASES = _suite()


def test_the_suite_has_the_cases():
    names = {c.name for c in CASES}
    assert len(names) >= 30 and "test_bitwise_and_i32_2d" in names and "test_bitshift_right_int8" in names
    assert set(NO_DTYPE) <= names


@pytest.mark.parametrize("device", ["interp", "cpu", "cuda-emu"])
def test_node_suite_cases(device):
    problems = []
    for case in CASES:
        out = C.run_case(case, device)
        want = ("unsupported", NO_DTYPE[case.name]) if case.name in NO_DTYPE else ("passed", "ok")
        if (out.status, out.reason) != want:
            problems.append(f"{case.name}: {out.status}: {out.reason}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- import
def _model(node, dtype_code, shape, opset=18):
    ins = [helper.make_tensor_value_info(n, dtype_code, shape) for n in node.input]
    outs = [helper.make_tensor_value_info("z", dtype_code, shape)]
    return helper.make_model(helper.make_graph([node], "g", ins, outs), opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "uint32", "int64", "uint64"])
def test_bitshift_of_every_dtype_and_shift_amount(dtype):
    info = np.iinfo(dtype)
    code = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    amounts = list(range(info.bits)) + [info.bits, info.bits + 3] + ([-1, -5] if info.min < 0 else [])
    s = np.array(amounts, dtype)
    x = np.resize(np.array([info.max, info.min, 1, 6, info.max // 3], dtype), s.shape)
    if info.min < 0:
        x[1::4] = -np.abs(x[1::4] // 2) - 1
    for direction, ref in (("LEFT", np.left_shift), ("RIGHT", np.right_shift)):
        m = _model(helper.make_node("BitShift", ["x", "s"], ["z"], direction=direction), code, list(s.shape))
        loaded = sf.onnx.load(m)
        for device in ("interp", "cpu"):
            got = loaded.run(x, s, device=device)[0]
            np.testing.assert_array_equal(got, ref(x, s), err_msg=f"{direction} {device}")


def test_bitshift_direction_must_be_left_or_right():
    m = _model(helper.make_node("BitShift", ["x", "s"], ["z"], direction="UP"), TensorProto.UINT8, [2])
    with pytest.raises(OnnxError, match="'LEFT' or 'RIGHT', got 'UP'"):
        sf.onnx.load(m)


# ----------------------------------------------------------------------------- export
def _run_ort(model, arrays):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: a for i, a in zip(sess.get_inputs(), arrays)})


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "uint32", "int64", "uint64"])
def test_save_bitwise_ops_runs_on_onnxruntime_and_loads_back(dtype, rng):
    info = np.iinfo(dtype)
    a, b = (sf.tensor(n, (3, 4), dtype) for n in "ab")
    c = sf.tensor("c", (4,), dtype)
    outs = [sf.bitwise_and(a, b), sf.bitwise_or(a, c), sf.bitwise_xor(a, b), sf.bitwise_not(a)]
    arrays = [rng.integers(info.min, info.max, s, dtype=dtype, endpoint=True) for s in ((3, 4), (3, 4), (4,))]
    model = sf.onnx.save(([a, b, c], outs), opset=18)
    assert [n.op_type for n in model.graph.node] == ["BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot"]
    want = [np.bitwise_and(arrays[0], arrays[1]), np.bitwise_or(arrays[0], arrays[2]),
            np.bitwise_xor(arrays[0], arrays[1]), np.invert(arrays[0])]
    for got in (_run_ort(model, arrays), sf.onnx.load(model).run(*arrays, device="cpu")):
        for g, w in zip(got, want):
            assert np.asarray(g).dtype == w.dtype
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", ["uint8", "uint32", "uint64", "int8", "int32", "int64"])
def test_save_shifts(dtype):
    info = np.iinfo(dtype)
    x, s = sf.tensor("x", (info.bits,), dtype), sf.tensor("s", (info.bits,), dtype)
    arrays = [np.resize(np.array([info.max, info.min + 1, 3, 1], dtype), info.bits), np.arange(info.bits, dtype=dtype)]
    want = [np.left_shift(*arrays), np.right_shift(*arrays)]
    signed = info.min < 0
    if signed:
        with pytest.raises(OnnxUnsupported, match="from opset 28"):
            sf.onnx.save(([x, s], [x << s]), opset=18)
    model = sf.onnx.save(([x, s], [x << s, x >> s]), opset=28 if signed else 18)
    nodes = [(n.op_type, helper.get_attribute_value(n.attribute[0])) for n in model.graph.node]
    assert nodes == [("BitShift", b"LEFT"), ("BitShift", b"RIGHT")]
    runs = [sf.onnx.load(model).run(*arrays, device="interp")]
    if not signed:                     # onnxruntime's BitShift takes unsigned integers only
        runs.append(_run_ort(model, arrays))
    for got in runs:
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_bitwise_export_needs_opset_18():
    a = sf.tensor("a", (2,), "int32")
    with pytest.raises(OnnxUnsupported, match="BitwiseAnd from opset 18"):
        sf.onnx.save(([a], [a & 3]), opset=17)
    u = sf.tensor("u", (2,), "uint8")
    model = sf.onnx.save(([u], [u << 1]), opset=17)      # BitShift is older
    assert model.graph.node[-1].op_type == "BitShift"
