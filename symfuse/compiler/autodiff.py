"""Reverse-mode differentiation as an IR-to-IR transformation.

``grad`` ops (recorded by ``sf.grad``) are expanded in program order, so a
grad of a grad sees its inner grad already expanded (higher derivatives). Each
op's VJP is written with symfuse ops: the emitted gradient code is ordinary IR
that the simplifier then cleans up like any other.
"""
from __future__ import annotations

from ..errors import GradError
from ..ir.core import Function, Op, Value, location, toposort
from .walk import map_ops
from ..ir import build as F


def differentiate(fn: Function, stats: dict | None = None) -> Function:
    if not any(op.opdef.name == "grad" for op in fn.ops):
        return fn
    expanded = 0

    def visit(op, new):
        nonlocal expanded
        if op.opdef.name != "grad":
            return None
        expanded += 1
        return reverse_mode(new.inputs[0], list(new.inputs[1:]), op.loc)

    fn = map_ops(fn, visit)
    if stats is not None:
        stats["grad_ops_expanded"] = expanded
    return fn


def reverse_mode(cost: Value, wrt: list[Value], loc=None) -> list[Value]:
    ops = toposort([cost], allow_free=True)
    active: set[int] = {id(w) for w in wrt}
    path: list[Op] = []
    for op in ops:
        if any(id(v) in active for v in op.inputs):
            path.append(op)
            for o in op.outputs:
                active.add(id(o))
    with location(loc):
        cts: dict[int, Value] = {id(cost): F.ones_like(cost)}
    for op in reversed(path):
        out_cts = [cts.get(id(o)) for o in op.outputs]
        if all(c is None for c in out_cts) or op.opdef.vjp is None:
            continue  # no cotangent flows here, or a piecewise-constant op: zero gradient
        with location(op.loc):
            if len(out_cts) > 1 and any(c is None for c in out_cts):
                out_cts = [c if c is not None else F.zeros_like(o) for c, o in zip(out_cts, op.outputs)]
            in_cts = op.opdef.vjp(op, out_cts)
            for v, g in zip(op.inputs, in_cts):
                if g is None or id(v) not in active or not v.dtype.is_float:
                    continue
                if g.type is not v.type:
                    raise GradError(f"internal: VJP of {op.opdef.name} produced {g.type} for operand {v.type}")
                prev = cts.get(id(v))
                cts[id(v)] = g if prev is None else prev + g
    # whether the cost depends on each wrt at all was checked on the graph as written
    # (sf.grad and the verifier); a path removed since then by simplification
    # (where(c, x, x), y ** 0) was proven to contribute nothing: its gradient is zero
    out = []
    for w in wrt:
        g = cts.get(id(w))
        if g is None:
            with location(loc):
                g = F.zeros_like(w)
        out.append(g)
    return out
