"""Seeded random programs over symfuse's API, each with an independent float64 numpy twin.

A program is a list of Nodes. Each node carries the Python source that builds it with
``sf`` (executed verbatim to build the graph, and printed verbatim as the reproducer)
and a numpy function of its operands' float64 values that never touches symfuse.
While generating, every node is evaluated in float64, so the generator knows the
values and can keep them in safe domains: log/sqrt/division only of operands >= 0.1,
exp of operands < 5, magnitudes <= 1e3, and every discontinuity (comparisons,
floor/round/sign, casts to int, argmax) and every kink that a gradient sees (relu,
abs, maximum, max reductions, max pooling) at a margin from the values that exceeds
the floating-point error any backend may make. That error is bounded per node by
first-order propagation (``err``: operand errors times local derivatives plus the
op's own rounding), which also gives the comparison tolerances.

Control flow (``r_scan``, ``r_cond``, ``r_while_loop``): a loop body or branch is a small
random tree of the same recipes (unary/binary ops, reductions, products, selects, a cond or a
scan nested in it) over the carry, the slice and outer nodes it closes over; its twin walks
the tree step by step in plain numpy, checking every domain and margin and propagating the
error bound through every step. Loop and branch predicates keep CF_FLOOR from their
thresholds, so a finite-difference step never changes a trip count or a branch. A loop's
several results are one node of dtype "tuple" and a projection node each. ``stop_gradient``
is a unary recipe; the twin's finite differences hold its value fixed (``Program.frozen``).

Deterministic per seed: all choices come from one numpy Generator.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

U = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}     # unit roundoff
TINY = {"float32": 2.0 ** -126, "float64": 2.0 ** -1022}   # below: underflow, absolute error
FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
MAXV = 1e3            # largest magnitude a float node may reach
MAXI = 1e4            # ... an int node
MAX_SIZE = 256        # elements per node (4096 in the occasional big program)
M_ERR = 64            # a margin must exceed this many error bounds


# collectives need mpi4py and an MPI (the mpi extra); without them the recipe makes none
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None


class Invalid(Exception):
    """A node whose values leave the safe domain; the generator tries something else."""


_erf = np.vectorize(math.erf, otypes=[float])


def expit(x):
    return 1 / (1 + np.exp(-x))


# ----------------------------------------------------------------------------- nodes
@dataclass(frozen=True)
class Node:
    name: str
    src: str                    # Python source; {0}, {1}, ... are the operands' names
    args: tuple = ()
    f: Callable | None = None   # numpy semantics on the operands' float64/int64/bool values
    dtype: str = "float64"
    check: Callable | None = None   # (vals, errs) -> bool: domain and margins hold
    errf: Callable | None = None    # (vals, errs, y) -> bound on |y_computed - y|
    leaf: str = ""              # "input" | "shared" | "const" | ""
    data: np.ndarray | None = None  # leaves: the values (short decimals; rounded to dtype when used)
    data_src: str = ""          # leaves too large for a literal: the numpy expression of data
    tag: str = ""               # recipe name (for exclusions and statistics)
    parts: tuple = ()           # dtype "tuple" (a loop's or branch's several results): their dtypes
    feats: tuple = ()           # variants of the recipe (statistics)
    inert: tuple = ()           # positions of args the graph does not depend on (a closure the body
                                # does not read, the branch a Python bool predicate drops)

    def expr(self) -> str:
        return self.src.format(*self.args)


class Operands:
    """The outer nodes a control-flow op reads, in first-use order, and each role's
    position among them: ``slot(role, node)`` is the "{k}" placeholder of its source."""

    def __init__(self):
        self.args: list[Node] = []
        self.role: dict[str, int] = {}

    def slot(self, r: str, node: Node) -> str:
        names = [a.name for a in self.args]
        if node.name not in names:
            self.args.append(node)
            names.append(node.name)
        self.role[r] = names.index(node.name)
        return "{%d}" % self.role[r]


def leaf_value(n: Node) -> np.ndarray:
    if n.dtype in FLOATS:
        return np.asarray(n.data).astype(n.dtype).astype(np.float64)
    return np.asarray(n.data).astype(np.int64 if n.dtype in INTS else bool)


def lit(a: np.ndarray) -> str:
    return repr(np.asarray(a).tolist())


def data_expr(n: Node) -> str:
    return n.data_src or lit(n.data)


def leaf_node(name, data, dtype, kind, data_src="") -> Node:
    n = Node(name, "", (), None, dtype, leaf=kind, data=np.asarray(data), data_src=data_src, tag=kind)
    if kind == "input":
        src = f'sf.tensor("{name}", {tuple(n.data.shape)!r}, "{dtype}")'
    elif kind == "shared":
        src = f'sf.shared(np.array({data_expr(n)}, "{dtype}"), name="{name}")'
    else:
        src = f'sf.constant(np.array({data_expr(n)}), "{dtype}")'
    return replace(n, src=src)


def eval_node(n: Node, vals, errs, strict=True):
    """(value, error bound) of a non-leaf node; strict: Invalid outside the safe domain.
    A node of dtype "tuple" has a tuple of values and one of error bounds."""
    if n.dtype == "tuple":
        return eval_tuple(n, vals, errs, strict)
    with np.errstate(all="ignore"):
        y = np.asarray(n.f(*vals))
        if strict and n.check is not None and not n.check(vals, errs):
            raise Invalid(n.name)
    if n.dtype in INTS:
        y = y.astype(np.int64)
        if strict and y.size and np.max(np.abs(y)) > MAXI:
            raise Invalid(n.name)
    if n.dtype not in FLOATS:
        return y, 0.0
    y = y.astype(np.float64)
    if not strict:
        return y, 0.0
    if not np.all(np.isfinite(y)) or (y.size and np.max(np.abs(y)) > MAXV):
        raise Invalid(n.name)
    with np.errstate(all="ignore"):
        e = float(n.errf(vals, errs, y)) + 4 * TINY[n.dtype]
    if not math.isfinite(e):
        raise Invalid(n.name)
    return y, e


def eval_tuple(n: Node, vals, errs, strict):
    with np.errstate(all="ignore"):
        ys = tuple(np.asarray(y).astype(np.float64 if dt in FLOATS else np.int64 if dt in INTS else bool)
                   for y, dt in zip(n.f(*vals), n.parts))
        if not strict:
            return ys, tuple(0.0 for _ in ys)
        if n.check is not None and not n.check(vals, errs):
            raise Invalid(n.name)
        es = n.errf(vals, errs, ys)
    out = []
    for y, e, dt in zip(ys, es, n.parts):
        lim = MAXV if dt in FLOATS else MAXI
        if y.size and (not np.all(np.isfinite(y)) or np.max(np.abs(y)) > lim):
            raise Invalid(n.name)
        e = float(e) + 4 * TINY[dt] if dt in FLOATS else 0.0
        if not math.isfinite(e):
            raise Invalid(n.name)
        out.append(e)
    return ys, tuple(out)


def amax(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


# ----------------------------------------------------------------------------- error bounds
def ew_err(f, c, dtype):
    """Elementwise: per operand, |d f/d operand| * its error, or the change of f over the
    error interval where that is larger (x * x at x = 0 has derivative 0) -- derivatives
    by central differences, margins keep discontinuities farther away than the steps --
    plus c ulps of the result."""
    def errf(vals, errs, y):
        tot = 0.0
        for i, (v, e) in enumerate(zip(vals, errs)):
            if e == 0 or v.dtype != np.float64:
                continue
            d = 1e-9 * (1 + np.abs(v))   # below every margin floor
            at = lambda x: np.asarray(f(*vals[:i], x, *vals[i + 1:]), np.float64)  # noqa: E731
            slope = np.abs(at(v + d) - at(v - d)) / (2 * d) * e
            tot = tot + np.maximum(slope, np.maximum(np.abs(at(v + e) - y), np.abs(at(v - e) - y)))
        fl = [e != 0 and v.dtype == np.float64 for v, e in zip(vals, errs)]
        for sgn in (1, -1) if sum(fl) > 1 else ():   # all operands off at once (x * x)
            moved = [v + sgn * e if ok else v for v, e, ok in zip(vals, errs, fl)]
            tot = np.maximum(tot, np.abs(np.asarray(f(*moved), np.float64) - y))
        return amax(tot) + c * U[dtype] * amax(y)
    return errf


def probe_err(f, n, dtype):
    """A composite of n-element reductions and elementwise ops: the operand error times
    4x the largest directional derivative seen along random directions (Gaussian, not
    signs: exp(x - max(x)) does not change along a sign vector equal to the argmax's
    sign everywhere), plus 32 ulps per reduced element."""
    def errf(vals, errs, y):
        v, e = vals[0], errs[0]
        d = 1e-9 * (1 + amax(v))
        dirs = [s / max(amax(s), 1e-300) for s in np.random.default_rng(0).standard_normal((4,) + v.shape)]
        lip = max(amax(np.asarray(f(v + d * s)) - np.asarray(f(v - d * s))) / (2 * d) for s in dirs)
        return 4 * lip * e + 32 * U[dtype] * n * (amax(v) + amax(y) + 1) * (1 + lip)
    return errf


def view_err(vals, errs, y):
    return max(errs, default=0.0)


def sum_err(n, dtype, c=4):
    return lambda vals, errs, y: n * (errs[0] + c * U[dtype] * amax(vals[0]))


def dot_err(k, dtype):
    def errf(vals, errs, y):
        a, b = amax(vals[0]), amax(vals[1])
        return k * (errs[0] * b + errs[1] * a + 4 * U[dtype] * a * b)
    return errf


def row_err(n, dtype):
    return lambda vals, errs, y: 2 * max(errs) + 32 * U[dtype] * n * (1 + amax(y))


# ----------------------------------------------------------------------------- numpy semantics of the nn ops
def conv2d_np(x, w, stride, pads, dil, groups):
    """pads: (top, bottom, left, right)."""
    xp = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]))
    n, c, h, wd = xp.shape
    o, ci, kh, kw = w.shape
    ho = (h - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for g in range(groups):
        xs, ws = xp[:, g * ci:(g + 1) * ci], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                r, s = i * dil[0], j * dil[1]
                patch = xs[:, :, r:r + stride[0] * (ho - 1) + 1:stride[0], s:s + stride[1] * (wo - 1) + 1:stride[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out


def pool_windows(x, k, s, p, fill):
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    ho, wo = (xp.shape[2] - k[0]) // s[0] + 1, (xp.shape[3] - k[1]) // s[1] + 1
    return np.stack([xp[:, :, i:i + s[0] * (ho - 1) + 1:s[0], j:j + s[1] * (wo - 1) + 1:s[1]]
                     for i in range(k[0]) for j in range(k[1])])


def top2_gap(x, axis):
    """Per reduced group, the gap between the largest and second largest element
    (inf for a group of one). axis: an int, a tuple, or None, as numpy takes it."""
    axes = tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
    rest = [i for i in range(x.ndim) if i not in axes]
    z = np.transpose(x, rest + list(axes)).reshape([x.shape[i] for i in rest] + [-1])
    if z.shape[-1] < 2:
        return np.array(np.inf)
    z = np.sort(z, axis=-1)
    return z[..., -1] - z[..., -2]


def softmax_np(x, ax):
    e = np.exp(x - x.max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


def log_softmax_np(x, ax):
    z = x - x.max(axis=ax, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=ax, keepdims=True))


def logsumexp_np(x, ax, keepdims):
    m = x.max(axis=ax, keepdims=True)
    y = m + np.log(np.exp(x - m).sum(axis=ax, keepdims=True))
    return y if keepdims else np.squeeze(y, axis=ax) if ax is not None else y.reshape(())


def clamp_index(i, n):
    return np.clip(np.where(i < 0, i + n, i), 0, n - 1)


def one_hot_np(i, depth):
    return ((i[..., None] == np.arange(depth)) & (i[..., None] >= 0)).astype(np.float64)


# ----------------------------------------------------------------------------- recipes
# Unary float recipes: template, numpy, domain, rounding ulps. Domains: "pos" operand >= 0.1,
# "exp" operand < 5, "kink" |x| at a margin when differentiated, "step" |x| at a margin,
# "int"/"half" distance to the nearest integer / half-integer at a margin.
UNARY = {
    "neg": ("-{0}", np.negative, None, 0),
    "exp": ("sf.exp({0})", np.exp, "exp", 32),
    "log": ("sf.log({0})", np.log, "pos", 32),
    "log1p": ("sf.log1p({0})", np.log1p, "pos", 32),
    "expm1": ("sf.expm1({0})", np.expm1, "exp", 32),
    "sqrt": ("sf.sqrt({0})", np.sqrt, "pos", 4),
    "rsqrt": ("sf.rsqrt({0})", lambda x: 1 / np.sqrt(x), "pos", 8),
    "reciprocal": ("sf.reciprocal({0})", lambda x: 1 / x, "pos", 4),
    "abs": ("abs({0})", np.abs, "kink", 0),
    "sign": ("sf.sign({0})", np.sign, "step", 0),
    "tanh": ("sf.tanh({0})", np.tanh, None, 32),
    "sigmoid": ("sf.sigmoid({0})", expit, None, 32),
    "relu": ("sf.relu({0})", lambda x: np.maximum(x, 0), "kink", 0),
    "softplus": ("sf.softplus({0})", lambda x: np.logaddexp(0, x), None, 32),
    "erf": ("sf.erf({0})", _erf, None, 32),
    "sin": ("sf.sin({0})", np.sin, None, 32),
    "cos": ("sf.cos({0})", np.cos, None, 32),
    "floor": ("sf.floor({0})", np.floor, "int", 0),
    "ceil": ("sf.ceil({0})", np.ceil, "int", 0),
    "round": ("sf.round({0})", np.round, "half", 0),
    "square": ("sf.square({0})", np.square, None, 4),
    "pow2": ("{0} ** 2", np.square, None, 4),
    "pow3": ("{0} ** 3", lambda x: x ** 3, None, 32),
    "pow_half": ("{0} ** 0.5", np.sqrt, "pos", 32),
    "pow0": ("{0} ** 0", np.ones_like, None, 0),
    "rpow": ("2.0 ** {0}", lambda x: 2.0 ** x, "exp", 32),
    "scale": ("{0} * 1.5", lambda x: x * 1.5, None, 4),
    "rsub": ("1.0 - {0}", lambda x: 1.0 - x, None, 4),
    "divc": ("{0} / 3.0", lambda x: x / 3.0, None, 4),
    "rdiv": ("2.0 / {0}", lambda x: 2.0 / x, "pos", 4),
    "clip": ("sf.clip({0}, -0.5, 0.75)", lambda x: np.clip(x, -0.5, 0.75), "clip", 0),
    # naive forms that the stabiliser rewrites
    "log_sigmoid": ("sf.log(sf.sigmoid({0}))", lambda x: -np.logaddexp(0, -x), "exp", 32),
    "log1p_exp": ("sf.log(1 + sf.exp({0}))", lambda x: np.logaddexp(0, x), "exp", 32),
    "log1p_exp2": ("sf.log1p(sf.exp({0}))", lambda x: np.logaddexp(0, x), "exp", 32),
    "exp_minus_1": ("sf.exp({0}) - 1", np.expm1, "exp", 32),
    "log_exp": ("sf.log(sf.exp({0}))", lambda x: x, "exp", 32),
    "log_1m_sigmoid": ("sf.log(1 - sf.sigmoid({0}))", lambda x: -np.logaddexp(0, x), "exp", 32),
    "log1p_neg_sigmoid": ("sf.log1p(-sf.sigmoid({0}))", lambda x: -np.logaddexp(0, x), "exp", 32),
    "minus_1_plus_exp": ("-1.0 + sf.exp({0})", np.expm1, "exp", 32),
    # the identity whose gradient is zero: the finite differences hold it fixed (Program.frozen)
    "stop_gradient": ("sf.stop_gradient({0})", lambda x: x, None, 0),
}

POSITIVE = [  # ways to make an operand >= 0.1
    ("sf.exp({0})", np.exp, "exp", 32),
    ("{0} * {0} + 0.5", lambda x: x * x + 0.5, None, 4),
    ("abs({0}) + 0.25", lambda x: np.abs(x) + 0.25, "kink", 4),
    ("sf.softplus({0}) + 0.1", lambda x: np.logaddexp(0, x) + 0.1, None, 32),
    ("sf.sigmoid({0}) + 0.2", lambda x: expit(x) + 0.2, None, 32),
    ("1 + sf.exp({0})", lambda x: 1 + np.exp(x), "exp", 32),
]

# the naive forms above: over constants alone, symfuse folds them as written (F4)
NAIVE = {"log_sigmoid", "log1p_exp", "log1p_exp2", "exp_minus_1", "log_exp", "log_1m_sigmoid", "log1p_neg_sigmoid",
         "minus_1_plus_exp"}

# ----------------------------------------------------------------------------- loop bodies and branches
# A body is a tree: ("var", name) or ("op", template, numpy f, check, errf, *operands).
BODY_UNARY = [k for k in UNARY if k != "stop_gradient"]   # the twin's finite differences would move it
SAFE_POSITIVE = POSITIVE[1:]     # >= 0.1 whatever the operand (sf.exp is not)
GUARD = 100                      # a while_loop without max_iterations also stops after this many trips
CF_FLOOR = 1e-2                  # a loop's or branch's predicate is this far (relative) from its threshold


def render(t, names) -> str:
    """Python source of a body tree; names: variable -> its source in the lambda."""
    if t[0] == "var":
        return names[t[1]]
    return t[1].format(*(render(a, names) if a[0] == "var" else f"({render(a, names)})" for a in t[5:]))


def bvars(t) -> set:
    """The variables a body tree reads."""
    return {t[1]} if t[0] == "var" else set().union(*(bvars(a) for a in t[5:]))


def tree_feats(*trees) -> set:
    """What the body trees hold (statistics)."""
    out = set()
    for t in trees:
        if t is None or t[0] == "var":
            continue
        out |= {k for k, w in (("matmul", "@"), ("where", "sf.where("), ("nested_cond", "sf.cond("), ("nested_scan", "sf.scan("),
                               ("reduce", "keepdims=True)"), ("reduce", "sf.sum({0})"), ("reduce", "sf.mean({0})"),
                               ("reduce", "sf.max({0})")) if w in t[1]}
        out |= tree_feats(*t[5:])
    return out


def bev(t, env, strict):
    """(value, error bound) of a body tree by numpy alone; env: variable -> (value, bound).
    strict: Invalid where a domain or margin fails or a value leaves the safe range."""
    if t[0] == "var":
        return env[t[1]]
    _, src, f, check, errf, *args = t
    ins = [bev(a, env, strict) for a in args]
    vs, es = [v for v, _ in ins], [e for _, e in ins]
    with np.errstate(all="ignore"):
        y = np.asarray(f(*vs), np.float64)
        if not strict:
            return y, 0.0
        if check is not None and not check(vs, es):
            raise Invalid(src)
        if not np.all(np.isfinite(y)) or (y.size and np.max(np.abs(y)) > MAXV):
            raise Invalid(src)
        e = float(errf(vs, es, y))
    if not math.isfinite(e):
        raise Invalid(src)
    return y, e


BINARY = {
    "add": ("{0} + {1}", np.add, 4), "sub": ("{0} - {1}", np.subtract, 4),
    "mul": ("{0} * {1}", np.multiply, 4), "div": ("{0} / {1}", np.divide, 4),
    "pow": ("{0} ** {1}", np.power, 32),
    "maximum": ("sf.maximum({0}, {1})", np.maximum, 0), "minimum": ("sf.minimum({0}, {1})", np.minimum, 0),
    "add_fn": ("sf.add({0}, {1})", np.add, 4), "mul_fn": ("sf.multiply({0}, {1})", np.multiply, 4),
}

COMPARE = {
    "gt": ("{0} > {1}", np.greater), "ge": ("{0} >= {1}", np.greater_equal),
    "lt": ("sf.less({0}, {1})", np.less), "le": ("sf.less_equal({0}, {1})", np.less_equal),
    "eq": ("sf.equal({0}, {1})", np.equal), "ne": ("sf.not_equal({0}, {1})", np.not_equal),
}

GEMM_FORMS = [  # z combined with a product p = a @ b of z's type (the cpu backend's BLAS gemm)
    ("{0} + {1}", lambda z, p: z + p), ("{1} + {0}", lambda z, p: p + z),
    ("{0} - 0.5 * {1}", lambda z, p: z - 0.5 * p), ("2.0 * {0} + {1}", lambda z, p: 2 * z + p),
    ("0.9 * {0} - 0.1 * {1}", lambda z, p: 0.9 * z - 0.1 * p), ("{1} * 0.25 + {0}", lambda z, p: 0.25 * p + z),
    ("{0} - {1}", lambda z, p: z - p),
]


# ----------------------------------------------------------------------------- programs
@dataclass
class Program:
    seed: int
    dtype: str
    floor: float                  # absolute margin floor (finite differences need 1e-3)
    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    cost: str | None = None
    wrt: list = field(default_factory=list)
    sgd: int = 0                  # 1: results x - 0.1 * dcost/dx too; 2: instead of the gradients
    order2: bool = False          # also d/dx sum(g * g) of the gradients g
    updates: list = field(default_factory=list)   # (shared leaf, node): its value after a call

    def node(self, name) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def evaluate(self, override=None, strict=True):
        """float64 values and error bounds of every node (override: node name -> value; a
        leaf's, or a non-leaf's held fixed, as stop_gradient's for finite differences).
        strict: raise Invalid where a domain or margin no longer holds."""
        vals, errs = {}, {}
        for n in self.nodes:
            if override and n.name in override:
                vals[n.name], errs[n.name] = override[n.name], 0.0
            elif n.leaf:
                vals[n.name] = leaf_value(n)
                errs[n.name] = 0.0
            else:
                vals[n.name], errs[n.name] = eval_node(n, [vals[a] for a in n.args], [errs[a] for a in n.args], strict)
        return vals, errs

    @property
    def inputs(self):
        return [n for n in self.nodes if n.leaf == "input"]

    @property
    def shared(self):
        return [n for n in self.nodes if n.leaf == "shared"]

    def frozen(self, vals):
        """The values that differentiation does not see change: stop_gradient's (an
        override for the twin's finite differences)."""
        return {n.name: vals[n.name] for n in self.nodes if n.tag == "stop_gradient"}

    @property
    def fd_ok(self):
        """float64 throughout, so the numpy twin's finite differences can judge the gradient."""
        return self.cost is not None and self.sgd != 2 and all(n.dtype != "float32" for n in self.nodes)

    def grad_names(self):
        return [f"g_{w}" for w in self.wrt]

    def result_labels(self):
        """(kind, name) of each result of the program, in order."""
        out = [("fwd", o) for o in self.outputs]
        if self.cost is not None:
            out += [("fwd", self.cost)] + ([("grad", w) for w in self.wrt] if self.sgd != 2 else [])
            out += [("sgd", w) for w in self.wrt] if self.sgd else []
            out += [("grad2", w) for w in self.wrt] if self.order2 else []
        out += [("update", v) for _, v in self.updates]
        return out

    def statements(self):
        lines = [f"{n.name} = {n.expr()}" for n in self.nodes]
        results = list(self.outputs)
        if self.cost is not None:
            gs = self.grad_names()
            lines.append(f"{', '.join(gs)}{',' if len(gs) == 1 else ''} = sf.grad({self.cost}, [{', '.join(self.wrt)}])")
            results += [self.cost] + (gs if self.sgd != 2 else [])
            if self.sgd:
                lines += [f"s_{w} = {w} - 0.1 * g_{w}" for w in self.wrt]
                results += [f"s_{w}" for w in self.wrt]
            if self.order2:
                hs = [f"h_{w}" for w in self.wrt]
                sq = " + ".join(f"(g_{w} * g_{w}).sum()" for w in self.wrt)
                lines.append(f"{', '.join(hs)}{',' if len(hs) == 1 else ''} = sf.grad({sq}, [{', '.join(self.wrt)}], "
                             "disconnected='zero')")
                results += hs
        return lines, results

    def prune(self) -> "Program":
        """Drop nodes that no result needs."""
        need = set(self.outputs) | set(self.wrt) | ({self.cost} if self.cost else set())
        need |= {x for u in self.updates for x in u}
        keep = []
        for n in reversed(self.nodes):
            if n.name in need:
                keep.append(n)
                need |= set(n.args)
        return replace(self, nodes=keep[::-1])


class Gen:
    """Builds one Program; ``vals``/``errs`` hold every node's float64 value and error bound."""

    def __init__(self, seed: int, prefix: str = "", exclude=frozenset(), n_ops=None, dtype=None):
        self.rng = rng = np.random.default_rng(seed)
        self.prefix, self.exclude = prefix, set(exclude)
        self.dtype = dtype or str(rng.choice(FLOATS))
        self.grad = rng.random() < 0.75
        floor = 1e-3 if self.grad and self.dtype == "float64" else 1e-5
        self.p = Program(seed, self.dtype, floor)
        self.vals, self.errs, self.count = {}, {}, 0
        self.feats = set()          # variants of the control-flow recipe being built
        self.const_vars = set()     # its body variables computed from constants alone
        self.n_ops = int(rng.integers(2, 31)) if n_ops is None else n_ops
        # sizes 1-6; one program in ten has dimensions up to 40, for the vectorised,
        # tiled and multi-threaded paths of the kernels
        self.big = rng.random() < 0.1
        self.max_size, self.max_dim = (4096, 40) if self.big else (MAX_SIZE, 6)

    # ------------------------------------------------------------------ helpers
    def fresh(self, kind):
        self.count += 1
        return f"{self.prefix}{kind}{self.count}"

    def chance(self, p):
        return self.rng.random() < p

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def shape(self, rank=None, lo=1, hi=None):
        rank = int(self.rng.integers(0, 4)) if rank is None else rank
        hi = hi or self.max_dim
        while True:
            s = tuple(int(d) for d in self.rng.integers(lo, hi + 1, size=rank))
            if int(np.prod(s)) <= self.max_size // 2:
                return s

    def margin(self, dist, errs, always=True):
        """dist (elementwise distances to a discontinuity) exceeds the error bounds."""
        if not always and not self.grad:
            return True
        dist = np.asarray(dist, np.float64)
        return dist.size == 0 or float(np.min(dist)) > max(M_ERR * sum(errs), self.p.floor)

    def leaf(self, shape, dtype=None, lo=-2.0, hi=2.0, const=None):
        dtype = dtype or self.dtype
        r = self.rng.random()
        kind = "const" if (const if const is not None else r < 0.25) else \
            "shared" if const is None and dtype in FLOATS and r > 0.88 else "input"
        if dtype in INTS:
            data = self.rng.integers(int(lo), int(hi) + 1, size=shape)
        elif dtype == "bool":
            data = self.rng.random(shape) < 0.5
        else:
            data = np.round(self.rng.uniform(lo, hi, size=shape), 3)
        n = leaf_node(self.fresh({"const": "c", "shared": "s"}.get(kind, "x")), data, dtype, kind)
        self.p.nodes.append(n)
        self.vals[n.name], self.errs[n.name] = leaf_value(n), 0.0
        return n

    def pick(self, pred=lambda n: True, dtype=None, fresh_shape=None, p_new=0.1):
        """An existing node (recent ones preferred) of ``dtype`` satisfying pred, else a new
        leaf of a shape that satisfies it (pred may look at shapes only), else None."""
        dtype = dtype or self.dtype
        cands = [n for n in self.p.nodes if n.dtype == dtype and self.vals[n.name].size and pred(n)]
        if cands and not self.chance(p_new):
            w = np.arange(1, len(cands) + 1, dtype=float) ** 2
            return cands[int(self.rng.choice(len(cands), p=w / w.sum()))]
        for _ in range(4):
            shape = fresh_shape() if fresh_shape else self.shape()
            self.vals["?"] = np.zeros(shape)
            ok = pred(Node("?", "", dtype=dtype))
            del self.vals["?"]
            if ok:
                return self.leaf(shape, dtype)
        return None

    def val(self, n):
        return self.vals[n.name]

    def add(self, src, args, f, dtype=None, check=None, errf=None, c=4, tag="", feats=(), inert=()):
        """Append a node if its values stay in the safe domain; None otherwise. Excluded:
        its tag, or "tag:variant" for one of its variants ``feats``."""
        if any(a is None for a in args) or tag in self.exclude or any(f"{tag}:{v}" in self.exclude for v in feats):
            return None
        dtype = dtype or args[0].dtype
        n = Node(self.fresh("v"), src, tuple(a.name for a in args), f, dtype, check,
                 errf or (ew_err(f, max(c, 1), dtype) if dtype in FLOATS else None), tag=tag,
                 feats=tuple(sorted(feats)), inert=inert)
        try:
            y, e = eval_node(n, [self.vals[a] for a in n.args], [self.errs[a] for a in n.args])
        except Invalid:
            return None
        if y.size > self.max_size:
            return None
        self.p.nodes.append(n)
        self.vals[n.name], self.errs[n.name] = y, e
        return n

    def shape_of(self, n):
        return self.vals[n.name].shape

    def compatible(self, shape):
        """A random shape that broadcasts against ``shape`` without changing it."""
        k = int(self.rng.integers(0, len(shape) + 1))
        return tuple(1 if self.chance(0.3) else d for d in shape[len(shape) - k:])

    def domain_check(self, domain):
        m = self.margin
        return {
            None: None,
            "pos": lambda v, e: np.min(v[0]) >= 0.1,
            "exp": lambda v, e: np.max(v[0]) < 5,
            "kink": lambda v, e: m(np.abs(v[0]), e, always=False),
            "step": lambda v, e: m(np.abs(v[0]), e),
            "int": lambda v, e: m(np.abs(v[0] - np.round(v[0])), e),
            "half": lambda v, e: m(np.abs(v[0] - np.floor(v[0]) - 0.5), e),
            "clip": lambda v, e: m(np.minimum(np.abs(v[0] + 0.5), np.abs(v[0] - 0.75)), e, always=False),
        }[domain]

    def positive(self, x):
        """x itself if it is >= 0.1 everywhere, else a positive function of it."""
        if x is None or np.min(self.val(x)) >= 0.1:
            return x
        for k in self.rng.permutation(len(POSITIVE)):
            src, f, dom, c = POSITIVE[k]
            n = self.add(src, [x], f, check=self.domain_check(dom), c=c, tag="positive")
            if n is not None and np.min(self.val(n)) >= 0.1:
                return n
        return None

    def float_node(self, pred=lambda n: True, **kw):
        """Mostly of the program's dtype; sometimes a node of the other float dtype, if any."""
        other = self.other_dtype()
        mixed = self.chance(0.2) and any(n.dtype == other and not n.leaf for n in self.p.nodes)
        return self.pick(pred, dtype=other if mixed else self.dtype, **kw)

    def other_dtype(self):
        return "float32" if self.dtype == "float64" else "float64"

    # ------------------------------------------------------------------ recipes
    def constant_only(self, x) -> bool:
        """x is computed from constants alone (symfuse folds it before any rewrite)."""
        p = Program(0, self.dtype, 0.0, nodes=self.p.nodes)
        return all(self.p.node(a).leaf in ("", "const") for a in _ancestors(p, x.name))

    def r_unary(self):
        name = self.choice(list(UNARY))
        src, f, dom, c = UNARY[name]
        x = self.float_node()
        if dom == "pos":
            x = self.positive(x)
        if name in NAIVE and x is not None and self.constant_only(x):
            return None     # folded as written, before the stabiliser rewrites it (F4)
        return self.add(src, [x], f, check=self.domain_check(dom), c=c, tag=name)

    def r_binary(self):
        name = self.choice(list(BINARY))
        src, f, c = BINARY[name]
        a = self.float_node()
        if a is None:
            return None
        check = None
        if name in ("maximum", "minimum"):
            check = lambda v, e: self.margin(np.abs(v[0] - v[-1]), e, always=False)  # noqa: E731
        r = self.rng.random()
        if r < 0.25:             # a Python scalar (weakly typed)
            s = float(self.choice([0.5, 2.0, -1.0, 3.0, 0.0, 1.0, 0.1]))
            if name in ("div", "pow") and s == 0.0:
                s = 2.0
            if name in ("maximum", "minimum"):
                check = lambda v, e: self.margin(np.abs(v[0] - s), e, always=False)  # noqa: E731
            if self.chance(0.5) and name not in ("div", "pow"):
                return self.add(src.format("{}", "{0}").replace("{}", repr(s), 1), [a],
                                lambda x: f(s, x), check=check, c=c, tag=name + "_rscalar")
            return self.add(src.format("{0}", repr(s)), [a], lambda x: f(x, s), check=check, c=c, tag=name + "_scalar")
        shape = self.shape_of(a)
        if r < 0.35:
            b = a
        else:
            b = self.pick(lambda n: _bcast(shape, self.shape_of(n)) is not None, dtype=a.dtype,
                          fresh_shape=lambda: self.compatible(shape))
        if name == "div":
            b = self.positive(b)
        if name == "pow":
            a = self.positive(a)
            if b is not None and amax(self.val(b)) > 2:
                b = self.add("sf.tanh({0}) * 2", [b], lambda x: np.tanh(x) * 2, c=32, tag="tanh")
        return self.add(src, [a, b], f, check=check, c=c, tag=name)

    def r_compare(self):
        """A comparison at a margin, consumed by where, a logical op or a cast."""
        name = self.choice(list(COMPARE))
        src, f = COMPARE[name]
        a = self.float_node()
        if a is None:
            return None
        if self.chance(0.05):        # a constant condition: simplification drops one branch
            b = self.pick(lambda n: _bcast(self.shape_of(a), self.shape_of(n)) is not None, dtype=a.dtype,
                          fresh_shape=lambda: self.compatible(self.shape_of(a)))
            c = self.choice([True, False])
            return self.add(f"sf.where({c}, {{0}}, {{1}})", [a, b], lambda p, q: np.broadcast_to(p if c else q, p.shape),
                            tag="where_const")
        if name in ("eq", "ne"):     # exact only on integers or on one value with itself
            a = self.add("sf.floor({0})", [a], np.floor, check=self.domain_check("int"), tag="floor")
            if a is None:
                return None
            b = self.pick(lambda n: n.tag in ("floor", "ceil", "round", "sign", "one_hot", "input", "const")
                          and _bcast(self.shape_of(a), self.shape_of(n)) is not None, dtype=a.dtype, p_new=0.2,
                          fresh_shape=lambda: self.compatible(self.shape_of(a))) or a
            cond = self.add(src, [a, b], f, "bool", tag=name)
        elif self.chance(0.3):
            cond = self.add(src.format("{0}", "0.25"), [a], lambda x: f(x, 0.25), "bool",
                            check=lambda v, e: self.margin(np.abs(v[0] - 0.25), e), tag=name)
        else:
            b = self.pick(lambda n: _bcast(self.shape_of(a), self.shape_of(n)) is not None, dtype=a.dtype,
                          fresh_shape=lambda: self.compatible(self.shape_of(a)))
            cond = self.add(src, [a, b], f, "bool", check=lambda v, e: self.margin(np.abs(v[0] - v[1]), e), tag=name)
        if cond is None:
            return None
        r = self.rng.random()
        if r < 0.15:
            other = self.pick(lambda n: _bcast(self.shape_of(cond), self.shape_of(n)) is not None, dtype="bool",
                              p_new=0.3, fresh_shape=lambda: self.compatible(self.shape_of(cond)))
            op, g = self.choice([("{0} & {1}", np.logical_and), ("{0} | {1}", np.logical_or),
                                 ("sf.logical_and({0}, ~{1})", lambda p, q: p & ~q)])
            cond = self.add(op, [cond, other], g, "bool", tag="logical") or cond
        if r > 0.85:
            return self.add("{0}.astype('%s')" % self.dtype, [cond], lambda c: c.astype(float), self.dtype, tag="cast_bool")
        x = self.float_node(lambda n: _bcast(self.shape_of(cond), self.shape_of(n)) is not None)
        if x is None:
            return None
        if self.chance(0.3):
            s = self.choice(["0.0", "1.0", "-2.0"])
            if self.chance(0.5):
                return self.add("sf.where({0}, {1}, %s)" % s, [cond, x], lambda c, a: np.where(c, a, float(s)), x.dtype, tag="where")
            return self.add("sf.where({0}, %s, {1})" % s, [cond, x], lambda c, a: np.where(c, float(s), a), x.dtype, tag="where")
        y = self.pick(lambda n: _bcast(_bcast(self.shape_of(cond), self.shape_of(x)) or (), self.shape_of(n)) is not None,
                      dtype=x.dtype, fresh_shape=lambda: self.compatible(self.shape_of(x)))
        if self.chance(0.2):
            return self.add("sf.where(~{0}, {1}, {2})", [cond, x, y], lambda c, a, b: np.where(~c, a, b), x.dtype,
                            tag="where_not")
        return self.add("sf.where({0}, {1}, {2})", [cond, x, y], np.where, x.dtype, tag="where")

    def axes(self, nd, allow_none=True):
        r = self.rng.random()
        if nd == 0 or (allow_none and r < 0.2):
            return None
        if r < 0.6:
            return int(self.rng.integers(-nd, nd))
        k = int(self.rng.integers(1, nd + 1))
        return tuple(sorted(int(a) for a in self.rng.choice(nd, size=k, replace=False)))

    def r_reduce(self):
        x = self.float_node()
        if x is None:
            return None
        v = self.val(x)
        ax, keep = self.axes(v.ndim), bool(self.chance(0.4))
        n = int(v.size // max(np.sum(v, axis=ax).size, 1)) if v.size else 1
        kw = f"axis={ax!r}, keepdims={keep}"
        name = self.choice(["sum", "sum_method", "mean", "max", "min", "prod", "var", "std", "logsumexp", "max_method"])
        d = x.dtype
        if name in ("sum", "sum_method", "mean"):
            src = {"sum": f"sf.sum({{0}}, {kw})", "sum_method": f"{{0}}.sum({kw})", "mean": f"sf.mean({{0}}, {kw})"}[name]
            g = np.mean if name == "mean" else np.sum
            return self.add(src, [x], lambda a: g(a, axis=ax, keepdims=keep), errf=sum_err(n, d), tag=name)
        if name in ("max", "min", "max_method"):
            g = np.min if name == "min" else np.max
            src = f"{{0}}.max({kw})" if name == "max_method" else f"sf.{name}({{0}}, {kw})"
            sgn = -1 if name == "min" else 1
            return self.add(src, [x], lambda a: g(a, axis=ax, keepdims=keep), errf=view_err, tag=name,
                            check=lambda vv, e: self.margin(top2_gap(sgn * vv[0], ax), e, always=False))
        if name == "prod":
            if n > 4:
                return None
            return self.add(f"sf.prod({{0}}, {kw})", [x], lambda a: np.prod(a, axis=ax, keepdims=keep),
                            check=lambda vv, e: 0.3 <= np.min(np.abs(vv[0])) and np.max(np.abs(vv[0])) <= 2,
                            errf=lambda vv, e, y: n * (e[0] / 0.3 + 4 * U[d]) * amax(y), tag=name)
        if name in ("var", "std"):
            if n < 2:
                return None
            g = np.var if name == "var" else np.std
            return self.add(f"sf.{name}({{0}}, {kw})", [x], lambda a: g(a, axis=ax, keepdims=keep),
                            check=lambda vv, e: np.min(np.var(vv[0], axis=ax)) > 0.05,
                            errf=lambda vv, e, y: 8 * n * (e[0] + 4 * U[d] * amax(vv[0])) * (1 + amax(vv[0])) * 5,
                            tag=name)
        if v.ndim == 0:
            return None
        ax = self.axes(v.ndim, allow_none=True)
        n = int(v.size // np.sum(v, axis=ax).size)
        return self.add(f"sf.logsumexp({{0}}, axis={ax!r}, keepdims={keep})", [x],
                        lambda a: logsumexp_np(a, ax, keep), errf=row_err(n, d), tag="logsumexp")

    def r_view(self, x=None):
        x = x or self.pick(dtype=self.choice([self.dtype] * 4 + ["int32", "bool"]), p_new=0.05)
        if x is None:
            return None
        v = self.val(x)
        s, nd = v.shape, v.ndim
        name = self.choice(["reshape", "transpose", "T", "getitem", "broadcast_to", "flip", "expand_dims",
                            "squeeze", "pad", "concatenate", "stack"])
        dt = x.dtype
        if name == "reshape":
            t = _factor(v.size, self.rng)
            if self.chance(0.3) and t:
                t = list(t)
                t[int(self.rng.integers(len(t)))] = -1
                t = tuple(t)
            src = f"{{0}}.reshape({t!r})" if self.chance(0.5) else f"sf.reshape({{0}}, {t!r})"
            return self.add(src, [x], lambda a: np.reshape(a, t), dt, errf=view_err, tag=name)
        if name == "transpose" and nd >= 2:
            perm = tuple(int(i) for i in self.rng.permutation(nd))
            return self.add(f"sf.transpose({{0}}, {perm!r})", [x], lambda a: np.transpose(a, perm), dt, errf=view_err, tag=name)
        if name == "T" and nd >= 2:
            return self.add("{0}.T", [x], lambda a: a.T, dt, errf=view_err, tag=name)
        if name == "getitem" and nd >= 1:
            idx = self.index(s)
            return self.add(f"{{0}}[{idx}]", [x], lambda a: eval(f"a[{idx}]", {"a": a}), dt, errf=view_err, tag=name)
        if name == "broadcast_to":
            t = tuple(int(d) for d in self.rng.integers(1, 4, size=int(self.rng.integers(0, 2)))) + \
                tuple(int(self.rng.integers(1, 4)) if d == 1 else d for d in s)
            return self.add(f"sf.broadcast_to({{0}}, {t!r})", [x], lambda a: np.broadcast_to(a, t), dt, errf=view_err, tag=name)
        if name == "flip" and nd >= 1:
            ax = self.axes(nd)
            return self.add(f"sf.flip({{0}}, {ax!r})", [x], lambda a: np.flip(a, ax), dt, errf=view_err, tag=name)
        if name == "expand_dims":
            ax = int(self.rng.integers(-nd - 1, nd + 1))
            return self.add(f"sf.expand_dims({{0}}, {ax})", [x], lambda a: np.expand_dims(a, ax), dt, errf=view_err, tag=name)
        if name == "squeeze" and 1 in s:
            return self.add("sf.squeeze({0})", [x], np.squeeze, dt, errf=view_err, tag=name)
        if name == "pad" and nd >= 1 and dt in FLOATS:
            pw = tuple((int(self.rng.integers(0, 3)), int(self.rng.integers(0, 3))) for _ in range(nd))
            val = self.choice([0.0, 1.5])
            return self.add(f"sf.pad({{0}}, {pw!r}, {val})", [x], lambda a: np.pad(a, pw, constant_values=val),
                            dt, errf=view_err, tag=name)
        if name in ("concatenate", "stack") and nd >= 1:
            ax = int(self.rng.integers(-nd, nd))
            if name == "stack":
                y = self.pick(lambda n: self.shape_of(n) == s, dtype=dt, fresh_shape=lambda: s)
                ax = int(self.rng.integers(-nd - 1, nd + 1))
                return self.add(f"sf.stack([{{0}}, {{1}}], axis={ax})", [x, y], lambda a, b: np.stack([a, b], ax),
                                dt, errf=view_err, tag=name)
            t = list(s)
            t[ax] = int(self.rng.integers(1, 4))
            y = self.pick(lambda n: self.shape_of(n) == tuple(t), dtype=dt, fresh_shape=lambda: tuple(t))
            return self.add(f"sf.concatenate([{{0}}, {{1}}, {{0}}], axis={ax})", [x, y],
                            lambda a, b: np.concatenate([a, b, a], ax), dt, errf=view_err, tag=name)
        return None

    def index(self, shape):
        """A basic index (ints, slices with any step, None, ...) over the leading axes."""
        k, parts = int(self.rng.integers(1, len(shape) + 1)), []
        for d in shape[:k]:
            if self.chance(0.1):
                parts.append("None")
            r = self.rng.random()
            if r < 0.25:
                parts.append(str(int(self.rng.integers(-d, d))))
                continue
            step = int(self.choice([1, 1, 2, -1, -2, 3]))
            lo, hi = sorted(int(i) for i in self.rng.integers(0, d + 1, size=2))
            lo, hi = (0, d) if hi == lo else (lo, hi)
            if step > 0:
                parts.append(f"{lo}:{hi}:{step}" if step != 1 else f"{lo}:{hi}")
            else:
                parts.append(f"{hi - 1}:{lo - 1 if lo else ''}:{step}" if self.chance(0.7) else f"::{step}")
        if self.chance(0.2):
            parts = ["..."] + parts if k == len(shape) else parts + ["..."]
        return ", ".join(parts)

    def matrix(self, dtype, shape):
        return self.pick(lambda n: self.shape_of(n) == shape, dtype, lambda: shape, p_new=0.5)

    def product(self):
        """a @ b in one of its spellings: (node, float64 value) or None."""
        dt = self.dtype if self.chance(0.85) else self.other_dtype()
        m, k, n = (int(i) for i in self.rng.integers(1, self.max_dim + 1, size=3))
        form = self.choice(["ab", "aTb", "abT", "aTbT", "batched", "batchedT", "vec", "dot", "sum_T"])
        if form == "sum_T":      # a product read transposed next to another: (a @ b).T + b @ a
            a, b = self.matrix(dt, (k, k)), self.matrix(dt, (k, k))
            return self.add("({0} @ {1}).T + {1} @ {0}", [a, b], lambda p, q: (p @ q).T + q @ p,
                            errf=dot_err(2 * k, dt), tag="matmul_sum_T")
        if form in ("batched", "batchedT"):
            bt = int(self.rng.integers(1, 4))
            a = self.matrix(dt, (bt, m, k) if form == "batched" else (bt, k, m))
            b = self.matrix(dt, self.choice([(k, n), (bt, k, n), (1, k, n)]))
            if form == "batched":
                return self.add("{0} @ {1}", [a, b], np.matmul, errf=dot_err(k, dt), tag="matmul")
            return self.add("sf.matmul(sf.transpose({0}, (0, 2, 1)), {1})", [a, b],
                            lambda p, q: np.matmul(np.swapaxes(p, 1, 2), q), errf=dot_err(k, dt), tag="matmul_T")
        if form == "vec":
            a = self.matrix(dt, (k,))
            b = self.matrix(dt, self.choice([(k, n), (k,)]))
            return self.add("{0} @ {1}", [a, b], np.matmul, errf=dot_err(k, dt), tag="matvec")
        if form == "dot":
            a = self.matrix(dt, (m, k))
            b = self.matrix(dt, self.choice([(k, n), (k,)]))
            return self.add("sf.dot({0}, {1})", [a, b], np.dot, errf=dot_err(k, dt), tag="dot")
        ta, tb = "aT" in form, form.endswith("bT")
        a = self.matrix(dt, (k, m) if ta else (m, k))
        b = self.matrix(dt, (n, k) if tb else (k, n))
        src = ("{0}.T" if ta else "{0}") + " @ " + ("{1}.T" if tb else "{1}")
        return self.add(src, [a, b], lambda p, q: (p.T if ta else p) @ (q.T if tb else q), errf=dot_err(k, dt),
                        tag="matmul_" + form)

    def r_matmul(self):
        return self.product()

    def r_gemm(self):
        p = self.product()
        if p is None or self.val(p).ndim < 2:
            return p
        s = self.shape_of(p)
        z = self.pick(lambda n: self.shape_of(n) == s, dtype=p.dtype, fresh_shape=lambda: s, p_new=0.4)
        src, f = self.choice(GEMM_FORMS)
        return self.add(src, [z, p], f, c=4, tag="gemm")

    def image(self):
        return self.pick(lambda n: self.val(n).ndim == 4, dtype=self.dtype, p_new=0.4,
                         fresh_shape=lambda: (int(self.rng.integers(1, 3)), int(self.rng.integers(1, 5)),
                                              int(self.rng.integers(2, 7)), int(self.rng.integers(2, 7))))

    def r_conv(self):
        x = self.image()
        if x is None:
            return None
        n, c, h, w = self.shape_of(x)
        groups = int(self.choice([g for g in range(1, c + 1) if c % g == 0]))
        o = groups * int(self.rng.integers(1, 3))
        kh, kw = (int(i) for i in self.rng.integers(1, 4, size=2))
        stride = self.choice([1, 1, 2, (1, 2)])
        dil = self.choice([1, 1, 1, 2, (2, 1)])
        st, dl = _pair(stride), _pair(dil)
        r = self.rng.random()
        if r < 0.2 and st == (1, 1):
            pad, pads = "'same'", [dl[0] * (kh - 1) // 2, 0, dl[1] * (kw - 1) // 2, 0]
            pads[1], pads[3] = dl[0] * (kh - 1) - pads[0], dl[1] * (kw - 1) - pads[2]
        elif r < 0.3:
            pad, pads = "'valid'", [0, 0, 0, 0]
        else:
            p = self.choice([0, 1, (1, 0), 2])
            pad, (ph, pw) = repr(p), _pair(p)
            pads = [ph, ph, pw, pw]
        if h + pads[0] + pads[1] < dl[0] * (kh - 1) + 1 or w + pads[2] + pads[3] < dl[1] * (kw - 1) + 1:
            return None
        wt = self.matrix(self.dtype, (o, c // groups, kh, kw))
        src = f"sf.conv2d({{0}}, {{1}}, stride={stride!r}, padding={pad}, dilation={dil!r}, groups={groups})"
        return self.add(src, [x, wt], lambda a, b: conv2d_np(a, b, st, pads, dl, groups),
                        errf=dot_err(c // groups * kh * kw, self.dtype), tag="conv2d")

    def r_pool(self):
        x = self.image()
        if x is None:
            return None
        h, w = self.shape_of(x)[2:]
        k = self.choice([1, 2, 2, 3, (2, 1), (1, 3)])
        stride = self.choice([None, None, 1, 2, (2, 1)])
        kk, ss = _pair(k), _pair(stride if stride is not None else k)
        pad = self.choice([0, 0, 1, (0, 1)])
        pp = _pair(pad)
        if any(p >= q for p, q in zip(pp, kk)) or h + 2 * pp[0] < kk[0] or w + 2 * pp[1] < kk[1]:
            return None
        kw = f"kernel_size={k!r}, stride={stride!r}, padding={pad!r}"
        d = self.dtype
        if self.chance(0.5):
            overlap = any(q < k for q, k in zip(ss, kk))
            return self.add(f"sf.max_pool2d({{0}}, {kw})", [x], lambda a: pool_windows(a, kk, ss, pp, -np.inf).max(0),
                            errf=view_err, tag="max_pool2d_overlap" if overlap else "max_pool2d",
                            check=lambda v, e: self.margin(top2_gap(np.moveaxis(pool_windows(v[0], kk, ss, pp, -np.inf), 0, -1), -1), e, always=False))
        return self.add(f"sf.avg_pool2d({{0}}, {kw})", [x], lambda a: pool_windows(a, kk, ss, pp, 0.0).mean(0),
                        errf=lambda v, e, y: e[0] + 8 * U[d] * amax(v[0]), tag="avg_pool2d")

    def r_softmax(self):
        x = self.float_node(lambda n: self.val(n).ndim >= 1)
        if x is None:
            return None
        v = self.val(x)
        ax = int(self.rng.integers(-v.ndim, v.ndim))
        n, d = v.shape[ax], x.dtype
        name = self.choice(["softmax", "log_softmax", "log_softmax_naive", "xent", "xent_labels", "xent_naive", "logsumexp_naive"])
        small = lambda vv, e: np.max(np.abs(vv[0])) < 8  # noqa: E731  (naive forms underflow beyond)
        if name == "softmax":
            return self.add(f"sf.softmax({{0}}, axis={ax})", [x], lambda a: softmax_np(a, ax), errf=row_err(n, d), tag=name)
        if name == "log_softmax":
            return self.add(f"sf.log_softmax({{0}}, axis={ax})", [x], lambda a: log_softmax_np(a, ax), errf=row_err(n, d), tag=name)
        if name == "log_softmax_naive":
            return self.add(f"sf.log(sf.softmax({{0}}, axis={ax}))", [x], lambda a: log_softmax_np(a, ax),
                            check=small, errf=row_err(n, d), tag=name)
        if name == "logsumexp_naive":
            return self.add(f"sf.log(sf.sum(sf.exp({{0}}), axis={ax}))", [x], lambda a: logsumexp_np(a, ax, False),
                            check=small, errf=row_err(n, d), tag=name)
        s = v.shape
        if name == "xent_labels":
            lab_shape = s[:ax % v.ndim] + s[ax % v.ndim + 1:]
            t = self.leaf(lab_shape, "int32", lo=-1 if self.chance(0.2) else 0, hi=n - 1 + int(self.chance(0.2)), const=True)
            return self.add(f"sf.softmax_cross_entropy({{0}}, {{1}}, axis={ax})", [x, t],
                            lambda a, i: -(np.moveaxis(one_hot_np(i, n), -1, ax % v.ndim) * log_softmax_np(a, ax)).sum(ax),
                            dtype=d, errf=lambda vv, e, y: n * row_err(n, d)([vv[0]], e, y) * 10, tag=name)
        t = self.pick(lambda m: self.shape_of(m) == s, dtype=d, fresh_shape=lambda: s)
        if t is None:
            return None
        t = self.add(f"sf.softmax({{0}}, axis={ax})", [t], lambda a: softmax_np(a, ax), errf=row_err(n, d), tag="softmax")
        src = (f"sf.softmax_cross_entropy({{0}}, {{1}}, axis={ax})" if name == "xent"
               else f"-sf.sum({{1}} * sf.log(sf.softmax({{0}}, axis={ax})), axis={ax})")
        return self.add(src, [x, t], lambda a, p: -(p * log_softmax_np(a, ax)).sum(ax),
                        check=None if name == "xent" else small,
                        errf=lambda vv, e, y: n * (2 * max(e) * (1 + amax(vv[0])) + 64 * U[d] * n * (1 + amax(vv[0]))), tag=name)

    def r_take(self):
        x = self.pick(lambda n: self.val(n).ndim >= 1, dtype=self.choice([self.dtype, self.dtype, "int32"]))
        if x is None:
            return None
        v = self.val(x)
        ax = int(self.rng.integers(-v.ndim, v.ndim))
        n = v.shape[ax]
        it = self.choice(["int32", "int32", "int64"])
        if self.chance(0.3) and any(m.dtype == it and not m.leaf for m in self.p.nodes):
            idx = self.pick(lambda m: not m.leaf and self.val(m).size <= 12, dtype=it, p_new=0)
        else:
            idx = self.leaf(self.shape(int(self.rng.integers(0, 3)), hi=4), it, lo=-n - 1, hi=n + 1, const=True)
        if idx is None:
            return None
        if ax == 0 and self.chance(0.3):
            return self.add("{0}[{1}]", [x, idx], lambda a, i: np.take(a, clamp_index(i, n), axis=0), x.dtype, errf=view_err, tag="take")
        return self.add(f"sf.take({{0}}, {{1}}, axis={ax})", [x, idx], lambda a, i: np.take(a, clamp_index(i, n), axis=ax),
                        x.dtype, errf=view_err, tag="take")

    def r_collective(self):
        """A collective on a communicator of one rank (run.build sets it up): the identity,
        computed through MPI on cpu (a bucket's copies, a non-blocking start whose wait
        the schedule places before its first reader) and by the host on cuda-emu."""
        if not HAVE_MPI:
            return None
        x = self.float_node()
        if x is None:
            return None
        forms = ["sf.distributed.allreduce({0}, 'sum')", "sf.distributed.allreduce({0}, 'mean')",
                 "sf.distributed.broadcast({0})", "sf.distributed.reduce({0})"]
        if self.val(x).ndim >= 1:
            forms += ["sf.distributed.allgather({0})", "sf.distributed.reduce_scatter({0})"]
        if self.chance(0.4):
            y = self.float_node(lambda n: n.dtype == x.dtype)
            if y is None:
                return None
            k = int(self.rng.integers(0, 2))
            cap = self.choice([0, 64, 1 << 20])
            overlap = self.choice([True, False])
            # the other operand: in the same bucket it reaches the result only through zeros, in
            # another bucket not at all (asking its gradient would be a GradError): inert either way
            return self.add(f"sf.distributed.average_gradients([{{0}}, {{1}}], bucket_bytes={cap}, "
                            f"overlap={overlap})[{k}]", [x, y], lambda a, b, k=k: (a, b)[k].copy(),
                            errf=view_err, tag="collective", feats=("bucket",), inert=(1 - k,))
        return self.add(self.choice(forms), [x], lambda a: a.copy(), errf=view_err, tag="collective")

    def r_int(self):
        """A detour through int32/int64: cast (at a margin from integers), integer ops, cast back."""
        r = self.rng.random()
        x = self.float_node()
        if x is None:
            return None
        if r < 0.3 and self.val(x).ndim >= 1:
            aax = self.axes(self.val(x).ndim)
            aax = aax if not isinstance(aax, tuple) else aax[0]
            name = self.choice(["argmax", "argmin"])
            sgn = 1 if name == "argmax" else -1
            keep = bool(self.chance(0.3))
            i = self.add(f"sf.{name}({{0}}, axis={aax!r}, keepdims={keep})", [x],
                         lambda a: getattr(np, name)(a, axis=aax, keepdims=keep), "int32",
                         check=lambda v, e: self.margin(top2_gap(sgn * v[0], aax), e), tag=name)
        else:
            x = self.add("{0} * 3", [x], lambda a: a * 3, c=4, tag="scale3")
            it = self.choice(["int32", "int32", "int64"])
            i = self.add("{0}.astype('%s')" % it, [x], np.trunc, it,
                         check=lambda v, e: self.margin(np.abs(v[0] - np.round(v[0])), e), tag="cast_int")
        if i is None:
            return None
        if self.chance(0.6):
            s = self.shape_of(i)
            j = self.pick(lambda n: _bcast(s, self.shape_of(n)) is not None, dtype=i.dtype,
                          fresh_shape=lambda: self.compatible(s))
            src, f = self.choice([("{0} + {1}", np.add), ("{0} - {1}", np.subtract), ("{0} * {1}", np.multiply),
                                  ("sf.maximum({0}, {1})", np.maximum), ("sf.minimum({0}, {1})", np.minimum),
                                  ("sf.where({0} > {1}, {0}, -{1})", lambda a, b: np.where(a > b, a, -b)),
                                  ("abs({0} - {1})", lambda a, b: np.abs(a - b)),
                                  ("{0} & {1}", np.bitwise_and), ("{0} | {1}", np.bitwise_or),
                                  ("{0} ^ ~{1}", lambda a, b: a ^ ~b),
                                  ("sf.left_shift({0}, {1} & 3)", lambda a, b: a << (b & 3)),
                                  ("{0} >> ({1} & 7)", lambda a, b: a >> (b & 7))])
            i = self.add(src, [i, j], f, i.dtype, tag="int_op") or i
        if self.chance(0.25) and self.val(i).ndim >= 1:
            ax = self.axes(self.val(i).ndim)
            g, nm = self.choice([(np.sum, "sum"), (np.max, "max"), (np.min, "min")])
            i = self.add(f"sf.{nm}({{0}}, axis={ax!r})", [i], lambda a: g(a, axis=ax), i.dtype, tag="int_reduce") or i
        if self.chance(0.25) and self.val(i).size <= 12:
            depth = int(self.rng.integers(1, 6))
            return self.add(f"sf.one_hot({{0}}, {depth}, '{self.dtype}')", [i], lambda a: one_hot_np(a, depth),
                            self.dtype, tag="one_hot")
        return self.add(f"{{0}}.astype('{self.dtype}')", [i], lambda a: a.astype(float), self.dtype, tag="cast_float")

    def r_cast(self):
        x = self.pick(dtype=self.choice(FLOATS))
        to = "float32" if x is not None and x.dtype == "float64" else "float64"
        src = self.choice(["{0}.astype('%s')" % to, "sf.cast({0}, '%s')" % to])
        return self.add(src, [x], lambda a: a, to, c=1, tag="cast")

    def r_views(self):
        """Two or three views in a row (folded into one load's index arithmetic), then an
        elementwise consumer that also reads an operand of the result's shape."""
        x = None
        for _ in range(int(self.rng.integers(2, 4))):
            x = self.r_view(x) or x
        if x is None or x.dtype not in FLOATS:
            return x
        s = self.shape_of(x)
        y = self.pick(lambda n: self.shape_of(n) == s, dtype=x.dtype, fresh_shape=lambda: s, p_new=0.3)
        return self.add("{0} * 2.0 + {1}", [x, y], lambda a, b: a * 2 + b, tag="views")

    def r_pattern(self):
        """A reduction whose result is broadcast back against its own input (normalisation,
        hand-written softmax): prologue and epilogue of one fused reduction read one value."""
        x = self.float_node(lambda n: self.val(n).ndim >= 1)
        if x is None:
            return None
        v = self.val(x)
        ax = self.axes(v.ndim, allow_none=False)
        n = int(v.size // np.sum(v, axis=ax).size)
        k = f"axis={ax!r}, keepdims=True"
        sm = lambda f: lambda a: f(a, axis=ax, keepdims=True)  # noqa: E731
        mx, sm_, mean, var = sm(np.max), sm(np.sum), sm(np.mean), sm(np.var)
        name, src, f, need = self.choice([
            ("normalise", f"({{0}} - sf.mean({{0}}, {k})) * sf.rsqrt(sf.var({{0}}, {k}) + 0.1)",
             lambda a: (a - mean(a)) / np.sqrt(var(a) + 0.1), None),
            ("softmax_hand", f"sf.exp({{0}} - sf.max({{0}}, {k})) / sf.sum(sf.exp({{0}} - sf.max({{0}}, {k})), {k})",
             lambda a: np.exp(a - mx(a)) / sm_(np.exp(a - mx(a))), "max"),
            ("exp_shift", f"sf.exp({{0}} - sf.max({{0}}, {k}))", lambda a: np.exp(a - mx(a)), "max"),
            ("l1_normalise", f"{{0}} / sf.sum(abs({{0}}) + 0.5, {k})", lambda a: a / sm_(np.abs(a) + 0.5), "abs"),
            ("times_sum", f"{{0}} * sf.sum({{0}}, {k}) - {{0}}", lambda a: a * sm_(a) - a, None),
            ("sumsq_plus", f"sf.sum({{0}} * {{0}}, {k}) + {{0}}", lambda a: sm_(a * a) + a, None),
            ("max_minus", f"sf.max({{0}}, {k}) - {{0}}", lambda a: mx(a) - a, "max"),
            ("two_reductions", f"sf.mean(sf.exp({{0}}), {k}) * sf.sum({{0}}, {k})",
             lambda a: mean(np.exp(a)) * sm_(a), "exp"),
            ("max_of_neg", f"sf.max(-{{0}}, {k}) + sf.sum(-{{0}}, {k}) * {{0}}",
             lambda a: mx(-a) + sm_(-a) * a, "min"),
        ])
        checks = {None: None, "max": lambda vv, e: self.margin(top2_gap(vv[0], ax), e, always=False),
                  "min": lambda vv, e: self.margin(top2_gap(-vv[0], ax), e, always=False),
                  "abs": self.domain_check("kink"), "exp": self.domain_check("exp")}
        return self.add(src, [x], f, check=checks[need], errf=probe_err(f, n, x.dtype), tag=name)

    def r_huge(self):
        """A reduction or row-wise op over one long axis (the CUDA block-per-output
        reduction from 65536 elements, softmax rows beyond 256 and 1024 elements), reduced
        to a small result."""
        n = int(self.choice([257, 1100, 3000, 66000]))
        shape = (n,) if n > 5000 else (int(self.rng.integers(1, 4)), n)
        k = int(self.rng.integers(1 << 30))
        expr = f"np.random.default_rng({k}).uniform(-2, 2, {shape!r})"
        kind = "input" if self.chance(0.7) else "const"
        x = leaf_node(self.fresh("x" if kind == "input" else "c"), eval(expr), self.dtype, kind, expr)
        self.p.nodes.append(x)
        self.vals[x.name], self.errs[x.name] = leaf_value(x), 0.0
        d = self.dtype
        name, src, f, errf, need = self.choice([
            ("sum", "sf.sum({0}, axis=-1)", lambda a: a.sum(-1), sum_err(n, d), None),
            ("max", "sf.max({0} * 2.0, axis=-1)", lambda a: (a * 2).max(-1), ew_err(lambda a: a * 2, 1, d), "max"),
            ("mean_exp", "sf.mean(sf.exp({0}), axis=-1)", lambda a: np.exp(a).mean(-1), sum_err(n, d, 64), None),
            ("logsumexp", "sf.logsumexp({0}, axis=-1)", lambda a: logsumexp_np(a, -1, False), row_err(n, d), None),
            ("max_log_softmax", "sf.max(sf.log_softmax({0}, axis=-1), axis=-1)",
             lambda a: log_softmax_np(a, -1).max(-1), row_err(n, d), "max"),
            ("softmax_dot", "sf.sum(sf.softmax({0}, axis=-1) * {0}, axis=-1)",
             lambda a: (softmax_np(a, -1) * a).sum(-1), lambda v, e, y: 4 * row_err(n, d)(v, e, y), None),
        ])
        check = (lambda v, e: self.margin(top2_gap(v[0], -1), e, always=False)) if need else None
        return self.add(src, [x], f, check=check, errf=errf, tag="huge_" + name)

    # ------------------------------------------------------------------ loops and branches
    # A body (of a scan, a while_loop, a cond branch) is a small tree over named variables
    # (see ``render``/``bev``) drawn from the unary/binary recipes, reductions, products and
    # selects; its numpy twin walks the tree in plain Python loops, checking every op's
    # domain and margins and propagating its error bound at every step.
    def bop(self, src, f, args, dt, check=None, errf=None, c=4):
        errf = errf or ew_err(f, max(c, 1), dt)
        return ("op", src, f, check, lambda v, e, y: errf(v, e, y) + 4 * TINY[dt], *args)

    def b_positive(self, t, dt):
        src, f, dom, c = self.choice(SAFE_POSITIVE)
        return self.bop(src, f, [t], dt, self.domain_check(dom), c=c)

    def b_unary(self, t, dt):
        name = self.choice(BODY_UNARY)
        if name in NAIVE and bvars(t) <= self.const_vars:      # F4
            name = "tanh"
        src, f, dom, c = UNARY[name]
        if dom == "pos":
            t = self.b_positive(t, dt)
        return self.bop(src, f, [t], dt, self.domain_check(dom), c=c)

    def b_binary(self, t, other, dt):
        """t (of the body's full shape) with other (broadcasting into it; None: a Python scalar)."""
        name = self.choice(list(BINARY))
        src, f, c = BINARY[name]
        mm = name in ("maximum", "minimum")
        if other is None:
            s = float(self.choice([0.5, 2.0, -1.0, 3.0, 0.0, 1.0, 0.1]))
            s = 2.0 if name in ("div", "pow") and s == 0.0 else s
            check = (lambda v, e: self.margin(np.abs(v[0] - s), e, always=False)) if mm else None
            if name == "pow":
                t = self.b_positive(t, dt)
            if self.chance(0.5) and name not in ("div", "pow"):
                return self.bop(src.format("{}", "{0}").replace("{}", repr(s), 1), lambda x: f(s, x), [t], dt, check, c=c)
            return self.bop(src.format("{0}", repr(s)), lambda x: f(x, s), [t], dt, check, c=c)
        if name == "div":
            other = self.b_positive(other, dt)
        if name == "pow":
            t = self.b_positive(t, dt)
            other = self.bop("sf.tanh({0}) * 2", lambda x: np.tanh(x) * 2, [other], dt, c=32)
        check = (lambda v, e: self.margin(np.abs(v[0] - v[1]), e, always=False)) if mm else None
        return self.bop(src, f, [t, other], dt, check, c=c)

    def b_reduce(self, t, shape, dt, full=None):
        """A reduction of t: to a scalar, or over the last axis keeping it (broadcasts back)."""
        name = self.choice(["sum", "mean", "max"])
        full = full if full is not None else (not shape or self.chance(0.5))
        ax, kd = (None, False) if full else (-1, True)
        n = int(np.prod(shape)) if full else shape[-1]
        g = {"sum": np.sum, "mean": np.mean, "max": np.max}[name]
        src = f"sf.{name}({{0}})" if full else f"sf.{name}({{0}}, axis=-1, keepdims=True)"
        check, errf = None, sum_err(n, dt)
        if name == "mean":
            errf = lambda v, e, y: e[0] + 4 * n * U[dt] * amax(v[0])  # noqa: E731
        if name == "max":
            errf = view_err
            check = lambda v, e: self.margin(top2_gap(v[0], ax), e, always=False)  # noqa: E731
        return self.bop(src, lambda a: g(a, axis=ax, keepdims=kd), [t], dt, check, errf)

    def b_operand(self, full, small, t, shape, dt):
        r = self.rng.random()
        if r < 0.5:
            return ("var", self.choice(full + small))
        if r < 0.7:
            return None
        if r < 0.85:
            return self.b_reduce(t, shape, dt)
        if r < 0.9 and shape and "scan" not in self.exclude:     # a scan nested in the body, over the rows of t
            return self.b_scan_rows(t, shape, dt)
        return self.b_unary(("var", self.choice(full + small)), dt)

    def b_scan_rows(self, t, shape, dt):
        """d = tanh(0.5 d + row) over the rows of t from its first: shape[1:], broadcasts back."""
        def f(a):
            d = a[0]
            for row in a:
                d = np.tanh(0.5 * d + row)
            return d
        return self.bop("sf.scan(lambda d, e: (sf.tanh(d * 0.5 + e), d.sum()), {0}[0], {0})[0]", f, [t], dt,
                        errf=lambda v, e, y: 2 * e[0] + 128 * U[dt] * (1 + amax(v[0])))

    def btree(self, full, small, shape, dt, steps, mat=False):
        """A random composition of ``steps`` ops with the shape of the ``full`` variables;
        ``small`` variables broadcast into it; ``mat``: a matrix "W" (last axis, square)."""
        t = ("var", self.choice(full))
        for _ in range(steps):
            r = self.rng.random()
            if r < 0.35:
                t = self.b_unary(t, dt)
            elif r < 0.75:
                t = self.b_binary(t, self.b_operand(full, small, t, shape, dt), dt)
            elif r < 0.85 and mat:
                t = self.bop("{0} @ {1}", np.matmul, [t, ("var", "W")], dt, errf=dot_err(shape[-1], dt))
                if self.chance(0.7):
                    t = self.bop("sf.tanh({0})", np.tanh, [t], dt, c=32)
            elif r < 0.92:
                t = self.b_binary(t, self.b_reduce(t, shape, dt), dt)
            elif r < 0.96 and "cond" not in self.exclude:    # a cond in the body: its predicate changes per step
                n = max(int(np.prod(shape)), 1)
                other = self.b_unary(t, dt) if self.chance(0.5) else \
                    self.b_binary(t, self.b_operand(full, small, t, shape, dt), dt)
                t = self.bop("sf.cond(sf.sum({0}) > 0.0, lambda: {0}, lambda: {1})",
                             lambda a, b: a if np.sum(a) > 0 else b, [t, other], dt,
                             check=lambda v, e: self.cf_margin(abs(np.sum(v[0])), n * (e[0] + 4 * U[dt] * amax(v[0])), 0),
                             errf=lambda v, e, y: e[0] if np.sum(v[0]) > 0 else e[1])
            else:
                o = self.b_operand(full, small, t, shape, dt) or ("var", self.choice(full))
                t = self.bop("sf.where({0} > 0.25, {0}, {1})", lambda a, b: np.where(a > 0.25, a, b), [t, o], dt,
                             check=lambda v, e: self.margin(np.abs(v[0] - 0.25), e))
        return t

    def cf_margin(self, dist, err, thr):
        """A loop's or branch's predicate: its distance to the threshold exceeds the error
        bounds, the program's floor and CF_FLOOR (finite differences move whole loops)."""
        return float(np.min(dist)) > max(M_ERR * err, self.p.floor, CF_FLOOR * (1 + abs(thr)))

    def reducer(self, shape, dt):
        """A scalar of a tensor: (template, numpy, error bound of the result from the operand's)."""
        n = max(int(np.prod(shape)), 1)
        forms = [("sf.mean({0})", np.mean, lambda v, e: e + 4 * n * U[dt] * amax(v)),
                 ("sf.sum({0})", np.sum, lambda v, e: n * (e + 4 * U[dt] * amax(v))),
                 ("{0}.sum()", np.sum, lambda v, e: n * (e + 4 * U[dt] * amax(v))),
                 ("sf.max({0})", np.max, lambda v, e: e), ("sf.min({0})", np.min, lambda v, e: e)]
        if n == 1:
            forms.append(("{0}", lambda a: np.reshape(a, ()), lambda v, e: e))
        return self.choice(forms)

    @staticmethod
    def inert(args, role, live):
        """Positions of the args that no live role (variable) refers to."""
        used = {role[r] for r in live if r in role}
        return tuple(i for i in range(len(args)) if i not in used)

    def add_tuple(self, src, args, f, errf, parts, tag, inert=()):
        """A node of several results (``parts``: (source of the projection, dtype, tag)) and
        one projection node each; the projections, or None."""
        if tag in self.exclude or any(f"{tag}:{v}" in self.exclude for v in self.feats):
            return None
        n = Node(self.fresh("v"), src, tuple(a.name for a in args), f, "tuple", None, errf, tag=tag,
                 parts=tuple(p[1] for p in parts), feats=tuple(sorted(self.feats)), inert=inert)
        try:
            y, e = eval_node(n, [self.vals[a] for a in n.args], [self.errs[a] for a in n.args])
        except Invalid:
            return None
        if sum(a.size for a in y) > self.max_size:
            return None
        self.p.nodes.append(n)
        self.vals[n.name], self.errs[n.name] = y, e
        return [self.add(psrc, [n], lambda t, k=k: t[k], dt, errf=lambda v, e, y, k=k: e[0][k], tag=ptag)
                for k, (psrc, dt, ptag) in enumerate(parts)]

    def r_scan(self):
        """sf.scan: carry' = g(carry, x_t) over the slices of a node along axis 0 (or a
        length), g a random body that may read outer nodes; per-step outputs stacked;
        reverse; length 0 and 1; a tuple carry (an accumulator or an int counter)."""
        if "scan" in self.exclude:
            return None
        dt = self.dtype if self.chance(0.85) else self.other_dtype()
        self.feats = set()
        lmax = 12 if self.big else 8
        operands = Operands()
        args, role, ph = operands.args, operands.role, operands.slot

        with_xs = self.chance(0.85)
        X = None
        if with_xs:
            xs = self.pick(lambda m: self.val(m).ndim >= 1 and 1 <= self.val(m).shape[0] <= lmax, dtype=dt,
                           fresh_shape=lambda: (int(self.rng.integers(1, 7)),) + self.shape(int(self.rng.integers(0, 3))))
            if xs is None:
                return None
            X, n = self.shape_of(xs)[1:], self.shape_of(xs)[0]
        else:
            n = int(self.rng.integers(0, 7))
            self.feats.add("length")
        cut = self.rng.random()
        if with_xs and cut < 0.06:
            n, cut = 0, "[:0]"
        elif with_xs and cut < 0.12 and n > 1:
            n, cut = 1, "[:1]"
        else:
            cut = ""
        self.feats.add("len0" if n == 0 else "len1" if n == 1 else "len")
        c0 = self.pick(lambda m: X is None or _bcast(self.shape_of(m), X) is not None, dtype=dt,
                       fresh_shape=lambda: X if X is not None else self.shape())
        if c0 is None:
            return None
        C = self.shape_of(c0)
        size = int(np.prod(C))
        if (n + 2) * size > self.max_size:
            return None
        init = ph("c0", c0)
        variant = self.choice(["plain"] * 5 + ["acc"] * 3 + ["count"] * 2)
        lst = variant == "acc" and self.chance(0.3)       # a list, not a tuple
        if variant == "acc":
            c1 = self.pick(lambda m: self.shape_of(m) == (), dtype=dt, fresh_shape=lambda: ())
            if c1 is None:
                return None
            init = f"[{init}, {ph('c1', c1)}]" if lst else f"({init}, {ph('c1', c1)})"
            if lst:
                self.feats.add("list_carry")
        elif variant == "count":
            init = f"({init}, sf.constant(0, 'int32'))"
        if variant != "plain":
            self.feats.add("tuple_" + variant)
        xs_src = ph("xs", xs) + cut if with_xs else None
        xs2 = None
        if with_xs and self.chance(0.25):             # two sequences: xs a tuple
            n0 = self.shape_of(xs)[0]
            xs2 = self.pick(lambda m: self.val(m).ndim >= 1 and self.val(m).shape[0] == n0
                            and _bcast(C, self.val(m).shape[1:]) is not None, dtype=dt,
                            fresh_shape=lambda: (n0,) + self.compatible(C), p_new=0.3)
        if xs2 is not None:
            xs_src = f"({xs_src}, {ph('xs2', xs2)}{cut})"
            self.feats.add("two_sequences")
        k = W = None
        if self.chance(0.5):
            k = self.pick(lambda m: _bcast(C, self.shape_of(m)) is not None, dtype=dt,
                          fresh_shape=lambda: self.compatible(C), p_new=0.3)
        if k is not None:
            ph("k", k)
            self.feats.add("closure")
        if C and self.chance(0.35):
            W = self.matrix(dt, (C[-1], C[-1]))
        if W is not None:
            ph("W", W)
            self.feats.add("closure")
        # (a scan of length 0 or 1 is inlined: its carry and slice fold too)
        outer = [("k", k), ("W", W)] + ([("c0", c0), ("c1", c1 if variant == "acc" else None),
                                         ("x", xs if with_xs else None), ("x2", xs2)] if n <= 1 else [])
        self.const_vars = {r for r, m in outer if m is not None and self.constant_only(m)}
        shapes = {"c0": C, "x": X if with_xs else None, "k": self.shape_of(k) if k is not None else None,
                  "x2": self.shape_of(xs2)[1:] if xs2 is not None else None}
        full = [v for v, s in shapes.items() if s == C]
        small = [v for v, s in shapes.items() if s is not None and s != C]
        t = ("var", "c0")
        if W is not None and self.chance(0.8):          # h @ W (+ x_t ...): a recurrent layer
            t = self.bop("{0} @ {1}", np.matmul, [t, ("var", "W")], dt, errf=dot_err(C[-1], dt))
            self.feats.add("matmul")
        if with_xs and self.chance(0.7):
            t = self.b_binary(t, ("var", "x"), dt)
        e = self.btree(full, small, C, dt, int(self.rng.integers(0, 3)), W is not None)
        t = self.b_binary(t, e, dt) if e != t and self.chance(0.5) else e if self.chance(0.5) else t
        squash = self.choice(["tanh", "tanh", "mix", "plain"])
        new0 = (self.bop("sf.tanh({0})", np.tanh, [t], dt, c=32) if squash == "tanh" else
                self.bop("{0} * 0.5 + {1} * 0.5", lambda a, b: a * 0.5 + b * 0.5, [("var", "c0"), t], dt)
                if squash == "mix" else t)
        new1 = None
        if variant == "acc":
            red = self.b_reduce(self.choice([("var", "c0"), new0]), C, dt, full=True)
            src, f = self.choice([("{0} * 0.5 + {1}", lambda a, b: a * 0.5 + b), ("{0} + {1}", np.add)])
            new1 = self.bop(src, f, [("var", "c1"), red], dt)
        yk = self.choice(["new", "new", "sum", "old", "expr"] + (["acc"] if variant == "acc" else []))
        y = {"new": new0, "sum": self.bop("sf.sum({0})", np.sum, [new0], dt, errf=sum_err(max(size, 1), dt)),
             "old": ("var", "c0"), "expr": t, "acc": new1}[yk]
        yshape = () if yk in ("sum", "acc") else C
        ys_t = [(y, yshape)]
        if self.chance(0.25):                         # two per-step outputs: ys a tuple
            ys_t.append(self.choice([(("var", "c0"), C), (t, C), (self.b_reduce(t, C, dt, full=True), ())]))
            self.feats.add("two_outputs")
        reverse = self.chance(0.3)
        if reverse:
            self.feats.add("reverse")
        tup = variant != "plain"
        names = {"c0": "c[0]" if tup else "c", "c1": "c[1]", "x": "x[0]" if xs2 is not None else "x", "x2": "x[1]",
                 "k": "{%d}" % role.get("k", 0), "W": "{%d}" % role.get("W", 0)}
        carry = render(new0, names)
        if tup:
            carry = f"{carry}, {render(new1, names) if variant == 'acc' else 'c[1] + 1'}"
            carry = f"[{carry}]" if lst else f"({carry})"
        ysrc = render(y, names) if len(ys_t) == 1 else f"({', '.join(render(q, names) for q, _ in ys_t)})"
        lam = f"lambda c, {'x' if with_xs else '_'}: ({carry}, {ysrc})"
        src = (f"sf.scan({lam}, {init}, {xs_src}" if with_xs else f"sf.scan({lam}, {init}, length={n}") + \
            (", reverse=True)" if reverse else ")")

        def run(vals, errs, strict):
            env = {r: (vals[i], errs[i]) for r, i in role.items()}
            c, acc = env["c0"], env.get("c1")
            ys, yerr = [[None] * n for _ in ys_t], [0.0 for _ in ys_t]
            for s in (range(n - 1, -1, -1) if reverse else range(n)):
                step = {**env, "c0": c, "c1": acc}
                for x, seq in (("x", "xs"), ("x2", "xs2")):
                    if seq in env:
                        step[x] = (env[seq][0][s], env[seq][1])
                for j, (q, _) in enumerate(ys_t):
                    ys[j][s], ye = bev(q, step, strict)
                    yerr[j] = max(yerr[j], ye)
                c, acc = bev(new0, step, strict), bev(new1, step, strict) if variant == "acc" else acc
            out = [c] + ([acc] if variant == "acc" else [(np.array(n), 0.0)] if variant == "count" else [])
            stacked = tuple(np.stack(q) if n else np.zeros((0,) + sh) for q, (_, sh) in zip(ys, ys_t))
            return tuple(v for v, _ in out) + stacked, tuple(e for _, e in out) + tuple(yerr)

        proj = [("{0}[0][0]" if tup else "{0}[0]", dt, "scan_carry")]
        if tup:
            proj.append(("{0}[0][1]", "int32" if variant == "count" else dt, "scan_" + variant))
        proj += [("{0}[1]", dt, "scan_ys")] if len(ys_t) == 1 else [("{0}[1][%d]" % j, dt, "scan_ys") for j in range(2)]
        live = {"c0", "c1", "xs", "xs2"} | bvars(new0) | set().union(*(bvars(q) for q, _ in ys_t)) | \
            (bvars(new1) if new1 else set())
        self.feats |= tree_feats(new0, new1, *(q for q, _ in ys_t))
        out = self.add_tuple(src, args, lambda *v: run(v, [0.0] * len(v), False)[0],
                             lambda v, e, y: run(v, e, True)[1], proj, "scan", self.inert(args, role, live))
        return out[0] if out else None

    def r_cond(self):
        """sf.cond on a reduced node compared with a threshold at a margin (also as an int
        or a float compared with zero), branches drawn from the recipes, reading operands or
        outer nodes; one result or two; a Python bool; a branch not taken that would be NaN."""
        if {"cond", "cond_pybool"} <= self.exclude:
            return None
        dt = self.dtype if self.chance(0.85) else self.other_dtype()
        self.feats = set()
        operands = Operands()
        args, role, ph = operands.args, operands.role, operands.slot

        pybool = "cond" in self.exclude or (self.chance(0.15) and "cond_pybool" not in self.exclude)
        if not pybool:
            p = self.float_node()
            if p is None:
                return None
            pv = self.val(p)
            rsrc, rf, rerr = self.reducer(pv.shape, p.dtype)
            rv = float(rf(pv))
            thr = float(f"{rv + self.choice([-1, 1]) * self.rng.uniform(0.05, 1.0) * (1 + abs(rv)):.4g}")
            form = self.choice(["bool"] * 6 + ["int", "relu"])
            cmp = ">" if form == "relu" else self.choice([">", "<", ">=", "<="])
            cf = {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal}[cmp]
            red = rsrc.format(ph("p", p))
            pred = {"bool": f"{red} {cmp} {thr!r}", "int": f"({red} {cmp} {thr!r}).astype('int32')",
                    "relu": f"sf.relu({red} - {thr!r})"}[form]
            self.feats.add("pred_" + form)
        else:
            taken_py = self.chance(0.5)
            pred = repr(taken_py)
            self.feats.add("pybool")
        a = self.pick(dtype=dt)
        if a is None:
            return None
        S = self.shape_of(a)
        b = k = None
        if self.chance(0.6):
            b = self.pick(lambda m: _bcast(S, self.shape_of(m)) is not None, dtype=dt,
                          fresh_shape=lambda: self.compatible(S))
        if self.chance(0.35):
            k = self.pick(lambda m: _bcast(S, self.shape_of(m)) is not None, dtype=dt,
                          fresh_shape=lambda: self.compatible(S), p_new=0.3)
        no_ops = self.chance(0.15)
        ops = [r for r, m in (("a", a), ("b", b)) if m is not None]
        for r in ops:
            ph(r, {"a": a, "b": b}[r])
        if k is not None:
            ph("k", k)
            self.feats.add("closure")
        if no_ops:
            self.feats.add("no_operands")
        self.const_vars = {r for r, m in (("a", a), ("b", b), ("k", k)) if m is not None and self.constant_only(m)}
        shapes = {"a": S, "b": self.shape_of(b) if b is not None else None, "k": self.shape_of(k) if k is not None else None}
        full = [v for v, s in shapes.items() if s == S]
        small = [v for v, s in shapes.items() if s is not None and s != S]
        two = self.chance(0.25)
        if two:
            self.feats.add("two_results")
        lazy = not pybool and self.chance(0.1)

        def branch(nan=False):
            t = (self.bop("sf.log({0} * 0.0 - 1.0)", lambda x: np.log(x * 0.0 - 1.0), [("var", "a")], dt) if nan else
                 self.btree(full, small, S, dt, int(self.rng.integers(1, 4))))
            if not two:
                return [t]
            return [t, self.b_reduce(self.btree(full, small, S, dt, 1), S, dt, full=True)]

        tb, fb = branch(), branch()
        if lazy:
            self.feats.add("untaken_nan")
        names = {r: (("{%d}" % role[r]) if no_ops or r == "k" else r) for r in role}
        params = "" if no_ops else ", ".join(ops)

        def lam(br):
            body = ", ".join(render(t, names) for t in br)
            return f"lambda {params}: ({body})" if two else f"lambda {params}: {body}"

        def run(vals, errs, strict):
            env = {r: (vals[i], errs[i]) for r, i in role.items()}
            if pybool:
                taken = taken_py
            else:
                pv = vals[role["p"]]
                rv = float(rf(pv))
                taken = bool(cf(rv, thr))
                if strict and not self.cf_margin(abs(rv - thr), rerr(pv, errs[role["p"]]), thr):
                    raise Invalid("cond")
            if strict and not pybool and not lazy:      # both branches stay in their domains
                [bev(t, env, True) for t in (fb if taken else tb)]
            out = [bev(t, env, strict) for t in (tb if taken else fb)]
            return tuple(v for v, _ in out), tuple(e for _, e in out)

        if lazy:     # the NaN branch is the one not taken
            if cf(rv, thr):
                fb = branch(nan=True)
            else:
                tb = branch(nan=True)
        src = f"sf.cond({pred}, {lam(tb)}, {lam(fb)}{''.join(', {%d}' % role[r] for r in ops) if not no_ops else ''})"
        f = lambda *v: run(v, [0.0] * len(v), False)[0]  # noqa: E731
        errf = lambda v, e, y: run(v, e, True)[1]  # noqa: E731
        tag = "cond_pybool" if pybool else "cond"
        # on a Python bool there is no cond op: each result is its own expression of the taken
        # branch, so a variable reaches both results only if both trees read it (one read by a
        # dropped result alone would be asked for a gradient the cost does not have)
        live = set.intersection(*(bvars(t) for t in (tb if taken_py else fb))) if pybool else \
            {"p"} | (set() if no_ops else set(ops)) | set().union(*(bvars(t) for t in tb + fb))
        inert = self.inert(args, role, live)
        self.feats |= tree_feats(*tb, *fb)
        if two:
            out = self.add_tuple(src, args, f, errf, [("{0}[0]", dt, tag + "_0"), ("{0}[1]", dt, tag + "_1")], tag,
                                 inert)
            return out[0] if out else None
        return self.add(src, args, lambda *v: f(*v)[0], dt, errf=lambda v, e, y: errf(v, e, y)[0], tag=tag,
                        feats=self.feats, inert=inert)

    def r_while_loop(self):
        """sf.while_loop: multiply (and nudge) a node until a reduction of it crosses a
        threshold, met at a margin; the trip count (0-6) depends on the data; with
        max_iterations (always when differentiated; sometimes below the trip count) and an
        int counter carry."""
        if "while_loop" in self.exclude:
            return None
        dt = self.dtype if self.chance(0.85) else self.other_dtype()
        self.feats = set()
        operands = Operands()
        args, role, ph = operands.args, operands.role, operands.slot

        v0 = self.pick(lambda m: self.val(m).size <= 64, dtype=dt)
        if v0 is None:
            return None
        C = self.shape_of(v0)
        ph("c0", v0)
        k = None
        if self.chance(0.4):
            k = self.pick(lambda m: _bcast(C, self.shape_of(m)) is not None, dtype=dt,
                          fresh_shape=lambda: self.compatible(C), p_new=0.3)
        if k is not None:
            ph("k", k)
            self.feats.add("closure")
        self.const_vars = {"k"} if k is not None and self.constant_only(k) else set()
        fac = float(self.choice([1.25, 1.5, 2.0, 0.5, 0.75]))
        if self.chance(0.6):
            full = ["c0"] + (["k"] if k is not None and self.shape_of(k) == C else [])
            small = ["k"] if k is not None and self.shape_of(k) != C else []
            g = self.btree(full, small, C, dt, int(self.rng.integers(1, 3)))
            body = self.bop(f"{{0}} * {fac!r} + sf.tanh({{1}}) * 0.1", lambda a, b: a * fac + np.tanh(b) * 0.1,
                            [("var", "c0"), g], dt, c=32)
        else:
            body = self.bop(f"{{0}} * {fac!r}", lambda a: a * fac, [("var", "c0")], dt)
        rsrc, rf, rerr = self.reducer(C, dt)
        # the reductions along the loop run without a condition, to place the threshold
        env = {r: (self.vals[args[i].name], self.errs[args[i].name]) for r, i in role.items()}
        rs, v = [], env["c0"]
        for _ in range(8):
            rs.append(float(rf(v[0])))
            try:
                v = bev(body, {**env, "c0": v}, True)
            except Invalid:
                break
        plans = []
        for up in (True, False):          # loop while r < thr (r grows) or while r > thr
            s = 1 if up else -1
            for m in range(min(7, len(rs))):
                lo = max((s * r for r in rs[:m]), default=None)
                hi = s * rs[m]
                if lo is None:
                    plans.append((up, m, s * (hi - self.rng.uniform(0.1, 1.0) * (1 + abs(hi)))))
                elif hi > lo:
                    plans.append((up, m, s * (lo + hi) / 2))
        plans = [q for q in plans if q[1] > 0] if self.chance(0.85) else plans     # no trip at all: rarely
        if not plans:
            return None
        up, m, thr = plans[int(self.rng.integers(len(plans)))]
        thr = float(f"{thr:.4g}")
        cmp = self.choice(["<", "<="] if up else [">", ">="])
        cf = {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal}[cmp]
        count = self.chance(0.5)
        cap = None
        if self.grad or not count or self.chance(0.6):
            cap = int(self.rng.integers(1, m)) if m > 1 and self.chance(0.2) else max(1, m + int(self.rng.integers(0, 3)))
            self.feats.add("capped" if cap < m else "bounded")
        else:
            self.feats.add("unbounded")
        if count:
            self.feats.add("tuple_count")
        self.feats.add(f"trips{min(m, cap or m)}")
        names = {"c0": "c[1]" if count else "c", "k": "{%d}" % role.get("k", 0)}
        red = rsrc.format(names["c0"])
        shift = self.pick(lambda m: self.shape_of(m) == (), dtype=dt, fresh_shape=lambda: (), p_new=0.3) \
            if self.chance(0.3) else None
        if shift is not None:    # the condition reads an outer node: red - t < thr - t
            thr = float(f"{thr - float(self.val(shift)):.4g}")
            red = f"{red} - {ph('t', shift)}"
            self.feats.add("cond_closure")
        test = f"lambda c: {red} {cmp} {thr!r}"
        if cap is None:     # without a bound, the counter ends the loop should symfuse not (a hang)
            test = f"lambda c: ({red} {cmp} {thr!r}) & (c[0] < {GUARD})"
        step = render(body, names)
        bound = f", max_iterations={cap}" if cap else ""
        src = (f"sf.while_loop({test}, lambda c: (c[0] + 1, {step}), (sf.constant(0, 'int32'), {{0}}){bound})"
               if count else f"sf.while_loop({test}, lambda c: {step}, {{0}}{bound})")

        def run(vals, errs, strict):
            env = {r: (vals[i], errs[i]) for r, i in role.items()}
            v, i = env["c0"], 0
            tv, te = env["t"] if "t" in env else (0.0, 0.0)
            while cap is None or i < cap:
                r = float(rf(v[0])) - float(tv)
                if strict and not self.cf_margin(abs(r - thr), rerr(v[0], v[1]) + te, thr):
                    raise Invalid("while_loop")
                if not cf(r, thr) or (cap is None and i >= GUARD):
                    break
                if i >= 64:
                    if strict:
                        raise Invalid("while_loop")
                    break
                v, i = bev(body, {**env, "c0": v}, strict), i + 1
            return ((np.array(i), v[0]), (0.0, v[1])) if count else ((v[0],), (v[1],))

        f = lambda *v: run(v, [0.0] * len(v), False)[0]  # noqa: E731
        errf = lambda v, e, y: run(v, e, True)[1]  # noqa: E731
        inert = self.inert(args, role, {"c0", "t"} | bvars(body))
        self.feats |= tree_feats(body)
        if count:
            out = self.add_tuple(src, args, f, errf, [("{0}[0]", "int32", "while_count"), ("{0}[1]", dt, "while_carry")],
                                 "while_loop", inert)
            return out[1] if out else None
        return self.add(src, args, lambda *v: f(*v)[0], dt, errf=lambda v, e, y: errf(v, e, y)[0], tag="while_loop",
                        feats=self.feats, inert=inert)

    RECIPES = {"huge": 0.15, "unary": 8, "binary": 8, "compare": 3, "reduce": 4, "view": 5, "views": 2, "matmul": 2,
               "gemm": 2, "conv": 1, "pool": 1, "softmax": 2, "pattern": 2, "take": 1, "int": 1.5, "cast": 1,
               "scan": 1.5, "cond": 1.5, "while_loop": 1, "collective": 0.7}

    def generate(self) -> Program:
        # (with "cond" excluded, the cond recipe still makes conds on a Python bool: no cond op)
        names = [r for r in self.RECIPES if r not in self.exclude or r == "cond"]
        w = np.array([self.RECIPES[r] for r in names])
        for _ in range(int(self.rng.integers(1, 3))):
            self.leaf(self.shape(), const=False)
        made = 0
        for _ in range(self.n_ops * 6):
            if made >= self.n_ops:
                break
            recipe = names[int(self.rng.choice(len(names), p=w / w.sum()))]
            if getattr(self, "r_" + recipe)() is not None:
                made += 1
        self.finish()
        return self.p.prune()

    def finish(self):
        p, nodes = self.p, self.p.nodes
        used = {a for n in nodes for a in n.args}
        inner = [n for n in nodes if not n.leaf and n.dtype != "tuple"]
        sinks = [n.name for n in inner if n.name not in used]
        extra = [n.name for n in inner if n.name in used and self.chance(0.15)]
        p.outputs = (sinks + extra)[:8] or [nodes[-1].name]
        # results that alias: an input or shared variable returned as is (its value from
        # before the call's updates), one value returned twice
        if self.chance(0.15) and p.inputs + p.shared:
            p.outputs.append(self.choice(p.inputs + p.shared).name)
        if self.chance(0.1):
            p.outputs.append(self.choice(p.outputs))
        consts = [n for n in nodes if n.leaf == "const"]
        if consts and self.chance(0.1) and "const_output" not in self.exclude:
            p.outputs.append(self.choice(consts).name)
        # each shared variable mostly gets an update: any node of its type, another shared
        # variable (a swap), or itself transposed (read while it is being written)
        for s in p.shared:
            v = self.vals[s.name]
            cands = [n for n in nodes if n is not s and n.dtype == s.dtype and self.vals[n.name].shape == v.shape]
            if v.ndim == 2 and v.shape[0] == v.shape[1] and self.chance(0.3):
                cands = [self.add("{0}.T * 0.5 + 1.0", [s], lambda a: a.T * 0.5 + 1, tag="update_T")] * 3
            if cands and cands[0] is not None and self.chance(0.8):
                p.updates.append((s.name, self.choice(cands).name))
        if not self.grad:
            return
        terms = [o for o in p.outputs if p.node(o).dtype == self.dtype and self.vals[o].size][:4]
        cost = None
        for t in terms:
            s = self.shape_of(p.node(t))
            wgt = self.leaf(s, lo=-1.0, hi=1.0, const=True)
            n = int(np.prod(s)) if s else 1
            term = self.add("({0} * {1}).sum()", [p.node(t), wgt], lambda a, b: np.sum(a * b),
                            errf=lambda v, e, y, n=n: n * (e[0] + 8 * U[self.dtype] * amax(v[0])), tag="cost")
            cost = term if cost is None else self.add("{0} + {1}", [cost, term], np.add, tag="cost")
        if cost is None:
            return
        reach = _ancestors(p, cost.name)
        wrt = [n.name for n in p.inputs + p.shared if n.dtype == self.dtype and n.name in reach]
        if not wrt:
            return
        k = int(self.rng.integers(1, len(wrt) + 1))
        p.cost, p.wrt = cost.name, sorted(self.rng.choice(wrt, size=k, replace=False).tolist(), key=wrt.index)
        # x - 0.1 * g alone is the pattern the cpu backend turns into a BLAS gemm accumulating into x
        p.sgd = int(self.rng.choice(3, p=[0.6, 0.2, 0.2]))
        # second derivatives (not through overlapping max pooling windows: symfuse refuses those)
        p.order2 = self.chance(0.15) and not any(n.tag == "max_pool2d_overlap" for n in nodes)
        p.outputs = [o for o in p.outputs if o != cost.name]


def _bcast(a, b):
    try:
        s = np.broadcast_shapes(a, b)
    except ValueError:
        return None
    return s if s == tuple(a) else None     # the first operand's shape never grows


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _factor(size, rng):
    """A random shape of ``size`` elements, rank 0-4."""
    dims = []
    while size > 1 and len(dims) < 3:
        ds = [d for d in range(2, size + 1) if size % d == 0]
        d = int(ds[int(rng.integers(len(ds)))])
        dims.append(d)
        size //= d
    if size > 1:
        dims.append(size)
    if rng.random() < 0.3:
        dims.insert(int(rng.integers(len(dims) + 1)), 1)
    rng.shuffle(dims)
    return tuple(dims)


def _ancestors(p: Program, name: str) -> set:
    seen, stack = {name}, [name]
    nodes = {n.name: n for n in p.nodes}
    while stack:
        n = nodes[stack.pop()]
        for a in (a for i, a in enumerate(n.args) if i not in n.inert):
            if a not in seen:
                seen.add(a)
                stack.append(a)
    return seen


def generate(seed: int, prefix: str = "", exclude=frozenset(), **kw) -> Program:
    return Gen(seed, prefix, exclude, **kw).generate()
