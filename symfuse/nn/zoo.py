"""Ready-made models: the classic Theano-tutorial trio::

    from symfuse.nn import zoo
    m = zoo.get("lenet", batch=64)          # or zoo.lenet(batch=64), zoo.ZOO["lenet"](...)
    step = m.train_function("cpu")          # compiled sf.function: (x, y) -> [loss, accuracy]
    loss, acc = step(*m.example_batch())
    probs = m.predict_function("cpu", batch=500)(x_test_500)

* ``mlp``   -- Flatten -> Dense+ReLU ... -> Dense (logits), softmax cross-entropy.
* ``lenet`` -- LeNet-5 as in the Theano tutorial: conv 20 5x5 -> maxpool 2 -> tanh,
  conv 50 5x5 -> maxpool 2 -> tanh, dense 500 tanh, dense 10 softmax; input 1x28x28.
* ``rbm``   -- a Bernoulli RBM trained by contrastive divergence (CD-k, or
  persistent CD), Gibbs sampling with the counter-based ``sf.random.bernoulli``.

Each builder returns a :class:`ZooModel`. Shapes are static: a model built for
``batch`` trains on batches of exactly that size; ``predict_function`` and
``eval_function`` take their own ``batch``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..frontend import api as F
from ..frontend.api import SharedVariable
from ..frontend.random import RandomStream
from ..ir.core import layer_scope
from ..ir.symdim import check_name
from ..runtime.function import function
from . import init as initializers
from . import layers as L
from . import losses, optim
from .errors import UnknownModelError


@dataclass
class ZooModel:
    """A model with its symbolic training graph.

    ``inputs``: the symbolic inputs of the training step (``[x, y]`` for the
    classifiers, ``[x]`` for the RBM); ``train_outputs``: what the step returns
    (named by ``output_names``: ``["loss", "accuracy"]`` or ``["recon_error"]``);
    ``updates``: parameter, optimiser-state and model-state updates.
    """

    name: str
    kind: str                              # "classifier", "language" (next-token classifier) or "rbm"
    model: L.Module
    inputs: list
    train_outputs: list
    output_names: list
    updates: list
    batch: int | str                       # a name: the batch size is chosen at each call
    input_shape: tuple
    dtype: str
    classes: int | None = None
    optimizer: optim.Optimizer | None = None
    predict_graph: Callable | None = None   # x (symbolic, eval mode) -> probabilities / reconstruction
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def params(self) -> list[SharedVariable]:
        return self.model.params

    def _compiled(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def train_function(self, device=None, **options):
        """The compiled training step ``inputs -> train_outputs`` with ``updates``
        (compiled once per device and options, then reused: its state is shared)."""
        key = ("train", device, _options_key(options))
        return self._compiled(key, lambda: function(self.inputs, self.train_outputs, updates=self.updates,
                                                    device=device, name=f"{self.name}_train", **options))

    def predict_function(self, device=None, batch: int | None = None, **options):
        """Inference ``x -> output`` in eval mode (no dropout, BatchNorm running
        statistics): class probabilities for the classifiers, mean-field
        reconstructions for the RBM. ``batch`` defaults to the training batch."""
        b = batch_size(batch or self.batch)

        def build():
            x = F.tensor("x", (b, *self.input_shape), self.dtype)
            return function([x], self.predict_graph(x), device=device, name=f"{self.name}_predict", **options)
        return self._compiled(("predict", device, b, _options_key(options)), build)

    def eval_function(self, device=None, batch: int | None = None, **options):
        """Eval-mode metrics without updates: ``(x, y) -> [loss, accuracy]`` for the
        classifiers, ``x -> recon_error`` for the RBM."""
        b = batch_size(batch or self.batch)

        def build():
            x = F.tensor("x", (b, *self.input_shape), self.dtype)
            if self.kind == "rbm":
                return function([x], self.model.reconstruction_error(x), device=device,
                                name=f"{self.name}_eval", **options)
            y = F.tensor("y", (b,), "int32")
            logits = self.model(x, train=False)
            return function([x, y], [losses.softmax_cross_entropy(logits, y), losses.accuracy(logits, y)],
                            device=device, name=f"{self.name}_eval", **options)
        return self._compiled(("eval", device, b, _options_key(options)), build)

    def example_batch(self, seed: int = 0, size: int | None = None) -> tuple:
        """Random arrays of the training inputs' shapes and dtypes; ``size`` rows
        (default: the training batch, or 32 where it is chosen at run time)."""
        rng = np.random.default_rng(seed)
        n = size or (self.batch if isinstance(self.batch, int) else 32)
        x = rng.uniform(0.0, 1.0, (n, *self.input_shape)).astype(self.dtype)
        if self.kind == "rbm":
            return ((x > 0.5).astype(self.dtype),)
        if self.kind == "language":
            ids = rng.integers(0, self.classes, (n, *self.input_shape), dtype=np.int32)
            return ids, np.roll(ids, -1, axis=1)
        return x, rng.integers(0, self.classes, n).astype(np.int32)


def _options_key(options: dict) -> tuple:
    """sf.function's options as a cache key (a list, such as specialize=[32, 128], as a tuple)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def batch_size(batch) -> int | str:
    """A batch size, or the name of a run-time one (``batch="batch"``)."""
    return check_name(batch) if isinstance(batch, str) else int(batch)


def _classifier(name, model, batch, input_shape, classes, optimizer, dtype) -> ZooModel:
    x = F.tensor("x", (batch, *input_shape), dtype)
    y = F.tensor("y", (batch,), "int32")
    logits, state_updates = model.apply(x, train=True)
    with layer_scope(f"{name} loss and accuracy (zoo.py)"):
        loss = losses.softmax_cross_entropy(logits, y)
        acc = losses.accuracy(logits, y)
    updates = optimizer.updates(loss, model.params) + state_updates
    return ZooModel(name, "classifier", model, [x, y], [loss, acc], ["loss", "accuracy"], updates, batch,
                    tuple(input_shape), dtype, classes, optimizer,
                    predict_graph=lambda v: L.softmax(model(v, train=False)))


def mlp(batch: int = 128, dims=(784, 512, 512, 10), activation="relu", dropout: float = 0.0,
        batchnorm: bool = False, input_shape=None, optimizer=None, seed: int = 0, dtype="float32") -> ZooModel:
    """Multi-layer perceptron ``dims[0] -> ... -> dims[-1]`` (logits), with
    ``activation`` between layers (He init for ReLU, Glorot otherwise), optional
    BatchNorm and Dropout after each hidden activation. ``input_shape`` (per
    sample, default ``(dims[0],)``) may be an image shape such as ``(1, 28, 28)``:
    inputs are flattened. Default optimiser: SGD(lr=0.05, momentum=0.9)."""
    dims = tuple(int(d) for d in dims)
    if len(dims) < 2:
        raise ValueError(f"mlp: dims needs at least an input and an output size, got {dims}")
    input_shape = (dims[0],) if input_shape is None else tuple(input_shape)
    if math.prod(input_shape) != dims[0]:
        raise ValueError(f"mlp: input_shape {input_shape} has {math.prod(input_shape)} elements, dims[0] is {dims[0]}")
    rng = np.random.default_rng(seed)
    winit = "he_uniform" if activation == "relu" else "glorot_uniform"
    layers: list[L.Module] = [L.Flatten()]       # identity on flat inputs; keeps names stable
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(L.Dense(a, b, init=winit if not last else "glorot_uniform", rng=rng, dtype=dtype))
        if not last:
            if batchnorm:
                layers.append(L.BatchNorm(b, dtype=dtype))
            layers.append(L.Activation(activation))
            if dropout:
                layers.append(L.Dropout(dropout, seed=int(rng.integers(0, 2**31 - 1))))
    model = L.Sequential(layers, name="mlp")
    opt = optim.get(optimizer) if optimizer is not None else optim.SGD(0.05, momentum=0.9)
    return _classifier("mlp", model, batch_size(batch), input_shape, dims[-1], opt, dtype)


def lenet(batch: int = 128, input_shape=(1, 28, 28), classes: int = 10, channels=(20, 50), hidden: int = 500,
          kernel: int = 5, dropout: float = 0.0, optimizer=None, seed: int = 0, dtype="float32") -> ZooModel:
    """LeNet-5 as in the Theano deep-learning tutorial: conv 20 5x5 -> maxpool 2 ->
    tanh, conv 50 5x5 -> maxpool 2 -> tanh, dense 500 tanh, dense 10 (softmax in
    the loss and in ``predict_function``). ``dropout`` > 0 adds Dropout after the
    dense tanh layer (not in the classic model). Default optimiser: SGD(lr=0.05,
    momentum=0.9)."""
    c, h, w = (int(s) for s in input_shape)
    rng = np.random.default_rng(seed)
    layers: list[L.Module] = []
    cin = c
    for cout in channels:
        layers += [L.Conv2D(cin, cout, kernel, rng=rng, dtype=dtype), L.MaxPool2D(2), L.Tanh()]
        h, w = (h - kernel + 1) // 2, (w - kernel + 1) // 2
        if h < 1 or w < 1:
            raise ValueError(f"lenet: input {tuple(input_shape)} is too small for {len(channels)} conv+pool stages")
        cin = cout
    layers += [L.Flatten(), L.Dense(cin * h * w, hidden, activation="tanh", rng=rng, dtype=dtype)]
    if dropout:
        layers.append(L.Dropout(dropout, seed=int(rng.integers(0, 2**31 - 1))))
    layers.append(L.Dense(hidden, classes, rng=rng, dtype=dtype))
    model = L.Sequential(layers, name="lenet")
    opt = optim.get(optimizer) if optimizer is not None else optim.SGD(0.05, momentum=0.9)
    return _classifier("lenet", model, batch_size(batch), tuple(int(s) for s in input_shape), classes, opt, dtype)


# --------------------------------------------------------------------------- RBM
class RBM(L.Module):
    """A Bernoulli-Bernoulli restricted Boltzmann machine (Theano tutorial layout):
    ``W (n_visible, n_hidden)``, ``hbias``, ``vbias``. Gibbs sampling draws from a
    RandomStream on an int64 shared counter that advances once per call."""

    default_name = "rbm"

    def __init__(self, n_visible: int, n_hidden: int, rng=None, seed: int | None = None, dtype="float32",
                 name=None):
        super().__init__(name)
        self.n_visible, self.n_hidden, self.dtype = int(n_visible), int(n_hidden), dtype
        rng = initializers.as_rng(rng)
        a = 4.0 * math.sqrt(6.0 / (n_visible + n_hidden))
        self.W = self.add_param("W", rng.uniform(-a, a, (n_visible, n_hidden)).astype(dtype))
        self.hbias = self.add_param("hbias", np.zeros(n_hidden, dtype))
        self.vbias = self.add_param("vbias", np.zeros(n_visible, dtype))
        if seed is None:
            seed = int(rng.integers(0, 2**31 - 1))
        self.counter = F.shared(np.int64(seed), name=f"{self.name}.rng_counter")
        self.counter.default_update = self.counter + 1
        self.stream = RandomStream(self.counter, salt=1 << 20)

    # ---- conditionals
    def propup(self, v):
        return F.sigmoid(v @ self.W + self.hbias)

    def propdown(self, h):
        return F.sigmoid(h @ self.W.T + self.vbias)

    def sample_h(self, v):
        p = self.propup(v)
        return p, self.stream.bernoulli(p, dtype=self.dtype)

    def sample_v(self, h):
        p = self.propdown(h)
        return p, self.stream.bernoulli(p, dtype=self.dtype)

    def gibbs_vhv(self, v):
        """One Gibbs step v -> h -> v': returns (h_prob, h_sample, v_prob, v_sample)."""
        hp, hs = self.sample_h(v)
        vp, vs = self.sample_v(hs)
        return hp, hs, vp, vs

    def free_energy(self, v):
        """F(v) = -v . vbias - sum_j softplus(v W + hbias)_j, one value per row."""
        return -(v @ self.vbias) - F.sum(F.softplus(v @ self.W + self.hbias), axis=1)

    def forward(self, v, train):
        """Mean-field reconstruction p(v' | E[h | v])."""
        return self.propdown(self.propup(v))

    def reconstruction_error(self, v):
        """Mean squared error per pixel between v and its mean-field reconstruction."""
        return losses.mean_squared_error(self.forward(v, False), v)

    def gibbs_hvh(self, hs, t):
        """One Gibbs step h -> v -> h' of the chain's step ``t`` (an integer or an int64
        scalar tensor): its draws are seeded by the counter and ``t``, so a step draws
        the same numbers in a scan and unrolled. Returns (v_sample, h_prob, h_sample)."""
        from ..frontend import random as R
        seed = self.counter * CHAIN_SEED_STRIDE + t
        vs = R.bernoulli(self.propdown(hs), seed, dtype=self.dtype, salt=CHAIN_SALT)
        hp = self.propup(vs)
        return vs, hp, R.bernoulli(hp, seed, dtype=self.dtype, salt=CHAIN_SALT + 1)

    def cd(self, v0, k: int = 1, persistent: SharedVariable | None = None, unroll: bool = False):
        """Contrastive divergence CD-k (PCD-k when ``persistent`` holds the chain's
        hidden samples). Returns ``(grads, recon_error, chain_updates)`` where
        ``grads`` are the gradients of the *negative* log-likelihood estimate for
        ``[W, hbias, vbias]`` (ready for an optimiser's ``updates``)::

            dW = -(v0^T h0 - vk^T hk) / batch,  dhbias = -mean(h0 - hk),  dvbias = -mean(v0 - vk)

        with h0, hk the hidden probabilities given v0 and the chain end vk (a sample).
        These equal ``sf.grad(mean(F(v0)) - mean(F(vk)), params)`` with vk constant
        (the tests check it with ``sf.stop_gradient``). The k Gibbs steps are one
        ``sf.scan`` (one compiled body for any k); ``unroll=True`` writes them out
        instead, drawing the same numbers."""
        if k < 1:
            raise ValueError(f"cd: k must be >= 1, got {k}")
        n = v0.shape[0]
        h0p, h0s = self.sample_h(v0)
        hs = persistent if persistent is not None else h0s
        if unroll:
            for t in range(k):
                vs, hkp, hs = self.gibbs_hvh(hs, np.int64(t))
        else:
            zero_v = F.zeros(v0.shape, self.dtype)
            (vs, hkp, hs), _ = F.scan(lambda c, t: (self.gibbs_hvh(c[2], t), None), (zero_v, h0p, hs),
                                      F.constant(np.arange(k, dtype=np.int64)))
        vk = vs
        dW = (v0.T @ h0p - vk.T @ hkp) * (1.0 / n)
        dhb = F.mean(h0p - hkp, axis=0)
        dvb = F.mean(v0 - vk, axis=0)
        recon = losses.mean_squared_error(self.propdown(h0s), v0)
        chain = [(persistent, hs)] if persistent is not None else []
        return [-dW, -dhb, -dvb], recon, chain


# a Gibbs step's draws: seed = counter * CHAIN_SEED_STRIDE + step, under their own salts
CHAIN_SEED_STRIDE = 1 << 16
CHAIN_SALT = 1 << 21


def rbm(batch: int = 20, n_visible: int = 784, n_hidden: int = 500, k: int = 1, persistent: bool = False,
        lr: float = 0.1, optimizer=None, seed: int = 0, dtype="float32") -> ZooModel:
    """A Bernoulli RBM trained by CD-k (or PCD-k with ``persistent=True``), as in the
    Theano tutorial (batch 20, lr 0.1, 500 hidden units). The training step maps
    visible vectors ``x (batch, n_visible)`` in [0, 1] to the reconstruction error;
    ``predict_function`` gives mean-field reconstructions; see also
    :func:`rbm_sample_function`. Default optimiser: SGD(lr)."""
    rng = np.random.default_rng(seed)
    model = RBM(n_visible, n_hidden, rng=rng, seed=int(rng.integers(0, 2**31 - 1)), dtype=dtype)
    x = F.tensor("x", (batch, n_visible), dtype)
    chain = None
    if persistent:
        chain = F.shared(np.zeros((batch, n_hidden), dtype), name="rbm.persistent_chain")
    grads, recon, chain_updates = model.cd(x, k, chain)
    opt = optim.get(optimizer) if optimizer is not None else optim.SGD(lr)
    updates = opt.updates(grads, model.params) + chain_updates
    zm = ZooModel("rbm", "rbm", model, [x], [recon], ["recon_error"], updates, batch_size(batch), (n_visible,), dtype,
                  None, opt, predict_graph=lambda v: model(v, train=False))
    return zm


def rbm_sample_function(zm: ZooModel, n_chains: int, steps: int = 1, device=None):
    """Compiled ``v -> v'``: ``steps`` Gibbs steps from ``v (n_chains, n_visible)``,
    returning the last step's visible probabilities (for pictures). Each call draws
    new numbers."""
    model: RBM = zm.model
    v = F.tensor("v", (n_chains, model.n_visible), model.dtype)
    vs, vp = v, None
    for _ in range(steps):
        _, _, vp, vs = model.gibbs_vhv(vs)
    return function([v], vp, device=device, name="rbm_sample")


# --------------------------------------------------------------------------- sequences
def seqdigits(batch: int = 32, rows: int = 8, hidden: int = 64, cell: str = "lstm", optimizer=None, seed: int = 0,
              dtype="float32") -> ZooModel:
    """A sequence classifier on the digits read row by row: each image
    ``(1, rows, rows)`` is ``rows`` steps of one row each through an LSTM (or
    ``cell="gru"``/``"rnn"``), whose last output feeds a dense layer to 10 logits.
    ``rows=8``: the shipped 8x8 digits; ``rows=28``: the same digits in MNIST framing.
    Default optimiser: Adam(0.01)."""
    from .recurrent import GRU, LSTM, RNN
    rng = np.random.default_rng(seed)
    rnn = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[cell](rows, hidden, return_sequences=False, rng=rng, dtype=dtype)
    model = L.Sequential([L.Lambda(lambda x: F.reshape(x, (x.shape[0], rows, rows))), rnn,
                          L.Dense(hidden, 10, rng=rng, dtype=dtype)], name="seqdigits")
    opt = optim.get(optimizer) if optimizer is not None else optim.Adam(0.01)
    return _classifier("seqdigits", model, batch_size(batch), (1, rows, rows), 10, opt, dtype)


class CharLSTM(L.Module):
    """Embedding -> LSTM -> dense logits over the alphabet, at every step."""

    default_name = "charlstm"

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, rng, dtype):
        super().__init__()
        from .recurrent import LSTM, Embedding
        self.embed = Embedding(vocab, embed, rng=rng, dtype=dtype)
        self.lstm = LSTM(embed, hidden, num_layers=layers, rng=rng, dtype=dtype)
        self.out = L.Dense(hidden, vocab, rng=rng, dtype=dtype)

    def run(self, ids, state=None):
        """(logits (batch, time, vocab), final LSTM state)."""
        seq, state = self.lstm.run(self.embed(ids), state)
        return self.out(seq), state

    def forward(self, ids, train):
        return self.run(ids)[0]


def charlstm(batch: int = 32, steps: int = 64, embed: int = 32, hidden: int = 128, layers: int = 1, optimizer=None,
             seed: int = 0, corpus: str | None = None, dtype="float32") -> ZooModel:
    """A character-level LSTM language model on a text corpus (by default the one
    shipped with symfuse, ``nn.data.text()``): ids ``(batch, steps)`` predict the
    next character at every step; loss and accuracy are per character. Sample with
    :func:`charlstm_sample_function`. Default optimiser: Adam(0.005)."""
    from . import data as D
    corpus_text = D.text(corpus)
    rng = np.random.default_rng(seed)
    model = CharLSTM(corpus_text.vocab, embed, hidden, layers, rng, dtype)
    x = F.tensor("x", (batch, steps), "int32")
    y = F.tensor("y", (batch, steps), "int32")
    flat = F.reshape(model(x, train=True), (batch * steps, corpus_text.vocab))
    labels = F.reshape(y, (batch * steps,))
    loss = losses.softmax_cross_entropy(flat, labels)
    opt = optim.get(optimizer) if optimizer is not None else optim.Adam(0.005)
    zm = ZooModel("charlstm", "language", model, [x, y], [loss, losses.accuracy(flat, labels)], ["loss", "accuracy"],
                  opt.updates(loss, model.params), batch_size(batch), (int(steps),), "int32", corpus_text.vocab, opt,
                  predict_graph=lambda v: L.softmax(model(v, train=False)))
    zm.corpus = corpus_text
    return zm


def charlstm_sample_function(zm: ZooModel, prime: str, length: int, temperature: float = 1.0, device=None):
    """Compiled ``seed -> ids``: ``length`` characters drawn after ``prime``, one per step
    of a scan (the prime runs through the LSTM first; each step draws from the
    softmax at ``temperature`` by the Gumbel-max trick with the counter-based
    generator, seeded by the int64 ``seed`` and the step). ``zm.corpus.decode`` turns
    the ids into text."""
    from ..frontend import random as R
    model: CharLSTM = zm.model
    if not prime:
        raise ValueError("charlstm_sample_function: prime must be at least one character")
    ids = F.constant(zm.corpus.encode(prime)[None])
    seed = F.tensor("seed", (), "int64")
    logits, state = model.run(ids)
    V = zm.corpus.vocab

    def step(carry, t):
        last, st = carry
        u = R.uniform((1, V), seed * 1_000_003 + t, dtype=zm.model.out.W.dtype.name)
        gumbel = -F.log(-F.log(F.maximum(u, 1e-20)))
        nxt = F.argmax(last * (1.0 / temperature) + gumbel, axis=1)        # (1,)
        out, st = model.run(F.reshape(nxt, (1, 1)), st)
        return (out[:, 0], st), nxt[0]

    _, drawn = F.scan(step, (logits[:, -1], state), F.constant(np.arange(length, dtype=np.int64)))
    return function([seed], drawn, device=device, name="charlstm_sample")


ZOO: dict[str, Callable[..., ZooModel]] = {"mlp": mlp, "lenet": lenet, "rbm": rbm, "seqdigits": seqdigits,
                                           "charlstm": charlstm}


def get(name: str, **kw) -> ZooModel:
    """Build a zoo model by name (``"mlp"``, ``"lenet"``, ``"rbm"``) with the builder's keyword arguments."""
    try:
        builder = ZOO[name]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown zoo model {name!r}; available: {sorted(ZOO)}") from None
    return builder(**kw)


__all__ = ["ZooModel", "ZOO", "get", "mlp", "lenet", "rbm", "RBM", "rbm_sample_function", "seqdigits", "charlstm",
           "CharLSTM", "charlstm_sample_function"]
