"""Index arithmetic for loads through broadcasts and strided views.

An ``Index`` is a position in a tensor of a given shape, held either as a flat
C expression or as one C expression per dimension; conversions emit div/mod
with literal sizes (the C compiler strength-reduces them). View ops map an
output position to the input position they read (``VIEW_MAPS``), so a chain of
views in front of a buffer becomes one address expression, never a copy.
"""
from __future__ import annotations

from math import prod

from ..ir.symdim import maybe_nonzero


def row_major_strides(shape):
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]


def _mul(e: str, k: int) -> str:
    if k == 0 or e == "0":
        return "0"
    return e if k == 1 else f"{e}*{k}"


def _add(terms) -> str:
    terms = [t for t in terms if t != "0"]
    return "(" + " + ".join(terms) + ")" if len(terms) > 1 else (terms[0] if terms else "0")


class Index:
    __slots__ = ("shape", "_flat", "_dims")

    def __init__(self, shape, flat: str | None = None, dims: list[str] | None = None):
        self.shape = tuple(shape)
        self._flat, self._dims = flat, dims

    def flat(self) -> str:
        if self._flat is None:
            self._flat = _add(_mul(d, s) for d, s in zip(self._dims, row_major_strides(self.shape)))
        return self._flat

    def dims(self) -> list[str]:
        if self._dims is None:
            f, out = self._flat, []
            size = prod(self.shape)
            for s, st in zip(self.shape, row_major_strides(self.shape)):
                if s == 1:
                    out.append("0")
                else:
                    q = f if st == 1 else f"({f}/{st})"
                    out.append(q if st * s == size else f"({q}%{s})")
            self._dims = out
        return self._dims


def broadcast_from(idx: Index, shape) -> Index:
    """Position in an operand of ``shape`` that numpy broadcasting reads."""
    shape = tuple(shape)
    if shape == idx.shape:
        return idx
    if prod(shape) == 1:
        return Index(shape, flat="0")
    d = idx.dims()
    lead = len(idx.shape) - len(shape)
    return Index(shape, dims=["0" if s == 1 else d[lead + k] for k, s in enumerate(shape)])


def _reshape(idx, op):
    return Index(op.inputs[0].type.shape, flat=idx.flat())


def _transpose(idx, op):
    d = idx.dims()
    perm = op.attrs["perm"]
    inv = [None] * len(perm)
    for k, p in enumerate(perm):
        inv[p] = d[k]
    return Index(op.inputs[0].type.shape, dims=inv)


def _broadcast(idx, op):
    return broadcast_from(idx, op.inputs[0].type.shape)


def _slice(idx, op):
    d = idx.dims()
    return Index(op.inputs[0].type.shape, dims=[
        _add([str(b) if maybe_nonzero(b) else "0", _mul(x, s)])
        for x, b, s in zip(d, op.attrs["start"], op.attrs["step"])])


def _flip(idx, op):
    d = list(idx.dims())
    shape = op.inputs[0].type.shape
    for a in op.attrs["axes"]:
        d[a] = f"({shape[a] - 1}-{d[a]})"
    return Index(shape, dims=d)


VIEW_MAPS = {"reshape": _reshape, "transpose": _transpose, "broadcast_to": _broadcast,
             "slice": _slice, "flip": _flip}


def split_axis(shape, axis):
    """[outer, n, inner] view of ``shape`` around ``axis``."""
    return prod(shape[:axis]), shape[axis], prod(shape[axis + 1:])


def collapse_dims(shape, *strides):
    """Drop size-1 dims and merge adjacent dims that are contiguous in every stride
    list: the same element mapping with fewer dims. Returns (shape, strides...)."""
    dims = [(s, [st[d] for st in strides]) for d, s in enumerate(shape) if s != 1]
    out: list = []
    for s, st in dims:
        if out:
            ps, pst = out[-1]
            if all(p == q * s for p, q in zip(pst, st)):
                out[-1] = (ps * s, st)
                continue
        out.append((s, st))
    return [s for s, _ in out], *[[st[k] for _, st in out] for k in range(len(strides))]
