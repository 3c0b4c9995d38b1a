"""``device="cpu"``: fused C kernels in one translation unit, compiled by the
system C compiler, cached on disk, loaded with ctypes; one call per step.

Stages (each timed in the CompileReport; ``Backend.compile`` runs them): blas ->
fusion -> memory plan -> codegen -> c compile (or cache hit) -> load.
"""
from __future__ import annotations

import ctypes
import logging
import mmap
import os
import threading
import time

import numpy as np

from ..install_dirs import C_TEMPLATE_DIR
from ..ir.symdim import check_generated, concrete
from . import rt_recipe
from .c_runtime import header_bytes, runtime_library, unit_prelude
from .backend import Backend, Program
from .cache import cache_key, jinja_bytecode_dir
from .shared_object import Recipe, SharedObject, in_cache, object_flags
from .toolchain import (VERSION, blas_available, blas_link_flags, find_compiler, load_with_single_threaded_blas,
                        mpi_flags, workers as _workers)

log = logging.getLogger("symfuse.cpu")
FAST_FLAGS = list(rt_recipe.UNIT_FLAGS)


_blas_loaded = False


def _load(lib_path: str) -> ctypes.CDLL:
    """dlopen a unit; the first one may also load OpenBLAS (``load_with_single_threaded_blas``)."""
    global _blas_loaded
    if _blas_loaded:
        return ctypes.CDLL(lib_path)
    lib = load_with_single_threaded_blas(lib_path)
    _blas_loaded = True
    return lib


_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", None)     # Linux only


def _arena(nbytes: int) -> tuple[object, int]:
    """(owner, page-aligned address) of a function's zeroed arena, its pages
    faulted in here: left to the first call, they were faulted by the step's
    threads in the middle of their kernels (the LeNet-5 step's first call took
    52 ms against 25 ms steady).

    One MAP_POPULATE mapping of small pages, not transparent huge pages. On the
    VMs this runs on, free 2 MiB blocks are reported to the host (virtio-balloon
    free page reporting), which drops their backing; a huge page comes from such
    a block, so touching the LeNet-5 step's 18 MiB arena cost 3-4 ms when the
    host still backed it and 55-60 ms when it did not (every time in the full
    compile studies, where the peers' processes free GiBs between symfuse's).
    Small pages come from free blocks below that order, which are not reported:
    7.5-8.5 ms, every time, and the step runs as fast (16.0 ms either way)."""
    if _MAP_POPULATE is None:
        buf = np.zeros(nbytes + 64, np.uint8)
        return buf, (buf.ctypes.data + 63) & ~63
    try:
        region = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE)
    except OSError as e:
        raise MemoryError(f"cannot map the function's {nbytes / 2**20:.1f} MiB arena (the intermediates of one "
                          f"call, f.report.info['memory']): {e.strerror}") from None
    return region, ctypes.addressof(ctypes.c_char.from_buffer(region))


def _bind_communicator(lib) -> int | None:
    """The communicator's size, for a unit with collectives (``sf_mpi.h``): bound to
    the one ``symfuse.distributed`` runs on. None for any other unit."""
    try:
        bind = lib.sf_mpi_bind
    except AttributeError:
        return None
    from ..ir.ops.collective import communicator
    bind.argtypes = [ctypes.c_int64]
    bind.restype = ctypes.c_int
    return bind(communicator().py2f())


_LIBRARY_LOCKS: dict = {}
_LIBRARY_LOCKS_GUARD = threading.Lock()


def _library_lock(lib) -> threading.Lock:
    """One lock per loaded library (its dlopen handle)."""
    with _LIBRARY_LOCKS_GUARD:
        return _LIBRARY_LOCKS.setdefault(lib._handle, threading.Lock())


def _entry(lib):
    entry = lib.sf_entry
    entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    entry.restype = None
    return entry


class CompiledModule(Program):
    """The loaded shared library plus everything needed to call it."""

    def __init__(self, lib_path, param_count, slots, result_plan, arena_bytes, kernels, source, plan,
                 sizes=None, variants=()):
        self.lib = _load(lib_path)
        self.entry = _entry(self.lib)
        # run-time sizes: their values come in the entry's dims argument; a specialised
        # build (its sizes literal) is a library of its own, chosen by the values
        self.sizes = sizes
        self.variants = {value: _entry(_load(path)) for value, path in variants}
        # the sizes are globals of the loaded library, which every function of the same graph
        # shares (dlopen hands out one copy): their calls take turns, not just each function's
        self._sizes_lock = _library_lock(self.lib) if sizes is not None else None
        self.variant_paths = list(variants)
        self.param_count = param_count
        self.slots = slots                  # [(shape, np dtype)] of result buffers the C code writes
        self.result_plan = result_plan      # per result: ("slot", k) | ("param", p) | ("const", array)
        self.arena_bytes = arena_bytes      # an int, or with a run-time size its expression (SizedPlan)
        self._arena, self._arena_ptr = _arena(arena_bytes if type(arena_bytes) is int else 0)
        self._arena_cap = arena_bytes if type(arena_bytes) is int else 0
        self._spare: dict[int, np.ndarray] = {}   # result slot -> a buffer handed back by recycle()
        self.kernels = kernels
        self.source = source
        self.memory_plan = plan
        self.lib_path = lib_path
        self.world = _bind_communicator(self.lib)

    def profile(self) -> list[tuple[str, float, int]]:
        """(kernel, mean seconds per call, calls) for a module compiled with profile=True."""
        try:
            calls = ctypes.c_int64.in_dll(self.lib, "sf_profile_calls").value
            ns = (ctypes.c_int64 * max(len(self.kernels), 1)).in_dll(self.lib, "sf_profile_ns")
        except ValueError:
            raise ValueError("this function was not compiled with profile=True") from None
        return [(k.name, ns[i] * 1e-9 / max(calls, 1), calls) for i, k in enumerate(self.kernels)]

    def recycle(self, result: int, array: np.ndarray) -> None:
        """``array`` (no longer referenced anywhere else: the previous value of a
        shared variable updated from result ``result``) may hold that result next
        call: a training step then writes its updates into the buffers of the step
        before instead of fresh pages (MLP: 2.7 MB of page faults a step)."""
        kind, x = self.result_plan[result]
        if (kind == "slot" and array.shape == self.slots[x][0] and array.dtype == self.slots[x][1]
                and array.flags.c_contiguous and array.flags.writeable):
            self._spare[x] = array

    def __call__(self, arrays, sizes=None):
        spare, self._spare = self._spare, {}
        entry, dims = self.entry, None
        if sizes is None:
            outs = [spare[k] if k in spare else np.empty(shape, dt) for k, (shape, dt) in enumerate(self.slots)]
        else:
            values = self.sizes.values(sizes)
            entry = self.variants.get(values, entry)
            if type(self.arena_bytes) is not int:
                need = self.arena_bytes.evaluate(sizes)
                if need > self._arena_cap:    # the largest call so far: a new arena, kept for the next calls
                    self._arena, self._arena_ptr = _arena(need)
                    self._arena_cap = need
            dims = (ctypes.c_int64 * len(values))(*values)
            outs = [spare[k] if k in spare else np.empty(concrete(shape, sizes), dt)
                    for k, (shape, dt) in enumerate(self.slots)]
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        ptrs = (ctypes.c_void_p * (len(ins) + len(outs)))(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs])
        if self._sizes_lock is None:
            entry(ptrs, self._arena_ptr, dims)
        else:
            with self._sizes_lock:
                entry(ptrs, self._arena_ptr, dims)
        res = []
        for kind, x in self.result_plan:
            res.append(outs[x] if kind == "slot" else arrays[x].copy() if kind == "param" else x.copy())
        return res


class CpuBackend(Backend):
    name = "cpu"
    options = {"profile": bool}
    graph_cache = True
    runtime_sizes = True
    specialized_builds = True
    sized_graph_cache = True

    def missing(self) -> list[str]:
        """What this machine lacks for the cpu backend, each with how to get it."""
        out = []
        if find_compiler() is None:
            out.append("a C compiler (cc, gcc or clang on PATH, or $CC; e.g. apt-get install gcc)")
        if not blas_available():
            out.append("OpenBLAS (pip install scipy-openblas32)")
        return out

    # hooks of Backend.compile
    def import_codegen(self) -> None:
        from ..codegen import templates_cache
        from ..codegen.c_program import render_program  # noqa: F401  (timed with the imports)
        templates_cache.fallback_dir = jinja_bytecode_dir

    def begin(self, job) -> None:
        job.runtime = self._runtime(job.report)

    def lower_passes(self, options: dict) -> tuple[str, ...]:
        # OpenBLAS's one epilogue, C = alpha * A @ B + beta * C (compiler/passes/blas.py)
        return ("blas",)

    def emit(self, job):
        """(the module's source, its kernels, the same module as parallel units or None)."""
        from ..codegen.c_program import render_program
        fn, part, layout, options = job.fn, job.partition, job.layout, job.options
        rt, prelude = job.runtime
        dims = job.sizes.names if job.sizes else ()
        source, kernels, units = render_program(fn, part, layout, VERSION,
                                                "sf_unit.h" if prelude else "sf_unit_inline.h",
                                                bool(options.get("profile")), _workers() if rt else 1, job.loops,
                                                dims)
        if dims:
            check_generated(source, f"the C code of @{fn.name}", dims)
        job.report.info["kernels"] = [{"name": k.name, "kind": k.kind, "ops": k.fused_ops,
                                       "bytes_read": k.bytes_read, "bytes_written": k.bytes_written}
                                      for k in kernels]
        return source, kernels, units

    def build(self, job, emitted):
        source, kernels, units = emitted
        rt, prelude = job.runtime
        with job.report.stage("c compile") as st:
            built = self._compile(source, job.fn.name, rt, units, prelude, _needs_mpi(kernels))
            st.note = ("cache hit" if built.hit else "cache miss") + (f", {len(units)} parallel units" if units else "")
            job.report.info["c_cache"] = "hit" if built.hit else "miss"
        if job.sizes and job.sizes.specialize:
            with job.report.stage("c compile (specialised)") as st:
                job.variants = [(tuple(v for _ in job.sizes.names),
                                 self._compile(source, job.fn.name, rt, units, prelude, _needs_mpi(kernels),
                                               [f"-DSF_FIXED_{n}={v}" for n in job.sizes.names]))
                                for v in job.sizes.specialize]
                st.note = f"literal sizes {list(job.sizes.specialize)}"
        return built

    def load_built(self, job, emitted, built) -> "CompiledModule":
        source, kernels, units = emitted
        lay = job.layout
        variants = getattr(job, "variants", [])
        args = (len(job.fn.params), lay.slots, lay.result_plan, lay.plan.arena_bytes, kernels, source, lay.plan,
                job.sizes, [(value, b.load_path) for value, b in variants])
        try:
            mod = CompiledModule(built.load_path, *args)
        except OSError:
            if not built.hit:
                raise
            # the cached library was checked, then removed (a `cache clear` beside us): build it
            rt, prelude = job.runtime
            built = self._compile(source, job.fn.name, rt, units, prelude, _needs_mpi(kernels))
            mod = CompiledModule(built.load_path, *args)
        mod.lib_path = built.path
        mod.variant_paths = [(value, b.path) for value, b in variants]
        built.done()                 # a fresh build's own copy: mapped now, needed no more
        for _, b in variants:
            b.done()
        return mod

    def prepare(self, report) -> None:
        """The prebuilt C runtime library (built here the first time): its key is part
        of the graph-cache key, so it is made before the lookup, in a stage of its own."""
        found = find_compiler()
        if found is None:
            return
        t0 = time.perf_counter()
        rt = runtime_library(*found)
        if rt is not None and rt.build_seconds and _first_report_of(rt.path, report):
            report.add_stage("runtime library build", since=t0,
                             note="once per installation and compiler: " + rt.path)

    @staticmethod
    def _runtime(report):
        """(the prebuilt C runtime library, the directory of the precompiled unit
        prelude); (None, None) when units include the runtime whole. A one-time
        build, when this process does it, is a stage of its own."""
        cc, ccver = find_compiler()
        t0 = time.perf_counter()
        rt = runtime_library(cc, ccver)
        prelude, built = unit_prelude(rt, cc, tuple(_compile_flags(rt))) if rt is not None else (None, 0.0)
        if rt is not None and (rt.build_seconds or built) and _first_report_of(prelude or rt.path, report):
            report.add_stage("runtime library build", since=t0,
                             note="once per installation and compiler: " + (rt.path if rt.build_seconds else prelude))
        elif rt is not None and time.perf_counter() - t0 > 1e-3:
            # the ~6 MB precompiled prelude is hashed before its first use in a process
            # (a damaged one is rebuilt, never handed to gcc)
            report.add_stage("runtime library check", since=t0, note="checksum of the unit prelude")
        return rt, prelude

    def identity(self) -> str:
        """What, besides the graph and options, decides the compiled artefact."""
        cc, ccver = find_compiler()
        rt = runtime_library(cc, ccver)
        return "|".join([VERSION, ccver, " ".join(FAST_FLAGS), rt.key if rt else "inline-runtime",
                         os.uname().machine])

    @staticmethod
    def export(mod: CompiledModule, report) -> dict:
        """The graph-cache entry of a compiled module (plain data, ``runtime/plain.py``)."""
        return {"lib_path": mod.lib_path, "param_count": mod.param_count, "slots": mod.slots,
                "result_plan": mod.result_plan, "arena_bytes": mod.arena_bytes, "source": mod.source,
                "variants": [[list(value), path] for value, path in mod.variant_paths],
                "kernels": list(mod.kernels),
                "info": {k: report.info[k] for k in ("kernels", "memory") if k in report.info}}

    def load(self, entry: dict, report, sizes=None) -> CompiledModule | None:
        """A module from a graph-cache entry, or None when its library (or a
        specialised build's) is gone. ``sizes``: the function's RuntimeSizes."""
        variants = [(tuple(value), path) for value, path in entry.get("variants", [])]
        if not all(self.cache.file_verified(p) for p in [entry["lib_path"], *(p for _, p in variants)]):
            return None
        with report.stage("load"):
            try:
                mod = CompiledModule(entry["lib_path"], entry["param_count"], entry["slots"], entry["result_plan"],
                                     entry["arena_bytes"], entry["kernels"], entry["source"], None, sizes, variants)
            except OSError:
                return None
        report.info.update(entry["info"])
        report.info["c_cache"] = "hit (graph)"
        return mod

    def _compile(self, source: str, name: str, rt, units=None, prelude=None, mpi=False, defines=()):
        """The library of ``source`` (``shared_object.Built``): found in the cache,
        checked against its seal, or compiled into it. ``units``: the same module as
        several translation units (``render_program``), compiled by parallel
        compiler processes and linked; the cache key is ``source``'s."""
        cc, ccver = find_compiler()
        if rt is not None and prelude:
            flags = ["-I", prelude] + FAST_FLAGS + ["-I", rt.header_dir] + rt.link_flags()
        else:       # no prelude to include: the unit compiles the runtime in (sf_unit_inline.h), BLAS and all
            flags = FAST_FLAGS + list(blas_link_flags())
        if mpi:
            flags = flags + list(mpi_flags())
        flags = flags + list(defines)
        key = cache_key(source, header_bytes(), ccver, " ".join(flags), VERSION, os.uname().machine)
        unit_files = tuple(f"module.u{i}.c" for i in range(len(units or ())))
        recipe = Recipe(cc, (("module.c", source), *zip(unit_files, units or ())),
                        ("-I", C_TEMPLATE_DIR, *flags, "-lm"), units=unit_files, what=f"C compilation of @{name}")
        return SharedObject(key + ".so", [in_cache("cpu-lib", key[:2])], self.cache).get(recipe)


_REPORTED_BUILDS: set = set()


def _first_report_of(built: str, report) -> bool:
    """True for the first report that shows this process's one-time builds: the runtime
    library and the unit prelude are cached for the process, and a later compile's
    report must not show them again (as a 0 ms stage)."""
    if _REPORTED_BUILDS or report.info.get("runtime_built"):
        return False
    _REPORTED_BUILDS.add(built)
    report.info["runtime_built"] = True
    return True


def _needs_mpi(kernels) -> bool:
    return any(k.kind == "collective" or _needs_mpi(k.parts or ()) for k in kernels)


def _compile_flags(rt) -> list[str]:
    """The flags of a unit's compile to an object (what its precompiled prelude is made with)."""
    return object_flags(FAST_FLAGS + ["-I", rt.header_dir])
