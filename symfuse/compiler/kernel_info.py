"""What ``f.kernels`` shows of a compiled kernel, on every compiled device:
plain records, detached from the IR, that the graph cache stores and a hit
restores without importing any code generator or NVRTC. ``KernelInfo`` is the
kernel (a code generator's renderer makes it from its kernel record and the
source it rendered), ``LaunchSpec`` one launch of a GPU kernel, and
``KernelResources`` what ptxas reported of it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LaunchSpec:
    """One launch of a GPU kernel, as the executors run it."""
    kernel: str                     # extern "C" name in the module (or the precompiled library)
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0
    scratch: bool = False           # takes the group's scratch pointer after the tensors (null when unused)
    library: bool = False           # a kernel of the precompiled library (runtime/cuda_runtime.py), not the unit's
    args: tuple = ()                # scalar arguments after the pointers: (value, C type) each (library kernels)


@dataclass
class KernelInfo:
    """One fused kernel: its name, the ops it fuses and where the user wrote
    them, its source and sizes; on a GPU device also its launches, the scratch
    memory they share and (after NVRTC) the resources of each launched kernel.
    A multi kernel lists its ``parts`` (each a KernelInfo)."""
    name: str
    kind: str                         # pointwise | reduce | multi | library | collective
    fused_ops: list[str]
    provenance: list[str]             # "op type  (file:line)" per fused op
    source: str
    size: int                         # output elements
    parallel: bool
    bytes_read: int
    bytes_written: int
    parts: list | None = None
    launches: list[LaunchSpec] = field(default_factory=list)
    scratch_bytes: int = 0
    resources: dict = field(default_factory=dict)   # launched kernel name -> KernelResources (None: not reported)

    # The program this kernel belongs to (set by a GPU backend, not stored): where
    # ``cubin``, ``ptx`` and ``sass`` come from.
    program = None

    def info(self) -> "KernelInfo":
        """The kernel as plain data, detached from the program: a KernelInfo already is."""
        return self

    @property
    def in_library(self) -> bool:
        """Every launch runs a kernel of the precompiled library (none is in the unit)."""
        return bool(self.launches) and all(ln.library for ln in self.launches)

    @property
    def launch_config(self) -> list[dict]:
        out = []
        for ln in self.launches:
            d = {"kernel": ln.kernel, "grid": ln.grid, "block": ln.block, "shared_bytes": ln.shared_bytes}
            if ln.library:
                d["library"], d["args"] = True, [v for v, _ in ln.args]
            out.append(d)
        return out

    @property
    def cubin(self) -> bytes | None:
        """The CUBIN of the unit that holds this kernel (NVRTC compiles a function
        as one unit, or as several in parallel when it is large), or of the
        library image holding its library kernel."""
        if self.program is None:
            return None
        if self.in_library:
            return self.program.library_image(self.launches[0].kernel)
        return self.program.cubin_of(self.name)

    @property
    def ptx(self) -> str:
        """This kernel's PTX (``.entry`` of each of its launches), compiled on demand
        by the program that holds it."""
        if self.program is None:
            raise ValueError("no PTX: this kernel was not compiled for a GPU")
        text = self.program.ptx_of(self)
        return _sections(text, [ln.kernel for ln in self.launches], ".entry ", "\n}\n")

    @property
    def sass(self) -> str:
        """This kernel's SASS, disassembled by nvdisasm (``pip install nvidia-cuda-nvdisasm``)."""
        if self.cubin is None:
            raise ValueError("no CUBIN: this function was compiled for cuda-emu")
        text = self.program.sass_of(self.cubin)
        return _sections(text, [ln.kernel for ln in self.launches], ".text.", "\n\n\t\t.section")


def _sections(text: str, names: list[str], start: str, end: str) -> str:
    """The parts of a PTX/SASS listing that belong to the named kernels."""
    import re
    out = []
    for n in names:
        # the whole name: E_4x512_add_relu must not find E_4x512_add_relu_1
        m = re.search(re.escape(start + n) + r"(?![\w$])", text)
        if m is None:
            continue
        i = m.start()
        j = text.find(end, i)
        out.append(text[i:j + 1 if j >= 0 else len(text)])
    return "\n".join(out) if out else text


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


@dataclass(frozen=True)
class CollectiveStep:
    """A collective op in a GPU program's launch schedule: the host runs it between
    launches on staged copies of its operands, through the op's reference (MPI by
    mpi4py), and writes its results back (``cuda_schedule.ScheduleRunner``).
    ``attrs``: the op's attributes as (name, value) pairs; ``ins`` / ``outs``:
    argument refs of its operands and results."""
    op: str
    attrs: tuple
    ins: tuple
    outs: tuple


@dataclass(frozen=True)
class ControlStep:
    """A loop or branch in a GPU program's launch schedule: the executor runs its
    region bodies' schedules (``bodies``, each a tuple of launches and steps) once
    per step or for the branch taken, with their parameters and results pointing
    into the step's slices and the carry buffers of its scratch.

    ``ins`` / ``outs``: argument refs of the op's operands and results;
    ``scratch``: arena offset of its scratch (carries twice, then the body arena);
    ``carry_offsets`` / ``carry_nbytes``: each carry in a carry buffer;
    ``seq_step`` / ``out_step``: bytes of one step's slice of each sequence and of
    each stacked output (the saved carries last)."""
    op: str                           # scan | while_loop | cond
    ins: tuple
    outs: tuple
    scratch: int
    carry_offsets: tuple
    carry_nbytes: tuple
    carry_bytes: int
    body_arena: int
    seq_step: tuple = ()
    out_step: tuple = ()
    length: int = 0
    reverse: bool = False
    save: bool = False
    max_iterations: int = 0
    bodies: tuple = ()
