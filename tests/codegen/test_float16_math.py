"""float16 elementwise math on the C backend: every float op of the op table computes
its _Float16 operands in float (glibc has no _Float16 libm functions, so <tgmath.h>
alone refused them: "no matching function for type-generic call"), and agrees with
the interpreter (numpy's float16 loops) to an ulp or two, special values included.
The CUDA backends have no float16 kernels yet: they refuse such a graph by name."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import symfuse as sf
from symfuse.install_dirs import C_TEMPLATE_DIR
from symfuse.ir.core import OPS, apply
from symfuse.ir.types import float16, tensor_type

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

N = 64
# operands away from poles and branch cuts; the rest are checked on special values below
DOMAIN = {"log": (0.05, 8.0), "sqrt": (0.0, 8.0), "rsqrt": (0.05, 8.0), "log1p": (-0.9, 8.0),
          "reciprocal": (0.1, 4.0), "pow": (0.1, 3.0)}
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 65504.0, -65504.0, 6e-8, 1.0, -1.0, 0.5, -2.5], np.float16)


def _float_ops(arity: int) -> list[str]:
    """The elementwise ops of ``arity`` whose type rule takes float16 operands."""
    out = []
    for name, op in sorted(OPS.items()):
        if op.kind != "elementwise" or op.arity != arity:
            continue
        try:
            op.infer((tensor_type(float16, (N,)),) * arity, dict(op.attrs))
        except sf.DTypeError:
            continue
        out.append(name)
    return out


UNARY, BINARY = _float_ops(1), _float_ops(2)


def _data(name, rng, n=N):
    lo, hi = DOMAIN.get(name, (-4.0, 4.0))
    return rng.uniform(lo, hi, n).astype(np.float16)


def _graph(rng, special: bool):
    """One output per float op: its operands drawn from its domain, or special values
    (unary ops, and binary ones on every pair)."""
    inputs, outputs, arrays, names = [], [], [], []
    for name in UNARY + BINARY:
        arity = OPS[name].arity
        if special:
            vals = [SPECIAL] if arity == 1 else [np.repeat(SPECIAL, len(SPECIAL)), np.tile(SPECIAL, len(SPECIAL))]
        else:
            vals = [_data(name, rng)] if arity == 1 else [_data(name, rng), _data(name, rng)[::-1].copy()]
        xs = [sf.tensor(f"{name}_{k}", v.shape, "float16") for k, v in enumerate(vals)]
        inputs += xs
        arrays += vals
        outputs.append(apply(name, xs))
        names.append(name)
    return inputs, outputs, arrays, names


def _assert_close(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    if want.dtype != np.float16:
        np.testing.assert_array_equal(got, want, err_msg=name)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN in other places")
    ok = ~np.isnan(want)
    g, w = got[ok].astype(np.float64), want[ok].astype(np.float64)
    # float16 rounds once per op either way; the C expression may keep float (or double)
    # between the steps of one op (sigmoid's 1 / (1 + exp(-x))) where numpy rounds each
    with np.errstate(all="ignore"):        # infinities: equal or bad
        ulp = np.spacing(np.abs(want[ok])).astype(np.float64)
        bad = ~((g == w) | (np.abs(g - w) <= 2 * ulp))
    assert not bad.any(), f"{name}: got {got[ok][bad][:5]}, want {want[ok][bad][:5]}"


def test_the_op_table_has_float16_math():
    for name in ("exp", "log", "expm1", "log1p", "sqrt", "erf", "sin", "cos", "softplus", "abs", "pow"):
        assert name in UNARY + BINARY


@pytest.mark.parametrize("special", [False, True], ids=["domain", "special"])
def test_every_float_op_on_float16_matches_the_interpreter_on_cpu(special):
    rng = np.random.default_rng(16)
    inputs, outputs, arrays, names = _graph(rng, special)
    with np.errstate(all="ignore"):
        want = sf.function(inputs, outputs, device="interp")(*arrays)
        got = sf.function(inputs, outputs, device="cpu")(*arrays)
    for name, g, w in zip(names, got, want):
        _assert_close(name, g, w)


def test_onnx_celu_shape_of_expression_compiles_on_float16():
    # the failing case: ONNX Celu (relu(x) + min(expm1(x / alpha) * alpha, 0)) on float16
    x = sf.tensor("x", (5,), "float16")
    y = sf.relu(x) + sf.minimum(sf.expm1(x / 2.0) * 2.0, 0.0)
    a = np.array([-3.0, -0.5, 0.0, 0.25, 4.0], np.float16)
    np.testing.assert_array_equal(sf.function([x], y, device="cpu")(a), sf.function([x], y, device="interp")(a))


def test_abs_of_float16_clears_the_sign_of_zero():
    x = sf.tensor("x", (3,), "float16")
    got = sf.function([x], sf.abs(x), device="cpu")(np.array([-0.0, -2.5, 3.0], np.float16))
    assert got.tolist() == [0.0, 2.5, 3.0] and not np.signbit(got).any()


def test_cuda_refuses_float16_by_name():
    x = sf.tensor("x", (4,), "float16")
    with pytest.raises(NotImplementedError, match="float16"):
        sf.function([x], sf.expm1(x), device="cuda-emu")


# ----------------------------------------------------------------------------- kernel.h itself
TGMATH_NAMES = re.compile(r"^#define (\w+)\((x|x, y)\) SF_TG[12]\(", re.M)


def test_kernel_h_math_names_choose_as_tgmath_does_and_take_float16(tmp_path):
    """Each math name kernel.h redefines after <tgmath.h> compiles for a _Float16
    operand (computed in float) and picks tgmath's type for float, double, long
    double and integers (double): checked at compile time with _Static_assert."""
    with open(f"{C_TEMPLATE_DIR}/kernel.h") as fh:
        names = TGMATH_NAMES.findall(fh.read())
    assert len(names) >= 40 and ("expm1", "x") in names and ("fmax", "x, y") in names
    checks = []
    for fn, params in names:
        call = (lambda a: f"{fn}({a})") if params == "x" else (lambda a: f"{fn}({a}, {a})")
        for arg, want in (("h", "float"), ("f", "float"), ("d", "double"), ("ld", "long double"), ("i", "double")):
            checks.append(f'_Static_assert(_Generic({call(arg)}, {want}: 1, default: 0), "{fn}({arg}) is not {want}");')
        checks.append(f"(void){call('h')};")
    for a, b, want in (("f", "i", "double"), ("h", "f", "float"), ("h", "d", "double")):   # mixed operands
        checks.append(f'_Static_assert(_Generic(pow({a}, {b}), {want}: 1, default: 0), "pow({a}, {b})");')
    src = tmp_path / "tg.c"
    src.write_text("#include <stdint.h>\n#include <math.h>\n#include <tgmath.h>\n#include \"kernel.h\"\n"
                   "void f(_Float16 h, float f, double d, long double ld, int i) {\n  "
                   + "\n  ".join(checks) + "\n}\n")
    r = subprocess.run(["cc", "-std=gnu11", "-fsyntax-only", f"-I{C_TEMPLATE_DIR}", str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
