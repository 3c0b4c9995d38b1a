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
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...errors import GradError, ShapeError
from ..core import apply, defop
from ..types import as_dtype, tensor_type
from ._rules import norm_axis, reduced_shape, require_float, require_int, same_dtype
from .. import build as F
from .. import build_nn as NN
from ..build_nn import pair


# =========================================================================== helpers
def _rank4(t, what):
    if t.ndim != 4:
        raise ShapeError(f"{what} must be 4-D ({'OIHW' if what == 'w' else 'NCHW'}), got {t}")


def _float4(types, names):
    """Operands named by the letters of ``names``: all 4-D, one floating dtype."""
    for t, what in zip(types, names):
        _rank4(t, what)
    same_dtype(types)
    require_float(types[0], names[0])


def _shape4(s, what):
    if not (isinstance(s, (tuple, list)) and len(s) == 4 and all(isinstance(d, int) and d >= 0 for d in s)):
        raise ShapeError(f"{what} must be a 4-tuple of non-negative ints, got {s!r}")
    return tuple(s)


def _pad2(x, p, value=0.0):
    """Pad the two spatial dims of an NCHW array symmetrically."""
    if not any(p):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * p[0], w + 2 * p[1]), value, dtype=x.dtype)
    out[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    return out


def _windows(xp, k, s, d, out):
    """Read-only view (N, C, Ho, Wo, kh, kw) of every window of a padded NCHW array."""
    sn, sc, sh, sw = xp.strides
    return as_strided(xp, xp.shape[:2] + tuple(out) + tuple(k),
                      (sn, sc, sh * s[0], sw * s[1], sh * d[0], sw * d[1]), writeable=False)


def _scatter_windows(cols, shape, k, s, d, p, dtype):
    """Adjoint of _windows: add cols (N, C, kh, kw, Ho, Wo) back into an NCHW array of
    ``shape`` (unpadded) and crop the padding. One strided add per kernel tap."""
    n, c, h, w = shape
    ho, wo = cols.shape[-2:]
    dxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            dxp[:, :, i * d[0]:i * d[0] + s[0] * (ho - 1) + 1:s[0],
                j * d[1]:j * d[1] + s[1] * (wo - 1) + 1:s[1]] += cols[:, :, i, j]
    return dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


# =========================================================================== conv2d
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


defop("conv2d", kind="nn", gemm_like=True, attrs=dict(CONV_ATTRS), infer=_conv_infer, ref=_conv_ref, vjp=_conv_vjp,
      doc="2-D cross-correlation, x NCHW, w OIHW (I = C / groups).")
defop("conv2d_grad_input", kind="nn", gemm_like=True, attrs={"input_shape": (), **CONV_ATTRS},
      infer=_conv_grad_input_infer, ref=_conv_grad_input_ref, vjp=_conv_grad_input_vjp,
      doc="Gradient of conv2d wrt x (a transposed convolution of g with w).")
defop("conv2d_grad_weight", kind="nn", gemm_like=True, attrs={"weight_shape": (), **CONV_ATTRS},
      infer=_conv_grad_weight_infer, ref=_conv_grad_weight_ref, vjp=_conv_grad_weight_vjp,
      doc="Gradient of conv2d wrt w (correlation of x with g).")


# =========================================================================== pooling
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


defop("max_pool2d", kind="nn", attrs=dict(POOL_ATTRS), infer=_pool_infer, ref=_max_pool_ref,
      vjp=_max_pool_vjp, doc="Max over kernel windows; padding is -inf.")
defop("max_pool2d_grad", kind="nn", attrs=dict(POOL_ATTRS), infer=_max_pool_grad_infer,
      ref=_max_pool_grad_ref, vjp=_max_pool_grad_vjp,
      doc="Inputs x, y=max_pool2d(x), g: each window's g goes to the first maximal element of the "
          "window in row-major order; overlapping windows accumulate. Differentiable wrt g only "
          "for disjoint windows (stride >= kernel).")
defop("avg_pool2d", kind="nn", attrs=dict(POOL_ATTRS), infer=_pool_infer, ref=_avg_pool_ref,
      vjp=_avg_pool_vjp, doc="Mean over kernel windows; padding counts as zeros (divisor = kernel area).")
defop("avg_pool2d_grad", kind="nn", attrs={"input_shape": (), **POOL_ATTRS}, infer=_avg_pool_grad_infer,
      ref=_avg_pool_grad_ref, vjp=_avg_pool_grad_vjp, doc="Adjoint of avg_pool2d (linear in g).")


# =========================================================================== softmax family
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


defop("softmax", kind="rowwise", attrs={"axis": -1}, infer=_rowwise_infer, ref=_softmax_ref,
      vjp=_softmax_vjp)
defop("log_softmax", kind="rowwise", attrs={"axis": -1}, infer=_rowwise_infer,
      ref=lambda xs, a: _log_softmax(xs[0], a["axis"]), vjp=_log_softmax_vjp)
defop("logsumexp", kind="rowwise", attrs={"axis": -1, "keepdims": False}, infer=_lse_infer,
      ref=_lse_ref, vjp=_lse_vjp)
defop("softmax_xent", kind="rowwise", attrs={"axis": -1}, infer=_xent_infer, ref=_xent_ref,
      vjp=_xent_vjp, doc="-sum(t * log_softmax(x), axis): cross-entropy of logits x against "
                         "target probabilities t (same shape).")


# =========================================================================== take / one_hot
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


defop("take", kind="nn", attrs={"axis": 0}, infer=_take_infer, ref=_take_ref, vjp=_take_vjp,
      doc="Gather along axis: out shape x.shape[:axis] + idx.shape + x.shape[axis+1:]. "
          "Negative indices count from the end, then indices are clamped into [0, n-1].")
defop("take_grad", kind="nn", attrs={"axis": 0, "size": 1}, infer=_take_grad_infer, ref=_take_grad_ref,
      vjp=lambda op, cts: [NN.take(cts[0], op.inputs[1], op.attrs["axis"]), None],
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
      differentiable=False,
      doc="out[..., k] = (idx == k); an index outside [0, depth) gives an all-zero row.")

__all__ = ["conv2d_grad_input", "conv2d_grad_weight"]
