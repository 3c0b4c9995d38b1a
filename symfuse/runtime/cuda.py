"""``device="cuda"`` and ``device="cuda-emu"``: the fused kernel groups of the
cpu backend (same fusion, same memory plan) rendered as one CUDA translation
unit from ``templates/cuda``.

* ``cuda``: NVRTC compiles the unit to CUBIN for ``arch`` (default: the GPU's,
  else sm_90) through the disk cache; this works on any machine, so
  ahead-of-time compilation needs no GPU. Calling the function needs PyCUDA and
  a GPU: the module is loaded from the CUBIN, one device arena holds every
  intermediate, kernels are launched in schedule order.
* ``cuda-emu``: the same source compiled by the host C++ compiler with the
  emulator header (``templates/cuda/emu.h``) and run on the CPU, one fiber
  per GPU thread. It is how CI checks the CUDA kernels numerically.

The GEMM-class library ops (matmul, the convolutions; float32, 32-bit
indexing) launch kernels of the precompiled runtime library
(``runtime/cuda_runtime.py``: sizes as kernel arguments, built once per
installation, NVRTC and arch; under cuda-emu a shared object of the same
source); the function's own NVRTC units hold the rest. ``sf.function(...,
library=False)`` keeps every kernel shape-specialised in the units.

Run-time sizes (``sf.tensor("x", ("batch", 784))``): the unit's kernels take
each size as a last ``int64_t sf_dim_<name>`` parameter, so the sizes printed
into them as C expressions resolve there; an op that depends on a size keeps
its shape-specialised body with those expressions and 64-bit indices (the
library kernels' divisor magic would be per call). Grids, the arena and the
results are expressions evaluated at each call (``CudaProgram.at``); a grid
that follows a size is capped per call (every kernel loops grid-stride).
``cuda_graph=True`` is refused for such a function, and it is not stored in
the graph cache.

Stages in the CompileReport (``Backend.compile`` runs them): fusion, codegen
(the kernels: their workspace feeds the plan), memory plan, cuda library (note
"built" or "found"), nvrtc (or emu compile). Both backends use the
graph-level cache (``runtime/function.py``): an entry holds the unit, the
kernels' plain data, the launch schedule, the run-time layout, the constants,
the CUBIN and which library build its library launches need (a miss when that
build is gone); a hit records "cuda library", "nvrtc" (cuda, no NVRTC call)
and "load" stages instead of fusion, codegen and the compiler.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..codegen import cuda_module, templates_cache
from ..compiler.kernel_info import CollectiveStep, ControlStep
from ..errors import CompileError, InputError
from ..ir.core import OPS
from ..ir.symdim import check_generated
from .backend import Backend
from .cache import jinja_bytecode_dir
from .cuda_program import CudaProgram, RunLayout, emu_factory
from .cuda_schedule import launched_kernels
from .toolchain import VERSION, gpu_arch, nvrtc_identity, workers as _workers

DEFAULT_ARCH = "sm_90"
GPU_MAX_BLOCKS = 4096     # grid-stride grids: a few waves on the largest GPUs
EMU_MAX_BLOCKS = 16       # the emulator runs threads one after another: fewer, longer threads


# NVRTC units: a function's kernels are split into units compiled in parallel
# (one thread each) when their estimated cost pays for a unit's fixed cost
# (~70 ms: parsing the headers, starting ptxas). Costs in units of a small
# pointwise kernel, from bench/bench_nvrtc.py and the LeNet-5 step: a
# shape-specialised tiled GEMM or implicit-GEMM convolution (float64, 64-bit
# indexing, library=False) costs ~8, another library kernel ~2, a multi kernel
# one per part (each part alone costs about a pointwise kernel: measured on the
# LeNet-5 update kernel, 9 parts 0.38 s, one part 0.06-0.11 s). Kernels that
# launch the precompiled library are in no unit (cost 0). Since the softmax family
# and one_hot moved into the library, the LeNet-5 step's units cost 18 and the
# MLP's 14: NVRTC took 158-218 ms in two units against 198-212 in one (LeNet-5),
# 122-160 against 138-158 (MLP), so a second unit pays from a cost of 14.
UNIT_MIN_COST = 7
# C type of a library kernel's scalar argument -> what the executors pass
SCALAR_DTYPES = {"int": np.int32, "unsigned": np.uint32, "int64_t": np.int64}
NULL_REF = ("null", 0, 0, np.uint8)     # an unused pointer argument (a library kernel's scratch)


def _kernel_cost(k) -> int:
    if getattr(k, "in_library", False):
        return 0
    if k.kind == "multi":       # its parts are inlined into one kernel: ptxas works through each
        return max(1, len(k.parts))
    if k.kind != "library":
        return 1
    return 8 if any(OPS[op].gemm_like for op in k.fused_ops if op in OPS) else 2


def split_units(kernels: list, workers: int) -> list[list]:
    """Kernels in at most ``workers`` units of balanced estimated cost (largest
    first onto the least loaded unit), schedule order kept within a unit."""
    costs = [_kernel_cost(k) for k in kernels]
    n = max(1, min(workers, len(kernels), sum(costs) // UNIT_MIN_COST))
    if n == 1:
        return [list(kernels)]
    load, unit = [0] * n, {}
    for i in sorted(range(len(kernels)), key=lambda i: -costs[i]):
        u = min(range(n), key=load.__getitem__)
        load[u] += costs[i]
        unit[i] = u
    return [[k for i, k in enumerate(kernels) if unit[i] == u] for u in range(n)]


@functools.lru_cache(maxsize=None)
def _nvrtc_available() -> bool:
    try:
        if not nvrtc_identity().startswith("nvrtc "):   # wheels installed: loading is left to the first compile
            import importlib.util
            return importlib.util.find_spec("cuda.bindings") is not None
        return True                                     # nvrtc_identity loaded it and read its version
    except Exception:  # noqa: BLE001 -- no bindings, no libnvrtc: not available
        return False


@functools.lru_cache(maxsize=None)
def _emu_identity() -> str:
    from . import cuda_emu
    cxx = cuda_emu.find_cxx()
    with open(cuda_emu.HEADER, "rb") as f:
        header = hashlib.sha256(f.read()).hexdigest()
    return "|".join([cxx[0] if cxx else "-", cxx[1] if cxx else "-", cuda_emu.VERSION, " ".join(cuda_emu.FLAGS),
                     header, os.uname().machine, str(EMU_MAX_BLOCKS)])


def _arg_refs(k, lay, constants):
    """How each kernel parameter is found at run time."""
    return _refs(list(k.inputs) + list(k.outputs), lay, constants)


def _refs(values, lay, constants):
    refs = []
    for v in values:
        w = lay.where.get(id(v))
        if w is None:       # a constant read as a buffer: uploaded once
            cid = constants.setdefault(id(v), (len(constants), np.ascontiguousarray(
                np.broadcast_to(v.op.attrs["value"], v.type.shape).astype(v.dtype.np))))[0]
            refs.append(("const", cid, v.type.nbytes, v.dtype.np))
        else:
            refs.append((w[0], w[1], v.type.nbytes, v.dtype.np))
    return refs


def _workspace(part, lowered) -> dict:
    """Arena bytes each library kernel asks for, by group index."""
    return {g.index: lk.kernel.scratch_bytes for g, lk in zip(part.groups, lowered)
            if lk is not None and lk.kernel.scratch_bytes}


def _control_step(lp, group, part, lay, constants, bodies) -> ControlStep:
    """The schedule step of a loop or branch (``compiler/loops.py``'s plan)."""
    from ..compiler.fusion import materialised
    from ..compiler.loops import slice_bytes
    op = group.root
    a = op.attrs
    nc, nx = a.get("carries", 0), a.get("sequences", 0)
    ins = _refs([materialised(v, part.folded_views) for v in op.inputs], lay, constants)
    outs = _refs(list(op.outputs), lay, constants)
    return ControlStep(op.opdef.name, tuple(ins), tuple(outs), lay.scratch.get(group.index, 0),
                       tuple(lp.carry_offsets), tuple(v.type.nbytes for v in op.inputs[:nc]), lp.carry_bytes,
                       lp.body_arena_offset, tuple(slice_bytes(v) for v in op.inputs[nc:nc + nx]),
                       tuple(slice_bytes(v) for v in op.outputs[nc:]), a.get("length", 0), a.get("reverse", False),
                       a.get("save", False), a.get("max_iterations", 0), tuple(bodies))


def _collective_step(group, part, lay, constants) -> CollectiveStep:
    from ..compiler.fusion import materialised
    op = group.root
    ins = _refs([materialised(v, part.folded_views) for v in op.inputs], lay, constants)
    return CollectiveStep(op.opdef.name, tuple(sorted(op.attrs.items())), tuple(ins),
                          tuple(_refs(list(op.outputs), lay, constants)))


ENTRY_FORMAT = 4      # of the graph-cache entry written by CudaBackend.export


class CudaBackend(Backend):
    options = {"arch": str, "library": bool, "cuda_graph": bool}
    graph_cache = True
    runtime_sizes = True      # kernels take the sizes as parameters; grids, arena and results follow each call

    def __init__(self, emulate: bool = False):
        self.emulate = emulate
        self.name = "cuda-emu" if emulate else "cuda"

    def missing(self) -> list[str]:
        if self.emulate:
            from .cuda_emu import find_cxx
            return [] if find_cxx() is not None else ["a C++ compiler (g++ or clang++) to build the emulated kernels"]
        if not _nvrtc_available():
            return ["NVRTC to compile CUDA: pip install 'symfuse[cuda]' (wheels only: no GPU, driver or CUDA "
                    "toolkit needed)"]
        return []

    def runnable(self) -> bool:
        """Can call (not only compile) here: for ``cuda``, PyCUDA and a GPU."""
        return self.available() and (self.emulate or gpu_arch() is not None)

    # hooks of Backend.compile
    codegen_before_plan = True    # a library kernel's workspace is known once the kernel is built
    load_stage = None             # the executor loads on the first call (cuda-emu: in "emu compile")

    def begin(self, job) -> None:
        templates_cache.fallback_dir = jinja_bytecode_dir
        if job.sizes and job.options.get("cuda_graph"):
            # a graph fixes its launches' grids, arguments and buffers: one per size would be
            # re-captured and kept for every batch a caller tries
            raise InputError(f"function: cuda_graph=True captures fixed launch sizes, and the run-time size "
                             f"{job.sizes.names[0]!r} changes them per call; compile without cuda_graph, or "
                             f"give the input a number for the size")
        job.arch = job.options.get("arch") or (None if self.emulate else gpu_arch()) or DEFAULT_ARCH
        if not self.emulate:     # a bad arch is the caller's mistake: say so before any work
            from . import nvrtc
            with job.report.stage("nvrtc load") as st:    # importing cuda.bindings and libnvrtc: ~130 ms once
                try:
                    nvrtc._validate_arch(job.arch, "cubin")
                except CompileError as e:
                    raise InputError(str(e)) from None
                st.note = "NVRTC %d.%d" % nvrtc.nvrtc_version()

    def kernels(self, job) -> list:
        """The kernel records, each with the IR Values it is bound to (``lower.Lowered``;
        None for a loop or branch, whose bodies ``prepare_body`` lowers)."""
        from ..codegen.lower import lower_partition
        from ..codegen.render_cuda import CudaRenderer
        job.renderer = CudaRenderer(EMU_MAX_BLOCKS if self.emulate else GPU_MAX_BLOCKS,
                                    library=bool(job.options.get("library", True)),
                                    dims=job.sizes.names if job.sizes else ())
        job.regions = 0
        return lower_partition(job.partition, job.renderer)

    def prepare_body(self, job):
        from ..codegen.lower import lower_partition

        def prepare(part):
            lowered = lower_partition(part, job.renderer, prefix=f"R{job.regions}_")
            job.regions += 1
            return _workspace(part, lowered), lowered
        return prepare

    def scratch(self, job) -> dict:
        return _workspace(job.partition, job.kernels)

    def emit(self, job):
        """(the unit's source, the launch schedule with argument refs, the constant buffers)."""
        constants: dict[int, tuple] = {}
        # rendered once the plan says which outputs are written over an input (no
        # __restrict__ there); from here on job.kernels are what f.kernels shows
        job.kernels, launches, job.flat_kernels = self._schedule(job, job.partition, job.layout, job.kernels,
                                                                  job.loops, constants)
        source = cuda_module.render_module(job.fn.name, VERSION, job.flat_kernels)
        if job.sizes:
            check_generated(source, f"the CUDA code of @{job.fn.name}", job.sizes.names)
        job.report.info["kernels"] = [{"name": k.name, "kind": k.kind, "ops": k.fused_ops,
                                       "launches": len(k.launches), "bytes_read": k.bytes_read,
                                       "bytes_written": k.bytes_written} for k in job.kernels]
        consts = [a for _, a in sorted(constants.values(), key=lambda t: t[0])]
        return source, launches, consts

    def _schedule(self, job, part, lay, lowered, loops, constants):
        """(kernels as f.kernels shows them, the launch schedule, every launched kernel)
        of one function: the program's, or a region body's (its refs relative to the
        body's parameters, results and arena)."""
        kernels, schedule, flat = [], [], []
        for g, lk in zip(part.groups, lowered):
            if lk is None:          # a loop or branch: its bodies' schedules inside one step
                lp = loops[g.index]
                bodies, parts = [], []
                for body in lp.bodies:
                    ks, sched, fl = self._schedule(job, body.part, body.lay, body.lowered, body.loops, constants)
                    bodies.append(tuple(sched))
                    parts += ks
                    flat += fl
                schedule.append(_control_step(lp, g, part, lay, constants, bodies))
                kernels.append(lp.info(f"L{len(schedule) - 1}_{g.root.opdef.name}", parts))
                continue
            k = job.renderer.render(lk.kernel, any(id(v) in lay.aliased for v in lk.outputs))
            if k.kind == "collective":
                schedule.append(_collective_step(g, part, lay, constants))
                kernels.append(k)
                continue
            refs = _arg_refs(lk, lay, constants)
            for launch in k.launches:
                extra = []
                if launch.scratch:
                    extra = [("arena", lay.scratch[g.index], k.scratch_bytes, np.uint8) if k.scratch_bytes
                             else NULL_REF]
                extra += [("scalar", v, 0, SCALAR_DTYPES[t]) for v, t in launch.args]
                if not launch.library:      # the unit's kernels take the run-time sizes last (CudaRenderer.dims)
                    extra += [("dim", d, 0, np.int64) for d in job.renderer.dims]
                schedule.append((launch, refs + extra))
            kernels.append(k)
            flat.append(k)
        return kernels, schedule, flat

    def build(self, job, emitted):
        """cuda-emu: (the unit's EmuModule or None, the library's or None), compiled and
        loaded; cuda: (the library or None, the NVRTC units, their results), or None
        with nothing to launch."""
        source, launches, _ = emitted
        lib_kernels = [k for k in job.flat_kernels if k.in_library]
        unit_kernels = [k for k in job.flat_kernels if not k.in_library and k.launches]
        report = job.report
        if self.emulate:
            lib_mod = None
            if lib_kernels:
                from . import cuda_runtime
                with report.stage("cuda library") as st:
                    lib_mod, built = cuda_runtime.emu_library()
                    st.note = "emu: " + ("built" if built else "found")
            with report.stage("emu compile") as st:
                from .cuda_emu import EmuModule
                mod = EmuModule(source, name=job.fn.name, include_dirs=[cuda_module.TEMPLATE_DIR]) if unit_kernels \
                    else None
                if mod is not None:
                    st.note = "cache hit" if mod.cache_hit else "cache miss"
                    report.info["emu_cache"] = "hit" if mod.cache_hit else "miss"
            return mod, lib_mod
        if not launches:    # nothing to compute on the device (results are inputs or constants)
            return None
        lib = self._library(job.arch, lib_kernels, report) if lib_kernels else None
        units, results = self._nvrtc(job.fn.name, source, unit_kernels, job.arch, report)
        return lib, units, results

    def load_built(self, job, emitted, built) -> "CudaProgram":
        source, launches, consts = emitted
        fn, kernels, lay = job.fn, job.kernels, job.layout
        run_lay = RunLayout.of(lay)
        if self.emulate:
            mod, lib_mod = built
            return CudaProgram(source, kernels, launches, run_lay, len(fn.params), "emu", None,
                               emu_factory, fn.name, consts, mod, lay.plan, emu_library=lib_mod, sizes=job.sizes,
                               grid_cap=EMU_MAX_BLOCKS)
        if built is None:
            return CudaProgram(source, kernels, launches, run_lay, len(fn.params), job.arch, None,
                               emu_factory, fn.name, consts, None, lay.plan, sizes=job.sizes)
        lib, units, results = built
        resources = {n: r for res in results for n, r in res.resources.items()}
        if lib is not None:     # the library kernels this function launches, from the library's ptxas log
            resources.update({ln.kernel: lib.resources.get(ln.kernel) for k in job.flat_kernels if k.in_library
                              for ln in k.launches})
        unit_of = {k.name: i for i, u in enumerate(units) for k in u}
        for k in job.flat_kernels:
            k.resources = {ln.kernel: resources.get(ln.kernel) for ln in k.launches}
        job.report.info["resources"] = {name: vars(r) for name, r in resources.items() if r is not None}
        prog = CudaProgram(source, kernels, launches, run_lay, len(fn.params), job.arch,
                           [r.cubin for r in results], _pycuda_factory, fn.name, consts, None, lay.plan, unit_of,
                           library=lib, sizes=job.sizes)
        prog.cuda_graph = bool(job.options.get("cuda_graph"))
        return prog

    @staticmethod
    def _library(arch, lib_kernels, report):
        """The precompiled library for ``arch`` (built here the first time)."""
        from . import cuda_runtime
        with report.stage("cuda library") as st:
            lib = cuda_runtime.library(arch)
            st.note = f"{arch}: " + (f"built ({len(lib.images)} parts in parallel)" if lib.build_seconds
                                     else "found")
            report.info["cuda_library"] = {"path": lib.path, "built": bool(lib.build_seconds),
                                           "kernels": sorted({ln.kernel for k in lib_kernels
                                                              for ln in k.launches})}
        return lib

    def _nvrtc(self, name, source, unit_kernels, arch, report):
        """The unit kernels compiled by NVRTC (cached), in parallel units when they
        cost enough: (units, one NvrtcResult per unit)."""
        from . import nvrtc
        with report.stage("nvrtc") as st:
            calls = nvrtc.NVRTC_CALLS
            units = split_units(unit_kernels, _workers()) if unit_kernels else []
            sources = [source] if len(units) == 1 else [cuda_module.render_module(name, VERSION, u) for u in units]
            compile_one = functools.partial(nvrtc.compile_cuda, arch=arch, include_dirs=[cuda_module.TEMPLATE_DIR],
                                            cache=self.cache)
            names = [name if len(units) == 1 else f"{name}_u{i}" for i in range(len(units))]
            if len(units) <= 1:
                results = [compile_one(source, name)] if units else []
            else:   # NVRTC releases the GIL: the units compile in parallel threads
                with ThreadPoolExecutor(len(units)) as pool:
                    results = list(pool.map(compile_one, sources, names))
            hits = sum(r.cache_hit for r in results)
            st.note = (f"{arch}: {len(units)} unit(s), " +
                       ("cache hit" if hits == len(units) else f"{len(units) - hits} cache miss(es)"))
            report.info["nvrtc_calls"] = nvrtc.NVRTC_CALLS - calls
            report.info["nvrtc_units"] = len(units)
            report.info["arch"] = arch
        return units, results

    # ------------------------------------------------------------- graph cache
    def identity(self) -> str:
        """What, besides the graph and options, decides the compiled program: the
        backend's version and grid cap, and the compiler -- NVRTC (cuda) or the
        host C++ compiler, flags and emulator header (cuda-emu). cuda also
        includes the arch a compile without ``arch=`` would use (GPU 0's):
        options name the arch only when the caller gave one."""
        if self.emulate:
            return "|".join([self.name, VERSION, _emu_identity()])
        return "|".join([self.name, VERSION, nvrtc_identity(), "default " + (gpu_arch() or DEFAULT_ARCH),
                         str(GPU_MAX_BLOCKS)])

    def export(self, prog: CudaProgram, report) -> dict:
        """The graph-cache entry of a compiled program: plain data (pickled by the
        caller), no IR objects. The emulator library is not in it: ``load`` gets
        it back from the cuda-emu cache by its path."""
        index = {id(ln): (i, j) for i, k in enumerate(prog.launched) for j, ln in enumerate(k.launches)}
        return {"format": ENTRY_FORMAT, "backend": self.name, "name": prog.name, "source": prog.source,
                "kernels": list(prog.kernels),
                "launches": _export_schedule(prog.launches, index),
                "layout": {"slots": prog.layout.slots, "result_plan": prog.layout.result_plan,
                           "arena_bytes": prog.layout.arena_bytes},
                "constants": prog.constants, "param_count": prog.param_count, "arch": prog.arch,
                "images": prog.images, "unit_of": prog.unit_of, "cuda_graph": prog.cuda_graph,
                "emu_lib": prog.emu_module.lib_path if prog.emu_module is not None else None,
                # the library build its library launches need: a hit without it is a miss
                "library": os.path.basename(prog.library.path) if prog.library is not None else None,
                "emu_library": prog.emu_library.lib_path if prog.emu_library is not None else None,
                "info": {k: report.info[k] for k in ("kernels", "memory", "resources", "arch") if k in report.info}}

    def load(self, entry: dict, report) -> CudaProgram | None:
        """A program from a graph-cache entry, or None (a miss) when the entry is
        of another format or what it needs is gone (the emulator module, the
        library build its library launches run from)."""
        if entry.get("format") != ENTRY_FORMAT or entry.get("backend") != self.name:
            return None
        launches_at = list(_exported_launches(entry["launches"]))
        flat = launched_kernels(entry["kernels"])
        unit_launches = any(not flat[i].launches[j].library for i, j, _ in launches_at)
        if self.emulate and unit_launches and not (entry["emu_lib"] and os.path.exists(entry["emu_lib"])):
            return None
        if not self.emulate and unit_launches and not (
                entry["images"] and all(im[:4] == b"\x7fELF" for im in entry["images"])):
            return None
        name, source, arch = entry["name"], entry["source"], entry["arch"]
        lib = lib_mod = None
        lib_launches = any(flat[i].launches[j].library for i, j, _ in launches_at)
        if lib_launches and not (entry["emu_library"] if self.emulate else entry["library"]):
            return None     # launches of a library that was only in memory (nowhere to write it)
        if lib_launches:
            from . import cuda_runtime
            t0 = time.perf_counter()
            if self.emulate:
                if not os.path.exists(entry["emu_library"]):
                    return None
                lib_mod, _ = cuda_runtime.emu_library()
                if lib_mod.lib_path != entry["emu_library"]:
                    return None
                note = "emu: found (graph entry)"
            else:
                lib = cuda_runtime.find_library(arch)     # never builds: a hit compiles nothing
                if lib is None or os.path.basename(lib.path) != entry["library"]:
                    return None
                note = f"{arch}: found (graph entry)"
            report.add_stage("cuda library", since=t0, note=note)
        if not self.emulate and launches_at:
            with report.stage("nvrtc") as st:     # where a compile has its nvrtc stage: no NVRTC call here
                st.note = f"{arch}: cache hit (graph entry)"
            report.info["nvrtc_calls"] = 0
        with report.stage("load") as st:
            kernels = list(entry["kernels"])
            launches = _import_schedule(entry["launches"], launched_kernels(kernels))
            lay = RunLayout(**entry["layout"])
            mod, factory = None, _pycuda_factory
            if self.emulate or not launches:
                factory = emu_factory
            if self.emulate and unit_launches:
                from .cuda_emu import EmuModule
                mod = EmuModule(source, name=name, include_dirs=[cuda_module.TEMPLATE_DIR])
                st.note = "emu module: " + ("cache hit" if mod.cache_hit else "cache miss (recompiled)")
                report.info["emu_cache"] = "hit (graph)" if mod.cache_hit else "miss"
            prog = CudaProgram(source, kernels, launches, lay, entry["param_count"], arch, entry["images"],
                               factory, name, entry["constants"], mod, None, entry["unit_of"], lib, lib_mod)
            prog.cuda_graph = entry.get("cuda_graph", False)
        report.info.update(entry["info"])
        return prog


def _export_schedule(schedule, index) -> list:
    """The schedule as plain data: a launch as (kernel, launch) indices into the
    launched kernels and its refs; a loop with its bodies' schedules the same way."""
    out = []
    for item in schedule:
        if isinstance(item, CollectiveStep):
            out.append(item)
        elif isinstance(item, ControlStep):
            out.append(dataclasses.replace(item, bodies=tuple(tuple(_export_schedule(b, index))
                                                              for b in item.bodies)))
        else:
            ln, refs = item
            out.append((*index[id(ln)], list(refs)))
    return out


def _exported_launches(schedule):
    for item in schedule:
        if isinstance(item, CollectiveStep):
            continue
        if isinstance(item, ControlStep):
            for b in item.bodies:
                yield from _exported_launches(b)
        else:
            yield item


def _import_schedule(schedule, flat) -> list:
    out = []
    for item in schedule:
        if isinstance(item, CollectiveStep):
            out.append(dataclasses.replace(item, ins=tuple(tuple(r) for r in item.ins),
                                           outs=tuple(tuple(r) for r in item.outs)))
        elif isinstance(item, ControlStep):
            out.append(dataclasses.replace(item, bodies=tuple(tuple(_import_schedule(b, flat))
                                                              for b in item.bodies)))
        else:
            i, j, refs = item
            out.append((flat[i].launches[j], [tuple(r) for r in refs]))
    return out


def _pycuda_factory(prog: CudaProgram):
    from .cuda_exec import PyCudaExecutor
    return PyCudaExecutor(prog, prog.constants, gpu_arch, cuda_graph=prog.cuda_graph)
