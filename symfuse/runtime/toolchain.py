"""What this machine offers to build and run compiled functions: the C compiler,
the CPUs a build may use, the GPU's architecture and the NVRTC that would be
loaded. Discovery only: nothing here compiles, and nothing here imports NVRTC,
PyCUDA or the backends (a warm compile asks these questions too)."""
from __future__ import annotations

import functools
import os

from .cache import find_program

VERSION = "0.1.0"


def find_compiler() -> tuple[str, str] | None:
    """(path, version line) of the C compiler: $CC, then cc, gcc, clang."""
    return find_program("CC", "cc", "gcc", "clang")


def workers() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not Linux
        return os.cpu_count() or 1


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


@functools.lru_cache(maxsize=None)
def nvrtc_identity() -> str:
    """What identifies the NVRTC that ``nvrtc.py`` would load, without loading it:
    importing cuda.bindings and libnvrtc costs ~90 ms, ten times a warm compile.
    NVRTC from the ``nvidia-cuda-nvrtc`` wheels (what cuda-pathfinder finds
    first) is named by the wheel and cuda-bindings versions; any other NVRTC
    is loaded and asked for its version."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        bindings = version("cuda-bindings")
        for dist in ("nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc-cu12"):
            try:
                return f"cuda-bindings=={bindings} {dist}=={version(dist)}"
            except PackageNotFoundError:
                pass
    except PackageNotFoundError:
        pass
    from . import nvrtc          # lazy: loads libnvrtc, only for an NVRTC outside the wheels
    return "nvrtc %d.%d" % nvrtc.nvrtc_version()
