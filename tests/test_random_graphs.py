"""Random DAGs: the full pass pipeline must not change what a graph computes.

A seeded generator (hypothesis chooses the seed; everything else comes from a
numpy generator, so examples replay exactly) builds graphs of 5-40 ops over the
core op set: unary ops, binary ops with broadcasting, reductions with and
without keepdims, reshapes/transposes/slices, matmul, comparisons and where,
softmax/log_softmax/logsumexp when the nn ops exist, constants such as 0, 1, -1,
2 and 0.5 (so that algebraic rewrites fire), naive forms the stabiliser rewrites
(log(sigmoid), log(sum(exp)), log(1 + exp), ...) and repeated subexpressions
(so that CSE fires).

Every op's value is also computed with numpy while the graph is built; an op
whose result overflows (inf, or magnitude above 1e4) is dropped, so the graphs
stay in the range where the naive and the stabilised forms agree. NaN from
domain errors (log of a negative number) is kept: NaN positions must match.

For each graph: optimised == unoptimised (rtol 1e-4, atol 1e-5, NaN positions
equal), unoptimised == the numpy values, and both functions print -> parse ->
print identically and the parsed functions evaluate to the same arrays.
"""
from __future__ import annotations

import numpy as np
import scipy.special
from hypothesis import given, settings, strategies as st

import symfuse as sf
from symfuse.ir.core import toposort
from symfuse.ir.printer import print_function
from symfuse.runtime.interp import evaluate

HAVE_NN = getattr(sf, "softmax", None) is not None
MAX_ABS = 1e4
CONSTS = (0.0, 1.0, -1.0, 2.0, 0.5)


def _erf(x):
    return scipy.special.erf(x)


UNARY = [
    ("neg", sf.negative, np.negative, None),
    ("exp", sf.exp, np.exp, None),
    ("log", sf.log, np.log, "pos"),
    ("log1p", sf.log1p, np.log1p, "pos"),
    ("expm1", sf.expm1, np.expm1, None),
    ("sqrt", sf.sqrt, np.sqrt, "pos"),
    ("rsqrt", sf.rsqrt, lambda x: 1 / np.sqrt(x), "pos"),
    ("abs", sf.abs, np.abs, None),
    ("sign", sf.sign, np.sign, None),
    ("reciprocal", sf.reciprocal, lambda x: 1 / x, "pos"),
    ("tanh", sf.tanh, np.tanh, None),
    ("sigmoid", sf.sigmoid, scipy.special.expit, None),
    ("relu", sf.relu, lambda x: np.maximum(x, 0), None),
    ("softplus", sf.softplus, lambda x: np.logaddexp(0, x), None),
    ("erf", sf.erf, _erf, None),
    ("sin", sf.sin, np.sin, None),
    ("cos", sf.cos, np.cos, None),
    ("square", sf.square, np.square, None),
    ("floor", sf.floor, np.floor, None),
]

BINARY = [
    ("add", lambda a, b: a + b, np.add),
    ("sub", lambda a, b: a - b, np.subtract),
    ("mul", lambda a, b: a * b, np.multiply),
    ("div", lambda a, b: a / b, np.divide),
    ("pow", lambda a, b: a ** b, np.power),
    ("maximum", sf.maximum, np.maximum),
    ("minimum", sf.minimum, np.minimum),
]

COMPARE = [
    (lambda a, b: a > b, np.greater), (lambda a, b: a <= b, np.less_equal),
    (sf.less, np.less), (sf.greater_equal, np.greater_equal),
    (sf.equal, np.equal), (sf.not_equal, np.not_equal),
]

REDUCE = [
    ("sum", sf.sum, np.sum), ("mean", sf.mean, np.mean), ("max", sf.max, np.max),
    ("min", sf.min, np.min), ("prod", sf.prod, np.prod),
]


def _bshape(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


class Node:
    __slots__ = ("v", "a")

    def __init__(self, v, a):
        self.v, self.a = v, np.asarray(a)


class GraphGen:
    """Builds one random graph; ``nodes`` holds (symbolic value, numpy value) pairs."""

    def __init__(self, seed: int, n_ops: int | None = None):
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.n_ops = int(rng.integers(5, 41)) if n_ops is None else n_ops
        rank = int(rng.integers(0, 4))
        self.full = tuple(int(d) for d in rng.choice([1, 2, 3, 4], size=rank))
        self.inputs, self.args, self.nodes, self.recipes = [], [], [], []
        for i in range(int(rng.integers(1, 4))):
            k = int(rng.integers(0, rank + 1))
            shape = tuple(1 if rng.random() < 0.3 else d for d in self.full[rank - k:])
            a = rng.normal(0.0, 1.0, shape)
            v = sf.tensor(f"x{i}", shape, "float64")
            self.inputs.append(v)
            self.args.append(a)
            self.nodes.append(Node(v, a))
        self.ops_built = 0

    # ---------------------------------------------------------------- helpers
    def pick(self, pred=None):
        cands = [n for n in self.nodes if pred is None or pred(n)]
        if not cands:
            return None
        # favour recent nodes: deeper graphs
        w = np.arange(1, len(cands) + 1, dtype=float) ** 1.5
        return cands[int(self.rng.choice(len(cands), p=w / w.sum()))]

    def const(self, shape=()):
        rng = self.rng
        r = rng.random()
        if r < 0.6:
            c = float(rng.choice(CONSTS))
        else:
            c = float(np.round(rng.normal(0, 2), 3))
        if not shape or rng.random() < 0.5:
            return c, np.float64(c)           # Python scalar: weakly typed constant
        if rng.random() < 0.5:
            arr = np.full(shape, c)           # uniform array constant
        else:
            arr = np.round(rng.normal(0, 1, shape), 3)
        return sf.constant(arr), arr

    def positive(self, n):
        """Operand for a function defined on positive numbers: usually made safe."""
        r = self.rng.random()
        if r < 0.3 and np.nanmax(n.a, initial=0) < 5:
            return Node(sf.exp(n.v), np.exp(n.a))
        if r < 0.8:
            return Node(sf.abs(n.v) + 0.5, np.abs(n.a) + 0.5)
        return n

    def accept(self, v, a) -> bool:
        a = np.asarray(a)
        if tuple(v.shape) != a.shape:
            raise AssertionError(f"generator bug: {v.type} vs numpy shape {a.shape}")
        if np.isinf(a).any() or a.size == 0:
            return False
        fin = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        return fin.size == 0 or float(np.max(np.abs(fin))) <= MAX_ABS

    def add(self, build) -> bool:
        with np.errstate(all="ignore"):
            v, a = build()
        if not self.accept(v, a):
            return False
        self.nodes.append(Node(v, a))
        self.recipes.append(build)
        return True

    # ---------------------------------------------------------------- steps
    def step_unary(self):
        name, f, g, dom = UNARY[int(self.rng.integers(len(UNARY)))]
        n = self.pick()
        if dom == "pos":
            n = self.positive(n)
        return lambda: (f(n.v), g(n.a))

    def step_binary(self):
        name, f, g = BINARY[int(self.rng.integers(len(BINARY)))]
        a = self.pick()
        rng = self.rng
        if rng.random() < 0.4:
            cv, ca = self.const(a.a.shape if rng.random() < 0.5 else a.a.shape[1:])
            if name == "pow":
                cv = float(rng.choice([2.0, 0.5, 1.0, 0.0, -1.0, 3.0]))
                ca = np.float64(cv)
                a = self.positive(a) if cv in (0.5, -1.0) else a
            if rng.random() < 0.5 or name == "pow":
                return lambda: (f(a.v, cv), g(a.a, ca))
            return lambda: (f(cv, a.v), g(ca, a.a))
        b = self.pick(lambda n: _bshape(n.a.shape, a.a.shape) is not None)
        if name == "pow":
            a = self.positive(a)
        if name == "div" and rng.random() < 0.8:
            b = self.positive(b)
        return lambda: (f(a.v, b.v), g(a.a, b.a))

    def step_where(self):
        rng = self.rng
        a = self.pick()
        b = self.pick(lambda n: _bshape(n.a.shape, a.a.shape) is not None)
        cf, cg = COMPARE[int(rng.integers(len(COMPARE)))]
        if rng.random() < 0.3:
            c = float(rng.choice(CONSTS))
            cond = (cf(a.v, c), cg(a.a, c))
        else:
            cond = (cf(a.v, b.v), cg(a.a, b.a))
        x = self.pick(lambda n: _bshape(n.a.shape, cond[1].shape) is not None)
        r = rng.random()
        if r < 0.3:
            c = float(rng.choice(CONSTS))
            return lambda: (sf.where(cond[0], x.v, c), np.where(cond[1], x.a, c))
        y = self.pick(lambda n: _bshape(n.a.shape, cond[1].shape, x.a.shape) is not None)
        return lambda: (sf.where(cond[0], x.v, y.v), np.where(cond[1], x.a, y.a))

    def step_reduce(self):
        rng = self.rng
        name, f, g = REDUCE[int(rng.integers(len(REDUCE)))]
        n = self.pick()
        nd = n.a.ndim
        r = rng.random()
        if nd == 0 or r < 0.25:
            axis = None
        elif r < 0.7:
            axis = int(rng.integers(-nd, nd))
        else:
            k = int(rng.integers(1, nd + 1))
            axis = tuple(int(i) for i in sorted(rng.choice(nd, size=k, replace=False)))
        keep = bool(rng.random() < 0.5)
        if name == "prod":   # keep products bounded
            n = Node(sf.tanh(n.v) + 1.0, np.tanh(n.a) + 1.0) if rng.random() < 0.7 else n
        return lambda: (f(n.v, axis=axis, keepdims=keep), g(n.a, axis=axis, keepdims=keep))

    def step_shape(self):
        rng = self.rng
        n = self.pick()
        shape = n.a.shape
        nd = len(shape)
        kind = rng.choice(["reshape", "transpose", "slice", "broadcast", "expand", "squeeze", "concat", "pad"])
        if kind == "reshape":
            opts = [(-1,), tuple(reversed(shape)), (1,) + shape, shape + (1,)]
            if n.a.size % 2 == 0 and n.a.size:
                opts.append((2, -1))
            tgt = opts[int(rng.integers(len(opts)))]
            return lambda: (sf.reshape(n.v, tgt), np.reshape(n.a, tgt))
        if kind == "transpose" and nd >= 2:
            perm = tuple(int(p) for p in rng.permutation(nd))
            if rng.random() < 0.3:
                return lambda: (n.v.T, n.a.T)
            return lambda: (sf.transpose(n.v, perm), np.transpose(n.a, perm))
        if kind == "slice" and nd >= 1:
            ax = int(rng.integers(nd))
            d = shape[ax]
            choices = [slice(None, None, -1), slice(None, None, 2), slice(-2, None, -1) if d > 1 else 0,
                       slice(1, None) if d > 1 else slice(None), 0, -1]
            s = choices[int(rng.integers(len(choices)))]
            idx = (slice(None),) * ax + (s,)
            if rng.random() < 0.3:
                idx = (Ellipsis, s) + (slice(None),) * (nd - ax - 1)
            if rng.random() < 0.2:
                idx = (None,) + idx
            return lambda: (n.v[idx], np.asarray(n.a[idx]))
        if kind == "broadcast":
            tgt = (2,) + tuple(int(rng.integers(1, 4)) if s == 1 else s for s in shape)
            return lambda: (sf.broadcast_to(n.v, tgt), np.broadcast_to(n.a, tgt))
        if kind == "expand":
            ax = int(rng.integers(-nd - 1, nd + 1))
            return lambda: (sf.expand_dims(n.v, ax), np.expand_dims(n.a, ax))
        if kind == "squeeze":
            return lambda: (sf.squeeze(n.v), np.squeeze(n.a))
        if kind == "concat" and nd >= 1:
            ax = int(rng.integers(-nd, nd))
            m = self.pick(lambda o: o.a.ndim == nd and all(
                i == ax % nd or o.a.shape[i] == shape[i] for i in range(nd)))
            return lambda: (sf.concatenate([n.v, m.v], ax), np.concatenate([n.a, m.a], ax))
        if kind == "pad" and nd >= 1:
            w = int(rng.integers(0, 2))
            val = float(rng.choice(CONSTS))
            return lambda: (sf.pad(n.v, (w, 1), val), np.pad(n.a, (w, 1), constant_values=val))
        return lambda: (sf.flip(n.v), np.flip(n.a))

    def step_matmul(self):
        rng = self.rng
        a = self.pick(lambda n: n.a.ndim >= 1)
        if a is None:
            return None
        k = a.a.shape[-1]
        r = rng.random()
        if a.a.ndim >= 2 and r < 0.4:
            perm = list(range(a.a.ndim))
            perm[-1], perm[-2] = perm[-2], perm[-1]
            return lambda: (a.v @ sf.transpose(a.v, perm), np.matmul(a.a, np.transpose(a.a, perm)))
        b = self.pick(lambda n: n.a.ndim >= 2 and n.a.shape[-2] == k
                      and _bshape(n.a.shape[:-2], a.a.shape[:-2]) is not None)
        if b is not None and r < 0.7:
            return lambda: (sf.matmul(a.v, b.v), np.matmul(a.a, b.a))
        w = np.round(rng.normal(0, 0.7, (k, int(rng.integers(1, 4)))), 3)
        if rng.random() < 0.3:
            w = w[:, 0]
        return lambda: (a.v @ sf.constant(w), np.matmul(a.a, w))

    def step_nn(self):
        if not HAVE_NN:
            return self.step_unary()
        rng = self.rng
        n = self.pick(lambda o: o.a.ndim >= 1)
        if n is None:
            return None
        which = int(rng.integers(3))
        if which == 0:
            return lambda: (sf.softmax(n.v), scipy.special.softmax(n.a, axis=-1))
        if which == 1:
            return lambda: (sf.log_softmax(n.v), scipy.special.log_softmax(n.a, axis=-1))
        keep = bool(rng.random() < 0.5)
        return lambda: (sf.logsumexp(n.v, axis=-1, keepdims=keep),
                        scipy.special.logsumexp(n.a, axis=-1, keepdims=keep))

    def step_pattern(self):
        """Shapes the rewrites look for: identities with constants and naive forms."""
        rng = self.rng
        n = self.pick()
        x, a = n.v, n.a
        pats = [
            lambda: (x * 1.0, a * 1.0), lambda: (1.0 * x, a), lambda: (x + 0.0, a + 0.0),
            lambda: (0.0 + x, a), lambda: (x - 0.0, a), lambda: (x / 1.0, a),
            lambda: (x * 0.0, a * 0.0), lambda: (x ** 1.0, a), lambda: (x ** 2.0, a ** 2),
            lambda: (-(-x), a), lambda: (x - x, a - a), lambda: (x / x, a / a),
            lambda: (x * -1.0, -a), lambda: (x * 2.0 * 0.5, a * 2.0 * 0.5),
            lambda: (sf.log(sf.exp(x)), np.log(np.exp(a))),
            lambda: (sf.exp(sf.log(x)), np.exp(np.log(a))),
            lambda: (sf.log(sf.sigmoid(x)), np.log(scipy.special.expit(a))),
            lambda: (sf.log(1.0 - sf.sigmoid(x)), np.log(1.0 - scipy.special.expit(a))),
            lambda: (sf.log(1.0 + sf.exp(x)), np.log(1.0 + np.exp(a))),
            lambda: (sf.log(sf.exp(x) + 1.0), np.log(np.exp(a) + 1.0)),
            lambda: (sf.exp(x) - 1.0, np.exp(a) - 1.0),
            lambda: (sf.log(1.0 + x), np.log(1.0 + a)),
            lambda: (sf.sqrt(x * x), np.sqrt(a * a)),
            lambda: (sf.abs(sf.abs(x)), np.abs(a)),
            lambda: (sf.transpose(sf.transpose(x)), a),
            lambda: (sf.reshape(sf.reshape(x, (-1,)), a.shape), a),
            lambda: (sf.sum(sf.broadcast_to(x, (3,) + a.shape), axis=0), 3 * a),
            lambda: (sf.maximum(x, x), a), lambda: (sf.where(x > 0, x, x), a),
            lambda: (sf.relu(sf.relu(x)), np.maximum(a, 0)),
            lambda: (sf.negative(x) * sf.negative(x), a * a),
        ]
        if a.ndim >= 1:
            pats += [
                lambda: (sf.log(sf.sum(sf.exp(x), axis=-1)), np.log(np.sum(np.exp(a), axis=-1))),
                lambda: (sf.log(sf.sum(sf.exp(x), axis=-1, keepdims=True)),
                         np.log(np.sum(np.exp(a), axis=-1, keepdims=True))),
                lambda: (sf.exp(x) / sf.sum(sf.exp(x), axis=-1, keepdims=True),
                         np.exp(a) / np.sum(np.exp(a), axis=-1, keepdims=True)),
                lambda: (x[::-1][::-1], a),
            ]
            if HAVE_NN:
                pats += [lambda: (sf.log(sf.softmax(x)), np.log(scipy.special.softmax(a, axis=-1))),
                         lambda: (sf.exp(sf.log_softmax(x)), scipy.special.softmax(a, axis=-1))]
        return pats[int(rng.integers(len(pats)))]

    def step_duplicate(self):
        """Rebuild an earlier expression from the same operands: CSE must merge it."""
        if not self.recipes:
            return None
        return self.recipes[int(self.rng.integers(len(self.recipes)))]

    STEPS = [("unary", 0.22), ("binary", 0.25), ("where", 0.07), ("reduce", 0.09), ("shape", 0.1),
             ("matmul", 0.05), ("nn", 0.04), ("pattern", 0.1), ("duplicate", 0.08)]

    def build(self):
        names = [s for s, _ in self.STEPS]
        p = np.array([w for _, w in self.STEPS])
        p /= p.sum()
        built, tries = 0, 0
        while built < self.n_ops and tries < 6 * self.n_ops:
            tries += 1
            step = getattr(self, "step_" + names[int(self.rng.choice(len(names), p=p))])()
            if step is not None and self.add(step):
                built += 1
        self.ops_built = built
        # outputs: every node no other node consumes (so every op built is live), last first
        derived = self.nodes[len(self.inputs):]
        used = {id(x) for op in toposort([n.v for n in derived], allow_free=True) for x in op.inputs}
        outs = [n for n in reversed(derived) if id(n.v) not in used]
        return outs or [self.nodes[-1]]


# --------------------------------------------------------------------------- checks
def _roundtrip(fn, args, expected):
    text = print_function(fn)
    again = sf.ir.parse(text)
    assert print_function(again) == text, f"print/parse round trip changed the text:\n{text}"
    for r, e in zip(evaluate(again, args), expected):
        np.testing.assert_array_equal(r, e)


def _close(got, want, what, ir_text):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}\n{ir_text}"
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert (nan_g == nan_w).all(), (f"{what}: NaN positions differ\n got {got}\nwant {want}\n{ir_text}")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True,
                               err_msg=f"{what}\n{ir_text}")


def compile_pair(inputs, outs):
    f_opt = sf.function(inputs, outs, device="interp")
    f_raw = sf.function(inputs, outs, device="interp", optimize_graph=False)
    return f_opt, f_raw


def check_pair(f_opt, f_raw, args):
    r_opt, r_raw = f_opt(*args), f_raw(*args)
    text = "unoptimised:\n" + f_raw.ir() + "optimised:\n" + f_opt.ir()
    for k, (o, r) in enumerate(zip(r_opt, r_raw)):
        _close(o, r, f"output {k}: optimised vs unoptimised", text)
    _roundtrip(f_opt.function, args, r_opt)
    _roundtrip(f_raw.function, args, r_raw)
    return r_opt, r_raw


STATS = {"graphs": 0, "ops": 0, "rewrites": {}}


@settings(max_examples=500, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_optimised_equals_unoptimised(seed):
    g = GraphGen(seed)
    outs = g.build()
    f_opt, f_raw = compile_pair(g.inputs, [o.v for o in outs])
    _, r_raw = check_pair(f_opt, f_raw, g.args)
    for k, (r, o) in enumerate(zip(r_raw, outs)):     # the interpreter agrees with numpy
        _close(r, o.a, f"output {k}: interpreter vs numpy", f_raw.ir())
    STATS["graphs"] += 1
    STATS["ops"] += len(f_raw.function.ops)
    for k, v in f_opt.report.rewrite_counts().items():
        STATS["rewrites"][k] = STATS["rewrites"].get(k, 0) + v


def test_the_generator_exercises_the_passes():
    """Sanity check on the generator itself: sizes in range, CSE and folding fire."""
    sizes, rewrites = [], {}
    for seed in range(60):
        g = GraphGen(seed)
        outs = g.build()
        assert 5 <= g.ops_built <= 40
        f = sf.function(g.inputs, [o.v for o in outs], device="interp")
        sizes.append(len(f.source_function.ops))
        for k, v in f.report.rewrite_counts().items():
            rewrites[k.split(":")[0]] = rewrites.get(k.split(":")[0], 0) + v
    assert max(sizes) >= 30 and min(sizes) >= 5
    assert rewrites.get("cse", 0) > 0 and rewrites.get("fold", 0) > 0, rewrites


@settings(max_examples=300, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_gradients_optimised_equal_unoptimised(seed):
    g = GraphGen(seed, n_ops=int(np.random.default_rng(seed).integers(5, 26)))
    outs = g.build()
    rng = np.random.default_rng(seed + 1)
    main = outs[0]
    R = np.round(rng.normal(size=main.a.shape), 3)
    if rng.random() < 0.5:
        cost = sf.sum(main.v * sf.constant(R)) if main.a.ndim else main.v * float(R)
    else:
        cost = sf.mean(main.v) if main.a.ndim else main.v + 0.0
    grads = sf.grad(cost, g.inputs, disconnected="zero")
    f_opt, f_raw = compile_pair(g.inputs, [cost] + list(grads))
    check_pair(f_opt, f_raw, g.args)
