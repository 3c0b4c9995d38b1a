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
