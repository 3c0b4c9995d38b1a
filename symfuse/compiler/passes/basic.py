"""Structural passes: constant folding, common-subexpression elimination, DCE."""
from __future__ import annotations

from collections import Counter

import numpy as np

from ...ir.core import Function, apply, location
from ...ir.symdim import is_symbolic
from ..walk import map_ops
from .rewrite import pinned_values


def fold_constants(fn: Function, counts: Counter) -> Function:
    """Evaluate ops whose inputs are all constants with the numpy reference.

    Folding never grows the program: a result larger than its largest input
    (e.g. ``broadcast_to`` of a scalar) stays symbolic, which also keeps uniform
    constants recognisable as scalars to the algebraic rewrites."""
    pinned = pinned_values(fn)

    def visit(op, new):
        od = op.opdef
        inputs = new.inputs
        if not (od.foldable and inputs and len(op.outputs) == 1 and id(op.outputs[0]) not in pinned
                and all(v.op is not None and v.op.opdef.name == "constant" for v in inputs)):
            return None
        out_t = op.outputs[0].type
        # a run-time size has no value to fold at (an empty one of n rows is still n rows)
        if is_symbolic(out_t.shape) or out_t.size > max(1, max(v.type.size for v in inputs)):
            return None
        with np.errstate(all="ignore"):
            val = od.ref([v.op.attrs["value"] for v in inputs], new.attrs)
        val = np.array(val, dtype=out_t.dtype.np, order="C").reshape(out_t.shape)
        counts["fold:" + od.name] += 1
        with location(op.loc):
            return [apply("constant", [], {"value": val})]

    return map_ops(fn, visit, pinned)


def cse(fn: Function, counts: Counter) -> Function:
    """Merge ops with the same op, inputs and attributes (commutative operands sorted).
    One hash-table lookup per op: linear."""
    pinned = pinned_values(fn)
    seen: dict = {}

    def visit(op, new):
        if any(id(o) in pinned for o in new.outputs):
            # a pinned value is an independent variable of a pending grad: it neither
            # merges into an equal op nor absorbs one (that would reroute the cost
            # through it and change the gradient)
            return None
        key = new.key()
        if new.opdef.commutative:
            key = (key[0], tuple(sorted(key[1])), key[2], key[3])
        prev = seen.get(key)
        if prev is None:
            seen[key] = new
            return None
        counts["cse:" + op.opdef.name] += 1
        return prev.outputs

    return map_ops(fn, visit, pinned)


def dce(fn: Function, counts: Counter) -> Function:
    """Drop ops no result depends on. Functions are built by a topological sort
    from their results, so rebuilding is the whole pass."""
    new = Function(fn.params, fn.results, fn.name)
    removed = len(fn.ops) - len(new.ops)
    if removed:
        counts["dce"] += removed
        return new
    return fn
