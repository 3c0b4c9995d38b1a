"""MatMul, Gemm and Einsum."""
from __future__ import annotations

import math

from ...frontend import api as F
from ..registry import converter


@converter("MatMul", since=1)
def _matmul(n):
    return F.matmul(n.value(0), n.value(1))


@converter("Gemm", since=11)
def _gemm(n):
    a, b = n.value(0), n.value(1)
    if a.ndim != 2 or b.ndim != 2:
        n.fail(f"A and B must be matrices, got {a.type} and {b.type}")
    if n.attr("transA", 0):
        a = F.transpose(a)
    if n.attr("transB", 0):
        b = F.transpose(b)
    alpha, beta = n.attr("alpha", 1.0), n.attr("beta", 1.0)
    y = F.matmul(a, b)
    if alpha != 1.0:
        y = y * alpha
    if n.has(2) and beta != 0.0:
        c = n.value(2)
        y = y + (c if beta == 1.0 else c * beta)
    return y


# ---------------------------------------------------------------- Einsum
def _parse(n, equation: str, ranks: list[int]):
    """Each operand's labels and the output's; an ellipsis's axes get the labels
    '.0' (last) '.1' ... so that they line up from the right, as they broadcast."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        n.fail(f"equation {equation!r} has {len(terms)} operand terms for {len(ranks)} inputs")
    widest = 0
    labels = []
    for term, rank in zip(terms, ranks):
        head, dots, tail = term.partition("...")
        letters = len(head) + len(tail)
        bad_char = bool(head + tail) and not (head + tail).isalpha()
        if bad_char or (not dots and letters != rank) or letters > rank:
            n.fail(f"term {term!r} of {equation!r} does not fit an operand of rank {rank}")
        width = rank - letters if dots else 0
        widest = max(widest, width)
        labels.append(list(head) + [f".{k}" for k in reversed(range(width))] + list(tail))
    ellipsis = [f".{k}" for k in reversed(range(widest))]
    if arrow:
        head, dots, tail = rhs.partition("...")
        out = list(head) + (ellipsis if dots else []) + list(tail)
        if len(set(out)) != len(out) or any(x not in sum(labels, []) for x in out):
            n.fail(f"output term {rhs!r} of {equation!r} repeats a label or names one no operand has")
    else:
        letters = [x for x in sum(labels, []) if not x.startswith(".")]
        out = ellipsis + sorted(x for x in set(letters) if letters.count(x) == 1)
    return labels, out


def _diagonal(x, labels):
    """Repeated labels of one operand: keep their diagonal."""
    while len(set(labels)) != len(labels):
        lab = next(x for x in labels if labels.count(x) > 1)
        p, q = [i for i, x in enumerate(labels) if x == lab][:2]
        rest = [i for i in range(x.ndim) if i not in (p, q)]
        size = x.shape[p]
        x = F.reshape(F.transpose(x, rest + [p, q]), [x.shape[i] for i in rest] + [size * size])
        x = F.slice_general(x, [0] * x.ndim, x.shape, [1] * (x.ndim - 1) + [size + 1])
        labels = [labels[i] for i in rest] + [lab]
    return x, labels


def _sum_out(x, labels, keep):
    axes = tuple(i for i, lab in enumerate(labels) if lab not in keep)
    if not axes:
        return x, labels
    return F.sum(x, axes), [lab for lab in labels if lab in keep]


def _contract(a, la, b, lb, keep):
    """sum over the labels shared by a and b that ``keep`` lacks, as one batched matmul."""
    batch = [x for x in la if x in lb and x in keep]
    inner = [x for x in la if x in lb and x not in keep]
    left = [x for x in la if x not in lb]
    right = [x for x in lb if x not in la]
    size = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))
    prod = lambda labs: math.prod(size[x] for x in labs)  # noqa: E731
    a3 = F.reshape(F.transpose(a, [la.index(x) for x in batch + left + inner]),
                   [prod(batch), prod(left), prod(inner)])
    b3 = F.reshape(F.transpose(b, [lb.index(x) for x in batch + inner + right]),
                   [prod(batch), prod(inner), prod(right)])
    y = F.matmul(a3, b3)
    labels = batch + left + right
    return F.reshape(y, [size[x] for x in labels]), labels


@converter("Einsum", since=12)
def _einsum(n):
    xs = n.values(0)
    equation = n.attr("equation")
    if not equation or not xs:
        n.fail("needs an equation and at least one input")
    all_labels, out = _parse(n, equation, [x.ndim for x in xs])
    ops = [_diagonal(x, labels) for x, labels in zip(xs, all_labels)]
    size = {}
    for x, labels in ops:
        for lab, s in zip(labels, x.shape):
            if lab in size and s != size[lab] and 1 not in (s, size[lab]):
                n.fail(f"label {lab!r} of {equation!r} has sizes {size[lab]} and {s}")
            size[lab] = s if size.get(lab, 1) == 1 else size[lab]
    # size-1 axes broadcast against the others (ellipsis axes mostly)
    ops = [(F.broadcast_to(x, [size[lab] for lab in labels]), labels) for x, labels in ops]
    acc, acc_labels = None, None
    for k, (x, labels) in enumerate(ops):
        later = set(out).union(*(set(lb) for _, lb in ops[k + 1:]))
        if acc is None:
            acc, acc_labels = _sum_out(x, labels, later)
            continue
        acc, acc_labels = _sum_out(acc, acc_labels, later | set(labels))
        x, labels = _sum_out(x, labels, later | set(acc_labels))
        acc, acc_labels = _contract(acc, acc_labels, x, labels, later)
    acc, acc_labels = _sum_out(acc, acc_labels, set(out))
    return F.transpose(acc, [acc_labels.index(x) for x in out])
