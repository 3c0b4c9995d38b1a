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

Stages in the CompileReport: fusion, memory plan, codegen, nvrtc (or emu
compile), load.
"""
from __future__ import annotations

import functools

import numpy as np

from ..codegen import cuda_module
from ..compiler.fusion import fuse
from ..compiler.layout import layout, materialised
from ..errors import CompileError, DeviceUnavailable, InputError
from .cache import DiskCache, environment_cache

VERSION = "0.1.0"
DEFAULT_ARCH = "sm_90"
GPU_MAX_BLOCKS = 4096     # grid-stride grids: a few waves on the largest GPUs
EMU_MAX_BLOCKS = 16       # the emulator runs threads one after another: fewer, longer threads


@functools.lru_cache(maxsize=None)
def gpu_arch() -> str | None:
    """sm_XY of GPU 0 when PyCUDA and a GPU are present, else None."""
    try:
        import pycuda.driver as drv
        drv.init()
        if drv.Device.count() == 0:
            return None
        major, minor = drv.Device(0).compute_capability()
        return f"sm_{major}{minor}"
    except Exception:  # noqa: BLE001 -- no pycuda, no driver, no device: all mean "no GPU"
        return None


class CudaProgram:
    """What a compile produces, with or without a GPU: the unit, its CUBIN and
    the launch schedule. Calling it runs the schedule on an executor."""

    def __init__(self, source, kernels, launches, layout_, params, arch, image, executor_factory, name="main"):
        self.name = name
        self.source = source
        self.kernels = kernels          # CudaKernel per group, schedule order
        self.launches = launches        # [(LaunchSpec, [argument refs])] in order
        self.layout = layout_
        self.param_count = params
        self.arch = arch
        self.image = image              # CUBIN bytes (None under emulation)
        self._factory = executor_factory
        self._executor = None
        for k in kernels:
            k.program = self

    @property
    def cubin(self) -> bytes | None:
        return self.image

    def __call__(self, arrays):
        if self._executor is None:
            self._executor = self._factory(self)
        return self._executor.run(arrays)


def _arg_refs(k, lay, constants):
    """How each kernel parameter is found at run time."""
    refs = []
    for v in list(k.inputs) + list(k.outputs):
        w = lay.where.get(id(v))
        if w is None:       # a constant read as a buffer: uploaded once
            cid = constants.setdefault(id(v), (len(constants), np.ascontiguousarray(
                np.broadcast_to(v.op.attrs["value"], v.type.shape).astype(v.dtype.np))))[0]
            refs.append(("const", cid, v.type.nbytes, v.dtype.np))
        else:
            refs.append((w[0], w[1], v.type.nbytes, v.dtype.np))
    return refs


class CudaBackend:
    graph_cache = False     # a cache hit must still give the executor a program: kept simple for now

    def __init__(self, emulate: bool = False):
        self.emulate = emulate
        self.name = "cuda-emu" if emulate else "cuda"

    @property
    def cache(self) -> DiskCache:
        return environment_cache()

    def available(self) -> bool:
        if self.emulate:
            from .cuda_emu import find_cxx
            return find_cxx() is not None
        try:
            from . import nvrtc
            nvrtc.nvrtc_version()
            return True
        except Exception:  # noqa: BLE001
            return False

    def runnable(self) -> bool:
        """Can call (not only compile) here: for ``cuda``, PyCUDA and a GPU."""
        return self.available() and (self.emulate or gpu_arch() is not None)

    def compile(self, fn, options: dict, report):
        arch = options.get("arch") or (None if self.emulate else gpu_arch()) or DEFAULT_ARCH
        if not self.emulate:     # a bad arch is the caller's mistake: say so before any work
            from . import nvrtc
            try:
                nvrtc._validate_arch(arch, "cubin")
            except CompileError as e:
                raise InputError(str(e)) from None
        with report.stage("fusion", ops_before=len(fn.ops)) as st:
            part = fuse(fn)
            st.ops_after = len(part.groups)
            st.note = f"{len(fn.ops)} ops -> {len(part.groups)} kernels"
        resolve = lambda v: materialised(v, part.folded_views)  # noqa: E731
        names: dict[str, int] = {}

        def unique(n):
            c = names.get(n, 0)
            names[n] = c + 1
            return f"{n}_{c}" if c else n

        max_blocks = EMU_MAX_BLOCKS if self.emulate else GPU_MAX_BLOCKS
        with report.stage("codegen"):
            kernels = [cuda_module.build(g, part, resolve, max_blocks, unique) for g in part.groups]
        with report.stage("memory plan") as st:
            lay = layout(fn, part, {k.group.index: k.scratch_bytes for k in kernels if k.scratch_bytes})
            st.note = lay.plan.table().splitlines()[0]
        for k in kernels:   # an output written over its input (in-place plan) must not be __restrict__
            if any(id(v) in lay.aliased for v in k.outputs):
                k.source = k.source.replace(" __restrict__", "")
        source = cuda_module.render_module(fn.name, VERSION, kernels)
        constants: dict[int, tuple] = {}
        launches = []
        for k in kernels:
            refs = _arg_refs(k, lay, constants)
            for launch in k.launches:
                extra = [("arena", lay.scratch[k.group.index], k.scratch_bytes, np.uint8)] if launch.scratch else []
                launches.append((launch, refs + extra))
        report.info["kernels"] = [{"name": k.name, "kind": k.kind, "ops": k.fused_ops, "launches": len(k.launches),
                                   "bytes_read": k.bytes_read, "bytes_written": k.bytes_written} for k in kernels]
        report.info["memory"] = {"arena_bytes": lay.plan.arena_bytes, "naive_bytes": lay.plan.naive_bytes,
                                 "lower_bound_bytes": lay.plan.lower_bound_bytes}
        consts = [a for _, a in sorted(constants.values(), key=lambda t: t[0])]
        if self.emulate:
            with report.stage("emu compile") as st:
                from .cuda_emu import EmuModule
                mod = EmuModule(source, name=fn.name, include_dirs=[cuda_module.TEMPLATE_DIR]) if launches else None
            prog = CudaProgram(source, kernels, launches, lay, len(fn.params), "emu", None,
                               lambda p: _EmuExecutor(p, mod, consts), fn.name)
            return prog
        if not launches:    # nothing to compute on the device (results are inputs or constants)
            return CudaProgram(source, kernels, launches, lay, len(fn.params), arch, None,
                               lambda p: _EmuExecutor(p, None, consts), fn.name)
        from . import nvrtc
        with report.stage("nvrtc") as st:
            calls = nvrtc.NVRTC_CALLS
            res = nvrtc.compile_cuda(source, fn.name, arch=arch, include_dirs=[cuda_module.TEMPLATE_DIR],
                                     cache=self.cache)
            st.note = f"{arch}: " + ("cache hit" if res.cache_hit else "cache miss")
            report.info["nvrtc_calls"] = nvrtc.NVRTC_CALLS - calls
            report.info["arch"] = arch
        for k in kernels:
            k.resources = {ln.kernel: res.resources.get(ln.kernel) for ln in k.launches}
        report.info["resources"] = {name: vars(r) for name, r in res.resources.items()}
        prog = CudaProgram(source, kernels, launches, lay, len(fn.params), arch, res.cubin,
                           lambda p: _PyCudaExecutor(p, consts), fn.name)
        return prog


class _EmuExecutor:
    """Runs the launch schedule with the emulator: host memory is device memory."""

    def __init__(self, prog: CudaProgram, mod, consts):
        self.prog, self.mod = prog, mod
        self.arena = np.zeros(prog.layout.plan.arena_bytes + 64, np.uint8)
        self.consts = consts
        self.funcs = [mod.get_function(launch.kernel) for launch, _ in prog.launches]

    def _buffer(self, ref, params, results):
        kind, x, nbytes, dt = ref
        if kind == "param":
            return params[x]
        if kind == "result":
            return results[x]
        if kind == "const":
            return self.consts[x]
        return self.arena[x:x + max(nbytes, np.dtype(dt).itemsize)].view(dt)

    def run(self, arrays):
        params = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        results = [np.empty(shape, dt) for shape, dt in self.prog.layout.slots]
        for f, (launch, refs) in zip(self.funcs, self.prog.launches):
            f(launch.grid, launch.block, [self._buffer(r, params, results) for r in refs], launch.shared_bytes)
        return _results(self.prog.layout, arrays, results)


def _results(lay, arrays, results):
    out = []
    for kind, x in lay.result_plan:
        out.append(results[x] if kind == "slot" else arrays[x].copy() if kind == "param" else x.copy())
    return out


class _PyCudaExecutor:
    """Loads the CUBIN with PyCUDA and runs the schedule on GPU 0."""

    def __init__(self, prog: CudaProgram, consts):
        if gpu_arch() is None:
            raise DeviceUnavailable("device='cuda' needs PyCUDA and an NVIDIA GPU, and this machine has "
                                    "neither (ahead-of-time compilation worked; the CUBIN is in f.kernels); "
                                    "use device='cpu' to run here")
        import pycuda.autoinit  # noqa: F401 -- creates the context on GPU 0
        import pycuda.driver as drv
        self.drv, self.prog = drv, prog
        self.module = drv.module_from_buffer(prog.image)
        self.funcs = [self.module.get_function(launch.kernel) for launch, _ in prog.launches]
        self.arena = drv.mem_alloc(max(prog.layout.plan.arena_bytes, 1))
        self.consts = [drv.to_device(c) for c in consts]

    def run(self, arrays):
        drv = self.drv
        params = [drv.to_device(np.ascontiguousarray(a)) for a in arrays]
        results = [drv.mem_alloc(max(int(np.prod(shape)) * np.dtype(dt).itemsize, 1))
                   for shape, dt in self.prog.layout.slots]
        base = int(self.arena)
        for f, (launch, refs) in zip(self.funcs, self.prog.launches):
            args = []
            for kind, x, _, _ in refs:
                args.append(params[x] if kind == "param" else results[x] if kind == "result"
                            else self.consts[x] if kind == "const" else np.uintp(base + x))
            f(*args, grid=launch.grid, block=launch.block, shared=launch.shared_bytes)
        host = [drv.from_device(r, shape, dt) for r, (shape, dt) in zip(results, self.prog.layout.slots)]
        return _results(self.prog.layout, arrays, host)
