"""Lower a fused partition to one CUDA translation unit.

The kernel groups, their statements and index arithmetic are the cpu
backend's (``c_module.build_kernel``): the scalar statements are C that is
also valid CUDA C++. What differs is the scaffolding, in
``symfuse/templates/cuda``: a pointwise group becomes a grid-stride loop over
its flat output index (the loop variables of the C loop nest are recovered by
div/mod with literal sizes); a reduction gives each output element to a warp
(or, for few long reductions, a block), lanes stride over the reduced
elements, and a fixed shuffle tree combines them, so results do not depend on
scheduling; library ops lower through ``cuda_library`` to launches of
``runtime.cuh`` device functions. Launch shapes are decided here and passed
to the templates as numbers.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

from ..compiler.fusion import KernelGroup, Partition
from . import c_module
from ..compiler.kernel_info import KernelResources
from .c_module import KernelInfo, c_type
from .templates_cache import template

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates", "cuda")
BLOCK = 256                 # threads per block of pointwise kernels
WARPS_PER_BLOCK = 8         # outputs per block of warp-per-output reductions
BLOCK_REDUCE_MIN = 1 << 16  # reduced elements per output from which a whole block takes one output
INT_INDEX_LIMIT = 1 << 30   # iteration spaces and tensors up to this many elements use 32-bit indices


@dataclass
class LaunchSpec:
    kernel: str                     # extern "C" name in the module
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0
    scratch: bool = False           # takes the group's scratch pointer after the tensors (null when unused)
    library: bool = False           # a kernel of the precompiled library (runtime/cuda_runtime.py), not the unit's
    args: tuple = ()                # scalar arguments after the pointers: (value, C type) each (library kernels)


@dataclass
class CudaKernel:
    """One fused group on the GPU: its source text and the launches that run it.

    ``group``, ``inputs`` and ``outputs`` are IR objects, there only while the
    backend builds the module; everything ``f.kernels`` shows is plain data, so
    a graph-cache hit restores the same class (``to_plain``/``from_plain``)
    with ``group=None`` and no inputs or outputs."""
    name: str
    kind: str
    group: KernelGroup | None
    inputs: list
    outputs: list
    provenance: list[str]
    source: str = ""
    launches: list[LaunchSpec] = field(default_factory=list)
    scratch_bytes: int = 0
    size: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    fused_ops: list[str] = field(default_factory=list)   # op names of the group, schedule order
    parts: list = field(default_factory=list)   # a multi kernel's parts (CudaKernel each, __device__ functions)
    # kernel name -> nvrtc.KernelResources (after compile): see the ``resources`` property
    _resources: dict | None = field(default=None, repr=False, compare=False)
    _plain_resources: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if not self.fused_ops and self.group is not None:
            self.fused_ops = [op.opdef.name for op in self.group.ops]

    @property
    def resources(self) -> dict:
        """Launch kernel name -> nvrtc.KernelResources (registers, shared memory,
        spills; None for a kernel ptxas did not report). Empty under cuda-emu.
        A restored kernel builds them on first read."""
        if self._resources is None:
            plain, self._resources = self._plain_resources, {}
            if plain:
                self._resources = {n: (KernelResources(**r) if r is not None else None) for n, r in plain.items()}
        return self._resources

    @resources.setter
    def resources(self, value: dict) -> None:
        self._resources, self._plain_resources = value, None

    # ------------------------------------------------------------- graph cache
    _PLAIN = ("name", "kind", "provenance", "source", "scratch_bytes", "size", "bytes_read", "bytes_written",
              "fused_ops")

    def to_plain(self) -> dict:
        """Everything but the IR objects, as plain Python data (picklable without symfuse classes)."""
        d = {f: getattr(self, f) for f in self._PLAIN}
        d["provenance"], d["fused_ops"] = list(self.provenance), list(self.fused_ops)
        d["launches"] = [(ln.kernel, tuple(ln.grid), tuple(ln.block), ln.shared_bytes, ln.scratch, ln.library,
                          tuple(ln.args)) for ln in self.launches]
        d["resources"] = {n: (dict(vars(r)) if r is not None else None) for n, r in self.resources.items()}
        d["parts"] = [p.to_plain() for p in self.parts]
        return d

    @classmethod
    def from_plain(cls, d: dict) -> "CudaKernel":
        """The kernel ``to_plain`` described, without its IR (``group`` None, no inputs/outputs)."""
        k = cls(d["name"], d["kind"], None, [], [], list(d["provenance"]),
                **{f: d[f] for f in cls._PLAIN[3:]})
        k.launches = [LaunchSpec(n, tuple(g), tuple(b), s, sc, lib, tuple(tuple(a) for a in args))
                      for n, g, b, s, sc, lib, args in d["launches"]]
        k._plain_resources = d["resources"]     # made KernelResources when first read
        k.parts = [cls.from_plain(p) for p in d.get("parts", ())]
        return k

    # ---------------------------------------------------------------- inspection
    program = None          # the CudaProgram this kernel belongs to (set by the backend)

    @property
    def in_library(self) -> bool:
        """Every launch runs a kernel of the precompiled library (none is in the unit)."""
        return bool(self.launches) and all(ln.library for ln in self.launches)

    @property
    def cubin(self) -> bytes | None:
        """The CUBIN of the unit that holds this kernel (NVRTC compiles a function
        as one unit, or as several in parallel when it is large), or of the
        library image holding its library kernel."""
        if self.program is None:
            return None
        if self.in_library:
            return self.program.library_image(self.launches[0].kernel)
        return self.program.cubin_of(self.name)

    @property
    def ptx(self) -> str:
        """This kernel's PTX (``.entry`` of each of its launches), compiled on demand
        by the program that holds it."""
        text = self.program.ptx_of(self)
        return _sections(text, [ln.kernel for ln in self.launches], ".entry ", "\n}\n")

    @property
    def sass(self) -> str:
        """This kernel's SASS, disassembled by nvdisasm (``pip install nvidia-cuda-nvdisasm``)."""
        if self.cubin is None:
            raise ValueError("no CUBIN: this function was compiled for cuda-emu")
        text = self.program.sass_of(self.cubin)
        return _sections(text, [ln.kernel for ln in self.launches], ".text.", "\n\n\t\t.section")

    @property
    def launch_config(self) -> list[dict]:
        out = []
        for ln in self.launches:
            d = {"kernel": ln.kernel, "grid": ln.grid, "block": ln.block, "shared_bytes": ln.shared_bytes}
            if ln.library:
                d["library"], d["args"] = True, [v for v, _ in ln.args]
            out.append(d)
        return out

    def info(self) -> KernelInfo:
        return KernelInfo(self.name, self.kind, self.fused_ops, self.provenance, self.source, self.size, True,
                          self.bytes_read, self.bytes_written)


def _template(name: str):
    return template(TEMPLATE_DIR, name)


def _signature(inputs, outputs, scratch: bool) -> str:
    for v in list(inputs) + list(outputs):
        if v.dtype.name == "float16":
            raise NotImplementedError("the cuda backend has no float16 kernels yet")
    ins = [f"const {c_type(v.dtype)}* __restrict__ in{k}" for k, v in enumerate(inputs)]
    outs = [f"{c_type(v.dtype)}* __restrict__ out{k}" for k, v in enumerate(outputs)]
    return ", ".join(ins + outs + (["char* __restrict__ scratch"] if scratch else [])) or "void"


def _unflatten(loops, flat: str) -> list[tuple[str, str]]:
    """(var, expression) recovering each loop variable from a flat index."""
    out, stride = [], 1
    for v, n in reversed(loops):
        e = flat if stride == 1 else f"({flat} / {stride})"
        out.append((v, e if stride * n == math.prod(m for _, m in loops) else f"({e} % {n})"))
        stride *= n
    return out[::-1]


def _sections(text: str, names: list[str], start: str, end: str) -> str:
    """The parts of a PTX/SASS listing that belong to the named kernels."""
    out = []
    for n in names:
        i = text.find(start + n)
        if i < 0:
            continue
        j = text.find(end, i)
        out.append(text[i:j + 1 if j >= 0 else len(text)])
    return "\n".join(out) if out else text


def _vector_body(spec) -> dict | None:
    """16-byte loads and stores for a float32 pointwise kernel whose every load and
    its store are at the flat index itself (no broadcast, no view) and whose size is
    a multiple of 4: four elements per thread through float4. The arena and device
    allocations are 64-byte aligned, so every such buffer is 16-byte aligned."""
    stmts = spec.stmts
    if spec.size % 4 or not stmts or not isinstance(stmts[-1], c_module.Store) or stmts[-1].buf != "out0":
        return None
    if any(v.dtype.name != "float32" for v in list(spec.inputs) + list(spec.outputs)):
        return None
    loads, body = [], []
    for st in stmts[:-1]:
        if isinstance(st, c_module.Load) and st.index == "i":
            loads.append(st)
        elif isinstance(st, c_module.Compute) and "[" not in st.template:
            body.append(st)
        else:
            return None        # a load at another index, a second output, a table: scalar path
    lanes = []
    for c in "xyzw":
        rename = {st.var: f"{st.var}_{c}" for st in loads + body}
        lanes.append({"c": c, "loads": [(rename[st.var], f"{st.buf}_4.{c}") for st in loads],
                      "body": [str(st.renamed(rename)) for st in body],
                      "result": rename.get(stmts[-1].var, stmts[-1].var)})
    return {"n4": spec.size // 4, "inputs": sorted({st.buf for st in loads}), "lanes": lanes}


def _index_type(spec) -> str:
    """``int`` for the flat and loop indices when every tensor and the iteration
    space fit well within 31 bits, else ``int64_t``: 64-bit division by the
    literal sizes is a longer instruction sequence, and NVRTC took 0.53 s for the
    LeNet-5 update kernel with 64-bit indices, 0.30 s with 32-bit ones."""
    space = spec.size * max(1, getattr(spec, "reduce_size", 1) or 1)
    sizes = [space] + [v.type.size for v in list(spec.inputs) + list(spec.outputs)]
    return "int" if max(sizes) <= INT_INDEX_LIMIT else "int64_t"


def _grid(blocks: int, max_blocks: int) -> tuple[int, int, int]:
    return (max(1, min(blocks, max_blocks)), 1, 1)


def build(group: KernelGroup, partition: Partition, resolve, max_blocks: int, unique=lambda n: n,
          library: bool = True) -> CudaKernel:
    """The CUDA kernel of one group. ``max_blocks`` caps grid-stride grids (a
    GPU wants a few waves of blocks; the emulator runs faster with fewer);
    ``unique`` makes the kernel name unique within its module; ``library``:
    launch the precompiled library's kernels where it has them."""
    if group.kind == "library":
        return _build_library(group, partition, resolve, unique, library)
    spec = c_module.build_kernel(group, partition, resolve, None)
    spec.name = unique(spec.name)
    if spec.kind == "multi":
        return _build_multi(group, spec, max_blocks)
    return _render(group, spec, max_blocks)


def _render(group, spec, max_blocks: int, part: bool = False) -> CudaKernel:
    """A pointwise or reduce spec as a ``__global__`` kernel with its launch or,
    with ``part``, as a ``__device__`` function of a multi kernel (its block
    index and block count as arguments; the launch is what it would need alone)."""
    k = CudaKernel(spec.name, spec.kind, group, spec.inputs, spec.outputs, spec.provenance, size=spec.size)
    sig = _signature(k.inputs, k.outputs, False)
    idx = _index_type(spec)
    if spec.kind == "pointwise":
        loops = spec.loops
        unflat = [] if len(loops) == 1 and loops[0][0] == "i" else _unflatten(loops, "i")
        vec = _vector_body(spec)
        k.source = _template("pointwise.cu.j2").render(k=spec, signature=sig, unflatten=unflat, block=BLOCK, vec=vec,
                                                       part=part, idx=idx)
        per_thread = 4 if vec else 1
        k.launches = [LaunchSpec(k.name, _grid(-(-spec.size // (BLOCK * per_thread)), max_blocks), (BLOCK, 1, 1))]
    else:
        per_block = spec.reduce_size >= BLOCK_REDUCE_MIN and spec.size < 64
        threads = BLOCK if per_block else 32
        outs_per_block = 1 if per_block else WARPS_PER_BLOCK
        shfl = spec.acc_type if spec.acc_type in ("float", "double", "int32_t", "int64_t", "uint32_t",
                                                   "uint64_t") else "int"
        k.source = _template("reduce.cu.j2").render(
            k=spec, signature=sig, block_reduce=per_block, shfl=shfl, threads=threads, outs_per_block=outs_per_block,
            part=part, idx=idx, ounflat=_unflatten(spec.oloops, "o") if spec.oloops else [],
            runflat=_unflatten(spec.rloops, "r") if spec.rloops else [])
        k.launches = [LaunchSpec(k.name, _grid(-(-spec.size // outs_per_block), max_blocks),
                                 (threads * outs_per_block if not per_block else threads, 1, 1))]
    k.bytes_read = sum(v.type.nbytes for v in k.inputs)
    k.bytes_written = sum(v.type.nbytes for v in k.outputs)
    return k


def _build_multi(group, spec, max_blocks: int) -> CudaKernel:
    """A horizontal group as ONE launch: each part is a ``__device__`` function
    given a contiguous range of the grid's blocks (as many as it would launch
    alone); every part runs 256-thread blocks, so one block shape serves all."""
    parts = []
    for j, p in enumerate(spec.parts):
        p.name = f"{spec.name}_p{j}"
        parts.append(_render(p.group, p, max_blocks, part=True))
    pos = {id(v): j for j, v in enumerate(spec.inputs)}
    calls, first, o = [], 0, 0
    for p in parts:
        assert p.launches[0].block == (BLOCK, 1, 1), p.launches[0]
        n = p.launches[0].grid[0]
        args = [f"in{pos[id(v)]}" for v in p.inputs] + [f"out{o + j}" for j in range(len(p.outputs))]
        calls.append((first + n, p.name, ", ".join(args + [f"b - {first}", str(n)])))
        first, o = first + n, o + len(p.outputs)
    k = CudaKernel(spec.name, "multi", group, spec.inputs, spec.outputs, spec.provenance, size=spec.size,
                   parts=parts)
    k.source = _template("multi.cu.j2").render(k=spec, parts=parts, calls=calls, block=BLOCK,
                                               signature=_signature(k.inputs, k.outputs, False))
    k.launches = [LaunchSpec(k.name, (first, 1, 1), (BLOCK, 1, 1))]
    k.bytes_read = sum(v.type.nbytes for v in k.inputs)
    k.bytes_written = sum(v.type.nbytes for v in k.outputs)
    return k


def _build_library(group: KernelGroup, partition: Partition, resolve, unique, library: bool) -> CudaKernel:
    from .cuda_library import CUDA_LIBRARY, LIB_KERNELS
    op = group.root
    lower = CUDA_LIBRARY.get(op.opdef.name)
    if lower is None:
        raise NotImplementedError(f"the cuda backend has no kernel for op {op.opdef.name!r}")
    ins = [resolve(v) for v in op.inputs]
    uniq = c_module._dedupe(ins)
    pos = {id(v): j for j, v in enumerate(uniq)}
    hints = {}
    for j, v in enumerate(op.inputs[:2]):
        if v.op is not None and id(v.op) in partition.folded_views and v.op.opdef.name == "transpose":
            hints["trans_" + "ab"[j]] = True
            hints["ab"[j] + "_shape"] = v.op.inputs[0].type.shape
    lowering = lower(op, [f"in{pos[id(v)]}" for v in ins], [f"out{j}" for j in range(len(op.outputs))], hints)
    use_lib = library and bool(lowering.launches) and all(ln.lib is not None for ln in lowering.launches)
    # a library kernel takes one pointer per operand (x @ x passes x twice); a unit kernel one per distinct buffer
    kins = ins if use_lib else uniq
    name = unique(f"L_{c_module._shape_tag(op.outputs[0].type.shape)}_{op.opdef.name}")
    prov = c_module._provenance(group.ops)
    k = CudaKernel(name, "library", group, kins, list(op.outputs), prov, size=op.outputs[0].type.size,
                   scratch_bytes=lowering.scratch_bytes)
    scratch = lowering.scratch_bytes > 0
    if use_lib:
        for launch in lowering.launches:
            lk = LIB_KERNELS[launch.lib.kernel]
            k.launches.append(LaunchSpec(lk.name, tuple(launch.grid), tuple(launch.block), launch.shared_bytes,
                                         lk.scratch, True, tuple(launch.lib.args)))
        calls = [f"{ln.kernel}<<<{ln.grid}, {ln.block}>>>({', '.join(str(v) for v, _ in ln.args)})"
                 for ln in k.launches]
        k.source = (f"/* {name}: runtime-library op, {len(calls)} launch(es) of precompiled library kernels\n" +
                    "".join(f" *   {line}\n" for line in prov) + "".join(f" *   {c}\n" for c in calls) + " */\n" +
                    library_source(dict.fromkeys(ln.kernel for ln in k.launches), header=False))
    else:
        sig = _signature(k.inputs, k.outputs, scratch)
        parts = []
        for j, launch in enumerate(lowering.launches):
            kname = name if len(lowering.launches) == 1 else f"{name}_s{j}"
            parts.append((kname, launch.body))
            k.launches.append(LaunchSpec(kname, tuple(launch.grid), tuple(launch.block), launch.shared_bytes,
                                         scratch))
        k.source = _template("library.cu.j2").render(name=name, provenance=prov, parts=parts, signature=sig)
    k.bytes_read = sum(v.type.nbytes for v in uniq)
    k.bytes_written = sum(v.type.nbytes for v in k.outputs)
    return k


@functools.lru_cache(maxsize=None)
def library_kernel_source(name: str) -> str:
    """The source of one precompiled library kernel (``lib_kernel.cu.j2``)."""
    from .cuda_library import LIB_KERNELS, LIB_MATMUL_ND, LIB_POOL
    return _template("lib_kernel.cu.j2").render(k=LIB_KERNELS[name], nd=LIB_MATMUL_ND, pool=LIB_POOL)


def library_source(names, header: bool = True, part: int = 0, version: str = "") -> str:
    """A translation unit of the named library kernels (``header``: with the
    ``#include "runtime.cuh"`` scaffolding of ``lib.cu.j2``)."""
    sources = [library_kernel_source(n) for n in names]
    if not header:
        return "\n".join(sources)
    return _template("lib.cu.j2").render(sources=sources, part=part, version=version)


def render_module(name: str, version: str, kernels: list[CudaKernel]) -> str:
    """The unit of the kernels NVRTC compiles for this function: library-launched
    kernels are left out (they are in the precompiled library)."""
    kernels = [k for k in kernels if not k.in_library]
    return _template("module.cu.j2").render(name=name, version=version, kernels=kernels,
                                            library=any(k.kind == "library" for k in kernels))
