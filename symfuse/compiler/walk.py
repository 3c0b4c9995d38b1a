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
