"""Recurrent layers over ``sf.scan``: RNN, LSTM and GRU (single or stacked), and
Embedding.

Weights use PyTorch's layout and names, so ``torch.nn.LSTM`` weights copy across
(``weight_ih_l{k}`` ``(gates * hidden, input)``, ``weight_hh_l{k}``
``(gates * hidden, hidden)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``; LSTM gates in the
order i, f, g, o; GRU r, z, n with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``).
Inputs are batch-first, ``(batch, time, features)``.

One layer is one scan over time: the input projection of every step is one matrix
product before the loop (``(time * batch, input) @ (input, gates * hidden)``), and
the loop body holds only the recurrent product and the gate arithmetic, so the
compiled body is the same for any sequence length.

Calling a layer: ``layer(x)`` or ``layer((x, initial_state))``; the result is the
sequence of outputs ``(batch, time, hidden)`` with ``return_sequences=True``, else
the last output ``(batch, hidden)``. ``layer.run(x, state)`` returns
``(outputs, final_state)``: the state is ``h`` (RNN, GRU) or ``(h, c)`` (LSTM), each
``(num_layers, batch, hidden)`` as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from ..frontend import api as F
from . import init as initializers
from .layers import Module

_ACTIVATIONS = {"tanh": F.tanh, "relu": F.relu}


class _Recurrent(Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 return_sequences: bool = True, rng=None, dtype="float32", name=None):
        super().__init__(name)
        if min(input_size, hidden_size, num_layers) < 1:
            raise ValueError(f"{type(self).__name__}: input_size, hidden_size and num_layers must be positive, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.return_sequences = return_sequences
        rng = initializers.as_rng(rng)
        k = 1.0 / np.sqrt(hidden_size)        # PyTorch's initialisation: U(-1/sqrt(H), 1/sqrt(H))
        G = self.gates * hidden_size
        self.layers = []
        for n in range(num_layers):
            fan_in = input_size if n == 0 else hidden_size
            u = lambda *shape: rng.uniform(-k, k, shape).astype(dtype)  # noqa: E731
            w_ih = self.add_param(f"weight_ih_l{n}", u(G, fan_in))
            w_hh = self.add_param(f"weight_hh_l{n}", u(G, hidden_size))
            b_ih = self.add_param(f"bias_ih_l{n}", u(G)) if bias else None
            b_hh = self.add_param(f"bias_hh_l{n}", u(G)) if bias else None
            self.layers.append((w_ih, w_hh, b_ih, b_hh))

    # ---- the recurrence of one layer: (x_proj_t, state, w_hh, b_hh) -> (state, h)
    def cell(self, xp, state, w_hh, b_hh):
        raise NotImplementedError

    def _zero_state(self, batch, dtype):
        return F.zeros((batch, self.hidden_size), dtype)

    def _split_state(self, state, batch, dtype):
        if state is None:
            return [self._zero_state(batch, dtype) for _ in range(self.num_layers)]
        h = F.as_tensor(state)
        want = (self.num_layers, batch, self.hidden_size)
        if h.shape != want:
            raise ValueError(f"{self.name}: initial state must be {want}, got {h.type}")
        return [h[n] for n in range(self.num_layers)]

    def _join_state(self, states):
        return F.stack(states)

    def run(self, x, state=None):
        """``(outputs (batch, time, hidden), final state)``."""
        x = F.as_tensor(x)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{self.name}: expected inputs (batch, time, {self.input_size}), got {x.type}")
        B, T, _ = x.shape
        states = self._split_state(state, B, x.dtype)
        seq = F.transpose(x, (1, 0, 2))                        # (time, batch, features)
        finals = []
        for (w_ih, w_hh, b_ih, b_hh), s0 in zip(self.layers, states):
            xp = F.reshape(F.reshape(seq, (T * B, seq.shape[2])) @ F.transpose(w_ih), (T, B, -1))
            if b_ih is not None:
                xp = xp + b_ih
            wt = F.transpose(w_hh)
            s, seq = F.scan(lambda st, xt: self.cell(xt, st, wt, b_hh), s0, xp)
            finals.append(s)
        return F.transpose(seq, (1, 0, 2)), self._join_state(finals)

    def forward(self, x, train):
        state = None
        if isinstance(x, tuple):
            x, state = x
        out, _ = self.run(x, state)
        return out if self.return_sequences else out[:, -1]


class RNN(_Recurrent):
    """Elman RNN: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (``nonlinearity``
    tanh or relu)."""

    default_name = "rnn"
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh", **kw):
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"RNN: nonlinearity must be one of {sorted(_ACTIVATIONS)}, got {nonlinearity!r}")
        self.act = _ACTIVATIONS[nonlinearity]
        super().__init__(input_size, hidden_size, num_layers, **kw)

    def cell(self, xp, h, wt, b_hh):
        z = xp + h @ wt
        h = self.act(z + b_hh if b_hh is not None else z)
        return h, h


class LSTM(_Recurrent):
    """Long short-term memory (gates i, f, g, o, as ``torch.nn.LSTM``)."""

    default_name = "lstm"
    gates = 4

    def cell(self, xp, state, wt, b_hh):
        h, c = state
        z = xp + h @ wt
        if b_hh is not None:
            z = z + b_hh
        H = self.hidden_size
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
        c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
        h = F.sigmoid(o) * F.tanh(c)
        return (h, c), h

    def _zero_state(self, batch, dtype):
        return (F.zeros((batch, self.hidden_size), dtype), F.zeros((batch, self.hidden_size), dtype))

    def _split_state(self, state, batch, dtype):
        if state is None:
            return [self._zero_state(batch, dtype) for _ in range(self.num_layers)]
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"{self.name}: the initial state of an LSTM is a pair (h0, c0)")
        hs = _Recurrent._split_state(self, state[0], batch, dtype)
        cs = _Recurrent._split_state(self, state[1], batch, dtype)
        return list(zip(hs, cs))

    def _join_state(self, states):
        return F.stack([h for h, _ in states]), F.stack([c for _, c in states])


class GRU(_Recurrent):
    """Gated recurrent unit (gates r, z, n, as ``torch.nn.GRU``)."""

    default_name = "gru"
    gates = 3

    def cell(self, xp, h, wt, b_hh):
        hp = h @ wt
        if b_hh is not None:
            hp = hp + b_hh
        H = self.hidden_size
        xr, xz, xn = (xp[:, k * H:(k + 1) * H] for k in range(3))
        hr, hz, hn = (hp[:, k * H:(k + 1) * H] for k in range(3))
        r = F.sigmoid(xr + hr)
        z = F.sigmoid(xz + hz)
        n = F.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * h
        return h, h


class Embedding(Module):
    """Rows of a ``(num_embeddings, embedding_dim)`` table picked by integer ids
    (``torch.nn.Embedding``'s ``weight``); ids outside the table are clamped."""

    default_name = "embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, rng=None, dtype="float32", name=None):
        super().__init__(name)
        rng = initializers.as_rng(rng)
        self.weight = self.add_param("weight", rng.normal(0.0, 1.0, (num_embeddings, embedding_dim)).astype(dtype))

    def forward(self, ids, train):
        ids = F.as_tensor(ids)
        if ids.dtype.is_float:
            raise ValueError(f"{self.name}: ids must be integers, got {ids.type}")
        return F.take(self.weight, ids, axis=0)
