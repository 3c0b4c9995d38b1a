"""Registry-driven op conformance: every op registered in ``symfuse.ir.core.OPS``.

For each op, random inputs valid for its type rule (a sample generator per fusion
class / kind, explicit builders where an op's attributes need them) and:

* ``interp-<dtype>``: the interpreter (the optimised graph) equals the op's numpy
  ``ref`` applied directly;
* ``<backend>-<dtype>``: every compiled backend (cpu, cuda-emu) equals the
  interpreter, float32 and float64 (and int32 where the type rule takes integers),
  tolerances by dtype, integer and bool results exactly; view ops are also checked
  folded into a consumer. Besides smooth random data the forward cases hold 0-d and
  empty tensors, IEEE special values (NaN, infinities, signed zeros, huge values),
  and integer indices past 32 bits;
* ``vjp-<backend>``: for a differentiable op, the gradient of sum(out * R) (R random,
  fixed) compiled on interp, cpu and cuda-emu equals five-point central finite
  differences of that cost, evaluated with the numpy ``ref`` in float64.

All ops' cases of one dtype are batched into one function per backend (and the
gradients into one), so the file costs a handful of compiles; if a batch fails to
compile, each op is compiled on its own so the failure names the op. Inputs stay in
safe domains: log/sqrt of positive values, divisors away from zero, kinks (relu,
abs, maximum, max reductions and pooling) away from the finite-difference step.
A finding is listed in KNOWN_FAILURES: that exact (op, check) is a strict xfail.

A new op is covered automatically if its fusion class / kind has a generator here;
``test_every_op_has_a_case`` fails for one that has none.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

import symfuse as sf
from symfuse.errors import SymfuseError
from symfuse.ir.core import OPS, apply
from symfuse.ir.types import as_dtype, tensor_type

BACKENDS = ("cpu", "cuda-emu")
# the dtype a case is built for: its float operands and dtype attributes. Every op has
# float32 and float64 cases; int32 ones where the type rule takes integer operands.
DTYPES = ("float32", "float64", "int32")
# forward tolerances (rtol; atol is rtol times the result's scale, at least 1);
# integer and bool results must be equal
TOL = {"float32": 1e-4, "float64": 1e-9, "int32": 0.0}
VJP_TOL = 1e-6
FD_STEP = 1e-4

# ops without a conformance case, and why
EXCLUDED = {
    # its ref raises: a grad op never reaches a backend, the differentiate pass expands it
    # first; every vjp-* case below goes through that expansion
    "grad": "expanded by the differentiate pass before execution",
    # ops with regions: their operands and bodies are programs, not arrays drawn from a type
    # rule; tests/ir/test_control_flow.py checks values and gradients of each
    "scan": "takes a body region (tests/ir/test_control_flow.py)",
    "while_loop": "takes condition and body regions (tests/ir/test_control_flow.py)",
    "cond": "takes two branch regions (tests/ir/test_control_flow.py)",
    # collectives mean something only across processes: tests/distributed/test_collectives.py
    # runs each on 2 and 3 ranks under mpiexec, values and gradients, interp and cpu
    **{n: "runs across MPI ranks (tests/distributed/test_collectives.py)" for n, d in OPS.items()
       if d.kind == "collective"},
}

# Findings: (op, check) -> reason. Such a case is a strict expected failure.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


@dataclass
class Case:
    inputs: list                       # numpy arrays, already in their dtypes
    attrs: dict = field(default_factory=dict)
    grad: bool = True                  # check the VJP (differentiable ops, float64 only)
    tol: float | None = None           # forward tolerance instead of TOL[dtype]
    fd_step: float = FD_STEP
    vjp_tol: float = VJP_TOL


# --------------------------------------------------------------------------- input domains
def draw(rng, shape, domain="real", dtype="float64"):
    """Random data where an op is smooth and defined."""
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if domain in ("ties-a", "ties-b"):     # a small grid of values: many equal pairs
        return np.asarray(rng.integers(-2, 3, shape) / 2, dtype=dtype)
    if domain in ("apart-a", "apart-b"):   # a on a grid, b between: |a - b| >= 0.25 (no kink in reach)
        off = 0.25 if domain == "apart-a" else 0.0
        return np.asarray(rng.integers(-5, 5, shape) / 2 + off, dtype=dtype)
    if np.dtype(dtype).kind == "i":    # small integers, no overflow in any op here
        n = int(np.prod(shape, dtype=np.int64))
        if domain == "distinct":
            x = (rng.permutation(n) - n // 2).reshape(shape)
        elif domain == "pos":
            x = rng.integers(1, 6, shape)
        elif domain == "nonzero":
            x = rng.choice([-1, 1], shape) * rng.integers(1, 6, shape)
        else:
            x = rng.integers(-5, 6, shape)
        return np.asarray(x, dtype=dtype)
    if domain == "real":
        x = rng.normal(0.0, 1.2, shape)
    elif domain == "pos":
        x = rng.uniform(0.2, 3.0, shape)
    elif domain == "gt-1":
        x = rng.uniform(-0.8, 3.0, shape)
    elif domain == "nonzero":          # away from a kink or pole at 0
        x = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.5, shape)
    elif domain == "small":
        x = rng.uniform(-1.5, 1.5, shape)
    elif domain == "halves":           # rounding ties on purpose (round: half to even)
        x = rng.integers(-6, 7, shape) / 2 + rng.choice([0.0, 0.0, 0.3], shape)
    elif domain == "distinct":         # distinct values (no ties: max, argmax, pooling), nonzero
        n = int(np.prod(shape, dtype=np.int64))
        mags = 0.6 + 0.8 * rng.permutation(n) / max(n, 1)
        x = (rng.choice([-1.0, 1.0], n) * mags).reshape(shape)
    else:
        raise ValueError(domain)
    return np.asarray(x, dtype=dtype)


def _accepts(name, arrays, attrs) -> bool:
    """Whether the op's type rule accepts operands like ``arrays`` with ``attrs``."""
    op = OPS[name]
    if not set(attrs) <= set(op.attrs):
        return False
    try:
        op.infer(tuple(tensor_type(as_dtype(a.dtype.name), a.shape) for a in arrays), {**op.attrs, **attrs})
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------- generators by class
UNARY_DOMAIN = {"log": "pos", "sqrt": "pos", "rsqrt": "pos", "log1p": "gt-1", "reciprocal": "nonzero",
                "abs": "nonzero", "relu": "nonzero", "sign": "nonzero", "round": "halves",
                "floor": "halves", "ceil": "halves"}
# binary ops: how the two operands are drawn
# (a string d: d + "-a" and d + "-b", drawn in relation to each other)
BINARY_DOMAIN = {"div": ("real", "nonzero"), "pow": ("pos", "small"), "maximum": "apart",
                 "minimum": "apart", "lt": "ties", "le": "ties", "gt": "ties", "ge": "ties",
                 "eq": "ties", "ne": "ties"}


# operand shapes per arity: broadcasting, a 0-d operand, an empty tensor
POINTWISE_SHAPES = {1: [[(3, 4)], [()], [(0, 3)]],
                    2: [[(2, 3, 4), (3, 1)], [(), (4,)], [(0, 3), (3,)]]}


def pointwise_cases(name, dt, rng):
    """Elementwise ops of fixed arity, with the first operand dtype the type rule
    accepts: the dtype under test, else bool, else int32 (the integer-only bit ops)."""
    arity = OPS[name].arity
    if arity not in POINTWISE_SHAPES:
        return None
    if arity == 1:
        doms = [UNARY_DOMAIN.get(name, "real")]
    else:
        d = BINARY_DOMAIN.get(name, ("real", "real"))
        doms = d if isinstance(d, tuple) else (d + "-a", d + "-b")
    for kind in (dt, "bool", "int32"):
        cases = [Case([draw(rng, s, dm, kind) for s, dm in zip(shapes, doms)]) for shapes in POINTWISE_SHAPES[arity]]
        if kind in ("float32", "float64"):    # IEEE special values, every pair of them (forward only)
            sp = np.array(SPECIAL, kind)
            cases.append(Case([sp] if arity == 1 else [sp[:, None], sp], grad=False))
        cases = [c for c in cases if _accepts(name, c.inputs, c.attrs)]
        if cases:
            return cases
    return None


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e30, -1e30, 0.5, -2.5, 3.5, 1.0, -1.0]


REDUCE_SHAPES = [((2, 3, 4), {}), ((2, 3, 4), {"axis": 1, "keepdims": True}), ((2, 3, 4), {"axis": (0, 2)}),
                 ((2, 3, 4), {"axis": -1}), ((), {}), ((2, 0, 3), {"axis": 1}), ((2, 0, 3), {"axis": 0})]


def reduce_cases(name, dt, rng):
    """Reductions (fusable, or library ones: argmax): distinct nonzero values, every axis
    form (and empty axis) the type rule accepts."""
    cases = [Case([draw(rng, shape, "distinct", dt)], a) for shape, a in REDUCE_SHAPES]
    if dt in ("float32", "float64"):          # NaN and infinities in some rows (forward only)
        x = draw(rng, (3, 4), "distinct", dt)
        x[0, 1], x[1, 2], x[1, 0], x[2, 3] = np.nan, np.inf, -np.inf, np.nan
        cases += [Case([x], {"axis": 1}, grad=False), Case([x], {"axis": 0}, grad=False)]
    return [c for c in cases if _accepts(name, c.inputs, c.attrs)] or None


def rowwise_cases(name, dt, rng):
    """The softmax family: rows along the last or the first axis, no rows at all; a
    second operand (softmax_xent's targets) of the same shape if the type rule wants one."""
    out = []
    for shape, attrs in (((3, 5), [{}, {"axis": 0}, {"axis": 0, "keepdims": True}]), ((0, 5), [{}]),
                         ((4, 3), [{}])):
        x = draw(rng, shape, "real", dt)
        if shape == (4, 3) and x.dtype.kind == "f":     # rows with -inf, all -inf, +inf, NaN (forward only)
            x[0, 1], x[1], x[2, 2], x[3, 0] = -np.inf, -np.inf, np.inf, np.nan
        t = draw(rng, shape, "pos", dt)
        t = (t / t.sum(axis=-1, keepdims=True)).astype(dt)
        for arrays in ([x], [x, t]):
            cases = [Case(arrays, a, grad=shape != (4, 3)) for a in attrs if _accepts(name, arrays, a)]
            if cases:
                out += cases
                break
    return out or None


def random_cases(name, dt, rng):
    """Counter-based random ops: an int32 or int64 seed (negative: it wraps), shape,
    dtype and salt attributes, and a probability operand if the type rule wants one."""
    out = []
    for seed, shape in ((np.array(rng.integers(-2**31, 2**31 - 1), np.int32), (3, 5)),
                        (np.array(-3 * 2**40 - 12345, np.int64), (2, 1, 5)), (np.array(7, np.int32), (0, 5))):
        p = (draw(rng, (5,), "pos", dt) / 3.5).astype(dt)
        a = {"shape": shape, "dtype": dt, "salt": 2**32 - 7}
        for arrays in ([seed], [seed, p]):
            if _accepts(name, arrays, a):
                # normal's float32 logf/cosf/sqrtf agree to a few ulp, also when converted to float64
                out.append(Case(arrays, a, tol=1e-5 if name == "random_normal" else None))
                break
    return out or None


def constant_cases(name, dt, rng):
    return [Case([], {"value": draw(rng, (3, 4), "real", dt)}), Case([], {"value": draw(rng, (), "real", dt)})]


# --------------------------------------------------------------------------- explicit builders
def _cast(dt, rng):
    other = "float32" if dt == "float64" else "float64"
    x = draw(rng, (3, 4), "real", dt) * 3
    # float64 -> float32 rounds: a wide finite-difference step (the op is linear)
    out = [Case([x], {"dtype": other}, fd_step=1e-2, vjp_tol=1e-4),
           Case([x], {"dtype": "int32"}, grad=False), Case([x], {"dtype": "bool"}, grad=False)]
    if dt in ("float32", "float64"):        # special values (not to int: C leaves that undefined)
        sp = np.array(SPECIAL + [1e300 if dt == "float64" else 3e38], dt)
        out += [Case([sp], {"dtype": other}, grad=False), Case([sp], {"dtype": "bool"}, grad=False)]
    return out


def _where(dt, rng):
    return [Case([draw(rng, (3, 4), dtype="bool"), draw(rng, (3, 4), "real", dt), draw(rng, (4,), "real", dt)])]


def _reshape(dt, rng):
    x = draw(rng, (2, 3, 4), "real", dt)
    return [Case([x], {"shape": (4, -1)}), Case([x], {"shape": (24,)})]


def _transpose(dt, rng):
    x = draw(rng, (2, 3, 4), "real", dt)
    return [Case([x], {"perm": (2, 0, 1)}), Case([x], {"perm": None})]


def _broadcast_to(dt, rng):
    return [Case([draw(rng, (3, 1), "real", dt)], {"shape": (2, 3, 4)}),
            Case([draw(rng, (), "real", dt)], {"shape": (2, 3)})]


def _slice(dt, rng):
    x = draw(rng, (5, 6), "real", dt)
    return [Case([x], {"start": (1, 0), "stop": (5, 6), "step": (2, 3)}),
            Case([x], {"start": (0, 2), "stop": (3, 5), "step": (1, 1)}),
            Case([x], {"start": (2, 0), "stop": (2, 6), "step": (1, 4)})]          # empty


def _flip(dt, rng):
    x = draw(rng, (3, 4), "real", dt)
    return [Case([x], {"axes": (1,)}), Case([x], {"axes": None})]


def _pad(dt, rng):
    x = draw(rng, (3, 4), "real", dt)
    return [Case([x], {"lo": (1, 0), "hi": (0, 2), "interior": (1, 0), "value": 0.5}),
            Case([x], {"lo": (0, 0), "hi": (2, 1), "interior": (), "value": 0.0})]


def _concatenate(dt, rng):
    return [Case([draw(rng, s, "real", dt) for s in ((2, 3), (1, 3), (4, 3))], {"axis": 0}),
            Case([draw(rng, s, "real", dt) for s in ((2, 3), (2, 2))], {"axis": -1}),
            Case([draw(rng, s, "real", dt) for s in ((2, 0), (2, 2))], {"axis": 1}),
            Case([draw(rng, (3, 2), "real", dt)], {"axis": 0})]


def _matmul(dt, rng):
    return [Case([draw(rng, (3, 4), "real", dt), draw(rng, (4, 5), "real", dt)]),
            Case([draw(rng, (2, 3, 4), "real", dt), draw(rng, (4, 2), "real", dt)]),
            Case([draw(rng, (3, 0), "real", dt), draw(rng, (0, 2), "real", dt)])]       # nothing to add


def _gemm(dt, rng):
    a, b, z = (draw(rng, s, "real", dt) for s in ((3, 4), (4, 5), (3, 5)))
    return [Case([a, b, z], {"alpha": -0.5, "beta": 2.0}), Case([a, b, z])]


CONV = [  # x shape, w shape, attributes
    ((2, 3, 6, 5), (4, 3, 3, 3), {"stride": (1, 1), "padding": (1, 0), "dilation": (1, 1), "groups": 1}),
    ((1, 4, 7, 8), (4, 2, 2, 3), {"stride": (2, 3), "padding": (1, 0), "dilation": (1, 2), "groups": 2}),
]


def _out_shape(name, shapes, attrs):
    """The result shape the op's type rule gives float64 operands of ``shapes``."""
    op = OPS[name]
    return op.infer(tuple(tensor_type(as_dtype("float64"), s) for s in shapes), {**op.attrs, **attrs})[0].shape


def _conv_out(xs, ws, a):
    return _out_shape("conv2d", [xs, ws], a)


def _conv2d(dt, rng):
    return [Case([draw(rng, xs, "real", dt), draw(rng, ws, "real", dt)], dict(a)) for xs, ws, a in CONV]


def _conv2d_grad_input(dt, rng):
    return [Case([draw(rng, _conv_out(xs, ws, a), "real", dt), draw(rng, ws, "real", dt)],
                 {"input_shape": xs, **a}) for xs, ws, a in CONV]


def _conv2d_grad_weight(dt, rng):
    return [Case([draw(rng, xs, "real", dt), draw(rng, _conv_out(xs, ws, a), "real", dt)],
                 {"weight_shape": ws, **a}) for xs, ws, a in CONV]


POOL = [{"kernel": (2, 2), "stride": None, "padding": (0, 0)},          # disjoint windows
        {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}]        # overlapping, padded


def _pool_input(rng, dt, special):
    x = draw(rng, (2, 3, 6, 5), "distinct", dt)
    if special and x.dtype.kind == "f":      # NaN, infinities and a window of equal values (forward only)
        x[0, 0, 0, 0], x[0, 1, 2, 3], x[1, 0, 4, 4], x[1, 2, 1, 1] = np.nan, -np.inf, np.inf, np.nan
        x[1, 1, 0:2, 0:2] = 0.5
    return x


def _pool(name):
    def build(dt, rng):
        return [Case([_pool_input(rng, dt, sp)], dict(a), grad=not sp) for a in POOL for sp in (False, True)]
    return build


def _max_pool2d_grad(dt, rng):
    out = []
    for a in POOL:
        for sp in (False, True):
            x = _pool_input(rng, dt, sp)
            y = OPS["max_pool2d"].ref([x], _canonical("max_pool2d", Case([x], a))).astype(dt)   # max_pool2d(x)
            g = draw(rng, y.shape, "real", dt)
            # its VJP is defined for disjoint windows only (GradError otherwise)
            out.append(Case([x, y, g], dict(a), grad=a["stride"] is None and not sp))
    return out


def _avg_pool2d_grad(dt, rng):
    xs = (2, 3, 6, 5)
    return [Case([draw(rng, _out_shape("avg_pool2d", [xs], a), "real", dt)], {"input_shape": xs, **a}) for a in POOL]


def _take(dt, rng):
    # negative indices count from the end; out-of-range ones are clamped
    return [Case([draw(rng, (5, 3), "real", dt), np.array([0, 4, -1, 7, 2, 2], np.int32)], {"axis": 0}),
            Case([draw(rng, (2, 4), "real", dt), np.array([[3, 0], [-9, 1]], np.int64)], {"axis": 1}),
            # indices past 32 bits, and unsigned ones past 2**31
            Case([draw(rng, (4, 2), "real", dt), np.array([2**33 + 1, -2**40, 1], np.int64)], {"axis": 0}),
            Case([draw(rng, (4, 2), "real", dt), np.array([2**31 + 5, 2, 2**32 - 1], np.uint32)], {"axis": 0})]


def _take_grad(dt, rng):
    return [Case([draw(rng, (6, 3), "real", dt), np.array([0, 4, -1, 7, 2, 2], np.int32)], {"axis": 0, "size": 5}),
            Case([draw(rng, (2, 2, 2), "real", dt), np.array([[3, 0], [-9, 3]], np.int64)], {"axis": 1, "size": 4}),
            Case([draw(rng, (3, 2), "real", dt), np.array([2**33 + 1, -2**40, 1], np.int64)], {"axis": 0, "size": 4}),
            Case([draw(rng, (3, 2), "real", dt), np.array([2**31 + 5, 2, 2**32 - 1], np.uint32)],
                 {"axis": 0, "size": 4})]


def _one_hot(dt, rng):
    return [Case([np.array([[0, 3, -1], [4, 2, 2]], np.int32)], {"depth": 4, "dtype": dt}),
            Case([np.array([1, 0, 9], np.int64)], {"depth": 3, "dtype": dt}),
            Case([np.array([2**32 + 1, -2**32, 2, 2**31 + 2], np.int64)], {"depth": 3, "dtype": dt}),
            Case([np.array([2**32 - 1, 1, 2**31 + 1], np.uint32)], {"depth": 3, "dtype": dt})]


EXPLICIT = {
    "cast": _cast, "where": _where, "reshape": _reshape, "transpose": _transpose, "broadcast_to": _broadcast_to,
    "slice": _slice, "flip": _flip, "pad": _pad, "concatenate": _concatenate, "matmul": _matmul, "gemm": _gemm,
    "conv2d": _conv2d, "conv2d_grad_input": _conv2d_grad_input, "conv2d_grad_weight": _conv2d_grad_weight,
    "max_pool2d": _pool("max_pool2d"), "avg_pool2d": _pool("avg_pool2d"), "max_pool2d_grad": _max_pool2d_grad,
    "avg_pool2d_grad": _avg_pool2d_grad, "take": _take, "take_grad": _take_grad, "one_hot": _one_hot,
}
BY_FUSION = {"pointwise": pointwise_cases, "reduce": reduce_cases, "constant": constant_cases}
BY_KIND = {"reduce": reduce_cases, "rowwise": rowwise_cases, "random": random_cases}


def cases_for(name, dt):
    """The op's cases for dtype ``dt`` that its type rule accepts (empty: none)."""
    op = OPS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}/{dt}".encode()))
    gen = EXPLICIT.get(name) or BY_FUSION.get(op.fusion) or BY_KIND.get(op.kind)
    try:
        cases = (gen(dt, rng) if name in EXPLICIT else gen(name, dt, rng)) if gen is not None else None
    except SymfuseError:
        if dt in ("float32", "float64"):
            raise
        cases = None            # a builder asked the type rule about integer operands: float only
    return [c for c in cases or () if _accepts(name, c.inputs, c.attrs)]


OP_NAMES = sorted(n for n in OPS if n not in EXCLUDED)


# --------------------------------------------------------------------------- building and running
def _tensors(prefix, arrays):
    return [sf.tensor(f"{prefix}_{i}", a.shape, a.dtype.name) for i, a in enumerate(arrays)]


def _forward_graph(names, dt):
    """params, outputs, and per op: [(first output index, number of outputs)] per case."""
    params, outs, where = [], [], {}
    for name in names:
        where[name] = []
        for k, case in enumerate(_cases(dt)[name]):
            xs = _tensors(f"{name}{k}", case.inputs)
            y = apply(name, xs, dict(case.attrs))
            ys = [y]
            if OPS[name].fusion == "view":     # also folded into a consumer's loads
                m = sf.tensor(f"{name}{k}_m", y.shape, y.dtype.name)
                params.append(m)
                ys.append(y * m)
            params += xs
            where[name].append((len(outs), len(ys)))
            outs += ys
    return params, outs, where


def _view_multiplier(name, k, y_shape, dt):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{k}/m".encode()))
    return draw(rng, y_shape, "real", dt)


def _forward_args(names, dt):
    args = []
    for name in names:
        for k, case in enumerate(_cases(dt)[name]):
            if OPS[name].fusion == "view":
                y = OPS[name].ref(case.inputs, _canonical(name, case))
                args.append(_view_multiplier(name, k, y.shape, y.dtype.name))
            args += case.inputs
    return args


def _canonical(name, case):
    """The case's attributes as the type rule canonicalises them (what ref expects)."""
    op = OPS[name]
    a = {**op.attrs, **case.attrs}
    op.infer(tuple(tensor_type(as_dtype(x.dtype.name), x.shape) for x in case.inputs), a)
    return a


def _run_forward(names, dt, device):
    params, outs, where = _forward_graph(names, dt)
    f = sf.function(params, outs, device=device, name=f"conformance_{dt}")
    got = f(*_forward_args(names, dt))
    got = got if isinstance(got, list) else [got]
    return {n: [[np.asarray(got[i + j]) for j in range(c)] for i, c in where[n]] for n in names}


def _batched(run, names, *args):
    """run(names, ...) for all ops at once; on failure op by op, so a failure names its op."""
    try:
        return run(names, *args)
    except Exception:
        out = {}
        for n in names:
            try:
                out.update(run([n], *args))
            except Exception as e:       # reported by that op's test
                out[n] = e
        return out


CASES: dict[str, dict[str, list[Case]]] = {dt: {} for dt in DTYPES}
_RESULTS: dict[tuple, dict] = {}


def _cases(dt):
    if not CASES[dt]:
        for n in OP_NAMES:
            CASES[dt][n] = cases_for(n, dt) or []
    return CASES[dt]


def forward_results(dt, device):
    key = ("fwd", dt, device)
    if key not in _RESULTS:
        cases = _cases(dt)
        names = [n for n in OP_NAMES if cases[n]]
        _RESULTS[key] = _batched(_run_forward, names, dt, device)
    return _RESULTS[key]


# ----------------------------------------------------------------- gradients
def _grad_cases(name):
    return [c for c in _cases("float64")[name] if c.grad and OPS[name].differentiable
            and any(a.dtype.kind == "f" for a in c.inputs)]


def _weights(name, k, shape, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{k}/R".encode()))
    return rng.standard_normal(shape).astype(dtype)


def _run_vjp(names, device):
    params, args, wrt, costs, where = [], [], [], [], {}
    for name in names:
        where[name] = []
        for k, case in enumerate(_grad_cases(name)):
            xs = _tensors(f"{name}{k}", case.inputs)
            y = apply(name, xs, dict(case.attrs))
            cost = (y * sf.constant(_weights(name, k, y.shape, y.dtype.name))).sum()
            if cost.dtype.name != "float64":
                cost = cost.astype("float64")
            costs.append(cost)
            fl = [i for i, a in enumerate(case.inputs) if a.dtype.kind == "f"]
            where[name].append((len(wrt), fl))
            wrt += [xs[i] for i in fl]
            params += xs
            args += case.inputs
    total = costs[0]
    for c in costs[1:]:
        total = total + c
    grads = sf.grad(total, wrt, disconnected="zero")
    f = sf.function(params, grads, device=device, name="conformance_vjp")
    got = f(*args)
    got = got if isinstance(got, list) else [got]
    return {n: [[np.asarray(got[i + j]) for j in range(len(fl))] for i, fl in where[n]] for n in names}


def vjp_results(device):
    key = ("vjp", device)
    if key not in _RESULTS:
        names = [n for n in OP_NAMES if _grad_cases(n)]
        _RESULTS[key] = _batched(_run_vjp, names, device)
    return _RESULTS[key]


def finite_differences(name, k, case):
    """Five-point central differences of sum(ref(inputs) * R), per float input."""
    attrs = _canonical(name, case)
    ref = OPS[name].ref
    y0 = np.asarray(ref(case.inputs, attrs))
    r = _weights(name, k, y0.shape, y0.dtype.name).astype(np.float64)

    def cost(arrays):
        with np.errstate(all="ignore"):
            return float((np.asarray(ref(arrays, attrs)).astype(np.float64) * r).sum())

    h = case.fd_step
    out = []
    for i, a in enumerate(case.inputs):
        if a.dtype.kind != "f":
            continue
        arrays = [x.copy() for x in case.inputs]
        flat = arrays[i].reshape(-1)
        g = np.zeros(a.size)
        for j in range(a.size):
            v = flat[j]
            vals = []
            for d in (2 * h, h, -h, -2 * h):
                flat[j] = v + d
                vals.append(cost(arrays))
            flat[j] = v
            g[j] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
        out.append(g.reshape(a.shape))
    return out


# --------------------------------------------------------------------------- comparison
def assert_close(got, want, tol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind not in "fc":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, equal_nan=True, err_msg=what)


def _checks():
    out = []
    for name in OP_NAMES:
        dts = [dt for dt in DTYPES if _cases(dt)[name]]
        checks = [f"interp-{dt}" for dt in dts] + [f"{b}-{dt}" for b in BACKENDS for dt in dts]
        if OPS[name].differentiable:
            checks += [f"vjp-{b}" for b in ("interp",) + BACKENDS]
        for check in checks:
            marks = ()
            if (name, check) in KNOWN_FAILURES:
                marks = pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[(name, check)])
            out.append(pytest.param(name, check, marks=marks, id=f"{name}-{check}"))
    return out


def test_every_op_has_a_case():
    """Each registered op (but the excluded) gets conformance cases from a generator,
    and each differentiable one at least one gradient case."""
    missing = [n for n in OP_NAMES if not _cases("float32")[n] or not _cases("float64")[n]]
    assert not missing, f"no sample generator fits these ops; add one to tests/ir/test_op_conformance.py: {missing}"
    no_grad = [n for n in OP_NAMES if OPS[n].differentiable and not _grad_cases(n)]
    assert not no_grad, f"differentiable ops without a gradient case: {no_grad}"
    assert set(EXCLUDED) <= set(OPS)


@pytest.mark.parametrize("name,check", _checks())
def test_op_conformance(name, check):
    backend, _, dt = check.rpartition("-")
    if check.startswith("vjp-"):
        backend = check[4:]
        got = vjp_results(backend)[name]
        if isinstance(got, Exception):
            raise got
        for k, (case, gs) in enumerate(zip(_grad_cases(name), got)):
            for i, (g, fd) in enumerate(zip(gs, finite_differences(name, k, case))):
                assert_close(g, fd, case.vjp_tol, f"{name} case {k} ({case.attrs}): gradient of input {i} "
                                                  f"on {backend} vs finite differences")
        return
    cases = _cases(dt)[name]
    assert cases, f"no case for {name}"
    if backend == "interp":
        got = forward_results(dt, "interp")[name]
        if isinstance(got, Exception):
            raise got
        for k, (case, ys) in enumerate(zip(cases, got)):
            with np.errstate(all="ignore"):
                want = np.asarray(OPS[name].ref(case.inputs, _canonical(name, case)))
            assert_close(ys[0], want, case.tol or TOL[dt], f"{name} case {k} ({case.attrs}): interp vs ref")
        return
    want, got = forward_results(dt, "interp")[name], forward_results(dt, backend)[name]
    for r in (want, got):
        if isinstance(r, Exception):
            raise r
    for k, (case, ws, gs) in enumerate(zip(cases, want, got)):
        for j, (w, g) in enumerate(zip(ws, gs)):
            assert_close(g, w, case.tol or TOL[dt], f"{name} case {k} ({case.attrs}) result {j}: "
                                                    f"{backend} vs interp")
