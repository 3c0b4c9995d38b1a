"""Models defined in PyTorch, exported by ``torch.onnx.export`` here with random
weights, imported into symfuse: the outputs equal onnxruntime's (the outside
reference) on cpu and cuda-emu."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import symfuse as sf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import MODELS, export  # noqa: E402


def _reference(data, x):
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_model_matches_onnxruntime(name, device):
    data, x = export(name)
    want = _reference(data, x)
    m = sf.onnx.load(data)
    assert m.input_names == ["x"] and m.output_names == ["y"]
    got = m.function(device)(x)[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_imported_parameters_are_trainable_shared_variables():
    data, x = export("mlp")
    m = sf.onnx.load(data)
    assert m.params and all(isinstance(p, sf.SharedVariable) for p in m.params.values())
    y = sf.tensor("label", (x.shape[0],), "int32")
    loss = sf.softmax_cross_entropy(m.outputs[0], y).mean()
    params = list(m.params.values())
    step = sf.function(m.inputs + [y], loss, device="cpu",
                       updates=[(p, p - 0.1 * g) for p, g in zip(params, sf.grad(loss, params))])
    labels = np.arange(x.shape[0], dtype=np.int32) % 10
    first = float(step(x, labels))
    for _ in range(20):
        last = float(step(x, labels))
    assert last < 0.5 * first
