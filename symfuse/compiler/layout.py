"""Where the values of a fused partition live: parameter and result slots,
constants, and arena offsets from the memory planner (liveness over the group
schedule, in-place reuse). Shared by the cpu and cuda backends."""
from __future__ import annotations

from ..ir.core import Function
from ..errors import ShapeError
from ..ir.symdim import SymInt, concrete
from .fusion import materialised
from .memory import BufferUse, MemoryPlan, plan_memory


class Layout:
    """Where every materialised value of a partition lives (see ``layout``)."""
    where: dict       # id(value) -> ("param", k) | ("result", k) | ("arena", offset)
    slots: list       # (shape, numpy dtype) of each result buffer the kernels write
    result_plan: list # per function result: ("slot", k) | ("param", p) | ("const", array)
    plan: object      # the MemoryPlan of the arena buffers
    aliased: set      # ids of values written over a dying input (in-place)
    scratch: dict     # group index -> arena offset of the scratch bytes a library kernel asked for


class SizedPlan:
    """The arena of a function with one run-time size ``n``: a static region (the
    buffers of static size, planned as usual) followed by a region of rows, where a
    buffer of ``k*n + c`` bytes takes ``align(k + c)`` bytes per row. The rows are
    planned at n = 1 (``rows``); at any n a buffer sits at ``static + offset*n``, so
    buffers disjoint in the row plan are disjoint at every n, and the arena is
    ``static + per_row*n`` bytes: offsets and size are computed at call time."""

    def __init__(self, name: str, static: MemoryPlan, rows: MemoryPlan, n: SymInt):
        self.name, self.static, self.rows = name, static, rows
        self.static_bytes = _align(static.arena_bytes, static.alignment)
        self.per_row = rows.arena_bytes
        self.offsets = {**static.offsets, **{k: self.static_bytes + o * n for k, o in rows.offsets.items()}}
        self.arena_bytes = self.static_bytes + self.per_row * n
        self.naive_bytes = static.naive_bytes + rows.naive_bytes * n
        self.lower_bound_bytes = static.lower_bound_bytes + rows.lower_bound_bytes * n
        self.inplace = static.inplace + rows.inplace
        self.buffers = static.buffers + rows.buffers
        self.alignment = static.alignment

    def table(self) -> str:
        return (f"arena {self.static_bytes:,} B + {self.per_row:,} B x {self.name} "
                f"({len(self.static.offsets)} static buffers, {len(self.rows.offsets)} of {self.name} rows, "
                f"{len(self.inplace)} in place)")


def _affine(nbytes, name: str):
    """(k, c) when ``nbytes`` is k*name + c with k, c >= 0, else None."""
    if type(nbytes) is int:
        return 0, nbytes
    k = c = 0
    for mono, coef in nbytes.poly:
        if mono == ():
            c += coef
        elif mono == (name,):
            k += coef
        else:
            return None
    return (k, c) if k >= 0 and c >= 0 else None


def _plan(bufs: list, pairs: list, sizes):
    """The MemoryPlan of ``bufs`` (sizes concrete), or with a run-time size a
    SizedPlan when every size is affine in it, else the plan at its maximum."""
    if sizes is None:
        return plan_memory(bufs, pairs)
    name = sizes.names[0] if len(sizes.names) == 1 else None
    forms = {b.name: _affine(b.nbytes, name) for b in bufs} if name else {}
    if name and all(f is not None for f in forms.values()):
        static = [b for b in bufs if forms[b.name][0] == 0]
        rows = [BufferUse(b.name, _align(sum(forms[b.name]), 64), b.first, b.last) for b in bufs
                if forms[b.name][0] > 0]
        kinds = {b.name: forms[b.name][0] > 0 for b in bufs}
        return SizedPlan(name, plan_memory(static, [p for p in pairs if not kinds[p[0]] and not kinds[p[1]]]),
                         plan_memory(rows, [p for p in pairs if kinds[p[0]] and kinds[p[1]]]), SymInt.dim(name))
    if sizes.maximum is None:
        odd = next(b for b in bufs if type(b.nbytes) is not int and forms.get(b.name) is None)
        raise ShapeError(f"a buffer of {odd.nbytes!r} bytes: the arena can follow the run-time size only where "
                         f"every buffer is k*{' or '.join(sizes.names)} + c bytes; give max_batch= to plan it "
                         "for the largest size instead")
    at_max = sizes.at_max
    return plan_memory([BufferUse(b.name, concrete(b.nbytes, at_max), b.first, b.last) for b in bufs], pairs)


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def layout(fn: Function, part, scratch_bytes: dict[int, int] | None = None, sizes=None) -> Layout:
    """Where every materialised value lives: a parameter slot, a result slot,
    a static constant, or an arena offset from the memory planner. ``sizes``: the
    function's RuntimeSizes; its arena follows them (``SizedPlan``) or is planned
    for their maximum (a call with smaller sizes uses a prefix of each buffer's
    place: no two buffers alive together overlap at any size)."""
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
            bufs.append(BufferUse(str(id(v)), max(v.type.nbytes, 1), g.index,
                                  max(last.get(id(v), g.index), g.index)))
    # scratch of a library kernel: a buffer live during its own step only
    for gi, nbytes in (scratch_bytes or {}).items():
        if nbytes > 0:
            bufs.append(BufferUse(f"scratch{gi}", nbytes, gi, gi))
    lay.plan = _plan(bufs, _inplace_candidates(part, last), sizes)
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
