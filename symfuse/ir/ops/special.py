"""Ops with no arithmetic of their own: constants and the deferred gradient."""
from __future__ import annotations

import numpy as np

from ...errors import GradError
from ..core import defop
from ..types import as_dtype, tensor_type

INLINE_LIMIT = 16  # constants up to this many elements print as a readable list


def _const_infer(types, attrs):
    v = attrs["value"]
    return (tensor_type(as_dtype(v.dtype), v.shape),)


def _const_to_text(attrs):
    v = attrs["value"]
    if v.size <= INLINE_LIMIT:
        items = list(v.reshape(-1))  # numpy scalars: printed shortest-round-trip for their dtype
        return {"value": items[0] if v.ndim == 0 else items}
    return {"value": ("hex", v.astype(v.dtype.newbyteorder("<")).tobytes().hex())}


def _const_from_text(attrs, out_types):
    t = out_types[0]
    v = attrs["value"]
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "hex":
        arr = np.frombuffer(bytes.fromhex(v[1]), dtype=t.dtype.np.newbyteorder("<")).astype(t.dtype.np)
    else:
        arr = np.array(v, dtype=t.dtype.np)
    if arr.size != t.size:
        raise ValueError(f"constant has {arr.size} elements, its type {t} needs {t.size}")
    return {"value": arr.reshape(t.shape)}


defop("constant", kind="special", fusion="constant", attrs={"value": None}, infer=_const_infer,
      ref=lambda xs, a: a["value"], foldable=False, differentiable=False,   # no operands
      attrs_to_text=_const_to_text, attrs_from_text=_const_from_text,
      onnx=lambda g, op, names: [g.const(op.attrs["value"])])


def _grad_infer(types, attrs):
    cost = types[0]
    if cost.ndim != 0 and cost.size != 1:
        raise GradError(f"the cost must be a scalar, got {cost}; reduce it first (e.g. .sum() or .mean())")
    if not cost.dtype.is_float:
        raise GradError(f"the cost must be floating point, got {cost}")
    if attrs["disconnected"] not in ("raise", "zero"):
        raise GradError(f"disconnected must be 'raise' or 'zero', got {attrs['disconnected']!r}")
    for t in types[1:]:
        if not t.dtype.is_float:
            raise GradError(f"cannot differentiate with respect to non-float {t}")
    return tuple(types[1:])


def _grad_ref(xs, attrs):
    raise GradError("grad ops are expanded by the differentiate pass before execution")


# The gradient op is deferred: sf.grad records it, and the differentiate pass
# expands it after the forward graph has been stabilised, so the gradient of a
# log-softmax is computed from the stable form.
# It has no VJP of its own (differentiable=False): a grad of a grad is differentiated
# through the inner one's expansion, which the pass makes first.
defop("grad", kind="special", attrs={"disconnected": "raise"}, infer=_grad_infer,
      ref=_grad_ref, foldable=False, differentiable=False)
