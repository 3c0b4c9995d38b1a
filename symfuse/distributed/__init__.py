"""Data-parallel training on MPI (mpi4py), as Horovod and PyTorch DDP do it: every
process (rank) runs the same compiled step on its shard of the data, and the
gradients are averaged across ranks inside the step by collective ops of the IR
(``allreduce`` ...), so that a step stays one call into compiled code::

    import symfuse as sf
    from symfuse import distributed as dist
    dist.init()                                   # under mpiexec -n N
    with dist.data_parallel():                    # optimisers average their gradients
        m = zoo.get("mlp", batch=64)
    sf.nn.train.fit(m, data, distributed=True)

``symfuse train MODEL --workers N`` runs that under ``mpiexec`` (docs/distributed.md).
The engine is MPI (``pip install 'symfuse[mpi]'``: mpi4py and the mpich wheel);
symfuse has no sockets or collectives of its own.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys

from ..errors import SymfuseError
from ..ir.ops import collective as _C

# DDP's default bucket (25 MiB) is for GPU models of 10^8 parameters; a model that
# fits this machine's caches is better served by a few buckets that start early
DEFAULT_BUCKET_BYTES = 1 << 20


class DistributedError(SymfuseError):
    """Ranks that disagree (compiled graphs, versions, data)."""


CommunicatorError = _C.CommunicatorError


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("symfuse.distributed needs mpi4py and an MPI: pip install 'symfuse[mpi]'") from None
    return MPI


def init(comm=None, abort_on_error: bool = True):
    """Run the collectives on ``comm`` (default: mpi4py's COMM_WORLD) and return it.

    With ``abort_on_error`` (and more than one rank), an exception that ends this
    process ends the whole job (``MPI_Abort``) after printing which rank failed,
    instead of leaving the other ranks waiting in a collective forever."""
    MPI = _mpi()
    comm = comm if comm is not None else MPI.COMM_WORLD
    _C.set_communicator(comm)
    from .launch import record_rank
    record_rank(comm.Get_rank())
    if abort_on_error and comm.Get_size() > 1:
        _abort_on_uncaught(comm)
    return comm


def _abort_on_uncaught(comm) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        from .launch import record_failure
        message = f"rank {comm.Get_rank()} of {comm.Get_size()} failed with {kind.__name__}: {value}"
        record_failure(message)        # for the launcher: MPI_Abort may cut the output still in flight
        previous(kind, value, tb)
        sys.stderr.write(f"symfuse: {message}; ending the job\n")
        sys.stderr.flush()
        comm.Abort(1)
    sys.excepthook = hook


def initialized() -> bool:
    return _C._state["comm"] is not None


def communicator():
    return _C.communicator()


def rank() -> int:
    return _C.communicator().Get_rank() if initialized() else 0


def size() -> int:
    return _C.communicator().Get_size() if initialized() else 1


def local_communicator():
    """The ranks of this host (MPI's shared-memory split)."""
    comm = _C.communicator()
    return comm.Split_type(_mpi().COMM_TYPE_SHARED, key=comm.Get_rank())


def barrier() -> None:
    if initialized():
        _C.communicator().Barrier()


# --------------------------------------------------------------------------- collectives (IR)
def _world() -> int:
    try:
        return _C.communicator().Get_size()
    except _C.CommunicatorError as e:
        from ..ir.core import format_loc, user_location
        raise _C.CommunicatorError(f"{e} (at {format_loc(user_location())})") from None


def allreduce(x, op: str = "sum"):
    """Elementwise sum (or mean) of ``x`` over the ranks, on every rank."""
    from ..frontend.api import as_tensor
    return _C.allreduce(as_tensor(x), op, _world())


def broadcast(x, root: int = 0):
    """Rank ``root``'s ``x`` on every rank."""
    from ..frontend.api import as_tensor
    return _C.broadcast(as_tensor(x), root, _world())


def reduce(x, root: int = 0):
    """The sum of ``x`` over the ranks on ``root``; zeros on the others."""
    from ..frontend.api import as_tensor
    return _C.reduce_to_root(as_tensor(x), root, _world())


def allgather(x):
    """The ranks' ``x`` concatenated along axis 0 in rank order, on every rank."""
    from ..frontend.api import as_tensor
    return _C.allgather(as_tensor(x), _world())


def reduce_scatter(x):
    """Block ``rank`` (along axis 0) of the sum of ``x`` over the ranks."""
    from ..frontend.api import as_tensor
    return _C.reduce_scatter(as_tensor(x), _world())


def average_gradients(grads, bucket_bytes: int = DEFAULT_BUCKET_BYTES, overlap: bool = True):
    """``grads`` averaged over the ranks: one ``allreduce_bucket`` per bucket, a bucket
    closed once it holds ``bucket_bytes`` (DDP's rule: it passes the cap by at most
    its last gradient, so a small gradient never travels alone between two large
    ones and pays a whole collective's latency; 0: one ``allreduce`` per gradient).
    Buckets are filled from the last gradient back, the order backpropagation
    produces them, so the first bucket's collective starts while earlier layers'
    gradients are still being computed; ``overlap`` makes it non-blocking on the
    cpu target."""
    grads = list(grads)
    world = _world()
    if bucket_bytes <= 0:
        return [_C.allreduce(g, "mean", world) for g in grads]
    out = [None] * len(grads)
    bucket: list[int] = []
    nbytes = 0

    def flush():
        nonlocal bucket, nbytes
        if not bucket:
            return
        members = [grads[i] for i in bucket]
        flat = _C.allreduce_bucket(members, "mean", world, overlap)
        for i, part in zip(bucket, _C.bucket_slices(flat, members)):
            out[i] = part
        bucket, nbytes = [], 0

    for i in reversed(range(len(grads))):
        g = grads[i]
        if bucket and (g.dtype != grads[bucket[0]].dtype or nbytes >= bucket_bytes):
            flush()
        bucket.append(i)
        nbytes += g.type.nbytes
    flush()
    return out


_TRANSFORMS: list = []


@contextlib.contextmanager
def data_parallel(bucket_bytes: int = DEFAULT_BUCKET_BYTES, overlap: bool = True):
    """Inside, every optimiser's ``updates`` averages its gradients across the ranks
    (``average_gradients``): build the model and its training step here."""
    _TRANSFORMS.append(lambda grads: average_gradients(grads, bucket_bytes, overlap))
    try:
        yield
    finally:
        _TRANSFORMS.pop()


def gradient_transform():
    """What ``Optimizer.updates`` applies to its gradients here (None outside ``data_parallel``)."""
    return _TRANSFORMS[-1] if _TRANSFORMS else None


# --------------------------------------------------------------------------- the job
def compile_once(build):
    """``build()`` (which compiles) on this host's rank 0 first; the host's other ranks
    wait, then build too and find the result in the compile cache instead of
    compiling the same function at the same time. Returns ``build()``'s result."""
    if size() == 1:
        return build()
    local = local_communicator()
    try:
        if local.Get_rank() == 0:
            try:
                result = build()
            finally:
                local.Barrier()
            return result
        local.Barrier()
        return build()
    finally:
        local.Free()


def fingerprint(f) -> str:
    """What must be equal on every rank for a data-parallel step: symfuse's version
    and the function's graph (without source locations)."""
    from ..ir.printer import print_function
    from ..runtime.toolchain import VERSION
    return hashlib.sha256((VERSION + "\n" + print_function(f.source_function, locations=False))
                          .encode()).hexdigest()[:16]


def check_same(value: str, what: str) -> None:
    """Every rank holds the same ``value``, else DistributedError on every rank, naming
    the ranks that differ from rank 0."""
    if size() == 1:
        return
    values = _C.communicator().allgather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise DistributedError(f"ranks {differ} have a different {what} than rank 0 "
                               f"({values[differ[0]]} != {values[0]}): every rank must run the same symfuse "
                               f"version and model")


def broadcast_values(shared_vars, root: int = 0) -> None:
    """Rank ``root``'s values of the shared variables on every rank (once, at the start)."""
    if size() == 1:
        return
    import numpy as np
    comm = _C.communicator()
    for s in shared_vars:
        v = np.ascontiguousarray(s.get_value())
        comm.Bcast(v, root=root)
        s.set_value(v)


def shard(n: int, batch: int) -> tuple[int, int]:
    """(start, stop) of this rank's contiguous share of ``n`` samples, a whole number
    of ``batch``-sized steps, equal on every rank (the remainder is left out, so
    that every rank runs the same number of steps)."""
    r, w = rank(), size()
    per = (n // w) // batch * batch
    return r * per, (r + 1) * per


def local_rank_hint() -> int:
    """This process's rank on its host from the launcher's environment (before MPI starts)."""
    for name in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


__all__ = ["init", "initialized", "communicator", "rank", "size", "barrier", "local_communicator", "allreduce",
           "broadcast", "reduce", "allgather", "reduce_scatter", "average_gradients", "data_parallel",
           "compile_once", "fingerprint", "check_same", "broadcast_values", "shard", "DistributedError",
           "DEFAULT_BUCKET_BYTES"]
