"""The reference semantics of a function or region: every op's numpy reference,
in order. The interpreter backend runs this; control-flow ops run their regions
through it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SymfuseError
from .core import Region, format_loc, run_ref


def evaluate(fn: Region, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    env: dict[int, np.ndarray] = {id(p): a for p, a in zip(fn.params, args)}
    with np.errstate(all="ignore"):
        for op in fn.ops:
            try:
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
                if a.dtype != v.type.dtype.np or a.shape != v.type.shape:
                    a = np.asarray(a, dtype=v.type.dtype.np).reshape(v.type.shape)
                if op.opdef.fusion == "constant":
                    # the op's own array, which a loop may pass through to a result:
                    # read-only here, so whoever hands it out knows to copy it
                    a = a.view()
                    a.flags.writeable = False
                env[id(v)] = a
    return [env[id(r)] for r in fn.results]
