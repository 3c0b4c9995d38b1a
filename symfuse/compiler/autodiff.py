"""Reverse-mode differentiation as an IR-to-IR transformation.

``grad`` ops (recorded by ``sf.grad``) are expanded in program order, so a
grad of a grad sees its inner grad already expanded (higher derivatives). Each
op's VJP is written with symfuse ops: the emitted gradient code is ordinary IR
that the simplifier then cleans up like any other.
"""
from __future__ import annotations

from ..errors import GradError
from ..ir.core import Function, Op, Value, location, rebuild, toposort
from ..ir import build as F


def differentiate(fn: Function, stats: dict | None = None) -> Function:
    if not any(op.opdef.name == "grad" for op in fn.ops):
        return fn
    subst: dict[int, Value] = {}
    expanded = 0
    for op in fn.ops:
        inputs = [subst.get(id(v), v) for v in op.inputs]
        if op.opdef.name == "grad":
            grads = reverse_mode(inputs[0], inputs[1:], op.loc)
            for o, g in zip(op.outputs, grads):
                subst[id(o)] = g
            expanded += 1
        elif any(a is not b for a, b in zip(inputs, op.inputs)):
            new = rebuild(op, inputs)
            for o, n in zip(op.outputs, new.outputs):
                subst[id(o)] = n
    if stats is not None:
        stats["grad_ops_expanded"] = expanded
    return Function(fn.params, [subst.get(id(r), r) for r in fn.results], fn.name)


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
