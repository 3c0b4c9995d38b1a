"""The cpu backend's BLAS lowering (compiler/passes/blas.py): `z + c * (a @ b)`
becomes one gemm kernel (BLAS C = alpha * A @ B + beta * C into a copy of z).
Every form agrees with the interpreter, which runs the unlowered graph; forms
that BLAS cannot take stay a matmul. The gemm op itself has the numpy
semantics and a VJP checked by finite differences, and survives the IR text."""
import numpy as np
import pytest

import symfuse as sf
from symfuse.ir.core import apply
from symfuse.ir.parser import parse
from symfuse.ir.printer import print_function
from test_ops_nn import grad_check

FORMS = {
    "sgd": lambda a, b, z: z - 0.01 * (a @ b),
    "scaled_right": lambda a, b, z: z + (a @ b) * 2.5,
    "product_minus_z": lambda a, b, z: (a @ b) - z,
    "plain_sub": lambda a, b, z: z - a @ b,
    "z_right": lambda a, b, z: 3.0 * (a @ b) + z,
}


def _compile_both(build, shapes, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    xs = [sf.tensor(n, s, dtype) for n, s in zip("abz", shapes)]
    out = build(*xs)
    args = [rng.normal(size=s).astype(dtype) for s in shapes]
    fc = sf.function(xs, out, device="cpu")
    fi = sf.function(xs, out, device="interp")
    return fc, fc(*args), fi(*args)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("shapes", [((37, 50), (50, 29), (37, 29)), ((3, 8, 20), (20, 6), (3, 8, 6))])
def test_accumulating_products_become_one_gemm(form, shapes):
    fc, got, want = _compile_both(FORMS[form], shapes)
    names = [k.name for k in fc.kernels]
    assert len(names) == 1 and names[0].endswith("_gemm"), names
    assert fc.report.info.get("kernels")[0]["ops"] == ["gemm"]
    if fc.report.info.get("graph_cache") == "miss":     # a hit skips the passes, and their counts
        assert fc.report.rewrite_counts().get("gemm_accumulate") == 1, fc.report.rewrite_counts()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans", ["a", "b", "ab"])
def test_transposed_operands_are_read_in_place(trans):
    def build(a, b, z):
        a2 = a.T if "a" in trans else a
        b2 = b.T if "b" in trans else b
        return z - 0.5 * (a2 @ b2)
    shapes = [(40, 24) if "a" in trans else (24, 40), (30, 40) if "b" in trans else (40, 30), (24, 30)]
    fc, got, want = _compile_both(build, shapes, "float64")
    assert [k.name for k in fc.kernels] == ["L_24x30_gemm"]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_sgd_step_trains_the_same_with_and_without_gemm():
    rng = np.random.default_rng(3)
    W = sf.shared(rng.normal(size=(30, 20)).astype(np.float32), name="W")
    x, t = sf.tensor("x", (16, 30)), sf.tensor("t", (16, 20))
    loss = ((sf.tanh(x @ W) - t) ** 2).mean()
    step = sf.function([x, t], loss, updates=[(W, W - 0.1 * sf.grad(loss, W))], device="cpu")
    assert any(k.name == "L_30x20_gemm" for k in step.kernels), [k.name for k in step.kernels]
    w = W.get_value().copy()
    xv, tv = rng.normal(size=(16, 30)).astype(np.float32), rng.normal(size=(16, 20)).astype(np.float32)
    for _ in range(5):
        step(xv, tv)
        g = (2 / t.type.size) * (1 - np.tanh(xv @ w) ** 2) * (np.tanh(xv @ w) - tv)
        w = w - np.float32(0.1) * (xv.T @ g)
    np.testing.assert_allclose(W.get_value(), w, rtol=1e-4, atol=1e-5)


def test_forms_blas_cannot_take_stay_matmuls():
    # a broadcast accumulator (bias), a product used twice, integer operands
    cases = [
        (lambda a, b, z: (a @ b) + z[0], [(8, 5), (5, 6), (3, 6)], "float32"),
        (lambda a, b, z: (z - a @ b) * (a @ b), [(8, 5), (5, 6), (8, 6)], "float32"),
        (lambda a, b, z: z - a @ b, [(8, 5), (5, 6), (8, 6)], "int32"),
    ]
    for build, shapes, dtype in cases:
        rng = np.random.default_rng(1)
        xs = [sf.tensor(n, s, dtype) for n, s in zip("abz", shapes)]
        args = [(rng.normal(size=s) * 4).astype(dtype) for s in shapes]
        fc = sf.function(xs, build(*xs), device="cpu")
        assert not any("gemm" in k.name for k in fc.kernels), [k.name for k in fc.kernels]
        np.testing.assert_allclose(fc(*args), sf.function(xs, build(*xs), device="interp")(*args), rtol=1e-5)


def test_empty_contraction_is_beta_times_z():
    a, b, z = sf.tensor("a", (4, 0)), sf.tensor("b", (0, 3)), sf.tensor("z", (4, 3))
    zv = np.arange(12, dtype=np.float32).reshape(4, 3)
    f = sf.function([a, b, z], (a @ b) - z, device="cpu")
    assert [k.name for k in f.kernels] == ["L_4x3_gemm"]
    np.testing.assert_array_equal(f(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32), zv), -zv)


def test_gemm_op_semantics_gradient_and_text():
    rng = np.random.default_rng(5)
    av, bv, zv = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    a, b, z = sf.tensor("a", (4, 3), "float64"), sf.tensor("b", (3, 5), "float64"), sf.tensor("z", (4, 5), "float64")
    g = apply("gemm", [a, b, z], {"alpha": -0.5, "beta": 2.0})
    np.testing.assert_allclose(sf.function([a, b, z], g, device="interp")(av, bv, zv), -0.5 * av @ bv + 2.0 * zv)
    grad_check(lambda a, b, z: apply("gemm", [a, b, z], {"alpha": 1.5, "beta": -0.25}), [av, bv, zv])
    fn = sf.function([a, b, z], g, device="interp").function
    text = print_function(fn)
    assert "gemm %a, %b, %z {alpha = -0.5, beta = 2.0}" in text, text
    assert print_function(parse(text)) == text
    with pytest.raises(sf.errors.ShapeError, match="accumulator"):
        apply("gemm", [a, b, sf.tensor("w", (5, 4), "float64")])


@pytest.mark.parametrize("device", ["cpu", "cuda-emu"])
@pytest.mark.parametrize("case", ["plain", "transposed", "batched", "empty"])
def test_gemm_op_on_every_backend(device, case):
    """A gemm written in the graph (the cuda target never forms one, but must run
    one): agrees with the interpreter, and its CUDA source compiles for sm_80/sm_90."""
    from test_cpu_backend import _agree
    rng = np.random.default_rng(9)
    shapes = {"plain": ((33, 17), (17, 40), (33, 40)), "transposed": ((17, 33), (40, 17), (33, 40)),
              "batched": ((3, 9, 5), (5, 7), (3, 9, 7)), "empty": ((6, 0), (0, 5), (6, 5))}[case]
    a, b, z = (sf.tensor(n, s) for n, s in zip("abz", shapes))
    a2, b2 = (a.T, b.T) if case == "transposed" else (a, b)
    out = apply("gemm", [a2, b2, z], {"alpha": -0.75, "beta": 0.5})
    args = [rng.normal(size=s).astype(np.float32) for s in shapes]
    f = _agree([a, b, z], out, args, rtol=1e-5, atol=1e-5, device=device)
    assert any(k.name.endswith("_gemm") for k in f.kernels), [k.name for k in f.kernels]


def test_weight_decay_folds_into_beta_and_momentum_keeps_its_fused_update():
    rng = np.random.default_rng(4)
    x, t = sf.tensor("x", (16, 30)), sf.tensor("t", (16, 20))
    xv, tv = rng.normal(size=(16, 30)).astype(np.float32), rng.normal(size=(16, 20)).astype(np.float32)
    w0 = rng.normal(size=(30, 20)).astype(np.float32)

    def step(rule):
        W = sf.shared(w0.copy(), name="W")
        V = sf.shared(np.zeros_like(w0), name="V")
        loss = ((x @ W - t) ** 2).mean()
        g = sf.grad(loss, W)
        ups = [(W, 0.99 * W - 0.1 * g)] if rule == "decay" else [(V, 0.9 * V - 0.1 * g), (W, W + (0.9 * V - 0.1 * g))]
        fc = sf.function([x, t], loss, updates=ups, device="cpu")
        fi = sf.function([x, t], loss, updates=ups, device="interp")
        return fc, fi, W, V

    fc, fi, W, V = step("decay")
    assert "L_30x20_gemm" in [k.name for k in fc.kernels]
    if fc.report.info.get("graph_cache") == "miss":
        assert fc.report.rewrite_counts().get("gemm_accumulate") == 1
    fc(xv, tv)
    got = W.get_value().copy()
    W.set_value(w0.copy())
    fi(xv, tv)
    np.testing.assert_allclose(got, W.get_value(), rtol=1e-5, atol=1e-6)
    fc, fi, W, V = step("momentum")      # the velocity feeds two updates: no gemm, one fused kernel
    names = [k.name for k in fc.kernels]
    assert not any("gemm" in n for n in names) and "L_30x20_matmul" in names, names
    fc(xv, tv)
    got = W.get_value().copy()
    W.set_value(w0.copy())
    V.set_value(np.zeros_like(w0))
    fi(xv, tv)
    np.testing.assert_allclose(got, W.get_value(), rtol=1e-5, atol=1e-6)


def test_a_large_column_sum_is_a_matrix_vector_product():
    """sum over the leading axes of many rows: BLAS's gemv, not a strided reduction."""
    import symfuse as sf
    x = sf.tensor("x", (64, 40, 96))
    f = sf.function([x], sf.sum(x, axis=(0, 1)), device="cpu")
    assert any("matmul" in k.fused_ops for k in f.kernels) and not any(k.kind == "reduce" for k in f.kernels)
    xv = np.random.default_rng(0).normal(size=(64, 40, 96)).astype(np.float32)
    np.testing.assert_allclose(f(xv), xv.astype(np.float64).sum(axis=(0, 1)), rtol=1e-4, atol=1e-3)
    small = sf.function([x], sf.sum(x, axis=2), device="cpu")            # not leading axes: a reduction
    assert any(k.kind == "reduce" for k in small.kernels)
