"""Where the values of a fused partition live: parameter and result slots,
constants, and arena offsets from the memory planner (liveness over the group
schedule, in-place reuse). Shared by the cpu and cuda backends."""
from __future__ import annotations

from ..ir.core import Function
from ..ir.symdim import concrete
from .fusion import materialised
from .memory import BufferUse, plan_memory


class Layout:
    """Where every materialised value of a partition lives (see ``layout``)."""
    where: dict       # id(value) -> ("param", k) | ("result", k) | ("arena", offset)
    slots: list       # (shape, numpy dtype) of each result buffer the kernels write
    result_plan: list # per function result: ("slot", k) | ("param", p) | ("const", array)
    plan: object      # the MemoryPlan of the arena buffers
    aliased: set      # ids of values written over a dying input (in-place)
    scratch: dict     # group index -> arena offset of the scratch bytes a library kernel asked for


def layout(fn: Function, part, scratch_bytes: dict[int, int] | None = None, at_max: dict | None = None) -> Layout:
    """Where every materialised value lives: a parameter slot, a result slot,
    a static constant, or an arena offset from the memory planner. ``at_max``:
    the largest value of each run-time size; the arena is planned for those, and a
    call with smaller ones uses a prefix of each buffer's place (the offsets stay
    literal, and no two buffers alive together overlap at any size)."""
    at_max = at_max or {}
    lay = Layout()
    param_pos = {id(p): k for k, p in enumerate(fn.params)}
    lay.where: dict[int, tuple] = {}
    slots, result_plan = [], []
    produced = {}
    for g in part.groups:
        for v in g.outputs:
            produced[id(v)] = g.index
    for r in fn.results:
        if id(r) in lay.where and lay.where[id(r)][0] == "result":
            result_plan.append(("slot", lay.where[id(r)][1]))
        elif id(r) in produced:
            lay.where[id(r)] = ("result", len(slots))
            result_plan.append(("slot", len(slots)))
            slots.append((r.type.shape, r.type.dtype.np))
        elif id(r) in param_pos:
            result_plan.append(("param", param_pos[id(r)]))
        else:  # a constant result
            result_plan.append(("const", r.op.attrs["value"]))
    for p, k in param_pos.items():
        lay.where.setdefault(p, ("param", k))
    # liveness of arena buffers over the schedule
    last: dict[int, int] = {}
    for g in part.groups:
        for op in g.ops:
            for v in op.inputs:
                m = materialised(v, part.folded_views)
                last[id(m)] = max(last.get(id(m), -1), g.index)
    bufs = []
    for g in part.groups:
        for v in g.outputs:
            if id(v) in lay.where:
                continue
            bufs.append(BufferUse(str(id(v)), max(concrete(v.type.nbytes, at_max), 1), g.index,
                                  max(last.get(id(v), g.index), g.index)))
    # scratch of a library kernel: a buffer live during its own step only
    for gi, nbytes in (scratch_bytes or {}).items():
        nbytes = concrete(nbytes, at_max)
        if nbytes > 0:
            bufs.append(BufferUse(f"scratch{gi}", nbytes, gi, gi))
    lay.plan = plan_memory(bufs, _inplace_candidates(part, last))
    lay.scratch = {}
    for b in bufs:
        if b.name.startswith("scratch"):
            lay.scratch[int(b.name[7:])] = lay.plan.offsets[b.name]
        else:
            lay.where[int(b.name)] = ("arena", lay.plan.offsets[b.name])
    lay.aliased = {int(out) for out, _ in lay.plan.inplace}
    lay.slots, lay.result_plan = slots, result_plan
    return lay


def _inplace_candidates(part, last) -> list[tuple[str, str]]:
    """(out, in) pairs for pointwise kernels that may write over an input: the
    input dies here, has the output's size, and every read of it is at the
    output's own flat index (same shape, no view, no broadcast), so element i
    is read before element i is written and by no other iteration."""
    pairs = []
    for g in part.groups:
        if g.kind != "pointwise" or len(g.outputs) != 1 or g.root.opdef.kind != "elementwise":
            continue
        out = g.outputs[0]
        members = g.member_ids()
        reads: dict[int, bool] = {}   # id(buffer) -> read only at the output's index
        for op in g.ops:
            for v in op.inputs:
                if v.op is not None and id(v.op) in members:
                    continue
                m = materialised(v, part.folded_views)
                direct = m is v and v.type.shape == out.type.shape
                reads[id(m)] = reads.get(id(m), True) and direct
        for vid, direct in reads.items():
            if direct and last.get(vid) == g.index:
                pairs.append((str(id(out)), str(vid)))
    return pairs
