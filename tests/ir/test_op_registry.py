"""Every registered op is complete: a numpy reference, a VJP or ``differentiable=False``,
and a lowering on every compiled target (cpu: C, cuda and cuda-emu: CUDA), derived
from its fusion class and the library tables -- or an entry in ``NO_LOWERING`` below
saying why not. tests/ir/test_op_conformance.py checks that these pieces agree."""
from __future__ import annotations


import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen.c_control import CONTROL as C_CONTROL
from symfuse.runtime.cuda_schedule import ScheduleRunner
from symfuse.codegen.c_library import LIBRARY
from symfuse.codegen.cuda_library import CUDA_LIBRARY
from symfuse.codegen.index import VIEW_MAPS
from symfuse.ir.core import FUSION_CLASSES, OPS, OpDef, apply
from symfuse.ir.types import as_dtype

TARGETS = ("cpu", "cuda")
# op -> why it has no lowering on any compiled target
NO_LOWERING = {
    # sf.grad records it; the differentiate pass (compiler/autodiff.py) replaces it by the
    # gradient graph before fusion and codegen, on every backend
    "grad": "expanded by the differentiate pass before codegen",
}
# (op, target) -> why it has no lowering on that target only. Empty: gemm, which only the
# cpu target's BLAS rewrite forms, also lowers on cuda (it can come from IR text).
TARGET_ONLY: dict[tuple[str, str], str] = {}

OP_NAMES = sorted(OPS)


def lowering(opdef, target) -> str | None:
    """How ``target`` lowers the op, from its fusion class (None: it cannot)."""
    library = LIBRARY if target == "cpu" else CUDA_LIBRARY
    if opdef.fusion == "pointwise":          # one scalar expression, valid C and CUDA C++
        return "c_expr" if isinstance(opdef.c_expr, str) and opdef.c_expr else None
    if opdef.fusion == "view":               # index arithmetic on a load; a copy when standalone
        return "view map + library copy" if opdef.name in VIEW_MAPS and opdef.name in library else None
    if opdef.fusion == "reduce":             # a reduction loop (C) or warp/block tree (CUDA)
        r = opdef.reduction
        return "reduction" if isinstance(r, tuple) and len(r) == 2 and all(isinstance(x, str) for x in r) else None
    if opdef.fusion == "constant":           # static data placed by compiler/layout.py
        return "static data"
    if opdef.fusion == "control":            # regions: the target's loop driver runs them
        runs = opdef.name in C_CONTROL if target == "cpu" else hasattr(ScheduleRunner, "_" + opdef.name)
        return "loop driver" if runs else None
    assert opdef.fusion == "library", opdef.fusion
    return "library" if opdef.name in library else None


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_has_a_reference_and_a_type_rule(name):
    op = OPS[name]
    assert callable(op.ref), f"{name}: no numpy reference"
    assert callable(op.infer), f"{name}: no type rule"
    assert op.fusion in FUSION_CLASSES
    assert all(k.isidentifier() for k in op.attrs)


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_has_a_vjp_or_says_it_has_no_gradient(name):
    op = OPS[name]
    if op.differentiable:
        assert callable(op.vjp), f"{name}: differentiable but no vjp"
    else:
        assert op.vjp is None, f"{name}: differentiable=False but it has a vjp"


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("target", TARGETS)
def test_op_lowers_on_every_compiled_target(name, target):
    if name in NO_LOWERING or (name, target) in TARGET_ONLY:
        assert lowering(OPS[name], target) is None, f"{name} lowers on {target} now: drop its exclusion"
        return
    assert lowering(OPS[name], target) is not None, (
        f"{name} ({OPS[name].fusion}) has no {target} lowering: add it to the library table, "
        f"or to NO_LOWERING / TARGET_ONLY in this file with the reason")


def test_exclusions_and_library_tables_name_registered_ops():
    assert set(NO_LOWERING) <= set(OPS)
    assert {n for n, _ in TARGET_ONLY} <= set(OPS) and {t for _, t in TARGET_ONLY} <= set(TARGETS)
    assert set(LIBRARY) <= set(OPS), sorted(set(LIBRARY) - set(OPS))
    assert set(VIEW_MAPS) <= set(OPS), sorted(set(VIEW_MAPS) - set(OPS))
    # the CUDA library covers exactly the C library's ops
    assert set(CUDA_LIBRARY) == set(LIBRARY), sorted(set(CUDA_LIBRARY) ^ set(LIBRARY))


# --------------------------------------------------------------------------- the differentiable field
def _infer(types, attrs):
    return (types[0],)


def _ref(xs, attrs):
    return xs[0]


def test_a_builtin_op_without_a_vjp_must_say_it_has_no_gradient():
    def infer(types, attrs):
        return (types[0],)
    infer.__module__ = "symfuse.ir.ops.example"          # as if in a table of symfuse's own
    with pytest.raises(ValueError, match=r"'noop' has no vjp.*differentiable=False"):
        OpDef("noop", infer=infer, ref=_ref, kind="elementwise", arity=1, c_expr="{0}")
    op = OpDef("noop", infer=infer, ref=_ref, kind="elementwise", arity=1, c_expr="{0}", differentiable=False)
    assert not op.differentiable and op.vjp is None


def test_an_op_without_a_vjp_must_say_it_is_not_differentiable():
    with pytest.raises(ValueError, match="differentiable=False"):
        OpDef("user_noop", infer=_infer, ref=_ref, kind="elementwise", arity=1, c_expr="{0}")
    OpDef("user_noop", infer=_infer, ref=_ref, kind="elementwise", arity=1, c_expr="{0}", differentiable=False)
    OpDef("user_noop", infer=_infer, ref=_ref, kind="elementwise", arity=1, c_expr="{0}",
          vjp=lambda op, cts: [cts[0]])


def test_non_differentiable_ops_have_zero_gradient():
    """reverse_mode treats an op without a VJP as zero gradient (floor, a comparison,
    a random draw)."""
    x = sf.tensor("x", (4,), "float64")
    seed = sf.tensor("s", (), "int32")
    u = apply("random_uniform", [seed], {"shape": (4,), "dtype": "float64"})
    cost = (sf.floor(x) * 3 + sf.where(x > 0.5, x, x * 2) + u * x + x).sum()
    g = sf.function([x, seed], sf.grad(cost, x), device="interp")
    xv = np.array([0.25, 1.5, -2.75, 0.75])
    got = g(xv, np.int32(3))
    uv = OPS["random_uniform"].ref([np.int32(3)], {"shape": (4,), "dtype": as_dtype("float64"), "salt": 0})
    np.testing.assert_allclose(got, np.where(xv > 0.5, 1.0, 2.0) + uv + 1.0, rtol=1e-12)
