"""The ONNX converters of elementwise, shape, indexing, reduction and linear-algebra ops
(symfuse/onnx/ops/{elementwise,tensor,reduce,linalg}.py), each case a one-node model run
by symfuse and by onnxruntime (the reference); a few of onnx's own node test cases too."""
from dataclasses import dataclass, field

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper, shape_inference  # noqa: E402

import symfuse as sf  # noqa: E402
from symfuse.onnx import OnnxError, OnnxNeedsConstant, OnnxUnsupported  # noqa: E402

R = np.random.default_rng(0)


def f32(*shape, lo=-3.0, hi=3.0):
    return R.uniform(lo, hi, shape).astype(np.float32)


def f64(*shape, lo=-3.0, hi=3.0):
    return R.uniform(lo, hi, shape)


def i64(*values):
    return np.asarray(values, np.int64)


@dataclass
class Case:
    """One node: ``inputs`` in order (None: an omitted optional input); the inputs at
    ``consts`` are initializers (shapes, axes, pads: what converters read at import)."""
    id: str
    op: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    consts: tuple = ()
    opset: int = 18
    outputs: int = 1
    tol: float = 1e-5
    numpy: object = None     # the reference where onnxruntime has no kernel (float64 inverse trig)


def model(c: Case):
    names, graph_inputs, inits = [], [], []
    for k, x in enumerate(c.inputs):
        if x is None:
            names.append("")
            continue
        name = f"in{k}"
        names.append(name)
        x = np.asarray(x)
        if k in c.consts:
            inits.append(numpy_helper.from_array(x, name))
        else:
            code = helper.np_dtype_to_tensor_dtype(x.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, code, x.shape))
    outs = [f"out{k}" for k in range(c.outputs)]
    node = helper.make_node(c.op, names, outs, **c.attrs)
    g = helper.make_graph([node], c.id, graph_inputs, [onnx.ValueInfoProto(name=o) for o in outs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", c.opset)])
    m.ir_version = 8
    return shape_inference.infer_shapes(m, strict_mode=True)


def feeds(c: Case):
    return [np.asarray(x) for k, x in enumerate(c.inputs) if x is not None and k not in c.consts]


def reference(c: Case, m):
    if c.numpy is not None:
        return [c.numpy(*feeds(c))]
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, feeds(c))))


def check(c: Case, device="interp"):
    m = model(c)
    want = reference(c, m)
    got = sf.onnx.load(m).run(*feeds(c), device=device)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.dtype == w.dtype and g.shape == w.shape, (k, g.dtype, g.shape, w.dtype, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=c.tol, atol=c.tol, equal_nan=True, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")


B = np.array([[True, False], [False, True]])
WIDE = np.concatenate([np.linspace(-50, 50, 41), np.logspace(-8, 8, 9), -np.logspace(-8, 8, 9), [0.0]])
UNIT = np.concatenate([np.linspace(-1, 1, 41), [-0.9999999, 0.9999999, 1e-9, -1e-12]])
TIES = np.array([[3, 1, 3, 2, 1], [0, 0, 0, 0, 0], [-1, 5, 5, -1, 2]], np.float32)

ELEMENTWISE = [
    Case("max3", "Max", [f32(3, 1), f32(1, 4), f32(4)]),
    Case("min2_int", "Min", [i64(1, -5, 7), i64(3)]),
    Case("sum3", "Sum", [f32(2, 3), f32(3), f32(2, 1)]),
    Case("mean2", "Mean", [f32(2, 3), f32(2, 3)]),
    Case("mean1", "Mean", [f32(4)]),
    Case("mod_int", "Mod", [i64(-7, 7, -7, 7, 0, 9), i64(3, -3, -3, 3, 5, 4)]),
    Case("mod_int_fmod", "Mod", [i64(-7, 7, -7, 7), i64(3, -3, -3, 3)], {"fmod": 1}),
    Case("fmod_float", "Mod", [f32(3, 4) * 5, f32(4) + 0.5], {"fmod": 1}),
    Case("xor", "Xor", [B, B.T[::-1].copy()]),
    Case("where", "Where", [B, f32(2, 2), f32(2)]),
    Case("clip", "Clip", [f32(3, 4), np.float32(-1), np.float32(0.5)]),
    Case("clip_min_only", "Clip", [f32(3, 4), np.float32(-1)]),
    Case("clip_max_only", "Clip", [f32(3, 4), None, np.float32(0.5)]),
    Case("clip_none_int", "Clip", [i64(4, -2, 0)]),
    Case("cast_f2i", "Cast", [f32(5) * 10], {"to": TensorProto.INT32}),
    Case("cast_i2f", "Cast", [i64(1, -2, 3)], {"to": TensorProto.DOUBLE}),
    Case("cast_f2b", "Cast", [np.array([0, -0.0, 2.5, -1], np.float32)], {"to": TensorProto.BOOL}),
    Case("cast_b2f", "Cast", [B], {"to": TensorProto.FLOAT}),
    Case("castlike", "CastLike", [f32(4) * 4, i64(1)]),
    Case("leaky_relu", "LeakyRelu", [f32(3, 4)], {"alpha": 0.3}),
    Case("elu", "Elu", [f32(3, 4)], {"alpha": 2.0}),
    Case("selu", "Selu", [f32(3, 4)]),
    Case("celu", "Celu", [f32(3, 4)], {"alpha": 0.5}),
    Case("hard_sigmoid", "HardSigmoid", [f32(3, 4) * 3], {"alpha": 0.3, "beta": 0.4}),
    Case("hard_swish", "HardSwish", [f32(3, 4) * 3]),
    Case("gelu", "Gelu", [f32(3, 4)], opset=20),
    Case("gelu_tanh", "Gelu", [f32(3, 4)], {"approximate": "tanh"}, opset=20),
    Case("mish", "Mish", [f32(3, 4)]),
    Case("prelu", "PRelu", [f32(2, 3, 4), f32(3, 1)]),
    Case("thresholded_relu", "ThresholdedRelu", [f32(3, 4)], {"alpha": 0.5}),
    Case("softsign", "Softsign", [f32(3, 4)]),
    Case("tan", "Tan", [f32(10, lo=-1.5, hi=1.5)]),
    Case("sinh", "Sinh", [np.array([1e-6, -0.5, 3, -20], np.float32)]),
    Case("cosh", "Cosh", [f32(10)]),
    Case("atan64", "Atan", [WIDE], tol=1e-12, numpy=np.arctan),
    Case("atan32", "Atan", [WIDE.astype(np.float32)], tol=1e-6),
    Case("asin64", "Asin", [UNIT], tol=1e-12, numpy=np.arcsin),
    Case("acos64", "Acos", [UNIT], tol=1e-12, numpy=np.arccos),
    Case("acos32", "Acos", [UNIT.astype(np.float32)], tol=1e-6),
    Case("asinh", "Asinh", [WIDE], tol=1e-12, numpy=np.arcsinh),
    Case("acosh", "Acosh", [1 + np.abs(WIDE)], tol=1e-12, numpy=np.arccosh),
    Case("atanh", "Atanh", [UNIT[np.abs(UNIT) < 1]], tol=1e-12, numpy=np.arctanh),
    Case("isnan", "IsNaN", [np.array([1, np.nan, np.inf], np.float32)]),
    Case("isinf", "IsInf", [np.array([1, np.nan, np.inf, -np.inf], np.float32)], opset=20),
    Case("isinf_neg", "IsInf", [np.array([np.inf, -np.inf, 0], np.float32)], {"detect_positive": 0}),
    Case("isinf_pos", "IsInf", [np.array([np.inf, -np.inf, 0], np.float32)], {"detect_negative": 0}),
    Case("shrink", "Shrink", [f32(10)], {"bias": 0.5, "lambd": 1.0}),
    Case("sign", "Sign", [np.array([-2, 0, 3], np.float32)]),
    Case("erf", "Erf", [f32(10)]),
    Case("div_int", "Div", [i64(7, -7, 9, -9), i64(2, 2, -4, -4)]),
    Case("pow_int", "Pow", [i64(2, 3, -2), i64(3, 2, 3)]),
    Case("pow_mixed", "Pow", [f32(4, lo=0.5, hi=2), i64(2)]),
]

SHAPE = [
    Case("reshape", "Reshape", [f32(2, 3, 4), i64(0, -1)], consts=(1,)),
    Case("reshape_allowzero", "Reshape", [f32(0, 3), i64(3, 0)], {"allowzero": 1}, consts=(1,)),
    Case("flatten0", "Flatten", [f32(2, 3, 4)], {"axis": 0}),
    Case("flatten_neg", "Flatten", [f32(2, 3, 4)], {"axis": -1}),
    Case("squeeze_all", "Squeeze", [f32(1, 3, 1)]),
    Case("squeeze_axes", "Squeeze", [f32(1, 3, 1), i64(-1)], consts=(1,)),
    Case("unsqueeze", "Unsqueeze", [f32(3, 4), i64(-1, 0)], consts=(1,)),
    Case("transpose", "Transpose", [f32(2, 3, 4)]),
    Case("transpose_perm", "Transpose", [f32(2, 3, 4)], {"perm": [1, 2, 0]}),
    Case("expand", "Expand", [f32(3, 1), i64(2, 1, 4)], consts=(1,)),
    Case("concat", "Concat", [f32(2, 3), f32(2, 1), f32(2, 0)], {"axis": -1}),
    Case("split_input", "Split", [f32(5, 4), i64(2, 3)], consts=(1,), outputs=2),
    Case("split_equal13", "Split", [f32(6, 2)], opset=13, outputs=3),
    Case("split_num_outputs", "Split", [f32(2, 7)], {"axis": 1, "num_outputs": 3}, outputs=3),
    Case("slice", "Slice", [f32(5, 6), i64(1, -4), i64(100, -1), i64(0, 1), i64(2, 1)], consts=(1, 2, 3, 4)),
    Case("slice_neg_step", "Slice", [f32(5, 6), i64(-1, 4), i64(-2**63, 0), i64(1, 0), i64(-2, -1)],
         consts=(1, 2, 3, 4)),
    Case("slice_no_axes", "Slice", [f32(5, 6), i64(2), i64(4)], consts=(1, 2)),
    Case("gather", "Gather", [f32(3, 4, 2), np.array([[0, -1], [2, 1]], np.int64)], {"axis": 1}),
    Case("gather_scalar", "Gather", [f32(3, 4), np.int64(-1)], consts=(1,)),
    Case("gather_elements", "GatherElements", [f32(3, 4), np.array([[0, -1, 2], [3, 1, 0]], np.int64)],
         {"axis": 1}),
    Case("gather_nd", "GatherND", [f32(3, 4, 2), np.array([[0, 1], [2, -1]], np.int64)]),
    Case("gather_nd_batch", "GatherND", [f32(2, 3, 4), np.array([[[1], [0]], [[2], [2]]], np.int64)],
         {"batch_dims": 1}),
    Case("tile", "Tile", [f32(2, 3), i64(2, 3)], consts=(1,)),
    Case("shape", "Shape", [f32(2, 3, 4)]),
    Case("shape_slice", "Shape", [f32(2, 3, 4)], {"start": -2, "end": 10}),
    Case("size", "Size", [f32(2, 3, 4)]),
    Case("constant_of_shape", "ConstantOfShape", [i64(2, 3)],
         {"value": numpy_helper.from_array(np.array([7], np.int64))}, consts=(0,)),
    Case("constant_of_shape_default", "ConstantOfShape", [i64(4)], consts=(0,)),
    Case("constant_floats", "Constant", [], {"value_floats": [1.5, 2.0]}),
    Case("constant_int", "Constant", [], {"value_int": 3}),
    Case("constant_tensor", "Constant", [], {"value": numpy_helper.from_array(f32(2, 2))}),
    Case("range_float", "Range", [np.float32(1), np.float32(2.5), np.float32(0.4)], consts=(0, 1, 2)),
    Case("range_int_down", "Range", [np.int64(10), np.int64(3), np.int64(-3)], consts=(0, 1, 2)),
    Case("one_hot", "OneHot", [np.array([[1, -1], [5, 0]], np.int64), np.int64(4), np.array([-2, 3], np.float32)],
         {"axis": 0}, consts=(1,)),
    Case("pad_constant", "Pad", [f32(2, 3), i64(1, 0, 0, 2), np.float32(1.5)], consts=(1, 2)),
    Case("pad_negative", "Pad", [f32(4, 3), i64(-1, 1, 2, -1)], consts=(1,)),
    Case("pad_reflect", "Pad", [f32(3, 4), i64(2, 1, 1, 3)], {"mode": "reflect"}, consts=(1,)),
    Case("pad_edge", "Pad", [f32(3, 4), i64(2, 1, 1, 3)], {"mode": "edge"}, consts=(1,)),
    Case("pad_wrap", "Pad", [f32(3, 4), i64(2, 1, 1, 3)], {"mode": "wrap"}, consts=(1,), opset=19),
    Case("pad_axes", "Pad", [f32(2, 3, 4), i64(1, 2), None, i64(-1)], consts=(1, 3)),
    Case("pad_dynamic_value", "Pad", [f32(2, 3), i64(1, 0, 0, 2), np.float32(-4)], consts=(1,)),
    Case("depth_to_space", "DepthToSpace", [f32(1, 8, 2, 3)], {"blocksize": 2}),
    Case("depth_to_space_crd", "DepthToSpace", [f32(1, 8, 2, 3)], {"blocksize": 2, "mode": "CRD"}),
    Case("space_to_depth", "SpaceToDepth", [f32(2, 2, 4, 6)], {"blocksize": 2}),
    Case("trilu_upper", "Trilu", [f32(2, 4, 5), np.int64(1)], consts=(1,)),
    Case("trilu_lower", "Trilu", [f32(4, 5), np.int64(-1)], {"upper": 0}, consts=(1,)),
    Case("eye_like", "EyeLike", [f32(3, 5)], {"k": 1, "dtype": TensorProto.INT64}),
    Case("scatter_elements_add", "ScatterElements",
         [f32(3, 4), np.array([[0, 1, 1], [3, 3, -1]], np.int64), f32(2, 3)],
         {"axis": 1, "reduction": "add"}, consts=(1,)),
    Case("scatter_elements", "ScatterElements",
         [f32(3, 4), np.array([[2, 0], [1, 1]], np.int64), f32(2, 2)], consts=(1,)),
    Case("scatter_nd", "ScatterND", [f32(4, 3), np.array([[1], [3]], np.int64), f32(2, 3)], consts=(1,)),
    Case("scatter_nd_max", "ScatterND", [f32(4, 3), np.array([[1, 2], [1, 2], [0, 0]], np.int64), f32(3)],
         {"reduction": "max"}, consts=(1,)),
]

EINSUM = [(eq, xs) for eq, xs in [
    ("ij,jk->ik", [f32(2, 3), f32(3, 4)]),
    ("bij,bjk->bik", [f32(2, 2, 3), f32(2, 3, 4)]),
    ("...ii->...i", [f32(2, 3, 3)]),
    ("ij->", [f32(2, 3)]),
    ("i,i", [f32(5), f32(5)]),
    ("ij,j->i", [f32(2, 3), f32(3)]),
    ("ij,jk", [f32(2, 3), f32(3, 4)]),
    ("ji", [f32(2, 3)]),
    ("abc,cd,de->ae", [f32(2, 3, 4), f32(4, 2), f32(2, 3)]),
    ("i,j->ij", [f32(3), f32(4)]),
    ("...ij,...jk->...ik", [f32(2, 1, 2, 3), f32(1, 3, 3, 4)]),
    ("iij->j", [f32(3, 3, 2)]),
]]
LINALG = [Case(f"einsum_{eq}", "Einsum", xs, {"equation": eq}, tol=1e-4) for eq, xs in EINSUM] + [
    Case("matmul_vec_mat", "MatMul", [f32(3), f32(3, 4)]),
    Case("matmul_batched", "MatMul", [f32(2, 1, 2, 3), f32(3, 3, 4)]),
    Case("gemm", "Gemm", [f32(3, 2), f32(4, 3), f32(4)], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
    Case("gemm_no_c", "Gemm", [f32(2, 3), f32(3, 4)]),
    Case("gemm_c_scalar", "Gemm", [f32(2, 3), f32(3, 4), np.float32(1.5)], consts=(2,)),
]

REDUCE = [
    Case(f"{op}_{tag}", op, [f32(3, 4, 5, lo=0.1)] + ([i64(*axes)] if axes is not None and opset >= 18 else []),
         {"keepdims": keep, **({"axes": list(axes)} if axes is not None and opset < 18 else {})},
         consts=(1,), opset=opset, tol=1e-4)
    for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
    for tag, axes, keep, opset in [("axes18", (0, -1), 1, 18), ("all_nokeep", None, 0, 18),
                                   ("attr13", (1,), 0, 13 if op != "ReduceSum" else 18)]
] + [
    Case("reduce_sum13_input", "ReduceSum", [f32(3, 4), i64(1)], consts=(1,), opset=13),
    Case("reduce_noop", "ReduceSum", [f32(3, 4), np.zeros(0, np.int64)], {"noop_with_empty_axes": 1}, consts=(1,)),
    Case("reduce_max_empty", "ReduceMax", [f32(0, 3), i64(0)], consts=(1,)),
    Case("reduce_sum_int", "ReduceSum", [i64(1, 2, 3)]),
    Case("argmax", "ArgMax", [TIES], {"axis": 1}),
    Case("argmax_last", "ArgMax", [TIES], {"axis": 1, "select_last_index": 1, "keepdims": 0}),
    Case("argmin_last", "ArgMin", [TIES], {"axis": 0, "select_last_index": 1}),
    Case("cumsum", "CumSum", [f32(3, 7), np.int64(1)], consts=(1,)),
    Case("cumsum_excl_rev", "CumSum", [f32(5, 2), np.int32(0)], {"exclusive": 1, "reverse": 1}, consts=(1,)),
    Case("cumsum_int", "CumSum", [i64(1, 2, 3, 4, 5), np.int64(-1)], {"exclusive": 1}, consts=(1,)),
    Case("topk", "TopK", [TIES, i64(3)], consts=(1,), outputs=2),
    Case("topk_smallest_axis0", "TopK", [TIES, i64(2)], {"axis": 0, "largest": 0}, consts=(1,), outputs=2),
    Case("topk_int", "TopK", [i64(5, -1, 5, 7, -9), i64(4)], consts=(1,), outputs=2),
    Case("topk_inf", "TopK", [np.array([-np.inf, 1, -np.inf, 2], np.float32), i64(4)], consts=(1,), outputs=2),
]

CASES = ELEMENTWISE + SHAPE + LINALG + REDUCE


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_onnxruntime(case):
    check(case)


@pytest.mark.parametrize("name", ["atan32", "fmod_float", "slice_neg_step", "gather_nd_batch", "pad_reflect",
                                  "scatter_elements_add", "einsum_abc,cd,de->ae", "topk", "cumsum_excl_rev",
                                  "ReduceLogSumExp_axes18", "argmax_last", "one_hot"])
def test_matches_onnxruntime_on_cpu(name):
    check(next(c for c in CASES if c.id == name), device="cpu")


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------- errors
def _unchecked(c: Case):
    """A model onnx's checker would refuse: the converter's own message is under test."""
    names = []
    graph_inputs, inits = [], []
    for k, x in enumerate(c.inputs):
        names.append(f"in{k}")
        x = np.asarray(x)
        if k in c.consts:
            inits.append(numpy_helper.from_array(x, f"in{k}"))
        else:
            graph_inputs.append(helper.make_tensor_value_info(f"in{k}", helper.np_dtype_to_tensor_dtype(x.dtype),
                                                              x.shape))
    outs = [f"out{k}" for k in range(c.outputs)]
    g = helper.make_graph([helper.make_node(c.op, names, outs, **c.attrs)], c.id, graph_inputs,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", c.opset)])


def test_cast_ignores_saturate_outside_float8():
    # onnxruntime refuses the attribute there; the spec says it only matters for float 8 types
    x = np.array([1e5, -3.25, 0.1], np.float32)
    c = Case("cast_saturate", "Cast", [x], {"to": TensorProto.FLOAT16, "saturate": 0}, opset=19)
    out = sf.onnx.load(model(c)).run(x)[0]
    assert out.dtype == np.float16
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, x.astype(np.float16))


def test_shape_inputs_computed_at_run_time_ask_for_constants():
    c = Case("dyn", "Reshape", [f32(2, 3), i64(3, 2)])
    with pytest.raises(OnnxNeedsConstant, match="in1") as e:
        sf.onnx.load(model(c))
    assert e.value.name == "in1"
    out = sf.onnx.load(model(c), constants={"in1": i64(3, 2)}).run(c.inputs[0])[0]
    np.testing.assert_array_equal(out, c.inputs[0].reshape(3, 2))


@pytest.mark.parametrize("case, reason", [
    (Case("bf16", "Cast", [f32(3)], {"to": TensorProto.BFLOAT16}), "dtype bfloat16"),
    (Case("reflect_wide", "Pad", [f32(2, 3), i64(0, 3, 0, 0)], {"mode": "reflect"}, consts=(1,)),
     "Pad: reflect wider than the input"),
])
def test_unsupported_cases_say_why(case, reason):
    with pytest.raises(OnnxUnsupported) as e:
        sf.onnx.load(_unchecked(case))
    assert e.value.reason == reason


@pytest.mark.parametrize("case, message", [
    (Case("split_bad", "Split", [f32(5, 2), i64(2, 2)], consts=(1,), outputs=2), "do not cut axis 0"),
    (Case("gemm_3d", "Gemm", [f32(2, 2, 2), f32(2, 2)]), "must be matrices"),
    (Case("squeeze_not1", "Squeeze", [f32(2, 3), i64(0)], consts=(1,)), "not all of size 1"),
    (Case("flatten_axis", "Flatten", [f32(2, 3)], {"axis": 3}), "axis 3 is out of range"),
    (Case("topk_big_k", "TopK", [f32(2, 3), i64(4)], consts=(1,), outputs=2), "K = 4 is outside"),
    (Case("einsum_rank", "Einsum", [f32(2, 3)], {"equation": "ijk->i"}), "does not fit an operand of rank 2"),
    (Case("scatter_oob", "ScatterND", [f32(2, 3), np.array([[2]], np.int64), f32(1, 3)], consts=(1,)),
     "out of range"),
    (Case("pad_mode", "Pad", [f32(2, 3), i64(0, 1, 0, 0)], {"mode": "mirror"}, consts=(1,)), "mode must be"),
])
def test_bad_attributes_name_the_node(case, message):
    with pytest.raises(OnnxError, match=message) as e:
        sf.onnx.load(_unchecked(case))
    assert f"({case.op})" in str(e.value) and not isinstance(e.value, OnnxUnsupported)


# ----------------------------------------------------------------------------- onnx's node test cases
SUITE = """abs acos asin atan acosh_example asinh atanh cosh sinh tan_example argmax_negative_axis_keepdims_example
argmin_keepdims_example_select_last_index cast_FLOAT_to_DOUBLE celu clip_default_inbounds
concat_3d_axis_negative_1 constantofshape_int_zeros cumsum_2d_axis_1 cumsum_1d_reverse_exclusive
depthtospace_crd_mode_example edge_pad einsum_batch_diagonal einsum_inner_prod elu expand_dim_changed
eyelike_with_dtype flatten_negative_axis1 gather_elements_negative_indices gathernd_example_int32_batch_dim1
gather_2d_indices gelu_tanh_2 gemm_all_attributes hardsigmoid hardswish isinf_negative isnan leakyrelu
matmul_3d max_example mean_example min_one_input mish mod_mixed_sign_int64 mod_mixed_sign_float64
onehot_negative_indices prelu_broadcast range_int32_type_negative_delta reduce_l2_keep_dims_random
reduce_log_sum_exp_empty_set reduce_max_bool_inputs reduce_mean_default_axes_keepdims_random
reduce_min_empty_set reduce_prod_do_not_keepdims_random reduce_sum_empty_axes_input_noop reflect_pad
reshape_allowzero_reordered reshape_negative_extended_dims scatter_elements_with_duplicate_indices
scatternd_multiply selu shape_start_negative_1 shrink_soft size slice_neg_steps softsign spacetodepth
split_variable_parts_2d_opset18 split_1d_uneven_split_opset18 squeeze_negative_axes sum_example
thresholdedrelu tile_precomputed top_k_smallest top_k_same_values_2d transpose_all_permutations_3 tril_neg
triu_square unsqueeze_negative_axes where_long_example wrap_pad xor_bcast4v4d""".split()


@pytest.fixture(scope="module")
def suite():
    import warnings
    from onnx.backend.test.case import node
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in node.collect_testcases(None)}


def run_suite_case(c, device="interp"):
    """Each data set through symfuse; inputs the converters need at import become constants."""
    init = {t.name for t in c.model.graph.initializer}
    names = [i.name for i in c.model.graph.input if i.name not in init]
    as_array = lambda x: numpy_helper.to_array(x) if isinstance(x, TensorProto) else np.asarray(x)  # noqa: E731
    for inputs, outputs in c.data_sets:
        feed = dict(zip(names, map(as_array, inputs)))
        consts = {}
        while True:
            try:
                m = sf.onnx.load(c.model, constants=consts)
                break
            except OnnxNeedsConstant as e:
                if e.name not in feed or e.name in consts:
                    raise
                consts[e.name] = feed[e.name]
        got = m.run(*[feed[k] for k in names if k not in consts], device=device)
        for g, want in zip(got, map(as_array, outputs)):
            g = np.asarray(g)
            assert g.dtype == want.dtype and g.shape == want.shape
            if want.dtype.kind == "f":
                np.testing.assert_allclose(g, want, rtol=c.rtol, atol=c.atol)
            else:
                np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("name", SUITE)
def test_onnx_node_case(suite, name):
    run_suite_case(suite[f"test_{name}"])



@pytest.mark.parametrize("k", [1, 4, 5, 9])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk_both_compositions(k, largest):
    # k <= 4: rounds of max and mask; larger k: one ranking of all pairs
    x = np.round(f32(3, 9), 0)                # ties
    x[0, 2], x[1, 5], x[2, 0] = np.inf, -np.inf, -np.inf
    c = Case(f"topk{k}", "TopK", [x, i64(k)], {"largest": largest}, consts=(1,), outputs=2)
    check(c)
    if k == 9 and largest:
        check(c, device="cpu")
