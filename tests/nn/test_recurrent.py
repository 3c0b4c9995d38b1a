"""nn.RNN / nn.LSTM / nn.GRU / nn.Embedding: outputs and gradients against PyTorch's
own modules with the same weights where torch is installed, and everywhere against
the equations of PyTorch's documentation written out in numpy (step by step, no
scan, no fused projection), and against central finite differences in float64."""
import numpy as np
import pytest

import symfuse as sf
from symfuse import nn

DEVICES = ["interp", "cpu", "cuda-emu"]


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _torch_doc_reference(kind, weights, x, h0=None, c0=None, layers=1, hidden=4):
    """PyTorch's documented recurrences, batch-first, all layers; returns (out, h_n[, c_n])."""
    B, T, _ = x.shape
    seq, hn, cn = x, [], []
    for n in range(layers):
        W, U = weights[f"weight_ih_l{n}"], weights[f"weight_hh_l{n}"]
        bi, bh = weights[f"bias_ih_l{n}"], weights[f"bias_hh_l{n}"]
        h = np.zeros((B, hidden)) if h0 is None else h0[n]
        c = np.zeros((B, hidden)) if c0 is None else c0[n]
        outs = []
        for t in range(T):
            xt = seq[:, t]
            if kind == "lstm":
                gi, gf, gg, go = np.split(xt @ W.T + bi + h @ U.T + bh, 4, axis=1)
                c = _sig(gf) * c + _sig(gi) * np.tanh(gg)
                h = _sig(go) * np.tanh(c)
            elif kind == "gru":
                xr, xz, xn = np.split(xt @ W.T + bi, 3, axis=1)
                hr, hz, hn_ = np.split(h @ U.T + bh, 3, axis=1)
                r, z = _sig(xr + hr), _sig(xz + hz)
                nn_ = np.tanh(xn + r * hn_)
                h = (1 - z) * nn_ + z * h
            else:
                h = np.tanh(xt @ W.T + bi + h @ U.T + bh)
            outs.append(h)
        seq = np.stack(outs, axis=1)
        hn.append(h)
        cn.append(c)
    return seq, np.stack(hn), np.stack(cn)


LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_pytorch_equations(kind, layers):
    rng = np.random.default_rng(0)
    m = LAYERS[kind](3, 4, num_layers=layers, dtype="float64", rng=1)
    B, T = 2, 5
    xv = rng.normal(size=(B, T, 3))
    h0v = rng.normal(size=(layers, B, 4))
    c0v = rng.normal(size=(layers, B, 4))
    x = sf.tensor("x", (B, T, 3), "float64")
    h0 = sf.tensor("h0", (layers, B, 4), "float64")
    c0 = sf.tensor("c0", (layers, B, 4), "float64")
    state = (h0, c0) if kind == "lstm" else h0
    out, final = m.run(x, state)
    outs = [out] + (list(final) if kind == "lstm" else [final])
    want = _torch_doc_reference(kind, {k.split(".")[-1]: v for k, v in m.get_weights().items()}, xv, h0v, c0v,
                                layers)
    for dev in DEVICES:
        got = sf.function([x, h0, c0], outs, device=dev)(xv, h0v, c0v)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
        if kind == "lstm":
            np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-12)
    assert [k.split(".")[-1] for k in m.named_params()] == [
        f"{w}_l{n}" for n in range(layers) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(2)
    m = LAYERS[kind](3, 4, num_layers=2, dtype="float64", rng=3, return_sequences=False)
    x = sf.tensor("x", (2, 6, 3), "float64")
    loss = (m(x) ** 2).sum()
    params = m.params
    xv = rng.normal(size=(2, 6, 3))
    for dev in DEVICES:
        f = sf.function([x], [loss] + sf.grad(loss, params), device=dev)
        base = f(xv)
        for p, g in zip(params, base[1:]):
            v0 = p.get_value()
            d = rng.normal(size=v0.shape)
            p.set_value(v0 + 1e-6 * d)
            hi = f(xv)[0]
            p.set_value(v0 - 1e-6 * d)
            lo = f(xv)[0]
            p.set_value(v0)
            fd, an = (hi - lo) / 2e-6, float((g * d).sum())
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(fd)), (dev, p.name, fd, an)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_matches_torch_modules(kind):
    torch = pytest.importorskip("torch", reason="torch is a test-only reference: pip install torch")
    rng = np.random.default_rng(4)
    layers, B, T, I, H = 2, 3, 7, 5, 6
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](
        I, H, num_layers=layers, batch_first=True).double()
    m = LAYERS[kind](I, H, num_layers=layers, dtype="float64")
    m.set_weights({k: v.detach().numpy() for k, v in ref.named_parameters()})
    xv = rng.normal(size=(B, T, I))
    xt = torch.tensor(xv, requires_grad=True)
    out_t, _ = ref(xt)
    (out_t ** 2).sum().backward()
    x = sf.tensor("x", (B, T, I), "float64")
    out = m(x)
    loss = (out ** 2).sum()
    for dev in DEVICES:
        got = sf.function([x], [out, sf.grad(loss, x)] + sf.grad(loss, m.params), device=dev)(xv)
        np.testing.assert_allclose(got[0], out_t.detach().numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got[1], xt.grad.numpy(), rtol=1e-8, atol=1e-12)
        for (name, p), g in zip(ref.named_parameters(), got[2:]):
            np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


def test_embedding_rows_and_gradient():
    emb = nn.Embedding(10, 3, dtype="float64", rng=0)
    ids = sf.tensor("ids", (2, 4), "int32")
    y = emb(ids)
    loss = (y * np.arange(3.0)).sum()
    idv = np.array([[1, 2, 2, 9], [0, 0, 5, 1]], np.int32)
    out, g = sf.function([ids], [y, sf.grad(loss, emb.weight)], device="interp")(idv)
    np.testing.assert_array_equal(out, emb.weight.get_value()[idv])
    want = np.zeros((10, 3))
    np.add.at(want, idv.reshape(-1), np.arange(3.0))
    np.testing.assert_allclose(g, want)


def test_bad_inputs_are_named():
    m = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match=r"\(batch, time, 3\)"):
        m(sf.tensor("x", (2, 5, 7)))
    with pytest.raises(ValueError, match="pair"):
        m.run(sf.tensor("x", (2, 5, 3)), sf.tensor("h", (1, 2, 4)))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="gelu")
