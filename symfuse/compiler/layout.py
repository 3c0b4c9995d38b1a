"""Where the values of a fused partition live: parameter and result slots,
constants, and arena offsets from the memory planner (liveness over the group
schedule, in-place reuse). Shared by the cpu and cuda backends."""
from __future__ import annotations

import math

from ..errors import ShapeError
from ..ir.core import Function
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
    """The arena of a function with run-time sizes: a static region (the buffers of
    static size, planned as usual), then one region per product of sizes ``m`` (n,
    n*n, n*t, ...) that bounds some buffers: a buffer of at most ``k*m`` bytes takes
    ``align(k)`` bytes per unit of m. Each region is planned at m = 1 (``rows``); at
    any sizes a buffer sits at the region's start plus ``offset*m``, so buffers
    disjoint in a region's plan are disjoint at every size, and the arena is
    ``static + per_unit*m + ...``: offsets and size are computed at call time."""

    def __init__(self, static: MemoryPlan, rows: dict):
        self.static, self.rows = static, rows       # rows: monomial (names) -> MemoryPlan in bytes per unit
        self.static_bytes = _align(static.arena_bytes, static.alignment)
        self.offsets = dict(static.offsets)
        base = self.static_bytes
        self.units = {}
        for mono, plan in rows.items():
            m = math.prod(SymInt.dim(n) for n in mono)
            self.units[mono] = m
            self.offsets.update({k: base + o * m for k, o in plan.offsets.items()})
            base = base + plan.arena_bytes * m
        self.arena_bytes = base
        self.naive_bytes = static.naive_bytes + sum(p.naive_bytes * self.units[k] for k, p in rows.items())
        self.lower_bound_bytes = static.lower_bound_bytes + sum(p.lower_bound_bytes * self.units[k]
                                                                for k, p in rows.items())
        self.inplace = static.inplace + [x for p in rows.values() for x in p.inplace]
        self.buffers = static.buffers + [b for p in rows.values() for b in p.buffers]
        self.alignment = static.alignment

    def table(self) -> str:
        per = " + ".join(f"{p.arena_bytes:,} B x {self.units[k]!r}" for k, p in self.rows.items())
        return (f"arena {self.static_bytes:,} B + {per} ({len(self.static.offsets)} static buffers, "
                f"{sum(len(p.offsets) for p in self.rows.values())} by size, {len(self.inplace)} in place)")


def _bound(nbytes):
    """(monomial, k): ``nbytes`` <= k * monomial at every size >= 1, the monomial a
    sorted tuple of size names (() for a static size), or None. Each term is bounded
    by its coefficient times the product of the names at their highest power in any
    term (sizes are >= 1); negative terms are left out; x // q is bounded by x's
    bound over q, x % q by q - 1."""
    if type(nbytes) is int:
        return (), max(nbytes, 0)
    return _poly_bound(nbytes.poly)


def _poly_bound(poly):
    power: dict = {}
    k = 0
    for mono, coef in poly:
        if coef <= 0:
            continue
        names: dict = {}
        c = coef
        for atom in mono:
            if isinstance(atom, str):
                names[atom] = names.get(atom, 0) + 1
                continue
            op, num, den = atom
            q = den[0][1] if len(den) == 1 and den[0][0] == () else None
            if q is None or q <= 0:
                return None
            if op == "%":
                c *= q - 1
                continue
            inner = _poly_bound(num)
            if inner is None:
                return None
            for n in inner[0]:
                names[n] = names.get(n, 0) + 1
            c *= -(-inner[1] // q)
        for n, e in names.items():
            power[n] = max(power.get(n, 0), e)
        k += c
    return tuple(sorted(n for n, e in power.items() for _ in range(e))), k


def _plan(bufs: list, pairs: list, sizes):
    """The MemoryPlan of ``bufs`` (sizes concrete), or with run-time sizes a SizedPlan
    when every size is affine in one of them, else the plan at their maximum."""
    if sizes is None:
        return plan_memory(bufs, pairs)
    forms = {b.name: _bound(b.nbytes) for b in bufs}
    # in place only over a buffer of exactly the same size: rows rounded to the alignment
    # would make a float32 result "fit" a float64 operand, written ahead of its reads
    exact = {b.name: repr(b.nbytes) for b in bufs}
    pairs = [p for p in pairs if exact.get(p[0]) is not None and exact.get(p[0]) == exact.get(p[1])]
    if all(f is not None for f in forms.values()):
        region = {b.name: forms[b.name][0] for b in bufs}
        same = lambda p, r: p[0] in region and p[1] in region and region[p[0]] == region[p[1]] == r  # noqa: E731
        static = plan_memory([b for b in bufs if region[b.name] == ()], [p for p in pairs if same(p, ())])
        rows = {}
        for mono in sorted({r for r in region.values() if r}, key=lambda m: (len(m), m)):
            mine = [BufferUse(b.name, _align(max(forms[b.name][1], 1), 64), b.first, b.last)
                    for b in bufs if region[b.name] == mono]
            rows[mono] = plan_memory(mine, [p for p in pairs if same(p, mono)])
        return SizedPlan(static, rows)
    if sizes.maximum is None:
        odd = next(b for b in bufs if forms[b.name] is None)
        raise ShapeError(f"a buffer of {odd.nbytes!r} bytes: the arena follows the run-time sizes where each "
                         "buffer's size has a bound of the form k * a product of sizes; give max_batch= to plan it "
                         "for the largest sizes instead")
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
