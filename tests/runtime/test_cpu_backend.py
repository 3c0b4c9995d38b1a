"""The compiled backends agree with the reference interpreter: device="cpu"
(issue 3) and the CUDA kernels run on the CPU by device="cuda-emu" (issue 4);
fusion is as stated."""
import shutil

import numpy as np
import pytest

import symfuse as sf

# The C backend is registered as device "cpu" once its runtime library, memory
# planner and disk cache land (issue 3); until then these tests are collected but
# do not run, and the session notes say so.
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


DEVICES = ["cpu", "cuda-emu"]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def _agree(inputs, outs, args, rtol=1e-5, atol=1e-6, device="cpu", **kw):
    fi = sf.function(inputs, outs, device="interp", **kw)
    fc = sf.function(inputs, outs, device=device, **kw)
    ri, rc = fi(*args), fc(*args)
    if not isinstance(ri, list):
        ri, rc = [ri], [rc]
    for k, (a, b) in enumerate(zip(ri, rc)):
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"output {k}\n{fc.source}")
    if device == "cuda-emu":   # the same CUDA source must also compile for real GPUs
        for arch in ("sm_80", "sm_90"):
            fa = sf.function(inputs, outs, device="cuda", arch=arch, **kw)
            launches = {ln["kernel"] for k in fa.kernels for ln in k.launch_config}
            assert launches == set(fa.report.info.get("resources", {})), arch
    return fc


def test_elementwise_broadcast_views_and_reductions(rng, device):
    x = sf.tensor("x", (32, 16))
    b = sf.tensor("b", (16,))
    y = sf.tanh(x + b) * 2 - x.T.T
    outs = [y, (y * y).sum(axis=1), sf.relu(x).max(axis=0), x[::2, 1:5].T * 3, x.mean(), x[::-1, ::3] + 1,
            sf.where(x > 0, x, -x).min(axis=1, keepdims=True), sf.exp(x).prod(axis=0) / 1e3,
            (x.reshape(4, 8, 16).sum(axis=(0, 2)))]
    args = [rng.normal(size=(32, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32)]
    fc = _agree([x, b], outs, args, rtol=1e-4, atol=1e-5, device=device)
    kinds = [p.kind for k in fc.kernels for p in (getattr(k, "parts", None) or [k])]   # multi: its parts
    assert "pointwise" in kinds and "reduce" in kinds


def test_every_unary_op_on_cpu(rng, device):
    x = sf.tensor("x", (7, 5), "float64")
    pos = sf.tensor("p", (7, 5), "float64")
    fns = [sf.exp, sf.tanh, sf.sigmoid, sf.relu, sf.softplus, sf.erf, sf.sin, sf.cos, sf.abs, sf.sign,
           sf.negative, sf.expm1, sf.floor, sf.ceil, sf.round]
    pfns = [sf.log, sf.log1p, sf.sqrt, sf.rsqrt, sf.reciprocal]
    outs = [f(x) for f in fns] + [f(pos) for f in pfns] + [x ** 3, sf.maximum(x, 0.2), sf.minimum(x, pos),
                                                         sf.clip(x, -0.5, 0.5), (x > 0).astype("float64"),
                                                         (x * 100).astype("int32")]
    _agree([x, pos], outs, [rng.normal(size=(7, 5)), rng.uniform(0.1, 3, (7, 5))], rtol=1e-12, atol=1e-12,
           device=device)


def test_nan_propagates_like_numpy(device):
    x = sf.tensor("x", (4,))
    outs = [sf.relu(x), sf.maximum(x, 0.0), sf.minimum(0.0, x), x.max(), x.min()]
    _agree([x], outs, [np.array([np.nan, 1, -1, 2], np.float32)], device=device)


def test_integer_and_bool_reductions(rng, device):
    i = sf.tensor("i", (6, 5), "int32")
    outs = [i.sum(axis=0), i.max(axis=1), i.min(), (i > 0).astype("int32").sum(), i * 3 - 1]
    _agree([i], outs, [rng.integers(-50, 50, (6, 5)).astype(np.int32)], device=device)


def test_mlp_training_step_matches_interpreter(rng, device):
    n, dims = 32, [20, 64, 10]
    init = [rng.normal(0, 0.2, (a, b)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:])]
    xs = rng.normal(size=(n, dims[0])).astype(np.float32)
    ys = rng.integers(0, 10, n).astype(np.int32)
    results = {}
    for dev in ("interp", device):
        Ws = [sf.shared(w.copy(), name=f"W{k}") for k, w in enumerate(init)]
        bs = [sf.shared(np.zeros(w.shape[1], np.float32), name=f"b{k}") for k, w in enumerate(init)]
        x = sf.tensor("x", (n, dims[0]))
        y = sf.tensor("y", (n,), "int32")
        h = sf.relu(x @ Ws[0] + bs[0]) @ Ws[1] + bs[1]
        loss = -(sf.one_hot(y, 10) * sf.log(sf.softmax(h))).sum(axis=1).mean()
        params = Ws + bs
        grads = sf.grad(loss, params)
        step = sf.function([x, y], loss, updates=[(p, p - 0.1 * g) for p, g in zip(params, grads)], device=dev)
        losses = [float(step(xs, ys)) for _ in range(5)]
        results[dev] = (losses, [p.get_value() for p in params], step)
    np.testing.assert_allclose(results[device][0], results["interp"][0], rtol=1e-4)
    for a, b in zip(results[device][1], results["interp"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    step = results[device][2]
    assert sum(1 for k in step.kernels if "softmax_xent" in k.name) == 1


def test_report_stages_add_up_to_total(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))   # cold: the C compile dominates
    x = sf.tensor("x", (64, 64))
    f = sf.function([x], sf.tanh(x @ x).sum(), device="cpu")
    total = f.report.total_seconds
    parts = sum(s.seconds for s in f.report.children(None))   # a parent's time includes its children's
    assert abs(total - parts) <= 0.05 * total
    names = [s.name for s in f.report.stages]
    for stage in ("build graph", "fusion", "memory plan", "codegen", "c compile", "load"):
        assert stage in names


@pytest.mark.parametrize("device,n_graphs", [("cpu", 500), ("cuda-emu", 200)])
def test_random_graphs_equal_interpreter(device, n_graphs):
    """Random graphs from the pass-pipeline test, compiled 25 to a translation unit."""
    from test_random_graphs import GraphGen
    per_tu = 25
    for start in range(0, n_graphs, per_tu):
        inputs, outs, args = [], [], []
        for seed in range(start, start + per_tu):
            g = GraphGen(seed)
            built = g.build()
            inputs += g.inputs
            args += g.args
            outs += [o.v for o in built]
        _agree(inputs, outs, args, rtol=1e-4, atol=1e-5, device=device)


def test_lenet5_gradients_match_interpreter(device):
    from test_models_grad import lenet
    rng = np.random.default_rng(3)
    x, y, loss, params = lenet(rng, batch=3)
    xv = rng.normal(size=(3, 1, 28, 28))
    yv = np.array([1, 5, 9], np.int32)
    fc = _agree([x, y], [loss] + sf.grad(loss, params), [xv, yv], rtol=1e-9, atol=1e-12, device=device)
    names = " ".join(k.name for k in fc.kernels)
    assert "conv2d_grad_weight" in names and "max_pool2d_grad" in names and "softmax_xent" in names


def test_planned_arena_is_smaller_than_naive_and_near_the_bound():
    x = sf.tensor("x", (64, 128))
    W = sf.shared(np.ones((128, 128), np.float32), name="W")
    h = x
    for _ in range(6):
        h = sf.tanh(h @ W)
    loss = h.sum()
    f = sf.function([x], loss, updates=[(W, W - 0.01 * sf.grad(loss, W))], device="cpu")
    mem = f.report.info["memory"]
    assert mem["lower_bound_bytes"] <= mem["arena_bytes"] <= 1.10 * mem["lower_bound_bytes"]
    assert mem["arena_bytes"] * 2 <= mem["naive_bytes"]


@pytest.mark.parametrize("shape,axis", [((3, 37), 1), ((5, 4, 45), (0, 2)), ((2, 64, 3), 1), ((6, 200), None)])
def test_long_sums_accumulate_in_lanes_and_match_numpy(shape, axis):
    """Float sums whose innermost reduced loop is long are split over lanes (a
    vectorisable accumulation in double); remainders and outer reduced loops
    included, the result equals the float64 sum rounded to float32."""
    rng = np.random.default_rng(7)
    xv = rng.normal(size=shape).astype(np.float32)
    x = sf.tensor("x", shape)
    f = sf.function([x], sf.sum(x * 2.0, axis=axis), device="cpu")
    assert any("lane[" in k.source for k in f.kernels), [k.name for k in f.kernels]
    want = (xv.astype(np.float64) * 2.0).sum(axis=axis)
    np.testing.assert_allclose(f(xv), want.astype(np.float32), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(70_001,), (40,), (33,), (3, 2_000 + 7), (131, 500), (4, 3, 17)])
def test_vector_blocks_cover_every_element(shape):
    """Pointwise loops run in literal blocks for the vectoriser: a flat loop over
    a thread's share in blocks (the last share also does the remainder), an
    innermost row up to a multiple of the block and then a scalar tail. Every
    element is written once, in place or not, parallel or not."""
    rng = np.random.default_rng(11)
    xv = rng.normal(size=shape).astype(np.float32)
    bv = rng.normal(size=shape[-1:]).astype(np.float32)
    W = sf.shared(xv.copy(), name="W")
    x, b = sf.tensor("x", shape), sf.tensor("b", shape[-1:])
    f = sf.function([x, b], [sf.tanh(x + b), x * 3.0], updates=[(W, W - 0.5 * W * W)], device="cpu")
    t, y = f(xv, bv)
    np.testing.assert_allclose(t, np.tanh(xv + bv), rtol=1e-5, atol=2e-6)
    np.testing.assert_array_equal(y, xv * np.float32(3.0))
    np.testing.assert_allclose(W.get_value(), xv - np.float32(0.5) * xv * xv, rtol=1e-6, atol=1e-6)
    src = "\n".join(k.source for k in f.kernels)
    n = int(np.prod(shape))
    if len(shape) == 1 and n >= 32:
        assert "ib * 16 + il" in src, src
    if len(shape) > 1 and shape[-1] > 16 and shape[-1] % 16:
        assert f"= {shape[-1] - shape[-1] % 16}; " in src, src
