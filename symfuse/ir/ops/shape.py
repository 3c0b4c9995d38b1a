"""Shape ops: views and data movement with static shapes."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..core import defop
from ..symdim import SymInt
from ..types import tensor_type
from ._rules import norm_axes, norm_axis, same_dtype
from .. import build as F


def _reshape_infer(types, attrs):
    (t,) = types
    shape = list(attrs["shape"])
    if shape.count(-1) > 1:
        raise ShapeError(f"at most one -1 in reshape target {tuple(shape)}")
    known = 1
    for s in shape:
        if s != -1:
            if not isinstance(s, int) or s < 0:
                raise ShapeError(f"invalid dimension {s!r} in reshape target {tuple(shape)}")
            known *= s
    if -1 in shape:
        if known == 0 or t.size % known:
            raise ShapeError(f"cannot reshape {t} into {tuple(shape)}")
        shape[shape.index(-1)] = t.size // known
    if int(np.prod(shape, dtype=np.int64)) != t.size:
        raise ShapeError(f"cannot reshape {t} ({t.size} elements) into {tuple(shape)}")
    attrs["shape"] = tuple(shape)
    return (tensor_type(t.dtype, shape),)


def _onnx_reshape(g, op, names):
    shape = op.attrs["shape"]
    sized = [k for k, d in enumerate(shape) if type(d) is SymInt]
    if len(sized) == 1:     # the one run-time size of the target: what the other sizes leave (-1)
        shape = tuple(-1 if k == sized[0] else d for k, d in enumerate(shape))
    # a 0 in ONNX's shape means "this axis of the input" unless allowzero is set
    return g.node("Reshape", [names[0], g.ints(shape)], allowzero=1 if 0 in shape else None)


defop("reshape", kind="shape", fusion="view", attrs={"shape": ()}, infer=_reshape_infer,
      ref=lambda xs, a: np.reshape(xs[0], a["shape"]),
      vjp=lambda op, cts: [F.reshape(cts[0], op.inputs[0].shape)], onnx=_onnx_reshape)


def _transpose_infer(types, attrs):
    (t,) = types
    perm = attrs["perm"]
    if perm is None:
        perm = tuple(reversed(range(t.ndim)))
    perm = tuple(norm_axis(p, t.ndim, t) for p in perm)
    if sorted(perm) != list(range(t.ndim)):
        raise ShapeError(f"perm {perm} is not a permutation of the axes of {t}")
    attrs["perm"] = perm
    return (tensor_type(t.dtype, tuple(t.shape[p] for p in perm)),)


defop("transpose", kind="shape", fusion="view", attrs={"perm": None}, infer=_transpose_infer,
      ref=lambda xs, a: np.transpose(xs[0], a["perm"]),
      vjp=lambda op, cts: [F.transpose(cts[0], tuple(np.argsort(op.attrs["perm"]).tolist()))],
      onnx=lambda g, op, names: g.node("Transpose", names, perm=list(op.attrs["perm"])))


def _broadcast_infer(types, attrs):
    (t,) = types
    shape = tuple(attrs["shape"])
    nd = len(shape)
    ok = nd >= t.ndim and all(s == d or s == 1 for s, d in zip(t.shape, shape[nd - t.ndim:]))
    if not ok:
        raise ShapeError(f"cannot broadcast {t} to shape {shape}")
    attrs["shape"] = shape
    return (tensor_type(t.dtype, shape),)


defop("broadcast_to", kind="shape", fusion="view", attrs={"shape": ()}, infer=_broadcast_infer,
      ref=lambda xs, a: np.array(np.broadcast_to(xs[0], a["shape"])),
      vjp=lambda op, cts: [F.unbroadcast(cts[0], op.inputs[0].shape)],
      onnx=lambda g, op, names: g.node("Expand", [names[0], g.ints(op.attrs["shape"])]))


def _slice_infer(types, attrs):
    (t,) = types
    start, stop, step = attrs["start"], attrs["stop"], attrs["step"]
    if not (len(start) == len(stop) == len(step) == t.ndim):
        raise ShapeError(f"slice needs start/stop/step for each of the {t.ndim} axes of {t}")
    shape = []
    for ax, (b, e, s, d) in enumerate(zip(start, stop, step, t.shape)):
        if s < 1 or not (0 <= b <= d) or not (b <= e <= d):
            raise ShapeError(f"invalid slice {b}:{e}:{s} on axis {ax} of {t}")
        # a run-time size: the count as an expression (range() would take the trace value)
        shape.append((e - b + s - 1) // s if SymInt in (type(b), type(e)) else len(range(b, e, s)))
    return (tensor_type(t.dtype, shape),)


def _slice_vjp(op, cts):
    x, g = op.inputs[0], cts[0]
    if g.size == 0:
        return [F.zeros_like(x)]
    lo, hi, interior = [], [], []
    for b, s, d, n in zip(op.attrs["start"], op.attrs["step"], x.shape, g.shape):
        last = b + (n - 1) * s
        lo.append(b)
        hi.append(d - last - 1)
        interior.append(s - 1)
    return [F.pad_general(g, lo, hi, interior)]


def _onnx_slice(g, op, names):
    a, shape = op.attrs, op.inputs[0].shape
    axes = [k for k, (b, e, s, d) in enumerate(zip(a["start"], a["stop"], a["step"], shape)) if (b, e, s) != (0, d, 1)]
    if not axes:
        return g.node("Identity", names)
    pick = lambda key: g.ints([a[key][k] for k in axes])  # noqa: E731
    return g.node("Slice", [names[0], pick("start"), pick("stop"), g.ints(axes), pick("step")])


defop("slice", kind="shape", fusion="view", attrs={"start": (), "stop": (), "step": ()}, infer=_slice_infer,
      ref=lambda xs, a: xs[0][tuple(slice(b, e, s) for b, e, s in zip(a["start"], a["stop"], a["step"]))].copy(),
      vjp=_slice_vjp, onnx=_onnx_slice)


def _pad_infer(types, attrs):
    (t,) = types
    lo, hi, interior = attrs["lo"], attrs["hi"], attrs["interior"]
    if not interior:
        interior = attrs["interior"] = (0,) * t.ndim
    if not (len(lo) == len(hi) == len(interior) == t.ndim):
        raise ShapeError(f"pad needs lo/hi/interior for each of the {t.ndim} axes of {t}")
    if min(lo + hi + interior, default=0) < 0:
        raise ShapeError(f"negative padding {lo}/{hi}/{interior} for {t}")
    attrs["value"] = float(attrs["value"])
    shape = [l + h + d + max(d - 1, 0) * i for l, h, i, d in zip(lo, hi, interior, t.shape)]
    return (tensor_type(t.dtype, shape),)


def _pad_ref(xs, a):
    x = xs[0]
    shape = [l + h + d + max(d - 1, 0) * i for l, h, i, d in zip(a["lo"], a["hi"], a["interior"], x.shape)]
    out = np.full(shape, a["value"], dtype=x.dtype)
    out[tuple(slice(l, l + max(d - 1, 0) * (i + 1) + 1 if d else l, i + 1)
              for l, i, d in zip(a["lo"], a["interior"], x.shape))] = x
    return out


def _pad_vjp(op, cts):
    x = op.inputs[0]
    a = op.attrs
    start = tuple(a["lo"])
    step = tuple(i + 1 for i in a["interior"])
    stop = tuple(l + max(d - 1, 0) * s + 1 if d else l for l, s, d in zip(start, step, x.shape))
    return [F.slice_general(cts[0], start, stop, step)]


def _onnx_pad(g, op, names):
    a, x = op.attrs, names[0]
    t = op.inputs[0].type
    value = g.scalar(a["value"], t.dtype)
    shape = list(t.shape)
    # interior padding, which ONNX's Pad lacks: each element followed by its i pad values
    # (a new axis padded at its end, merged into the axis), the trailing ones cut off
    for k, (i, d) in enumerate(zip(a["interior"], t.shape)):
        if i == 0 or d == 0:
            continue
        (x,) = g.node("Unsqueeze", [x, g.ints([k + 1])])
        pads = [0] * (len(shape) + 1) * 2
        pads[len(shape) + 1 + k + 1] = i
        (x,) = g.node("Pad", [x, g.ints(pads), value])
        shape[k] = d * (i + 1)
        (x,) = g.node("Reshape", [x, g.ints(shape)])
        shape[k] = (d - 1) * (i + 1) + 1
        (x,) = g.node("Slice", [x, g.ints([0]), g.ints([shape[k]]), g.ints([k])])
    if not any(a["lo"]) and not any(a["hi"]):
        return g.node("Identity", [x])
    return g.node("Pad", [x, g.ints(list(a["lo"]) + list(a["hi"])), value])


defop("pad", kind="shape", attrs={"lo": (), "hi": (), "interior": (), "value": 0.0},
      infer=_pad_infer, ref=_pad_ref, vjp=_pad_vjp, onnx=_onnx_pad)


def _flip_infer(types, attrs):
    (t,) = types
    attrs["axes"] = norm_axes(attrs["axes"], t.ndim, t)
    return (t,)


def _onnx_flip(g, op, names):
    axes = list(op.attrs["axes"])
    if not axes:
        return g.node("Identity", names)
    n = len(axes)     # from the last element (-1) down past the first (int64's lowest), step -1
    return g.node("Slice", [names[0], g.ints([-1] * n), g.ints([np.iinfo(np.int64).min] * n), g.ints(axes),
                            g.ints([-1] * n)])


defop("flip", kind="shape", fusion="view", attrs={"axes": None}, infer=_flip_infer,
      ref=lambda xs, a: np.flip(xs[0], a["axes"]).copy(),
      vjp=lambda op, cts: [F.flip(cts[0], op.attrs["axes"])], onnx=_onnx_flip)



def _concat_infer(types, attrs):
    if not types:
        raise ShapeError("concatenate needs at least one operand")
    t0 = types[0]
    dt = same_dtype(types)
    ax = attrs["axis"] = norm_axis(attrs["axis"], t0.ndim, t0)
    for t in types[1:]:
        if t.ndim != t0.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, t0.shape)) if i != ax):
            raise ShapeError("operands do not match outside axis "
                             f"{ax}: " + ", ".join(str(u) for u in types))
    shape = list(t0.shape)
    shape[ax] = sum(t.shape[ax] for t in types)
    return (tensor_type(dt, shape),)


def _concat_vjp(op, cts):
    ax = op.attrs["axis"]
    g = cts[0]
    out, off = [], 0
    for x in op.inputs:
        start = [0] * g.ndim
        stop = list(g.shape)
        start[ax], stop[ax] = off, off + x.shape[ax]
        out.append(F.slice_general(g, start, stop, [1] * g.ndim))
        off += x.shape[ax]
    return out


defop("concatenate", kind="shape", attrs={"axis": 0}, infer=_concat_infer,
      ref=lambda xs, a: np.concatenate(xs, axis=a["axis"]), vjp=_concat_vjp,
      onnx=lambda g, op, names: g.node("Concat", names, axis=op.attrs["axis"]))
