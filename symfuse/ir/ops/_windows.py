"""What the convolution and pooling ops share: NCHW shape checks, spatial
padding, and sliding windows over an input (and their adjoint, adding windows
back into an input's shape)."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...errors import ShapeError
from ._rules import require_float, same_dtype


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
