"""Signal ops: the windows (HannWindow, HammingWindow, BlackmanWindow) and
MelWeightMatrix, constants computed at import time from their static sizes; DFT and
STFT as matmuls with constant cosine and sine matrices.

A complex tensor is real with a last axis of 2 (real, imaginary); a real signal has
a last axis of 1. Transforms run in float64 (the matrices and the sums) and round
once to the input's dtype, as onnx's reference (numpy's FFT) does.
"""
from __future__ import annotations

import numpy as np

from ...frontend import api as F
from ..importer import symfuse_dtype
from ..registry import converter


def _scalar_int(n, i: int, what: str) -> int:
    v = n.static(i).reshape(-1)
    if v.size != 1:
        n.fail(f"{what} must be a scalar, got {v.size} values")
    return int(v[0])


def _output_dtype(n) -> np.dtype:
    return np.dtype(symfuse_dtype(n.attr("output_datatype", 1), f"{n.where}: output_datatype"))


# ---------------------------------------------------------------- windows
def _hann(ni, span):
    return np.sin(ni * np.pi / span) ** 2


def _hamming(ni, span):
    alpha = 25.0 / 46.0
    return alpha - np.cos(ni * np.pi * 2 / span) * (1 - alpha)


def _blackman(ni, span):
    return 0.42 - 0.5 * np.cos(ni * (np.pi * 2) / span) + 0.08 * np.cos(ni * (np.pi * 4) / span)


# op type: (the window at positions ni over span N (N - 1 when symmetric), whether ni is
# computed in the output dtype as onnx's reference does)
WINDOWS = {"HannWindow": (_hann, True), "HammingWindow": (_hamming, True), "BlackmanWindow": (_blackman, False)}


@converter(*WINDOWS, since=17)
def window(n):
    fn, in_output_dtype = WINDOWS[n.op_type]
    size = _scalar_int(n, 0, "size")
    if size < 0:
        n.fail(f"size {size} must not be negative")
    dtype = _output_dtype(n)
    span = size if n.attr("periodic", 1) else size - 1
    ni = np.arange(size, dtype=dtype if in_output_dtype else np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return F.constant(np.asarray(fn(ni, span)).astype(dtype))


# ---------------------------------------------------------------- MelWeightMatrix
def _hz_to_bin(n_mel: int, dft_length: int, rate: int, low: float, high: float) -> np.ndarray:
    to_mel = lambda hz: 2595 * np.log1p(hz / 700) / np.log(10)  # noqa: E731
    low_mel, high_mel = to_mel(low), to_mel(high)
    points = np.arange(n_mel + 2) * ((high_mel - low_mel) / (n_mel + 2)) + low_mel
    hz = 700 * np.expm1(points / 2595 * np.log(10))
    return (((dft_length + 1) * hz) // rate).astype(int)


@converter("MelWeightMatrix", since=17)
def mel_weight_matrix(n):
    n_mel, dft_length, rate = (_scalar_int(n, i, what) for i, what in
                               enumerate(("num_mel_bins", "dft_length", "sample_rate")))
    low, high = (float(n.static(i).reshape(-1)[0]) for i in (3, 4))
    if n_mel < 1 or dft_length < 1 or rate <= 0:
        n.fail(f"num_mel_bins {n_mel}, dft_length {dft_length} and sample_rate {rate} must be positive")
    edges = _hz_to_bin(n_mel, dft_length, rate, low, high)
    out = np.zeros((dft_length // 2 + 1, n_mel))
    if edges.min() < 0 or edges.max() >= out.shape[0] + 1:
        n.fail(f"the mel bands' edges {edges.tolist()} fall outside the {out.shape[0]} spectrogram bins")
    for i in range(n_mel):
        lo, mid, hi = edges[i:i + 3]
        if mid == lo:
            out[mid, i] = 1
        else:
            j = np.arange(lo, mid + 1)
            out[j, i] = (j - lo) / (mid - lo)
        if hi > mid:
            j = np.arange(mid, hi)
            out[j, i] = (hi - j) / (hi - mid)
    return F.constant(out.astype(_output_dtype(n)))


# ---------------------------------------------------------------- DFT
def _dft_matrices(n_in: int, length: int, n_out: int):
    """cos and sin of 2 pi j k / length for input index j < n_in, output index k < n_out
    (an input shorter than ``length`` is zero-padded, a longer one truncated)."""
    j = np.arange(min(n_in, length))[:, None]
    k = np.arange(n_out)[None, :]
    angle = 2 * np.pi * ((j * k) % length) / length
    cos, sin = np.cos(angle), np.sin(angle)
    if n_in > length:
        pad = ((0, n_in - length), (0, 0))
        cos, sin = np.pad(cos, pad), np.pad(sin, pad)
    return cos, sin


def _transform(x, axis: int, length: int, inverse: bool, onesided: bool):
    """The DFT of x (..., 1 or 2) along ``axis`` as (real, imaginary) float64 parts with
    the transformed axis last, or the real part only for an inverse one-sided one."""
    nd = x.ndim
    perm = [a for a in range(nd - 1) if a != axis] + [axis]
    wide = F.cast(x, "float64")
    re = F.transpose(F.getitem(wide, (Ellipsis, 0)), perm)
    im = F.transpose(F.getitem(wide, (Ellipsis, 1)), perm) if x.shape[-1] == 2 else None
    n_in = re.shape[-1]
    if inverse and onesided:
        # irfft: bins 1 .. ceil(n/2)-1 stand for their conjugate mirrors too
        bins = min(n_in, length // 2 + 1)
        cos, sin = _dft_matrices(bins, length, length)
        twice = np.full((bins, 1), 2.0)
        twice[0] = 1
        if length % 2 == 0 and bins == length // 2 + 1:
            twice[-1] = 1
        cos, sin = cos * twice / length, sin * twice / length
        re = F.getitem(re, (Ellipsis, slice(0, bins)))
        real = F.matmul(re, F.constant(cos))
        if im is not None:
            real = real - F.matmul(F.getitem(im, (Ellipsis, slice(0, bins))), F.constant(sin))
        return real, None, perm
    n_out = length // 2 + 1 if onesided and not inverse else length
    cos, sin = _dft_matrices(n_in, length, n_out)
    if inverse:
        cos, sin = cos / length, -sin / length
    # (re + i im) (cos - i sin) = re cos + im sin + i (im cos - re sin)
    real = F.matmul(re, F.constant(cos))
    imag = -F.matmul(re, F.constant(sin))
    if im is not None:
        real = real + F.matmul(im, F.constant(sin))
        imag = imag + F.matmul(im, F.constant(cos))
    return real, imag, perm


def _complex_result(real, imag, perm, dtype):
    """(..., k) parts with the transformed axis last, back in place with a last axis of 2 (1)."""
    back = list(np.argsort(perm))
    parts = [real] if imag is None else [real, imag]
    y = F.stack([F.transpose(p, back) for p in parts], -1)
    return F.cast(y, dtype)


@converter("DFT", since=17)
def dft(n):
    x = n.value(0)
    if not x.dtype.is_float or x.ndim < 2 or x.shape[-1] not in (1, 2):
        n.fail(f"input {x.type} must be floating point with a last axis of 1 (real) or 2 (complex)")
    if n.opset >= 20:
        axis = _scalar_int(n, 2, "axis") if n.has(2) else -2
    else:
        axis = n.attr("axis", 1)
    if not -x.ndim <= axis < x.ndim or axis % x.ndim == x.ndim - 1:
        n.fail(f"axis {axis} must name a signal axis of {x.type} (not the last, complex one)")
    axis %= x.ndim
    inverse, onesided = bool(n.attr("inverse", 0)), bool(n.attr("onesided", 0))
    if onesided and not inverse and x.shape[-1] == 2:
        n.fail("onesided needs a real input (a last axis of 1)")
    if n.has(1):
        length = _scalar_int(n, 1, "dft_length")
    else:
        length = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    if length < 1:
        n.fail(f"dft_length {length} must be positive")
    real, imag, perm = _transform(x, axis, length, inverse, onesided)
    return _complex_result(real, imag, perm, x.dtype)


# ---------------------------------------------------------------- STFT
@converter("STFT", since=17)
def stft(n):
    x = n.value(0)
    if not x.dtype.is_float or x.ndim != 3 or x.shape[-1] not in (1, 2):
        n.fail(f"signal {x.type} must be floating point (batch, length, 1 or 2)")
    step = _scalar_int(n, 1, "frame_step")
    win = n.value(2) if n.has(2) else None
    if win is not None and win.ndim != 1:
        n.fail(f"window {win.type} must be 1-D")
    if n.has(3):
        length = _scalar_int(n, 3, "frame_length")
    elif win is not None:
        length = win.shape[0]
    else:
        length = x.shape[1]
    size = win.shape[0] if win is not None else length
    if step < 1 or length < 1 or length > x.shape[1]:
        n.fail(f"frame_step {step} and frame_length {length} must be positive, the frame within the "
               f"signal's {x.shape[1]} samples")
    frames = 1 + (x.shape[1] - length) // step
    starts = np.arange(frames)[:, None] * step + np.arange(size)[None, :]          # (frames, size)
    overhang = max(int(starts.max()) + 1 - x.shape[1], 0)
    if overhang:
        x = F.pad_general(x, [0, 0, 0], [0, overhang, 0])
    framed = F.take(x, F.constant(starts.astype(np.int64)), 1)                 # (B, frames, size, c)
    if win is not None:
        framed = framed * F.reshape(F.cast(win, x.dtype), (1, 1, size, 1))
    onesided = bool(n.attr("onesided", 1))
    if onesided and x.shape[-1] == 2:
        n.fail("onesided needs a real signal (a last axis of 1)")
    real, imag, perm = _transform(framed, 2, length, False, onesided)
    return _complex_result(real, imag, perm, x.dtype)
