"""Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool.

The window geometry of ONNX (pads, auto_pad, ceil_mode, dilations) is resolved at
import time into explicit per-axis padding (``Window``), which Conv and
ConvTranspose (``nn.py``) share. Two-dimensional undilated windows use symfuse's
pooling ops; other windows reduce one spatial axis at a time over strided slices
(a box max or sum is separable). Average pooling divides a window sum by the count
of the positions ONNX counts (a constant known at import time), which covers
count_include_pad, ceil_mode and asymmetric pads alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...frontend import api as F
from ...frontend import nn_api as NN
from ..registry import converter

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass
class Window:
    """Per spatial axis: kernel, stride, dilation, padding before and after, and the
    output size (the padded extent may exceed what the windows read)."""
    kernel: list
    stride: list
    dilation: list
    lo: list
    hi: list
    out: list

    @property
    def extent(self) -> list:
        """Padded length each axis needs: the last window's end."""
        return [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(self.out, self.stride, self.kernel, self.dilation)]


def int_list(n, name: str, default: list, length: int, lo: int) -> list:
    got = n.attr(name)
    if got is None:
        return list(default)
    got = [int(v) for v in got]
    if len(got) != length or any(v < lo for v in got):
        n.fail(f"attribute {name}={got} must hold {length} ints >= {lo}")
    return got


def window(n, in_sizes, kernel, ceil_mode: bool = False) -> Window:
    """The window of node ``n`` over spatial sizes ``in_sizes``."""
    r = len(in_sizes)
    if len(kernel) != r or min(kernel, default=1) < 1:
        n.fail(f"kernel shape {list(kernel)} does not fit {r} spatial axes")
    stride = int_list(n, "strides", [1] * r, r, 1)
    dilation = int_list(n, "dilations", [1] * r, r, 1)
    pads = int_list(n, "pads", [0] * (2 * r), 2 * r, 0)
    auto = n.attr("auto_pad", "NOTSET")
    if auto not in AUTO_PADS:
        n.fail(f"auto_pad={auto!r} is not one of {', '.join(AUTO_PADS)}")
    lo, hi, out = [], [], []
    for i, size in enumerate(in_sizes):
        k, s, d = kernel[i], stride[i], dilation[i]
        eff = (k - 1) * d + 1
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // s)
            total = max(0, (o - 1) * s + eff - size)
            before = total // 2 if auto == "SAME_UPPER" else total - total // 2
            lo.append(before), hi.append(total - before), out.append(o)
            continue
        b, e = (0, 0) if auto == "VALID" else (pads[i], pads[i + r])
        span = size + b + e - eff
        if span < 0:
            n.fail(f"the window ({eff} wide with dilation) is larger than the padded input ({size + b + e}) "
                   f"on spatial axis {i}")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + b:     # a window starting in the end padding is dropped
            o -= 1
        lo.append(b), hi.append(e), out.append(o)
    return Window(list(kernel), stride, dilation, lo, hi, out)


def pad_or_crop(x, lo, hi, value=0.0):
    """Pad each axis by lo/hi (a negative amount crops)."""
    x = F.pad_general(x, [max(0, v) for v in lo], [max(0, v) for v in hi], None, value)
    if min(list(lo) + list(hi), default=0) >= 0:
        return x
    start = [max(0, -v) for v in lo]
    stop = [d - max(0, -v) for d, v in zip(x.shape, hi)]
    return F.slice_general(x, start, stop, [1] * x.ndim)


def pad_spatial(x, win: Window, value=0.0):
    """x padded (or cropped at the end) to exactly the extent the windows read."""
    hi = [e - s - b for e, s, b in zip(win.extent, x.shape[2:], win.lo)]
    return pad_or_crop(x, [0, 0] + win.lo, [0, 0] + hi, value)


def as_2d(x):
    """(N, C, L) as (N, C, 1, L): one-dimensional windows run as two-dimensional ones."""
    return F.reshape(x, x.shape[:2] + (1,) + x.shape[2:])


def lift_window(win: Window) -> Window:
    return Window([1] + win.kernel, [1] + win.stride, [1] + win.dilation, [0] + win.lo, [0] + win.hi,
                  [1] + win.out)


def _axis_taps(x, axis: int, k: int, s: int, d: int, out: int, combine):
    """Combine the k strided slices of x along ``axis`` that make up its windows."""
    acc = None
    for j in range(k):
        start = [0] * x.ndim
        stop = list(x.shape)
        step = [1] * x.ndim
        start[axis], stop[axis], step[axis] = j * d, j * d + (out - 1) * s + 1, s
        tap = F.slice_general(x, start, stop, step)
        acc = tap if acc is None else combine(acc, tap)
    return acc


def window_reduce(x, win: Window, kind: str):
    """Max or sum over every window of an already padded x (N, C, *spatial)."""
    if len(win.kernel) == 2 and win.dilation == [1, 1]:
        op = NN.max_pool2d if kind == "max" else NN.avg_pool2d
        y = op(x, tuple(win.kernel), tuple(win.stride), 0)
        return y if kind == "max" else y * float(win.kernel[0] * win.kernel[1])
    combine = F.maximum if kind == "max" else F.add
    for i, (k, s, d, o) in enumerate(zip(win.kernel, win.stride, win.dilation, win.out)):
        x = _axis_taps(x, 2 + i, k, s, d, o, combine)
    return x


def _counts(win: Window, in_sizes, include_pad: bool) -> np.ndarray:
    """How many positions of each window ONNX counts in an average (1, 1, *out)."""
    total = np.ones((1, 1), dtype=np.float64)
    for size, k, s, d, b, e, o in zip(in_sizes, win.kernel, win.stride, win.dilation, win.lo, win.hi, win.out):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - b
        first, end = (-b, size + e) if include_pad else (0, size)
        c = ((pos >= first) & (pos < end)).sum(axis=1).astype(np.float64)
        total = total[..., None] * c
    return total


def _kernel(n, x) -> list:
    k = n.attr("kernel_shape")
    if k is None:
        n.fail("attribute kernel_shape is required")
    k = [int(v) for v in k]
    if len(k) != x.ndim - 2:
        n.fail(f"kernel_shape {k} does not fit input {x.type} ({x.ndim - 2} spatial axes)")
    return k


def _spatial_input(n):
    x = n.value(0)
    if x.ndim < 3:
        n.fail(f"input {x.type} must be (N, C, spatial...)")
    if not x.dtype.is_float:
        n.unsupported(f"dtype {x.dtype}", f"{n.op_type}: integer input")
    return x


def _own_padding(win: Window, sizes) -> bool:
    """Whether max_pool2d's symmetric padding gives exactly these windows."""
    if len(win.kernel) != 2 or win.dilation != [1, 1] or win.lo != win.hi:
        return False
    return all(b < k and (size + 2 * b - k) // s + 1 == o
               for size, k, s, b, o in zip(sizes, win.kernel, win.stride, win.lo, win.out))


def pooled(n, kind: str, pad_value: float, transform=None):
    """The windowed max or sum of ``transform(x)`` with its Window and input sizes."""
    x = _spatial_input(n)
    win = window(n, x.shape[2:], _kernel(n, x), bool(n.attr("ceil_mode", 0)))
    xs = transform(x) if transform else x
    if kind == "max" and _own_padding(win, x.shape[2:]):
        # max_pool2d pads with -inf itself: no padded copy of the input (a ResNet stem's 113x113)
        return NN.max_pool2d(xs, tuple(win.kernel), tuple(win.stride), tuple(win.lo)), win, x
    one_d = x.ndim == 3
    if one_d:
        xs, w2 = as_2d(xs), lift_window(win)
    else:
        w2 = win
    y = window_reduce(pad_spatial(xs, w2, pad_value), w2, kind)
    if one_d:
        y = F.reshape(y, y.shape[:2] + y.shape[3:])
    return y, win, x


@converter("MaxPool", since=12)
def max_pool(n):
    if n.wants(1):
        n.unsupported("the Indices output", "MaxPool: Indices output")
    y, _, _ = pooled(n, "max", -math.inf)
    return [y, None]


@converter("AveragePool", since=11)
def average_pool(n):
    y, win, x = pooled(n, "sum", 0.0)
    counts = _counts(win, x.shape[2:], bool(n.attr("count_include_pad", 0)))
    if (counts == 0).any():
        n.fail("a window holds no input element (the padding is as wide as the kernel)")
    return y * F.constant((1.0 / counts).astype(x.dtype.np))


@converter("LpPool", since=11)
def lp_pool(n):
    p = n.attr("p", 2)
    if not isinstance(p, int) or p < 1:
        n.fail(f"p={p!r} must be an int >= 1")
    if p == 1:
        y, _, _ = pooled(n, "sum", 0.0, F.abs)
        return y
    y, _, _ = pooled(n, "sum", 0.0, lambda x: F.power(F.abs(x), float(p)))
    return F.sqrt(y) if p == 2 else F.power(y, 1.0 / p)


def _global(reduce):
    def convert(n):
        x = _spatial_input(n)
        return reduce(x, tuple(range(2, x.ndim)), keepdims=True)
    return convert


converter("GlobalAveragePool", since=1)(_global(F.mean))
converter("GlobalMaxPool", since=1)(_global(F.max))
