"""The C renderer (``device="cpu"``): kernel records to the functions of one C
translation unit, from ``templates/c``.

Parallel kernels carry no ``#pragma omp``: each is a ``_range(lo, hi, args)``
function over its outermost loop, run by the runtime's ``sf_parallel_range``
(one static chunk per OpenMP thread); a multi kernel's parts are range
functions that ``sf_parallel_parts`` runs in one parallel region. Loop trip
counts are chosen for gcc's very-cheap vectoriser (``Schedule``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..compiler.kernel_info import KernelInfo
from ..install_dirs import C_TEMPLATE_DIR
from .c_collective import PENDING
from .kernel import Kernel, LibraryCall, c_type
from .render import Renderer

PARALLEL_MIN_WORK = 1 << 16   # below this many element-ops a parallel region costs more than it saves
# A float sum is one dependency chain unless split: without -ffast-math gcc may not
# reorder it, so `acc += x` ran scalar at one add per ~4 cycles (LeNet-5's conv1 bias
# gradient, 1.5M elements: ~2 ms). Sums whose innermost reduced loop has at least
# LANE_MIN elements accumulate into SUM_LANES lanes (element r into lane r % SUM_LANES,
# a vector of doubles), added in a fixed tree at the end: deterministic, another order.
SUM_LANES = 8
LANE_MIN = 32
VECTOR_BYTES = 64   # a vector block: one AVX-512 register, two AVX2 ones


@dataclass(frozen=True)
class Schedule:
    """How a C kernel runs its loop nest. A thread's share [lo, hi) counts
    ``outer`` units: outer-loop indices, or with ``block`` blocks of that many
    elements of a flat loop (``tail`` elements left after the last block); a
    literal innermost loop stops at ``inner_whole`` and a scalar loop finishes
    it. A sum of ``lanes`` lanes adds them as ``lane_sum``."""
    parallel: bool
    outer: int
    block: int = 0
    tail: int = 0
    inner_whole: int = 0
    lanes: int = 0
    lane_sum: str = ""
    full: int = 0           # with a run-time count: the whole blocks (outer is one more)
    sized: bool = False     # a run-time count: the tail loop is always there (it may run 0 times)
    lane_tail: bool = False  # a lane sum's innermost count is not a multiple of the lanes


class CRenderer(Renderer):
    device = "cpu"
    template_dir = C_TEMPLATE_DIR
    restrict = "restrict"
    has_openmp = True
    vector_bytes = VECTOR_BYTES   # the vector block the pointwise loops are cut into
    sum_lanes = SUM_LANES         # accumulators of a long float sum

    def lower_library(self, op, ins, outs, hints) -> LibraryCall:
        from .c_library import LIBRARY
        lower = LIBRARY.get(op.opdef.name)
        if lower is None:
            raise NotImplementedError(f"the {self.device} backend has no kernel for op {op.opdef.name!r}")
        call = lower(op, ins, outs, hints)
        if isinstance(call, str):
            return LibraryCall(op.opdef.name, call=call)
        return LibraryCall(op.opdef.name, call=call.code, helpers=tuple(call.helpers),
                           wait=getattr(call, "wait", ""), collective=getattr(call, "collective", False))

    def render(self, kernel: Kernel, aliased: bool = False, part: bool = False) -> KernelInfo:
        """``part``: a part of a multi kernel, rendered as its range function only."""
        if kernel.kind == "multi":
            return self._multi(kernel, aliased)
        if kernel.kind == "library":
            return self._library(kernel, aliased)
        s = self.schedule(kernel)
        source = self.template(f"{kernel.kind}.c.j2").render(k=kernel, r=kernel.reduction, s=s, part=part,
                                                              **self._frame(kernel, aliased))
        return self.info(kernel, source, s.parallel)

    def schedule(self, k: Kernel) -> Schedule:
        """Trip counts that gcc's very-cheap vectoriser takes (runtime/cpu.py's
        flags: a literal multiple of the vector length, no epilogue, no alias
        check), and whether the kernel has the work to run in parallel."""
        if k.kind == "reduce":
            r = k.reduction
            lanes = self.sum_lanes if r.op == "sum" and r.rloops and r.rloops[-1].size >= LANE_MIN else 0
            rem = r.rloops[-1].size % lanes if lanes else 0     # a run-time remainder: the tail is always there
            return Schedule(self._parallel(k.size >= 2 and k.space * max(1, len(k.fused_ops)) >= PARALLEL_MIN_WORK),
                            r.oloops[0].size if r.oloops else 1, lanes=lanes,
                            lane_sum=_tree_sum([f"lane[{j}]" for j in range(lanes)]) if lanes else "",
                            lane_tail=type(rem) is not int or rem != 0)
        width = min(b.dtype.itemsize for b in k.inputs + k.outputs) if k.inputs else 4
        block = self.vector_bytes // max(1, width)
        n = k.loops[-1].size
        parallel = self._parallel(k.size * max(1, len(k.fused_ops)) >= PARALLEL_MIN_WORK)
        if len(k.loops) == 1 and type(n) is not int:
            # a run-time count: the share may end in the partial block (unit n // block), which
            # only the thread whose share ends the loop runs, as the tail
            return Schedule(parallel, n // block + 1, block, n % block, full=n // block, sized=True)
        if len(k.loops) == 1 and n >= 2 * block:
            return Schedule(parallel, n // block, block, n % block)
        if len(k.loops) > 1 and type(n) is int and n > block and n % block:
            return Schedule(parallel, k.loops[0].size, inner_whole=n - n % block)
        return Schedule(parallel, k.loops[0].size)

    def _parallel(self, enough_work: bool) -> bool:
        return self.has_openmp and enough_work

    def _frame(self, k: Kernel, aliased: bool) -> dict:
        """The kernel function's signature, and the array a parallel body takes
        its pointers from (``unpack`` them from ``sf_args``, ``pack`` them into it)."""
        params = self.params(k, aliased)
        types = [f"const {c_type(b.dtype)}*" for b in k.inputs] + [f"{c_type(b.dtype)}*" for b in k.outputs]
        return {"signature": ", ".join(params) or "void",
                "unpack": [f"{p} = ({t})sf_args[{j}];" for j, (p, t) in enumerate(zip(params, types))],
                "pack": ", ".join(f"(void*){b.name}" for b in k.inputs + k.outputs) or "0"}

    def _multi(self, k: Kernel, aliased: bool) -> KernelInfo:
        """Every part's range function, then the kernel mapping its parameters
        onto each part's and running all parts in one parallel region, split by
        work (sf_parallel_parts in runtime.h)."""
        parts, rendered = [], []
        for p in k.parts:
            info = self.render(p.kernel, aliased, part=True)
            pk = p.kernel
            # outer loop extent and work per outer index: the parallel split balances work, not indices
            outer = self.schedule(pk).outer
            parts.append({"name": pk.name, "source": info.source, "outer": outer,
                          "weight": max(1, pk.space // max(outer, 1)),
                          "args": [f"(void*)in{j}" for j in p.inputs] + [f"(void*)out{j}" for j in p.outputs]})
            rendered.append(info)
        total = sum(p.kernel.space for p in k.parts)
        parallel = self._parallel(total * max(1, len(k.fused_ops) // len(k.parts)) >= PARALLEL_MIN_WORK)
        sized = any(type(p["outer"]) is not int or type(p["weight"]) is not int for p in parts)
        source = self.template("multi.c.j2").render(k=k, parts=parts, parallel=parallel, sized=sized,
                                                    signature=self.signature(k, aliased))
        return self.info(k, source, parallel, rendered)

    def _library(self, k: Kernel, aliased: bool) -> KernelInfo:
        source = self.template("library.c.j2").render(k=k, helpers=self.render_helpers(k.library.helpers),
                                                      signature=self.signature(k, aliased),
                                                      call=k.library.call.replace(PENDING, k.name + "_pending"))
        info = self.info(k, source, False)
        if k.library.collective:
            info.kind = "collective"
        return info

    def render_helpers(self, helpers) -> str:
        """The C definitions of a library call's helpers (``c_library.Helper``)."""
        return "\n".join(self.template(h.template).render(h=h.values()) for h in helpers)


def _tree_sum(terms: list[str]) -> str:
    while len(terms) > 1:
        terms = [f"({a} + {b})" for a, b in zip(terms[::2], terms[1::2])] + (terms[-1:] if len(terms) % 2 else [])
    return terms[0]
