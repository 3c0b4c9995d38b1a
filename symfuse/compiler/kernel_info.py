"""What ``f.kernels`` shows of a compiled kernel: a plain record, detached from
the IR, that the graph cache stores and a hit restores without importing any
code generator."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KernelInfo:
    """What ``f.kernels`` shows of a kernel, detached from the IR: the form a
    graph-cache hit restores (no ops, no passes, no codegen)."""
    name: str
    kind: str
    fused_ops: list[str]
    provenance: list[str]
    source: str
    size: int
    parallel: bool
    bytes_read: int
    bytes_written: int
    parts: list = None                # a multi kernel's parts (KernelInfo each)

    @classmethod
    def of(cls, spec: "KernelSpec") -> "KernelInfo":
        return cls(spec.name, spec.kind, spec.fused_ops, spec.provenance, spec.source, spec.size, spec.parallel,
                   spec.bytes_read, spec.bytes_written, [cls.of(p) for p in getattr(spec, "parts", ())] or None)
