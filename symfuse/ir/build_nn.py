"""The IR builder's neural-network functions: argument handling in Python, then
the ops of ``symfuse.ir.ops.nn`` (which hold the shape rules, references and
gradients). The user API re-exports them (``symfuse.frontend.nn_api``)."""
from __future__ import annotations

import numpy as np

from ..errors import AxisError, ShapeError
from . import build as F
from .build import _at, as_tensor, take  # noqa: F401  (take is part of the nn API)
from .core import Value, apply


def pair(v, what: str, lo: int, at: str = "") -> tuple[int, int]:
    """An int or a pair of ints, each >= lo, as a pair (also canonicalises op attributes)."""
    p = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    ok = isinstance(p, (tuple, list)) and len(p) == 2 and all(
        isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in p)
    if not ok or min(p) < lo:
        raise ShapeError(f"{what} must be an int >= {lo} or a pair of them, got {v!r}{at}")
    return (int(p[0]), int(p[1]))


def _axes(axis, x: Value, op: str) -> tuple[int, ...]:
    from ..ir.ops._rules import norm_axes
    try:
        return norm_axes(axis, x.ndim, x.type)
    except AxisError as e:
        raise AxisError(f"{op}: {e}{_at()}") from None


# --------------------------------------------------------------------------- convolution, pooling
def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1) -> Value:
    """2-D cross-correlation of x (N, C, H, W) with w (O, C // groups, kh, kw).

    stride, padding, dilation: an int or an (h, w) pair. padding may also be
    "valid" (no padding) or "same" (stride 1 only: output size = input size; an
    odd total padding puts the extra row/column at the end, as TF and PyTorch do)."""
    x, w = as_tensor(x), as_tensor(w)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("valid", "same"):
            raise ShapeError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}{_at()}")
        padding = 0
        if mode == "same" and x.ndim == 4 and w.ndim == 4:  # other ranks: the op reports them
            if pair(stride, "conv2d: stride", 1, _at()) != (1, 1):
                raise ShapeError(f"conv2d: padding='same' needs stride 1, got stride {stride!r}{_at()}")
            d = pair(dilation, "conv2d: dilation", 1, _at())
            total = [d[i] * (w.shape[2 + i] - 1) for i in range(2)]
            lo = [t // 2 for t in total]
            if total[0] % 2 or total[1] % 2:   # asymmetric: pad explicitly, convolve unpadded
                x = F.pad_general(x, (0, 0, *lo), (0, 0, *(t - l for t, l in zip(total, lo))))
            else:
                padding = tuple(lo)
    return apply("conv2d", [x, w], {"stride": stride, "padding": padding, "dilation": dilation,
                                    "groups": groups})


def max_pool2d(x, kernel_size=2, stride=None, padding=0) -> Value:
    """Max over (kh, kw) windows of x (N, C, H, W); stride defaults to the kernel size;
    padding (< kernel) is -inf. The gradient goes to the first maximum of each window."""
    return apply("max_pool2d", [as_tensor(x)], {"kernel": kernel_size, "stride": stride, "padding": padding})


def avg_pool2d(x, kernel_size=2, stride=None, padding=0) -> Value:
    """Mean over (kh, kw) windows of x (N, C, H, W); padding counts as zeros (divisor kh*kw)."""
    return apply("avg_pool2d", [as_tensor(x)], {"kernel": kernel_size, "stride": stride, "padding": padding})


# --------------------------------------------------------------------------- softmax family
def softmax(x, axis=-1) -> Value:
    return apply("softmax", [as_tensor(x)], {"axis": axis})


def log_softmax(x, axis=-1) -> Value:
    return apply("log_softmax", [as_tensor(x)], {"axis": axis})


def logsumexp(x, axis=-1, keepdims=False) -> Value:
    """log(sum(exp(x), axis)), computed stably. axis: an int, a tuple, or None (all axes);
    several axes are moved last and merged into one."""
    x = as_tensor(x)
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return apply("logsumexp", [x], {"axis": int(axis), "keepdims": keepdims})
    axes = _axes(axis, x, "logsumexp")
    rest = [i for i in range(x.ndim) if i not in axes]
    xt = F.reshape(F.transpose(x, rest + list(axes)), [x.shape[i] for i in rest] + [-1])
    y = apply("logsumexp", [xt], {"axis": -1})
    return F.reshape(y, [1 if i in axes else s for i, s in enumerate(x.shape)]) if keepdims else y


def softmax_cross_entropy(logits, targets, axis=-1) -> Value:
    """-sum(targets * log_softmax(logits), axis), one value per row.

    targets: float probabilities of the logits' shape, or integer class labels of the
    logits' shape without ``axis`` (an out-of-range label, -1 included, gives a zero
    target row and so a loss of 0 for that row: the masking idiom; labels are not
    range-checked)."""
    x = as_tensor(logits)
    t = targets if isinstance(targets, Value) else as_tensor(np.asarray(targets))
    if not isinstance(targets, Value) and t.dtype.is_float and t.dtype is not x.dtype:
        t = F.cast(t, x.dtype)        # literal targets follow the logits' precision
    if t.dtype.is_int:
        (ax,) = _axes(axis, x, "softmax_cross_entropy")
        want = x.shape[:ax] + x.shape[ax + 1:]
        if t.shape != want:
            raise ShapeError(f"softmax_cross_entropy: integer labels {t.type} must have the shape "
                             f"{list(want)} of logits {x.type} without axis {ax}{_at()}")
        t = one_hot(t, x.shape[ax], x.dtype)
        nd = x.ndim
        t = F.transpose(t, list(range(ax)) + [nd - 1] + list(range(ax, nd - 1)))
    return apply("softmax_xent", [x, t], {"axis": axis})


# --------------------------------------------------------------------------- indexing
def one_hot(indices, depth, dtype="float32") -> Value:
    """indices.shape + (depth,) with 1 at each index; indices outside [0, depth) give zero rows.

    Indices are not range-checked (at compile or call time): -1 is the way to mask a
    padded position, and a wrong label shows as a zero row, never an error."""
    return apply("one_hot", [as_tensor(indices)], {"depth": depth, "dtype": dtype})
