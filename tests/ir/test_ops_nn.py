"""nn ops: interpreter results against independent numpy code, gradients against
central finite differences (float64), second derivatives, and error messages."""
import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import symfuse as sf
from symfuse.errors import AxisError, DTypeError, GradError, ShapeError, SymfuseError
from symfuse.ir.core import apply
from symfuse.ir.ops.nn import conv2d_grad_input, conv2d_grad_weight


def run(inputs, outputs, *args):
    return sf.function(inputs, outputs, device="interp")(*args)


# --------------------------------------------------------------------------- gradient checking
def grad_check(build, arrays, order=1, eps=1e-6, rtol=1e-5):
    """sf.grad of cost = sum(build(*xs) * R) (R fixed and random) against central differences
    with respect to every float input. order=2 differentiates a random projection of the
    first gradient instead, so it checks the VJPs of the gradient graph."""
    rng = np.random.default_rng(1)
    xs = [sf.tensor(f"x{i}", a.shape, a.dtype.name) for i, a in enumerate(arrays)]
    wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    out = build(*xs)
    cost = (out * sf.constant(rng.standard_normal(out.shape))).sum()
    if order == 2:
        gs = sf.grad(cost, [xs[i] for i in wrt], disconnected="zero")
        cost = sum((g * sf.constant(rng.standard_normal(g.shape))).sum() for g in gs)
    grads = sf.grad(cost, [xs[i] for i in wrt], disconnected="zero")
    got = run(xs, grads, *arrays)
    f = sf.function(xs, cost, device="interp")
    for i, g in zip(wrt, got):
        a = arrays[i]
        num = np.zeros_like(a)
        args = list(arrays)
        for j in np.ndindex(a.shape):
            d = np.zeros_like(a)
            d[j] = eps
            args[i] = a + d
            hi = f(*args)
            args[i] = a - d
            num[j] = (hi - f(*args)) / (2 * eps)
        scale = max(1.0, np.abs(num).max())
        np.testing.assert_allclose(g, num, rtol=rtol, atol=rtol * scale, err_msg=f"input {i}")


def f64(rng, *shape):
    return rng.standard_normal(shape)


# --------------------------------------------------------------------------- conv2d
def conv_naive(x, w, s, p, d, groups):
    """Direct loops over output positions; numpy only sums one patch at a time."""
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    ho = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    y = np.zeros((n, o, ho, wo), x.dtype)
    for oc, r, q in itertools.product(range(o), range(ho), range(wo)):
        g = oc // (o // groups)
        patch = xp[:, g * i:(g + 1) * i, r * s[0]:r * s[0] + d[0] * (kh - 1) + 1:d[0],
                   q * s[1]:q * s[1] + d[1] * (kw - 1) + 1:d[1]]
        y[:, oc, r, q] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return y


CONV_CASES = [  # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 6, 5), (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 1),
    ((1, 4, 7, 8), (4, 2, 2, 3), (2, 3), (1, 0), (1, 2), 2),     # stride leftovers
    ((2, 3, 5, 6), (3, 1, 3, 2), (1, 2), (2, 1), (2, 1), 3),     # depthwise
    ((1, 2, 4, 4), (2, 2, 1, 1), (3, 3), (0, 0), (1, 1), 1),     # 1x1, skip rows
]


@pytest.mark.parametrize("xs,ws,s,p,d,g", CONV_CASES)
def test_conv2d_matches_naive_loops(rng, xs, ws, s, p, d, g):
    xv, wv = f64(rng, *xs), f64(rng, *ws)
    x, w = sf.tensor("x", xs, "float64"), sf.tensor("w", ws, "float64")
    y = run([x, w], sf.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g), xv, wv)
    np.testing.assert_allclose(y, conv_naive(xv, wv, s, p, d, g), rtol=1e-12, atol=1e-12)


@settings(max_examples=25)
@given(n=st.integers(1, 2), groups=st.integers(1, 3), ig=st.integers(1, 2), og=st.integers(1, 2),
       h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)), p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_conv2d_random_configs(n, groups, ig, og, h, w, kh, kw, s, p, d):
    assume(h + 2 * p[0] >= d[0] * (kh - 1) + 1 and w + 2 * p[1] >= d[1] * (kw - 1) + 1)
    rng = np.random.default_rng(h * 100 + w)
    xv = rng.standard_normal((n, groups * ig, h, w)).astype(np.float32)
    wv = rng.standard_normal((groups * og, ig, kh, kw)).astype(np.float32)
    x, wt = sf.tensor("x", xv.shape), sf.tensor("w", wv.shape)
    y = run([x, wt], sf.conv2d(x, wt, s, p, d, groups), xv, wv)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, conv_naive(xv, wv, s, p, d, groups), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xs,ws,s,p,d,g", CONV_CASES[1:3])
def test_conv2d_gradients(rng, xs, ws, s, p, d, g):
    build = lambda x, w: sf.conv2d(x, w, s, p, d, g)  # noqa: E731
    grad_check(build, [f64(rng, *xs), f64(rng, *ws)])
    grad_check(build, [f64(rng, *xs), f64(rng, *ws)], order=2)


@pytest.mark.parametrize("xs,ws,s,p,d,g", CONV_CASES[1:3])
def test_conv2d_gradient_ops_have_exact_vjps(rng, xs, ws, s, p, d, g):
    attrs = {"stride": s, "padding": p, "dilation": d, "groups": g}
    ys = conv_naive(np.zeros(xs), np.zeros(ws), s, p, d, g).shape
    grad_check(lambda gy, w: conv2d_grad_input(gy, w, xs, attrs), [f64(rng, *ys), f64(rng, *ws)])
    grad_check(lambda x, gy: conv2d_grad_weight(x, gy, ws, attrs), [f64(rng, *xs), f64(rng, *ys)])


def test_conv2d_padding_same_and_valid(rng):
    xv, wv = f64(rng, 1, 2, 6, 5), f64(rng, 3, 2, 4, 3)      # even kernel height: asymmetric padding
    x, w = sf.tensor("x", xv.shape, "float64"), sf.tensor("w", wv.shape, "float64")
    same, valid = run([x, w], [sf.conv2d(x, w, padding="same"), sf.conv2d(x, w, padding="valid")], xv, wv)
    assert same.shape == (1, 3, 6, 5)
    ref = conv_naive(np.pad(xv, ((0, 0), (0, 0), (1, 2), (1, 1))), wv, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(same, ref, rtol=1e-12)
    np.testing.assert_allclose(valid, conv_naive(xv, wv, (1, 1), (0, 0), (1, 1), 1), rtol=1e-12)
    grad_check(lambda x, w: sf.conv2d(x, w, padding="same"), [xv, wv])


# --------------------------------------------------------------------------- pooling
def pool_naive(x, k, s, p, mode):
    pad = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=pad)
    ho, wo = (xp.shape[2] - k[0]) // s[0] + 1, (xp.shape[3] - k[1]) // s[1] + 1
    y = np.zeros(x.shape[:2] + (ho, wo), x.dtype)
    for r, q in itertools.product(range(ho), range(wo)):
        win = xp[:, :, r * s[0]:r * s[0] + k[0], q * s[1]:q * s[1] + k[1]]
        y[:, :, r, q] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / (k[0] * k[1])
    return y


def max_pool_grad_naive(x, g, k, s, p):
    """Each window's cotangent goes to its first maximum in row-major order."""
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=-np.inf)
    dxp = np.zeros_like(xp)
    for n, c, r, q in np.ndindex(g.shape):
        win = xp[n, c, r * s[0]:r * s[0] + k[0], q * s[1]:q * s[1] + k[1]]
        flat = win.reshape(-1)
        a = next(j for j in range(flat.size) if flat[j] == flat.max())
        dxp[n, c, r * s[0] + a // k[1], q * s[1] + a % k[1]] += g[n, c, r, q]
    return dxp[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]]


POOL_CASES = [((2, 2), None, (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 1)), ((3, 2), (2, 3), (0, 1))]


@pytest.mark.parametrize("k,s,p", POOL_CASES)
def test_pools_match_naive(rng, k, s, p):
    xv = f64(rng, 2, 3, 7, 6)
    x = sf.tensor("x", xv.shape, "float64")
    mx, av = run([x], [sf.max_pool2d(x, k, s, p), sf.avg_pool2d(x, k, s, p)], xv)
    st_ = s or k
    np.testing.assert_array_equal(mx, pool_naive(xv, k, st_, p, "max"))
    np.testing.assert_allclose(av, pool_naive(xv, k, st_, p, "avg"), rtol=1e-12)


@pytest.mark.parametrize("k,s,p", POOL_CASES)
def test_pool_gradients(rng, k, s, p):
    xv = f64(rng, 1, 2, 6, 5)
    grad_check(lambda x: sf.max_pool2d(x, k, s, p), [xv])
    grad_check(lambda x: sf.avg_pool2d(x, k, s, p), [xv])
    # avg_pool2d_grad is linear in g; its VJP is avg_pool2d
    ys = pool_naive(xv, k, s or k, p, "avg").shape
    grad_check(lambda g: apply("avg_pool2d_grad", [g], {"input_shape": xv.shape, "kernel": k,
                                                         "stride": s, "padding": p}), [f64(rng, *ys)])


@pytest.mark.parametrize("k,s,p", POOL_CASES[1:3])
def test_max_pool_ties_route_to_first_maximum(rng, k, s, p):
    xv = rng.integers(0, 3, size=(2, 2, 6, 7)).astype(np.float32)     # many ties, overlapping windows
    x = sf.tensor("x", xv.shape)
    y = sf.max_pool2d(x, k, s, p)
    gv = rng.standard_normal(y.shape).astype(np.float32)
    g = sf.tensor("g", y.shape)
    got = run([x, g], sf.grad((y * g).sum(), x), xv, gv)
    np.testing.assert_allclose(got, max_pool_grad_naive(xv, gv, k, s or k, p), rtol=1e-6, atol=1e-6)


def test_max_pool_second_derivative(rng):
    # disjoint windows: max_pool2d_grad is differentiable wrt its cotangent
    xv = f64(rng, 1, 2, 4, 6)
    a = {"kernel": (2, 3), "stride": (2, 3), "padding": (0, 1)}
    build = lambda x, g: apply("max_pool2d_grad", [x, sf.max_pool2d(x, (2, 3), padding=(0, 1)), g], a)  # noqa
    grad_check(build, [xv, f64(rng, 1, 2, 2, 2)])
    # overlapping windows: a clear error instead of a silently wrong zero
    x = sf.tensor("x", (1, 1, 5, 5), "float64")
    gx = sf.grad((sf.max_pool2d(x, 3, 1) ** 2).sum(), x)
    with pytest.raises(GradError, match="overlapping windows"):
        sf.function([x], sf.grad((gx * gx).sum(), x), device="interp")


# --------------------------------------------------------------------------- softmax family
def np_softmax(x, ax):
    e = np.exp(x - x.max(ax, keepdims=True))
    return e / e.sum(ax, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_values(rng, axis):
    xv = f64(rng, 3, 4, 5) * 3
    x = sf.tensor("x", xv.shape, "float64")
    sm, lsm, lse, lsek = run([x], [sf.softmax(x, axis), sf.log_softmax(x, axis), sf.logsumexp(x, axis),
                                   sf.logsumexp(x, axis, keepdims=True)], xv)
    ref_lse = np.log(np.exp(xv).sum(axis))
    np.testing.assert_allclose(sm, np.exp(xv) / np.exp(xv).sum(axis, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(lsm, np.log(sm), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-12)
    np.testing.assert_allclose(lsek, np.expand_dims(ref_lse, axis), rtol=1e-12)


def test_softmax_family_is_stable():
    xv = np.array([[1000.0, 1001.0, -1000.0], [-1e4, -1e4, -1e4]], np.float32)
    x = sf.tensor("x", xv.shape)
    sm, lsm, lse = run([x], [sf.softmax(x), sf.log_softmax(x), sf.logsumexp(x)], xv)
    assert np.isfinite(sm).all() and np.isfinite(lsm).all() and np.isfinite(lse).all()
    np.testing.assert_allclose(lse, [1001 + np.log1p(np.exp(-1)), -1e4 + np.log(3)], rtol=1e-6)
    np.testing.assert_allclose(sm[1], [1 / 3] * 3, rtol=1e-6)


def test_logsumexp_axis_none_and_tuple(rng):
    xv = f64(rng, 2, 3, 4)
    x = sf.tensor("x", xv.shape, "float64")
    a, b, c = run([x], [sf.logsumexp(x, None), sf.logsumexp(x, (0, 2), keepdims=True),
                        sf.logsumexp(x, None, keepdims=True)], xv)
    np.testing.assert_allclose(a, np.log(np.exp(xv).sum()), rtol=1e-12)
    np.testing.assert_allclose(b, np.log(np.exp(xv).sum((0, 2), keepdims=True)), rtol=1e-12)
    assert c.shape == (1, 1, 1)
    grad_check(lambda x: sf.logsumexp(x, (0, 2)), [xv], order=2)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_gradients(rng, op):
    xv = f64(rng, 3, 4)
    f = getattr(sf, op)
    grad_check(lambda x: f(x, 0), [xv])
    grad_check(lambda x: f(x, -1), [xv], order=2)


def test_softmax_cross_entropy_values(rng):
    xv, tv = f64(rng, 4, 5), np_softmax(f64(rng, 4, 5), 1)
    x, t = sf.tensor("x", xv.shape, "float64"), sf.tensor("t", tv.shape, "float64")
    labels = np.array([0, 4, 2, 7])                               # 7 is out of range: zero row
    out, out_l = run([x, t], [sf.softmax_cross_entropy(x, t), sf.softmax_cross_entropy(x, labels)], xv, tv)
    logp = np.log(np_softmax(xv, 1))
    np.testing.assert_allclose(out, -(tv * logp).sum(1), rtol=1e-12)
    np.testing.assert_allclose(out_l, [-logp[0, 0], -logp[1, 4], -logp[2, 2], 0.0], rtol=1e-12)


def test_softmax_cross_entropy_labels_on_inner_axis(rng):
    xv = f64(rng, 2, 5, 3)
    lv = rng.integers(0, 5, size=(2, 3)).astype(np.int32)
    x, lab = sf.tensor("x", xv.shape, "float64"), sf.tensor("lab", lv.shape, "int32")
    out = run([x, lab], sf.softmax_cross_entropy(x, lab, axis=1), xv, lv)
    logp = np.log(np_softmax(xv, 1))
    ref = -np.take_along_axis(logp, lv[:, None, :], axis=1)[:, 0, :]
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    grad_check(lambda x: sf.softmax_cross_entropy(x, sf.constant(lv), axis=1), [xv], order=2)


def test_softmax_cross_entropy_gradients(rng):
    xv, tv = f64(rng, 3, 4), np_softmax(f64(rng, 3, 4), 0)
    grad_check(lambda x, t: sf.softmax_cross_entropy(x, t, axis=0), [xv, tv])
    grad_check(lambda x, t: sf.softmax_cross_entropy(x, t), [xv, tv], order=2)


# --------------------------------------------------------------------------- take, one_hot
def clamp(i, n):
    i = np.where(i < 0, i + n, i)
    return np.clip(i, 0, n - 1)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_values(rng, axis):
    xv = f64(rng, 4, 5, 3)
    iv = np.array([[0, -1, 2], [7, -9, 1]], np.int64)              # out-of-range indices clamp
    x, i = sf.tensor("x", xv.shape, "float64"), sf.tensor("i", iv.shape, "int64")
    y = run([x, i], sf.take(x, i, axis), xv, iv)
    np.testing.assert_array_equal(y, np.take(xv, clamp(iv, xv.shape[axis]), axis=axis))


def test_take_ints_unsigned_and_getitem():
    xv = np.arange(12, dtype=np.int32).reshape(4, 3)
    x = sf.tensor("x", xv.shape, "int32")
    iu = sf.tensor("iu", (3,), "uint32")
    a, b = run([x, iu], [sf.take(x, iu, 1), x[sf.constant(np.array([3, -1, 0], np.int32))]],
               xv, np.array([0, 2, 4000000000], np.uint32))
    np.testing.assert_array_equal(a, xv[:, [0, 2, 2]])
    np.testing.assert_array_equal(b, xv[[3, 3, 0]])


def test_take_gradients_accumulate(rng):
    iv = np.array([[1, 1, 3], [0, -1, 1]])                          # repeated indices
    grad_check(lambda x: sf.take(x, sf.constant(iv), 1), [f64(rng, 2, 4, 3)])
    grad_check(lambda x: sf.take(x, sf.constant(iv), 0) ** 3, [f64(rng, 4, 2)], order=2)
    x = sf.tensor("x", (3, 2), "float64")
    g = run([x], sf.grad(sf.take(x, sf.constant(np.array([2, 2, -1, 0]))).sum(), x), np.zeros((3, 2)))
    np.testing.assert_array_equal(g, [[1, 1], [0, 0], [3, 3]])


def test_one_hot(rng):
    iv = np.array([[0, 3, -1], [5, 2, 2]], np.int32)
    i = sf.tensor("i", iv.shape, "int32")
    a, b = run([i], [sf.one_hot(i, 4), sf.one_hot(i, 5, dtype="int32")], iv)
    assert a.dtype == np.float32 and a.shape == (2, 3, 4) and b.dtype == np.int32
    ref = (iv[..., None] == np.arange(4)).astype(np.float32)
    np.testing.assert_array_equal(a, ref)
    assert a[0, 2].sum() == 0 and a[1, 0].sum() == 0 and b[1, 0, 4] == 0 and b[1, 0].sum() == 0


# --------------------------------------------------------------------------- IR text
def test_nn_ops_print_and_parse(rng):
    x = sf.tensor("x", (2, 4, 8, 8))
    w = sf.tensor("w", (6, 2, 3, 3))
    lab = sf.tensor("lab", (2,), "int32")
    h = sf.max_pool2d(sf.relu(sf.conv2d(x, w, 2, 1, 1, 2)), 2)
    h = sf.avg_pool2d(h, 2, 1, 1).reshape(2, -1)
    loss = sf.softmax_cross_entropy(sf.take(h, sf.constant(np.array([0, 3, 5])), 1), lab).mean()
    f = sf.function([x, w, lab], [loss, sf.grad(loss, w), sf.one_hot(lab, 3, "float64")], device="interp")
    for fn in (f.function, f.source_function):
        text = str(fn)
        assert str(sf.ir.parse(text)) == text
    args = [rng.standard_normal((2, 4, 8, 8)).astype(np.float32),
            rng.standard_normal((6, 2, 3, 3)).astype(np.float32), np.array([1, 2], np.int32)]
    from symfuse.runtime.interp import evaluate
    for a, b in zip(evaluate(f.function, args), evaluate(sf.ir.parse(str(f.function)), args)):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- errors
def _t(shape, dtype="float32"):
    return sf.tensor("t", shape, dtype)


BAD = [
    ("conv2d", lambda: sf.conv2d(_t((1, 3, 5, 5)), _t((4, 2, 3, 3))), ShapeError, "input channels 3"),
    ("conv2d", lambda: sf.conv2d(_t((1, 4, 5, 5)), _t((3, 2, 3, 3)), groups=2), ShapeError, "not divisible"),
    ("conv2d", lambda: sf.conv2d(_t((1, 2, 2, 5)), _t((3, 2, 3, 3))), ShapeError, "empty"),
    ("conv2d", lambda: sf.conv2d(_t((2, 5, 5)), _t((3, 2, 3, 3))), ShapeError, "4-D"),
    ("conv2d", lambda: sf.conv2d(_t((1, 2, 5, 5)), _t((3, 2, 3, 3), "float64")), DTypeError, "different dtypes"),
    ("conv2d", lambda: sf.conv2d(_t((1, 2, 5, 5), "int32"), _t((3, 2, 3, 3), "int32")), DTypeError, "floating"),
    ("conv2d", lambda: sf.conv2d(_t((1, 2, 5, 5)), _t((3, 2, 3, 3)), stride=0), ShapeError, "stride"),
    ("conv2d", lambda: sf.conv2d(_t((1, 2, 5, 5)), _t((3, 2, 3, 3)), padding="full"), ShapeError, "padding"),
    ("conv2d", lambda: sf.conv2d(_t((1, 2, 5, 5)), _t((3, 2, 2, 2)), 2, "same"), ShapeError, "stride 1"),
    ("conv2d_grad_input", lambda: conv2d_grad_input(_t((1, 3, 3, 3)), _t((3, 2, 3, 3)), (1, 2, 6, 6),
                                                    {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}),
     ShapeError, "is not the conv2d output shape"),
    ("conv2d_grad_weight", lambda: conv2d_grad_weight(_t((1, 2, 5, 5)), _t((1, 3, 3, 3)), (3, 2, 2, 2),
                                                      {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}),
     ShapeError, "weight_shape"),
    ("max_pool2d", lambda: sf.max_pool2d(_t((1, 1, 1, 4)), 2), ShapeError, "empty"),
    ("max_pool2d", lambda: sf.max_pool2d(_t((1, 1, 4, 4)), 2, padding=2), ShapeError, "smaller than kernel"),
    ("avg_pool2d", lambda: sf.avg_pool2d(_t((4, 4)), 2), ShapeError, "4-D"),
    ("avg_pool2d", lambda: sf.avg_pool2d(_t((1, 1, 4, 4), "int32"), 2), DTypeError, "floating"),
    ("softmax", lambda: sf.softmax(_t((3, 4), "int32")), DTypeError, "floating"),
    ("log_softmax", lambda: sf.log_softmax(_t((3, 4)), axis=2), AxisError, "axis 2"),
    ("logsumexp", lambda: sf.logsumexp(_t((3, 0))), ShapeError, "empty"),
    ("logsumexp", lambda: sf.logsumexp(_t((3, 4)), (0, 5)), AxisError, "axis 5"),
    ("softmax_xent", lambda: sf.softmax_cross_entropy(_t((3, 4)), _t((3, 5))), ShapeError, "targets"),
    ("softmax_cross_entropy", lambda: sf.softmax_cross_entropy(_t((3, 4)), _t((4,), "int32")), ShapeError,
     "integer labels"),
    ("take", lambda: sf.take(_t((3, 4)), _t((2,))), DTypeError, "integer"),
    ("take", lambda: sf.take(_t((3, 4)), _t((2,), "int32"), axis=2), AxisError, "axis 2"),
    ("take", lambda: sf.take(_t((0, 4)), _t((2,), "int32")), ShapeError, "empty axis"),
    ("one_hot", lambda: sf.one_hot(_t((3,)), 4), DTypeError, "integer"),
    ("one_hot", lambda: sf.one_hot(_t((3,), "int32"), 0), ShapeError, "depth"),
]


@pytest.mark.parametrize("op,build,exc,fragment", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_inputs_raise_clear_errors(op, build, exc, fragment):
    with pytest.raises(exc) as e:
        build()
    assert isinstance(e.value, SymfuseError)
    msg = str(e.value)
    assert msg.startswith(op + ":") and fragment in msg, msg
    if op.startswith("conv2d") and "stride" not in fragment and "padding" not in fragment:
        assert "[" in msg       # the shapes are named
