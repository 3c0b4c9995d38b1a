"""Lowering: each fused group of a partition (``compiler/fusion.py``) becomes one
``Kernel`` record (``kernel.py``), once, for whichever renderer then prints it.

Python decides everything here (loads, index expressions, statement order,
names); the renderers add only their target's scaffolding. A library op is
lowered by the renderer's library table (``Renderer.lower_library``), the one
part of a record that depends on the target. The IR Values a backend needs to
wire a kernel (which buffer is ``in0``) come back beside the record
(``Lowered``), never inside it.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from ..compiler.fusion import KernelGroup, Partition, materialised
from ..ir.core import Value, format_loc
from .index import VIEW_MAPS, Index, broadcast_from
from .kernel import Buffer, Compute, Kernel, Load, Loop, Part, Reduction, Store, c_literal, c_type

# reduction combine rules: (initial value, accumulate statement); acc type chosen per dtype
_INT_LIMITS = {"int8_t": ("INT8_MIN", "INT8_MAX"), "int16_t": ("INT16_MIN", "INT16_MAX"),
               "int32_t": ("INT32_MIN", "INT32_MAX"), "int64_t": ("INT64_MIN", "INT64_MAX"),
               "uint8_t": ("0", "UINT8_MAX"), "uint32_t": ("0", "UINT32_MAX"), "uint64_t": ("0", "UINT64_MAX")}


_IDENT = re.compile(r"[^A-Za-z0-9_]+")


class Lowered(NamedTuple):
    """A kernel record and the IR Values its parameters are bound to."""
    kernel: Kernel
    inputs: tuple                     # the Value read through in0, in1, ...
    outputs: tuple                    # the Value written through out0, out1, ...


def lower_partition(partition: Partition, renderer, prefix: str = "") -> list[Lowered | None]:
    """Every group of ``partition`` in schedule order, kernel names made unique
    within the module (a second ``E_4x4_add`` is ``E_4x4_add_1``; ``prefix``
    keeps a region body's apart from the enclosing program's). A control group
    (a loop or branch, which a backend runs itself) has None in its place."""
    resolve = lambda v: materialised(v, partition.folded_views)  # noqa: E731
    names: dict[str, int] = {}
    out = []
    for g in partition.groups:
        if g.kind == "control":
            out.append(None)
            continue
        lk = lower(g, partition, resolve, renderer)
        name = prefix + lk.kernel.name
        n = names.get(name, 0)
        names[name] = n + 1
        out.append(lk._replace(kernel=lk.kernel.named(f"{name}_{n}" if n else name)) if n or prefix else lk)
    return out


def lower(group: KernelGroup, partition: Partition, resolve, renderer) -> Lowered:
    """``resolve(v)``: the buffer a value is read from (through folded views);
    ``renderer``: lowers library ops (its library table)."""
    tag = "_".join(dict.fromkeys(op.opdef.name for op in group.ops))[:48]
    if group.kind == "multi":
        return _lower_multi(group, partition, resolve, renderer, tag)
    if group.kind == "library":
        return _lower_library(group, partition, resolve, renderer, tag)
    if group.kind == "pointwise":
        return _lower_pointwise(group, partition, tag)
    return _lower_reduce(group, partition, tag)


def _record(name: str, kind: str, group: KernelGroup, inputs, outputs, size: int, read=None, **fields) -> Lowered:
    """The record of a group and its bindings; ``read``: the distinct buffers read
    (default ``inputs``, which a library kernel may list twice)."""
    ins = tuple(Buffer(f"in{k}", v.dtype, v.type.size, "input") for k, v in enumerate(inputs))
    outs = tuple(Buffer(f"out{k}", v.dtype, v.type.size, "output") for k, v in enumerate(outputs))
    kernel = Kernel(name, kind, tuple(op.opdef.name for op in group.ops), tuple(_provenance(group.ops)), ins, outs,
                    size, sum(v.type.nbytes for v in (inputs if read is None else read)),
                    sum(v.type.nbytes for v in outputs), **fields)
    return Lowered(kernel, tuple(inputs), tuple(outputs))


class _KernelBuilder:
    """Turns one pointwise/reduce group into statements over flat index ``i``."""

    def __init__(self, group: KernelGroup, partition: Partition):
        self.group = group
        self.members = group.member_ids()
        self.folded = partition.folded_views
        self.inputs: list[Value] = []
        self.input_pos: dict[int, int] = {}
        self.vars: dict[int, str] = {}
        self.loads: dict[tuple, str] = {}   # (buffer, index) -> the variable holding it, in scope
        self.nloads = 0
        self.stmts: list = []   # Load | Compute | Store
        self.direct = None   # Value -> Index in loop variables, for buffers read without a view

    def param(self, v: Value) -> str:
        k = self.input_pos.get(id(v))
        if k is None:
            k = self.input_pos[id(v)] = len(self.inputs)
            self.inputs.append(v)
        return f"in{k}"

    def load(self, v: Value, idx: Index, mapped: bool = False) -> str:
        """Expression for value ``v`` (outside the group) at position ``idx``;
        ``mapped``: idx already went through a view's index map."""
        base = _through_reshapes(v, self.folded) if self.direct is not None and not mapped else None
        if base is not None:
            idx, v = self.direct(v), base   # a reshape keeps row-major order: same flat index
        else:
            idx = broadcast_from(idx, v.type.shape)
        while v.op is not None and id(v.op) in self.folded:
            idx = VIEW_MAPS[v.op.opdef.name](idx, v.op)
            v = v.op.inputs[0]
        if v.op is not None and v.op.opdef.name == "constant" and v.type.size == 1:
            return c_literal(v.op.attrs["value"].reshape(-1)[0], v.type.dtype)
        key = (id(v), idx.flat())
        var = self.loads.get(key)
        if var is None:
            var = self.loads[key] = f"l{self.nloads}"
            self.nloads += 1
            self.stmts.append(Load(c_type(v.dtype), var, self.param(v), idx.flat()))
        return var

    def operand(self, v: Value, idx: Index) -> str:
        if v.op is not None and id(v.op) in self.members:
            return self.vars[id(v)]
        return self.load(v, idx)

    def emit(self, op, idx_for_shape) -> None:
        out = op.outputs[0]
        idx = idx_for_shape(out.type.shape)
        if op.opdef.kind == "elementwise":
            args = [self.operand(v, idx) for v in op.inputs]
            # numpy's bool cast is a test against zero, not a truncation
            template = "({0} != 0)" if op.opdef.name == "cast" and out.dtype.is_bool else op.opdef.c_expr
            var = f"v{len(self.vars)}"
            self.vars[id(out)] = var
            self.stmts.append(Compute(c_type(out.dtype), var, template, tuple(args)))
        else:  # a view op as a group root: a copy through its index map
            self.vars[id(out)] = self.load(op.inputs[0], VIEW_MAPS[op.opdef.name](idx, op), mapped=True)


def _lower_pointwise(group, partition, tag) -> Lowered:
    """A loop over the root's output, every member computed once per element."""
    b = _KernelBuilder(group, partition)
    out = group.root.outputs[0]
    shape = out.type.shape
    groups = _dim_groups(shape, _leaf_masks(group, partition, shape))
    loops = _loops(shape, groups, "d")
    b.direct = _direct_index(shape, groups, loops)
    for op in group.ops:
        b.emit(op, lambda s: Index(s, flat="i"))
    b.stmts.append(Store("out0", "i", b.vars[id(out)]))
    for k, extra in enumerate(group.extra_outputs, 1):   # fused values that are also results
        b.stmts.append(Store(f"out{k}", "i", b.vars[id(extra)]))
    flat = Index([n for _, n in loops], dims=[v for v, _ in loops]).flat()
    return _record(f"E_{_shape_tag(shape)}_{tag}", "pointwise", group, b.inputs, [out] + group.extra_outputs,
                   out.type.size, loops=tuple(loops), flat=flat, stmts=tuple(b.stmts))


def _lower_reduce(group, partition, tag) -> Lowered:
    """Loops over the kept dim groups (outer, parallel), then the reduced ones, with
    the prologue evaluated inside the reduction loop and the epilogue after it."""
    b = _KernelBuilder(group, partition)
    root, ops = group.root, group.ops
    x = root.inputs[0]
    in_shape = x.type.shape
    axes = root.attrs["axis"]
    red_mask = tuple(d not in axes for d in range(len(in_shape)))
    epilogue = [op for op in ops if id(op) in group.epilogue]
    prologue = [op for op in ops if op is not root and id(op) not in group.epilogue]
    groups = _dim_groups(in_shape, _leaf_masks(group, partition, in_shape, prologue + [root]) + [red_mask])
    kept_groups = [g for g in groups if red_mask[g[0]]]
    red_groups = [g for g in groups if not red_mask[g[0]]]
    oloops = _loops(in_shape, kept_groups, "o") if kept_groups else []
    rloops = _loops(in_shape, red_groups, "r") if red_groups else []
    names = {id(g): v for g, (v, _) in zip(kept_groups + red_groups, oloops + rloops)}
    iter_loops = [(names[id(g)], math.prod(in_shape[d] for d in g)) for g in groups] or [("r", 1)]
    b.direct = _direct_index(in_shape, groups, iter_loops)
    for op in prologue:
        b.emit(op, lambda s: Index(s, flat="i"))
    xv = b.operand(x, Index(in_shape, flat="i"))
    b.stmts.append(Compute(c_type(x.dtype), "x", "{0}", (xv,), cast=False))
    T = c_type(root.outputs[0].dtype)
    out_index = Index([n for _, n in oloops], dims=[v for v, _ in oloops]).flat() if kept_groups else "0"
    loop_stmts = b.stmts
    # the epilogue runs once per output element, after the loop: the loop body's loads are out of scope
    b.stmts, b.direct, b.loads = [], None, {}
    b.vars[id(root.outputs[0])] = "red"
    for op in epilogue:
        b.emit(op, lambda s: Index(s, flat=out_index))
    for k, extra in enumerate(group.extra_outputs, 1):   # epilogue values that are also results
        b.stmts.append(Store(f"out{k}", out_index, b.vars[id(extra)]))
    result = group.outputs[0]
    name = root.opdef.name
    if x.dtype.is_float:
        acc_t = "double" if name in ("sum", "prod") else T
        lo, hi = "(-INFINITY)", "INFINITY"
    else:
        acc_t = "int64_t" if name in ("sum", "prod") else T
        lo, hi = _INT_LIMITS[T]
    init, combine = root.opdef.reduction
    red = Reduction(name, math.prod(in_shape[d] for d in axes), acc_t, init.format(lo=lo, hi=hi), combine, T,
                    tuple(Loop(*lp) for lp in oloops), tuple(Loop(*lp) for lp in rloops),
                    Index([n for _, n in iter_loops], dims=[v for v, _ in iter_loops]).flat(), out_index,
                    tuple(b.stmts), b.vars[id(result)] if epilogue else "red")
    return _record(f"R_{_shape_tag(in_shape)}_{tag}", "reduce", group, b.inputs, [result] + group.extra_outputs,
                   root.outputs[0].type.size, stmts=tuple(loop_stmts), reduction=red)


def _lower_multi(group, partition, resolve, renderer, tag) -> Lowered:
    """A horizontal group: every part keeps its own loop nest, its parameters
    mapped onto the multi kernel's (deduplicated) ones."""
    parts = [lower(p, partition, resolve, renderer) for p in group.parts]
    inputs = _dedupe([v for p in parts for v in p.inputs])
    outputs = [v for p in parts for v in p.outputs]
    name = f"H_{len(parts)}x{_shape_tag((sum(p.kernel.space for p in parts),))}_{tag}"
    pos = {id(v): k for k, v in enumerate(inputs)}
    wired, o = [], 0
    for p in parts:
        wired.append(Part(p.kernel, tuple(pos[id(v)] for v in p.inputs), tuple(range(o, o + len(p.outputs)))))
        o += len(p.outputs)
    lk = _record(name, "multi", group, inputs, outputs, sum(p.kernel.size for p in parts), parts=tuple(wired))
    return lk._replace(kernel=lk.kernel.named(name))      # the parts: <name>_p<j>


def _lower_library(group, partition, resolve, renderer, tag) -> Lowered:
    """One op of the target's runtime library; operands read through a
    last-two-axes transpose are passed as their buffer with a transposition hint."""
    op = group.root
    ins = [resolve(v) for v in op.inputs]
    distinct = _dedupe(ins)
    pos = {id(v): k for k, v in enumerate(distinct)}
    hints = {}
    for k, v in enumerate(op.inputs[:2]):
        if (v.op is not None and id(v.op) in partition.folded_views
                and v.op.opdef.name == "transpose"):  # a transposed operand
            hints["trans_" + "ab"[k]] = True
            hints["ab"[k] + "_shape"] = v.op.inputs[0].type.shape
    call = renderer.lower_library(op, [f"in{pos[id(v)]}" for v in ins], [f"out{k}" for k in range(len(op.outputs))],
                                  hints)
    # a precompiled library kernel takes one pointer per operand (x @ x passes x twice)
    return _record(f"L_{_shape_tag(op.outputs[0].type.shape)}_{tag}", "library", group,
                   ins if call.precompiled else distinct, list(op.outputs), op.outputs[0].type.size, read=distinct,
                   library=call)


def _provenance(ops) -> list[str]:
    lines = []
    for op in ops:
        where = _comment_safe(format_loc(op.loc, short=True))
        lines.append(f"{op.opdef.name} {', '.join(str(o.type) for o in op.outputs)}" + (f"  ({where})" if where else ""))
    return lines


def _comment_safe(text: str) -> str:
    """A location (the user's file names, layer names) as it may stand inside a C or
    CUDA comment, where the kernels' provenance is printed: it cannot close the
    comment or start a line of its own."""
    text = text.replace("*/", "*\\/")
    return "".join(c if c.isprintable() else "?" for c in text)


def _shape_tag(shape) -> str:
    # a run-time size is tagged by its IR spelling made an identifier: (batch*10) -> batch_10
    return "x".join(str(s) if type(s) is int else _IDENT.sub("_", repr(s)).strip("_") for s in shape) or "1"


def _leaf_masks(group, partition, shape, ops=None) -> list[tuple[bool, ...]]:
    """Per buffer read directly (not through a folded view) by ``ops`` (default:
    the group's): which dims of the iteration ``shape`` it varies along (numpy
    broadcasting, right-aligned)."""
    members = group.member_ids()
    n, masks = len(shape), []
    for op in group.ops if ops is None else ops:
        for v in op.inputs:
            if v.op is not None and id(v.op) in members:
                continue
            if _through_reshapes(v, partition.folded_views) is None:
                continue
            vs_shape = (1,) * (n - len(v.type.shape)) + tuple(v.type.shape)
            masks.append(tuple(a != 1 for a in vs_shape))
    return masks


def _through_reshapes(v: Value, folded):
    """The buffer behind ``v`` when only folded reshapes stand between them, else None."""
    while v.op is not None and id(v.op) in folded:
        if v.op.opdef.name != "reshape":
            return None
        v = v.op.inputs[0]
    return v


def _dim_groups(shape, masks) -> list[list[int]]:
    """Adjacent dims of ``shape`` (size-1 dims dropped) that every mask treats
    alike: each group becomes one loop, so broadcast loads need no div/mod and
    the innermost loop runs over contiguous memory."""
    groups: list[list[int]] = []
    prev = None
    for d, n in enumerate(shape):
        if n == 1:
            continue
        if prev is not None and all(m[d] == m[prev] for m in masks):
            groups[-1].append(d)
        else:
            groups.append([d])
        prev = d
    return groups


def _loops(shape, groups, prefix) -> list[Loop]:
    if not groups:
        return [Loop("i" if prefix == "d" else prefix, 1)]
    if len(groups) == 1 and prefix == "d":
        return [Loop("i", math.prod(shape[d] for d in groups[0]))]
    return [Loop(f"{prefix}{k}", math.prod(shape[d] for d in g)) for k, g in enumerate(groups)]


def _direct_index(shape, groups, loops):
    """Index of a directly read buffer in loop variables (no div/mod)."""
    it = Index([n for _, n in loops], flat=None, dims=[v for v, _ in loops])
    n = len(shape)

    def index(v: Value) -> Index:
        vs = (1,) * (n - len(v.type.shape)) + tuple(v.type.shape)
        collapsed = [math.prod(vs[d] for d in g) for g in groups] or [1]
        return broadcast_from(it, collapsed)
    return index


def _dedupe(vals):
    seen, out = set(), []
    for v in vals:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out
