"""Control flow: If, Loop and Scan, with their bodies converted by ``Node.subgraph``
inside symfuse's traced ``cond``, ``scan`` and ``while_loop`` (a body reads the
names of the graphs around it: they become captures).

Loop takes one of two forms. With a trip count known at import time and a
condition the body passes through unchanged, it is a ``scan`` of that length,
which also gives its scan outputs. Otherwise it is a ``while_loop`` (bounded by the
trip count when that is known); scan outputs then have a length known only at run
time, which symfuse's static shapes cannot hold.
"""
from __future__ import annotations

import numpy as np

from ...frontend import api as F
from ..registry import converter

# an int64 trip count this large is ONNX's idiom for "no trip count"
UNBOUNDED = 2 ** 31 - 1


def _scalar_bool(v):
    v = F.reshape(v, ()) if v.ndim else v
    return v if v.dtype.is_bool else v != 0


@converter("If", since=13)
def if_(n):
    if n.is_static(0):
        pred = n.static(0)
        if pred.size != 1:
            n.fail(f"the condition has {pred.size} elements, not one")
        return n.subgraph("then_branch" if bool(pred.reshape(-1)[0]) else "else_branch", [])
    pred = n.value(0)
    if pred.size != 1:
        n.fail(f"the condition {pred.type} must hold one element")
    then_outs = lambda: tuple(n.subgraph("then_branch", []))      # noqa: E731
    else_outs = lambda: tuple(n.subgraph("else_branch", []))      # noqa: E731
    return list(F.cond(_scalar_bool(pred), then_outs, else_outs))


def _invariant_condition(body) -> bool:
    """Whether the body's condition output is its condition input (through Identity
    nodes) or a constant true: then only the trip count ends the loop."""
    producers = {o: node for node in body.node for o in node.output}
    name = body.output[0].name
    while True:
        if name == body.input[1].name:
            return True
        node = producers.get(name)
        if node is None:
            return False
        if node.op_type == "Identity":
            name = node.input[0]
            continue
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            from onnx import numpy_helper
            value = numpy_helper.to_array(node.attribute[0].t)
            return value.size == 1 and bool(value.reshape(-1)[0])
        return False


def _trip_count(n):
    """(static trip count or None, trip count value or None)."""
    if not n.has(0):
        return None, None
    if n.is_static(0):
        m = n.static(0)
        if m.size != 1:
            n.fail(f"the trip count has {m.size} elements, not one")
        return max(0, int(m.reshape(-1)[0])), None      # a negative count runs no iteration
    return None, F.reshape(n.value(0), ())


@converter("Loop", since=13)
def loop(n):
    body = n.attr("body")
    if body is None:
        n.fail("graph attribute 'body' is required")
    carried = [n.value(i) for i in range(2, n.n_inputs)]
    n_scan = len(body.output) - 1 - len(carried)
    if n_scan < 0 or len(body.input) != 2 + len(carried):
        n.fail(f"the body takes {len(body.input)} inputs and yields {len(body.output)} outputs for "
               f"{len(carried)} loop-carried values")
    count, count_value = _trip_count(n)
    start = None if not n.has(1) else (bool(n.static(1).reshape(-1)[0]) if n.is_static(1) else None)
    if count is not None and count <= UNBOUNDED and start is not False and (
            start is True or not n.has(1)) and _invariant_condition(body):
        return _counted_loop(n, carried, count, n_scan)
    if n_scan:
        for i in (0, 1):       # with their values given at import time, the loop may be counted
            if n.has(i):
                n.static(i)
        n.unsupported("scan outputs of a loop that a condition ends", "Loop: scan outputs with a condition")
    if count is None and count_value is None and not n.has(1):
        n.fail("the loop has neither a trip count nor a condition: it never ends")
    return _while_loop(n, carried, count, count_value)


def _counted_loop(n, carried, count: int, n_scan: int):
    if count == 0:
        if n_scan:
            n.unsupported("scan outputs of a loop that runs zero times", "Loop: zero iterations")
        return carried
    true = F.constant(np.array(True))

    def step(c, _):
        it, vals = c
        outs = n.subgraph("body", [it, true, *vals])
        return (it + 1, tuple(outs[1:1 + len(vals)])), tuple(outs[1 + len(vals):])

    (_, final), ys = F.scan(step, (F.constant(np.array(0, np.int64)), tuple(carried)), length=count)
    return list(final) + list(ys)


def _while_loop(n, carried, count, count_value):
    if count is None:
        limit = count_value
    else:
        limit = F.constant(np.array(count, np.int64)) if count <= UNBOUNDED else None
    cond0 = _scalar_bool(n.value(1)) if n.has(1) else F.constant(np.array(True))

    def test(c):
        it, go, _ = c
        return go if limit is None else F.logical_and(go, it < F.cast(limit, "int64"))

    def step(c):
        it, go, vals = c
        outs = n.subgraph("body", [it, go, *vals])
        return it + 1, _scalar_bool(outs[0]), tuple(outs[1:])

    bound = count if count is not None and 0 < count <= UNBOUNDED else None
    if count == 0:
        return carried
    _, _, final = F.while_loop(test, step, (F.constant(np.array(0, np.int64)), cond0, tuple(carried)),
                               max_iterations=bound)
    return list(final)


def _axes_attr(n, name: str, count: int, ranks: list) -> list:
    got = [int(a) for a in n.attr(name, [0] * count)]
    if len(got) != count:
        n.fail(f"attribute {name} has {len(got)} values for {count} tensors")
    for a, r in zip(got, ranks):
        if not -r <= a < r:
            n.fail(f"attribute {name}: axis {a} is out of range for rank {r}")
    return [a % r for a, r in zip(got, ranks)]


def _directions(n, name: str, count: int) -> list:
    got = [int(d) for d in n.attr(name, [0] * count)]
    if len(got) != count or any(d not in (0, 1) for d in got):
        n.fail(f"attribute {name}={got} must hold {count} values of 0 or 1")
    return got


def _move_axis(x, src: int, dst: int):
    if src == dst:
        return x
    order = list(range(x.ndim))
    order.insert(dst, order.pop(src))
    return F.transpose(x, order)


@converter("Scan", since=11)
def scan(n):
    k = n.attr("num_scan_inputs")
    inputs = n.values()
    if not isinstance(k, int) or not 1 <= k <= len(inputs):
        n.fail(f"num_scan_inputs={k!r} must be between 1 and the number of inputs ({len(inputs)})")
    states, xs = inputs[:len(inputs) - k], inputs[len(inputs) - k:]
    in_axes = _axes_attr(n, "scan_input_axes", k, [x.ndim for x in xs])
    in_dirs = _directions(n, "scan_input_directions", k)
    xs = [_move_axis(x, a, 0) for x, a in zip(xs, in_axes)]
    xs = [F.flip(x, (0,)) if d else x for x, d in zip(xs, in_dirs)]

    def step(c, x):
        outs = n.subgraph("body", [*c, *x])
        return tuple(outs[:len(states)]), tuple(outs[len(states):])

    final, ys = F.scan(step, tuple(states), tuple(xs))
    ys = list(ys)
    out_dirs = _directions(n, "scan_output_directions", len(ys))
    out_axes = _axes_attr(n, "scan_output_axes", len(ys), [y.ndim for y in ys])
    ys = [F.flip(y, (0,)) if d else y for y, d in zip(ys, out_dirs)]
    return list(final) + [_move_axis(y, 0, a) for y, a in zip(ys, out_axes)]
