"""2-D max and average pooling (NCHW) and their gradient ops
(``max_pool2d_grad``, ``avg_pool2d_grad``). Attributes and output sizes: ``nn.py``."""
from __future__ import annotations

import numpy as np

from ...errors import GradError, ShapeError
from ..core import apply, defop
from ..types import tensor_type
from ._rules import require_float
from .. import build as F
from ..build_nn import pair
from ._windows import _float4, _pad2, _rank4, _scatter_windows, _shape4, _windows


POOL_ATTRS = {"kernel": (2, 2), "stride": None, "padding": (0, 0)}


def _pool_attrs(a):
    a["kernel"] = pair(a["kernel"], "kernel", 1)
    a["stride"] = a["kernel"] if a["stride"] is None else pair(a["stride"], "stride", 1)
    a["padding"] = pair(a["padding"], "padding", 0)
    # Every window must hold at least one real element (max of padding alone is -inf).
    if any(p >= k for p, k in zip(a["padding"], a["kernel"])):
        raise ShapeError(f"padding {a['padding']} must be smaller than kernel {a['kernel']}")


def _pool_out_shape(xs, a):
    n, c, h, w = xs
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"output size {ho}x{wo} is empty for x {list(xs)} with kernel {a['kernel']}, "
                         f"stride {a['stride']}, padding {a['padding']}")
    return (n, c, ho, wo)


def _pool_infer(types, a):
    x = types[0]
    _rank4(x, "x")
    require_float(x, "x")
    _pool_attrs(a)
    return (tensor_type(x.dtype, _pool_out_shape(x.shape, a)),)


def _max_pool_grad_infer(types, a):
    x, y, g = types
    _float4(types, "xyg")
    _pool_attrs(a)
    out = _pool_out_shape(x.shape, a)
    if y.shape != out or g.shape != out:
        raise ShapeError(f"y {y} and g {g} must have the max_pool2d output shape {list(out)} of x {x}")
    return (x,)


def _avg_pool_grad_infer(types, a):
    g = types[0]
    _rank4(g, "g")
    require_float(g, "g")
    _pool_attrs(a)
    xs = a["input_shape"] = _shape4(a["input_shape"], "input_shape")
    if _pool_out_shape(xs, a) != g.shape:
        raise ShapeError(f"g {g} is not the pooling output shape {list(_pool_out_shape(xs, a))} "
                         f"of input_shape {list(xs)}")
    return (tensor_type(g.dtype, xs),)


def _pool_windows(x, a, value):
    out = _pool_out_shape(x.shape, a)[2:]
    return _windows(_pad2(x, a["padding"], value), a["kernel"], a["stride"], (1, 1), out)


def _max_pool_ref(xs, a):
    return _pool_windows(xs[0], a, -np.inf).max(axis=(4, 5))


def _avg_pool_ref(xs, a):
    kh, kw = a["kernel"]
    return _pool_windows(xs[0], a, 0.0).sum(axis=(4, 5)) / xs[0].dtype.type(kh * kw)


def _max_pool_grad_ref(xs, a):
    x, _, g = xs
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
    win = _pool_windows(x, a, -np.inf)
    ho, wo = win.shape[2:4]
    # argmax returns the FIRST maximal element of each row-major window (NaN counts as maximal).
    ki, kj = np.divmod(win.reshape(n, c, ho, wo, kh * kw).argmax(-1), kw)
    hp, wp = h + 2 * ph, w + 2 * pw
    rows = np.arange(ho).reshape(ho, 1) * sh + ki
    cols = np.arange(wo) * sw + kj
    flat = (np.arange(n * c).reshape(n, c, 1, 1) * hp + rows) * wp + cols
    # bincount accumulates where windows overlap
    dxp = np.bincount(flat.ravel(), weights=g.ravel(), minlength=n * c * hp * wp)
    return dxp.astype(x.dtype).reshape(n, c, hp, wp)[:, :, ph:ph + h, pw:pw + w]


def _avg_pool_grad_ref(xs, a):
    g = xs[0]
    kh, kw = a["kernel"]
    gk = g / g.dtype.type(kh * kw)
    cols = np.broadcast_to(gk[:, :, None, None], g.shape[:2] + (kh, kw) + g.shape[2:])
    return _scatter_windows(cols, a["input_shape"], a["kernel"], a["stride"], (1, 1), a["padding"], g.dtype)


def _pool_only(a):
    return {k: a[k] for k in POOL_ATTRS}


def _max_pool_vjp(op, cts):
    return [apply("max_pool2d_grad", [op.inputs[0], op.outputs[0], cts[0]], _pool_only(op.attrs))]


def _max_pool_grad_vjp(op, cts):
    # Zero wrt x and y (piecewise constant); wrt g the adjoint gathers ct at each window's
    # selected element. For disjoint windows that is kh*kw * avg_pool(mask * ct) with the
    # 0/1 selection mask; overlapping windows would need an op of their own.
    x, y, g = op.inputs
    a = _pool_only(op.attrs)
    if any(s < k for s, k in zip(a["stride"], a["kernel"])):
        raise GradError(f"second derivatives through max_pool2d with overlapping windows (kernel "
                        f"{a['kernel']}, stride {a['stride']}) are not supported")
    mask = apply("max_pool2d_grad", [x, y, F.ones_like(g)], a)
    return [None, None, apply("avg_pool2d", [mask * cts[0]], a) * float(a["kernel"][0] * a["kernel"][1])]


def _avg_pool_vjp(op, cts):
    return [apply("avg_pool2d_grad", [cts[0]], {"input_shape": op.inputs[0].shape, **_pool_only(op.attrs)})]


def _avg_pool_grad_vjp(op, cts):
    return [apply("avg_pool2d", [cts[0]], _pool_only(op.attrs))]


def _onnx_pool(op_type, **extra):
    def rule(g, op, names):
        a = op.attrs
        ph, pw = a["padding"]
        return g.node(op_type, names, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                      pads=[ph, pw, ph, pw], **extra)
    return rule


defop("max_pool2d", kind="nn", attrs=dict(POOL_ATTRS), infer=_pool_infer, ref=_max_pool_ref,
      vjp=_max_pool_vjp, onnx=_onnx_pool("MaxPool"), doc="Max over kernel windows; padding is -inf.")
defop("max_pool2d_grad", kind="nn", attrs=dict(POOL_ATTRS), infer=_max_pool_grad_infer,
      ref=_max_pool_grad_ref, vjp=_max_pool_grad_vjp,
      doc="Inputs x, y=max_pool2d(x), g: each window's g goes to the first maximal element of the "
          "window in row-major order; overlapping windows accumulate. Differentiable wrt g only "
          "for disjoint windows (stride >= kernel).")
defop("avg_pool2d", kind="nn", attrs=dict(POOL_ATTRS), infer=_pool_infer, ref=_avg_pool_ref,
      vjp=_avg_pool_vjp, onnx=_onnx_pool("AveragePool", count_include_pad=1),
      doc="Mean over kernel windows; padding counts as zeros (divisor = kernel area).")
def _onnx_avg_pool_grad(g, op, names):
    # a depthwise transposed convolution with the uniform kernel 1 / (kh * kw)
    a, gy = op.attrs, op.inputs[0]
    (kh, kw), (ph, pw), c = a["kernel"], a["padding"], gy.shape[1]
    w = g.const(np.full((c, 1, kh, kw), 1.0 / (kh * kw)), gy.dtype)
    extra = [size - (s * (o - 1) + k - 2 * p)
             for size, s, o, k, p in zip(a["input_shape"][2:], a["stride"], gy.shape[2:], a["kernel"], a["padding"])]
    return g.node("ConvTranspose", [names[0], w], kernel_shape=[kh, kw], strides=list(a["stride"]),
                  pads=[ph, pw, ph, pw], output_padding=extra, group=c)


defop("avg_pool2d_grad", kind="nn", attrs={"input_shape": (), **POOL_ATTRS}, infer=_avg_pool_grad_infer,
      ref=_avg_pool_grad_ref, vjp=_avg_pool_grad_vjp, onnx=_onnx_avg_pool_grad,
      doc="Adjoint of avg_pool2d (linear in g).")
