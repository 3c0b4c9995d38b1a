"""Simplifications of control flow, run in the fixpoint beside the rewrites:

* ``cond_constant``: a cond whose predicate is a constant is the branch it takes;
* ``scan_trivial``: a scan of length 1 is its body applied once, one of length 0
  passes its carries through (its stacked outputs are empty);
* ``scan_unused_outputs``: per-step outputs no one reads are not stacked;
* ``scan_unused_constants``: a constant the body no longer reads is not passed;
* ``scan_accumulation``: a carry that only sums a per-step ``transpose(x_t) @ y_t``
  or ``sum(y_t, axis=0)`` becomes one product or reduction of the stacked values
  after the loop (the weight gradients of backpropagation through time);
* ``loop_invariant``: what a scan or while body computes from its constants alone
  is computed once before the loop and passed in (loop-invariant code motion).

Loops and branches are multi-result ops, so these are one walk of their own
rather than rows of the single-result rewrite table."""
from __future__ import annotations

from collections import Counter
from itertools import chain

import numpy as np

from ...ir import build as F
from ...ir.core import Function, Op, Region, Value, apply, location
from ...ir.ops.control import scan_split
from ...ir.regions import inline
from ..walk import map_ops

# ops kept inside a loop even when invariant: a view or broadcast is free where it is
# read, and hoisting it would materialise a buffer of its result's size
_KEEP_FUSION = ("view", "constant")


def simplify_control(fn: Function, counts: Counter) -> Function:
    if not any(op.regions for op in fn.ops):
        return fn
    uses = Counter(map(id, chain.from_iterable(op.inputs for op in fn.ops)))
    uses.update(map(id, fn.results))

    def visit(op, new):
        rule = _RULES.get(op.opdef.name)
        if rule is None:
            return None
        with location(op.loc):
            for name, f in rule:
                out = f(new, op, uses)
                if out is not None:
                    counts[name] += 1
                    return out
        return None

    return map_ops(fn, visit)


def _constant(v: Value):
    return v.op.attrs["value"] if v.op is not None and v.op.opdef.name == "constant" else None


def _as_list(out) -> list[Value]:
    return [out] if isinstance(out, Value) else list(out)


# --------------------------------------------------------------------------- cond
def cond_constant(op, old, uses):
    p = _constant(op.inputs[0])
    if p is None:
        return None
    return inline(op.regions[0] if bool(p.reshape(-1)[0]) else op.regions[1], list(op.inputs[1:]))


# --------------------------------------------------------------------------- scan
def _split(op):
    return scan_split(list(op.inputs), op.attrs)


def scan_trivial(op, old, uses):
    n = op.attrs["length"]
    if n > 1:
        return None
    carries, seqs, consts = _split(op)
    body, nc = op.regions[0], op.attrs["carries"]
    if n == 0:
        outs = [o for o in op.outputs[nc:]]
        # zeros of the stacked shape: a broadcast scalar, which a run-time size stays symbolic in
        return carries + [F.full(o.type.shape, 0, o.type.dtype) for o in outs]
    out = inline(body, carries + [F.reshape(s, s.shape[1:]) for s in seqs] + consts)
    ys = [F.expand_dims(y, 0) for y in out[nc:]]
    saved = [F.expand_dims(c, 0) for c in carries] if op.attrs["save"] else []
    return out[:nc] + ys + saved


def scan_unused_outputs(op, old, uses):
    nc = op.attrs["carries"]
    body = op.regions[0]
    ny = len(body.results) - nc
    dead = [j for j in range(ny) if uses[id(old.outputs[nc + j])] == 0]
    if not dead:
        return None
    keep = [j for j in range(ny) if j not in dead]
    region = Region(body.params, list(body.results[:nc]) + [body.results[nc + j] for j in keep])
    new = _as_list(apply("scan", list(op.inputs), dict(op.attrs), [region]))
    out = new[:nc] + [None] * ny + new[nc + len(keep):]
    for k, j in enumerate(keep):
        out[nc + j] = new[nc + k]
    for j in dead:     # never read: any value of the right type
        out[nc + j] = op.outputs[nc + j]
    return out if len(keep) < ny else None


def _accumulated(t: Value, seqs: list[Value]):
    """How per-step term ``t`` sums over the steps: ("sum", None, y) for ``sum(y, axis=0)``,
    ("matmul", j, y) for ``transpose(x_j) @ y`` with ``x_j`` sequence j's slice; else None."""
    op = t.op
    if op is None:
        return None
    if op.opdef.name == "sum" and tuple(op.attrs["axis"]) == (0,) and not op.attrs["keepdims"] \
            and op.inputs[0].ndim == 2:
        return "sum", None, op.inputs[0]
    if op.opdef.name == "matmul" and all(v.ndim == 2 for v in op.inputs):
        a, y = op.inputs
        if a.op is not None and a.op.opdef.name == "transpose" and tuple(a.op.attrs["perm"]) == (1, 0):
            for j, x in enumerate(seqs):
                if a.op.inputs[0] is x:
                    return "matmul", j, y
    return None


def scan_accumulation(op, old, uses):
    """A carry that only adds up a per-step term, ``acc' = acc + transpose(x_t) @ y_t``
    (``x`` a sequence) or ``acc' = acc + sum(y_t, axis=0)``: the sum over the steps is one
    matrix product (or reduction) of the stacked values after the loop. In
    backpropagation through time these are the weight and bias gradients: one large
    product instead of a small one per step, and no accumulator carried. The sum's
    order changes (as any reassociation of a float sum does)."""
    a = op.attrs
    if a["save"]:
        return None
    nc, nx = a["carries"], a["sequences"]
    body = op.regions[0]
    use = Counter(id(v) for o in body.ops for v in o.inputs)
    use.update(id(v) for v in body.results)
    seq_params = list(body.params[nc:nc + nx])
    for i in range(nc):
        r, p = body.results[i], body.params[i]
        if r.op is None or r.op.opdef.name != "add" or use[id(p)] != 1 or not any(v is p for v in r.op.inputs):
            continue
        t = r.op.inputs[1] if r.op.inputs[0] is p else r.op.inputs[0]
        found = _accumulated(t, seq_params) if t.type is p.type else None
        if found is not None:
            return _without_accumulator(op, i, found)
    return None


def _without_accumulator(op, i: int, found):
    kind, j, y = found
    a, body = op.attrs, op.regions[0]
    nc, n = a["carries"], a["length"]
    ys = list(body.results[nc:])
    q = next((k for k, v in enumerate(ys) if v is y), None)
    if q is None:
        ys.append(y)
        q = len(ys) - 1
    params = [v for k, v in enumerate(body.params) if k != i]
    region = Region(params, [v for k, v in enumerate(body.results[:nc]) if k != i] + ys)
    inputs = [v for k, v in enumerate(op.inputs) if k != i]
    new = _as_list(apply("scan", inputs, {**a, "carries": nc - 1}, [region]))
    stacked = F.reshape(new[nc - 1 + q], (n * y.shape[0], y.shape[1]))
    if kind == "sum":
        total = F.sum(stacked, axis=0)
    else:
        x = op.inputs[nc + j]
        total = F.matmul(F.transpose(F.reshape(x, (n * x.shape[1], x.shape[2]))), stacked)
    carries = new[:nc - 1]
    out = carries[:i] + [op.inputs[i] + total] + carries[i:]
    return out + new[nc - 1:nc - 1 + len(body.results) - nc]


def _hoist(region: Region, fixed: int, operands: list[Value]):
    """(values to compute before the loop, the region reading them as new trailing
    parameters) for the ops of ``region`` that read only its parameters from
    ``fixed`` on (the loop's constants, given as ``operands``); None when none."""
    invariant = {id(p) for p in region.params[fixed:]}
    for op in region.ops:
        if not op.regions and all(id(v) in invariant for v in op.inputs):   # constants too
            invariant.update(id(o) for o in op.outputs)
    frontier: dict[int, Value] = {}
    for op in region.ops:
        if all(id(o) in invariant for o in op.outputs):
            continue
        for v in op.inputs:
            if id(v) in invariant and v.op is not None and v.op.opdef.fusion not in _KEEP_FUSION:
                frontier.setdefault(id(v), v)
    for v in region.results:
        if id(v) in invariant and v.op is not None and v.op.opdef.fusion not in _KEEP_FUSION:
            frontier.setdefault(id(v), v)
    if not frontier:
        return None
    hoisted = list(frontier.values())
    outside = inline(Region(region.params[fixed:], hoisted), operands)
    params = [Value(v.type, name=f"inv{k}") for k, v in enumerate(hoisted)]
    body = _replace(region, {id(v): p for v, p in zip(hoisted, params)})
    return outside, Region(list(region.params) + params, body)


def _replace(region: Region, subst: dict[int, Value]) -> list[Value]:
    """``region``'s results with the values in ``subst`` replaced (ops rebuilt)."""
    for op in region.ops:
        if id(op.outputs[0]) in subst:
            continue
        ins = [subst.get(id(v), v) for v in op.inputs]
        if any(a is not b for a, b in zip(ins, op.inputs)):
            new = Op(op.opdef, ins, op.attrs, [o.type for o in op.outputs], op.regions, op.loc)
            for o, n in zip(op.outputs, new.outputs):
                subst[id(o)] = n
    return [subst.get(id(r), r) for r in region.results]


def _used(region: Region) -> set[int]:
    return {id(v) for o in region.ops for v in o.inputs} | {id(v) for v in region.results}


def scan_unused_constants(op, old, uses):
    fixed = op.attrs["carries"] + op.attrs["sequences"]
    body = op.regions[0]
    used = _used(body)
    keep = [k for k in range(fixed, len(op.inputs)) if id(body.params[k]) in used]
    if len(keep) == len(op.inputs) - fixed:
        return None
    region = Region(list(body.params[:fixed]) + [body.params[k] for k in keep], body.results)
    return _as_list(apply("scan", list(op.inputs[:fixed]) + [op.inputs[k] for k in keep], dict(op.attrs),
                          [region]))


def scan_invariant(op, old, uses):
    carries, seqs, consts = _split(op)
    h = _hoist(op.regions[0], len(carries) + len(seqs), consts)
    if h is None:
        return None
    outside, region = h
    return _as_list(apply("scan", list(op.inputs) + outside, dict(op.attrs), [region]))


def while_invariant(op, old, uses):
    nc = op.attrs["carries"]
    consts = list(op.inputs[nc:])
    test, body = op.regions
    h = _hoist(body, nc, consts)
    if h is None:
        return None
    outside, region = h
    pad = [Value(v.type) for v in outside]
    return _as_list(apply("while_loop", list(op.inputs) + outside, dict(op.attrs),
                          [Region(list(test.params) + pad, test.results), region]))


_RULES = {
    "cond": [("cond_constant", cond_constant)],
    "scan": [("scan_trivial", scan_trivial), ("scan_unused_outputs", scan_unused_outputs),
             ("scan_unused_constants", scan_unused_constants), ("scan_accumulation", scan_accumulation),
             ("loop_invariant", scan_invariant)],
    "while_loop": [("loop_invariant", while_invariant)],
}
