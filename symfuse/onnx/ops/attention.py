"""Attention (opsets 23 to 25), RotaryEmbedding and RMSNormalization: the
transformer ops, composed from matmuls, reductions and elementwise ops.

Attention follows onnx's reference step for step (it is what the expected outputs
come from): Q and K are each scaled by sqrt(scale), the masks become one additive
bias of 0 / -inf (a boolean mask, is_causal aligned bottom-right to the cache,
the sliding window, nonpad_kv_seqlen), and a query row whose bias is -inf for every
key attends nothing: its probabilities and its output are 0, not NaN.
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend import api as F
from ..importer import symfuse_dtype
from ..registry import converter

# qk_matmul_output_mode: which score tensor output 3 shows
QK_RAW, QK_SOFTCAPPED, QK_WITH_BIAS, QK_SOFTMAX = 0, 1, 2, 3


def _heads(n, x, heads, what: str):
    """(B, S, H*D) -> (B, H, S, D)."""
    if not isinstance(heads, int) or heads < 1 or x.shape[2] % heads:
        n.fail(f"{what} {x.type}: its hidden size must divide into the number of heads ({heads!r})")
    b, s, hidden = x.shape
    return F.transpose(F.reshape(x, (b, s, heads, hidden // heads)), (0, 2, 1, 3))


def _repeat_heads(x, reps: int):
    """(B, H, S, D) -> (B, H*reps, S, D), each head repeated ``reps`` times in place."""
    if reps == 1:
        return x
    b, h, s, d = x.shape
    wide = F.broadcast_to(F.reshape(x, (b, h, 1, s, d)), (b, h, reps, s, d))
    return F.reshape(wide, (b, h * reps, s, d))


def _neg_inf_where_not(allowed, dtype):
    """0 where ``allowed``, -inf elsewhere."""
    return F.where(allowed, F.zeros((), dtype), F.full((), -math.inf, dtype))


def _frontier(q_len: int, kv_len: int, offset):
    """(i + offset) - j for query i and key j: (q, kv), or (B, 1, q, kv) for a per-batch
    run-time offset (B,)."""
    diff = np.arange(q_len)[:, None] - np.arange(kv_len)[None, :]
    if isinstance(offset, int):
        return F.constant((diff + offset).astype(np.int64))
    return F.reshape(offset, (-1, 1, 1, 1)) + F.constant(diff.astype(np.int64))


def _bias(n, q, k_len: int, past_len: int | None, dtype):
    """The additive attention bias (broadcastable to (B, H, q, kv)) and its per-row
    'attends nothing' flag."""
    q_len = q.shape[2]
    window = (n.attr("left_window_size", -1), n.attr("right_window_size", -1))
    causal = bool(n.attr("is_causal", 0))
    nonpad = F.cast(n.value(6), "int64") if n.has(6) else None
    if nonpad is not None and past_len is not None:
        n.fail("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    if past_len is not None:
        offset = past_len
    elif nonpad is not None:
        offset = nonpad - q_len
    else:
        offset = 0
    bias = F.zeros((q_len, k_len), dtype)
    if n.has(3):
        mask = n.value(3)
        short = k_len - mask.shape[-1]
        if short < 0:
            n.fail(f"attn_mask {mask.type} is longer than the {k_len} keys")
        if short:
            fill = False if mask.dtype.is_bool else -math.inf
            mask = F.pad_general(mask, [0] * mask.ndim, [0] * (mask.ndim - 1) + [short], None, fill)
        mask = _neg_inf_where_not(mask, dtype) if mask.dtype.is_bool else F.cast(mask, dtype)
        bias = bias + mask
    if causal:
        bias = bias + _neg_inf_where_not(_frontier(q_len, k_len, offset) >= 0, dtype)
    left, right = window
    if left >= 0 or right >= 0:
        diff = _frontier(q_len, k_len, offset)
        allowed = F.ones(diff.shape, "bool")
        if left >= 0:
            allowed = allowed & (diff <= left)
        if right >= 0:
            allowed = allowed & (-diff <= right)
        bias = bias + _neg_inf_where_not(allowed, dtype)
    if nonpad is not None:
        keys = F.constant(np.arange(k_len, dtype=np.int64))
        bias = bias + _neg_inf_where_not(keys < F.reshape(nonpad, (-1, 1, 1, 1)), dtype)
    return bias, F.equal(F.max(bias, -1, True), -math.inf)


def _softmax(x):
    """Softmax over the last axis whose all -inf rows give 0 (onnx's reference)."""
    top = F.max(x, -1, True)
    safe = F.where(F.equal(top, -math.inf), F.zeros((), x.dtype), top)
    e = F.exp(x - safe)
    total = F.sum(e, -1, True)
    return e / F.where(F.equal(total, 0.0), F.ones((), x.dtype), total)


def _scale_root(n, q):
    scale = n.attr("scale")
    if scale is None:
        scale = 1 / np.sqrt(q.shape[3])
    if scale <= 0 or not math.isfinite(scale):
        n.fail(f"scale {scale!r} must be a positive number")
    return float(np.dtype(q.dtype.np).type(np.sqrt(scale)))


@converter("Attention", since=23)
def attention(n):
    q, k, v = n.value(0), n.value(1), n.value(2)
    if not q.dtype.is_float or not q.ndim == k.ndim == v.ndim or q.ndim not in (3, 4):
        n.fail(f"Q {q.type}, K {k.type} and V {v.type} must be floating point, all 3-D or all 4-D")
    three_d = q.ndim == 3
    if three_d:
        q = _heads(n, q, n.attr("q_num_heads"), "Q")
        k = _heads(n, k, n.attr("kv_num_heads"), "K")
        v = _heads(n, v, n.attr("kv_num_heads"), "V")
    if n.has(4) != n.has(5):
        n.fail("past_key and past_value come together")
    past_len = None
    if n.has(4):
        past_k, past_v = n.value(4), n.value(5)
        past_len = past_k.shape[2]
        k, v = F.concatenate([past_k, k], 2), F.concatenate([past_v, v], 2)
    present_k, present_v = k, v
    hq, hk = q.shape[1], k.shape[1]
    if hq % hk or v.shape[1] != hk or q.shape[3] != k.shape[3] or k.shape[2] != v.shape[2]:
        n.fail(f"Q {q.type}, K {k.type} and V {v.type} do not fit (heads, key sizes, key lengths)")
    k, v = _repeat_heads(k, hq // hk), _repeat_heads(v, hq // hk)
    root = _scale_root(n, q)
    raw = scores = F.matmul(q * root, F.transpose(k * root, (0, 1, 3, 2)))
    softcap = n.attr("softcap", 0.0)
    if softcap > 0:
        scores = F.tanh(scores / softcap) * softcap
    bias, attends_nothing = _bias(n, q, k.shape[2], past_len, q.dtype)
    with_bias = scores + bias
    precision = n.attr("softmax_precision")
    work = with_bias if precision is None else F.cast(with_bias, symfuse_dtype(precision, f"{n.where}: "
                                                                              "softmax_precision"))
    probs = F.where(attends_nothing, F.zeros((), work.dtype), _softmax(work))
    probs = F.cast(probs, q.dtype)
    mode = n.attr("qk_matmul_output_mode", QK_RAW)
    # mode 0 is the scores before softcap, as the specification and onnxruntime have it (onnx's
    # reference shows them after)
    shown = {QK_RAW: raw, QK_SOFTCAPPED: scores, QK_WITH_BIAS: with_bias, QK_SOFTMAX: probs}.get(mode)
    if shown is None:
        n.fail(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode!r}")
    y = F.matmul(probs, v)
    if three_d:
        b, h, s, d = y.shape
        y = F.reshape(F.transpose(y, (0, 2, 1, 3)), (b, s, h * d))
    return [y, present_k if n.wants(1) else None, present_v if n.wants(2) else None,
            shown if n.wants(3) else None]


# ---------------------------------------------------------------- RMSNormalization, RotaryEmbedding, SwiGLU
@converter("RMSNormalization", since=23)
def rms_norm(n):
    x, w = n.value(0), n.value(1)
    if not x.dtype.is_float:
        n.fail(f"X {x.type} must be floating point")
    axis = n.attr("axis", -1)
    if not -x.ndim <= axis < x.ndim:
        n.fail(f"axis {axis} is out of range for {x.type}")
    stash = n.attr("stash_type", 1)
    if stash != 1:
        n.unsupported(f"stash_type={stash}", f"RMSNormalization: stash_type {stash}")
    # statistics in at least float32
    wide = F.cast(x, "float32") if x.dtype.name == "float16" else x
    axes = tuple(range(axis % x.ndim, x.ndim))
    inv_rms = F.reciprocal(F.sqrt(F.mean(F.square(wide), axes, keepdims=True) + n.attr("epsilon", 1e-5)))
    return F.cast(wide * inv_rms * F.cast(w, wide.dtype), x.dtype)


def _rotate(x, cos, sin, interleaved: bool):
    """The rotated pairs of x (..., 2h): halves (x1 | x2) or interleaved (x1, x2, x1, x2 ...)."""
    h = x.shape[-1] // 2
    lead = (slice(None),) * (x.ndim - 1)
    if interleaved:
        pairs = F.reshape(x, x.shape[:-1] + (h, 2))
        x1, x2 = F.getitem(pairs, lead + (slice(None), 0)), F.getitem(pairs, lead + (slice(None), 1))
    else:
        x1, x2 = F.getitem(x, lead + (slice(0, h),)), F.getitem(x, lead + (slice(h, 2 * h),))
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if interleaved:
        return F.reshape(F.stack([real, imag], -1), x.shape)
    return F.concatenate([real, imag], -1)


@converter("RotaryEmbedding", since=23)
def rotary_embedding(n):
    x, cos, sin = n.value(0), n.value(1), n.value(2)
    if x.ndim == 4:                                    # (B, H, S, D) -> (B, S, H, D)
        work = F.transpose(x, (0, 2, 1, 3))
    elif x.ndim == 3:
        heads = n.attr("num_heads")
        if not isinstance(heads, int) or heads < 1 or x.shape[2] % heads:
            n.fail(f"a 3-D input {x.type} needs num_heads dividing its hidden size, got {heads!r}")
        work = F.reshape(x, x.shape[:2] + (heads, x.shape[2] // heads))
    else:
        n.fail(f"input {x.type} must be 3-D or 4-D")
    head = work.shape[3]
    dim = n.attr("rotary_embedding_dim", 0) or head
    if dim % 2 or dim > head:
        n.fail(f"rotary_embedding_dim {dim} must be even and at most the head size {head}")
    if n.has(3):
        ids = F.cast(n.value(3), "int64")
        cos, sin = F.take(cos, ids, 0), F.take(sin, ids, 0)
    if cos.shape[-1] != dim // 2 or sin.shape[-1] != dim // 2:
        n.fail(f"cos_cache {cos.type} and sin_cache {sin.type} must end in rotary_embedding_dim / 2 = {dim // 2}")
    cos, sin = F.expand_dims(cos, 2), F.expand_dims(sin, 2)        # (B, S, 1, dim/2)
    rotated = _rotate(F.getitem(work, (slice(None),) * 3 + (slice(0, dim),)), cos, sin,
                      bool(n.attr("interleaved", 0)))
    if dim < head:
        rotated = F.concatenate([rotated, F.getitem(work, (slice(None),) * 3 + (slice(dim, head),))], -1)
    return F.reshape(rotated, x.shape) if x.ndim == 3 else F.transpose(rotated, (0, 2, 1, 3))


@converter("SwiGLU", since=28)
def swiglu(n):
    a, b = n.value(0), n.value(1)
    if a.type != b.type or not a.dtype.is_float:
        n.fail(f"A {a.type} and B {b.type} must be floating point of one shape and dtype")
    return a * F.sigmoid(a * n.attr("alpha", 1.0)) * b
