"""ONNX converters of neural-network and control-flow ops (ops/nn.py, pool.py,
norm.py, resize.py, recurrent.py, control.py): small one-node models run by symfuse
and compared with onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

import symfuse as sf  # noqa: E402
from symfuse.onnx import OnnxError, OnnxUnsupported  # noqa: E402

F32 = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def model(nodes, inputs: dict, outputs, inits: dict | None = None, opset: int = 17):
    """A graph of ``nodes``; inputs: name -> array (fed at run time); inits: name ->
    array (initializers); outputs: names, or (name, elem_type) pairs."""
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in inputs.items()],
        [helper.make_tensor_value_info(*(o if isinstance(o, tuple) else (o, F32)), None) for o in outputs],
        [onnx.numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def check(m, feeds: dict, device="interp", rtol=1e-4, atol=1e-5):
    """symfuse's outputs of m equal onnxruntime's."""
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = sf.onnx.load(m).run(*feeds.values(), device=device)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


def one_node(op, inputs: dict, inits=None, n_out=1, opset=17, **attrs):
    names = list(inputs) + list(inits or {})
    outs = [f"y{i}" for i in range(n_out)]
    return model([helper.make_node(op, names, outs, **attrs)], inputs, outs, inits, opset)


# --------------------------------------------------------------------------- convolution
CONV = [
    ("plain", (1, 2, 6, 6), (3, 2, 3, 3), {}),
    ("pads", (1, 2, 5, 6), (3, 2, 3, 3), {"pads": [1, 1, 1, 1]}),
    ("asymmetric pads", (1, 2, 5, 6), (3, 2, 3, 2), {"pads": [0, 1, 2, 0], "strides": [2, 1]}),
    ("strides dilations", (2, 2, 9, 8), (4, 2, 3, 3), {"strides": [2, 3], "dilations": [2, 1]}),
    ("groups", (1, 4, 6, 6), (6, 2, 3, 3), {"group": 2, "pads": [1, 0, 1, 0]}),
    ("depthwise", (1, 3, 5, 5), (3, 1, 3, 3), {"group": 3}),
    ("same upper", (1, 2, 7, 6), (3, 2, 4, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("same lower", (1, 2, 7, 6), (3, 2, 4, 3), {"auto_pad": "SAME_LOWER"}),
    ("valid", (1, 2, 7, 6), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    ("1-D", (2, 3, 10), (4, 3, 3), {"pads": [2, 1], "strides": [2]}),
]


@pytest.mark.parametrize("label,xs,ws,attrs", CONV, ids=[c[0] for c in CONV])
def test_conv(label, xs, ws, attrs):
    b = rand(ws[0])
    check(one_node("Conv", {"x": rand(*xs)}, {"w": rand(*ws), "b": b}, **attrs), {"x": rand(*xs)})


CONV_T = [
    ("plain", (1, 2, 3, 3), (2, 3, 3, 3), {}),
    ("strides output_padding", (1, 2, 3, 4), (2, 3, 3, 3), {"strides": [3, 2], "output_padding": [1, 1]}),
    ("pads", (1, 2, 4, 4), (2, 2, 3, 3), {"strides": [2, 2], "pads": [1, 2, 0, 1]}),
    ("group", (1, 4, 3, 3), (4, 2, 3, 3), {"group": 2, "strides": [2, 1]}),
    ("dilations", (1, 1, 3, 3), (1, 2, 2, 2), {"dilations": [2, 2]}),
    ("output_shape", (1, 1, 3, 3), (1, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    ("output_shape crop", (1, 1, 3, 3), (1, 2, 3, 3), {"strides": [2, 2], "output_shape": [6, 5]}),
    ("same upper", (1, 1, 3, 3), (1, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("same lower", (1, 1, 3, 4), (1, 2, 2, 3), {"strides": [2, 3], "auto_pad": "SAME_LOWER"}),
    ("1-D", (1, 2, 5), (2, 3, 3), {"strides": [2], "pads": [1, 0]}),
]


@pytest.mark.parametrize("label,xs,ws,attrs", CONV_T, ids=[c[0] for c in CONV_T])
def test_conv_transpose(label, xs, ws, attrs):
    x = rand(*xs)
    b = rand(ws[1] * attrs.get("group", 1))
    check(one_node("ConvTranspose", {"x": x}, {"w": rand(*ws), "b": b}, **attrs), {"x": x})


def test_conv_3d_is_refused_by_name():
    m = one_node("Conv", {"x": rand(1, 1, 3, 3, 3)}, {"w": rand(1, 1, 2, 2, 2)})
    with pytest.raises(OnnxUnsupported, match="3-D convolution") as e:
        sf.onnx.load(m)
    assert e.value.reason == "Conv: 3-D"


# --------------------------------------------------------------------------- softmax family, dropout, LRN
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_family(op, axis):
    x = rand(3, 4, 5)
    x[1, 2, :2] = 7.0          # a tie: Hardmax picks the first maximum
    check(one_node(op, {"x": x}, axis=axis), {"x": x})


def test_dropout_inference_is_identity_with_a_true_mask():
    x = rand(2, 5)
    m = one_node("Dropout", {"x": x}, {"r": np.array(0.3, np.float32)}, n_out=2)
    m.graph.output[1].type.tensor_type.elem_type = TensorProto.BOOL
    y, mask = sf.onnx.load(m).run(x)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()


def test_dropout_training_with_a_ratio_is_unsupported():
    m = one_node("Dropout", {"x": rand(2, 5)}, {"r": np.array(0.5, np.float32), "t": np.array(True)})
    with pytest.raises(OnnxUnsupported, match="training_mode"):
        sf.onnx.load(m)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    x = rand(2, 6, 3, 4)
    check(one_node("LRN", {"x": x}, size=size, alpha=0.01, beta=0.6, bias=1.5), {"x": x})


# --------------------------------------------------------------------------- pooling
POOLS = [
    ("MaxPool", (1, 2, 6, 7), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("MaxPool", (1, 2, 6, 7), {"kernel_shape": [3, 2], "pads": [1, 0, 2, 1], "strides": [2, 2]}),
    ("MaxPool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", (1, 2, 7, 7), {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ("MaxPool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("MaxPool", (2, 3, 11), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ("MaxPool", (1, 2, 4, 5, 6), {"kernel_shape": [2, 2, 3], "strides": [1, 2, 2]}),
    ("AveragePool", (1, 2, 6, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("AveragePool", (1, 2, 6, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", (1, 2, 6, 7), {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0], "strides": [2, 2]}),
    ("AveragePool", (1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1,
                                   "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", (1, 2, 7, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    ("AveragePool", (1, 2, 9), {"kernel_shape": [4], "strides": [3]}),
    ("LpPool", (1, 2, 6, 6), {"kernel_shape": [2, 3], "p": 2}),
    ("LpPool", (1, 2, 6, 6), {"kernel_shape": [3, 3], "p": 3, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("GlobalAveragePool", (2, 3, 4, 5), {}),
    ("GlobalMaxPool", (2, 3, 4, 5, 2), {}),
]


@pytest.mark.parametrize("op,xs,attrs", POOLS, ids=[f"{p[0]}-{i}" for i, p in enumerate(POOLS)])
def test_pool(op, xs, attrs):
    x = rand(*xs)
    check(one_node(op, {"x": x}, **attrs), {"x": x})


def test_maxpool_indices_output_is_unsupported():
    m = one_node("MaxPool", {"x": rand(1, 1, 4, 4)}, n_out=2, kernel_shape=[2, 2])
    with pytest.raises(OnnxUnsupported, match="Indices"):
        sf.onnx.load(m)


# --------------------------------------------------------------------------- normalisation
def _channel_inits(c, names=("s", "b", "mean", "var")):
    vals = [rand(c), rand(c), rand(c), np.abs(rand(c)) + 0.5]
    return dict(zip(names, vals))


def test_batch_norm_inference():
    x = rand(2, 3, 4, 5)
    check(one_node("BatchNormalization", {"x": x}, _channel_inits(3), epsilon=1e-3), {"x": x})


def test_batch_norm_training_gives_running_statistics():
    x = rand(4, 3, 2, 5)
    m = one_node("BatchNormalization", {"x": x}, _channel_inits(3), n_out=3, opset=15, training_mode=1,
                 momentum=0.8)
    check(m, {"x": x})


def test_instance_norm():
    x = rand(2, 3, 4, 5)
    check(one_node("InstanceNormalization", {"x": x}, {"s": rand(3), "b": rand(3)}, epsilon=1e-4), {"x": x})


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_layer_norm_with_mean_and_inv_std(axis):
    x = rand(2, 3, 4)
    shape = x.shape[axis % 3:]
    m = one_node("LayerNormalization", {"x": x}, {"s": rand(*shape), "b": rand(*shape)}, n_out=3, axis=axis)
    check(m, {"x": x})


def test_group_norm_per_channel_scale():
    x = rand(2, 6, 3, 2)
    check(one_node("GroupNormalization", {"x": x}, {"s": rand(6), "b": rand(6)}, opset=21, num_groups=3,
                   epsilon=1e-3), {"x": x})


@pytest.mark.parametrize("p,axis", [(1, 0), (2, 1), (2, -1)])
def test_lp_norm(p, axis):
    x = rand(3, 4)
    x[1] = 0.0
    check(one_node("LpNormalization", {"x": x}, p=p, axis=axis), {"x": x})


def test_mean_variance_norm():
    x = rand(2, 3, 4, 5)
    check(one_node("MeanVarianceNormalization", {"x": x}, axes=[0, 2, 3]), {"x": x})
    check(one_node("MeanVarianceNormalization", {"x": x}, axes=[1, 3]), {"x": x})


# --------------------------------------------------------------------------- resize
RESIZE = [
    ("nearest", "asymmetric", "floor", [1, 1, 2, 3], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 0.5, 1.7], None),
    ("nearest", "align_corners", "round_prefer_ceil", None, [1, 2, 7, 3]),
    ("nearest", "pytorch_half_pixel", "ceil", None, [1, 2, 3, 9]),
    ("linear", "half_pixel", "round_prefer_floor", [1, 1, 2, 1.5], None),
    ("linear", "align_corners", "round_prefer_floor", None, [1, 2, 7, 2]),
    ("linear", "asymmetric", "round_prefer_floor", [1, 1, 0.6, 2], None),
    ("linear", "pytorch_half_pixel", "round_prefer_floor", None, [1, 2, 1, 10]),
    ("cubic", "half_pixel", "round_prefer_floor", [1, 1, 2, 2], None),
]


@pytest.mark.parametrize("mode,ctm,nearest,scales,sizes", RESIZE, ids=[f"{r[0]}-{r[1]}" for r in RESIZE])
def test_resize(mode, ctm, nearest, scales, sizes):
    x = rand(1, 2, 4, 5)
    inits = {"roi": np.zeros(0, np.float32)}
    if scales is not None:
        inits["scales"] = np.array(scales, np.float32)
    else:
        inits["scales"] = np.zeros(0, np.float32)
        inits["sizes"] = np.array(sizes, np.int64)
    m = one_node("Resize", {"x": x}, inits, mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest)
    check(m, {"x": x})


def test_resize_needs_sizes_at_import_time():
    x = rand(1, 1, 2, 2)
    m = one_node("Resize", {"x": x, "sizes": np.array([1, 1, 4, 4], np.int64)}, mode="nearest")
    m.graph.node[0].input[:] = ["x", "", "", "sizes"]
    with pytest.raises(OnnxError, match="constants="):
        sf.onnx.load(m)
    y = sf.onnx.load(m, constants={"sizes": np.array([1, 1, 4, 4], np.int64)}).run(x)[0]
    np.testing.assert_array_equal(y, x.repeat(2, 2).repeat(2, 3))


# --------------------------------------------------------------------------- recurrent
def _rnn_model(op, gates, attrs, seq=5, batch=2, inp=3, hidden=4, layout=0, with_state=True, lens=None):
    d = 2 if attrs.get("direction") == "bidirectional" else 1
    x = rand(seq, batch, inp) if layout == 0 else rand(batch, seq, inp)
    inits = {"W": rand(d, gates * hidden, inp) * 0.5, "R": rand(d, gates * hidden, hidden) * 0.5,
             "B": rand(d, 2 * gates * hidden) * 0.5}
    names = ["x", "W", "R", "B"]
    if lens is not None:
        inits["lens"] = np.array(lens, np.int32)
        names.append("lens")
    else:
        names.append("")
    if with_state:
        state = (d, batch, hidden) if layout == 0 else (batch, d, hidden)
        inits["h0"] = rand(*state)
        names.append("h0")
        if op == "LSTM":
            inits["c0"] = rand(*state)
            names.append("c0")
    outs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, layout=layout, **attrs)
    return model([node], {"x": x}, outs, inits, opset=14), x


RECURRENT = [
    ("RNN", 1, {}), ("RNN", 1, {"direction": "reverse"}), ("RNN", 1, {"direction": "bidirectional"}),
    ("GRU", 3, {}), ("GRU", 3, {"linear_before_reset": 1, "direction": "reverse"}),
    ("GRU", 3, {"direction": "bidirectional", "clip": 0.8}),
    ("LSTM", 4, {}), ("LSTM", 4, {"direction": "bidirectional"}), ("LSTM", 4, {"clip": 0.5}),
    ("RNN", 1, {"activations": ["Relu"]}),
]


@pytest.mark.parametrize("op,gates,attrs", RECURRENT, ids=[f"{r[0]}-{i}" for i, r in enumerate(RECURRENT)])
def test_recurrent(op, gates, attrs):
    m, x = _rnn_model(op, gates, attrs)
    check(m, {"x": x})


@pytest.mark.parametrize("op,gates", [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
def test_recurrent_batch_major_layout(op, gates):
    """layout=1 (onnxruntime has no kernel for it): the layout-0 model on transposed data."""
    m0, x = _rnn_model(op, gates, {"direction": "bidirectional"})
    m1 = onnx.ModelProto()
    m1.CopyFrom(m0)
    node = m1.graph.node[0]
    node.attribute.append(helper.make_attribute("layout", 1))
    del node.attribute[[a.name for a in node.attribute].index("layout")]
    dims = m1.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[1].dim_value = x.shape[1], x.shape[0]
    for init in m1.graph.initializer:
        if init.name in ("h0", "c0"):
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init).transpose(1, 0, 2), init.name))
    want = check(m0, {"x": x})
    got = sf.onnx.load(m1).run(x.transpose(1, 0, 2).copy())
    np.testing.assert_allclose(got[0], want[0].transpose(2, 0, 1, 3), rtol=1e-5, atol=1e-6)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w.transpose(1, 0, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,gates", [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_recurrent_sequence_lens(op, gates, direction):
    m, x = _rnn_model(op, gates, {"direction": direction}, lens=[5, 3])
    check(m, {"x": x})


def test_lstm_peepholes_and_input_forget():
    hidden, inp = 3, 2
    x = rand(4, 1, inp)
    inits = {"W": rand(1, 4 * hidden, inp), "R": rand(1, 4 * hidden, hidden), "B": rand(1, 8 * hidden),
             "P": rand(1, 3 * hidden)}
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "", "", "P"], ["y", "y_h", "y_c"],
                            hidden_size=hidden, input_forget=1)
    check(model([node], {"x": x}, ["y", "y_h", "y_c"], inits, opset=14), {"x": x})


# --------------------------------------------------------------------------- control flow
def _graph(name, nodes, ins, outs):
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, s) for n, t, s in ins],
                             [helper.make_tensor_value_info(n, t, s) for n, t, s in outs])


def test_if_picks_a_branch_at_run_time():
    x = rand(3)
    then = _graph("then", [helper.make_node("Add", ["x", "x"], ["t"])], [], [("t", F32, [3])])
    other = _graph("else", [helper.make_node("Mul", ["x", "x"], ["e"])], [], [("e", F32, [3])])
    m = model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
              {"c": np.array(True), "x": x}, ["y"])
    for c in (True, False):
        check(m, {"c": np.array(c), "x": x})


def _counting_body(with_scan: bool, stop_at=None):
    """Loop body: s += x * i; optionally yields s each step and stops when s > stop_at."""
    nodes = [helper.make_node("Cast", ["i"], ["fi"], to=F32),
             helper.make_node("Mul", ["x", "fi"], ["xi"]),
             helper.make_node("Add", ["s_in", "xi"], ["s_out"])]
    if stop_at is None:
        nodes.append(helper.make_node("Identity", ["c_in"], ["c_out"]))
    else:
        nodes += [helper.make_node("Constant", [], ["lim"], value=helper.make_tensor("lim", F32, [], [stop_at])),
                  helper.make_node("ReduceSum", ["s_out"], ["tot"], keepdims=0),
                  helper.make_node("Less", ["tot", "lim"], ["c_out"])]
    outs = [("c_out", TensorProto.BOOL, []), ("s_out", F32, [2])]
    if with_scan:
        nodes.append(helper.make_node("Identity", ["s_out"], ["step_s"]))
        outs.append(("step_s", F32, [2]))
    return _graph("body", nodes, [("i", TensorProto.INT64, []), ("c_in", TensorProto.BOOL, []),
                                  ("s_in", F32, [2])], outs)


def test_loop_with_a_trip_count_and_scan_outputs():
    x = rand(2)
    node = helper.make_node("Loop", ["M", "", "s0"], ["s", "steps"], body=_counting_body(True))
    m = model([node], {"x": x, "s0": rand(2)}, ["s", "steps"], {"M": np.array(4, np.int64)}, opset=13)
    got = check(m, {"x": x, "s0": rand(2)})
    assert got[1].shape == (4, 2)


def test_loop_with_a_condition_is_a_while_loop():
    x = np.abs(rand(2)) + 0.5
    node = helper.make_node("Loop", ["M", "c0", "s0"], ["s"], body=_counting_body(False, stop_at=6.0))
    m = model([node], {"x": x, "s0": np.zeros(2, np.float32)}, ["s"],
              {"M": np.array(50, np.int64), "c0": np.array(True)}, opset=13)
    check(m, {"x": x, "s0": np.zeros(2, np.float32)})


def test_loop_scan_outputs_with_a_condition_are_unsupported():
    node = helper.make_node("Loop", ["M", "c0", "s0"], ["s", "steps"], body=_counting_body(True, stop_at=6.0))
    m = model([node], {"x": rand(2), "s0": rand(2)}, ["s", "steps"],
              {"M": np.array(50, np.int64), "c0": np.array(True)}, opset=13)
    with pytest.raises(OnnxUnsupported, match="scan outputs"):
        sf.onnx.load(m)


@pytest.mark.parametrize("in_axis,in_dir,out_axis,out_dir", [(0, 0, 0, 0), (1, 1, 1, 0), (0, 1, 1, 1)])
def test_scan(in_axis, in_dir, out_axis, out_dir):
    body = _graph("body", [helper.make_node("Add", ["acc", "xt"], ["acc2"]),
                           helper.make_node("Mul", ["acc2", "xt"], ["yt"])],
                  [("acc", F32, [3]), ("xt", F32, [3])], [("acc2", F32, [3]), ("yt", F32, [3])])
    x = rand(4, 3) if in_axis == 0 else rand(3, 4)
    node = helper.make_node("Scan", ["a0", "x"], ["a", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                            scan_output_axes=[out_axis], scan_output_directions=[out_dir])
    check(model([node], {"a0": rand(3), "x": x}, ["a", "ys"], opset=16), {"a0": rand(3), "x": x})


# --------------------------------------------------------------------------- compiled (C backend)
def test_compiled_conv_pool_lstm_resize():
    """One model through the C backend: conv, pool, resize and a recurrent layer."""
    x = rand(1, 2, 6, 6)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 1, 0]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], ceil_mode=1, strides=[2, 2]),
             helper.make_node("Resize", ["p", "", "sc"], ["r"], mode="linear"),
             helper.make_node("Reshape", ["r", "shape"], ["seq"]),
             helper.make_node("GRU", ["seq", "W", "R"], ["y", "y_h"], hidden_size=3)]
    inits = {"w": rand(3, 2, 2, 2), "sc": np.array([1, 1, 2, 2], np.float32),
             "shape": np.array([6, 6, 3], np.int64), "W": rand(1, 9, 3), "R": rand(1, 9, 3)}
    m = model(nodes, {"x": x}, ["y", "y_h"], inits)
    check(m, {"x": x}, device="cpu")
