"""What every family of the CUDA library lowering shares (``cuda_library.py``
describes the lowering; ``cuda_library_gemm.py``, ``cuda_library_nn.py`` and
``cuda_library_data.py`` hold the families): the launch records, the launch
shape heuristics and the element and index types."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..ir.symdim import SymInt
from .cuda_lib_kernels import GEMM_TILES, LibCall, lits
from .kernel import c_type

INCLUDE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates", "cuda")
RUNTIME_HEADER = os.path.join(INCLUDE_DIR, "runtime.cuh")

BLOCK = 256                 # threads of element-wise style kernels
GRID_CAP = 4096             # blocks of grid-stride kernels (a few waves on the largest GPUs)
SM_COUNT = 132              # H100/H200: tile-count heuristics aim at a full wave
MAX_GRID_YZ = 65535
INT_LIMIT = 1 << 30         # extents up to this use 32-bit indexing
WARP_ROW_MAX = {"float": 1024, "double": 512}   # longest row a warp keeps in registers (32 / 16 a lane)
ROW_BLOCK = 512             # threads of a block-per-row kernel
ARG_BLOCK = 1024


@dataclass(frozen=True)
class Launch:
    body: str                          # the body of an extern "C" __global__ kernel (see cuda_library)
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0              # dynamic shared memory
    lib: LibCall | None = None         # set where a library kernel does the same with runtime sizes


@dataclass
class Lowering:
    launches: list[Launch] = field(default_factory=list)   # run in order
    scratch_bytes: int = 0             # device scratch needed during the launches
    collective: bool = False           # no launches: the host runs it between them (CollectiveStep)


NUMERIC = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64")


def element_type(dtype) -> str:
    """``c_type`` of a tensor any CUDA kernel takes (float16 has none yet)."""
    if dtype.name == "float16":
        raise NotImplementedError("the cuda backend has no float16 kernels yet")
    return c_type(dtype)


def numeric_type(dtype, op) -> str:
    if dtype.name not in NUMERIC:
        raise NotImplementedError(f"the CUDA runtime has no {op.opdef.name} for {dtype}")
    return c_type(dtype)


def float_type(dtype, op) -> str:
    if dtype.name not in ("float32", "float64"):
        raise NotImplementedError(f"the CUDA runtime implements {op.opdef.name} for float32/float64 only, "
                                  f"got {dtype}")
    return c_type(dtype)


def index_type(*sizes) -> str:
    """Index type for an op whose tensors / iteration spaces have these element counts:
    a run-time size may grow past 32 bits, so it takes the 64-bit kernels."""
    if any(type(s) is SymInt for s in sizes):
        return "int64_t"
    return "int" if max([1, *[int(s) for s in sizes]]) <= INT_LIMIT else "int64_t"


def cdiv(a, b) -> int:
    if type(a) is SymInt or type(b) is SymInt:
        return (a + b - 1) // b       # C's division truncates: the expression keeps to non-negative operands
    return -(-int(a) // int(b))


def capped(blocks, cap=GRID_CAP):
    """A grid-stride grid's blocks: a run-time count stays an expression, capped per call
    by the executor (``cuda_schedule.at_sizes``)."""
    return blocks if type(blocks) is SymInt else max(1, min(blocks, cap))


def grid_for(total, block=BLOCK) -> tuple[int, int, int]:
    return (capped(cdiv(total, block)), 1, 1)


def local_arrays(itype, **arrays) -> str:
    """Local constant arrays (``const I name[n] = {...};``) for the call that follows."""
    return " ".join(f"const {itype} {name}[{len(v)}] = {{{lits(v)}}};" for name, v in arrays.items())


def one_launch(body, grid, block, lib: LibCall | None = None) -> Lowering:
    return Lowering([Launch("{ " + body + " }", tuple(grid), tuple(block), lib=lib)])


def is_empty(op) -> bool:
    return any(o.type.size == 0 for o in op.outputs)


def elementwise(call: str, total: int, prelude: str = "", lib: LibCall | None = None) -> Lowering:
    return one_launch((prelude + " " if prelude else "") + call, grid_for(total), (BLOCK, 1, 1), lib)


def gemm_tile(rows, cols, nz, hints) -> tuple[int, int, int, int, int]:
    t = hints.get("tile")
    if t is None and any(type(x) is SymInt for x in (rows, cols, nz)):
        t = 64      # either tile is right for any size; the larger serves the large batches sizes are for
    if t is None:
        t = 64 if cdiv(rows, 64) * cdiv(cols, 64) * nz >= SM_COUNT else 32
    return GEMM_TILES[int(t)]


def gemm_launch(body, rows, cols, nz, cfg, lib: LibCall | None = None) -> Launch:
    bm, bn, _, tm, tn = cfg
    tiles = cdiv(rows, bm) * cdiv(cols, bn)
    return Launch("{ " + body + " }", (capped(tiles, (1 << 31) - 1), 1, capped(nz, MAX_GRID_YZ)),
                  ((bm // tm) * (bn // tn), 1, 1), lib=lib)
