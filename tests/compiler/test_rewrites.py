"""Every named rewrite: it fires on a small graph, its effect shows in the printed IR,
the report counts it, and values match the unoptimised graph (bit-for-bit for
"simplify", with NaN/inf/-0.0 among the inputs; allclose for "stabilise" and
"fast_math", the latter compiled with fast_math=True)."""
import re
from collections import Counter

import numpy as np
import pytest

import symfuse as sf
from symfuse.compiler.passes import REWRITES
from symfuse.ir.core import apply

# --------------------------------------------------------------------------- graph builders
F32, F64, I32 = "float32", "float64", "int32"


def X(shape=(3, 4), dtype=F32, name="x"):
    return sf.tensor(name, shape, dtype)


def unary(f, shape=(3, 4), dtype=F32):
    def build():
        x = X(shape, dtype)
        return [x], f(x)
    return build


def binary(f, sa=(3, 4), sb=(3, 4), dtype=F32):
    def build():
        a, b = X(sa, dtype, "a"), X(sb, dtype, "b")
        return [a, b], f(a, b)
    return build


def _softmax_rows(shape=(4, 5)):
    def build():
        x, t = X(shape, name="x"), X(shape, name="t")
        return x, t, sf.log_softmax(x, axis=-1)
    return build


def xent(f, shape=(4, 5)):
    def build():
        x, t, ls = _softmax_rows(shape)()
        return [x, t], f(t, ls)
    return build


def raw(name, attrs, shape=(3, 4), dtype=F32, extra=()):
    """One op built directly (the API skips identities such as a full-shape reshape)."""
    def build():
        x = X(shape, dtype)
        return [x], apply(name, [x] + list(extra), attrs)
    return build


POS = "pos"        # inputs in [0.5, 2): domains of log, sqrt, x/x, ...


def C(name, build, expect, data=None):
    return pytest.param(name, build, expect, data, id=f"{name}:{expect}")


# expect: "-op" op absent after optimisation, "+op" present, "<op" fewer than in the
# unoptimised graph, "~regex" matches the optimised IR text.
CASES = [
    # canonical forms
    C("commute_constants", unary(lambda x: 3.0 + x), r"~add %x, %\d"),
    C("commute_constants", unary(lambda x: sf.equal(2.0, x)), r"~eq %x, %\d"),
    C("operand_broadcast_absorb", binary(lambda a, b: a * sf.broadcast_to(b, (3, 4)), sb=(4,)), "-broadcast_to"),
    C("operand_broadcast_absorb", binary(lambda a, b: sf.where(a > 0, sf.broadcast_to(b, (3, 4)), a), sb=(1, 4)),
      "-broadcast_to"),
    # additive
    C("add_zero", unary(lambda x: x + 0.0), "-add"),
    C("add_zero", binary(lambda a, b: sf.zeros((3, 4)) + b, sb=(4,)), "-add +broadcast_to"),
    C("add_zero", unary(lambda x: x + 0, dtype=I32), "-add"),
    C("sub_zero", unary(lambda x: x - 0.0), "-sub"),
    C("zero_sub", unary(lambda x: 0.0 - x), "-sub +neg"),
    C("sub_self_int", unary(lambda x: x - x, dtype=I32), "-sub"),
    C("sub_self", unary(lambda x: x - x), "-sub"),
    C("neg_neg", unary(lambda x: -(-x)), "-neg"),
    C("sub_neg", binary(lambda a, b: a - (-b)), "-neg -sub +add"),
    C("add_neg", binary(lambda a, b: a + (-b)), "-neg -add +sub"),
    C("add_neg", binary(lambda a, b: (-a) + b), "-neg -add +sub"),
    C("neg_sub", binary(lambda a, b: -(a - b)), "-neg +sub"),
    # multiplicative
    C("mul_one", unary(lambda x: x * 1.0), "-mul"),
    C("mul_one", binary(lambda a, b: sf.ones((2, 3, 4)) * a), "-mul +broadcast_to"),
    C("mul_neg_one", unary(lambda x: x * -1.0), "-mul +neg"),
    C("mul_zero_int", unary(lambda x: x * 0, dtype=I32), "-mul"),
    C("mul_zero", unary(lambda x: x * 0.0), "-mul"),
    C("neg_mul_neg", binary(lambda a, b: (-a) * (-b)), "-neg"),
    C("neg_mul_neg", binary(lambda a, b: (-a) / (-b)), "-neg"),
    C("neg_mul_const", unary(lambda x: -(x * 3.0)), "-neg"),
    C("neg_mul_const", unary(lambda x: (-x) * 3.0), "-neg"),
    C("div_one", unary(lambda x: x / 1.0), "-div"),
    C("div_neg_one", unary(lambda x: x / -1.0), "-div +neg"),
    C("one_div", unary(lambda x: 1.0 / x), "-div +reciprocal"),
    C("div_by_constant", unary(lambda x: x / 4.0), "-div +mul"),
    C("div_by_constant", unary(lambda x: x / 0.125, dtype=F64), "-div +mul"),
    C("div_self", unary(lambda x: x / x), "-div", POS),
    C("mul_by_reciprocal", binary(lambda a, b: a * sf.reciprocal(b)), "-reciprocal -mul +div", POS),
    C("reciprocal_reciprocal", unary(lambda x: sf.reciprocal(sf.reciprocal(x))), "-reciprocal", POS),
    C("reciprocal_sqrt", unary(lambda x: sf.reciprocal(sf.sqrt(x))), "-reciprocal -sqrt +rsqrt"),
    # powers
    C("pow_one", unary(lambda x: x ** 1.0), "-pow"),
    C("pow_zero", unary(lambda x: x ** 0.0), "-pow"),
    C("pow_two", unary(lambda x: x ** 2.0), "-pow +mul"),
    C("pow_two", unary(lambda x: x ** 2.0, dtype=F64), "-pow +mul"),
    C("pow_neg_one", unary(lambda x: x ** -1.0), "-pow +reciprocal"),
    C("pow_neg_one", unary(lambda x: x ** -1.0, dtype=F64), "-pow +reciprocal"),
    C("pow_half", unary(lambda x: x ** 0.5), "-pow +sqrt", POS),
    C("pow_neg_half", unary(lambda x: x ** -0.5), "-pow +rsqrt", POS),
    C("sqrt_square", unary(lambda x: sf.sqrt(x * x)), "-sqrt -mul +abs"),
    C("exp_log", unary(lambda x: sf.exp(sf.log(x))), "-exp -log", POS),
    # idempotent unary / self binary
    C("abs_abs", unary(lambda x: abs(abs(x))), "<abs"),
    C("abs_neg", unary(lambda x: abs(-x)), "-neg"),
    C("relu_relu", unary(lambda x: sf.relu(sf.relu(x))), "<relu"),
    C("sign_sign", unary(lambda x: sf.sign(sf.sign(x))), "<sign"),
    C("logical_not_not", unary(lambda c: sf.logical_not(sf.logical_not(c)), dtype="bool"), "-logical_not"),
    C("maximum_self", unary(lambda x: sf.maximum(x, x)), "-maximum"),
    C("minimum_self", unary(lambda x: sf.minimum(x, x)), "-minimum"),
    # where, cast
    C("where_same", unary(lambda x: sf.where(x > 0, x, x)), "-where -gt"),
    C("where_const_cond", binary(lambda a, b: sf.where(True, a, b)), "-where"),
    C("where_const_cond", binary(lambda a, b: sf.where(sf.zeros((3, 4), "bool"), b, a), sa=(4,)),
      "-where +broadcast_to"),
    C("where_not", binary(lambda a, b: sf.where(sf.logical_not(a > b), a, b)), "-logical_not"),
    C("cast_identity", raw("cast", {"dtype": F32}), "-cast"),
    C("double_cast", unary(lambda x: x.astype("int32").astype("float32"), dtype="int16"), "<cast"),
    C("double_cast", unary(lambda x: x.astype("float64").astype("float32")), "-cast"),
    # shape ops
    C("transpose_identity", raw("transpose", {"perm": (0, 1)}), "-transpose"),
    C("transpose_transpose", unary(lambda x: x.T.T), "-transpose"),
    C("transpose_transpose", unary(lambda x: x.transpose(1, 2, 0).transpose(1, 0, 2), shape=(2, 3, 4)),
      "<transpose"),
    C("reshape_identity", raw("reshape", {"shape": (3, 4)}), "-reshape"),
    C("reshape_reshape", unary(lambda x: x.reshape(12).reshape(2, 6)), "<reshape"),
    C("reshape_of_broadcast_scalar", unary(lambda s: sf.broadcast_to(s, (3, 4)).reshape(12), shape=(1,)),
      r"~broadcast_to %\d+ \{shape = \[12\]\}"),
    C("broadcast_identity", raw("broadcast_to", {"shape": (3, 4)}), "-broadcast_to"),
    C("broadcast_broadcast", unary(lambda b: sf.broadcast_to(sf.broadcast_to(b, (3, 4)), (2, 3, 4)), shape=(4,)),
      "<broadcast_to"),
    C("slice_full", raw("slice", {"start": (0, 0), "stop": (3, 4), "step": (1, 1)}), "-slice"),
    C("slice_slice", unary(lambda x: x[1:, ::2][::2, 1:], shape=(6, 5)), "<slice"),
    C("flip_flip", unary(lambda x: sf.flip(sf.flip(x, 0), 0)), "-flip"),
    C("flip_flip", unary(lambda x: sf.flip(sf.flip(x, (0, 1)), 0)), "<flip"),
    C("flip_trivial", unary(lambda x: sf.flip(x, 0), shape=(1, 4)), "-flip"),
    C("concat_single", raw("concatenate", {"axis": 0}), "-concatenate"),
    # reductions
    C("reduce_empty_axes", raw("sum", {"axis": (), "keepdims": False}), "-sum"),
    C("reduce_empty_axes", raw("max", {"axis": ()}), "-max"),
    C("reduce_unit_axes", unary(lambda x: x.sum(axis=1), shape=(3, 1)), "-sum"),
    C("reduce_unit_axes", unary(lambda x: x.prod(axis=(0, 2), keepdims=True), shape=(1, 3, 1)), "-prod"),
    C("sum_of_neg", unary(lambda x: (-x).sum(axis=1)), r"~sum %x"),
    C("max_of_neg", unary(lambda x: (-x).max(axis=1)), "-max +min"),
    C("max_of_neg", unary(lambda x: (-x).min()), "-min +max"),
    C("sum_of_broadcast", unary(lambda b: sf.broadcast_to(b, (3, 4)).sum(axis=0), shape=(4,), dtype=I32),
      "-sum"),
    C("sum_of_broadcast", unary(lambda b: sf.broadcast_to(b, (2, 3, 4)).sum(axis=(0, 1), keepdims=True),
                                shape=(1, 4), dtype=I32), "-sum"),
    C("sum_of_broadcast_float", unary(lambda b: sf.broadcast_to(b, (5, 4)).sum(axis=0), shape=(4,)), "-sum"),
    # stabilise
    C("log_exp", unary(lambda x: sf.log(sf.exp(x))), "-log -exp"),
    C("softplus", unary(lambda x: sf.log(1.0 + sf.exp(x))), "+softplus -log -exp"),
    C("softplus", unary(lambda x: sf.log1p(sf.exp(x))), "+softplus -log1p -exp"),
    C("log_sigmoid", unary(lambda x: sf.log(sf.sigmoid(x))), "-log -sigmoid +softplus"),
    C("log_one_minus_sigmoid", unary(lambda x: sf.log(1.0 - sf.sigmoid(x))), "-log -sigmoid +softplus"),
    C("log_one_minus_sigmoid", unary(lambda x: sf.log1p(-sf.sigmoid(x))), "-log1p -sigmoid +softplus"),
    C("log_one_plus", unary(lambda x: sf.log(1.0 + x)), "-log -add +log1p", POS),
    C("log_one_plus", binary(lambda a, b: sf.log(a + sf.ones((2, 3, 4)))), "-log +log1p", POS),
    C("exp_minus_one", unary(lambda x: sf.exp(x) - 1.0), "-exp -sub +expm1"),
    C("exp_minus_one", unary(lambda x: -1.0 + sf.exp(x)), "-exp -add +expm1"),
    C("log_softmax", unary(lambda x: sf.log(sf.softmax(x, axis=0))), "-log -softmax +log_softmax"),
    C("log_sum_exp", unary(lambda x: sf.log(sf.exp(x).sum(axis=1))), "-log -exp +logsumexp"),
    C("log_sum_exp", unary(lambda x: sf.log(sf.exp(x).sum(axis=(0, 2), keepdims=True)), shape=(2, 3, 4)),
      "-log -exp +logsumexp"),
    C("log_sum_exp", unary(lambda x: sf.log(sf.exp(x).sum())), "-log -exp +logsumexp"),
    C("softmax_cross_entropy", xent(lambda t, ls: -(t * ls).sum(axis=1)), "-log_softmax +softmax_xent -neg"),
    C("softmax_cross_entropy", xent(lambda t, ls: (-(ls * t)).sum(axis=-1, keepdims=True)),
      "-log_softmax +softmax_xent -neg"),
    C("softmax_cross_entropy", xent(lambda t, ls: (ls * (-t)).sum()), "-log_softmax +softmax_xent"),
    C("softmax_cross_entropy", xent(lambda t, ls: (t * ls).sum(axis=1)), "-log_softmax +softmax_xent"),
    C("softmax_cross_entropy",
      lambda: (lambda x, y: ([x, y], -(sf.one_hot(y, 10) * sf.log(sf.softmax(x))).sum(axis=1).mean()))(
          X((6, 10)), X((6,), I32, "y")),
      "-log -softmax +softmax_xent"),
]


# --------------------------------------------------------------------------- checking
def op_counts(ir: str) -> Counter:
    return Counter(re.findall(r"^\s*%[\w#:]+ = (\w+)", ir, re.M))


def check_ir(expect: str, opt_ir: str, raw_ir: str):
    got, before = op_counts(opt_ir), op_counts(raw_ir)
    for tok in expect.split(" ") if not expect.startswith("~") else [expect]:
        kind, what = tok[0], tok[1:]
        if kind == "-":
            assert got[what] == 0, f"{what} still present:\n{opt_ir}"
        elif kind == "+":
            assert got[what] > 0, f"{what} missing:\n{opt_ir}"
        elif kind == "<":
            assert got[what] < before[what], f"{what}: {got[what]} vs {before[what]} before:\n{opt_ir}"
        elif kind == "~":
            assert re.search(what, opt_ir), f"/{what}/ not found in:\n{opt_ir}"
        else:
            raise ValueError(tok)


SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e-30]


def make_args(inputs, rng, data, specials):
    args = []
    for v in inputs:
        dt = v.dtype.np
        if v.dtype.is_bool:
            a = rng.random(v.shape) < 0.5
        elif v.dtype.is_int:
            a = rng.integers(-5, 6, size=v.shape)
        elif data == POS:
            a = rng.uniform(0.5, 2.0, size=v.shape)
        else:
            a = rng.normal(size=v.shape) * 2
        a = np.asarray(a).astype(dt)
        if specials and v.dtype.is_float and a.size:
            flat = a.reshape(-1)
            k = min(len(SPECIALS), flat.size - 1)
            flat[rng.permutation(flat.size)[:k]] = SPECIALS[:k]
        args.append(a)
    return args


@pytest.mark.parametrize("name,build,expect,data", CASES)
def test_rewrite(name, build, expect, data, rng):
    tags = REWRITES.rewrites[name].tags
    fast = "fast_math" in tags
    exact = "simplify" in tags
    inputs, out = build()
    f = sf.function(inputs, out, device="interp", fast_math=fast)
    f0 = sf.function(inputs, out, device="interp", optimize_graph=False)
    assert name in f.report.rewrite_counts(), (f.report.rewrite_counts(), f.ir())
    check_ir(expect, f.ir(), f0.ir())
    for trial in range(2):
        args = make_args(inputs, rng, data, specials=exact and trial == 1)
        want, got = f0(*args), f(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        if exact:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# lowering rewrites, run by one backend before fusion: tested with that backend
# (tests/compiler/test_blas_lowering.py), not through the portable pipeline
LOWERING = {"blas"}


def test_every_rewrite_has_a_case():
    covered = {p.values[0] for p in CASES}
    portable = {n for n, r in REWRITES.rewrites.items() if not r.tags & LOWERING}
    missing = sorted(portable - covered)
    assert not missing, f"rewrites without a test case in CASES: {missing}"
    unknown = sorted(covered - set(REWRITES.rewrites))
    assert not unknown, f"CASES name unregistered rewrites: {unknown}"


def test_every_rewrite_is_tagged_and_documented():
    for r in REWRITES.rewrites.values():
        assert r.tags & {"simplify", "stabilise", "fast_math"} or r.tags <= LOWERING, r.name
        assert not ("simplify" in r.tags and "fast_math" in r.tags), r.name
        assert r.doc, f"rewrite {r.name} has no docstring"
    assert sum("simplify" in r.tags for r in REWRITES.rewrites.values()) >= 30


def test_fast_math_rewrites_are_off_by_default():
    x = X()
    for out in (x - x, x * 0.0, x / x, sf.sqrt(x * x)):
        f = sf.function([x], out, device="interp")
        counts = f.report.rewrite_counts()
        assert not {"sub_self", "mul_zero", "div_self", "sqrt_square"} & set(counts), counts
    xv = np.array([[np.inf, np.nan, 0.0, 1e30]] * 3, np.float32)
    assert np.isnan(sf.function([x], x - x, device="interp")(xv)[0, :2]).all()


def test_disabled_rewrite_does_not_fire():
    x = X()
    f = sf.function([x], -(-x), device="interp")
    assert "neg_neg" in f.report.rewrite_counts()
    from symfuse.compiler.pipeline import Options, optimize
    from symfuse.ir.core import Function
    fn = optimize(Function([x], [-(-x)]), Options(disabled=("neg_neg",)))
    assert op_counts(str(fn))["neg"] == 2


# --------------------------------------------------------------------------- pinned values
def test_grad_wrt_pinned_softmax_is_not_looked_through():
    z = X((4, 5), F64, "z")
    h = sf.softmax(z)
    cost = sf.log(h).sum()
    g = sf.grad(cost, h)
    f = sf.function([z], [cost, g], device="interp")
    f0 = sf.function([z], [cost, g], device="interp", optimize_graph=False)
    zv = np.random.default_rng(1).normal(size=(4, 5))
    (c, gv), (c0, g0) = f(zv), f0(zv)
    hv = np.exp(zv - zv.max(1, keepdims=True))
    hv /= hv.sum(1, keepdims=True)
    np.testing.assert_allclose(gv, 1 / hv, rtol=1e-12)
    np.testing.assert_allclose(gv, g0, rtol=1e-12)
    np.testing.assert_allclose(c, c0, rtol=1e-12)


def test_grad_wrt_pinned_value_is_not_merged_with_an_equal_op():
    """CSE must not reroute an independent copy of a pinned value through it."""
    z = X((3,), F64, "z")
    h, h2 = sf.softmax(z), sf.softmax(z)
    cost = sf.log(h).sum() + h2.sum()
    g = sf.grad(cost, h)
    zv = np.array([0.1, -0.5, 2.0])
    got = sf.function([z], g, device="interp")(zv)
    want = sf.function([z], g, device="interp", optimize_graph=False)(zv)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_pinned_operand_of_identity_patterns():
    """neg_neg / log_exp must not look through a pinned inner value."""
    x = X((3,), F64)
    n = -x
    e = sf.exp(x)
    cost = (-n).sum() + sf.log(e).sum()
    gn, ge = sf.grad(cost, [n, e])
    xv = np.array([0.5, -1.0, 2.0])
    f = sf.function([x], [gn, ge], device="interp")
    np.testing.assert_allclose(f(xv)[0], -np.ones(3))
    np.testing.assert_allclose(f(xv)[1], np.exp(-xv), rtol=1e-12)


# --------------------------------------------------------------------------- end to end
def test_cross_entropy_of_softmax_compiles_to_softmax_xent_with_a_stable_gradient():
    x, y, W = X((8, 5)), X((8,), I32, "y"), X((5, 10), name="W")
    loss = -(sf.one_hot(y, 10) * sf.log(sf.softmax(x @ W))).sum(axis=1).mean()
    g = sf.grad(loss, W)
    f = sf.function([x, y, W], [loss, g], device="interp")
    f0 = sf.function([x, y, W], [loss, g], device="interp", optimize_graph=False)
    ops = op_counts(f.ir())
    assert ops["softmax_xent"] == 1 and ops["log"] == 0 and ops["log_softmax"] == 0, f.ir()
    counts = f.report.rewrite_counts()
    assert counts["log_softmax"] >= 1 and counts["softmax_cross_entropy"] >= 1

    rng = np.random.default_rng(0)
    xv = rng.normal(size=(8, 5)).astype(np.float32)
    yv = rng.integers(0, 10, size=8).astype(np.int32)
    Wv = rng.normal(size=(5, 10)).astype(np.float32)
    for a, b in zip(f(xv, yv, Wv), f0(xv, yv, Wv)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    Wv = Wv * 1e4                                     # logits of magnitude ~1e4
    loss_v, g_v = f(xv, yv, Wv)
    assert np.isfinite(loss_v) and np.isfinite(g_v).all()
    naive = f0(xv, yv, Wv)
    assert not (np.isfinite(naive[0]) and np.isfinite(naive[1]).all())
    # the stable gradient is the exact one: x^T (softmax(xW) - onehot) / n in float64
    z = xv.astype(np.float64) @ Wv.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = xv.T.astype(np.float64) @ (p - np.eye(10)[yv]) / 8
    np.testing.assert_allclose(g_v, want, rtol=1e-3, atol=1e-3)


def test_stabilised_functions_are_finite_where_naive_ones_overflow():
    x = X((2, 3))
    xv = np.array([[1000.0, -1000.0, 0.0], [-200.0, 90.0, 5.0]], np.float32)
    for out in (sf.log(sf.exp(x).sum(axis=1)), sf.log(1.0 + sf.exp(x)), sf.log(sf.sigmoid(x)),
                sf.log(1.0 - sf.sigmoid(x)), sf.log(sf.softmax(x))):
        got = sf.function([x], out, device="interp")(xv)
        assert np.isfinite(got).all(), (got, out)
        g = sf.function([x], sf.grad(out.sum(), x), device="interp")(xv)
        assert np.isfinite(g).all(), g
