"""Bad ONNX input is refused with an error naming the file, node, op or input --
never a traceback from inside, never a read outside the model's directory."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import symfuse as sf  # noqa: E402
from symfuse.onnx import OnnxError, OnnxUnsupported  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _relu_model(opset=17, shape=(2, 3)):
    return _model([helper.make_node("Relu", ["x"], ["y"], name="act")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], opset=opset)


def test_truncated_file_names_the_file(tmp_path):
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])], [w])
    data = m.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxError, match=r"cut\.onnx: not a valid ONNX model .*truncated"):
        sf.onnx.load(str(path))


@pytest.mark.parametrize("data", [b"", b"\x00\x01\x02garbage\xff\xff\xff\xff", b"not an onnx file at all"])
def test_malformed_bytes(data):
    with pytest.raises(OnnxError, match=r"<onnx bytes>: (the file is empty|not a valid ONNX model)"):
        sf.onnx.load(data)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(OnnxError, match="no such file"):
        sf.onnx.load(str(tmp_path / "absent.onnx"))
    with pytest.raises(OnnxError, match="is a directory"):
        sf.onnx.load(str(tmp_path))


def test_unknown_op_names_node_and_op():
    m = _model([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("FancyOp", ["a"], ["y"], name="mystery")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(OnnxUnsupported, match=r"node 1 'mystery' \(FancyOp\): op FancyOp is not supported") as e:
        sf.onnx.load(m.SerializeToString())
    assert e.value.op_type == "FancyOp"


def test_custom_domain_op_is_named():
    node = helper.make_node("Relu", ["x"], ["y"], domain="com.example")
    m = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(OnnxUnsupported, match="op Relu of domain 'com.example' is not supported"):
        sf.onnx.load(m.SerializeToString())


def test_opset_newer_than_known_is_refused():
    with pytest.raises(OnnxUnsupported, match="opset 10000 is newer than this onnx package knows"):
        sf.onnx.load(_relu_model(10_000).SerializeToString())


def test_old_opset_is_upgraded_or_refused_by_name():
    m = sf.onnx.load(_relu_model(9).SerializeToString())
    assert m.metadata["metadata_props"]["symfuse.upgraded_from_opset"] == "9" and m.opset == 13
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(m.run(x)[0], np.maximum(x, 0))
    old = _model([helper.make_node("FancyOp", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], opset=9)
    with pytest.raises(OnnxUnsupported, match="opset 9 is older than symfuse converts .* could not upgrade"):
        sf.onnx.load(old.SerializeToString())


def test_shape_that_disagrees_with_the_model():
    with pytest.raises(OnnxError, match=r"input 'x' has size 3 on axis 1 in the model, shapes= gives \(2, 4\)"):
        sf.onnx.load(_relu_model().SerializeToString(), shapes={"x": (2, 4)})
    with pytest.raises(OnnxError, match=r"input 'x' has rank 2 in the model"):
        sf.onnx.load(_relu_model().SerializeToString(), shapes={"x": (6,)})
    with pytest.raises(OnnxError, match=r"names 'z', which the model's inputs \('x'\) do not include"):
        sf.onnx.load(_relu_model().SerializeToString(), shapes={"z": (2, 3)})


def test_symbolic_size_needs_a_shape():
    m = _relu_model(shape=("batch", 3))
    with pytest.raises(OnnxError, match=r"input 'x' has a symbolic size 'batch' on axis 0; give its shape"):
        sf.onnx.load(m.SerializeToString())
    f = sf.onnx.load(m.SerializeToString(), shapes={"x": (5, 3)}).function("interp")
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(f(x)[0], np.maximum(x, 0))


def test_run_time_shape_mismatch_names_the_input():
    f = sf.onnx.load(_relu_model().SerializeToString()).function("interp")
    with pytest.raises(sf.InputError, match="x"):
        f(np.zeros((3, 3), np.float32))


def _external_model(tmp_path, location, offset=0, length=None):
    t = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(24 if length is None else length)}
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [t])
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    path = d / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path)


def test_external_data_inside_the_directory_is_read(tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    (tmp_path / "model" / "weights.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    m = sf.onnx.load(path)
    np.testing.assert_array_equal(m.params["w"].get_value(), np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("location", ["../../etc/passwd", "../secret.bin", "sub/../../secret.bin"])
def test_external_data_leaving_the_directory_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 24)
    path = _external_model(tmp_path, location)
    with pytest.raises(OnnxError, match=r"tensor 'w': external data location .* leaves the model's directory"):
        sf.onnx.load(path)


def test_external_data_absolute_path_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 24)
    path = _external_model(tmp_path, str(secret))
    with pytest.raises(OnnxError, match="must be a relative path inside the model's directory"):
        sf.onnx.load(path)


def test_external_data_symlink_out_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 24)
    path = _external_model(tmp_path, "link.bin")
    os.symlink(secret, tmp_path / "model" / "link.bin")
    with pytest.raises(OnnxError, match="leaves the model's directory .*symbolic link"):
        sf.onnx.load(path)


def test_external_data_out_of_bounds_and_from_bytes(tmp_path):
    path = _external_model(tmp_path, "weights.bin", offset=16)
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x00" * 24)
    with pytest.raises(OnnxError, match=r"holds bytes 16\.\.40 of a 24-byte file"):
        sf.onnx.load(path)
    with open(path, "rb") as f:
        data = f.read()
    with pytest.raises(OnnxError, match="a model loaded from bytes cannot name safely"):
        sf.onnx.load(data)


def test_undefined_input_names_the_node():
    m = _model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="adder")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(OnnxError, match=r"node 0 'adder' \(Add\): input 1 'nowhere' is not defined"):
        sf.onnx.load(m.SerializeToString())


def test_unsupported_input_dtype_is_named():
    m = _model([helper.make_node("Relu", ["x"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2])],
               [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2])])
    with pytest.raises(OnnxUnsupported, match="input 'x': dtype bfloat16 is not supported"):
        sf.onnx.load(m.SerializeToString())


def test_not_a_model_argument():
    with pytest.raises(OnnxError, match="a path, bytes or an onnx.ModelProto, got int"):
        sf.onnx.load(42)
