"""Neural-network layers: Conv, ConvTranspose, Softmax, LogSoftmax, Hardmax, Dropout
(inference), LRN.

Convolutions are two-dimensional in symfuse: a 1-D one runs as 2-D over a unit
height; a 3-D one is refused. Asymmetric padding is an explicit pad before an
unpadded convolution. ConvTranspose is symfuse's ``conv2d_grad_input`` (the
transpose of a convolution) at full size, then cropped or zero-extended to the
output ONNX asks for.
"""
from __future__ import annotations

import math

from ...frontend import api as F
from ...frontend import nn_api as NN
from ...ir.ops.conv import conv2d_grad_input
from ..registry import converter
from .pool import as_2d, int_list, lift_window, pad_or_crop, window


def _conv_operands(n):
    x, w = n.value(0), n.value(1)
    if x.ndim != w.ndim or x.ndim < 3:
        n.fail(f"input {x.type} and weight {w.type} must both be (N, C, spatial...) of one rank")
    if x.ndim > 4:
        n.unsupported(f"{x.ndim - 2}-D convolution", f"{n.op_type}: {x.ndim - 2}-D")
    if not x.dtype.is_float:
        n.unsupported(f"dtype {x.dtype}", f"{n.op_type}: integer input")
    kernel = n.attr("kernel_shape")
    if kernel is not None and [int(k) for k in kernel] != list(w.shape[2:]):
        n.fail(f"kernel_shape {list(kernel)} disagrees with weight {w.type}")
    group = n.attr("group", 1)
    if not isinstance(group, int) or group < 1:
        n.fail(f"group={group!r} must be an int >= 1")
    return x, w, group


def _bias(n, y, index: int):
    if not n.has(index):
        return y
    b = n.value(index)
    if b.shape != (y.shape[1],):
        n.fail(f"bias {b.type} must have one value per output channel ({y.shape[1]})")
    return y + F.reshape(b, (1, -1) + (1,) * (y.ndim - 2))


@converter("Conv", since=11)
def conv(n):
    x, w, group = _conv_operands(n)
    win = window(n, x.shape[2:], list(w.shape[2:]))
    one_d = x.ndim == 3
    if one_d:
        x, w, win = as_2d(x), as_2d(w), lift_window(win)
    if x.shape[1] != w.shape[1] * group:
        n.fail(f"input channels {x.shape[1]} != weight in-channels {w.shape[1]} * group {group}")
    if win.lo == win.hi:
        padding = tuple(win.lo)
    else:
        x, padding = pad_or_crop(x, [0, 0] + win.lo, [0, 0] + win.hi), 0
    y = NN.conv2d(x, w, tuple(win.stride), padding, tuple(win.dilation), group)
    if one_d:
        y = F.reshape(y, y.shape[:2] + y.shape[3:])
    return _bias(n, y, 2)


def _transpose_pads(n, in_sizes, kernel, stride, dilation, out_pad):
    """(pads before, pads after) of a ConvTranspose, from pads or output_shape/auto_pad."""
    r = len(in_sizes)
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for i, s, op, k, d in zip(in_sizes, stride, out_pad, kernel, dilation)]
    auto = n.attr("auto_pad", "NOTSET")
    out_shape = n.attr("output_shape")
    if out_shape is not None:
        out_shape = [int(v) for v in out_shape][-r:]
        if len(out_shape) != r:
            n.fail(f"output_shape {list(n.attr('output_shape'))} does not give {r} spatial sizes")
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [i * s for i, s in zip(in_sizes, stride)]
    if out_shape is None:
        pads = int_list(n, "pads", [0] * (2 * r), 2 * r, 0)
        return pads[:r], pads[r:]
    total = [f - o for f, o in zip(full, out_shape)]
    if auto == "SAME_UPPER":
        lo = [t // 2 for t in total]
    else:
        lo = [t - t // 2 for t in total]
    return lo, [t - b for t, b in zip(total, lo)]


@converter("ConvTranspose", since=11)
def conv_transpose(n):
    x, w, group = _conv_operands(n)
    r = x.ndim - 2
    if x.shape[1] != w.shape[0]:
        n.fail(f"input channels {x.shape[1]} != weight's first axis {w.shape[0]}")
    if w.shape[0] % group:
        n.fail(f"weight's first axis {w.shape[0]} is not divisible by group {group}")
    kernel = list(w.shape[2:])
    stride = int_list(n, "strides", [1] * r, r, 1)
    dilation = int_list(n, "dilations", [1] * r, r, 1)
    out_pad = int_list(n, "output_padding", [0] * r, r, 0)
    lo, hi = _transpose_pads(n, x.shape[2:], kernel, stride, dilation, out_pad)
    if r == 1:
        x, w = as_2d(x), as_2d(w)
        kernel, stride, dilation = [1] + kernel, [1] + stride, [1] + dilation
        out_pad, lo, hi = [0] + out_pad, [0] + lo, [0] + hi
    # the transposed convolution of x at full size: every input reaches every output it touches
    full = [s * (i - 1) + (k - 1) * d + 1 for i, s, k, d in zip(x.shape[2:], stride, kernel, dilation)]
    # conv2d_grad_input's shape rule admits up to stride - 1 trailing rows that no window reads
    slack = [min(p, s - 1) for p, s in zip(out_pad, stride)]
    shape = (x.shape[0], w.shape[1] * group, *(f + e for f, e in zip(full, slack)))
    attrs = {"stride": tuple(stride), "padding": (0, 0), "dilation": tuple(dilation), "groups": group}
    y = conv2d_grad_input(x, w, shape, attrs)
    y = pad_or_crop(y, [0, 0] + [-v for v in lo],
                    [0, 0] + [p - e - v for p, e, v in zip(out_pad, slack, hi)])
    if r == 1:
        y = F.reshape(y, y.shape[:2] + y.shape[3:])
    return _bias(n, y, 2)


def _axis(n, x, default: int) -> int:
    a = n.attr("axis", default)
    if not -x.ndim <= a < max(x.ndim, 1):
        n.fail(f"axis {a} is out of range for {x.type}")
    return a % x.ndim if x.ndim else 0


def _softmax_like(fn):
    def convert(n):
        x = n.value(0)
        return fn(x, _axis(n, x, -1))
    return convert


def _hardmax(x, axis: int):
    hot = NN.one_hot(F.argmax(x, axis), x.shape[axis], x.dtype)
    last = x.ndim - 1
    return F.transpose(hot, list(range(axis)) + [last] + list(range(axis, last)))


converter("Softmax", since=13)(_softmax_like(NN.softmax))
converter("LogSoftmax", since=13)(_softmax_like(NN.log_softmax))
converter("Hardmax", since=13)(_softmax_like(_hardmax))


@converter("Dropout", since=12)
def dropout(n):
    x = n.value(0)
    # a zero ratio keeps everything in either mode; otherwise the mode must be known
    zero_ratio = n.has(1) and n.is_static(1) and float(n.static(1).reshape(-1)[0]) == 0.0
    if not zero_ratio and n.has(2) and bool(n.static(2).reshape(-1)[0]):
        ratio = float(n.static(1).reshape(-1)[0]) if n.has(1) else 0.5
        if ratio != 0.0:
            n.unsupported("training_mode=true with a non-zero ratio (random masks)", "Dropout: training mode")
    mask = F.full(x.shape, True, "bool") if n.wants(1) else None
    return [x, mask]


@converter("LRN", since=13)
def lrn(n):
    x = n.value(0)
    size = n.attr("size")
    if not isinstance(size, int) or size < 1:
        n.fail(f"attribute size={size!r} must be an int >= 1")
    if x.ndim < 3:
        n.fail(f"input {x.type} must be (N, C, spatial...)")
    alpha, beta, bias = n.attr("alpha", 1e-4), n.attr("beta", 0.75), n.attr("bias", 1.0)
    # the sum of squares over a window of channels: a (size x 1) sum-pool over (C, rest)
    sq = F.reshape(F.square(x), (x.shape[0], 1, x.shape[1], -1))
    sq = F.pad_general(sq, (0, 0, (size - 1) // 2, 0), (0, 0, math.ceil((size - 1) / 2), 0))
    sums = F.reshape(NN.avg_pool2d(sq, (size, 1), 1, 0) * float(size), x.shape)
    return x / F.power(sums * (alpha / size) + bias, beta)
