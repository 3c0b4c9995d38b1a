"""The one graph walker of the passes (constant folding, CSE, rewrites,
differentiation): an IR-to-IR map that visits each op once, in order.

Each op is first rebuilt on its inputs' replacements (``rebuild`` skips type
inference when the input types are unchanged); ``visit(old, new)`` then returns
the values that replace the op's outputs, or None to keep ``new``. The result is
``fn`` itself when nothing changed, so a fixpoint loop can compare by identity.
``pinned`` (ids of the values a pending grad op differentiates with respect to)
follows rebuilt ops, so a rewrite never loses track of a gradient's target."""
from __future__ import annotations

from operator import is_not
from typing import Callable, Sequence

from ..ir.core import Function, Op, Value, rebuild

Visit = Callable[[Op, Op], "Sequence[Value] | None"]


def map_ops(fn: Function, visit: Visit, pinned: set[int] | None = None) -> Function:
    subst: dict[int, Value] = {}
    changed = False
    for op in fn.ops:
        inputs = [subst.get(id(v), v) for v in op.inputs]
        new = op
        if any(map(is_not, inputs, op.inputs)):
            new = rebuild(op, inputs)
            changed = True
            if pinned:
                for o, n in zip(op.outputs, new.outputs):
                    if id(o) in pinned:
                        pinned.add(id(n))
        repl = visit(op, new)
        if repl is not None:
            for o, r in zip(op.outputs, repl):
                subst[id(o)] = r
            changed = True
        elif new is not op:
            for o, n in zip(op.outputs, new.outputs):
                subst[id(o)] = n
    if not changed:
        return fn
    return Function(fn.params, [subst.get(id(r), r) for r in fn.results], fn.name)


def map_regions(fn: Function, transform: Callable[[Function], Function]) -> Function:
    """``fn`` with every op's region bodies replaced by ``transform`` of them (as
    Functions over the same parameters); ``fn`` itself when none changed."""
    if not any(op.regions for op in fn.ops):
        return fn

    def visit(op, new):
        if not new.regions:
            return None
        bodies = tuple(transform(Function(r.params, r.results, "region")) for r in new.regions)
        if all(b.ops == r.ops and b.results == r.results for b, r in zip(bodies, new.regions)):
            return None
        return Op(new.opdef, new.inputs, new.attrs, [o.type for o in new.outputs], bodies, new.loc).outputs

    return map_ops(fn, visit)


def through_regions(pass_fn: Callable) -> Callable:
    """``pass_fn(fn, *args)`` run inside every region body (innermost first), then on
    ``fn``: regions are closed, so each body is a function of its own parameters."""
    def run(fn: Function, *args):
        return pass_fn(map_regions(fn, lambda body: run(body, *args)), *args)
    run.__name__ = getattr(pass_fn, "__name__", "pass")
    return run
