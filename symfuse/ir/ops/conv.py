"""2-D convolution (NCHW activations, OIHW weights) and its two gradient ops,
``conv2d_grad_input`` and ``conv2d_grad_weight``: ops of their own so that
backends implement them directly; each is linear in each operand and the three
are exact adjoints of one another, so second derivatives work. Attributes and
output sizes: ``nn.py``."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..core import apply, defop
from ..types import tensor_type
from ..build_nn import pair
from ._windows import _float4, _pad2, _scatter_windows, _shape4, _windows


CONV_ATTRS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _conv_attrs(a):
    a["stride"] = pair(a["stride"], "stride", 1)
    a["padding"] = pair(a["padding"], "padding", 0)
    a["dilation"] = pair(a["dilation"], "dilation", 1)
    g = a["groups"]
    if not isinstance(g, int) or isinstance(g, bool) or g < 1:
        raise ShapeError(f"groups must be an int >= 1, got {g!r}")


def _conv_out_shape(xs, ws, a):
    """conv2d output shape for input shape xs and weight shape ws (both validated here)."""
    n, c, h, w = xs
    o, i, kh, kw = ws
    g = a["groups"]
    what = f"x {list(xs)} and w {list(ws)}"
    if c != i * g:
        raise ShapeError(f"input channels {c} != {i} (w in-channels) * {g} (groups) for {what}")
    if o % g:
        raise ShapeError(f"output channels {o} are not divisible by groups={g} for {what}")
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0 or kh == 0 or kw == 0:
        raise ShapeError(f"output size {ho}x{wo} is empty for {what} with stride {a['stride']}, "
                         f"padding {a['padding']}, dilation {a['dilation']}")
    return (n, o, ho, wo)


def _conv_infer(types, a):
    x, w = types
    _float4(types, "xw")
    _conv_attrs(a)
    return (tensor_type(x.dtype, _conv_out_shape(x.shape, w.shape, a)),)


def _conv_grad_input_infer(types, a):
    g, w = types
    _float4(types, "gw")
    _conv_attrs(a)
    xs = a["input_shape"] = _shape4(a["input_shape"], "input_shape")
    if _conv_out_shape(xs, w.shape, a) != g.shape:
        raise ShapeError(f"g {g} is not the conv2d output shape "
                         f"{list(_conv_out_shape(xs, w.shape, a))} of input_shape {list(xs)} and w {w}")
    return (tensor_type(g.dtype, xs),)


def _conv_grad_weight_infer(types, a):
    x, g = types
    _float4(types, "xg")
    _conv_attrs(a)
    ws = a["weight_shape"] = _shape4(a["weight_shape"], "weight_shape")
    if _conv_out_shape(x.shape, ws, a) != g.shape:
        raise ShapeError(f"g {g} is not the conv2d output shape "
                         f"{list(_conv_out_shape(x.shape, ws, a))} of x {x} and weight_shape {list(ws)}")
    return (tensor_type(x.dtype, ws),)


def _im2col(x, ws, out, a):
    """Per-group patch matrices (G, N*Ho*Wo, I*kh*kw) of x for weights of shape ws."""
    o, i, kh, kw = ws
    g, n = a["groups"], x.shape[0]
    win = _windows(_pad2(x, a["padding"]), (kh, kw), a["stride"], a["dilation"], out)
    return win.reshape(n, g, i, *out, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, -1, i * kh * kw)


def _conv_ref(xs, a):
    x, w = xs
    o, i, kh, kw = w.shape
    g = a["groups"]
    n, _, ho, wo = _conv_out_shape(x.shape, w.shape, a)
    # im2col + one batched matmul over groups: BLAS does the work.
    y = _im2col(x, w.shape, (ho, wo), a) @ w.reshape(g, o // g, -1).transpose(0, 2, 1)
    return np.ascontiguousarray(y.reshape(g, n, ho, wo, o // g).transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo))


def _conv_grad_input_ref(xs, a):
    gy, w = xs
    o, i, kh, kw = w.shape
    g = a["groups"]
    n, _, ho, wo = gy.shape
    gm = gy.reshape(n, g, o // g, ho * wo).transpose(1, 0, 3, 2).reshape(g, -1, o // g)
    cols = gm @ w.reshape(g, o // g, i * kh * kw)                     # (G, N*Ho*Wo, I*kh*kw)
    cols = cols.reshape(g, n, ho, wo, i, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3).reshape(n, g * i, kh, kw, ho, wo)
    return _scatter_windows(cols, a["input_shape"], (kh, kw), a["stride"], a["dilation"], a["padding"], gy.dtype)


def _conv_grad_weight_ref(xs, a):
    x, gy = xs
    o, i, kh, kw = a["weight_shape"]
    g = a["groups"]
    n, _, ho, wo = gy.shape
    gm = gy.reshape(n, g, o // g, ho * wo).transpose(1, 2, 0, 3).reshape(g, o // g, -1)
    return (gm @ _im2col(x, a["weight_shape"], (ho, wo), a)).reshape(o, i, kh, kw)


def _conv_only(a):
    return {k: a[k] for k in CONV_ATTRS}


def conv2d_grad_input(g, w, input_shape, attrs):
    return apply("conv2d_grad_input", [g, w], {"input_shape": tuple(input_shape), **_conv_only(attrs)})


def conv2d_grad_weight(x, g, weight_shape, attrs):
    return apply("conv2d_grad_weight", [x, g], {"weight_shape": tuple(weight_shape), **_conv_only(attrs)})


def _conv(x, w, attrs):
    return apply("conv2d", [x, w], _conv_only(attrs))


# y = conv(x, w) is bilinear: <ct, conv(x, w)> = <grad_input(ct, w), x> = <grad_weight(x, ct), w>.
# Each VJP below is that identity read in the other direction, so all three ops are exact
# adjoints of one another (stride leftovers included: their rows simply never enter).
def _conv_vjp(op, cts):
    x, w = op.inputs
    return [conv2d_grad_input(cts[0], w, x.shape, op.attrs),
            conv2d_grad_weight(x, cts[0], w.shape, op.attrs)]


def _conv_grad_input_vjp(op, cts):
    g, w = op.inputs
    return [_conv(cts[0], w, op.attrs), conv2d_grad_weight(cts[0], g, w.shape, op.attrs)]


def _conv_grad_weight_vjp(op, cts):
    x, g = op.inputs
    return [conv2d_grad_input(g, cts[0], x.shape, op.attrs), _conv(x, cts[0], op.attrs)]


def _onnx_conv_attrs(op):
    a = op.attrs
    (ph, pw), kernel = a["padding"], list(op.inputs[1].shape[2:])
    return dict(kernel_shape=kernel, pads=[ph, pw, ph, pw], strides=list(a["stride"]),
                dilations=list(a["dilation"]), group=a["groups"])


def _onnx_conv_grad_input(g, op, names):
    # ONNX's ConvTranspose takes the forward weights as they are (C_in of the transpose = O);
    # output_padding restores the input rows and columns past the last window
    a, gy = op.attrs, op.inputs[0]
    extra = [size - (s * (o - 1) + d * (k - 1) + 1 - 2 * p) for size, s, o, d, k, p in
             zip(a["input_shape"][2:], a["stride"], gy.shape[2:], a["dilation"], op.inputs[1].shape[2:], a["padding"])]
    return g.node("ConvTranspose", names, output_padding=extra, **_onnx_conv_attrs(op))


def _onnx_conv_grad_weight(g, op, names):
    # per group, a convolution of x with g over the batch: x as (C, N, H, W), g as the
    # kernel (O, N, Ho, Wo), stride and dilation trading places; rows past kh x kw cut off
    a, gy = op.attrs, op.inputs[1]
    o, i, kh, kw = a["weight_shape"]
    groups, og = a["groups"], o // a["groups"]
    (ph, pw), (sh, sw), (dh, dw) = a["padding"], a["stride"], a["dilation"]
    xt, gt = (g.node("Transpose", [v], perm=[1, 0, 2, 3])[0] for v in names)
    parts = []
    for k in range(groups):
        xk, gk = xt, gt
        if groups > 1:
            (xk,) = g.node("Slice", [xt, g.ints([k * i]), g.ints([(k + 1) * i]), g.ints([0])])
            (gk,) = g.node("Slice", [gt, g.ints([k * og]), g.ints([(k + 1) * og]), g.ints([0])])
        (w,) = g.node("Conv", [xk, gk], kernel_shape=list(gy.shape[2:]), pads=[ph, pw, ph, pw], strides=[dh, dw],
                      dilations=[sh, sw])
        (w,) = g.node("Slice", [w, g.ints([0, 0]), g.ints([kh, kw]), g.ints([2, 3])])
        parts.append(g.node("Transpose", [w], perm=[1, 0, 2, 3])[0])
    return g.node("Concat", parts, axis=0) if groups > 1 else parts


defop("conv2d", kind="nn", gemm_like=True, attrs=dict(CONV_ATTRS), infer=_conv_infer, ref=_conv_ref, vjp=_conv_vjp,
      onnx=lambda g, op, names: g.node("Conv", names, **_onnx_conv_attrs(op)),
      doc="2-D cross-correlation, x NCHW, w OIHW (I = C / groups).")
defop("conv2d_grad_input", kind="nn", gemm_like=True, attrs={"input_shape": (), **CONV_ATTRS},
      infer=_conv_grad_input_infer, ref=_conv_grad_input_ref, vjp=_conv_grad_input_vjp, onnx=_onnx_conv_grad_input,
      doc="Gradient of conv2d wrt x (a transposed convolution of g with w).")
defop("conv2d_grad_weight", kind="nn", gemm_like=True, attrs={"weight_shape": (), **CONV_ATTRS},
      infer=_conv_grad_weight_infer, ref=_conv_grad_weight_ref, vjp=_conv_grad_weight_vjp, onnx=_onnx_conv_grad_weight,
      doc="Gradient of conv2d wrt w (correlation of x with g).")
