"""Control flow for the user API: ``scan``, ``while_loop``, ``cond`` (Python functions
traced once into regions, as ``jax.lax`` does) and ``stop_gradient``.

Structures of tensors (tuples, lists, dicts) may be carried, scanned over and
returned. A body may read any tensor or shared variable of the enclosing graph:
it becomes an operand of the loop (``ir/regions.py``)."""
from __future__ import annotations

from typing import Callable

from ..errors import DTypeError, InputError, ShapeError
from .build import _at, as_tensor, reshape
from .core import Region, Value, apply
from .types import tensor_type


def _regions():
    # the tracer is imported by the first loop or branch, not by `import symfuse`
    from . import regions
    return regions


def _leaf(x) -> Value:
    try:
        return as_tensor(x)
    except (DTypeError, ShapeError, TypeError) as e:
        raise InputError(f"expected a tensor or a number, got {type(x).__name__}: {e}") from None


def _list(out) -> list[Value]:
    return [out] if isinstance(out, Value) else list(out)


def _same_carry(what: str, tree, leaves, traced) -> None:
    if traced.tree != tree:
        raise ShapeError(f"{what} returns a carry shaped {traced.tree.describe()}, it enters as "
                         f"{tree.describe()}{_at()}")
    for i, (a, b) in enumerate(zip(leaves, traced.results)):
        if a.type is not b.type:
            raise ShapeError(f"{what} returns carry {i} as {b.type} but it enters as {a.type}: a loop's carries "
                             f"keep their shape and dtype{_at()}")


def scan(fn: Callable, init, xs=None, length: int | None = None, reverse: bool = False):
    """``fn(carry, x) -> (carry, y)`` over the slices ``x`` of ``xs`` along axis 0,
    as ``jax.lax.scan``: returns ``(final carry, ys stacked along axis 0)``. Without
    ``xs``, ``length`` steps run with ``x = None``."""
    if not callable(fn):
        raise InputError(f"scan: fn must be callable, got {type(fn).__name__}{_at()}")
    carry, ctree = _regions().flatten(init, _leaf)
    seqs, xtree = _regions().flatten(xs, _leaf)
    lengths = {s.shape[0] if s.ndim else None for s in seqs}
    if None in lengths:
        raise ShapeError(f"scan: xs holds a 0-d tensor; every sequence is sliced along its first axis{_at()}")
    if len(lengths) > 1:
        raise ShapeError(f"scan: the sequences have different lengths ({', '.join(str(s.type) for s in seqs)}); "
                         f"all are sliced along their first axis{_at()}")
    if length is not None and (not isinstance(length, int) or length < 0):
        raise InputError(f"scan: length must be a non-negative int, got {length!r}{_at()}")
    n = lengths.pop() if lengths else length
    if n is None:
        raise InputError(f"scan: give xs or length{_at()}")
    if length is not None and length != n:
        raise ShapeError(f"scan: length={length} but the sequences have {n} steps{_at()}")
    slices = [tensor_type(s.dtype, s.shape[1:]) for s in seqs]

    def body(c, x):
        out = fn(c, x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise InputError(f"scan: fn must return a pair (carry, y), got {type(out).__name__}{_at()}")
        return out

    tr = _regions().trace(body, [(ctree, [c.type for c in carry]), (xtree, slices)], _leaf, "s")
    new_tree, ytree = tr.tree.children
    nc = len(carry)
    head = type(tr)(tr.params, tr.results[:nc], new_tree, [], [])
    _same_carry("scan: fn", ctree, carry, head)
    region = Region(tr.params + tr.capture_params, tr.results)
    out = _list(apply("scan", carry + seqs + tr.captures,
                      {"carries": nc, "sequences": len(seqs), "length": n, "reverse": bool(reverse)}, [region]))
    return _regions().unflatten(ctree, out[:nc]), _regions().unflatten(ytree, out[nc:])


def _predicate(pred, what: str) -> Value:
    p = as_tensor(pred)
    if p.size != 1:
        raise ShapeError(f"{what}: the predicate must be a scalar, got {p.type}{_at()}")
    if p.ndim:
        p = reshape(p, ())
    return p if p.dtype.is_bool else p != 0


def cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``; only the branch
    taken runs. Both branches return the same structure of the same types."""
    for f, label in ((true_fn, "true_fn"), (false_fn, "false_fn")):
        if not callable(f):
            raise InputError(f"cond: {label} must be callable, got {type(f).__name__}{_at()}")
    if isinstance(pred, (bool, int)) and not isinstance(pred, Value):
        return (true_fn if pred else false_fn)(*operands)     # known now: no branch op
    p = _predicate(pred, "cond")
    ops, otree = _regions().flatten(tuple(operands), _leaf)
    types = [v.type for v in ops]
    t = _regions().trace(lambda args: true_fn(*args), [(otree, types)], _leaf, "a")
    f = _regions().trace(lambda args: false_fn(*args), [(otree, types)], _leaf, "a")
    if t.tree != f.tree:
        raise ShapeError(f"cond: the branches return different structures: {t.tree.describe()} and "
                         f"{f.tree.describe()}{_at()}")
    for i, (a, b) in enumerate(zip(t.results, f.results)):
        if a.type is not b.type:
            raise ShapeError(f"cond: the branches return different types for result {i}: {a.type} (true) and "
                             f"{b.type} (false){_at()}")
    pad_t = [Value(v.type) for v in f.captures]
    pad_f = [Value(v.type) for v in t.captures]
    then = Region(t.params + t.capture_params + pad_t, t.results)
    other = Region(f.params + pad_f + f.capture_params, f.results)
    out = _list(apply("cond", [p] + ops + t.captures + f.captures, {}, [then, other]))
    return _regions().unflatten(t.tree, out)


def while_loop(cond_fn: Callable, body_fn: Callable, init, max_iterations: int | None = None):
    """Repeat ``carry = body_fn(carry)`` while ``cond_fn(carry)``, as
    ``jax.lax.while_loop``. ``max_iterations`` bounds the trip count (the loop stops
    there) and makes the loop differentiable."""
    for f, label in ((cond_fn, "cond_fn"), (body_fn, "body_fn")):
        if not callable(f):
            raise InputError(f"while_loop: {label} must be callable, got {type(f).__name__}{_at()}")
    if max_iterations is not None and (not isinstance(max_iterations, int) or max_iterations < 1):
        raise InputError(f"while_loop: max_iterations must be a positive int, got {max_iterations!r}{_at()}")
    carry, ctree = _regions().flatten(init, _leaf)
    types = [c.type for c in carry]
    t = _regions().trace(lambda c: _predicate(cond_fn(c), "while_loop: cond_fn"), [(ctree, types)], _leaf, "c")
    b = _regions().trace(body_fn, [(ctree, types)], _leaf, "c")
    _same_carry("while_loop: body_fn", ctree, carry, b)
    pad_t = [Value(v.type) for v in b.captures]
    pad_b = [Value(v.type) for v in t.captures]
    test = Region(t.params + t.capture_params + pad_t, t.results)
    body = Region(b.params + pad_b + b.capture_params, b.results)
    out = _list(apply("while_loop", carry + t.captures + b.captures,
                      {"carries": len(carry), "max_iterations": max_iterations or 0}, [test, body]))
    return _regions().unflatten(ctree, out)


def stop_gradient(x) -> Value:
    """``x``, through which differentiation does not pass (its gradient is zero)."""
    return apply("stop_gradient", [as_tensor(x)])
