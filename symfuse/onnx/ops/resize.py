"""Resize: nearest, linear and cubic interpolation (with antialias, exclude_outside,
every coordinate_transformation_mode including tf_crop_and_resize).

Interpolation is separable, so each resized axis is one gather and one weighted
sum: at import time, numpy works out for every output position which input
positions it reads and with what weights (the taps), as ONNX's reference does;
the graph gathers those positions with constant indices (``take``) and sums them
with constant weights. Scales, sizes and roi must therefore be known at import time.
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend import api as F
from ...frontend import nn_api as NN
from ..registry import converter

TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
              "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _source_coords(ctm: str, n_out: int, n_in: int, scale: float, roi):
    """Input coordinate of each output position, and where tf_crop_and_resize extrapolates."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in
    if ctm == "align_corners":
        return (np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)), None
    if ctm == "asymmetric":
        return y / scale, None
    if ctm == "pytorch_half_pixel":
        return (np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    if ctm == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if ctm == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5, None
    start, end = roi
    if width == 1:
        x = np.full(n_out, (end - start) * (n_in - 1) / 2)
    else:
        x = y * (end - start) * (n_in - 1) / (width - 1)
    x = x + start * (n_in - 1)
    return x, (x < 0) | (x > n_in - 1)


def _cubic(d, a: float):
    """The cubic convolution kernel at distances d."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _coeffs(mode: str, ratio: np.ndarray, scale: float, antialias: bool, nearest_mode: str, a: float):
    """(n_out, taps) weights of the taps around each source coordinate; ``ratio`` in (0, 1]."""
    r = ratio[:, None]
    if mode == "nearest":
        upper = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5,
                 "floor": np.zeros_like(r, bool), "ceil": np.ones_like(r, bool)}[nearest_mode] | (r == 1)
        return np.concatenate([~upper, upper], axis=1).astype(np.float64)
    if not antialias or scale >= 1:
        if mode == "linear":
            return np.concatenate([1 - r, r], axis=1)
        return _cubic(np.concatenate([r + 1, r, 1 - r, 2 - r], axis=1), a)
    # antialias (downsampling): the kernel stretched by 1 / scale, normalised
    reach = 1 if mode == "linear" else 2
    first = int(np.floor(-reach / scale) + 1)
    offsets = np.arange(first, 2 - first)
    d = (offsets[None, :] - r) * scale
    w = np.clip(1 - np.abs(d), 0, 1) if mode == "linear" else _cubic(d, a)
    return w / w.sum(axis=1, keepdims=True)


def axis_taps(mode: str, ctm: str, n_in: int, n_out: int, scale: float, roi, opts: dict):
    """(indices, weights) both (n_out, taps), and the extrapolated positions (or None)."""
    x, extrapolated = _source_coords(ctm, n_out, n_in, scale, roi)
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)
    w = _coeffs(mode, ratio, scale, opts["antialias"], opts["nearest_mode"], opts["a"])
    taps = w.shape[1]
    # the taps nearest x, ties to the smaller index (ONNX's _get_neighbor_idxes)
    half = math.ceil(taps / 2)
    xp = x + half
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if taps % 2 == 0:
        offset = np.where(frac == 0, -(taps // 2), -(taps // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((taps - 1) // 2), -((taps - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(taps)[None, :] - half
    if opts["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    idx = np.clip(idx, 0, n_in - 1)
    if mode == "nearest":      # one weight is 1, the other 0: keep the chosen tap only
        pick = w.argmax(axis=1)[:, None]
        idx, w = np.take_along_axis(idx, pick, 1), np.ones((n_out, 1))
    return idx, w, extrapolated


def resample_axis(x, axis: int, idx: np.ndarray, w: np.ndarray):
    """sum_t x[idx[:, t]] * w[:, t] along ``axis`` (a single gather when there is one tap)."""
    n_out, taps = idx.shape
    y = NN.take(x, F.constant(idx.reshape(-1).astype(np.int32)), axis)
    if taps == 1:
        return y
    y = F.reshape(y, x.shape[:axis] + (n_out, taps) + x.shape[axis + 1:])
    wt = F.constant(w.reshape((n_out, taps) + (1,) * (x.ndim - axis - 1)).astype(x.dtype.np))
    return F.sum(y * wt, axis + 1)


def _static_floats(n, i: int):
    if not n.has(i):
        return None
    v = n.static(i).reshape(-1)
    return v if v.size else None


def _plan(n, x, axes):
    """Per axis of x: (scale, output size), following ONNX's reference resolution."""
    scales, sizes = _static_floats(n, 2), _static_floats(n, 3)
    if (scales is None) == (sizes is None):
        n.fail("exactly one of scales and sizes must be given")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        n.fail(f"{'scales' if scales is not None else 'sizes'} has {len(given)} values for {len(axes)} axes")
    shape = list(x.shape)
    scale, out = [1.0] * x.ndim, list(shape)
    if scales is not None:
        for a, s in zip(axes, scales):
            if not s > 0:
                n.fail(f"scale {s} must be positive")
            scale[a], out[a] = float(s), int(float(s) * shape[a])
        return scale, out
    for a, s in zip(axes, sizes):
        out[a] = int(s)
        scale[a] = out[a] / shape[a] if shape[a] else 1.0
    policy = n.attr("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        if policy not in ("not_larger", "not_smaller"):
            n.fail(f"keep_aspect_ratio_policy={policy!r} is not stretch, not_larger or not_smaller")
        pick = min if policy == "not_larger" else max
        s = pick(scale[a] for a in axes)
        for a in axes:
            scale[a], out[a] = s, int(s * shape[a] + 0.5)
    return scale, out


def _options(n, x) -> dict:
    mode = n.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        n.fail(f"mode={mode!r} is not nearest, linear or cubic")
    ctm = n.attr("coordinate_transformation_mode", "half_pixel")
    if ctm not in TRANSFORMS:
        n.unsupported(f"coordinate_transformation_mode={ctm!r}", f"Resize: {ctm}")
    nearest_mode = n.attr("nearest_mode", "round_prefer_floor")
    if nearest_mode not in NEAREST_MODES:
        n.fail(f"nearest_mode={nearest_mode!r} is not one of {', '.join(NEAREST_MODES)}")
    antialias = bool(n.attr("antialias", 0))
    if antialias and mode == "nearest":
        n.fail("antialias applies to linear and cubic modes only")
    if mode != "nearest" and not x.dtype.is_float:
        n.unsupported(f"{mode} interpolation of {x.dtype}", f"Resize: {mode} of integers")
    return {"mode": mode, "ctm": ctm, "nearest_mode": nearest_mode, "antialias": antialias,
            "a": float(n.attr("cubic_coeff_a", -0.75)), "exclude_outside": bool(n.attr("exclude_outside", 0)),
            "extrapolation": float(n.attr("extrapolation_value", 0.0))}


@converter("Resize", since=13)
def resize(n):
    x = n.value(0)
    opts = _options(n, x)
    axes = [int(a) for a in n.attr("axes", range(x.ndim))]
    if any(not -x.ndim <= a < x.ndim for a in axes) or len({a % x.ndim for a in axes}) != len(axes):
        n.fail(f"axes {axes} are not distinct axes of {x.type}")
    axes = [a % x.ndim for a in axes]
    scale, out = _plan(n, x, axes)
    roi = _static_floats(n, 1) if opts["ctm"] == "tf_crop_and_resize" else None
    if opts["ctm"] == "tf_crop_and_resize":
        if roi is None or len(roi) != 2 * len(axes):
            n.fail(f"tf_crop_and_resize needs an roi of {2 * len(axes)} values (start, end per axis)")
        k = len(axes)
        roi = {a: (float(roi[i]), float(roi[k + i])) for i, a in enumerate(axes)}
    for a in axes:
        crop = roi[a] if roi else None
        if math.isclose(scale[a], 1.0) and out[a] == x.shape[a] and (crop is None or crop == (0.0, 1.0)):
            continue
        if out[a] == 0 or x.shape[a] == 0:
            n.unsupported(f"an empty axis {a} (output size {out[a]})", "Resize: empty axis")
        idx, w, extrapolated = axis_taps(opts["mode"], opts["ctm"], x.shape[a], out[a], scale[a], crop, opts)
        x = resample_axis(x, a, idx, w)
        if extrapolated is not None and extrapolated.any():
            mask = F.constant(extrapolated.reshape((-1,) + (1,) * (x.ndim - a - 1)))
            x = F.where(mask, F.full((), opts["extrapolation"], x.dtype), x)
    return x
