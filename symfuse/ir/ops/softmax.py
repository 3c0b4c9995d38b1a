"""The row-wise softmax family: softmax, log_softmax, logsumexp and
softmax_xent (cross-entropy of logits against target probabilities, with a
stable gradient)."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..core import defop
from ..types import tensor_type
from ._rules import norm_axis, reduced_shape, require_float, same_dtype
from .. import build as F
from .. import build_nn as NN


def _row_axis(t, a):
    require_float(t, "x")
    ax = a["axis"] = norm_axis(a["axis"], t.ndim, t)
    if t.shape[ax] == 0:
        raise ShapeError(f"axis {ax} of {t} is empty")
    return ax


def _rowwise_infer(types, a):
    _row_axis(types[0], a)
    return (types[0],)


def _lse_infer(types, a):
    t = types[0]
    ax = _row_axis(t, a)
    a["keepdims"] = bool(a["keepdims"])
    return (tensor_type(t.dtype, reduced_shape(t.shape, (ax,), a["keepdims"])),)


def _shifted(x, ax):
    """x - max(x) along ax; an all-infinite row is shifted by 0 so it does not turn into NaN."""
    m = x.max(axis=ax, keepdims=True)
    return x - np.where(np.isfinite(m), m, 0).astype(x.dtype), m


def _softmax_ref(xs, a):
    e = np.exp(_shifted(xs[0], a["axis"])[0])
    return e / e.sum(axis=a["axis"], keepdims=True)


def _log_softmax(x, ax):
    z = _shifted(x, ax)[0]
    return z - np.log(np.exp(z).sum(axis=ax, keepdims=True))


def _lse_ref(xs, a):
    x, ax = xs[0], a["axis"]
    z, m = _shifted(x, ax)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    y = m + np.log(np.exp(z).sum(axis=ax, keepdims=True))
    return y if a["keepdims"] else y.squeeze(ax)


def _keep(v, x, ax):
    """Reshape a value reduced over ``ax`` to keepdims form so it broadcasts against x."""
    return F.reshape(v, reduced_shape(x.shape, (ax,), True))


def _softmax_vjp(op, cts):
    y, g, ax = op.outputs[0], cts[0], op.attrs["axis"]
    return [y * (g - F.sum(g * y, ax, keepdims=True))]


def _log_softmax_vjp(op, cts):
    y, g, ax = op.outputs[0], cts[0], op.attrs["axis"]
    return [g - F.exp(y) * F.sum(g, ax, keepdims=True)]


def _lse_vjp(op, cts):
    x, ax = op.inputs[0], op.attrs["axis"]
    return [_keep(cts[0], x, ax) * F.exp(x - _keep(op.outputs[0], x, ax))]


def _xent_infer(types, a):
    x, t = types
    if x.shape != t.shape:
        raise ShapeError(f"logits {x} and targets {t} must have the same shape")
    same_dtype(types)
    ax = _row_axis(x, a)
    return (tensor_type(x.dtype, reduced_shape(x.shape, (ax,), False)),)


def _xent_ref(xs, a):
    x, t = xs
    return -(t * _log_softmax(x, a["axis"])).sum(axis=a["axis"])


def _xent_vjp(op, cts):
    x, t = op.inputs
    ax = op.attrs["axis"]
    g = _keep(cts[0], x, ax)
    return [g * (NN.softmax(x, ax) * F.sum(t, ax, keepdims=True) - t), -(g * NN.log_softmax(x, ax))]


def _onnx_xent(g, op, names):
    (logp,) = g.node("LogSoftmax", names[:1], axis=op.attrs["axis"])
    (tl,) = g.node("Mul", [names[1], logp])
    return g.node("Neg", g.reduce("ReduceSum", tl, [op.attrs["axis"]], False))


defop("softmax", kind="rowwise", attrs={"axis": -1}, infer=_rowwise_infer, ref=_softmax_ref,
      vjp=_softmax_vjp, onnx=lambda g, op, names: g.node("Softmax", names, axis=op.attrs["axis"]))
defop("log_softmax", kind="rowwise", attrs={"axis": -1}, infer=_rowwise_infer,
      ref=lambda xs, a: _log_softmax(xs[0], a["axis"]), vjp=_log_softmax_vjp,
      onnx=lambda g, op, names: g.node("LogSoftmax", names, axis=op.attrs["axis"]))
defop("logsumexp", kind="rowwise", attrs={"axis": -1, "keepdims": False}, infer=_lse_infer,
      ref=_lse_ref, vjp=_lse_vjp,
      onnx=lambda g, op, names: g.reduce("ReduceLogSumExp", names[0], [op.attrs["axis"]], op.attrs["keepdims"]))
defop("softmax_xent", kind="rowwise", attrs={"axis": -1}, infer=_xent_infer, ref=_xent_ref,
      vjp=_xent_vjp, onnx=_onnx_xent, doc="-sum(t * log_softmax(x), axis): cross-entropy of logits x against "
                         "target probabilities t (same shape).")


# =========================================================================== take / one_hot
