"""A stand-in for PyCUDA's driver API on a machine without a GPU, so that the
PyCUDA executor of the cuda backend runs in CI: "device memory" is host
memory (numpy buffers, whose addresses are the device pointers), and kernels
run on the CUDA emulator (runtime/cuda_emu) from the same CUDA source that
NVRTC compiled. Only the calls the executor makes are provided; each counts
what it did so tests can assert on transfers and launches.

Install with ``install(monkeypatch, emu_modules)``: ``emu_modules`` are the
EmuModules whose kernels ``module_from_buffer(...).get_function`` finds.
"""
from __future__ import annotations

import sys
import types

import numpy as np


class Stats:
    def __init__(self):
        self.htod = self.dtoh = self.dtod = self.launches = self.allocs = 0
        self.graph_launches = self.captures = self.pool_allocs = 0


class DeviceAllocation:
    def __init__(self, nbytes: int, stats: Stats):
        self.buf = np.zeros(max(int(nbytes), 1) + 256, np.uint8)
        self.ptr = (self.buf.ctypes.data + 255) & ~255         # cudaMalloc aligns to 256 bytes
        self.nbytes = int(nbytes)
        stats.allocs += 1

    def __int__(self):
        return self.ptr

    __index__ = __int__

    def free(self):
        pass


def _view(ptr, nbytes):
    import ctypes
    return np.ctypeslib.as_array((ctypes.c_uint8 * max(int(nbytes), 1)).from_address(int(ptr)))[:int(nbytes)]


class Graph:
    def __init__(self, ops, stats):
        self.ops, self.stats = ops, stats

    def instantiate(self):
        return self

    def launch(self, stream=None):
        self.stats.graph_launches += 1
        for op in self.ops:
            op()


def build(emu_modules, compute_capability=(9, 0)):
    """A module object standing for ``pycuda.driver``."""
    drv = types.ModuleType("pycuda.driver")
    stats = drv.stats = Stats()
    capturing: list = []          # the op list of a capture in progress (one stream at a time)

    def run_or_capture(op):
        if capturing:
            capturing[-1].append(op)
        else:
            op()

    class Device:
        @staticmethod
        def count():
            return 1

        def __init__(self, i):
            self.i = i

        def compute_capability(self):
            return compute_capability

        def name(self):
            return "fake GPU (cuda-emu)"

    class Stream:
        def synchronize(self):
            pass

        def begin_capture(self, *a):
            stats.captures += 1
            capturing.append([])

        def end_capture(self):
            return Graph(capturing.pop(), stats)

    class Function:
        def __init__(self, f):
            self.f = f

        def __call__(self, *args, grid=(1, 1), block=(1, 1, 1), shared=0, stream=None):
            conv = [int(a) if isinstance(a, DeviceAllocation) else a for a in args]

            def op():
                stats.launches += 1
                self.f(tuple(grid) + (1,) * (3 - len(grid)), block, conv, shared)
            run_or_capture(op)

    class Module:
        def get_function(self, name):
            for m in emu_modules:
                if name in m.kernel_names:
                    return Function(m.get_function(name))
            raise LookupError(f"fake pycuda: no kernel {name!r}")

    def mem_alloc(n):
        return DeviceAllocation(n, stats)

    def to_device(a):
        a = np.ascontiguousarray(a)
        d = mem_alloc(a.nbytes)
        memcpy_htod(d, a)
        return d

    def memcpy_htod(dst, src, stream=None):
        src = np.ascontiguousarray(src)
        view = _view(int(dst), src.nbytes)

        def op():
            stats.htod += 1
            view[:] = src.reshape(-1).view(np.uint8)
        run_or_capture(op)

    def memcpy_dtoh(dst, src, stream=None):
        def op():
            stats.dtoh += 1
            dst.reshape(-1).view(np.uint8)[:] = _view(int(src), dst.nbytes)
        run_or_capture(op)

    def memcpy_dtod(dst, src, nbytes, stream=None):
        def op():
            stats.dtod += 1
            _view(int(dst), nbytes)[:] = _view(int(src), nbytes)
        run_or_capture(op)

    def from_device(ptr, shape, dtype):
        out = np.empty(shape, dtype)
        memcpy_dtoh(out, ptr)
        return out

    drv.Device, drv.Stream, drv.mem_alloc, drv.to_device, drv.from_device = Device, Stream, mem_alloc, to_device, from_device
    drv.memcpy_htod, drv.memcpy_dtoh, drv.memcpy_dtod = memcpy_htod, memcpy_dtoh, memcpy_dtod
    drv.memcpy_htod_async, drv.memcpy_dtoh_async, drv.memcpy_dtod_async = memcpy_htod, memcpy_dtoh, memcpy_dtod
    drv.module_from_buffer = lambda image: Module()
    drv.init = lambda: None
    drv.DeviceAllocation = DeviceAllocation
    return drv


def install(monkeypatch, emu_modules, compute_capability=(9, 0)):
    """Put a fake ``pycuda`` (driver, autoinit, tools) into sys.modules; returns the driver."""
    drv = build(emu_modules, compute_capability)
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    autoinit = types.ModuleType("pycuda.autoinit")
    tools = types.ModuleType("pycuda.tools")

    class DeviceMemoryPool:
        def allocate(self, n):
            drv.stats.pool_allocs += 1
            return drv.mem_alloc(n)

    tools.DeviceMemoryPool = DeviceMemoryPool
    pkg.driver, pkg.autoinit, pkg.tools = drv, autoinit, tools
    for name, mod in (("pycuda", pkg), ("pycuda.driver", drv), ("pycuda.autoinit", autoinit),
                      ("pycuda.tools", tools)):
        monkeypatch.setitem(sys.modules, name, mod)
    return drv
