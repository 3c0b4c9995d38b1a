"""Fusion: partition an optimised Function into kernel groups in schedule order.

Op classes come from ``OpDef.fusion`` (no lists of op names here):

* pointwise — ``elementwise`` ops. Fused into the single group that consumes
  them when they have the group's iteration size, so every fused value is
  computed exactly once per output element (**no recomputation**: a producer
  whose value would be needed at several positions per element — through a
  broadcast, a slice or two different index maps — is materialised instead).
* view — ``shape`` ops that only move data (reshape, transpose, broadcast_to,
  slice, flip). Inside a group they become index arithmetic on the load of a
  materialised buffer; on their own they are a copy kernel.
* reduce — sum/prod/max/min: one kernel with its pointwise producers fused as
  a prologue evaluated inside the reduction loop.
* library — everything else (matmul, conv, pooling, row-wise softmax family,
  gather, random, ...): one call into the C runtime library per op, chosen in
  Python and emitted as a call with literal shapes.
* control — scan, while_loop, cond: a group of its own that reads whole buffers;
  the backend runs its regions (each compiled like a function) in a loop or branch.

Kernel arguments are bounded by MAX_KERNEL_INPUTS: a group that would read
more distinct buffers stops absorbing producers (C has no hard limit, CUDA's
parameter space does).

Horizontal fusion (``fuse(fn, horizontal=True)``): after the vertical pass, the
pointwise and reduce groups that are sinks of the group graph and write only
function results — in a training step, the parameter updates: ``p - lr * g``
and the bias updates fused behind their gradient's reduction — merge into
"multi" groups, each part keeping its own loop nest and the kernel running all
parts in one parallel region. A sink has no consumer, so a multi group placed at
its last part's position keeps the schedule valid (no cycle check needed); the
cost is that the parts' inputs (the gradients) stay live until then. Parts are
added while the multi group reads and writes at most MAX_KERNEL_INPUTS distinct
buffers.
"""
from __future__ import annotations

import graphlib
import heapq
from dataclasses import dataclass, field

from ..ir.core import Function, Op, Value

MAX_KERNEL_INPUTS = 64
# groups that read their operands as whole buffers: nothing is fused into them
_OPAQUE = ("library", "control")


def op_class(op: Op) -> str:
    return op.opdef.fusion


@dataclass
class KernelGroup:
    kind: str                       # pointwise | reduce | library | control | multi
    root: Op                        # the op whose output defines the iteration space
    ops: list[Op] = field(default_factory=list)   # members in topological order
    index: int = -1
    out_op: Op | None = None        # the op whose outputs the group writes (default: root)
    epilogue: set[int] = field(default_factory=set)   # ids of ops applied to a reduction's result
    extra_outputs: list[Value] = field(default_factory=list)   # fused values that are also results
    parts: list["KernelGroup"] = field(default_factory=list)   # a multi group's independent groups

    @property
    def outputs(self) -> list[Value]:
        if self.parts:
            return [v for p in self.parts for v in p.outputs]
        return list((self.out_op or self.root).outputs) + self.extra_outputs

    def member_ids(self) -> set[int]:
        return {id(o) for o in self.ops}


@dataclass
class Partition:
    groups: list[KernelGroup]          # schedule order
    folded_views: set[int]             # ids of view ops folded into load index arithmetic
    group_of: dict[int, KernelGroup]   # id(op) -> group


def fuse(fn: Function, horizontal: bool = False) -> Partition:
    users: dict[int, list[Op]] = {}
    for op in fn.ops:
        for v in op.inputs:
            users.setdefault(id(v), []).append(op)
    result_ids = {id(r) for r in fn.results}
    group_of: dict[int, KernelGroup] = {}
    folded: set[int] = set()
    operand_views: set[int] = set()
    lib_reshapes: set[int] = set()   # folded reshapes that must read a materialised buffer
    groups: list[KernelGroup] = []
    for op in reversed(fn.ops):
        cls = op_class(op)
        if cls == "constant":
            continue
        out = op.outputs[0]
        cons = users.get(id(out), [])
        is_result = id(out) in result_ids
        if cls == "view" and not is_result and cons and not any(id(c) in lib_reshapes for c in cons) and all(
                id(c) in folded or (id(c) in group_of and group_of[id(c)].kind not in _OPAQUE) for c in cons):
            folded.add(id(op))
            continue
        if (op.opdef.name == "reshape" and not is_result and cons
                and not any(id(c) in lib_reshapes for c in cons)):
            # a reshape of a contiguous buffer is that buffer: library ops read it as is
            folded.add(id(op))
            lib_reshapes.add(id(op))
            continue
        if (cls == "view" and not is_result and cons and _swaps_last_two(op)
                and _reshapes_of_buffer(op.inputs[0])
                and all(_reads_transposed(c, out) for c in cons)):
            operand_views.add(id(op))  # BLAS reads the operand transposed: no copy
            continue
        target = None
        if cls == "reduce" and not is_result and cons and len({id(group_of.get(id(c))) for c in cons}) == 1:
            g = group_of.get(id(cons[0]))
            if g is not None and _can_take_epilogue(op, cons, g):
                # the consumers become the reduction's epilogue: evaluated once per output element
                g.epilogue = g.member_ids()
                g.out_op, g.root, g.kind = g.root, op, "reduce"
                target = g
        if target is None and cls == "pointwise" and len(op.outputs) == 1 and cons:
            gs = {id(group_of.get(id(c))) for c in cons}
            g = group_of.get(id(cons[0]))
            if len(gs) == 1 and g is not None:
                if (g.epilogue and not is_result and all(id(c) in g.epilogue for c in cons)
                        and _can_join_epilogue(op, g)):
                    g.epilogue.add(id(op))      # e.g. momentum * velocity next to a bias gradient
                    target = g
                elif _can_join(op, cons, g) and (not is_result or _can_write_extra(op, g)):
                    target = g
                    if is_result:               # also written out: a second output of the kernel
                        g.extra_outputs.append(out)
        if target is None:
            kind = {"pointwise": "pointwise", "view": "pointwise", "reduce": "reduce", "control": "control"}.get(
                cls, "library")
            target = KernelGroup(kind, op)
            groups.append(target)
        target.ops.append(op)
        group_of[id(op)] = target
    groups.reverse()
    for g in groups:
        g.ops.reverse()
    folded |= operand_views
    order = _schedule(groups, group_of, folded)
    if horizontal:
        order = _merge_horizontal(order, group_of, folded, result_ids)
    for i, g in enumerate(order):
        g.index = i
    return Partition(order, folded, group_of)


def _merge_horizontal(order, group_of, folded, result_ids) -> list[KernelGroup]:
    """Merge the sink groups that write only results into multi groups (see the
    module doc), each placed where its last part was."""
    consumed: set[int] = set()     # ids of groups whose outputs another group reads
    for g in order:
        for op in g.ops:
            for v in op.inputs:
                src = _source_group(v, group_of, folded)
                if src is not None and src is not g:
                    consumed.add(id(src))
    cands = [g for g in order if g.kind in ("pointwise", "reduce") and op_class(g.root) != "view"
             and id(g) not in consumed and all(id(v) in result_ids for v in g.outputs)]
    if len(cands) < 2:
        return order
    chunks, cur, bufs = [], [], set()
    for g in cands:
        ids = g.member_ids()
        mine = {id(materialised(v, folded)) for op in g.ops for v in op.inputs
                if not (v.op is not None and id(v.op) in ids)} | {id(v) for v in g.outputs}
        if cur and len(bufs | mine) > MAX_KERNEL_INPUTS:
            chunks.append(cur)
            cur, bufs = [], set()
        cur.append(g)
        bufs |= mine
    chunks.append(cur)
    last = {id(c[-1]): c for c in chunks if len(c) > 1}
    merged = {id(g) for c in last.values() for g in c}
    out = []
    for g in order:
        if id(g) in last:
            parts = last[id(g)]
            multi = KernelGroup("multi", parts[0].root, [op for p in parts for op in p.ops], parts=parts)
            for op in multi.ops:
                group_of[id(op)] = multi
            out.append(multi)
        elif id(g) not in merged:
            out.append(g)
    return out


def materialised(v: Value, folded) -> Value:
    """The buffer ``v`` is read from: ``v`` itself, or what the folded views it
    stands for look at."""
    while v.op is not None and id(v.op) in folded:
        v = v.op.inputs[0]
    return v


def _reshapes_of_buffer(v: Value) -> bool:
    """``v`` is a buffer or reshapes of one (never a strided view): BLAS can read it."""
    while v.op is not None and op_class(v.op) == "view":
        if v.op.opdef.name != "reshape":
            return False
        v = v.op.inputs[0]
    return True


def _reads_transposed(consumer: Op, v: Value) -> bool:
    """Every operand of ``consumer`` that is ``v`` sits where its lowering reads a
    transposed buffer (gemm's accumulator, operand 2, is read as stored)."""
    ok = consumer.opdef.transposable_operands
    return all(k in ok for k, u in enumerate(consumer.inputs) if u is v)


def _swaps_last_two(op: Op) -> bool:
    perm = op.attrs.get("perm") if op.opdef.name == "transpose" else None
    if perm is None or len(perm) < 2:
        return False
    n = len(perm)
    return tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


def _can_take_epilogue(red: Op, consumers: list[Op], g: KernelGroup) -> bool:
    """A pointwise group over exactly the reduction's output space, reading it
    elementwise, can run after the reduction in the same kernel."""
    if g.kind != "pointwise" or op_class(g.root) != "pointwise":
        return False
    out = red.outputs[0]
    if out.type.size != g.root.outputs[0].type.size:
        return False
    return all(c.outputs[0].type.shape == out.type.shape for c in consumers)


def _can_join_epilogue(op: Op, g: KernelGroup) -> bool:
    """A pointwise op feeding only a reduction's epilogue, over its output space."""
    out = g.outputs[0]
    return op.outputs[0].type.shape == out.type.shape and all(
        v.type.shape == out.type.shape or v.type.size == 1 for v in op.inputs)


def _can_write_extra(op: Op, g: KernelGroup) -> bool:
    """A result may be written by its consumers' pointwise kernel as a further
    output when it is indexed like the kernel's own output (same shape)."""
    return (g.kind == "pointwise" and not g.epilogue and op_class(g.root) == "pointwise"
            and op.outputs[0].type.shape == g.root.outputs[0].type.shape)


def _space(g: KernelGroup) -> int:
    """Number of points the group's loop visits per pass."""
    if g.kind == "reduce":
        return g.root.inputs[0].type.size
    return g.root.outputs[0].type.size


def _can_join(op: Op, consumers: list[Op], g: KernelGroup) -> bool:
    if g.kind in _OPAQUE:
        return False
    if op.outputs[0].type.size != _space(g):
        return False  # broadcast into a larger space would recompute: materialise instead
    for c in consumers:
        if op_class(c) == "view":
            return False  # a view root copies through an index map: its input is a buffer
        if id(c) in g.epilogue:
            return False  # would be computed inside the reduction loop, used after it
        if g.kind == "reduce" and c is g.root:
            continue
        if c.outputs[0].type.size != _space(g):
            return False
        for v in c.inputs:  # the consumer must read this operand without broadcasting
            if v is op.outputs[0] and v.type.shape != c.outputs[0].type.shape:
                return False
    if len({id(v) for m in g.ops for v in m.inputs} | {id(v) for v in op.inputs}) > MAX_KERNEL_INPUTS:
        return False
    return True


def _source_group(v: Value, group_of, folded):
    """The group that materialises ``v`` (looking through folded views)."""
    v = materialised(v, folded)
    return group_of.get(id(v.op)) if v.op is not None else None


def _schedule(groups, group_of, folded):
    """Topological order of the group graph, stable w.r.t. op order: the standard
    library's ``graphlib`` keeps the dependency counts, and of the groups ready at
    each step the earliest in op order goes first (a lexicographic topological
    sort). Producers only join their sole consumer's group, so the graph is acyclic
    by construction; ``graphlib`` raises if that is ever broken. (networkx did the
    same, but importing it cost a cold compile ~40-80 ms.)"""
    pos = {id(g): i for i, g in enumerate(groups)}
    ts = graphlib.TopologicalSorter({i: () for i in range(len(groups))})
    for grp in groups:
        me = pos[id(grp)]
        for op in grp.ops:
            for v in op.inputs:
                src = _source_group(v, group_of, folded)
                if src is not None and src is not grp:
                    ts.add(me, pos[id(src)])
    try:
        ts.prepare()
    except graphlib.CycleError:
        raise AssertionError("fusion produced a cyclic group graph") from None
    ready = list(ts.get_ready())
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(groups[i])
        ts.done(i)
        for j in ts.get_ready():
            heapq.heappush(ready, j)
    return order
