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
    """The arena of a function with run-time sizes: a static region (the buffers of
    static size, planned as usual), then for each size ``n`` a region of rows, where a
    buffer of at most ``k*n + c`` bytes takes ``align(k + c)`` bytes per row. Each
    region is planned at n = 1 (``rows``); at any n a buffer sits at the region's
    start plus ``offset*n``, so buffers disjoint in a row plan are disjoint at every
    n, and the arena is ``static + per_row*n + ...``: offsets and size are computed
    at call time."""

    def __init__(self, static: MemoryPlan, rows: dict):
        self.static, self.rows = static, rows       # rows: size name -> MemoryPlan in bytes per row
        self.static_bytes = _align(static.arena_bytes, static.alignment)
        self.offsets = dict(static.offsets)
        base = self.static_bytes
        for name, plan in rows.items():
            n = SymInt.dim(name)
            self.offsets.update({k: base + o * n for k, o in plan.offsets.items()})
            base = base + plan.arena_bytes * n
        self.arena_bytes = base
        self.naive_bytes = static.naive_bytes + sum(p.naive_bytes * SymInt.dim(k) for k, p in rows.items())
        self.lower_bound_bytes = static.lower_bound_bytes + sum(p.lower_bound_bytes * SymInt.dim(k)
                                                                for k, p in rows.items())
        self.inplace = static.inplace + [x for p in rows.values() for x in p.inplace]
        self.buffers = static.buffers + [b for p in rows.values() for b in p.buffers]
        self.alignment = static.alignment

    def table(self) -> str:
        per = " + ".join(f"{p.arena_bytes:,} B x {k}" for k, p in self.rows.items())
        return (f"arena {self.static_bytes:,} B + {per} ({len(self.static.offsets)} static buffers, "
                f"{sum(len(p.offsets) for p in self.rows.values())} in rows, {len(self.inplace)} in place)")


def _affine(nbytes):
    """(name, k, c), k and c >= 0, with ``nbytes`` <= k*name + c at every size >= 1
    (name None for a static size), or None (a product of sizes, two names). Terms
    with a negative coefficient are left out; x // q is at most ceil(k/q)*name +
    ceil(c/q), x % q at most q - 1."""
    if type(nbytes) is int:
        return None, 0, max(nbytes, 0)
    names = nbytes.names
    if len(names) != 1:
        return None if names else (None, 0, max(int(nbytes), 0))
    name = next(iter(names))
    bound = _poly_bound(nbytes.poly, name)
    return None if bound is None else (name, *bound)


def _poly_bound(poly, name):
    k = c = 0
    for mono, coef in poly:
        if coef < 0:
            continue
        if mono == ():
            c += coef
        elif mono == (name,):
            k += coef
        elif len(mono) == 1 and not isinstance(mono[0], str):
            op, num, den = mono[0]
            q = den[0][1] if len(den) == 1 and den[0][0] == () else None
            inner = _poly_bound(num, name)
            if q is None or q <= 0 or inner is None:
                return None
            dk, dc = ((-(-inner[0] // q), -(-inner[1] // q)) if op == "//" else (0, q - 1))
            k, c = k + coef * dk, c + coef * dc
        else:
            return None
    return k, c


def _plan(bufs: list, pairs: list, sizes):
    """The MemoryPlan of ``bufs`` (sizes concrete), or with run-time sizes a SizedPlan
    when every size is affine in one of them, else the plan at their maximum."""
    if sizes is None:
        return plan_memory(bufs, pairs)
    forms = {b.name: _affine(b.nbytes) for b in bufs}
    if all(f is not None for f in forms.values()):
        region = {b.name: forms[b.name][0] if forms[b.name][1] > 0 else None for b in bufs}
        same = lambda p, r: p[0] in region and p[1] in region and region[p[0]] == region[p[1]] == r  # noqa: E731
        static = plan_memory([b for b in bufs if region[b.name] is None], [p for p in pairs if same(p, None)])
        rows = {}
        for name in sizes.names:
            mine = [BufferUse(b.name, _align(forms[b.name][1] + forms[b.name][2], 64), b.first, b.last)
                    for b in bufs if region[b.name] == name]
            if mine:
                rows[name] = plan_memory(mine, [p for p in pairs if same(p, name)])
        return SizedPlan(static, rows)
    if sizes.maximum is None:
        odd = next(b for b in bufs if forms[b.name] is None)
        raise ShapeError(f"a buffer of {odd.nbytes!r} bytes: the arena can follow the run-time sizes only where "
                         f"each buffer is k*size + c bytes of one size; give max_batch= to plan it for the "
                         "largest sizes instead")
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
