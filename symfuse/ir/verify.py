"""Verifier: SSA dominance, registered ops, and re-inferred result types."""
from __future__ import annotations

from ..errors import GradError, SymfuseError, VerifyError
from .core import OPS, Region, ancestors, format_loc, infer_types


def verify(fn: Region, types: bool = True) -> None:
    """Check dominance and registration; with ``types`` also re-run every op's
    type rule. The compile pipeline passes ``types=False``: ops are built
    through ``apply``/``rebuild``, which type-check on construction, and
    re-inferring costs more than any other stage on large graphs."""
    if not isinstance(fn, Region):
        raise VerifyError(f"verify: expected a Function, got {type(fn).__name__}")
    defined: set[int] = {id(p) for p in fn.params}
    _verify_region(fn, defined, types)


def _verify_region(region: Region, defined: set[int], types: bool = True) -> None:
    for n, op in enumerate(region.ops):
        where = f"op #{n} ({op.opdef.name}{', at ' + format_loc(op.loc) if format_loc(op.loc) else ''})"
        if OPS.get(op.opdef.name) is not op.opdef:
            raise VerifyError(f"{where}: op {op.opdef.name!r} is not registered")
        for i, v in enumerate(op.inputs):
            if id(v) not in defined:
                raise VerifyError(f"{where}: operand {i} ({v.type}) is used before it is defined")
        for r in op.regions:
            inner = set(defined)
            inner.update(id(p) for p in r.params)
            _verify_region(r, inner, types)
            for v in r.results:
                if id(v) not in inner:
                    raise VerifyError(f"{where}: region yields an undefined value")
        if op.opdef.name == "grad" and op.attrs.get("disconnected") == "raise":
            _check_connected(op)
        if not types:
            for o in op.outputs:
                if id(o) in defined:
                    raise VerifyError(f"{where}: value defined twice")
                defined.add(id(o))
            continue
        try:
            rule = infer_types(op.opdef, tuple(v.type for v in op.inputs), dict(op.attrs), op.regions)
        except SymfuseError as e:
            raise VerifyError(f"{where}: {e}") from None
        got = tuple(o.type for o in op.outputs)
        if tuple(rule) != got:
            raise VerifyError(f"{where}: result types {', '.join(map(str, got))} differ from the "
                              f"op's rule {', '.join(map(str, rule))}")
        for o in op.outputs:
            if id(o) in defined:
                raise VerifyError(f"{where}: value defined twice")
            defined.add(id(o))
    for i, v in enumerate(region.results):
        if id(v) not in defined:
            raise VerifyError(f"result {i} ({v.type}) is not defined in the function")


def _check_connected(op) -> None:
    """A ``grad`` op that asks to raise on a disconnected ``wrt`` is checked here, on the
    graph as written: later simplification may remove a path (``y ** 0``) whose
    gradient is then zero, not an error."""
    cost, wrt = op.inputs[0], op.inputs[1:]
    reach = ancestors(cost)
    for w in wrt:
        if id(w) not in reach:
            where = format_loc(op.loc)
            raise GradError(f"grad: the cost does not depend on {w.name or w.type}"
                            + (f" (at {where})" if where else "")
                            + "; pass disconnected='zero' to get zeros instead")
