"""Renderers: a ``Kernel`` record (``kernel.py``) to source text through one
target's Jinja templates, as ``KernelInfo`` (what ``f.kernels`` shows and the
graph cache stores). Lowering is done by then; a renderer decides only how its
target runs the record (threads, vector widths, launch shapes) and never reads
the code it generated. Each target is a subclass (``render_c.CRenderer``,
``render_cuda.CudaRenderer``) that declares what it can do in the flags below.
"""
from __future__ import annotations

from ..compiler.kernel_info import KernelInfo
from .kernel import Kernel, LibraryCall, c_type
from .templates_cache import template


class Renderer:
    """Kernel records of one target to code."""

    device: str = ""              # the backend it renders for (named in errors)
    template_dir: str = ""        # its Jinja templates
    restrict: str = ""            # qualifier of a pointer parameter that aliases no other
    has_openmp: bool = False      # a kernel may run its outer loop on the runtime's thread pool
    vector_loads: bool = False    # a pointwise kernel may move several elements per load and store

    def template(self, name: str):
        return template(self.template_dir, name)

    def params(self, kernel: Kernel, aliased: bool = False) -> list[str]:
        """The pointer parameters ``in<k>`` then ``out<k>``. ``aliased``: an output
        is written over an input (the in-place memory plan), so none may be
        declared free of aliases."""
        q = "" if aliased or not self.restrict else " " + self.restrict
        return ([f"const {c_type(b.dtype)}*{q} {b.name}" for b in kernel.inputs] +
                [f"{c_type(b.dtype)}*{q} {b.name}" for b in kernel.outputs])

    def signature(self, kernel: Kernel, aliased: bool = False) -> str:
        return ", ".join(self.params(kernel, aliased)) or "void"

    def lower_library(self, op, ins: list[str], outs: list[str], hints: dict) -> LibraryCall:
        """``op`` lowered by this target's runtime-library table (``ins`` / ``outs``:
        the pointer expressions of its operands and results)."""
        raise NotImplementedError

    def render(self, kernel: Kernel, aliased: bool = False) -> KernelInfo:
        raise NotImplementedError

    @staticmethod
    def info(kernel: Kernel, source: str, parallel: bool, parts=(), launches=(), scratch_bytes: int = 0) -> KernelInfo:
        """The record as ``f.kernels`` shows it, with its source and how it runs."""
        return KernelInfo(kernel.name, kernel.kind, list(kernel.fused_ops), list(kernel.provenance), source,
                          kernel.size, parallel, kernel.bytes_read, kernel.bytes_written, list(parts) or None,
                          list(launches), scratch_bytes)
