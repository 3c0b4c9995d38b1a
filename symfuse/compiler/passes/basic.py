"""Structural passes: constant folding, common-subexpression elimination, DCE."""
from __future__ import annotations

from collections import Counter
from operator import is_not

import numpy as np

from ...ir.core import Function, Value, apply, location, rebuild
from .rewrite import _carry_pins, pinned_values



def fold_constants(fn: Function, counts: Counter) -> Function:
    """Evaluate ops whose inputs are all constants with the numpy reference.

    Folding never grows the program: a result larger than its largest input
    (e.g. ``broadcast_to`` of a scalar) stays symbolic, which also keeps uniform
    constants recognisable as scalars to the algebraic rewrites."""
    pinned = pinned_values(fn)
    subst: dict[int, Value] = {}
    changed = False
    for op in fn.ops:
        inputs = [subst.get(id(v), v) for v in op.inputs]
        new = op
        if any(map(is_not, inputs, op.inputs)):
            new = rebuild(op, inputs)
            changed = True
            _carry_pins(op, new, pinned)
        od = op.opdef
        if (od.foldable and inputs and len(op.outputs) == 1 and id(op.outputs[0]) not in pinned
                and all(v.op is not None and v.op.opdef.name == "constant" for v in inputs)):
            out_t = op.outputs[0].type
            biggest = max(v.type.size for v in inputs)
            if out_t.size <= max(1, biggest):
                with np.errstate(all="ignore"):
                    val = od.ref([v.op.attrs["value"] for v in inputs], new.attrs)
                val = np.array(val, dtype=out_t.dtype.np, order="C").reshape(out_t.shape)
                with location(op.loc):
                    subst[id(op.outputs[0])] = apply("constant", [], {"value": val})
                counts["fold:" + od.name] += 1
                changed = True
                continue
        if new is not op:
            for o, n in zip(op.outputs, new.outputs):
                subst[id(o)] = n
    if not changed:
        return fn
    return Function(fn.params, [subst.get(id(r), r) for r in fn.results], fn.name)


def cse(fn: Function, counts: Counter) -> Function:
    """Merge ops with the same op, inputs and attributes (commutative operands sorted).
    One hash-table lookup per op: linear."""
    pinned = pinned_values(fn)
    seen: dict = {}
    subst: dict[int, Value] = {}
    changed = False
    for op in fn.ops:
        inputs = [subst.get(id(v), v) for v in op.inputs]
        new = op
        if any(map(is_not, inputs, op.inputs)):
            new = rebuild(op, inputs)
            changed = True
            _carry_pins(op, new, pinned)
        key = new.key()
        if new.opdef.commutative:
            key = (key[0], tuple(sorted(key[1])), key[2], key[3])
        if any(id(o) in pinned for o in new.outputs):
            # a pinned value is an independent variable of a pending grad: it neither
            # merges into an equal op nor absorbs one (that would reroute the cost
            # through it and change the gradient)
            if new is not op:
                for o, n in zip(op.outputs, new.outputs):
                    subst[id(o)] = n
            continue
        prev = seen.get(key)
        if prev is not None:
            for o, p in zip(op.outputs, prev.outputs):
                subst[id(o)] = p
            counts["cse:" + op.opdef.name] += 1
            changed = True
            continue
        seen[key] = new
        if new is not op:
            for o, n in zip(op.outputs, new.outputs):
                subst[id(o)] = n
    if not changed:
        return fn
    return Function(fn.params, [subst.get(id(r), r) for r in fn.results], fn.name)


def dce(fn: Function, counts: Counter) -> Function:
    """Drop ops no result depends on. Functions are built by a topological sort
    from their results, so rebuilding is the whole pass."""
    new = Function(fn.params, fn.results, fn.name)
    removed = len(fn.ops) - len(new.ops)
    if removed:
        counts["dce"] += removed
        return new
    return fn
