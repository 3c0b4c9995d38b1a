"""Reverse-mode differentiation as an IR-to-IR transformation.

``grad`` ops (recorded by ``sf.grad``) are expanded in program order, so a
grad of a grad sees its inner grad already expanded (higher derivatives). Each
op's VJP is written with symfuse ops: the emitted gradient code is ordinary IR
that the simplifier then cleans up like any other.
"""
from __future__ import annotations

from ..ir import build as F
from ..ir.backprop import backprop
from ..ir.core import Function, Value, location, rebuild
from .walk import map_ops, through_regions


def differentiate(fn: Function, stats: dict | None = None) -> Function:
    stats = stats if stats is not None else {}
    fn = through_regions(_expand)(fn, stats)
    if stats.get("grad_ops_expanded"):
        fn = through_regions(_share_saved_forward)(fn, stats)
    return fn


def _expand(fn: Function, stats: dict) -> Function:
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
    stats["grad_ops_expanded"] = stats.get("grad_ops_expanded", 0) + expanded
    return fn


def _share_saved_forward(fn: Function, stats: dict) -> Function:
    """A scan whose gradient was taken has a twin that also saves what reverse mode
    reads (its VJP builds it on the same operands, over the same body parameters,
    yielding the same results and then its residuals); the twin's leading results
    replace the original's, so the forward runs once."""
    twins = {_twin_key(op): op for op in fn.ops if op.opdef.name == "scan" and op.attrs["save"]}
    if not twins:
        return fn
    built: dict = {}     # key -> the twin rebuilt on this walk's operands

    def visit(op, new):
        if op.opdef.name != "scan":
            return None
        key = _twin_key(op)
        twin = twins.get(key)
        if twin is None:
            return None
        if op.attrs["save"]:
            first = built.setdefault(key, new)
            if first is new or not _yields_prefix(first.regions[0], new.regions[0], exact=True):
                return None
            return first.outputs
        if not _yields_prefix(twin.regions[0], op.regions[0]):
            return None
        rebuilt = built.get(key)
        if rebuilt is None:
            rebuilt = built[key] = rebuild(twin, new.inputs)
        stats["forward_shared"] = stats.get("forward_shared", 0) + 1
        return rebuilt.outputs[:len(op.outputs)]

    return map_ops(fn, visit)


def _yields_prefix(long, short, exact: bool = False) -> bool:
    """``long``'s body yields ``short``'s results first (the same values), and no more when ``exact``."""
    a, b = long.results, short.results
    if len(a) < len(b) or (exact and len(a) != len(b)):
        return False
    return all(x is y for x, y in zip(a, b))


def _twin_key(op):
    attrs = tuple((k, v) for k, v in op.attrs.items() if k != "save")
    return op.opdef.name, tuple(v.id for v in op.inputs), attrs, tuple(id(p) for r in op.regions for p in r.params)


def reverse_mode(cost: Value, wrt: list[Value], loc=None) -> list[Value]:
    # whether the cost depends on each wrt at all was checked on the graph as written
    # (sf.grad and the verifier); a path removed since then by simplification
    # (where(c, x, x), y ** 0) was proven to contribute nothing: its gradient is zero
    with location(loc):
        seed = F.ones_like(cost)
    return backprop([cost], [seed], wrt, loc)
