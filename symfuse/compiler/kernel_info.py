"""What ``f.kernels`` shows of a compiled kernel: plain records, detached from
the IR, that the graph cache stores and a hit restores without importing any
code generator or NVRTC: the kernel (``KernelInfo``) and what ptxas reported of
a CUDA kernel's resources (``KernelResources``)."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    def of(cls, spec) -> "KernelInfo":
        """From a code generator's kernel (C or CUDA: any object with these fields)."""
        return cls(spec.name, spec.kind, spec.fused_ops, spec.provenance, spec.source, spec.size, spec.parallel,
                   spec.bytes_read, spec.bytes_written, [cls.of(p) for p in getattr(spec, "parts", ())] or None)


@dataclass
class KernelResources:
    """Per-kernel resource usage reported by ``ptxas -v``; all sizes in bytes.
    ptxas omits zero items, and recent ptxas omits cmem for sm_90+ entirely."""
    registers: int = 0
    barriers: int = 0
    shared_bytes: int = 0      # static __shared__ (smem)
    const_bytes: int = 0       # sum over the cmem banks below
    local_bytes: int = 0       # lmem (older ptxas only)
    stack_bytes: int = 0       # stack frame
    spill_stores: int = 0
    spill_loads: int = 0
    cmem: dict[int, int] = field(default_factory=dict)    # bank -> bytes; bank 0 holds the parameters
    other: dict[str, int] = field(default_factory=dict)   # e.g. {"cumulative stack size": 32}

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads)
