"""The CUDA renderer (``device="cuda"`` / ``"cuda-emu"``): kernel records to
``extern "C" __global__`` kernels and their launches, from ``templates/cuda``.

The scalar statements of a record are C that is also valid CUDA C++; what
differs from the C renderer is the scaffolding. A pointwise kernel is a
grid-stride loop over its flat output index (the loop variables recovered by
div/mod with literal sizes); a reduction gives each output element to a warp
(or, for few long reductions, a block), lanes stride over the reduced elements
and a fixed shuffle tree combines them, so results do not depend on
scheduling; a multi kernel is one launch whose parts are ``__device__``
functions; a library op runs the launches its lowering chose
(``cuda_library``), or kernels of the precompiled library. Launch shapes are
decided here and passed to the templates as numbers.
"""
from __future__ import annotations

import functools
import math

from ..compiler.kernel_info import KernelInfo, LaunchSpec
from ..install_dirs import CUDA_TEMPLATE_DIR
from ..ir.symdim import C_PREFIX, SymInt
from .kernel import Compute, Kernel, LibraryCall, Load, Store
from .render import Renderer
from .templates_cache import template

BLOCK = 256                 # threads per block of pointwise kernels
WARPS_PER_BLOCK = 8         # outputs per block of warp-per-output reductions
BLOCK_REDUCE_MIN = 1 << 16  # reduced elements per output from which a whole block takes one output
INT_INDEX_LIMIT = 1 << 30   # iteration spaces and tensors up to this many elements use 32-bit indices
SHUFFLE_TYPES = ("float", "double", "int32_t", "int64_t", "uint32_t", "uint64_t")   # __shfl_down_sync's own


class CudaRenderer(Renderer):
    """``max_blocks`` caps grid-stride grids (a GPU wants a few waves of blocks;
    the emulator runs faster with fewer); ``library``: a library op launches the
    precompiled library's kernels where it has them."""

    device = "cuda"
    template_dir = CUDA_TEMPLATE_DIR
    restrict = "__restrict__"
    vector_loads = True

    def __init__(self, max_blocks: int, library: bool = True, dims=()):
        self.max_blocks = max_blocks
        self.precompiled_library = library
        # run-time sizes: every unit kernel takes them as its last parameters, so that a
        # size printed as C (sf_dim_batch) is in scope; the host passes the call's values
        self.dims = tuple(dims)
        self.dim_params = [f"int64_t {C_PREFIX}{d}" for d in self.dims]

    def lower_library(self, op, ins, outs, hints) -> LibraryCall:
        from .cuda_library import CUDA_LIBRARY
        lower = CUDA_LIBRARY.get(op.opdef.name)
        if lower is None:
            raise NotImplementedError(f"the {self.device} backend has no kernel for op {op.opdef.name!r}")
        low = lower(op, ins, outs, hints)
        precompiled = (self.precompiled_library and bool(low.launches)
                       and all(ln.lib is not None for ln in low.launches))
        return LibraryCall(op.opdef.name, launches=tuple(low.launches), scratch_bytes=low.scratch_bytes,
                           precompiled=precompiled, collective=low.collective)

    def params(self, kernel: Kernel, aliased: bool = False) -> list[str]:
        for b in kernel.inputs + kernel.outputs:
            if b.dtype.name == "float16":
                raise NotImplementedError("the cuda backend has no float16 kernels yet")
        return super().params(kernel, aliased)

    def signature(self, kernel: Kernel, aliased: bool = False) -> str:
        return ", ".join(self.params(kernel, aliased) + self.dim_params) or "void"

    def render(self, kernel: Kernel, aliased: bool = False, part: bool = False) -> KernelInfo:
        """``part``: as a ``__device__`` function of a multi kernel (its block index
        and block count as arguments; its launch is what it would need alone)."""
        if kernel.kind == "multi":
            return self._multi(kernel, aliased)
        if kernel.kind == "library":
            return self._library(kernel, aliased)
        if kernel.kind == "pointwise":
            return self._pointwise(kernel, aliased, part)
        return self._reduce(kernel, aliased, part)

    def _grid(self, blocks: int) -> tuple[int, int, int]:
        if type(blocks) is SymInt:      # the executor caps it per call (cuda_schedule.at_sizes)
            return (blocks, 1, 1)
        return (max(1, min(blocks, self.max_blocks)), 1, 1)

    def _pointwise(self, k: Kernel, aliased: bool, part: bool) -> KernelInfo:
        loops = k.loops
        unflat = [] if len(loops) == 1 and loops[0].var == "i" else _unflatten(loops, "i")
        vec = _vector_body(k) if self.vector_loads else None
        source = self.template("pointwise.cu.j2").render(k=k, signature=self.signature(k, aliased), unflatten=unflat,
                                                         block=BLOCK, vec=vec, part=part, idx=_index_type(k))
        per_thread = 4 if vec else 1
        launch = LaunchSpec(k.name, self._grid(_cdiv(k.size, BLOCK * per_thread)), (BLOCK, 1, 1))
        return self.info(k, source, True, launches=[launch])

    def _reduce(self, k: Kernel, aliased: bool, part: bool) -> KernelInfo:
        r = k.reduction
        per_block = r.size >= BLOCK_REDUCE_MIN and k.size < 64
        threads = BLOCK if per_block else 32
        outs_per_block = 1 if per_block else WARPS_PER_BLOCK
        source = self.template("reduce.cu.j2").render(
            k=k, r=r, signature=self.signature(k, aliased), block_reduce=per_block,
            shfl=r.acc_type if r.acc_type in SHUFFLE_TYPES else "int", threads=threads,
            outs_per_block=outs_per_block, part=part, idx=_index_type(k),
            ounflat=_unflatten(r.oloops, "o") if r.oloops else [], runflat=_unflatten(r.rloops, "r") if r.rloops else [])
        launch = LaunchSpec(k.name, self._grid(_cdiv(k.size, outs_per_block)),
                            (threads * outs_per_block if not per_block else threads, 1, 1))
        return self.info(k, source, True, launches=[launch])

    def _multi(self, k: Kernel, aliased: bool) -> KernelInfo:
        """A horizontal group as ONE launch: each part is a ``__device__`` function
        given a contiguous range of the grid's blocks (as many as it would launch
        alone); every part runs 256-thread blocks, so one block shape serves all."""
        parts = [self.render(p.kernel, part=True) for p in k.parts]
        calls, first = [], 0
        for p, info in zip(k.parts, parts):
            assert info.launches[0].block == (BLOCK, 1, 1), info.launches[0]
            n = info.launches[0].grid[0]
            if type(n) is SymInt:       # a part's range of blocks is fixed at compile time: it loops grid-stride
                n = self.max_blocks
            args = [f"in{j}" for j in p.inputs] + [f"out{j}" for j in p.outputs] + [C_PREFIX + d for d in self.dims]
            calls.append((first + n, info.name, ", ".join(args + [f"b - {first}", str(n)])))
            first += n
        source = self.template("multi.cu.j2").render(k=k, parts=parts, calls=calls, block=BLOCK,
                                                     signature=self.signature(k, aliased))
        return self.info(k, source, True, parts, [LaunchSpec(k.name, (first, 1, 1), (BLOCK, 1, 1))])

    def _library(self, k: Kernel, aliased: bool) -> KernelInfo:
        lib = k.library
        if lib.collective:
            source = (f"/* {k.name}: collective, run by the host between launches (MPI through mpi4py)\n"
                      + "".join(f" *   {line}\n" for line in k.provenance) + " */\n")
            info = self.info(k, source, False)
            info.kind = "collective"
            return info
        if lib.precompiled:
            from .cuda_lib_kernels import LIB_KERNELS
            launches = []
            for ln in lib.launches:
                lk = LIB_KERNELS[ln.lib.kernel]
                launches.append(LaunchSpec(lk.name, tuple(ln.grid), tuple(ln.block), ln.shared_bytes, lk.scratch, True,
                                           tuple(ln.lib.args)))
            calls = [f"{ln.kernel}<<<{ln.grid}, {ln.block}>>>({', '.join(str(v) for v, _ in ln.args)})"
                     for ln in launches]
            source = (f"/* {k.name}: runtime-library op, {len(calls)} launch(es) of precompiled library kernels\n" +
                      "".join(f" *   {line}\n" for line in k.provenance) + "".join(f" *   {c}\n" for c in calls) +
                      " */\n" + "\n".join(library_kernel_source(n) for n in dict.fromkeys(ln.kernel for ln in launches)))
            return self.info(k, source, True, launches=launches, scratch_bytes=lib.scratch_bytes)
        scratch = lib.scratch_bytes > 0
        sig = ", ".join(self.params(k, aliased) + (["char*" + ("" if aliased else " __restrict__") + " scratch"]
                                                  if scratch else []) + self.dim_params) or "void"
        parts, launches = [], []
        for j, ln in enumerate(lib.launches):
            kname = k.name if len(lib.launches) == 1 else f"{k.name}_s{j}"
            parts.append((kname, ln.body))
            launches.append(LaunchSpec(kname, tuple(ln.grid), tuple(ln.block), ln.shared_bytes, scratch))
        source = self.template("library.cu.j2").render(name=k.name, provenance=k.provenance, parts=parts,
                                                       signature=sig)
        return self.info(k, source, True, launches=launches, scratch_bytes=lib.scratch_bytes)


@functools.lru_cache(maxsize=None)
def library_kernel_source(name: str) -> str:
    """The source of one precompiled library kernel (``lib_kernel.cu.j2``)."""
    from .cuda_lib_kernels import LIB_KERNELS, LIB_MATMUL_ND, LIB_POOL
    return template(CUDA_TEMPLATE_DIR, "lib_kernel.cu.j2").render(k=LIB_KERNELS[name], nd=LIB_MATMUL_ND, pool=LIB_POOL)


def _cdiv(a, b):
    return (a + b - 1) // b if type(a) is SymInt else -(-a // b)


def _unflatten(loops, flat: str) -> list[tuple[str, str]]:
    """(var, expression) recovering each loop variable from a flat index."""
    out, stride = [], 1
    for v, n in reversed(loops):
        e = flat if stride == 1 else f"({flat} / {stride})"
        out.append((v, e if stride * n == math.prod(m for _, m in loops) else f"({e} % {n})"))
        stride *= n
    return out[::-1]


def _vector_body(k: Kernel) -> dict | None:
    """16-byte loads and stores for a float32 pointwise kernel whose every load and
    its store are at the flat index itself (no broadcast, no view) and whose size is
    a multiple of 4: four elements per thread through float4. The arena and device
    allocations are 64-byte aligned, so every such buffer is 16-byte aligned."""
    stmts = k.stmts
    if type(k.size % 4) is SymInt or k.size % 4 or not stmts or not isinstance(stmts[-1], Store) or stmts[-1].buf != "out0":
        return None
    if any(b.dtype.name != "float32" for b in k.inputs + k.outputs):
        return None
    loads, body = [], []
    for st in stmts[:-1]:
        if isinstance(st, Load) and st.index == "i":
            loads.append(st)
        elif isinstance(st, Compute) and "[" not in st.template:
            body.append(st)
        else:
            return None        # a load at another index, a second output, a table: scalar path
    lanes = []
    for c in "xyzw":
        rename = {st.var: f"{st.var}_{c}" for st in loads + body}
        lanes.append({"c": c, "loads": [(rename[st.var], f"{st.buf}_4.{c}") for st in loads],
                      "body": [str(st.renamed(rename)) for st in body],
                      "result": rename.get(stmts[-1].var, stmts[-1].var)})
    return {"n4": k.size // 4, "inputs": sorted({st.buf for st in loads}), "lanes": lanes}


def _index_type(k: Kernel) -> str:
    """``int`` for the flat and loop indices when every tensor and the iteration
    space fit well within 31 bits, else ``int64_t``: 64-bit division by the
    literal sizes is a longer instruction sequence, and NVRTC took 0.53 s for the
    LeNet-5 update kernel with 64-bit indices, 0.30 s with 32-bit ones."""
    space = k.size * max(1, k.reduction.size if k.reduction is not None else 1)
    sizes = [space] + [b.size for b in k.inputs + k.outputs]
    if any(type(s) is SymInt for s in sizes):
        return "int64_t"    # a run-time size may grow past 31 bits
    return "int" if max(sizes) <= INT_INDEX_LIMIT else "int64_t"
