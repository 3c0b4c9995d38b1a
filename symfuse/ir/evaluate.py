"""The reference semantics of a function or region: every op's numpy reference,
in order. The interpreter backend runs this; control-flow ops run their regions
through it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SymfuseError
from .core import Region, format_loc, run_ref
from .symdim import concrete, current_sizes, has_symbolic


def evaluate(fn: Region, args: Sequence[np.ndarray], sizes: dict | None = None) -> list[np.ndarray]:
    """``sizes``: the values of the run-time sizes (``symdim``) of this call; a
    region evaluated by a control-flow op's reference inherits its caller's."""
    if sizes is None:
        sizes = current_sizes.get()
    elif sizes:
        token = current_sizes.set(sizes)
        try:
            return evaluate(fn, args, None)
        finally:
            current_sizes.reset(token)
    env: dict[int, np.ndarray] = {id(p): a for p, a in zip(fn.params, args)}
    with np.errstate(all="ignore"):
        for op in fn.ops:
            try:
                if sizes and has_symbolic(op.attrs):
                    out = run_ref(op, [env[id(v)] for v in op.inputs], concrete(op.attrs, sizes))
                else:
                    out = run_ref(op, [env[id(v)] for v in op.inputs])
            except SymfuseError:
                raise
            except Exception as e:  # a reference failing is a bug or bad data: say which op
                where = format_loc(op.loc)
                raise SymfuseError(f"interpreter: {op.opdef.name} failed: {e}"
                                   + (f" (at {where})" if where else "")) from e
            if len(op.outputs) == 1:
                out = (out,)
            for v, a in zip(op.outputs, out):
                a = np.asarray(a)
                shape = concrete(v.type.shape, sizes) if sizes else v.type.shape
                if a.dtype != v.type.dtype.np or a.shape != shape:
                    a = np.asarray(a, dtype=v.type.dtype.np).reshape(shape)
                if op.opdef.fusion == "constant":
                    # the op's own array, which a loop may pass through to a result:
                    # read-only here, so whoever hands it out knows to copy it
                    a = a.view()
                    a.flags.writeable = False
                env[id(v)] = a
    return [env[id(r)] for r in fn.results]
