"""sf.onnx.save of a function with a run-time batch: the size is the file's symbolic
dimension (dim_param), so onnxruntime, an independent implementation, runs the file
at any batch and agrees with symfuse; a number made from the size is refused."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.nn import zoo

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name,kw,shape", [("mlp", dict(dims=(16, 8, 4), input_shape=(16,)), (16,)),
                                           ("lenet", {}, (1, 28, 28))])
def test_saved_run_time_batch_runs_in_onnxruntime_at_any_batch(name, kw, shape, tmp_path):
    f = zoo.get(name, batch="batch", seed=0, **kw).predict_function("cpu")
    path = str(tmp_path / "m.onnx")
    sf.onnx.save(f, path)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(shape)
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b in (1, 3, 17):
        x = np.random.default_rng(b).uniform(0, 1, (b, *shape)).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {s.get_inputs()[0].name: x})[0], f(x), rtol=1e-5, atol=1e-6)


def test_a_number_made_from_the_size_is_refused(tmp_path):
    x = sf.tensor("x", ("batch", 3))
    f = sf.function([x], x / x.shape[0], device="cpu")
    with pytest.raises(sf.onnx.OnnxError, match="run-time size 'batch'"):
        sf.onnx.save(f, str(tmp_path / "m.onnx"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # torch's TorchScript-based exporter
def test_loaded_with_a_named_batch_serves_any_batch(tmp_path):
    """sf.onnx.load(..., shapes={"x": ("batch", ...)}) compiles once for every batch:
    the file symfuse saved, and a PyTorch export with a dynamic batch, against
    onnxruntime running the same file."""
    torch = pytest.importorskip("torch")
    f = zoo.get("lenet", batch="batch", seed=0).predict_function("cpu")
    ours = str(tmp_path / "lenet.onnx")
    sf.onnx.save(f, ours)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))
    theirs = str(tmp_path / "torch.onnx")
    torch.manual_seed(0)
    torch.onnx.export(Net().eval(), (torch.rand(2, 1, 8, 8),), theirs, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}}, dynamo=False)
    for path, shape in ((ours, (1, 28, 28)), (theirs, (1, 8, 8))):
        g = sf.onnx.load(path, shapes={"x": ("n", *shape)}).function("cpu")
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for b in (1, 6):
            x = np.random.default_rng(b).uniform(0, 1, (b, *shape)).astype(np.float32)
            np.testing.assert_allclose(g(x)[0], s.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6, err_msg=path)


def test_a_shape_read_from_a_run_time_batch_is_refused(tmp_path):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Shape", ["x"], ["s"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                          [helper.make_tensor_value_info("s", TensorProto.INT64, [2])])
    path = str(tmp_path / "shape.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(sf.onnx.OnnxError, match="chosen at run time .*give 'n' a number"):
        sf.onnx.load(path, shapes={"x": ("n", 3)})
    assert sf.onnx.load(path, shapes={"x": (4, 3)}).function("interp")(np.zeros((4, 3), np.float32))[0].tolist() == [4, 3]
