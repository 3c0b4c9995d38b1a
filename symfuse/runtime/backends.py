"""Backend registry: ``device=`` names map to backends that compile an optimised Function.

A backend has ``name``, ``options`` (the keyword options ``sf.function`` accepts
for it), ``available()`` and ``compile(fn, options, report)`` returning
``run(list_of_arrays) -> list_of_arrays``; a compiled backend also has ``cache``,
``identity()``, ``export()`` and ``load()`` for the graph cache.
``device=None`` takes the first available backend in DEFAULT_ORDER.

The built-in backends are made on first use, from ``BUILTIN``: ``import symfuse``
and a compile on one device never import another device's code generator or
toolchain (the cpu backend alone brings codegen, fusion and Jinja).
"""
from __future__ import annotations

import importlib

from ..errors import DeviceUnavailable
from .toolchain import gpu_arch

BACKENDS: dict[str, object] = {}
DEFAULT_ORDER = ["cuda", "cpu", "interp"]   # cuda only where it can run (a GPU and PyCUDA)
# device -> (module under symfuse.runtime, class, constructor keywords)
BUILTIN = {
    "interp": ("interp", "InterpBackend", {}),
    "cpu": ("cpu", "CpuBackend", {}),
    "cuda": ("cuda", "CudaBackend", {}),
    "cuda-emu": ("cuda", "CudaBackend", {"emulate": True}),
}

def register_backend(backend) -> None:
    BACKENDS[backend.name] = backend


def known_devices() -> list[str]:
    return sorted(set(BACKENDS) | set(BUILTIN))


def _backend(name: str):
    b = BACKENDS.get(name)
    if b is None and name in BUILTIN:
        module, cls, kw = BUILTIN[name]
        b = getattr(importlib.import_module(f"{__package__}.{module}"), cls)(**kw)
        register_backend(b)
    return b


# a device that can be ruled out without importing its module (the default device's
# choice must not import the CUDA code generator on a machine without a GPU)
CANNOT_RUN = {"cuda": lambda: gpu_arch() is None}


def get_backend(device: str | None):
    if device is None:
        for name in DEFAULT_ORDER:
            if CANNOT_RUN.get(name, lambda: False)():
                continue
            b = _backend(name)
            if b is not None and b.runnable():
                return b
        raise DeviceUnavailable("no backend is available")
    b = _backend(device) if isinstance(device, str) else None
    if b is None:
        raise DeviceUnavailable(f"unknown device {device!r}; known: {', '.join(known_devices())}")
    if not b.available():
        missing = b.missing()
        raise DeviceUnavailable(f"device {device!r} is not available here"
                                + (f": it needs {'; '.join(missing)}" if missing else "")
                                + "; device='interp' runs anywhere")
    return b
