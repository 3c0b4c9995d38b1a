"""Collective ops across the processes of an MPI communicator: data-parallel
training's gradient averaging (``allreduce``), parameter broadcast, gathers.

Every rank runs the same program, so the ops are ordinary IR: typed, printed,
parsed, differentiated, fused around. ``world`` (the communicator's size) is an
attribute because ``allgather`` / ``reduce_scatter`` change a shape by it; a
function compiled for one size refuses to run on a communicator of another.

The VJPs pair up (each is the other's adjoint): allreduce with itself (same
reduction), broadcast with ``reduce`` (sum onto the root, zeros elsewhere),
allgather with ``reduce_scatter``.

``allreduce_bucket`` is what the ``bucket_allreduce`` pass makes of several
allreduces of one reduction and dtype: one flat result holding the operands
back to back, so that one collective moves them all; with ``overlap`` the cpu
target starts it non-blocking where its operands are ready and waits only
before the first kernel that reads it.

The reference implementations (the interpreter, constant folding is off) run
the collective through mpi4py on the communicator set with ``set_communicator``
(``symfuse.distributed.init``); the IR imports mpi4py only then.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError, SymfuseError
from ..core import apply, defop
from ..types import tensor_type
from .. import build as F

REDUCTIONS = ("sum", "mean")
_state: dict = {"comm": None}


class CommunicatorError(SymfuseError, RuntimeError):
    """A collective without a communicator, or on one of another size."""


def set_communicator(comm) -> None:
    _state["comm"] = comm


def communicator():
    """The mpi4py communicator the collectives run on; an error naming what to call when none is set."""
    comm = _state["comm"]
    if comm is None:
        raise CommunicatorError("collective ops need a communicator: call symfuse.distributed.init() first "
                                "(under mpiexec, or `symfuse train --workers N`)")
    return comm


def _world_checked(a) -> object:
    comm = communicator()
    if comm.Get_size() != a["world"]:
        raise CommunicatorError(f"compiled for {a['world']} processes, running on a communicator of "
                                f"{comm.Get_size()}: compile the function again for this job")
    return comm


def _check_world(a) -> int:
    w = a["world"]
    if not isinstance(w, int) or isinstance(w, bool) or w < 1:
        raise ShapeError(f"world must be an int >= 1, got {w!r}")
    return w


def _check_root(a) -> None:
    r = a["root"]
    if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < a["world"]:
        raise ShapeError(f"root must be a rank in [0, {a['world']}), got {r!r}")


def _check_reduction(a, t) -> None:
    if a["op"] not in REDUCTIONS:
        raise ShapeError(f"op must be one of {', '.join(REDUCTIONS)}, got {a['op']!r}")
    if a["op"] == "mean" and not t.dtype.is_float:
        raise ShapeError(f"op='mean' needs a float tensor, got {t.dtype}")
    if t.dtype.is_bool:
        raise ShapeError("cannot reduce a bool tensor across processes")


def _mpi():
    from mpi4py import MPI    # only where a collective runs on the interpreter
    return MPI


# =========================================================================== allreduce
def _allreduce_infer(types, a):
    (t,) = types
    _check_world(a)
    _check_reduction(a, t)
    return (t,)


def _allreduce_ref(xs, a):
    comm = _world_checked(a)
    x = np.ascontiguousarray(xs[0])
    out = np.empty_like(x)
    comm.Allreduce(x, out, op=_mpi().SUM)
    if a["op"] == "mean":
        out = (out / a["world"]).astype(x.dtype)     # as the cpu target: the sum, then one scaling
    return out


defop("allreduce", kind="collective", attrs={"op": "sum", "world": 1}, infer=_allreduce_infer,
      ref=_allreduce_ref, foldable=False, vjp=lambda op, cts: [allreduce(cts[0], op.attrs["op"], op.attrs["world"])],
      doc="Every rank gets the elementwise sum (or mean) of x over the ranks.")


# =========================================================================== broadcast / reduce
def _broadcast_infer(types, a):
    (t,) = types
    _check_world(a)
    _check_root(a)
    return (t,)


def _reduce_infer(types, a):
    (t,) = types
    _check_world(a)
    _check_root(a)
    if t.dtype.is_bool:
        raise ShapeError("cannot reduce a bool tensor across processes")
    return (t,)


def _broadcast_ref(xs, a):
    comm = _world_checked(a)
    buf = np.array(xs[0], copy=True, order="C")
    comm.Bcast(buf, root=a["root"])
    return buf


def _reduce_ref(xs, a):
    comm = _world_checked(a)
    x = np.ascontiguousarray(xs[0])
    out = np.zeros_like(x)
    comm.Reduce(x, out if comm.Get_rank() == a["root"] else None, op=_mpi().SUM, root=a["root"])
    return out


defop("broadcast", kind="collective", attrs={"root": 0, "world": 1}, infer=_broadcast_infer, ref=_broadcast_ref,
      foldable=False, vjp=lambda op, cts: [reduce_to_root(cts[0], op.attrs["root"], op.attrs["world"])],
      doc="Every rank gets the root's x.")
defop("reduce", kind="collective", attrs={"root": 0, "world": 1}, infer=_reduce_infer, ref=_reduce_ref,
      foldable=False, vjp=lambda op, cts: [broadcast(cts[0], op.attrs["root"], op.attrs["world"])],
      doc="The root gets the elementwise sum of x over the ranks; every other rank gets zeros.")


# =========================================================================== allgather / reduce_scatter
def _allgather_infer(types, a):
    (t,) = types
    w = _check_world(a)
    if t.ndim == 0:
        raise ShapeError("allgather needs a tensor of rank >= 1 (it concatenates along axis 0)")
    return (tensor_type(t.dtype, (w * t.shape[0],) + t.shape[1:]),)


def _allgather_ref(xs, a):
    comm = _world_checked(a)
    x = np.ascontiguousarray(xs[0])
    out = np.empty((a["world"] * x.shape[0],) + x.shape[1:], x.dtype)
    comm.Allgather(x, out)
    return out


def _reduce_scatter_infer(types, a):
    (t,) = types
    w = _check_world(a)
    if t.ndim == 0 or t.shape[0] % w:
        raise ShapeError(f"reduce_scatter needs axis 0 divisible by the {w} ranks, got shape {t.shape}")
    if t.dtype.is_bool:
        raise ShapeError("cannot reduce a bool tensor across processes")
    return (tensor_type(t.dtype, (t.shape[0] // w,) + t.shape[1:]),)


def _reduce_scatter_ref(xs, a):
    comm = _world_checked(a)
    x = np.ascontiguousarray(xs[0])
    out = np.empty((x.shape[0] // a["world"],) + x.shape[1:], x.dtype)
    comm.Reduce_scatter_block(x, out, op=_mpi().SUM)
    return out


defop("allgather", kind="collective", attrs={"world": 1}, infer=_allgather_infer, ref=_allgather_ref,
      foldable=False, vjp=lambda op, cts: [reduce_scatter(cts[0], op.attrs["world"])],
      doc="The ranks' x concatenated along axis 0, in rank order, on every rank.")
defop("reduce_scatter", kind="collective", attrs={"world": 1}, infer=_reduce_scatter_infer,
      ref=_reduce_scatter_ref, foldable=False, vjp=lambda op, cts: [allgather(cts[0], op.attrs["world"])],
      doc="Rank r gets block r (along axis 0) of the elementwise sum of x over the ranks.")


# =========================================================================== allreduce_bucket
def _bucket_infer(types, a):
    if not types:
        raise ShapeError("allreduce_bucket needs at least one operand")
    _check_world(a)
    if a["overlap"] not in (True, False):
        raise ShapeError(f"overlap must be a bool, got {a['overlap']!r}")
    dt = types[0].dtype
    for t in types:
        if t.dtype != dt:
            raise ShapeError(f"a bucket holds one dtype: {dt} and {t.dtype}")
        _check_reduction(a, t)
    return (tensor_type(dt, (sum(t.size for t in types),)),)


def _bucket_ref(xs, a):
    flat = np.concatenate([np.ascontiguousarray(x).reshape(-1) for x in xs])
    return _allreduce_ref([flat], a)


def _bucket_vjp(op, cts):
    g = allreduce(cts[0], op.attrs["op"], op.attrs["world"])
    return bucket_slices(g, op.inputs)


defop("allreduce_bucket", kind="collective", attrs={"op": "sum", "world": 1, "overlap": False},
      infer=_bucket_infer, ref=_bucket_ref, vjp=_bucket_vjp, foldable=False,
      doc="allreduce of the operands flattened back to back into one vector (one collective for all).")


def bucket_slices(flat, like) -> list:
    """The parts of a bucket's flat result, shaped as the values ``like``."""
    out, off = [], 0
    for v in like:
        n = v.type.size
        out.append(F.reshape(F.slice_general(flat, [off], [off + n], [1]), v.shape))
        off += n
    return out


# =========================================================================== builders
def allreduce(x, op="sum", world=1):
    return apply("allreduce", [x], {"op": op, "world": world})


def broadcast(x, root=0, world=1):
    return apply("broadcast", [x], {"root": root, "world": world})


def reduce_to_root(x, root=0, world=1):
    return apply("reduce", [x], {"root": root, "world": world})


def allgather(x, world=1):
    return apply("allgather", [x], {"world": world})


def reduce_scatter(x, world=1):
    return apply("reduce_scatter", [x], {"world": world})


def allreduce_bucket(xs, op="sum", world=1, overlap=False):
    return apply("allreduce_bucket", list(xs), {"op": op, "world": world, "overlap": overlap})
