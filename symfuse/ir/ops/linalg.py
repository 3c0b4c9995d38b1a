"""Batched matrix product with numpy broadcasting of batch dimensions."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..core import defop
from ..types import broadcast_shapes, tensor_type
from ._rules import same_dtype
from ...frontend import api as F


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


defop("matmul", kind="linalg", infer=_matmul_infer,
      ref=lambda xs, a: np.matmul(xs[0], xs[1]), vjp=_matmul_vjp)
