"""Lower a fused partition to one C translation unit.

Python decides everything (loads, index expressions, statement order, names,
parallelisation); the Jinja templates in ``symfuse/templates/c`` hold only the
loop scaffolding. Each kernel becomes a ``KernelSpec`` (plain data) that is
also what ``f.kernels`` shows.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..compiler.fusion import KernelGroup, Partition
from ..compiler.kernel_info import KernelInfo  # noqa: F401  (what f.kernels shows)
from ..ir.core import Value, format_loc
from .index import VIEW_MAPS, Index, broadcast_from
from .templates_cache import template

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates", "c")


def _template(name: str):
    return template(TEMPLATE_DIR, name)


PARALLEL_MIN_WORK = 1 << 16   # below this many element-ops a parallel region costs more than it saves
# A float sum is one dependency chain unless split: without -ffast-math gcc may not
# reorder it, so `acc += x` ran scalar at one add per ~4 cycles (LeNet-5's conv1 bias
# gradient, 1.5M elements: ~2 ms). Sums whose innermost reduced loop has at least
# LANE_MIN elements accumulate into SUM_LANES lanes (element r into lane r % SUM_LANES,
# a vector of doubles), added in a fixed tree at the end: deterministic, another order.
SUM_LANES = 8
LANE_MIN = 32
VECTOR_BYTES = 64   # a vector block: one AVX-512 register, two AVX2 ones

# reduction combine rules: (initial value, accumulate statement); acc type chosen per dtype
_INT_LIMITS = {"int8_t": ("INT8_MIN", "INT8_MAX"), "int16_t": ("INT16_MIN", "INT16_MAX"),
               "int32_t": ("INT32_MIN", "INT32_MAX"), "int64_t": ("INT64_MIN", "INT64_MAX"),
               "uint8_t": ("0", "UINT8_MAX"), "uint32_t": ("0", "UINT32_MAX"), "uint64_t": ("0", "UINT64_MAX")}


def c_type(dtype) -> str:
    return "uint8_t" if dtype.is_bool else dtype.c_type if dtype.name != "float16" else "_Float16"


def c_literal(x, dtype) -> str:
    if dtype.is_float:
        f = float(x)
        if math.isnan(f):
            return "NAN"
        if math.isinf(f):
            return "INFINITY" if f > 0 else "(-INFINITY)"
        return f"(({c_type(dtype)}){f!r})"
    if dtype.is_bool:
        return "1" if x else "0"
    return f"(({c_type(dtype)}){int(x)})"


# A fused kernel's body is a list of statements kept as data: the C renderer prints
# them, and the CUDA renderer re-emits them per vector lane without parsing C.
@dataclass(frozen=True)
class Load:
    """``const ctype var = buf[index];``"""
    ctype: str
    var: str
    buf: str
    index: str

    def __str__(self):
        return f"const {self.ctype} {self.var} = {self.buf}[{self.index}];"


@dataclass(frozen=True)
class Compute:
    """``const ctype var = (ctype)template(args);``: an op's scalar expression
    (``{0}``, ``{1}``, ... its operands, variables or literals; ``{T}`` the type)."""
    ctype: str
    var: str
    template: str
    args: tuple
    cast: bool = True                 # converted to ctype (an op's result); False: a plain alias

    def renamed(self, rename: dict) -> "Compute":
        return Compute(self.ctype, rename.get(self.var, self.var), self.template,
                       tuple(rename.get(a, a) for a in self.args), self.cast)

    def __str__(self):
        T = self.ctype
        return f"const {T} {self.var} = {f'({T})' if self.cast else ''}{self.template.format(*self.args, T=T)};"


@dataclass(frozen=True)
class Store:
    """``buf[index] = var;``"""
    buf: str
    index: str
    var: str

    def __str__(self):
        return f"{self.buf}[{self.index}] = {self.var};"


@dataclass
class KernelSpec:
    name: str
    kind: str                         # pointwise | reduce | library
    group: KernelGroup
    inputs: list[Value]               # materialised values read, in parameter order
    outputs: list[Value]
    provenance: list[str]             # "op (file:line)" per fused op
    source: str = ""
    size: int = 0
    parallel: bool = False
    bytes_read: int = 0
    bytes_written: int = 0
    part: bool = False                # rendered as a part of a multi kernel (range function only)
    call: str = ""                    # library kernels: the runtime call
    helpers: str = ""                 # ... and the specialised functions it passes (c_library.Helper)

    @property
    def fused_ops(self) -> list[str]:
        return [op.opdef.name for op in self.group.ops]


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

    def operand(self, consumer, v: Value, idx: Index) -> str:
        if v.op is not None and id(v.op) in self.members:
            return self.vars[id(v)]
        return self.load(v, idx)

    def emit(self, op, idx_for_shape) -> None:
        out = op.outputs[0]
        idx = idx_for_shape(out.type.shape)
        if op.opdef.kind == "elementwise":
            args = [self.operand(op, v, idx) for v in op.inputs]
            # numpy's bool cast is a test against zero, not a truncation
            template = "({0} != 0)" if op.opdef.name == "cast" and out.dtype.is_bool else op.opdef.c_expr
            var = f"v{len(self.vars)}"
            self.vars[id(out)] = var
            self.stmts.append(Compute(c_type(out.dtype), var, template, tuple(args)))
        else:  # a view op as a group root: a copy through its index map
            self.vars[id(out)] = self.load(op.inputs[0], VIEW_MAPS[op.opdef.name](idx, op), mapped=True)


def _provenance(ops) -> list[str]:
    lines = []
    for op in ops:
        where = format_loc(op.loc)
        lines.append(f"{op.opdef.name} {', '.join(str(o.type) for o in op.outputs)}"
                     + (f"  ({os.path.basename(where.rsplit(':', 1)[0])}:{where.rsplit(':', 1)[1]})" if where else ""))
    return lines


def _shape_tag(shape) -> str:
    return "x".join(map(str, shape)) or "1"


def build_kernel(group: KernelGroup, partition: Partition, resolve, library) -> KernelSpec:
    ops = group.ops
    tag = "_".join(dict.fromkeys(op.opdef.name for op in ops))[:48]
    prov = _provenance(ops)
    if group.kind == "multi":
        return _build_multi(group, partition, resolve, library, tag, prov)
    if group.kind == "library":
        return _build_library(group, partition, resolve, library, tag, prov)
    if group.kind == "pointwise":
        return _build_pointwise(group, partition, tag, prov)
    return _build_reduce(group, partition, tag, prov)


def _build_library(group, partition, resolve, library, tag, prov) -> KernelSpec:
    """One call of the runtime library; operands read through a last-two-axes
    transpose are passed as their buffer with a transposition hint."""
    op = group.root
    lower = library.get(op.opdef.name)
    if lower is None:
        raise NotImplementedError(f"the cpu backend has no kernel for op {op.opdef.name!r}")
    ins = [resolve(v) for v in op.inputs]
    spec = KernelSpec(f"L_{_shape_tag(op.outputs[0].type.shape)}_{tag}", "library", group,
                      _dedupe(ins), list(op.outputs), prov)
    pos = {id(v): k for k, v in enumerate(spec.inputs)}
    in_exprs = [f"in{pos[id(v)]}" for v in ins]
    out_exprs = [f"out{k}" for k in range(len(op.outputs))]
    hints = {}
    for k, v in enumerate(op.inputs[:2]):
        if (v.op is not None and id(v.op) in partition.folded_views
                and v.op.opdef.name == "transpose"):  # a transposed operand
            hints["trans_" + "ab"[k]] = True
            hints["ab"[k] + "_shape"] = v.op.inputs[0].type.shape
    call = library[op.opdef.name](op, in_exprs, out_exprs, hints)
    spec.call, spec.helpers = (call, "") if isinstance(call, str) else (call.code, render_helpers(call.helpers))
    spec.size = op.outputs[0].type.size
    return spec


def _build_pointwise(group, partition, tag, prov) -> KernelSpec:
    """A loop over the root's output, every member computed once per element."""
    b = _KernelBuilder(group, partition)
    root, ops = group.root, group.ops
    out = root.outputs[0]
    shape = out.type.shape
    groups = _dim_groups(shape, _leaf_masks(group, partition, shape))
    loops = _loops(shape, groups, "d")
    b.direct = _direct_index(shape, groups, loops)
    for op in ops:
        b.emit(op, lambda s: Index(s, flat="i"))
    b.stmts.append(Store("out0", "i", b.vars[id(out)]))
    for k, extra in enumerate(group.extra_outputs, 1):   # fused values that are also results
        b.stmts.append(Store(f"out{k}", "i", b.vars[id(extra)]))
    spec = KernelSpec(f"E_{_shape_tag(shape)}_{tag}", "pointwise", group, b.inputs, [out] + group.extra_outputs,
                      prov)
    spec.size = out.type.size
    spec.stmts = b.stmts
    spec.loops = loops
    spec.flat = Index([n for _, n in loops], dims=[v for v, _ in loops]).flat()
    spec.parallel = spec.size * max(1, len(ops)) >= PARALLEL_MIN_WORK
    _vector_blocks(spec, loops)
    return spec


def _build_reduce(group, partition, tag, prov) -> KernelSpec:
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
    xv = b.operand(root, x, Index(in_shape, flat="i"))
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
    spec = KernelSpec(f"R_{_shape_tag(in_shape)}_{tag}", "reduce", group, b.inputs,
                      [result] + group.extra_outputs, prov)
    spec.size, spec.stmts, spec.epilogue = root.outputs[0].type.size, loop_stmts, b.stmts
    spec.result = b.vars[id(result)] if epilogue else "red"
    spec.result_type = c_type(result.dtype)
    spec.reduce_size = math.prod(in_shape[d] for d in axes)
    spec.oloops = oloops
    spec.rloops = rloops
    spec.input_index = Index([n for _, n in iter_loops], dims=[v for v, _ in iter_loops]).flat()
    spec.out_index = out_index
    spec.acc_type, spec.init, spec.combine, spec.out_type = acc_t, init.format(lo=lo, hi=hi), combine, T
    spec.lanes = SUM_LANES if name == "sum" and rloops and rloops[-1][1] >= LANE_MIN else 0
    spec.lane_sum = _tree_sum([f"lane[{j}]" for j in range(spec.lanes)]) if spec.lanes else ""
    spec.parallel = spec.size >= 2 and x.type.size * max(1, len(ops)) >= PARALLEL_MIN_WORK
    return spec


def _vector_blocks(spec, loops) -> None:
    """Loop trip counts that gcc's very-cheap vectoriser takes (FAST_FLAGS in
    runtime/cpu.py: a literal multiple of the vector length, no epilogue, no alias
    check). A flat loop over a thread's share [lo, hi) runs in blocks of
    ``spec.block`` elements, the remainder after the last block; a literal
    innermost loop stops at ``spec.inner_whole`` and a scalar loop finishes it."""
    width = min(v.dtype.itemsize for v in spec.inputs + spec.outputs) if spec.inputs else 4
    block = VECTOR_BYTES // max(1, width)
    n = loops[-1][1]
    spec.block = spec.tail = spec.inner_whole = 0
    spec.outer = loops[0][1]
    if len(loops) == 1 and n >= 2 * block:
        spec.block, spec.tail, spec.outer = block, n % block, n // block
    elif len(loops) > 1 and n > block and n % block:
        spec.inner_whole = n - n % block


def _tree_sum(terms: list[str]) -> str:
    while len(terms) > 1:
        terms = [f"({a} + {b})" for a, b in zip(terms[::2], terms[1::2])] + (terms[-1:] if len(terms) % 2 else [])
    return terms[0]


def _build_multi(group, partition, resolve, library, tag, prov) -> KernelSpec:
    """A horizontal group: every part keeps its own loop nest (a ``_range``
    function numbered from its own parameters); the kernel maps its parameters
    onto each part's and runs all parts in one parallel region, split by work
    (sf_parallel_parts in runtime.h)."""
    parts = [build_kernel(p, partition, resolve, library) for p in group.parts]
    inputs = _dedupe([v for p in parts for v in p.inputs])
    outputs = [v for p in parts for v in p.outputs]
    total = sum(p.group.root.outputs[0].type.size if p.kind == "pointwise" else p.group.root.inputs[0].type.size
                for p in parts)
    spec = KernelSpec(f"H_{len(parts)}x{total}_{tag}", "multi", group, inputs, outputs, prov)
    spec.size = sum(p.size for p in parts)
    spec.parts = parts
    spec.parallel = total * max(1, len(group.ops) // len(parts)) >= PARALLEL_MIN_WORK
    pos = {id(v): k for k, v in enumerate(inputs)}
    o = 0
    for p in parts:
        p.args = [f"(void*)in{pos[id(v)]}" for v in p.inputs] + [f"(void*)out{o + k}" for k in range(len(p.outputs))]
        o += len(p.outputs)
        # outer loop extent and work per outer index: the parallel split balances work, not indices
        p.outer = (p.outer if p.kind == "pointwise" else (p.oloops[0][1] if p.oloops else 1))
        work = p.group.root.outputs[0].type.size if p.kind == "pointwise" else p.group.root.inputs[0].type.size
        p.weight = max(1, work // max(p.outer, 1))
    return spec


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


def _loops(shape, groups, prefix) -> list[tuple[str, int]]:
    if not groups:
        return [("i" if prefix == "d" else prefix, 1)]
    if len(groups) == 1 and prefix == "d":
        return [("i", math.prod(shape[d] for d in groups[0]))]
    return [(f"{prefix}{k}", math.prod(shape[d] for d in g)) for k, g in enumerate(groups)]


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


def render_kernel(spec: KernelSpec) -> str:
    # an output written over an input (in-place memory plan) must not be declared restrict
    r = "" if getattr(spec, "aliased", False) else " restrict"
    ins = [f"const {c_type(v.dtype)}*{r} in{k}" for k, v in enumerate(spec.inputs)]
    outs = [f"{c_type(v.dtype)}*{r} out{k}" for k, v in enumerate(spec.outputs)]
    spec.signature = ", ".join(ins + outs) or "void"
    # the body of a parallel kernel takes its pointers from an array (sf_parallel_range)
    spec.unpack = ([f"const {c_type(v.dtype)}*{r} in{k} = (const {c_type(v.dtype)}*)sf_args[{k}];"
                    for k, v in enumerate(spec.inputs)] +
                   [f"{c_type(v.dtype)}*{r} out{k} = ({c_type(v.dtype)}*)sf_args[{len(spec.inputs) + k}];"
                    for k, v in enumerate(spec.outputs)])
    spec.pack = ", ".join([f"(void*)in{k}" for k in range(len(spec.inputs))] +
                          [f"(void*)out{k}" for k in range(len(spec.outputs))]) or "0"
    for j, p in enumerate(getattr(spec, "parts", ())):   # a multi kernel's parts: range functions only
        p.name, p.part = f"{spec.name}_p{j}", True
        p.aliased = getattr(spec, "aliased", False)
        render_kernel(p)
    spec.source = _template(f"{spec.kind}.c.j2").render(k=spec)
    spec.bytes_read = sum(v.type.nbytes for v in spec.inputs)
    spec.bytes_written = sum(v.type.nbytes for v in spec.outputs)
    return spec.source


def render_helpers(helpers) -> str:
    """The C definitions of a library call's helpers (``c_library.Helper``)."""
    return "\n".join(_template(h.template).render(h=h.values()) for h in helpers)


def render_module(name, version, kernels, calls, constants, arena_bytes, runtime_header="sf_unit_inline.h",
                  profile=False, extern_kernels=()) -> str:
    """``runtime_header``: the one header the unit includes first (so that it
    can be precompiled): "sf_unit_inline.h" compiles the runtime library into
    the unit; "sf_unit.h" (``c_runtime.unit_prelude``) declares the prebuilt one.
    ``extern_kernels``: kernels defined in other units (``render_unit``), declared here."""
    return _template("module.c.j2").render(name=name, version=version, kernels=kernels, calls=calls,
                                           constants=constants, arena_bytes=arena_bytes,
                                           runtime_header=runtime_header, profile=profile,
                                           extern_kernels=list(extern_kernels))


def render_unit(name, version, kernels, runtime_header) -> str:
    """Kernels of a parallel build: defined with hidden visibility for the entry unit to call."""
    return _template("unit.c.j2").render(name=name, version=version, kernels=kernels, runtime_header=runtime_header)


def constant_data(arr: np.ndarray, dtype) -> str:
    flat = arr.reshape(-1)
    return ", ".join(c_literal(x, dtype) for x in flat.tolist())
