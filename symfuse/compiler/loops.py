"""Plans for the loops and branches of a program (``scan``, ``while_loop``, ``cond``)
on a compiled target: each region body is fused and laid out like a function of
its own, and its control group gets scratch in the enclosing arena for the
carries (two buffers: a step reads one and writes the other) and for the body's
own arena.

A compiled body writes every result through its result pointers: the loop hands
it the next carry buffer and the step's slice of each stacked output. A body
result that no kernel of the body writes (a parameter passed through, a
constant, a value yielded twice) is therefore given a copy first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..ir.symdim import SymInt, aligned_bound
from ..ir.core import Function, Op, Region, Value, format_loc, get_opdef
from .kernel_info import KernelInfo
from .fusion import Partition, fuse
from .layout import Layout, layout

ALIGN = 64     # carry buffers: each carry at a 64-byte boundary, as arena buffers are


@dataclass
class BodyPlan:
    """One region compiled as a function: every result written by a kernel."""
    fn: Function
    part: Partition
    lay: Layout
    loops: dict[int, "LoopPlan"]        # group index -> plan of a nested control group
    lowered: list | None = None         # what the target's ``prepare`` made of the partition


@dataclass
class LoopPlan:
    """A control group's regions and where its scratch goes: ``carry_offsets`` within
    each of the two carry buffers (``carry_bytes`` each), then the body arena."""
    op: Op
    bodies: list[BodyPlan]
    carry_offsets: list[int] = field(default_factory=list)
    carry_bytes: int = 0

    @property
    def label(self) -> str:
        """What the loop is and where the user wrote it: "scan of 50 steps (model.py:12)"."""
        op = self.op
        what = f"scan of {op.attrs['length']} steps" if op.opdef.name == "scan" else op.opdef.name.replace("_", " ")
        where = format_loc(op.loc)
        if where:
            path, line = where.rsplit(":", 1)
            what += f" ({os.path.basename(path)}:{line})"
        return what

    def info(self, name: str, parts: list):
        """The loop as ``f.kernels`` shows it: its body kernels as ``parts``."""
        op = self.op
        return KernelInfo(name, op.opdef.name, [op.opdef.name], [self.label], "", 0, False,
                          sum(v.type.nbytes for v in op.inputs), sum(v.type.nbytes for v in op.outputs), parts,
                          scratch_bytes=self.scratch_bytes)

    @property
    def step_work(self) -> int:
        """Element operations of one step of the bodies (a matrix product counts m*n*k):
        whether splitting a step's kernels over threads can pay for waking them."""
        total = 0
        for b in self.bodies:
            for op in b.fn.ops:
                out = op.outputs[0].type
                k = op.inputs[0].shape[-1] if op.opdef.gemm_like and op.inputs and op.inputs[0].ndim else 1
                total += out.size * k
        return total

    @property
    def body_arena_offset(self) -> int:
        return 2 * self.carry_bytes

    @property
    def scratch_bytes(self) -> int:
        return self.body_arena_offset + max((b.lay.plan.arena_bytes for b in self.bodies), default=0)


@dataclass
class ProgramPlan:
    part: Partition
    lay: Layout
    loops: dict[int, LoopPlan]
    lowered: list | None = None


def _aligned(n: int) -> int:
    if type(n) is SymInt:       # k*size + c: align k and c, a bound that stays affine and aligned at every size
        return aligned_bound(n, ALIGN)
    return -(-max(n, 1) // ALIGN) * ALIGN


def plan_program(fn: Function, horizontal: bool = True, prepare=None, sizes=None) -> ProgramPlan:
    """Fusion and memory layout of ``fn`` and, recursively, of its regions.
    ``prepare(partition) -> (scratch bytes by group index, lowered)``: a target's
    work between fusion and the plan (kernels whose workspace the plan places)."""
    part = fuse(fn, horizontal=horizontal)
    scratch, lowered = prepare(part) if prepare is not None else ({}, None)
    loops = {g.index: plan_loop(g.root, prepare, sizes) for g in part.groups if g.kind == "control"}
    lay = layout(fn, part, {**scratch, **{i: lp.scratch_bytes for i, lp in loops.items()}}, sizes)
    return ProgramPlan(part, lay, loops, lowered)


def plan_loop(op: Op, prepare=None, sizes=None) -> LoopPlan:
    """``sizes``: the function's RuntimeSizes (``layout``)."""
    bodies = []
    for r in op.regions:
        fn = written_results(r)
        p = plan_program(fn, horizontal=False, prepare=prepare, sizes=sizes)
        bodies.append(BodyPlan(fn, p.part, p.lay, p.loops, p.lowered))
    lp = LoopPlan(op, bodies)
    n = op.attrs.get("carries", 0)
    off = 0
    for v in op.inputs[:n]:
        lp.carry_offsets.append(off)
        off += _aligned(v.type.nbytes)
    lp.carry_bytes = off
    return lp


def written_results(region: Region) -> Function:
    """``region`` as a Function whose every result a kernel writes: a result that is a
    parameter, a constant or a repeat of an earlier result becomes a copy."""
    copy = get_opdef("copy")
    seen: set[int] = set()
    results = []
    for v in region.results:
        if v.op is None or v.op.opdef.fusion == "constant" or id(v) in seen:
            v = Op(copy, [v], {}, [v.type]).outputs[0]
        seen.add(id(v))
        results.append(v)
    return Function(region.params, results, "region")


def slice_bytes(v: Value) -> int:
    """Bytes of one step's slice of a stacked (or scanned) value."""
    return v.type.nbytes // v.type.shape[0] if v.type.shape and v.type.shape[0] else 0
