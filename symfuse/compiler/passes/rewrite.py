"""Named, composable local rewrites (a PyTensor-style rewrite database) and the
sweep that applies them.

A rewrite is ``fn(op, ctx) -> Value | None``: given an op (whose inputs have
already been rewritten), return a Value of the same type to replace the op's
single output, or None. Rewrites are indexed by the op names they fire on, so a
sweep costs O(ops x rewrites-per-op-name), linear in graph size.

Tags select groups: "simplify" (identities that keep IEEE semantics),
"stabilise" (numerically safer forms), "fast_math" (changes results in corner
cases such as NaN/inf or signed zeros; off by default).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from itertools import chain
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...ir.core import Function, Op, Value, location
from ..walk import map_ops


@dataclass
class Rewrite:
    name: str
    ops: tuple[str, ...]
    fn: Callable
    tags: frozenset
    doc: str = ""


class RewriteDB:
    def __init__(self):
        self.rewrites: dict[str, Rewrite] = {}

    def register(self, name: str, ops, tags=("simplify",)):
        ops = (ops,) if isinstance(ops, str) else tuple(ops)

        def deco(fn):
            if name in self.rewrites:
                raise ValueError(f"rewrite {name!r} registered twice")
            self.rewrites[name] = Rewrite(name, ops, fn, frozenset(tags), (fn.__doc__ or "").strip())
            return fn
        return deco

    def table(self, include=("simplify",), exclude=()) -> dict[str, list[Rewrite]]:
        """op name -> rewrites, in registration order, for the selected tags."""
        inc, exc = set(include), set(exclude)
        out = defaultdict(list)
        for r in self.rewrites.values():
            if r.tags & inc and not r.tags & exc:
                for o in r.ops:
                    out[o].append(r)
        return dict(out)


REWRITES = RewriteDB()
rewrite = REWRITES.register


class RewriteContext:
    """What a rewrite may ask about the graph.

    ``pinned`` values (targets of not-yet-expanded grad ops) are never replaced
    and never looked through: absorbing one into a fused pattern would change
    what the gradient is taken with respect to."""

    def __init__(self, pinned: set[int] | None = None, uses: Counter | None = None):
        self.pinned = pinned or set()
        self.uses = uses or Counter()
        self._scalars: dict[int, tuple] = {}   # id(v) -> (v, scalar(v)); reset each sweep

    def producer(self, v: Value, *names: str) -> Op | None:
        op = v.op
        if op is None or id(v) in self.pinned:
            return None
        if names and op.opdef.name not in names:
            return None
        return op

    def single_use(self, v: Value) -> bool:
        return self.uses[id(v)] <= 1

    # ---------------------------------------------------------------- constants
    def const_value(self, v: Value) -> np.ndarray | None:
        """The value of ``v`` when it is a constant, possibly broadcast/reshaped."""
        op = self.producer(v)
        while op is not None and op.opdef.name in ("broadcast_to", "reshape"):
            op = self.producer(op.inputs[0])
        if op is None or op.opdef.name != "constant":
            return None
        return op.attrs["value"]

    def scalar(self, v: Value):
        """The single repeated value of a uniform constant, else None."""
        hit = self._scalars.get(id(v))
        if hit is not None and hit[0] is v:   # memo: rewrites ask about the same operand often
            return hit[1]
        s = self._scalar(v)
        self._scalars[id(v)] = (v, s)         # holding v keeps its id from being reused
        return s

    def _scalar(self, v: Value):
        c = self.const_value(v)
        if c is None or c.size == 0:
            return None
        first = c.reshape(-1)[0]
        if c.size > 1 and not (np.all(c == first) or (np.isnan(first) and np.all(np.isnan(c)))):
            return None
        return first.item()

    def is_scalar(self, v: Value, value) -> bool:
        s = self.scalar(v)
        return s is not None and s == value and not (isinstance(s, float) and s != s)


def apply_rewrites(fn: Function, table: dict[str, list[Rewrite]], ctx: RewriteContext,
                   counts: Counter) -> Function:
    """One forward sweep: rebuild ops on rewritten inputs, then try the rewrites."""
    uses = Counter(map(id, chain.from_iterable([op.inputs for op in fn.ops])))  # C-level counting
    uses.update(map(id, fn.results))
    ctx.uses = uses
    ctx.pinned = pinned_values(fn)
    ctx._scalars = {}   # pinned values changed: constants are looked up afresh

    def visit(op, new):
        rules = table.get(op.opdef.name)
        if not rules or len(op.outputs) != 1 or id(op.outputs[0]) in ctx.pinned:
            return None
        with location(op.loc):
            for rule in rules:
                repl = rule.fn(new, ctx)
                if repl is not None:
                    if repl.type is not op.outputs[0].type:
                        raise AssertionError(f"rewrite {rule.name} changed the type "
                                             f"{op.outputs[0].type} -> {repl.type}")
                    counts[rule.name] += 1
                    return [repl]
        return None

    return map_ops(fn, visit, ctx.pinned)


def pinned_values(fn: Function) -> set[int]:
    """ids of the values some grad op differentiates with respect to."""
    return {id(v) for op in fn.ops if op.opdef.name == "grad" for v in op.inputs[1:]}
