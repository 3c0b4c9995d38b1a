"""Batched matrix product with numpy broadcasting of batch dimensions."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..core import defop
from ..types import broadcast_shapes, tensor_type
from ._rules import same_dtype
from .. import build as F


def _matmul_infer(types, attrs):
    a, b = types
    dt = same_dtype(types)
    if dt.is_bool:
        raise ShapeError(f"matmul of bool tensors {a} @ {b}")
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"operands must have rank >= 2 (use sf.dot for vectors): {a} @ {b}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"contraction dimensions differ: {a} @ {b} ({a.shape[-1]} != {b.shape[-2]})")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if batch is None:
        raise ShapeError(f"batch dimensions do not broadcast: {a} @ {b}")
    return (tensor_type(dt, batch + (a.shape[-2], b.shape[-1])),)


def _swap(x):
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return F.transpose(x, perm)


def _matmul_vjp(op, cts):
    a, b = op.inputs
    g = cts[0]
    return [F.unbroadcast(F.matmul(g, _swap(b)), a.shape),
            F.unbroadcast(F.matmul(_swap(a), g), b.shape)]


defop("matmul", kind="linalg", gemm_like=True, infer=_matmul_infer,
      ref=lambda xs, a: np.matmul(xs[0], xs[1]), vjp=_matmul_vjp, transposable_operands=(0, 1), onnx="MatMul")


# gemm: BLAS's C = alpha * A @ B + beta * C as one op. Not written by users: the
# cpu backend forms it from `z + c * (a @ b)` (rewrite "gemm_accumulate",
# compiler/passes/blas.py) so that an SGD step's weight update is the gradient's
# own BLAS call, accumulating into a copy of the weights.
def _gemm_infer(types, attrs):
    a, b, z = types
    (prod,) = _matmul_infer([a, b], {})
    if not prod.dtype.is_float:
        raise ShapeError(f"gemm needs floating point operands, got {a} @ {b}")
    if z != prod:
        raise ShapeError(f"gemm accumulator {z} is not the type of {a} @ {b} ({prod})")
    attrs["alpha"], attrs["beta"] = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    return (prod,)


def _gemm_ref(xs, attrs):
    a, b, z = xs
    t = z.dtype.type
    return (t(attrs["alpha"]) * np.matmul(a, b) + t(attrs["beta"]) * z).astype(z.dtype)


def _gemm_vjp(op, cts):
    a, b, _ = op.inputs
    g = cts[0]
    alpha, beta = op.attrs["alpha"], op.attrs["beta"]
    ga = g if alpha == 1.0 else g * alpha
    return [F.unbroadcast(F.matmul(ga, _swap(b)), a.shape), F.unbroadcast(F.matmul(_swap(a), ga), b.shape),
            g if beta == 1.0 else g * beta]


def _onnx_gemm(g, op, names):
    a, b, z = op.inputs
    alpha, beta = op.attrs["alpha"], op.attrs["beta"]
    if a.ndim == 2 and b.ndim == 2:
        return g.node("Gemm", names, alpha=alpha, beta=beta)
    (prod,) = g.node("MatMul", names[:2])     # ONNX's Gemm is 2-D only
    if alpha != 1.0:
        (prod,) = g.node("Mul", [prod, g.scalar(alpha, z.dtype)])
    acc = names[2] if beta == 1.0 else g.node("Mul", [names[2], g.scalar(beta, z.dtype)])[0]
    return g.node("Add", [prod, acc])


defop("gemm", kind="linalg", gemm_like=True, infer=_gemm_infer, ref=_gemm_ref, vjp=_gemm_vjp,
      attrs={"alpha": 1.0, "beta": 1.0}, transposable_operands=(0, 1), onnx=_onnx_gemm)
