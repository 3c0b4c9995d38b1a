"""The cpu target's lowering of the collective ops (``ir/ops/collective.py``) to
MPI calls (``templates/c/sf_mpi.h``): part of the library table (``c_library``).

A unit with collectives includes ``sf_mpi.h`` (the ``MPI`` helper) and is linked
with MPI; its collective kernels are ``collective`` kernels, kept in the entry's
unit. ``allreduce_bucket`` with ``overlap`` starts an ``MPI_Iallreduce`` in its
kernel and leaves ``wait`` for the schedule to put before the first kernel that
reads the bucket (``c_program``): the backward kernels between run while the
reduction travels. ``PENDING`` names the kernel's pending-request variable in
both statements until the kernel's name is known."""
from __future__ import annotations

from dataclasses import dataclass

from .kernel import c_type

PENDING = "SF_PENDING"
MPI_TYPES = {"float32": "MPI_FLOAT", "float64": "MPI_DOUBLE", "int8": "MPI_INT8_T", "int16": "MPI_INT16_T",
             "int32": "MPI_INT32_T", "int64": "MPI_INT64_T", "uint8": "MPI_UINT8_T", "uint32": "MPI_UINT32_T",
             "uint64": "MPI_UINT64_T", "bool": "MPI_UINT8_T"}
MAX_COUNT = 2 ** 31 - 1        # MPI's int counts


@dataclass(frozen=True)
class MpiHelper:
    """The include every collective kernel puts before itself (as ``c_library.Helper``)."""
    name: str = "sf_mpi"
    template: str = "mpi_include.c.j2"
    params: tuple = ()

    def values(self) -> dict:
        return {"name": self.name}


MPI = (MpiHelper(),)


@dataclass(frozen=True)
class CollectiveCall:
    code: str
    helpers: tuple = MPI
    wait: str = ""
    collective: bool = True


def _type(v, op) -> str:
    t = MPI_TYPES.get(v.dtype.name)
    if t is None:
        raise NotImplementedError(f"{op.opdef.name}: MPI has no type for {v.dtype}")
    if type(v.type.size) is int and v.type.size > MAX_COUNT:     # a run-time count is checked by the call
        raise NotImplementedError(f"{op.opdef.name}: {v.type.size} elements exceed MPI's int count")
    return t


def _divisor(op) -> tuple[int, int]:
    """(divide by, is double) of the reduction: the mean divides the sum by the ranks."""
    out = op.outputs[0]
    return (op.attrs["world"] if op.attrs["op"] == "mean" else 1), int(out.dtype.name == "float64")


def lower_allreduce(op, ins, outs, hints):
    out = op.outputs[0]
    d, dbl = _divisor(op)
    return CollectiveCall(f"sf_mpi_allreduce({ins[0]}, {outs[0]}, {out.type.size}, {_type(out, op)}, {d}, {dbl});")


def lower_broadcast(op, ins, outs, hints):
    out = op.outputs[0]
    return CollectiveCall(f"sf_mpi_broadcast({ins[0]}, {outs[0]}, {out.type.size}, {out.type.nbytes}, {_type(out, op)}, "
                          f"{op.attrs['root']});")


def lower_reduce(op, ins, outs, hints):
    out = op.outputs[0]
    return CollectiveCall(f"sf_mpi_reduce({ins[0]}, {outs[0]}, {out.type.size}, {out.type.nbytes}, {_type(out, op)}, "
                          f"{op.attrs['root']});")


def lower_allgather(op, ins, outs, hints):
    x = op.inputs[0]
    return CollectiveCall(f"sf_mpi_allgather({ins[0]}, {outs[0]}, {x.type.size}, {_type(op.outputs[0], op)});")


def lower_reduce_scatter(op, ins, outs, hints):
    out = op.outputs[0]
    return CollectiveCall(f"sf_mpi_reduce_scatter({ins[0]}, {outs[0]}, {out.type.size}, {_type(out, op)});")


def lower_allreduce_bucket(op, ins, outs, hints):
    """The operands copied back to back into the result, reduced there in place."""
    out = op.outputs[0]
    ct = c_type(out.dtype)
    copies, off = [], 0
    for v, p in zip(op.inputs, ins):
        copies.append(f"memcpy((void*)(({ct}*){outs[0]} + {off}), (const void*)({p}), {v.type.nbytes});")
        off += v.type.size
    d, dbl = _divisor(op)
    t = _type(out, op)
    if not op.attrs["overlap"]:
        return CollectiveCall("{ " + " ".join(copies)
                              + f" sf_mpi_allreduce({outs[0]}, {outs[0]}, {out.type.size}, {t}, {d}, {dbl}); }}")
    return CollectiveCall("{ " + " ".join(copies)
                          + f" sf_mpi_iallreduce(&{PENDING}, {outs[0]}, {out.type.size}, {t}, {d}, {dbl}); }}",
                          wait=f"sf_mpi_wait(&{PENDING});")


COLLECTIVE = {
    "allreduce": lower_allreduce,
    "allreduce_bucket": lower_allreduce_bucket,
    "broadcast": lower_broadcast,
    "reduce": lower_reduce,
    "allgather": lower_allgather,
    "reduce_scatter": lower_reduce_scatter,
}
