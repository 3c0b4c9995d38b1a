"""Loss functions: scalar symbolic expressions (``reduction="mean"`` by default;
``"sum"`` or ``"none"`` for per-example values)."""
from __future__ import annotations

from ..frontend import api as F
from ..frontend import nn_api as NN


def _reduce(v, reduction: str):
    if reduction == "mean":
        return F.mean(v)
    if reduction == "sum":
        return F.sum(v)
    if reduction == "none":
        return v
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def softmax_cross_entropy(logits, labels, reduction: str = "mean", axis: int = -1):
    """Cross-entropy of ``softmax(logits)`` against integer class ``labels`` (shape of
    the logits without ``axis``) or target probabilities (shape of the logits).
    Computed by one stable ``softmax_xent`` op (no log of a softmax)."""
    return _reduce(NN.softmax_cross_entropy(logits, labels, axis), reduction)


def mean_squared_error(pred, target, reduction: str = "mean"):
    """Mean over every element of ``(pred - target)**2``."""
    d = F.as_tensor(pred) - target
    return _reduce(d * d, reduction)


def binary_cross_entropy(pred, target, from_logits: bool = False, reduction: str = "mean", eps: float = 1e-7):
    """Elementwise binary cross-entropy.

    from_logits=True (recommended): ``pred`` are logits z and the loss is the stable
    ``softplus(z) - t * z`` (= -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))) for any z.
    from_logits=False: ``pred`` are probabilities, clipped to [eps, 1 - eps]."""
    p = F.as_tensor(pred)
    t = F.as_tensor(target, p)
    if from_logits:
        v = F.softplus(p) - t * p
    else:
        q = F.clip(p, eps, 1.0 - eps)
        v = -(t * F.log(q) + (1.0 - t) * F.log(1.0 - q))
    return _reduce(v, reduction)


def binary_cross_entropy_with_logits(logits, target, reduction: str = "mean"):
    return binary_cross_entropy(logits, target, from_logits=True, reduction=reduction)


def accuracy(logits, labels):
    """Fraction of rows whose argmax equals the integer label (a float32 scalar)."""
    x = F.as_tensor(logits)
    y = F.as_tensor(labels)
    hits = F.equal(F.cast(F.argmax(x, axis=-1), y.dtype), y)
    return F.mean(F.cast(hits, "float32"))
