"""What a ``device="cuda"`` / ``"cuda-emu"`` compile produces (``CudaProgram``:
the unit, its CUBINs, the launch schedule) and the emulator's executor that
runs the schedule on the CPU; the PyCUDA executor is ``cuda_exec.py``. The
backend that makes these is ``cuda.py``."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ..codegen import cuda_module
from ..ir.symdim import concrete
from .backend import Program
from .cuda_schedule import Frame, ScheduleRunner, at_sizes, has_control, launched_kernels


@dataclass
class RunLayout:
    """What the executors need of a Layout (``compiler/layout.py``), as plain data."""
    slots: list             # (shape, numpy dtype) of each result buffer the kernels write
    result_plan: list       # per function result: ("slot", k) | ("param", p) | ("const", array)
    arena_bytes: int        # with run-time sizes, shapes and bytes are their expressions (SymInt)

    @classmethod
    def of(cls, lay) -> "RunLayout":
        return cls(list(lay.slots), list(lay.result_plan), lay.plan.arena_bytes)


class CudaProgram(Program):
    """What a compile produces, with or without a GPU: the unit, its CUBIN and
    the launch schedule. Calling it runs the schedule on an executor.
    ``emu_module``: the EmuModule under cuda-emu (None on cuda, or with no launches);
    ``memory_plan``: the arena's MemoryPlan (None after a graph-cache hit)."""

    def __init__(self, source, kernels, launches, layout_, params, arch, images, executor_factory, name="main",
                 constants=(), emu_module=None, memory_plan=None, unit_of=None, library=None, emu_library=None,
                 sizes=None, grid_cap=4096):
        self.name = name
        self.sizes = sizes                  # RuntimeSizes of a function with run-time sizes, else None
        self.grid_cap = grid_cap            # blocks of a grid-stride grid that follows a run-time size
        self._at: dict = {}                 # the sizes' values -> (schedule, arena bytes, result slots)
        self.source = source
        self.kernels = kernels          # KernelInfo per group, schedule order
        self.launches = launches        # [(LaunchSpec, [argument refs]) or ControlStep] in order
        self.layout = layout_           # RunLayout
        self.param_count = params
        self.arch = arch
        self.images = list(images or ())    # CUBIN of each compiled unit (none under emulation)
        self.unit_of = dict(unit_of or {})  # kernel name -> index of the unit (CUBIN) that holds it
        self.constants = list(constants)    # arrays uploaded once, in "const" ref order
        self.emu_module = emu_module
        self.library = library              # cuda_runtime.CudaLibrary the library launches run from (cuda)
        self.emu_library = emu_library      # EmuModule of the library (cuda-emu)
        self.memory_plan = memory_plan
        self._factory = executor_factory
        self._executor = None
        self.cuda_graph = False             # PyCUDA executor: replay the launches as one CUDA graph
        # results of the PyCUDA executor stay in GPU memory (runtime/cuda_exec.GpuArray)
        self.device_values = executor_factory is not emu_factory
        self.launched = launched_kernels(kernels)     # loops list their bodies' kernels as parts
        for k in self.launched:
            k.program = self

    def cubin_of(self, kernel: str) -> bytes | None:
        """The CUBIN holding ``kernel`` (a CudaKernel name)."""
        return self.images[self.unit_of.get(kernel, 0)] if self.images else None

    def library_image(self, kernel: str) -> bytes | None:
        """The library CUBIN holding library kernel ``kernel``."""
        return self.library.image(kernel) if self.library is not None else None

    def ptx_of(self, kernel) -> str:
        """The PTX listing holding CudaKernel ``kernel``: its unit's, or the library
        kernels' own source compiled alone, for compute_XY (NVRTC, cached)."""
        from . import nvrtc         # lazy: loading NVRTC costs ~90 ms, and only inspection needs it here
        if kernel.in_library:
            src = cuda_module.library_source([ln.kernel for ln in kernel.launches])
            name = "symfuse_cuda_library_ptx"
        else:
            src, name = self.source, self.name
        return nvrtc.ptx_for(src, name, arch=self.arch, include_dirs=[cuda_module.TEMPLATE_DIR])

    @staticmethod
    def sass_of(cubin: bytes) -> str:
        from . import nvrtc         # lazy, as in ptx_of
        return nvrtc.sass(cubin)

    def __call__(self, arrays, sizes=None):
        if self._executor is None:
            self._executor = self._factory(self)
        return self._executor.run(arrays) if sizes is None else self._executor.run(arrays, sizes)

    def at(self, env):
        """(the launch schedule, the arena's bytes, the result slots) at one call's
        run-time sizes, kept for the sizes seen most recently."""
        key = self.sizes.values(env)
        got = self._at.get(key)
        if got is None:
            if len(self._at) >= 32:         # a caller sweeping sizes: keep the memory bounded
                self._at.clear()
            lay = self.layout
            got = self._at[key] = (at_sizes(self.launches, env, self.grid_cap), concrete(lay.arena_bytes, env),
                                   [(concrete(shape, env), dt) for shape, dt in lay.slots])
        return got


def emu_factory(prog: CudaProgram):
    return _EmuExecutor(prog, prog.emu_module, prog.constants, prog.emu_library)


class _EmuExecutor(ScheduleRunner):
    """Runs the launch schedule with the emulator: host memory is device memory."""

    def __init__(self, prog: CudaProgram, mod, consts, lib_mod=None):
        self.prog, self.mod, self.lib_mod = prog, mod, lib_mod
        # with run-time sizes the arena is made at the first call, for its sizes (grown by later ones)
        self.arena = np.zeros((prog.layout.arena_bytes if prog.sizes is None else 0) + 64, np.uint8)
        self.consts = consts
        # a program with run-time sizes runs its schedule at each call's sizes through run_schedule
        self.control = has_control(prog.launches) or prog.sizes is not None
        self._funcs: dict = {}
        if not self.control:
            self.funcs = [self._function(launch) for launch, _ in prog.launches]
        else:
            self._flag = np.zeros(64, np.uint8)
            self.flag_address = self._flag.ctypes.data

    def _function(self, launch):
        key = (launch.library, launch.kernel)
        f = self._funcs.get(key)
        if f is None:
            f = self._funcs[key] = (self.lib_mod if launch.library else self.mod).get_function(launch.kernel)
        return f

    def _buffer(self, ref, params, results):
        kind, x, nbytes, dt = ref
        if kind == "param":
            return params[x]
        if kind == "result":
            return results[x]
        if kind == "const":
            return self.consts[x]
        if kind == "scalar":
            return x
        if kind == "null":
            return None
        return self.arena[x:x + max(nbytes, np.dtype(dt).itemsize)].view(dt)

    # ScheduleRunner's device memory: host addresses
    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            ctypes.memmove(int(dst), int(src), nbytes)

    def flag(self, address: int) -> bool:
        return bool(ctypes.c_uint8.from_address(int(address)).value)

    def read(self, address: int, nbytes: int) -> bytes:
        return ctypes.string_at(int(address), nbytes)

    def write(self, address: int, data: bytes) -> None:
        ctypes.memmove(int(address), data, len(data))

    def const_address(self, k: int) -> int:
        return self.consts[k].ctypes.data

    def launch(self, launch, args) -> None:
        self._function(launch)(launch.grid, launch.block, args, launch.shared_bytes)

    def run(self, arrays, sizes=None):
        params = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        if sizes is not None:
            schedule, arena_bytes, slots = self.prog.at(sizes)
            if arena_bytes + 64 > self.arena.size:
                self.arena = np.zeros(arena_bytes + 64, np.uint8)
            results = [np.empty(shape, dt) for shape, dt in slots]
            self.run_schedule(schedule, Frame([a.ctypes.data for a in params], [r.ctypes.data for r in results],
                                              self.arena.ctypes.data))
            return _results(self.prog.layout, arrays, results)
        results = [np.empty(shape, dt) for shape, dt in self.prog.layout.slots]
        if self.control:
            self.run_schedule(self.prog.launches, Frame([a.ctypes.data for a in params],
                                                        [r.ctypes.data for r in results], self.arena.ctypes.data))
            return _results(self.prog.layout, arrays, results)
        for f, (launch, refs) in zip(self.funcs, self.prog.launches):
            f(launch.grid, launch.block, [self._buffer(r, params, results) for r in refs], launch.shared_bytes)
        return _results(self.prog.layout, arrays, results)


def _results(lay, arrays, results):
    out = []
    for kind, x in lay.result_plan:
        out.append(results[x] if kind == "slot" else arrays[x].copy() if kind == "param" else x.copy())
    return out
