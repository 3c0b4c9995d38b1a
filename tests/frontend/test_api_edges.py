"""API edges: the "float" dtype, numpy ufuncs on symbolic tensors, the label
contract of one_hot / softmax_cross_entropy, and fit with a loss-only step."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.ir.core import Value
from symfuse.nn import train


def test_float_and_int_names_follow_the_framework_convention():
    assert sf.tensor("a", (2,), "float").dtype.name == "float32"
    assert sf.tensor("b", (2,), float).dtype.name == "float32"
    assert sf.tensor("c", (2,), "int").dtype.name == "int32"
    assert sf.tensor("d", (2,), int).dtype.name == "int32"
    assert sf.tensor("e", (2,), "double").dtype.name == "float64"
    assert sf.tensor("f", (2,), np.float64).dtype.name == "float64"
    assert sf.cast(sf.tensor("g", (2,), "int32"), "float").dtype.name == "float32"


@pytest.mark.parametrize("ufunc,ref", [(np.exp, np.exp), (np.log, np.log), (np.tanh, np.tanh),
                                       (np.sqrt, np.sqrt), (np.abs, np.abs), (np.negative, np.negative)])
def test_unary_ufuncs_build_symfuse_ops(ufunc, ref):
    x = sf.tensor("x", (3,))
    y = ufunc(x)
    assert isinstance(y, Value) and y.dtype.name == "float32"
    xv = np.array([0.5, 1.0, 2.0], np.float32)
    np.testing.assert_allclose(sf.function([x], y, device="interp")(xv), ref(xv), rtol=1e-6)


def test_binary_ufuncs_and_ndarray_operators():
    x = sf.tensor("x", (3,))
    c = np.array([1.0, -2.0, 3.0], np.float32)
    outs = [np.add(x, c), np.multiply(c, x), np.maximum(x, 0.0), np.subtract(c, x), c - x, c * x,
            np.float32(2.0) * x, np.minimum(c, x), np.power(x, 2.0), np.divide(c, x), np.less(c, x)]
    assert all(isinstance(o, Value) for o in outs)
    xv = np.array([0.5, -1.0, 4.0], np.float32)
    got = sf.function([x], outs, device="interp")(xv)
    want = [xv + c, c * xv, np.maximum(xv, 0), c - xv, c - xv, c * xv, 2 * xv, np.minimum(c, xv), xv ** 2,
            c / xv, c < xv]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_ufuncs_without_an_op_name_what_to_write():
    x = sf.tensor("x", (3,))
    with pytest.raises(TypeError, match=r"numpy\.tan .*sf\.sin\(x\) / sf\.cos\(x\)"):
        np.tan(x)
    with pytest.raises(TypeError, match=r"numpy\.arctan2 has no symfuse op.*custom_ops"):
        np.arctan2(x, x)
    with pytest.raises(TypeError, match=r"numpy\.add\.reduce .*x\.sum\(\)"):
        np.add.reduce(x)
    with pytest.raises(TypeError, match=r"numpy\.exp: keyword\(s\) out .*sf\.exp"):
        np.exp(x, out=np.empty(3, np.float32))
    with pytest.raises(TypeError, match="test_api_edges.py"):
        np.tan(x)


def test_out_of_range_labels_give_zero_rows_as_documented():
    """The contract (README "Conventions", sf.one_hot's doc): no range check, a
    label outside [0, depth) is an all-zero row and a zero loss."""
    z, y = sf.tensor("z", (4, 10)), sf.tensor("y", (4,), "int32")
    f = sf.function([z, y], [sf.one_hot(y, 10), sf.softmax_cross_entropy(z, y)], device="cpu")
    hot, loss = f(np.zeros((4, 10), np.float32), np.array([10, -1, 3, 9], np.int32))
    assert hot[:2].sum() == 0 and hot[2, 3] == 1 and hot[3, 9] == 1
    np.testing.assert_allclose(loss, [0.0, 0.0, np.log(10), np.log(10)], rtol=1e-6)
    assert "not range-checked" in sf.one_hot.__doc__ and "range-checked" in sf.softmax_cross_entropy.__doc__


def _step(with_accuracy):
    rng = np.random.default_rng(0)
    W = sf.shared(rng.normal(0, 0.1, (4, 3)).astype(np.float32), name="W")
    x, y = sf.tensor("x", (8, 4)), sf.tensor("y", (8,), "int32")
    logits = x @ W
    loss = sf.softmax_cross_entropy(logits, y).mean()
    (g,) = sf.grad(loss, [W])
    acc = (sf.argmax(logits, axis=1) == y).astype("float32").mean()
    return sf.function([x, y], [loss, acc] if with_accuracy else loss, updates=[(W, W - 0.1 * g)],
                       device="interp")


@pytest.mark.parametrize("with_accuracy", [False, True])
def test_fit_shows_accuracy_only_when_the_step_returns_it(with_accuracy):
    rng = np.random.default_rng(1)
    xv, yv = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 3, 32).astype(np.int32)
    lines = []
    hist = train.fit(_step(with_accuracy), (xv, yv), epochs=2, progress=False, log=lambda m: lines.append(str(m)))
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(epochs) == 2 and all("loss" in ln for ln in epochs)
    assert all(("accuracy" in ln) == with_accuracy for ln in epochs)
    assert all(("accuracy" in rec) == with_accuracy for rec in hist)
    assert all(np.isfinite(rec["loss"]) and rec["loss"] > 0 for rec in hist)
