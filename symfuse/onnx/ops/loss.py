"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss over (N, C, d1, ...) scores
and run-time integer labels (N, d1, ...).

A label picks its class's score with a one-hot comparison (a label outside
[0, C), the ignore_index among them, picks nothing). Weights are gathered with
the label clamped into [0, C) as onnx's reference does (``np.take(mode="clip")``),
then zeroed where the label is ignore_index; "mean" divides by the sum of those
weights (by the count of labels not ignored, without a weight input)."""
from __future__ import annotations

from ...frontend import api as F
from ...frontend import nn_api as NN
from ..registry import converter

REDUCTIONS = ("none", "sum", "mean")


def _picked(scores, labels):
    """scores[n, labels[n, ...], ...] (0 where the label is out of range)."""
    c, nd = scores.shape[1], scores.ndim
    hot = NN.one_hot(labels, c, "bool")                                   # (N, d..., C)
    hot = F.transpose(hot, [0, nd - 1] + list(range(1, nd - 1)))          # (N, C, d...)
    return F.sum(F.where(hot, scores, F.zeros((), scores.dtype)), 1)


def _operands(n):
    x, labels = n.value(0), n.value(1)
    if not x.dtype.is_float or x.ndim < 2:
        n.fail(f"scores {x.type} must be floating point (N, C, ...)")
    want = x.shape[:1] + x.shape[2:]
    if not labels.dtype.is_int or labels.shape != want:
        n.fail(f"labels {labels.type} must be integers of shape {list(want)} (the scores' without C)")
    reduction = n.attr("reduction", "mean")
    if reduction not in REDUCTIONS:
        n.fail(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return x, F.cast(labels, "int64"), reduction


def _loss(n, log_probs, labels, reduction: str):
    """The weighted, reduced negative log-likelihood of ``labels`` under ``log_probs``."""
    dtype = log_probs.dtype
    ignore = n.attr("ignore_index")
    loss = -_picked(log_probs, labels)
    kept = None if ignore is None else F.not_equal(labels, ignore)
    if n.has(2):
        w = n.value(2)
        if w.shape != (log_probs.shape[1],):
            n.fail(f"weight {w.type} must have one value per class ({log_probs.shape[1]})")
        weight = NN.take(F.cast(w, dtype), F.clip(labels, 0, log_probs.shape[1] - 1), 0)
        if kept is not None:
            weight = F.where(kept, weight, F.zeros((), dtype))
    elif kept is not None:
        weight = F.cast(kept, dtype)
    else:
        weight = None
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return F.sum(loss)
    return F.sum(loss) / F.sum(weight) if weight is not None else F.mean(loss)


@converter("NegativeLogLikelihoodLoss", since=13)
def nll_loss(n):
    x, labels, reduction = _operands(n)
    return _loss(n, x, labels, reduction)


@converter("SoftmaxCrossEntropyLoss", since=13)
def softmax_cross_entropy_loss(n):
    x, labels, reduction = _operands(n)
    log_probs = NN.log_softmax(x, 1)
    return [_loss(n, log_probs, labels, reduction), log_probs if n.wants(1) else None]
