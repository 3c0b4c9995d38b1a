"""The PyCUDA executor of ``device="cuda"``: runs a CudaProgram's launch
schedule on GPU 0.

* Shared variables stay on the device: every result comes back as a
  ``GpuArray`` (a ``DeviceValue``), so a parameter updated by a training step
  is the next step's input without a round trip; ``get_value()`` and the
  outputs handed to the caller copy to the host (``runtime/function.py``).
* Device memory comes from PyCUDA's ``DeviceMemoryPool``: a step's results
  reuse the allocations the previous step released instead of calling
  cudaMalloc/cudaFree for each.
* Host inputs are copied into one staging buffer per parameter, made once.
* Loops and branches (``cuda_schedule.py``) launch their bodies' kernels from
  the host, per step; under ``cuda_graph=True`` a program whose loops are all
  scans is captured with them unrolled, and one with a while loop or cond (the
  host reads a flag to go on) runs eagerly.
* ``cuda_graph=True`` (an ``sf.function`` option) captures the kernel
  launches once as a CUDA graph (PyCUDA's ``Stream.begin_capture``) and
  replays it: one launch per step instead of one per kernel. A graph fixes
  its kernels' pointers, so every parameter then reads from its staging buffer
  and every result is written to a fixed buffer and copied out (device to
  device) into a pooled allocation -- a few microseconds of copies for one
  launch instead of dozens.

PyCUDA and a GPU are needed only here: compiling (NVRTC) works anywhere.
``tests/fakes/fake_pycuda.py`` stands in for PyCUDA on the CUDA emulator so
CI runs this code.
"""
from __future__ import annotations

import numpy as np

from ..errors import DeviceUnavailable
from .cuda_schedule import Frame, ScheduleRunner, has_control, has_host_decisions
from .device_values import DeviceValue


class GpuArray(DeviceValue):
    """A result in GPU memory: a pooled allocation of ``nbytes``."""

    __slots__ = ("alloc", "nbytes", "_ex")

    def __init__(self, ex: "PyCudaExecutor", alloc, shape, dtype):
        self._ex, self.alloc = ex, alloc
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def to_host(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            self._ex.drv.memcpy_dtoh(out, self.alloc)
        return out

    def copy(self) -> "GpuArray":
        new = GpuArray(self._ex, self._ex.allocate(self.nbytes), self.shape, self.dtype)
        if self.nbytes:
            self._ex.drv.memcpy_dtod(new.alloc, self.alloc, self.nbytes)
        return new

    def __repr__(self):
        return f"<GpuArray {self.dtype}{list(self.shape)} at 0x{int(self.alloc):x}>"


class PyCudaExecutor(ScheduleRunner):
    """Loads the program's CUBINs (and the runtime library's) and runs its
    schedule. ``run(arrays)`` takes host arrays or GpuArrays (of this executor
    or another) and returns GpuArrays or, for results that are constants, host
    arrays."""

    def __init__(self, prog, consts, gpu_arch, cuda_graph: bool = False):
        if gpu_arch() is None:
            raise DeviceUnavailable("device='cuda' needs PyCUDA and an NVIDIA GPU, and this machine has "
                                    "neither (ahead-of-time compilation worked; the CUBIN is in f.kernels); "
                                    "use device='cpu' to run here")
        import pycuda.autoinit  # noqa: F401 -- creates the context on GPU 0
        import pycuda.driver as drv
        from pycuda.tools import DeviceMemoryPool
        self.drv, self.prog = drv, prog
        self.pool = DeviceMemoryPool()
        modules = [drv.module_from_buffer(im) for im in prog.images]
        lib = prog.library
        lib_modules = [drv.module_from_buffer(im) for im in lib.images] if lib is not None else []
        self.modules, self.lib_modules = modules, lib_modules
        self.unit = {ln.kernel: prog.unit_of.get(k.name, 0) for k in prog.launched for ln in k.launches
                     if not getattr(ln, "library", False)}
        self._funcs: dict = {}
        # a program with run-time sizes runs its schedule at each call's sizes through run_schedule
        self.control = has_control(prog.launches) or prog.sizes is not None
        self.funcs = [] if self.control else [self._function(ln) for ln, _ in prog.launches]
        lay = prog.layout
        # with run-time sizes, the arena is made for the first call's sizes and grown by larger ones
        self.arena_bytes = max(lay.arena_bytes if prog.sizes is None else 0, 1)
        self.arena = drv.mem_alloc(self.arena_bytes)
        self.consts = [drv.to_device(c) for c in consts]
        self.slot_bytes = [] if prog.sizes is not None else \
            [max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize, 0) for shape, dt in lay.slots]
        # per launch: the arguments that do not change between calls (scalars, the arena, constants)
        base = int(self.arena)
        self.fixed = []
        self._stream = None                      # the stream a capture records into
        if self.control:
            self.flag_buffer = drv.mem_alloc(64)
            self.flag_address = int(self.flag_buffer)
            self._flag_host = np.zeros(1, np.uint8)
        for _, refs in ([] if self.control else prog.launches):
            fixed = {}
            for i, (kind, x, _, dt) in enumerate(refs):
                if kind == "scalar":
                    fixed[i] = dt(x)
                elif kind == "null":
                    fixed[i] = np.uintp(0)
                elif kind == "arena":
                    fixed[i] = np.uintp(base + x)
                elif kind == "const":
                    fixed[i] = self.consts[x]
            self.fixed.append(fixed)
        self.staging: dict[int, object] = {}     # param index -> device buffer host inputs are copied into
        self.staged_bytes: dict[int, int] = {}   # ... and its bytes
        self.graph = None
        # a loop is unrolled into the captured graph; a while loop or cond needs the host to
        # read a flag between launches, which a graph cannot do: such a program runs eagerly
        self.use_graph = cuda_graph and not has_host_decisions(prog.launches)
        if cuda_graph:
            self.stream = drv.Stream()
            self.result_fixed = [drv.mem_alloc(max(n, 1)) for n in self.slot_bytes]

    def _function(self, ln):
        key = (getattr(ln, "library", False), ln.kernel)
        f = self._funcs.get(key)
        if f is None:
            lib = self.prog.library
            f = self._funcs[key] = (self.lib_modules[lib.kernel_image[ln.kernel]].get_function(ln.kernel) if key[0]
                                    else self.modules[self.unit[ln.kernel]].get_function(ln.kernel))
        return f

    # ScheduleRunner's device memory (a program with loops runs through it)
    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if not nbytes:
            return
        if self._stream is not None:
            self.drv.memcpy_dtod_async(int(dst), int(src), nbytes, self._stream)
        else:
            self.drv.memcpy_dtod(int(dst), int(src), nbytes)

    def flag(self, address: int) -> bool:
        self.drv.memcpy_dtoh(self._flag_host, int(address))
        return bool(self._flag_host[0])

    def const_address(self, k: int) -> int:
        return int(self.consts[k])

    def read(self, address: int, nbytes: int) -> bytes:
        host = np.empty(nbytes, np.uint8)
        if nbytes:
            if self._stream is not None:
                self._stream.synchronize()
            self.drv.memcpy_dtoh(host, int(address))
        return host.tobytes()

    def write(self, address: int, data: bytes) -> None:
        if data:
            self.drv.memcpy_htod(int(address), np.frombuffer(data, np.uint8))

    def launch(self, ln, args) -> None:
        self._function(ln)(*args, grid=ln.grid, block=ln.block, shared=ln.shared_bytes, stream=self._stream)

    # ------------------------------------------------------------------ memory
    def allocate(self, nbytes: int):
        return self.pool.allocate(max(int(nbytes), 1))

    def _stage(self, p: int, a) -> object:
        """The staging buffer of parameter ``p``, holding ``a``: a host array, a
        GpuArray (copied device to device) or another backend's device value
        (through the host)."""
        if isinstance(a, DeviceValue) and not isinstance(a, GpuArray):
            a = a.to_host()
        buf = self.staging.get(p)
        nbytes = a.nbytes
        if buf is None or nbytes > self.staged_bytes.get(p, nbytes):    # larger: a run-time size grew
            buf = self.staging[p] = self.drv.mem_alloc(max(nbytes, 1))
            self.staged_bytes[p] = nbytes
        if nbytes:
            if isinstance(a, GpuArray):
                self.drv.memcpy_dtod(buf, a.alloc, nbytes)
            else:
                self.drv.memcpy_htod(buf, np.ascontiguousarray(a))
        return buf

    def _param(self, p: int, a):
        """Where a launch reads parameter ``p``: a GpuArray in place, anything else staged."""
        return a.alloc if isinstance(a, GpuArray) else self._stage(p, a)

    # ------------------------------------------------------------------ running
    def _launch(self, params, results, stream=None):
        if self.control:
            self._stream = stream
            try:
                self.run_schedule(self.prog.launches, Frame([int(p) for p in params], [int(r) for r in results],
                                                            int(self.arena)))
            finally:
                self._stream = None
            return
        for f, (launch, refs), fixed in zip(self.funcs, self.prog.launches, self.fixed):
            args = [fixed[i] if i in fixed else params[x] if kind == "param" else results[x]
                    for i, (kind, x, _, _) in enumerate(refs)]
            f(*args, grid=launch.grid, block=launch.block, shared=launch.shared_bytes, stream=stream)

    def run(self, arrays, sizes=None):
        lay = self.prog.layout
        if sizes is not None:
            return self._run_sized(arrays, sizes)
        if self.use_graph:
            params = [self._stage(p, a) for p, a in enumerate(arrays)]    # a graph's pointers are fixed
            if self.graph is None:
                self.stream.begin_capture()
                self._launch(params, self.result_fixed, self.stream)
                self.graph = self.stream.end_capture().instantiate()
            self.graph.launch()
            results = []
            for fixed, n, (shape, dt) in zip(self.result_fixed, self.slot_bytes, lay.slots):
                out = GpuArray(self, self.allocate(n), shape, dt)
                if n:
                    self.drv.memcpy_dtod(out.alloc, fixed, n)
                results.append(out)
        else:
            params = [self._param(p, a) for p, a in enumerate(arrays)]
            results = [GpuArray(self, self.allocate(n), shape, dt)
                       for n, (shape, dt) in zip(self.slot_bytes, lay.slots)]
            self._launch(params, [r.alloc for r in results])
        return self._outputs(arrays, results)

    def _run_sized(self, arrays, sizes):
        """A call of a program with run-time sizes: its schedule, arena and results at
        the call's sizes (``CudaProgram.at``)."""
        schedule, arena_bytes, slots = self.prog.at(sizes)
        if arena_bytes > self.arena_bytes:
            self.arena = self.drv.mem_alloc(arena_bytes)
            self.arena_bytes = arena_bytes
        params = [self._param(p, a) for p, a in enumerate(arrays)]
        results = [GpuArray(self, None, shape, dt) for shape, dt in slots]
        for r in results:
            r.alloc = self.allocate(r.nbytes)
        self.run_schedule(schedule, Frame([int(p) for p in params], [int(r.alloc) for r in results],
                                          int(self.arena)))
        return self._outputs(arrays, results)

    def _outputs(self, arrays, results):
        lay = self.prog.layout
        out = []
        for kind, x in lay.result_plan:
            if kind == "slot":
                out.append(results[x])
            elif kind == "param":          # a result that is an argument: a copy, on its side
                out.append(arrays[x].copy())
            else:
                out.append(np.array(x, copy=True))
        return out
