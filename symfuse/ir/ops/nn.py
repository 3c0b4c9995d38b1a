"""Neural-network ops: 2-D convolution and pooling (NCHW activations, OIHW
weights), the row-wise softmax family, gather/scatter along an axis, one-hot.

Convolution and pooling gradients are ops of their own (``conv2d_grad_input``,
``conv2d_grad_weight``, ``max_pool2d_grad``, ``avg_pool2d_grad``) so backends
can implement them directly; the conv gradient ops are linear in each operand
and have exact VJPs in terms of each other, so second derivatives work.

Spatial attributes are canonicalised to pairs ``(h, w)``; padding is symmetric
per spatial dimension. Output size per dimension is
``(size + 2*pad - dilation*(k-1) - 1) // stride + 1``; input rows/columns past
the last window ("stride leftovers") do not contribute and get zero gradient.

One family per module, registered in this order: ``conv.py`` (conv2d and its
gradient ops), ``pool.py``, ``softmax.py``; gather/scatter and one-hot here.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..core import apply, defop
from ..types import as_dtype, tensor_type
from ._rules import norm_axis, require_float, require_int
from .. import build_nn as NN
from . import conv, pool, softmax  # noqa: F401  (registered before the ops below)
from .conv import CONV_ATTRS, conv2d_grad_input, conv2d_grad_weight  # noqa: F401  (this module's names)
from .pool import POOL_ATTRS  # noqa: F401


def _clamp_index(i, n):
    """Index semantics shared by take and take_grad: a negative index counts from the end
    (i + n), then every index is clamped into [0, n-1]. Out-of-range indices therefore
    never fault on any backend; they read/write the first or last slice."""
    if i.dtype.kind == "u":  # never negative; clamp in the unsigned type (no wrap to int64)
        return np.minimum(i, n - 1).astype(np.intp)
    i = i.astype(np.int64)
    return np.clip(np.where(i < 0, i + n, i), 0, n - 1)


def _take_infer(types, a):
    x, idx = types
    require_int(idx, "indices")
    if x.ndim == 0:
        raise ShapeError(f"cannot take from a 0-d tensor {x}")
    ax = a["axis"] = norm_axis(a["axis"], x.ndim, x)
    if x.shape[ax] == 0 and idx.size:
        raise ShapeError(f"cannot take indices {idx} from the empty axis {ax} of {x}")
    return (tensor_type(x.dtype, x.shape[:ax] + idx.shape + x.shape[ax + 1:]),)


def _take_grad_infer(types, a):
    g, idx = types
    require_int(idx, "indices")
    require_float(g, "g")
    n = a["size"]
    if not isinstance(n, int) or n < 1:
        raise ShapeError(f"size must be an int >= 1, got {n!r}")
    ax = a["axis"] = norm_axis(a["axis"], g.ndim - idx.ndim + 1, f"the result of scattering {g} by {idx}")
    if g.shape[ax:ax + idx.ndim] != idx.shape:
        raise ShapeError(f"g {g} does not hold indices {idx} at axis {ax}")
    return (tensor_type(g.dtype, g.shape[:ax] + (n,) + g.shape[ax + idx.ndim:]),)


def _take_ref(xs, a):
    x, i = xs
    return np.take(x, _clamp_index(i, x.shape[a["axis"]]), axis=a["axis"])


def _take_grad_ref(xs, a):
    g, i = xs
    ax, n = a["axis"], a["size"]
    pre, post = g.shape[:ax], g.shape[ax + i.ndim:]
    out = np.zeros((int(np.prod(pre)), n, int(np.prod(post))), g.dtype)
    np.add.at(out, (slice(None), _clamp_index(i, n).ravel()), g.reshape(out.shape[0], i.size, out.shape[2]))
    return out.reshape(pre + (n,) + post)


def _take_vjp(op, cts):
    x, idx = op.inputs
    ax = op.attrs["axis"]
    return [apply("take_grad", [cts[0], idx], {"axis": ax, "size": x.shape[ax]}), None]


def _onnx_index(g, idx, names):
    """An index operand as int32/int64, the only index types of ONNX."""
    if idx.dtype.name in ("int32", "int64"):
        return names[0], idx.dtype
    return g.node("Cast", names, to=g.dtype("int64"))[0], "int64"


def _onnx_clamped(g, idx, name, n):
    """``_clamp_index`` in the graph (ONNX's Gather and ScatterND take indices in [-n, n-1]
    only); a constant index is clamped here."""
    fixed = g.constant_value(idx)
    if fixed is not None:
        return g.const(_clamp_index(fixed, n).astype(np.int64))
    i, dt = _onnx_index(g, idx, [name])
    (shifted,) = g.node("Add", [i, g.scalar(n, dt)])
    (i,) = g.node("Where", g.node("Less", [i, g.scalar(0, dt)]) + [shifted, i])
    return g.node("Max", g.node("Min", [i, g.scalar(n - 1, dt)]) + [g.scalar(0, dt)])[0]


def _onnx_take(g, op, names):
    x, idx = op.inputs
    ax = op.attrs["axis"]
    return g.node("Gather", [names[0], _onnx_clamped(g, idx, names[1], x.shape[ax])], axis=ax)


def _onnx_take_grad(g, op, names):
    # a ScatterND adding the (pre, m, post) slices of g into (n, pre, post) zeros at the indices
    gy, idx = op.inputs
    ax, n = op.attrs["axis"], op.attrs["size"]
    pre, post = int(np.prod(gy.shape[:ax])), int(np.prod(gy.shape[ax + idx.ndim:]))
    (rows,) = g.node("Transpose", g.node("Reshape", [names[0], g.ints([pre, idx.size, post])]), perm=[1, 0, 2])
    (at,) = g.node("Reshape", [_onnx_clamped(g, idx, names[1], n), g.ints([idx.size, 1])])
    (at,) = g.node("Cast", [at], to=g.dtype("int64"))
    (zeros,) = g.node("Expand", [g.scalar(0, gy.dtype), g.ints([n, pre, post])])
    (acc,) = g.node("ScatterND", [zeros, at, rows], reduction="add")
    (acc,) = g.node("Transpose", [acc], perm=[1, 0, 2])
    return g.node("Reshape", [acc, g.ints(op.outputs[0].shape)])


def _onnx_one_hot(g, op, names):
    # by comparison: ONNX's OneHot counts a negative index from the end, symfuse gives a zero row
    i, dt = _onnx_index(g, op.inputs[0], names)
    (col,) = g.node("Unsqueeze", [i, g.ints([-1])])
    (hit,) = g.node("Equal", [col, g.const(np.arange(op.attrs["depth"]), dt)])
    return g.node("Cast", [hit], to=g.dtype(op.attrs["dtype"]))


defop("take", kind="nn", attrs={"axis": 0}, infer=_take_infer, ref=_take_ref, vjp=_take_vjp, onnx=_onnx_take,
      doc="Gather along axis: out shape x.shape[:axis] + idx.shape + x.shape[axis+1:]. "
          "Negative indices count from the end, then indices are clamped into [0, n-1].")
defop("take_grad", kind="nn", attrs={"axis": 0, "size": 1}, infer=_take_grad_infer, ref=_take_grad_ref,
      vjp=lambda op, cts: [NN.take(cts[0], op.inputs[1], op.attrs["axis"]), None], onnx=_onnx_take_grad,
      doc="Scatter-add of g into a zero tensor with `size` slices along axis (adjoint of take).")


def _one_hot_infer(types, a):
    (idx,) = types
    require_int(idx, "indices")
    d = a["depth"]
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ShapeError(f"depth must be an int >= 1, got {d!r}")
    a["dtype"] = as_dtype(a["dtype"])
    return (tensor_type(a["dtype"], idx.shape + (d,)),)


def _one_hot_ref(xs, a):
    i, d = xs[0], a["depth"]
    ok = (i >= 0) & (i < d)                         # out of range (negative too): all-zero row
    j = np.where(ok, i, 0).astype(np.int64)
    return ((j[..., None] == np.arange(d)) & ok[..., None]).astype(a["dtype"].np)


defop("one_hot", kind="nn", attrs={"depth": 1, "dtype": "float32"}, infer=_one_hot_infer, ref=_one_hot_ref,
      differentiable=False, onnx=_onnx_one_hot,
      doc="out[..., k] = (idx == k); an index outside [0, depth) gives an all-zero row.")

__all__ = ["conv2d_grad_input", "conv2d_grad_weight"]
