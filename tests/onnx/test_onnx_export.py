"""sf.onnx.save: every exported model passes onnx's checker with strict shape
inference, and onnxruntime computes what symfuse computes (the zoo models, a
training step's forward, one small graph per op, loops and branches); the model
read back with sf.onnx.load computes it too; ops with no ONNX equivalent are
refused by name and line."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.nn import zoo
from symfuse.onnx import OnnxError, OnnxUnsupported

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-5, 1e-6


def run_ort(model, arrays):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(a) for i, a in zip(sess.get_inputs(), arrays)}
    return sess.run(None, feeds)


def assert_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        if w.dtype.kind == "f":
            # sums of products (matmul, conv) cancel: their error is relative to the largest term
            scale = float(np.max(np.abs(w), initial=1.0))
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL * scale)
        else:
            np.testing.assert_array_equal(g, w)


def roundtrip(model, arrays, want):
    """sf.onnx.load of the written model runs to the same result; skipped only while
    the importer has no converter for an op the model uses."""
    try:
        got = sf.onnx.load(model).run(*arrays)
    except OnnxUnsupported as e:
        if e.reason.startswith("op "):
            pytest.skip(f"the importer lacks a converter: {e.reason}")
        raise
    assert_close([np.asarray(g) for g in got], want)


def check(model, arrays, want, rt=True):
    onnx.checker.check_model(model, full_check=True)
    assert_close(run_ort(model, arrays), want)
    if rt:
        roundtrip(model, arrays, want)


def export_values(inputs, outputs, arrays, **kw):
    """(model of the graph as built, symfuse's results on the interpreter)."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    want = sf.function(inputs, list(outputs), device="interp")(*arrays)
    return sf.onnx.save((inputs, outputs), **kw), want


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["mlp", "lenet", "seqdigits"])
def test_zoo_inference_graphs(name):
    m = zoo.get(name, batch=8)
    f = m.predict_function("interp")
    x = m.example_batch()[0]
    model = sf.onnx.save(f)
    assert [i.name for i in model.graph.input] == ["x"]
    assert sorted(t.name for t in model.graph.initializer) == sorted(p.name for p in m.params)
    check(model, [x], [f(x)])


def test_seqdigits_exports_its_lstm_as_a_loop():
    m = zoo.get("seqdigits", batch=4)
    model = sf.onnx.save(m.predict_function("interp"))
    assert "Loop" in {n.op_type for n in model.graph.node}


def test_cpu_function_exports_its_portable_graph():
    m = zoo.get("mlp", batch=4, dims=(20, 16, 3))
    f = m.predict_function("cpu")
    x = m.example_batch()[0]
    model = sf.onnx.save(f)
    check(model, [x], [f(x)])


@pytest.mark.parametrize("name,kw", [("mlp", {"dims": (30, 16, 5)}), ("lenet", {"channels": (4, 6), "hidden": 20})])
def test_training_step_forward_outputs_only(name, kw, tmp_path):
    m = zoo.get(name, batch=8, **kw)
    step = m.train_function("interp")
    x, y = m.example_batch()
    model = sf.onnx.save(step, tmp_path / "step.onnx", output_names=["loss", "accuracy"])
    assert [o.name for o in model.graph.output] == ["loss", "accuracy"]
    assert {t.name for t in model.graph.initializer} == {p.name for p in m.params}    # no optimiser state
    # the model holds the weights from before the step, from which the step computes its outputs
    want = step(x, y)
    onnx.checker.check_model(model, full_check=True)
    assert_close(run_ort(model, [x, y]), want)
    roundtrip(model, [x, y], want)


def test_metadata_and_file(tmp_path):
    x = sf.tensor("x", (2, 3))
    w = sf.shared(np.ones((3, 4), np.float32), name="w")
    f = sf.function([x], sf.relu(x @ w), device="interp")
    path = tmp_path / "m.onnx"
    model = sf.onnx.save(f, str(path))
    back = onnx.load(str(path))
    assert back == model
    assert model.producer_name == "symfuse" and model.producer_version == sf.__version__
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert [o.name for o in model.graph.output] == ["output"]


def test_onnx_model_round_trip():
    from onnx import TensorProto, helper, numpy_helper
    b = np.arange(4, dtype=np.float32) - 1.5
    graph = helper.make_graph(
        [helper.make_node("Add", ["inp", "bias"], ["s"]), helper.make_node("Relu", ["s"], ["out"])], "g",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(b, "bias")])
    m = sf.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    model = sf.onnx.save(m)
    assert [i.name for i in model.graph.input] == ["inp"]
    assert [o.name for o in model.graph.output] == ["out"]
    assert [t.name for t in model.graph.initializer] == ["bias"]
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    check(model, [x], [np.maximum(x + b, 0)])


# --------------------------------------------------------------------------- one graph per op
def _pos(rng, shape):
    return rng.uniform(0.2, 2.0, shape).astype(np.float32)


def _any(rng, shape):
    return rng.uniform(-2.0, 2.0, shape).astype(np.float32)


UNARY = ["neg", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "abs", "sign", "reciprocal", "tanh", "sigmoid",
         "relu", "softplus", "erf", "sin", "cos", "floor", "ceil", "round"]
POSITIVE = {"log", "log1p", "sqrt", "rsqrt"}


@pytest.mark.parametrize("name", UNARY)
def test_unary(name, rng):
    x = sf.tensor("x", (3, 5))
    a = (_pos if name in POSITIVE else _any)(rng, (3, 5))
    if name == "round":
        a[0, :3] = [0.5, 1.5, -2.5]          # ties to even, as numpy
    model, want = export_values([x], sf.apply(name, [x]), [a])
    check(model, [a], want)


BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne"]


@pytest.mark.parametrize("name", BINARY)
def test_binary_broadcasting(name, rng):
    x, y = sf.tensor("x", (3, 4)), sf.tensor("y", (4,))
    a = np.round(_pos(rng, (3, 4)) * 2) / 2         # halves: comparisons see ties
    b = np.round(_pos(rng, (4,)) * 2) / 2
    model, want = export_values([x, y], sf.apply(name, [x, y]), [a, b])
    check(model, [a, b], want)


@pytest.mark.parametrize("name", ["logical_and", "logical_or"])
def test_logical(name, rng):
    x, y = sf.tensor("x", (2, 3), "bool"), sf.tensor("y", (2, 3), "bool")
    a, b = rng.random((2, 3)) > 0.5, rng.random((2, 3)) > 0.5
    model, want = export_values([x, y], [sf.apply(name, [x, y]), sf.logical_not(x)], [a, b])
    check(model, [a, b], want)


def test_integer_arithmetic(rng):
    x, y = sf.tensor("x", (3, 4), "int32"), sf.tensor("y", (3, 4), "int32")
    a, b = rng.integers(-9, 9, (3, 4)).astype(np.int32), rng.integers(-9, 9, (3, 4)).astype(np.int32)
    model, want = export_values([x, y], [x + y, x * y, sf.maximum(x, y), sf.sum(x, axis=1)], [a, b])
    check(model, [a, b], want)


def test_where_cast(rng):
    x = sf.tensor("x", (3, 4))
    a = _any(rng, (3, 4))
    model, want = export_values([x], [sf.where(x > 0, x, x * 0.5), sf.cast(x * 3, "int32"), sf.cast(x, "float64"),
                                      sf.cast(x > 0, "float32")], [a])
    check(model, [a], want)


@pytest.mark.parametrize("opset", [17, 18])
def test_reductions(opset, rng):
    x = sf.tensor("x", (2, 3, 4))
    a = _pos(rng, (2, 3, 4))
    outs = [sf.sum(x, axis=(0, 2)), sf.sum(x, keepdims=True), sf.prod(x, axis=1), sf.max(x, axis=-1, keepdims=True),
            sf.min(x, axis=0), sf.logsumexp(x, axis=1), sf.logsumexp(x, axis=2, keepdims=True),
            sf.argmax(x, axis=1), sf.argmin(x), sf.argmax(x, keepdims=True)]
    model, want = export_values([x], outs, [a], opset=opset)
    assert model.opset_import[0].version == opset
    check(model, [a], want)


def test_reduction_of_a_scalar(rng):
    x = sf.tensor("x", ())
    model, want = export_values([x], [sf.sum(x), sf.max(x)], [np.float32(2.5)])
    check(model, [np.float32(2.5)], want)


def test_shape_ops(rng):
    x = sf.tensor("x", (2, 3, 4))
    a = _any(rng, (2, 3, 4))
    outs = [sf.reshape(x, (6, 4)), sf.transpose(x, (2, 0, 1)), sf.broadcast_to(x[:, :1, :], (5, 2, 3, 4)),
            x[:, 1:, ::2], x[1, ::-1, 3], sf.flip(x, (0, 2)),
            sf.concatenate([x, x * 2], axis=1), sf.reshape(x, (24,))]
    model, want = export_values([x], outs, [a])
    check(model, [a], want)


def test_pad_with_interior_and_value(rng):
    x = sf.tensor("x", (2, 3))
    a = _any(rng, (2, 3))
    outs = [sf.apply("pad", [x], {"lo": (1, 0), "hi": (0, 2), "interior": (0, 0), "value": -1.5}),
            sf.apply("pad", [x], {"lo": (0, 1), "hi": (2, 1), "interior": (1, 2), "value": 0.0}),
            sf.apply("pad", [x], {"lo": (0, 0), "hi": (0, 0), "interior": (2, 0), "value": 3.0})]
    model, want = export_values([x], outs, [a])
    check(model, [a], want)


def test_matmul_and_gemm(rng):
    a, b = sf.tensor("a", (2, 3, 4)), sf.tensor("b", (4, 5))
    p, q, z = sf.tensor("p", (3, 4)), sf.tensor("q", (4, 5)), sf.tensor("z", (3, 5))
    arrays = [_any(rng, s) for s in [(2, 3, 4), (4, 5), (3, 4), (4, 5), (3, 5)]]
    outs = [a @ b, sf.apply("gemm", [p, q, z], {"alpha": 0.5, "beta": 2.0}),
            sf.apply("gemm", [a, b, sf.broadcast_to(z, (2, 3, 5))], {"alpha": -1.0, "beta": 0.25})]
    model, want = export_values([a, b, p, q, z], outs, arrays)
    assert "Gemm" in {n.op_type for n in model.graph.node}
    check(model, arrays, want)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (3, 1, 1, 4)])
def test_conv2d_and_its_transpose(stride, padding, dilation, groups, rng):
    x, w = sf.tensor("x", (2, 4, 9, 8)), sf.tensor("w", (6 if groups != 4 else 8, 4 // groups, 3, 3))
    xa, wa = _any(rng, x.shape), _any(rng, w.shape)
    y = sf.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    gy = sf.tensor("gy", y.shape)
    gya = _any(rng, y.shape)
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    dx = sf.apply("conv2d_grad_input", [gy, w], {"input_shape": x.shape, **attrs})
    model, want = export_values([x, w, gy], [y, dx], [xa, wa, gya])
    check(model, [xa, wa, gya], want)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_pooling(kernel, stride, padding, rng):
    x = sf.tensor("x", (2, 3, 7, 6))
    a = _any(rng, x.shape)
    outs = [sf.max_pool2d(x, kernel, stride, padding), sf.avg_pool2d(x, kernel, stride, padding)]
    model, want = export_values([x], outs, [a])
    check(model, [a], want)


def test_softmax_family(rng):
    x, t = sf.tensor("x", (4, 5)), sf.tensor("t", (4, 5))
    a, ta = _any(rng, (4, 5)) * 20, rng.dirichlet(np.ones(5), 4).astype(np.float32)
    outs = [sf.softmax(x), sf.log_softmax(x, axis=0), sf.apply("softmax_xent", [x, t], {"axis": 1}),
            sf.apply("softmax_xent", [x, t], {"axis": 0})]
    model, want = export_values([x, t], outs, [a, ta])
    check(model, [a, ta], want)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_take_clamps_indices_as_symfuse_does(dtype, rng):
    x, i = sf.tensor("x", (5, 3)), sf.tensor("i", (2, 4), dtype)
    a = _any(rng, (5, 3))
    idx = np.array([[0, 4, -1, -5], [7, -9, 2, 3]], dtype)         # out of range: clamped
    fixed = sf.constant(np.array([-2, 9], dtype))
    outs = [sf.take(x, i, axis=0), sf.take(x, i, axis=1), sf.take(x, fixed, axis=0)]
    model, want = export_values([x, i], outs, [a, idx])
    check(model, [a, idx], want)


def test_one_hot_gives_zero_rows_out_of_range():
    i = sf.tensor("i", (5,), "int32")
    idx = np.array([0, 3, -1, 4, 2], np.int32)
    model, want = export_values([i], [sf.one_hot(i, 4), sf.one_hot(i, 3, dtype="int32")], [idx])
    assert want[0][2].sum() == 0
    check(model, [idx], want)


def test_constants_and_identities(rng):
    x = sf.tensor("x", (2, 3))
    a = _any(rng, (2, 3))
    c = sf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    outs = [x + c, sf.stop_gradient(x) * 2, sf.apply("copy", [x]), c]
    model, want = export_values([x], outs, [a])
    check(model, [a], want)


def test_outputs_that_are_inputs_parameters_or_repeated(rng):
    x = sf.tensor("x", (2, 3))
    w = sf.shared(np.full((2, 3), 2.0, np.float32), name="w")
    w2 = sf.shared(np.full((2, 3), 3.0, np.float32), name="w")        # the same name: made unique
    y = x * w + w2
    a = _any(rng, (2, 3))
    model, want = export_values([x], [y, x, y, w], [a])
    assert len({o.name for o in model.graph.output}) == 4
    assert sorted(t.name for t in model.graph.initializer) == ["w", "w_1"]
    check(model, [a], want)


def test_a_gradient_is_expanded_before_export(rng):
    x = sf.tensor("x", (4, 3))
    w = sf.shared(rng.normal(size=(3, 2)).astype(np.float32), name="w")
    loss = sf.sum(sf.tanh(x @ w) ** 2)
    a = _any(rng, (4, 3))
    model, want = export_values([x], [loss, sf.grad(loss, w)], [a])
    check(model, [a], want)


# --------------------------------------------------------------------------- control flow
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_as_loop(reverse, rng):
    xs, h0 = sf.tensor("xs", (5, 3)), sf.tensor("h0", (3,))
    w = sf.shared(rng.normal(size=(3, 3)).astype(np.float32) * 0.5, name="w")

    def step(h, x):
        h = sf.tanh(sf.reshape(sf.reshape(h, (1, 3)) @ w, (3,)) + x)
        return h, h * 2

    h, ys = sf.scan(step, h0, xs, reverse=reverse)
    arrays = [_any(rng, (5, 3)), _any(rng, (3,))]
    model, want = export_values([xs, h0], [h, ys], arrays)
    assert "Loop" in {n.op_type for n in model.graph.node}
    check(model, arrays, want)


def test_gradient_through_a_scan(rng):
    """Backpropagation through time: a scan saving its carries, then a reverse scan."""
    xs, h0 = sf.tensor("xs", (5, 3)), sf.tensor("h0", (3,))
    w = sf.shared(rng.normal(size=(3, 3)).astype(np.float32) * 0.5, name="w")
    h, ys = sf.scan(lambda h, x: (lambda n: (n, n * 2))(sf.tanh(sf.reshape(sf.reshape(h, (1, 3)) @ w, (3,)) + x)),
                    h0, xs)
    loss = sf.sum(ys ** 2) + sf.sum(h)
    arrays = [_any(rng, (5, 3)), _any(rng, (3,))]
    model, want = export_values([xs, h0], [loss, sf.grad(loss, w), sf.grad(loss, xs)], arrays)
    check(model, arrays, want)

def test_scan_without_sequences_and_of_length_zero(rng):
    c = sf.tensor("c", (2,))
    total, ys = sf.scan(lambda s, _: (s * 1.5, s), c, length=4)
    _, empty = sf.scan(lambda s, x: (s + x, s), c, sf.zeros((0, 2)))
    a = _any(rng, (2,))
    model, want = export_values([c], [total, ys, empty], [a])
    check(model, [a], want)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cond_as_if(sign, rng):
    x = sf.tensor("x", (3,))
    y = sf.cond(sf.sum(x) > 0, lambda v: (sf.exp(v), v), lambda v: (v * 2, v - 1), x)
    a = np.abs(_any(rng, (3,))) * sign
    model, want = export_values([x], list(y), [a])
    assert "If" in {n.op_type for n in model.graph.node}
    check(model, [a], want)


@pytest.mark.parametrize("cap", [None, 3])
def test_while_loop_as_loop(cap, rng):
    x, limit = sf.tensor("x", (2,)), sf.tensor("limit", ())
    out = sf.while_loop(lambda c: sf.sum(c[0]) < limit, lambda c: (c[0] * 2, c[1] + 1),
                        (x, sf.constant(np.int32(0))), max_iterations=cap)
    arrays = [np.array([0.25, 0.5], np.float32), np.float32(20)]
    model, want = export_values([x, limit], list(out), arrays)
    check(model, arrays, want)


# --------------------------------------------------------------------------- refusals
def test_random_op_is_refused_with_its_line():
    x = sf.tensor("x", (3,))
    noise = sf.random.normal((3,), 7)          # the line the error names
    line = noise.op.loc[1]
    with pytest.raises(OnnxUnsupported) as e:
        sf.onnx.save(([x], [x + noise]))
    msg = str(e.value)
    assert "random_normal" in msg and f"test_onnx_export.py:{line}" in msg and "input" in msg
    assert e.value.op_type == "random_normal"


def test_op_without_rule_is_refused():
    x, y = sf.tensor("x", (1, 1, 4, 4)), sf.tensor("y", (1, 1, 2, 2))
    g = sf.apply("max_pool2d_grad", [x, sf.max_pool2d(x, 2), y], {"kernel": (2, 2)})
    with pytest.raises(OnnxUnsupported, match=r"max_pool2d_grad \(built at .*test_onnx_export\.py:\d+\).*no ONNX export"):
        sf.onnx.save(([x, y], [g]))


def test_bad_arguments():
    x = sf.tensor("x", (2,))
    with pytest.raises(OnnxError, match="opset"):
        sf.onnx.save(([x], [x * 2]), opset=12)
    with pytest.raises(OnnxError, match="output_names"):
        sf.onnx.save(([x], [x * 2]), output_names=["a", "b"])
    with pytest.raises(OnnxError, match="neither an input nor a shared"):
        sf.onnx.save(([], [x * 2]))
    with pytest.raises(OnnxError, match="expected a compiled"):
        sf.onnx.save(42)


# --------------------------------------------------------------------------- gradient ops
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (3, 2, 2, 2)])
def test_conv2d_grad_weight(stride, padding, dilation, groups, rng):
    x, w = sf.tensor("x", (2, 4, 10, 9)), sf.tensor("w", (6, 4 // groups, 3, 2))
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    gy = sf.tensor("gy", sf.conv2d(x, w, **attrs).shape)
    arrays = [_any(rng, v.shape) for v in (x, gy)]
    dw = sf.apply("conv2d_grad_weight", [x, gy], {"weight_shape": w.shape, **attrs})
    model, want = export_values([x, gy], [dw], arrays)
    check(model, arrays, want)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1)])
def test_avg_pool2d_grad(kernel, stride, padding, rng):
    x = sf.tensor("x", (2, 3, 7, 6))
    gy = sf.tensor("gy", sf.avg_pool2d(x, kernel, stride, padding).shape)
    a = _any(rng, gy.shape)
    attrs = {"kernel": kernel, "stride": stride, "padding": padding, "input_shape": x.shape}
    model, want = export_values([gy], [sf.apply("avg_pool2d_grad", [gy], attrs)], [a])
    check(model, [a], want)


def test_take_grad_adds_repeated_indices(rng):
    gy, i = sf.tensor("gy", (2, 5, 3)), sf.tensor("i", (5,), "int32")
    a, idx = _any(rng, (2, 5, 3)), np.array([1, 3, 1, -1, 9], np.int32)
    model, want = export_values([gy, i], [sf.apply("take_grad", [gy, i], {"axis": 1, "size": 4})], [a, idx])
    # not read back: the importer's ScatterND needs its indices at import time
    check(model, [a, idx], want, rt=False)


def test_gradient_of_a_small_cnn(rng):
    x = sf.tensor("x", (2, 1, 8, 8))
    w = sf.shared(rng.normal(size=(3, 1, 3, 3)).astype(np.float32), name="w")
    loss = sf.sum(sf.tanh(sf.avg_pool2d(sf.conv2d(x, w, padding=1), 2)) ** 2)
    a = _any(rng, (2, 1, 8, 8))
    model, want = export_values([x], [loss, sf.grad(loss, w)], [a])
    check(model, [a], want)
