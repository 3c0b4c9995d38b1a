"""symfuse.nn: layers (against numpy and finite differences), losses, initialisers,
optimisers (against numpy update rules), BatchNorm/Dropout semantics, save/load,
data loading and the PNG writer."""
import gzip
import os
import struct
import sys
import zlib

import numpy as np
import pytest

import symfuse as sf
from symfuse import nn
from symfuse.errors import InputError
from symfuse.nn import data as D

# --------------------------------------------------------------------------- numpy references


def conv_ref(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out


def pool_ref(x, k, s, p, mode):
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    ho = (x.shape[2] + 2 * p - k) // s + 1
    wo = (x.shape[3] + 2 * p - k) // s + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / (k * k)
    return out


def run(graph_fn, xv, device="interp", train=False):
    x = sf.tensor("x", xv.shape, str(xv.dtype))
    return sf.function([x], graph_fn(x), device=device)(xv)


# --------------------------------------------------------------------------- finite differences
def fd_check(layer, x_shape, rng, train=False, before_call=None, eps=1e-6, tol=1e-6):
    """Directional derivatives of sum(layer(x) * R) w.r.t. x and every parameter
    (float64, interpreter) against central differences, plus two coordinates each."""
    x = sf.tensor("x", x_shape, "float64")
    y = layer(x, train=train)
    r = sf.constant(rng.normal(size=y.shape))
    loss = (y * r).sum()
    wrt = [x] + layer.params
    f_loss = sf.function([x], loss, device="interp")
    f_grad = sf.function([x], sf.grad(loss, wrt), device="interp")
    xv = rng.normal(size=x_shape)

    def call(f, xa):
        if before_call:
            before_call()
        return f(xa)

    grads = call(f_grad, xv)
    for k, (w, g) in enumerate(zip(wrt, grads)):
        def L(delta):
            if k == 0:
                return float(call(f_loss, xv + delta))
            base = w.get_value()
            w.set_value(base + delta)
            try:
                return float(call(f_loss, xv))
            finally:
                w.set_value(base)
        shape = g.shape
        directions = [rng.normal(size=shape)]
        for _ in range(2):
            e = np.zeros(shape)
            e[tuple(rng.integers(0, s) for s in shape)] = 1.0
            directions.append(e)
        for v in directions:
            fd = (L(eps * v) - L(-eps * v)) / (2 * eps)
            an = float((g * v).sum())
            assert abs(fd - an) <= tol * max(1.0, abs(fd)), (layer.name, k, fd, an)


def test_dense_gradients(rng):
    fd_check(nn.Dense(5, 4, activation="tanh", rng=1, dtype="float64"), (3, 5), rng)


def test_dense_on_rank3_inputs_matches_numpy(rng):
    layer = nn.Dense(5, 4, rng=0, dtype="float64")
    xv = rng.normal(size=(2, 3, 5))
    got = run(lambda x: layer(x), xv)
    np.testing.assert_allclose(got, xv @ layer.W.get_value() + layer.b.get_value(), rtol=1e-12)
    fd_check(layer, (2, 3, 5), rng)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(padding="same", dilation=2),
    dict(groups=2, stride=(1, 2), padding=(1, 0)),
])
def test_conv2d_matches_numpy_and_finite_differences(rng, kw):
    layer = nn.Conv2D(4, 6, 3, rng=2, dtype="float64", **kw)
    layer.b.set_value(rng.normal(size=6))
    xv = rng.normal(size=(2, 4, 7, 8))
    got = run(lambda x: layer(x), xv)
    pad = kw.get("padding", 0)
    dil = nn.layers.NN.pair(kw.get("dilation", 1), "d", 1)
    if pad == "same":
        pad = (dil[0], dil[1])     # 3x3 kernel: (k - 1) * d / 2 on each side
    ref = conv_ref(xv, layer.W.get_value(), nn.layers.NN.pair(kw.get("stride", 1), "s", 1),
                   nn.layers.NN.pair(pad, "p", 0), dil, kw.get("groups", 1))
    ref += layer.b.get_value().reshape(1, 6, 1, 1)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    fd_check(layer, (2, 4, 7, 8), rng)


def test_conv2d_rejects_bad_groups_and_channels():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2D(3, 4, 3, groups=2)
    layer = nn.Conv2D(3, 4, 3)
    with pytest.raises(ValueError, match="3 channels"):
        layer(sf.tensor("x", (1, 2, 8, 8)))


@pytest.mark.parametrize("cls,mode", [(nn.MaxPool2D, "max"), (nn.AvgPool2D, "avg")])
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1)])
def test_pooling_matches_numpy_and_finite_differences(rng, cls, mode, k, s, p):
    layer = cls(k, s, p)
    xv = rng.normal(size=(2, 3, 7, 6))
    got = run(lambda x: layer(x), xv)
    np.testing.assert_allclose(got, pool_ref(xv, k, s or k, p, mode), rtol=1e-12)
    fd_check(layer, (2, 3, 7, 6), rng)


def test_flatten_and_activations_match_numpy(rng):
    xv = rng.normal(size=(2, 3, 4, 5))
    np.testing.assert_array_equal(run(lambda x: nn.Flatten()(x), xv), xv.reshape(2, -1))
    z = rng.normal(size=(4, 6)) * 3
    refs = {
        nn.ReLU(): np.maximum(z, 0), nn.Tanh(): np.tanh(z), nn.Sigmoid(): 1 / (1 + np.exp(-z)),
        nn.Softmax(): np.exp(z) / np.exp(z).sum(1, keepdims=True),
        nn.LogSoftmax(): z - np.log(np.exp(z).sum(1, keepdims=True)),
        nn.LeakyReLU(0.1): np.where(z > 0, z, 0.1 * z),
        nn.Activation("softplus"): np.log1p(np.exp(z)),
        nn.Lambda(lambda t: t * 2): z * 2,
    }
    for layer, ref in refs.items():
        np.testing.assert_allclose(run(lambda x: layer(x), z), ref, rtol=1e-12, err_msg=layer.name)
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Dense(2, 2, activation="swishy")


def test_sequential_model_gradients(rng):
    model = nn.Sequential(nn.Conv2D(2, 3, 3, padding=1, rng=0, dtype="float64"), nn.Tanh(), nn.AvgPool2D(2),
                          nn.Flatten(), nn.Dense(3 * 3 * 3, 4, activation="relu", rng=1, dtype="float64"),
                          nn.BatchNorm(4, dtype="float64"), nn.Dense(4, 2, rng=2, dtype="float64"))
    fd_check(model, (5, 2, 6, 6), rng, train=True)


def test_activation_layers_gradients(rng):
    for layer in [nn.Tanh(), nn.Sigmoid(), nn.Softmax(), nn.LogSoftmax(), nn.ReLU()]:
        fd_check(layer, (3, 5), rng)


# --------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 5)])
def test_batchnorm_train_and_eval_semantics(rng, shape):
    bn = nn.BatchNorm(3, momentum=0.2, eps=1e-5, dtype="float64")
    bn.gamma.set_value(rng.normal(size=3))
    bn.beta.set_value(rng.normal(size=3))
    x = sf.tensor("x", shape, "float64")
    y_train, ups = bn.apply(x, train=True)
    assert {id(s) for s, _ in ups} == {id(bn.running_mean), id(bn.running_var)}
    assert bn.updates == ups
    f_train = sf.function([x], y_train, updates=ups, device="interp")
    f_eval = sf.function([x], bn(x, train=False), device="interp")
    assert bn.updates == []                      # an eval call records no updates

    axes = tuple(i for i in range(len(shape)) if i != 1)
    bshape = [1] * len(shape)
    bshape[1] = 3
    g, b = bn.gamma.get_value().reshape(bshape), bn.beta.get_value().reshape(bshape)
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(3):
        xv = rng.normal(2.0, 3.0, size=shape)
        mean, var = xv.mean(axis=axes), xv.var(axis=axes)
        ref = (xv - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * g + b
        np.testing.assert_allclose(f_train(xv), ref, rtol=1e-10, atol=1e-12)
        n = xv.size // 3
        rm = 0.8 * rm + 0.2 * mean
        rv = 0.8 * rv + 0.2 * var * n / (n - 1)
        np.testing.assert_allclose(bn.running_mean.get_value(), rm, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.get_value(), rv, rtol=1e-12)
    xv = rng.normal(size=shape)
    ref = (xv - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) * g + b
    np.testing.assert_allclose(f_eval(xv), ref, rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean.get_value(), rm, rtol=1e-12)   # eval leaves them alone
    assert [k for k in bn.named_state()] == ["running_mean", "running_var"]
    assert [k for k in bn.named_params()] == ["gamma", "beta"]


def test_batchnorm_gradients_in_train_and_eval_mode(rng):
    bn = nn.BatchNorm(3, dtype="float64")
    bn.gamma.set_value(rng.normal(size=3))
    bn.running_var.set_value(rng.uniform(0.5, 2, 3))
    fd_check(bn, (6, 3, 2, 2), rng, train=True)
    fd_check(bn, (6, 3), rng, train=False)


def test_batchnorm_on_cpu_matches_interpreter(rng):
    outs = {}
    xv = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    for dev in ("interp", "cpu"):
        bn = nn.BatchNorm(3)
        x = sf.tensor("x", xv.shape)
        y, ups = bn.apply(x, train=True)
        out = sf.function([x], y, updates=ups, device=dev)(xv)
        outs[dev] = (out, bn.running_mean.get_value(), bn.running_var.get_value())
    for a, b in zip(outs["interp"], outs["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- Dropout
def test_dropout_statistics_fresh_masks_and_eval_identity():
    p = 0.3
    drop = nn.Dropout(p, seed=123)
    x = sf.tensor("x", (200, 500))
    assert drop(x, train=False) is x
    f = sf.function([x], drop(x, train=True), device="interp")
    ones = np.ones((200, 500), np.float32)
    a, b = f(ones), f(ones)
    for out in (a, b):
        kept = out != 0
        assert abs(1 - kept.mean() - p) < 0.01
        np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-6)
        assert abs(out.mean() - 1.0) < 0.015
    assert (a != b).mean() > 0.3            # each call draws a new mask (counter advances)
    assert drop.counter.get_value() == 123 + 2
    # two draws in one graph, and two layers, differ
    g = sf.function([x], [drop(x, train=True), nn.Dropout(p, seed=124)(x, train=True)], device="interp")
    c, d = g(ones)
    assert (c != d).mean() > 0.3
    assert drop.params == [] and drop.named_variables() == {}


def test_dropout_same_masks_on_cpu_and_interpreter():
    outs = []
    for dev in ("interp", "cpu"):
        drop = nn.Dropout(0.5, seed=7)
        x = sf.tensor("x", (16, 32))
        f = sf.function([x], drop(x, train=True), device=dev)
        xv = np.arange(16 * 32, dtype=np.float32).reshape(16, 32)
        outs.append([f(xv) for _ in range(2)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_dropout_gradient(rng):
    drop = nn.Dropout(0.4, seed=5)
    fd_check(drop, (6, 7), rng, train=True, before_call=lambda: drop.counter.set_value(np.int64(5)))


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        nn.Dropout(1.0)


# --------------------------------------------------------------------------- modules
def _small_cnn(seed=0, dtype="float32"):
    return nn.Sequential(
        nn.Conv2D(1, 4, 3, rng=seed, dtype=dtype), nn.BatchNorm(4, dtype=dtype), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dropout(0.5, seed=seed), nn.Dense(4 * 3 * 3, 5, rng=seed + 1, dtype=dtype))


def test_sequential_names_params_state_and_updates():
    model = _small_cnn()
    assert list(model.named_params()) == ["conv0.W", "conv0.b", "bn0.gamma", "bn0.beta", "dense0.W", "dense0.b"]
    assert list(model.named_state()) == ["bn0.running_mean", "bn0.running_var"]
    assert [p.name for p in model.params] == list(model.named_params())
    assert model.num_params() == 4 * 9 + 4 + 4 + 4 + 36 * 5 + 5
    assert model[0] is model.layers[0] and len(model) == 7
    x = sf.tensor("x", (2, 1, 8, 8))
    y = model(x, train=True)
    assert y.shape == (2, 5)
    assert [s.name for s, _ in model.updates] == ["bn0.running_mean", "bn0.running_var"]
    model(x)
    assert model.updates == []
    assert "dense0.W" in model.summary()
    assert list(nn.Sequential(nn.Dense(2, 2), nn.ReLU(), nn.Dense(2, 2), nn.Dropout(), nn.Dense(2, 1)).children()) \
        == ["dense0", "relu0", "dense1", "dropout0", "dense2"]
    # explicit names, nesting, and a duplicate name
    inner = nn.Sequential(nn.Dense(3, 3, name="fc"), nn.Dense(3, 3, name="fc"), name="block")
    outer = nn.Sequential(inner, nn.Dense(3, 2))
    assert list(outer.named_params()) == ["block.fc.W", "block.fc.b", "block.fc_1.W", "block.fc_1.b",
                                          "dense0.W", "dense0.b"]


def test_subclassed_model_registers_children():
    class Net(nn.Model):
        def __init__(self):
            super().__init__("net")
            self.fc1 = nn.Dense(4, 8, "relu", rng=0)
            self.bn = nn.BatchNorm(8)
            self.fc2 = nn.Dense(8, 2, rng=1)
            self.scale = self.add_param("scale", np.float32(2.0))

        def forward(self, x, train):
            return self.fc2(self.bn(self.fc1(x), train=train)) * self.scale

    net = Net()
    assert list(net.named_params()) == ["scale", "fc1.W", "fc1.b", "bn.gamma", "bn.beta", "fc2.W", "fc2.b"]
    x = sf.tensor("x", (5, 4))
    y, ups = net.apply(x, train=True)
    assert len(ups) == 2 and y.shape == (5, 2)


def test_save_load_roundtrip(tmp_path, rng):
    a, b = _small_cnn(0), _small_cnn(1)
    a.named_state()["bn0.running_mean"].set_value(rng.normal(size=4).astype(np.float32))
    path = tmp_path / "model.weights"          # no .npz suffix: saved at exactly this path
    a.save(path)
    assert path.exists() and not (tmp_path / "model.weights.npz").exists()
    assert not any(p.name.startswith(".symfuse-") for p in tmp_path.iterdir())
    b.load(path)
    for (ka, va), (kb, vb) in zip(a.get_weights().items(), b.get_weights().items()):
        assert ka == kb
        np.testing.assert_array_equal(va, vb)
    x = sf.tensor("x", (2, 1, 8, 8))
    xv = rng.normal(size=(2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(sf.function([x], a(x), device="interp")(xv),
                                  sf.function([x], b(x), device="interp")(xv))


def _expect_load_error(model, path, *fragments):
    before = model.get_weights()
    with pytest.raises(nn.ModelFileError) as ei:
        model.load(path)
    assert isinstance(ei.value, InputError) and isinstance(ei.value, ValueError)
    for frag in (str(path),) + fragments:
        assert frag in str(ei.value), (frag, str(ei.value))
    after = model.get_weights()                # nothing was changed
    assert all(np.array_equal(before[k], after[k]) for k in before)
    return str(ei.value)


def test_load_errors(tmp_path):
    model = nn.Sequential(nn.Dense(3, 4, rng=0), nn.Dense(4, 2, rng=1))
    _expect_load_error(model, tmp_path / "nope.npz", "does not exist")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    _expect_load_error(model, garbage, "not a valid .npz")
    good = tmp_path / "good.npz"
    model.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    _expect_load_error(model, truncated, "not a valid .npz")
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    _expect_load_error(model, npy, "single .npy array")

    bigger = nn.Sequential(nn.Dense(3, 4, rng=0), nn.Dense(4, 2, rng=1), nn.Dense(2, 2, rng=2))
    _expect_load_error(bigger, good, "'dense2.W'", "missing")
    smaller = nn.Sequential(nn.Dense(3, 4, rng=0))
    _expect_load_error(smaller, good, "'dense1.W'", "unexpected")
    smaller.load(good, strict=False)           # non-strict: loads what matches
    np.testing.assert_array_equal(smaller.params[0].get_value(), model.params[0].get_value())
    other = nn.Sequential(nn.Dense(3, 5, rng=0), nn.Dense(5, 2, rng=1))
    _expect_load_error(other, good, "'dense0.W'", "(3, 4)", "(3, 5)")
    ints = tmp_path / "ints.npz"
    np.savez(ints, **{k: np.zeros(v.shape, np.complex64) for k, v in model.get_weights().items()})
    _expect_load_error(model, ints, "dtype complex64")
    with pytest.raises(nn.ModelFileError, match="does not exist"):
        model.save(tmp_path / "no" / "dir" / "m.npz")


# --------------------------------------------------------------------------- losses
def test_losses_match_numpy_and_are_stable(rng):
    z = rng.normal(size=(6, 4)) * 3
    labels = rng.integers(0, 4, 6).astype(np.int32)
    x = sf.tensor("x", z.shape, "float64")
    y = sf.tensor("y", (6,), "int32")
    lse = np.log(np.exp(z).sum(1))
    ce_ref = (lse - z[np.arange(6), labels]).mean()
    f = sf.function([x, y], [nn.losses.softmax_cross_entropy(x, y),
                             nn.losses.softmax_cross_entropy(x, y, reduction="none"),
                             nn.losses.accuracy(x, y)], device="interp")
    ce, ce_rows, acc = f(z, labels)
    np.testing.assert_allclose(ce, ce_ref, rtol=1e-12)
    np.testing.assert_allclose(ce_rows, lse - z[np.arange(6), labels], rtol=1e-12)
    assert acc == np.float32((z.argmax(1) == labels).mean())
    probs = rng.dirichlet(np.ones(4), 6)
    got = run(lambda v: nn.losses.softmax_cross_entropy(v, probs, reduction="sum"), z)
    np.testing.assert_allclose(got, -(probs * (z - lse[:, None])).sum(), rtol=1e-12)
    t = rng.normal(size=z.shape)
    np.testing.assert_allclose(run(lambda v: nn.losses.mean_squared_error(v, t), z), ((z - t) ** 2).mean())

    targets = (rng.uniform(size=z.shape) > 0.5).astype(np.float64)
    big = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0, 2.0]])
    tb = np.array([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    ref = lambda zz, tt: np.logaddexp(0, zz) - tt * zz  # noqa: E731
    np.testing.assert_allclose(run(lambda v: nn.losses.binary_cross_entropy(v, targets, from_logits=True), z),
                               ref(z, targets).mean(), rtol=1e-12)
    got = run(lambda v: nn.losses.binary_cross_entropy_with_logits(v, tb, reduction="none"), big)
    np.testing.assert_allclose(got, ref(big, tb), rtol=1e-12)
    assert np.isfinite(got).all()
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(run(lambda v: nn.losses.binary_cross_entropy(v, targets), p),
                               -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(), rtol=1e-7)
    # gradient of the logits form at z = 0 is sigmoid(0) - t
    zz = sf.tensor("z", (2,), "float64")
    g = sf.function([zz], sf.grad(nn.losses.binary_cross_entropy(zz, np.array([1.0, 0.0]), from_logits=True,
                                                                 reduction="sum"), zz), device="interp")
    np.testing.assert_allclose(g(np.zeros(2)), [-0.5, 0.5])
    with pytest.raises(ValueError, match="reduction"):
        nn.losses.mean_squared_error(x, 0.0, reduction="avg")


# --------------------------------------------------------------------------- initialisers
def test_initialisers_shapes_ranges_and_seeding():
    from symfuse.nn import init
    assert init.fans((784, 500)) == (784, 500)
    assert init.fans((50, 20, 5, 5)) == (500, 1250)
    w = init.glorot_uniform((300, 200), rng=0)
    a = np.sqrt(6 / 500)
    assert w.dtype == np.float32 and w.shape == (300, 200) and np.abs(w).max() <= a
    assert abs(w.std() - a / np.sqrt(3)) < 0.01 * a
    np.testing.assert_array_equal(w, init.glorot_uniform((300, 200), rng=0))
    assert not np.array_equal(w, init.glorot_uniform((300, 200), rng=1))
    assert abs(init.glorot_normal((400, 400), rng=0).std() - np.sqrt(2 / 800)) < 1e-3
    assert abs(init.he_normal((1000, 100), rng=0, dtype="float64").std() - np.sqrt(2 / 1000)) < 1e-3
    assert init.he_normal((3, 3), dtype="float64").dtype == np.float64
    assert np.abs(init.he_uniform((50, 20, 5, 5), rng=0)).max() <= np.sqrt(6 / 500)
    assert not init.zeros((3, 2)).any()
    init.seed(5)
    a1 = init.he_uniform((4, 4))
    init.seed(5)
    np.testing.assert_array_equal(a1, init.he_uniform((4, 4)))
    np.testing.assert_array_equal(nn.Dense(4, 3, rng=9).W.get_value(), nn.Dense(4, 3, rng=9).W.get_value())
    with pytest.raises(ValueError, match="unknown initialiser"):
        init.get("magic")


# --------------------------------------------------------------------------- optimisers
def _linear_problem(rng, dtype="float64"):
    xv = rng.normal(size=(8, 3)).astype(dtype)
    tv = rng.normal(size=(8, 2)).astype(dtype)
    W0 = rng.normal(size=(3, 2)).astype(dtype)
    b0 = rng.normal(size=2).astype(dtype)
    return xv, tv, W0, b0


def _np_grads(xv, tv, W, b):
    d = 2 * (xv @ W + b - tv) / tv.size
    return [xv.T @ d, d.sum(0)]


def _np_sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    def step(params, grads, state, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + weight_decay * p
            if momentum:
                v = state.get(i, np.zeros_like(p)) * momentum + g
                state[i] = v
                g = g + momentum * v if nesterov else v
            out.append(p - lr * g)
        return out
    return step


def _np_adam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    def step(params, grads, state, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if weight_decay and not decoupled:
                g = g + weight_decay * p
            m, v = state.get(i, (np.zeros_like(p), np.zeros_like(p)))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            state[i] = (m, v)
            new = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
            if weight_decay and decoupled:
                new = new - lr * weight_decay * p
            out.append(new)
        return out
    return step


def _np_rmsprop(lr, rho=0.9, eps=1e-8, momentum=0.0, weight_decay=0.0):
    def step(params, grads, state, t):
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + weight_decay * p
            s, buf = state.get(i, (np.zeros_like(p), np.zeros_like(p)))
            s = rho * s + (1 - rho) * g * g
            u = g / (np.sqrt(s) + eps)
            if momentum:
                buf = momentum * buf + u
                u = buf
            state[i] = (s, buf)
            out.append(p - lr * u)
        return out
    return step


OPTIMISERS = [
    ("sgd", lambda: nn.SGD(0.1), _np_sgd(0.1)),
    ("sgd-momentum-wd", lambda: nn.SGD(0.1, momentum=0.9, weight_decay=0.01), _np_sgd(0.1, 0.9, False, 0.01)),
    ("sgd-nesterov", lambda: nn.SGD(0.05, momentum=0.8, nesterov=True), _np_sgd(0.05, 0.8, True)),
    ("adam", lambda: nn.Adam(0.01), _np_adam(0.01)),
    ("adam-l2", lambda: nn.Adam(0.01, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
     _np_adam(0.01, 0.8, 0.99, 1e-6, 0.1)),
    ("adamw", lambda: nn.AdamW(0.01, weight_decay=0.1), _np_adam(0.01, weight_decay=0.1, decoupled=True)),
    ("rmsprop", lambda: nn.RMSProp(0.01), _np_rmsprop(0.01)),
    ("rmsprop-momentum-wd", lambda: nn.RMSProp(0.01, rho=0.95, momentum=0.9, weight_decay=0.05),
     _np_rmsprop(0.01, 0.95, 1e-8, 0.9, 0.05)),
]


@pytest.mark.parametrize("name,make,ref", OPTIMISERS, ids=[o[0] for o in OPTIMISERS])
def test_optimisers_match_numpy_for_three_steps(rng, name, make, ref):
    xv, tv, W0, b0 = _linear_problem(rng)
    W, b = sf.shared(W0, name="W"), sf.shared(b0, name="b")
    x, t = sf.tensor("x", xv.shape, "float64"), sf.tensor("t", tv.shape, "float64")
    loss = nn.losses.mean_squared_error(x @ W + b, t)
    opt = make()
    ups = opt.updates(loss, [W, b])
    assert all(isinstance(s, sf.SharedVariable) for s in opt.state)
    assert bool(opt.state) == (name != "sgd")          # plain SGD keeps no state
    f = sf.function([x, t], loss, updates=ups, device="interp")
    params, state = [W0, b0], {}
    for step in range(1, 4):
        f(xv, tv)
        params = ref(params, _np_grads(xv, tv, *params), state, step)
        np.testing.assert_allclose(W.get_value(), params[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b.get_value(), params[1], rtol=1e-12, atol=1e-14)
    opt.reset()
    assert all(not s.get_value().any() for s in opt.state)


def test_optimiser_on_cpu_with_shared_lr_and_gradient_list(rng):
    xv, tv, W0, b0 = (a.astype(np.float32) for a in _linear_problem(rng))
    results = []
    for dev in ("interp", "cpu"):
        W, b = sf.shared(W0, name="W"), sf.shared(b0, name="b")
        x, t = sf.tensor("x", xv.shape), sf.tensor("t", tv.shape)
        loss = nn.losses.mean_squared_error(x @ W + b, t)
        lr = sf.shared(np.float32(0.01), name="lr")
        opt = nn.Adam(lr)
        f = sf.function([x, t], loss, updates=opt.updates(sf.grad(loss, [W, b]), [W, b]), device=dev)
        for _ in range(2):
            f(xv, tv)
        lr.set_value(np.float32(0.0))       # a zero learning rate freezes the parameters
        frozen = W.get_value()
        f(xv, tv)
        np.testing.assert_array_equal(W.get_value(), frozen)
        results.append(W.get_value())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_optimiser_argument_errors():
    W = sf.shared(np.zeros((2, 2), np.float32), name="W")
    with pytest.raises(ValueError, match="lr must be > 0"):
        nn.SGD(0.0)
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="2 gradients for 1 parameters"):
        nn.SGD(0.1).updates([W, W], [W])
    with pytest.raises(TypeError, match="shared variable"):
        nn.SGD(0.1).updates([W], [sf.tensor("v", (2, 2))])
    with pytest.raises(ValueError, match="unknown optimiser"):
        nn.optim.get("adagrad")
    model = nn.Dense(2, 2)
    ups = nn.optim.get("sgd", lr=0.1).updates((model(sf.tensor("x", (3, 2))) ** 2).sum(), model)
    assert [s for s, _ in ups] == model.params


# --------------------------------------------------------------------------- data
def test_minibatches_cover_every_sample_once_per_epoch():
    x = np.arange(103)[:, None].astype(np.float32)
    y = np.arange(103).astype(np.int32)
    batches = list(D.minibatches(x, y, 10, shuffle=True, seed=0, drop_last=False))
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen) == list(range(103))
    assert not np.array_equal(seen, np.arange(103))                  # shuffled
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)                  # x and y stay aligned
    dropped = np.concatenate([b[1] for b in D.minibatches(x, y, 10, seed=0)])
    assert len(dropped) == 100 and len(set(dropped)) == 100
    again = np.concatenate([b[1] for b in D.minibatches(x, y, 10, seed=0)])
    np.testing.assert_array_equal(dropped, again)                    # seeded: reproducible
    gen = np.random.default_rng(1)
    e1 = np.concatenate([b[1] for b in D.minibatches(x, y, 10, seed=gen)])
    e2 = np.concatenate([b[1] for b in D.minibatches(x, y, 10, seed=gen)])
    assert not np.array_equal(e1, e2)                                # a Generator reshuffles per epoch
    plain = [b for b in D.minibatches(x, None, 50, shuffle=False, drop_last=False)]
    assert [len(b) for b in plain] == [50, 50, 3] and plain[0][0, 0] == 0
    assert D.num_batches(103, 10) == 10 and D.num_batches(103, 10, drop_last=False) == 11
    with pytest.raises(ValueError, match="103 samples but y has 5"):
        list(D.minibatches(x, y[:5], 10))


def _write_mnist(directory, n_train=6, n_test=4, gz=False):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, a in arrays.items():
        D.write_idx(os.path.join(directory, name + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_reader(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    raw = (tmp_path / ("train-labels-idx1-ubyte" + (".gz" if gz else ""))).read_bytes()
    head = gzip.decompress(raw) if gz else raw
    assert head[:4] == b"\x00\x00\x08\x01" and struct.unpack(">I", head[4:8]) == (6,)
    s = D.mnist(tmp_path)
    assert s.x_train.shape == (6, 1, 28, 28) and s.x_train.dtype == np.float32
    assert s.y_train.dtype == np.int32 and s.x_test.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(s.x_train[:, 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(s.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert 0 <= s.x_train.min() and s.x_train.max() <= 1
    (xtr, ytr), (xte, yte) = s                                 # Keras-style unpacking
    assert xtr is s.x_train and yte is s.y_test
    assert D.mnist(tmp_path, flatten=True).x_train.shape == (6, 784)


def test_idx_roundtrip_of_other_dtypes(tmp_path):
    for a in [np.arange(12, dtype=np.int32).reshape(3, 4) - 5, np.linspace(0, 1, 6, dtype=np.float32),
              np.array([[1.5, -2.0]]), np.arange(-3, 3, dtype=np.int16), np.arange(-3, 3, dtype=np.int8)]:
        p = tmp_path / "a.idx"
        D.write_idx(p, a)
        b = D.read_idx(p)
        assert b.dtype == a.dtype and b.dtype.isnative
        np.testing.assert_array_equal(a, b)


def test_idx_reader_errors(tmp_path):
    _write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(nn.DataError) as ei:
        D.mnist(tmp_path)
    msg = str(ei.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg and isinstance(ei.value, InputError)
    with pytest.raises(nn.DataError, match="does not exist"):
        D.mnist(tmp_path / "missing")
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x50\x4b\x03\x04" + b"\x00" * 20)
    with pytest.raises(nn.DataError, match="bad magic number 0x504b0304") as ei:
        D.read_idx(bad)
    assert str(bad) in str(ei.value)
    bad.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")     # unknown type code 0x07
    with pytest.raises(nn.DataError, match="bad magic"):
        D.read_idx(bad)
    bad.write_bytes(b"\x00\x00")
    with pytest.raises(nn.DataError, match="too short"):
        D.read_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")  # says 5 bytes, has 2
    with pytest.raises(nn.DataError, match="truncated|2 bytes of data"):
        D.read_idx(bad)
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")                   # gzip header, corrupt body
    with pytest.raises(nn.DataError, match="cannot read"):
        D.read_idx(bad)
    with pytest.raises(nn.DataError, match="does not exist"):
        D.read_idx(tmp_path / "absent")
    # label count that does not match the images
    _write_mnist(tmp_path)
    D.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(nn.DataError, match="t10k-labels-idx1-ubyte"):
        D.mnist(tmp_path)


def test_digits_shapes_ranges_and_split():
    s = D.digits()
    assert s.x_train.shape[1:] == (1, 8, 8) and s.x_train.dtype == np.float32
    assert s.y_train.dtype == np.int32 and s.classes == 10
    n = len(s.x_train) + len(s.x_test)
    assert n == 1797 and abs(len(s.x_test) - 0.2 * n) <= 10
    for x in (s.x_train, s.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(s.y_test)) == set(range(10))
    counts = np.bincount(s.y_test, minlength=10) / np.bincount(np.concatenate([s.y_train, s.y_test]))
    assert np.all(np.abs(counts - 0.2) < 0.02)                       # stratified
    s28 = D.digits(size=28)
    assert s28.x_train.shape[1:] == (1, 28, 28) and s28.x_train.dtype == np.float32
    assert 0 <= s28.x_train.min() and s28.x_train.max() <= 1
    np.testing.assert_array_equal(s28.y_train, s.y_train)            # same split for both sizes
    np.testing.assert_allclose(s28.x_train[:5].mean(axis=(1, 2, 3)), s.x_train[:5].mean(axis=(1, 2, 3)), atol=0.03)
    boxed = D.digits(size=28, box=20)
    assert boxed.x_train.shape[1:] == (1, 28, 28)
    assert not boxed.x_train[:, :, :4].any() and not boxed.x_train[:, :, :, 24:].any()
    np.testing.assert_array_equal(boxed.y_test, s.y_test)
    with pytest.raises(ValueError, match="box"):
        D.digits(size=28, box=30)
    s2 = D.digits(seed=1)
    assert not np.array_equal(s2.y_train[:50], s.y_train[:50])


def test_digits_ship_with_symfuse_and_match_scikit_learns(monkeypatch):
    """The digits load without scikit-learn (a plain install trains), and are the
    same images and labels as sklearn.datasets.load_digits where it is installed."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    s = D.digits()
    monkeypatch.undo()
    sklearn = pytest.importorskip("sklearn.datasets")
    ref = sklearn.load_digits()
    x = np.concatenate([s.x_train, s.x_test])[:, 0].reshape(len(ref.target), 64) * 16
    y = np.concatenate([s.y_train, s.y_test])
    order_ours = np.lexsort(np.c_[x, y].T)
    order_ref = np.lexsort(np.c_[ref.data, ref.target].T)
    np.testing.assert_allclose(x[order_ours], ref.data[order_ref], atol=1e-5)
    np.testing.assert_array_equal(y[order_ours], ref.target[order_ref])


def test_resize_bilinear_uses_half_pixel_centres():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    out = D.resize_bilinear(a, 4)
    np.testing.assert_allclose(out[0], [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(out[:, 0], [0, 0.5, 1.5, 2])
    np.testing.assert_allclose(D.resize_bilinear(np.full((1, 3, 3), 0.7), (5, 7)), np.full((1, 5, 7), 0.7))
    np.testing.assert_allclose(D.resize_bilinear(a, 2), a)


def test_synthetic_split_and_random_shift():
    x, y = D.synthetic(100, (1, 4, 4), classes=3, seed=0)
    assert x.shape == (100, 1, 4, 4) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= x.min() and x.max() <= 1 and set(y) <= {0, 1, 2}
    x2, y2 = D.synthetic(100, (1, 4, 4), classes=3, seed=0)
    np.testing.assert_array_equal(x, x2)
    s = D.split(x, y, 0.25, seed=0)
    assert len(s.x_train) + len(s.x_test) == 100 and len(s.x_test) in range(23, 28)
    shifted = D.random_shift(np.ones((5, 1, 6, 6)), 2, rng=0)
    assert shifted.shape == (5, 1, 6, 6) and set(np.unique(shifted)) <= {0.0, 1.0}
    img = np.zeros((1, 1, 5, 5))
    img[0, 0, 2, 2] = 1
    moved = D.random_shift(np.repeat(img, 50, 0), 1, rng=0)
    assert moved.sum() == 50                                          # a centre pixel never falls off
    assert len({tuple(np.argwhere(m[0])[0]) for m in moved}) > 4


# --------------------------------------------------------------------------- PNG
def _read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks.append((tag, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[0][1][:10])
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    ch = 3 if ctype == 2 else 1
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + w * ch)
    assert depth == 8 and (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, ch) if ch == 3 else rows[:, 1:]


def test_png_writer_and_sample_grid(tmp_path):
    img = (np.arange(6 * 7) % 256).astype(np.uint8).reshape(6, 7)
    nn.write_png(tmp_path / "a.png", img)
    np.testing.assert_array_equal(_read_png(tmp_path / "a.png"), img)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3)).astype(np.uint8)
    nn.write_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(_read_png(tmp_path / "rgb.png"), rgb)
    samples = np.random.default_rng(1).uniform(size=(10, 64))
    grid = nn.save_samples_png(tmp_path / "grid.png", samples, (8, 8), ncols=5, scale=2)
    back = _read_png(tmp_path / "grid.png")
    assert back.shape == grid.shape == (2 * 17 + 1, 5 * 17 + 1)
    np.testing.assert_array_equal(back[1:17, 1:17], np.round(samples[0].reshape(8, 8).repeat(2, 0).repeat(2, 1) * 255))
    with pytest.raises(ValueError, match="expected"):
        nn.write_png(tmp_path / "bad.png", np.zeros((2, 2, 2)))
