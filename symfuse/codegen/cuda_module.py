"""The cuda target's program: the translation unit NVRTC (or the emulator)
compiles for a function, from the kernels the CUDA renderer made
(``render_cuda.CudaRenderer``), and the units of the precompiled library
(``runtime/cuda_runtime.py`` builds them). Renders only: compiling, loading
and launching are the backend's (``runtime/cuda.py``)."""
from __future__ import annotations

from ..install_dirs import CUDA_TEMPLATE_DIR as TEMPLATE_DIR
from .render_cuda import library_kernel_source
from .templates_cache import template


def library_source(names, header: bool = True, part: int = 0, version: str = "") -> str:
    """A translation unit of the named library kernels (``header``: with the
    ``#include "runtime.cuh"`` scaffolding of ``lib.cu.j2``)."""
    sources = [library_kernel_source(n) for n in names]
    if not header:
        return "\n".join(sources)
    return template(TEMPLATE_DIR, "lib.cu.j2").render(sources=sources, part=part, version=version)


def render_module(name: str, version: str, kernels: list) -> str:
    """The unit of the kernels (``KernelInfo``) NVRTC compiles for this function:
    library-launched kernels are left out (they are in the precompiled library)."""
    kernels = [k for k in kernels if not k.in_library]
    return template(TEMPLATE_DIR, "module.cu.j2").render(name=name, version=version, kernels=kernels,
                                                         library=any(k.kind == "library" for k in kernels))
