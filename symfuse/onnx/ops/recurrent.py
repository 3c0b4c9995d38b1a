"""Recurrent layers: RNN, GRU, LSTM (forward, reverse, bidirectional; layout 0 and 1;
clip; activations with their alpha/beta; sequence_lens; LSTM peepholes and
input_forget; GRU linear_before_reset).

Each direction is one ``scan`` over time: the input projection x @ W^T + biases for
every step is a single matmul before the loop; the loop carries h (and c) and does
the recurrent matmul. ``sequence_lens`` masks the steps past each sequence's end
(the state stays, the output is zero), which is what ONNX asks for in both
directions: a reverse pass starts at each sequence's own last step.
"""
from __future__ import annotations

from ...frontend import api as F
from ..registry import converter

# name (lower case) -> (function of x, alpha, beta; default alpha, default beta)
ACTIVATIONS = {
    "relu": (lambda x, a, b: F.relu(x), None, None),
    "tanh": (lambda x, a, b: F.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: F.sigmoid(x), None, None),
    "affine": (lambda x, a, b: x * a + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: F.where(x >= 0, x, x * a), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: F.where(x > a, x, F.zeros_like(x)), 1.0, None),
    "scaledtanh": (lambda x, a, b: F.tanh(x * b) * a, 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: F.clip(x * a + b, 0.0, 1.0), 0.2, 0.5),
    "elu": (lambda x, a, b: F.where(x >= 0, x, (F.exp(x) - 1.0) * a), 1.0, None),
    "softsign": (lambda x, a, b: x / (F.abs(x) + 1.0), None, None),
    "softplus": (lambda x, a, b: F.softplus(x), None, None),
}
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _activations(n, per_direction: int, directions: int) -> list:
    """One list of callables per direction; alpha/beta are consumed in order by the
    activations that take them."""
    names = n.attr("activations")
    names = list(names) if names else DEFAULT_ACTIVATIONS[n.op_type] * directions
    if len(names) != per_direction * directions:
        n.fail(f"activations {names} must name {per_direction} functions per direction ({directions})")
    alphas = list(n.attr("activation_alpha", []))
    betas = list(n.attr("activation_beta", []))
    fns = []
    for name in names:
        entry = ACTIVATIONS.get(name.lower())
        if entry is None:
            n.unsupported(f"activation {name!r}", f"{n.op_type}: activation {name}")
        fn, da, db = entry
        a = alphas.pop(0) if da is not None and alphas else da
        b = betas.pop(0) if db is not None and betas else db
        fns.append(lambda x, fn=fn, a=a, b=b: fn(x, a, b))
    return [fns[d * per_direction:(d + 1) * per_direction] for d in range(directions)]


class Spec:
    """What every direction of one RNN/GRU/LSTM node shares."""

    def __init__(self, n):
        self.n = n
        self.gates = GATES[n.op_type]
        x, w, r = n.value(0), n.value(1), n.value(2)
        if not x.dtype.is_float or x.ndim != 3 or w.ndim != 3 or r.ndim != 3:
            n.fail(f"X {x.type}, W {w.type}, R {r.type} must be 3-D floating-point tensors")
        self.layout = n.attr("layout", 0)
        if self.layout not in (0, 1):
            n.fail(f"layout={self.layout!r} must be 0 or 1")
        self.x = F.transpose(x, (1, 0, 2)) if self.layout else x          # (T, B, I)
        self.steps, self.batch = self.x.shape[:2]
        direction = n.attr("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            n.fail(f"direction={direction!r} is not forward, reverse or bidirectional")
        self.reverse = [False, True] if direction == "bidirectional" else [direction == "reverse"]
        self.hidden = n.attr("hidden_size", r.shape[-1])
        d, g, h = len(self.reverse), self.gates, self.hidden
        if w.shape != (d, g * h, x.shape[2]) or r.shape != (d, g * h, h):
            n.fail(f"W {w.type} and R {r.type} must be ({d}, {g * h}, {x.shape[2]}) and ({d}, {g * h}, {h})")
        self.w, self.r = w, r
        self.bias = n.value(3) if n.has(3) else None
        if self.bias is not None and self.bias.shape != (d, 2 * g * h):
            n.fail(f"B {self.bias.type} must be ({d}, {2 * g * h})")
        self.mask = self._mask()
        self.clip = n.attr("clip")
        self.fns = _activations(n, len(DEFAULT_ACTIVATIONS[n.op_type]), d)

    def _mask(self):
        """(T, B, 1) 1.0 for steps inside each sequence, or None."""
        if not self.n.has(4):
            return None
        lens = self.n.value(4)
        if lens.shape != (self.batch,):
            self.n.fail(f"sequence_lens {lens.type} must hold one length per batch entry ({self.batch})")
        steps = F.reshape(F.constant(list(range(self.steps)), "int32"), (-1, 1, 1))
        inside = steps < F.reshape(F.cast(lens, "int32"), (1, -1, 1))
        return F.cast(inside, self.x.dtype)

    def state(self, i: int, d: int):
        """Initial state input ``i`` (h or c) of direction d as (B, H)."""
        if not self.n.has(i):
            return F.zeros((self.batch, self.hidden), self.x.dtype)
        v = self.n.value(i)
        v = F.transpose(v, (1, 0, 2)) if self.layout else v
        if v.shape != (len(self.reverse), self.batch, self.hidden):
            self.n.fail(f"initial state {v.type} must be ({len(self.reverse)}, {self.batch}, {self.hidden})")
        return v[d]

    def biases(self, d: int):
        """(input bias Wb, recurrent bias Rb) of direction d, or zeros."""
        gh = self.gates * self.hidden
        if self.bias is None:
            z = F.zeros((gh,), self.x.dtype)
            return z, z
        return self.bias[d, :gh], self.bias[d, gh:]

    def act(self, v):
        return v if self.clip is None else F.clip(v, -float(self.clip), float(self.clip))

    def run(self, d: int, carries: list, cell, x_bias):
        """Scan ``cell(carries, projected x_t) -> new carries`` over time for direction
        d; the outputs are (Y (T, B, H), final carries)."""
        xw = F.matmul(self.x, F.transpose(self.w[d])) + x_bias                      # (T, B, G*H)
        seqs = (xw,) if self.mask is None else (xw, self.mask)

        def step(c, xs):
            new = cell(list(c), xs[0])
            if self.mask is None:
                return tuple(new), new[0]
            m = xs[1]
            kept = tuple(v * m + old * (1.0 - m) for v, old in zip(new, c))
            return kept, new[0] * m

        final, ys = F.scan(step, tuple(carries), seqs, reverse=self.reverse[d])
        return ys, list(final)


def _outputs(spec: Spec, per_direction: list):
    """Y, Y_h (and Y_c) from [(ys, finals)] per direction, in the node's layout."""
    y = F.stack([ys for ys, _ in per_direction], 1)                                  # (T, D, B, H)
    finals = [F.stack([f[k] for _, f in per_direction], 0) for k in range(len(per_direction[0][1]))]
    if spec.layout:
        y = F.transpose(y, (2, 0, 1, 3))
        finals = [F.transpose(f, (1, 0, 2)) for f in finals]
    return [y] + finals


@converter("RNN", since=7)
def rnn(n):
    spec = Spec(n)
    outs = []
    for d in range(len(spec.reverse)):
        wb, rb = spec.biases(d)
        rt = F.transpose(spec.r[d])
        (f,) = spec.fns[d]
        outs.append(spec.run(d, [spec.state(5, d)], lambda c, xw: [f(spec.act(xw + F.matmul(c[0], rt)))], wb + rb))
    return _outputs(spec, outs)


@converter("GRU", since=7)
def gru(n):
    spec = Spec(n)
    h = spec.hidden
    before_reset = bool(n.attr("linear_before_reset", 0))
    outs = []
    for d in range(len(spec.reverse)):
        wb, rb = spec.biases(d)
        r_zr, r_h = F.transpose(spec.r[d][:2 * h]), F.transpose(spec.r[d][2 * h:])
        rb_h = rb[2 * h:]
        f, g = spec.fns[d]

        def cell(c, xw, r_zr=r_zr, r_h=r_h, rb_h=rb_h, f=f, g=g):
            prev = c[0]
            zr = f(spec.act(xw[:, :2 * h] + F.matmul(prev, r_zr)))
            z, r = zr[:, :h], zr[:, h:]
            if before_reset:
                cand = xw[:, 2 * h:] + r * (F.matmul(prev, r_h) + rb_h)
            else:
                cand = xw[:, 2 * h:] + F.matmul(r * prev, r_h) + rb_h
            hh = g(spec.act(cand))
            return [(1.0 - z) * hh + z * prev]

        # the recurrent biases of z and r join the input projection; h's stays inside
        x_bias = wb + F.concatenate([rb[:2 * h], F.zeros((h,), rb.dtype)])
        outs.append(spec.run(d, [spec.state(5, d)], cell, x_bias))
    return _outputs(spec, outs)


@converter("LSTM", since=7)
def lstm(n):
    spec = Spec(n)
    h = spec.hidden
    coupled = bool(n.attr("input_forget", 0))
    peep = n.value(7) if n.has(7) else None
    if peep is not None and peep.shape != (len(spec.reverse), 3 * h):
        n.fail(f"P {peep.type} must be ({len(spec.reverse)}, {3 * h})")
    outs = []
    for d in range(len(spec.reverse)):
        wb, rb = spec.biases(d)
        rt = F.transpose(spec.r[d])
        f, g, hf = spec.fns[d]
        p = [None] * 3 if peep is None else [peep[d, k * h:(k + 1) * h] for k in range(3)]

        def cell(c, xw, rt=rt, f=f, g=g, hf=hf, p=p):
            prev_h, prev_c = c
            pre = xw + F.matmul(prev_h, rt)                                          # gates i, o, f, c
            gi, go, gf, gc = (pre[:, k * h:(k + 1) * h] for k in range(4))
            i = f(spec.act(gi if p[0] is None else gi + p[0] * prev_c))
            forget = 1.0 - i if coupled else f(spec.act(gf if p[2] is None else gf + p[2] * prev_c))
            cell_c = forget * prev_c + i * g(spec.act(gc))
            o = f(spec.act(go if p[1] is None else go + p[1] * cell_c))
            return [o * hf(cell_c), cell_c]

        outs.append(spec.run(d, [spec.state(5, d), spec.state(6, d)], cell, wb + rb))
    return _outputs(spec, outs)
