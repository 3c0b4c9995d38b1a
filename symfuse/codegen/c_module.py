"""Lower a fused partition to one C translation unit.

Python decides everything (loads, index expressions, statement order, names,
parallelisation); the Jinja templates in ``symfuse/templates/c`` hold only the
loop scaffolding. Each kernel becomes a ``KernelSpec`` (plain data) that is
also what ``f.kernels`` shows.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import jinja2
import numpy as np

from ..compiler.fusion import KernelGroup, Partition
from ..ir.core import Function, Value, format_loc
from .index import VIEW_MAPS, Index, broadcast_from

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "templates", "c")
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), trim_blocks=False,
                          keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
PARALLEL_MIN_WORK = 1 << 16   # below this many element-ops a parallel region costs more than it saves

# reduction combine rules: (initial value, accumulate statement); acc type chosen per dtype
REDUCE_RULES = {
    "sum": ("0", "acc += x;"),
    "prod": ("1", "acc *= x;"),
    "max": ("{lo}", "if (x > acc || x != x) acc = x;"),
    "min": ("{hi}", "if (x < acc || x != x) acc = x;"),
}
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
        self.loads: dict[tuple, str] = {}
        self.stmts: list[str] = []

    def param(self, v: Value) -> str:
        k = self.input_pos.get(id(v))
        if k is None:
            k = self.input_pos[id(v)] = len(self.inputs)
            self.inputs.append(v)
        return f"in{k}"

    def load(self, v: Value, idx: Index) -> str:
        """Expression for value ``v`` (outside the group) at position ``idx``."""
        idx = broadcast_from(idx, v.type.shape)
        while v.op is not None and id(v.op) in self.folded:
            idx = VIEW_MAPS[v.op.opdef.name](idx, v.op)
            v = v.op.inputs[0]
        if v.op is not None and v.op.opdef.name == "constant" and v.type.size == 1:
            return c_literal(v.op.attrs["value"].reshape(-1)[0], v.type.dtype)
        key = (id(v), idx.flat())
        var = self.loads.get(key)
        if var is None:
            var = self.loads[key] = f"l{len(self.loads)}"
            self.stmts.append(f"const {c_type(v.dtype)} {var} = {self.param(v)}[{idx.flat()}];")
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
            T = c_type(out.dtype)
            if op.opdef.name == "cast" and out.dtype.is_bool:
                expr = f"({args[0]} != 0)"
            else:
                expr = op.opdef.c_expr.format(*args, T=T)
            var = f"v{len(self.vars)}"
            self.vars[id(out)] = var
            self.stmts.append(f"const {T} {var} = ({T}){expr};")
        else:  # a view op as a group root: a copy through its index map
            self.vars[id(out)] = self.load(op.inputs[0], VIEW_MAPS[op.opdef.name](idx, op))


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
    if group.kind == "library":
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
            if v.op is not None and id(v.op) in partition.folded_views:  # a transposed operand
                hints["trans_" + "ab"[k]] = True
                hints["ab"[k] + "_shape"] = v.op.inputs[0].type.shape
        spec.call = library[op.opdef.name](op, in_exprs, out_exprs, hints)
        spec.size = op.outputs[0].type.size
        return spec
    b = _KernelBuilder(group, partition)
    root = group.root
    if group.kind == "pointwise":
        shape = root.outputs[0].type.shape
        size = root.outputs[0].type.size
        for op in ops:
            b.emit(op, lambda s: Index(s, flat="i"))
        out = root.outputs[0]
        b.stmts.append(f"out0[i] = {b.vars[id(out)]};")
        spec = KernelSpec(f"E_{_shape_tag(shape)}_{tag}", "pointwise", group, b.inputs, [out], prov)
        spec.size = size
        spec.stmts = b.stmts
        spec.parallel = size * max(1, len(ops)) >= PARALLEL_MIN_WORK
        return spec
    # reduction: output index o, reduction index r -> input flat index i
    x = root.inputs[0]
    in_shape = x.type.shape
    axes = root.attrs["axis"]
    kept = [d for d in range(len(in_shape)) if d not in axes]
    out_size = math.prod(in_shape[d] for d in kept)
    red_size = math.prod(in_shape[d] for d in axes)
    odims = Index(tuple(in_shape[d] for d in kept), flat="o").dims()
    rdims = Index(tuple(in_shape[d] for d in axes), flat="r").dims()
    full = [None] * len(in_shape)
    for d, e in zip(kept, odims):
        full[d] = e
    for d, e in zip(axes, rdims):
        full[d] = e
    nd = len(in_shape)
    if axes == tuple(range(nd - len(axes), nd)):      # trailing block: rows
        input_index = f"o*{red_size} + r" if out_size > 1 else "r"
    elif axes == tuple(range(len(axes))):              # leading block: columns
        input_index = f"r*{out_size} + o" if out_size > 1 else "r"
    else:
        input_index = Index(in_shape, dims=full).flat()
    for op in ops:
        if op is not root:
            b.emit(op, lambda s: Index(s, flat="i"))
    xv = b.operand(root, x, Index(in_shape, flat="i"))
    b.stmts.append(f"const {c_type(x.dtype)} x = {xv};")
    T = c_type(root.outputs[0].dtype)
    name = root.opdef.name
    if x.dtype.is_float:
        acc_t = "double" if name in ("sum", "prod") else T
        lo, hi = "(-INFINITY)", "INFINITY"
    else:
        acc_t = "int64_t" if name in ("sum", "prod") else T
        lo, hi = _INT_LIMITS[T]
    init, combine = REDUCE_RULES[name]
    spec = KernelSpec(f"R_{_shape_tag(in_shape)}_{tag}", "reduce", group, b.inputs, [root.outputs[0]], prov)
    spec.size, spec.stmts = out_size, b.stmts
    spec.reduce_size, spec.input_index = red_size, input_index or "0"
    spec.acc_type, spec.init, spec.combine, spec.out_type = acc_t, init.format(lo=lo, hi=hi), combine, T
    spec.parallel = out_size >= 2 and x.type.size * max(1, len(ops)) >= PARALLEL_MIN_WORK
    return spec


def _dedupe(vals):
    seen, out = set(), []
    for v in vals:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def render_kernel(spec: KernelSpec) -> str:
    ins = [f"const {c_type(v.dtype)}* restrict in{k}" for k, v in enumerate(spec.inputs)]
    outs = [f"{c_type(v.dtype)}* restrict out{k}" for k, v in enumerate(spec.outputs)]
    spec.signature = ", ".join(ins + outs) or "void"
    spec.source = _ENV.get_template(f"{spec.kind}.c.j2").render(k=spec)
    spec.bytes_read = sum(v.type.nbytes for v in spec.inputs)
    spec.bytes_written = sum(v.type.nbytes for v in spec.outputs)
    return spec.source


def render_module(name, version, kernels, calls, constants, arena_bytes) -> str:
    return _ENV.get_template("module.c.j2").render(name=name, version=version, kernels=kernels, calls=calls,
                                                   constants=constants, arena_bytes=arena_bytes)


def constant_data(arr: np.ndarray, dtype) -> str:
    flat = arr.reshape(-1)
    return ", ".join(c_literal(x, dtype) for x in flat.tolist())
