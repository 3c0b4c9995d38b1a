"""Regions from Python functions and regions applied to values.

A region is closed: it reads only its own parameters. ``trace`` calls a Python
function once on fresh parameters; every value the body reads from outside
(a tensor, a shared variable, an intermediate of the enclosing graph) becomes an
extra parameter, and the caller passes the outer value as an operand of the
control-flow op. ``inline`` is the inverse: a region's body applied to values.

Carries, sequences and results may be nested tuples, lists and dicts of tensors
(``flatten``/``unflatten``), as in ``jax.lax.scan``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import core
from .core import Region, Value, rebuild, toposort


# --------------------------------------------------------------------------- trees
@dataclass(frozen=True)
class Tree:
    """The shape of a nested structure: ``kind`` is leaf, none, tuple, list or dict."""
    kind: str
    children: tuple = ()
    keys: tuple = ()

    @property
    def leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.leaves for c in self.children)

    def describe(self) -> str:
        if self.kind in ("leaf", "none"):
            return "tensor" if self.kind == "leaf" else "None"
        inner = ", ".join((f"{k}: " if self.kind == "dict" else "") + c.describe()
                          for k, c in zip(self.keys or [None] * len(self.children), self.children))
        return {"tuple": f"({inner})", "list": f"[{inner}]", "dict": f"{{{inner}}}"}[self.kind]


def flatten(x, leaf: Callable[[Any], Value]) -> tuple[list[Value], Tree]:
    """The leaves of ``x`` (each through ``leaf``, which makes numbers tensors) and its shape."""
    if x is None:
        return [], Tree("none")
    if isinstance(x, (tuple, list)):
        leaves, kids = [], []
        for c in x:
            ls, t = flatten(c, leaf)
            leaves += ls
            kids.append(t)
        return leaves, Tree("tuple" if isinstance(x, tuple) else "list", tuple(kids))
    if isinstance(x, dict):
        keys = tuple(sorted(x))
        leaves, kids = [], []
        for k in keys:
            ls, t = flatten(x[k], leaf)
            leaves += ls
            kids.append(t)
        return leaves, Tree("dict", tuple(kids), keys)
    return [leaf(x)], Tree("leaf")


def unflatten(tree: Tree, leaves: Sequence) -> Any:
    it = iter(leaves)

    def build(t: Tree):
        if t.kind == "leaf":
            return next(it)
        if t.kind == "none":
            return None
        kids = [build(c) for c in t.children]
        if t.kind == "dict":
            return dict(zip(t.keys, kids))
        return tuple(kids) if t.kind == "tuple" else kids
    return build(tree)


# --------------------------------------------------------------------------- tracing
@dataclass
class Traced:
    """One Python function traced on fresh parameters: its results (closed over
    ``capture_params`` in place of the outer ``captures``) and their tree."""
    params: list[Value]
    results: list[Value]
    tree: Tree
    captures: list[Value]
    capture_params: list[Value]


def trace(fn: Callable, param_trees: Sequence[tuple[Tree, Sequence]], leaf: Callable, names: str = "arg") -> Traced:
    """Call ``fn`` once with one argument per (tree, types) pair, each a structure of
    fresh parameter Values of those types; ``leaf`` makes a returned number a tensor."""
    mark = next(core._ids)   # every value made from here on belongs to the body
    params, args = [], []
    for tree, types in param_trees:
        ps = [Value(t, name=f"{names}{len(params) + k}") for k, t in enumerate(types)]
        params += ps
        args.append(unflatten(tree, ps))
    out = fn(*args)
    results, tree = flatten(out, leaf)
    results, captures, capture_params = _close(results, params, mark)
    return Traced(params, results, tree, captures, capture_params)


def _close(results: list[Value], params: list[Value], mark: int):
    """The body's results rebuilt over fresh parameters in place of the outer values it
    reads (those made before ``mark``, and leaves made inside it: a shared variable
    created while the body is traced is state of the enclosing function like any
    other), and the outer values, in first-use order."""
    param_ids = {id(p) for p in params}
    captures: dict[int, Value] = {}
    for r in results:
        if (r.id < mark or r.op is None) and id(r) not in param_ids:
            captures.setdefault(r.id, r)
    body: dict[int, core.Op] = {}
    stack = [r for r in results if r.id >= mark and r.op is not None]
    while stack:        # the body's ops: made after the mark (never walks the outer graph)
        op = stack.pop().op
        if id(op) in body:
            continue
        body[id(op)] = op
        for v in op.inputs:
            if v.id >= mark and v.op is not None:
                stack.append(v)
            elif id(v) not in param_ids:
                captures.setdefault(v.id, v)
    # ids grow as values are made, so creation order is an order of definition
    body_ops = sorted(body.values(), key=lambda op: op.outputs[0].id)
    outer = list(captures.values())
    subst: dict[int, Value] = {id(c): Value(c.type, name=c.name) for c in outer}
    cparams = [subst[id(c)] for c in outer]
    for op in body_ops:
        ins = [subst.get(id(v), v) for v in op.inputs]
        if any(a is not b for a, b in zip(ins, op.inputs)):
            new = rebuild(op, ins)
            for o, n in zip(op.outputs, new.outputs):
                subst[id(o)] = n
    return [subst.get(id(r), r) for r in results], outer, cparams


def inline(region: Region, args: Sequence[Value], clones: dict | None = None) -> list[Value]:
    """The region's results with its parameters replaced by ``args`` (its ops rebuilt);
    ``clones``, if given, receives id(value of the region) -> its rebuilt value."""
    subst: dict[int, Value] = {id(p): a for p, a in zip(region.params, args)}
    for op in region.ops:
        new = rebuild(op, [subst.get(id(v), v) for v in op.inputs])
        for o, n in zip(op.outputs, new.outputs):
            subst[id(o)] = n
    if clones is not None:
        clones.update(subst)
    return [subst.get(id(r), r) for r in region.results]


def substitute(values: Sequence[Value], subst: dict[int, Value]) -> list[Value]:
    """``values`` with the values in ``subst`` (by id) replaced, the ops between rebuilt."""
    memo = dict(subst)
    for op in toposort(list(values), allow_free=True):
        if id(op.outputs[0]) in memo:
            continue
        ins = [memo.get(id(v), v) for v in op.inputs]
        if any(a is not b for a, b in zip(ins, op.inputs)):
            new = rebuild(op, ins)
            for o, n in zip(op.outputs, new.outputs):
                memo[id(o)] = n
    return [memo.get(id(v), v) for v in values]
