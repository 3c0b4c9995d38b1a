"""Stable MLIR-like text form of a Function; ``parser.parse`` reads it back.

    func @main(%x: f32[4,3], %W: f32[3,2]) -> (f32[4]) {
      %0 = matmul %x, %W : f32[4,2]
      %1 = sum %0 {axis = [1], keepdims = false} : f32[4]
      return %1
    }

One op per line; results are numbered in order; multi-result ops print as
``%3:2 = ...`` and are used as ``%3#0``; attributes print in the op's declared
order. With ``locations=True`` each line ends in ``loc("file":line)``.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .symdim import SymInt
from .types import DType

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def format_attr(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, np.floating):
        return format_attr(float(v)) if not np.isfinite(v) else str(v)
    if isinstance(v, np.bool_):
        return "true" if v else "false"
    if isinstance(v, np.integer):
        return str(int(v))
    if isinstance(v, bool):
        return "true" if v else "false"
    if type(v) is SymInt:
        return f'dim<"{v!r}">'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, DType):
        return v.short
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "hex":
        return f'dense<"0x{v[1]}">'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r}")


class _Namer:
    def __init__(self):
        self.names: dict[int, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def param(self, v, i):
        base = v.name if v.name and _IDENT.match(v.name) else f"arg{i}"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        self.names[id(v)] = "%" + name
        return "%" + name

    def results(self, op):
        n = self.counter
        self.counter += 1
        if len(op.outputs) == 1:
            self.names[id(op.outputs[0])] = f"%{n}"
            return f"%{n}"
        for i, o in enumerate(op.outputs):
            self.names[id(o)] = f"%{n}#{i}"
        return f"%{n}:{len(op.outputs)}"

    def ref(self, v):
        return self.names[id(v)]


def _op_line(op, namer, locations, indent, out):
    lhs = namer.results(op) if op.outputs else None
    parts = [op.opdef.name]
    if op.inputs:
        parts.append(", ".join(namer.ref(v) for v in op.inputs))
    attrs = op.opdef.attrs_to_text(op.attrs) if op.opdef.attrs_to_text else op.attrs
    if attrs:
        parts.append("{" + ", ".join(f"{k} = {format_attr(v)}" for k, v in attrs.items()) + "}")
    text = " ".join(parts)
    if op.regions:
        out.append(f"{indent}{lhs + ' = ' if lhs else ''}{text} (")
        for r in op.regions:
            _region(r, namer, locations, indent + "  ", out)
        out.append(f"{indent}) : {', '.join(str(o.type) for o in op.outputs)}")
        return
    line = f"{indent}{lhs + ' = ' if lhs else ''}{text} : {', '.join(str(o.type) for o in op.outputs)}"
    if locations and op.loc and (op.loc[0] != "<symfuse>" or len(op.loc) > 2):
        scope = f" {format_attr(op.loc[2])}" if len(op.loc) > 2 else ""
        line += f" loc({format_attr(op.loc[0])}:{op.loc[1]}{scope})"
    out.append(line)


def _region(r, namer, locations, indent, out):
    params = ", ".join(f"{namer.param(p, i)}: {p.type}" for i, p in enumerate(r.params))
    out.append(f"{indent}{{({params})")
    for op in r.ops:
        _op_line(op, namer, locations, indent + "  ", out)
    out.append(f"{indent}  yield {', '.join(namer.ref(v) for v in r.results)}")
    out.append(f"{indent}}}")


def print_function(fn, locations: bool = False) -> str:
    namer = _Namer()
    params = ", ".join(f"{namer.param(p, i)}: {p.type}" for i, p in enumerate(fn.params))
    rtypes = ", ".join(str(r.type) for r in fn.results)
    out = [f"func @{fn.name}({params}) -> ({rtypes}) {{"]
    for op in fn.ops:
        _op_line(op, namer, locations, "  ", out)
    out.append(f"  return {', '.join(namer.ref(v) for v in fn.results)}")
    out.append("}")
    return "\n".join(out) + "\n"
