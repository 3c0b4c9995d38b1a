"""Backend registry: ``device=`` names map to backends that compile an optimised Function.

A backend has ``name``, ``available()`` and ``compile(fn, options, report)``
returning ``run(list_of_arrays) -> list_of_arrays``. Later backends register
here; ``device=None`` takes the first available backend in DEFAULT_ORDER.
"""
from __future__ import annotations

from ..codegen import templates_cache
from ..errors import DeviceUnavailable
from .cache import environment_cache
from .interp import InterpBackend

BACKENDS: dict[str, object] = {}
DEFAULT_ORDER = ["cuda", "cpu", "interp"]   # cuda only where it can run (a GPU and PyCUDA)


def register_backend(backend) -> None:
    BACKENDS[backend.name] = backend


def get_backend(device: str | None):
    if device is None:
        for name in DEFAULT_ORDER:
            b = BACKENDS.get(name)
            if b is not None and getattr(b, "runnable", b.available)():
                return b
        raise DeviceUnavailable("no backend is available")
    b = BACKENDS.get(device)
    if b is None:
        raise DeviceUnavailable(f"unknown device {device!r}; known: {', '.join(sorted(BACKENDS))}")
    if not b.available():
        raise DeviceUnavailable(f"device {device!r} is not available here; use device='interp'")
    return b


register_backend(InterpBackend())


def _register_compiled():
    from .cpu import CpuBackend
    from .cuda import CudaBackend
    templates_cache.fallback_dir = lambda: environment_cache().private_dir("jinja")
    register_backend(CpuBackend())
    register_backend(CudaBackend())
    register_backend(CudaBackend(emulate=True))


_register_compiled()
