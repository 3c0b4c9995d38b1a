"""Normalisation layers: BatchNormalization (inference, and the training form with
batch statistics), InstanceNormalization, LayerNormalization, GroupNormalization,
LpNormalization, MeanVarianceNormalization -- each composed from reductions and
elementwise ops. Statistics are population statistics (divide by N), as ONNX's."""
from __future__ import annotations

from ...frontend import api as F
from ..registry import converter


def _per_channel(v, ndim: int):
    """A (C,) vector shaped to broadcast over axis 1 of an (N, C, ...) tensor."""
    return F.reshape(v, (1, -1) + (1,) * (ndim - 2))


def _normalize(x, axes, eps: float):
    """(x - mean) / sqrt(var + eps) over ``axes``, with the mean and 1 / sqrt(var + eps)."""
    mean = F.mean(x, axes, keepdims=True)
    centered = x - mean
    inv_std = F.rsqrt(F.mean(F.square(centered), axes, keepdims=True) + eps)
    return centered * inv_std, mean, inv_std


def _float_input(n, i: int = 0):
    x = n.value(i)
    if not x.dtype.is_float:
        n.fail(f"input {i} {x.type} must be floating point")
    return x


def _channel_param(n, i: int, x, what: str):
    v = n.value(i)
    if v.shape != (x.shape[1],):
        n.fail(f"{what} {v.type} must have one value per channel ({x.shape[1]})")
    return _per_channel(v, x.ndim)


@converter("BatchNormalization", since=9)
def batch_norm(n):
    x = _float_input(n)
    if x.ndim < 2:
        n.fail(f"input {x.type} must be (N, C, ...)")
    eps, momentum = n.attr("epsilon", 1e-5), n.attr("momentum", 0.9)
    scale, bias = _channel_param(n, 1, x, "scale"), _channel_param(n, 2, x, "B")
    mean, var = _channel_param(n, 3, x, "input_mean"), _channel_param(n, 4, x, "input_var")
    # before opset 14 asking for the running statistics is what selects training
    training = bool(n.attr("training_mode", 0)) if n.opset >= 14 else any(n.wants(i) for i in range(1, 5))
    if not training:
        return (x - mean) * F.rsqrt(var + eps) * scale + bias
    if n.wants(3) or n.wants(4):
        n.unsupported("the saved_mean/saved_var outputs (opset < 14)", "BatchNormalization: saved statistics")
    axes = (0,) + tuple(range(2, x.ndim))
    y, batch_mean, inv_std = _normalize(x, axes, eps)
    batch_var = F.mean(F.square(x - batch_mean), axes, keepdims=True)
    running = [F.reshape(old * momentum + new * (1.0 - momentum), (-1,))
               for old, new in ((mean, batch_mean), (var, batch_var))]
    return [y * scale + bias] + running


@converter("InstanceNormalization", since=6)
def instance_norm(n):
    x = _float_input(n)
    if x.ndim < 3:
        n.fail(f"input {x.type} must be (N, C, spatial...)")
    y, _, _ = _normalize(x, tuple(range(2, x.ndim)), n.attr("epsilon", 1e-5))
    return y * _channel_param(n, 1, x, "scale") + _channel_param(n, 2, x, "B")


def _stash(n, x):
    """x in the precision statistics are computed in (stash_type 1: at least float32)."""
    stash = n.attr("stash_type", 1)
    if stash != 1:
        n.unsupported(f"stash_type={stash}", f"{n.op_type}: stash_type {stash}")
    return F.cast(x, "float32") if x.dtype.name == "float16" else x


@converter("LayerNormalization", since=17)
def layer_norm(n):
    x = _float_input(n)
    axis = n.attr("axis", -1)
    if not -x.ndim <= axis < x.ndim:
        n.fail(f"axis {axis} is out of range for {x.type}")
    axes = tuple(range(axis % x.ndim, x.ndim))
    y, mean, inv_std = _normalize(_stash(n, x), axes, n.attr("epsilon", 1e-5))
    y = F.cast(y, x.dtype) * n.value(1)
    if n.has(2):
        y = y + n.value(2)
    return [y, mean, inv_std]


@converter("GroupNormalization", since=18)
def group_norm(n):
    x = _float_input(n)
    groups = n.attr("num_groups")
    if x.ndim < 3 or not isinstance(groups, int) or groups < 1 or x.shape[1] % groups:
        n.fail(f"num_groups={groups!r} must divide the channels of {x.type} (N, C, spatial...)")
    grouped = F.reshape(_stash(n, x), (x.shape[0], groups, -1))
    y, _, _ = _normalize(grouped, (2,), n.attr("epsilon", 1e-5))
    scale, bias = n.value(1), n.value(2)
    c = x.shape[1]
    # GroupNormalization-18 scales each group, -21 each channel
    per_group = scale.shape == (groups,) and (groups != c or n.opset < 21)
    if per_group:
        y = F.reshape(y, (x.shape[0], groups, -1))
        y = y * F.reshape(scale, (1, -1, 1)) + F.reshape(bias, (1, -1, 1))
        return F.cast(F.reshape(y, x.shape), x.dtype)
    if scale.shape != (c,) or bias.shape != (c,):
        n.fail(f"scale {scale.type} and bias {bias.type} must have one value per channel ({c}) or group ({groups})")
    y = F.cast(F.reshape(y, x.shape), x.dtype)
    return y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)


@converter("LpNormalization", since=1)
def lp_norm(n):
    x = _float_input(n)
    axis, p = n.attr("axis", -1), n.attr("p", 2)
    if not -x.ndim <= axis < x.ndim:
        n.fail(f"axis {axis} is out of range for {x.type}")
    if p not in (1, 2):
        n.fail(f"p={p!r} must be 1 or 2")
    norm = F.sum(F.abs(x), axis, keepdims=True) if p == 1 else F.sqrt(F.sum(F.square(x), axis, keepdims=True))
    # an all-zero slice stays zero (not 0/0)
    return x / F.where(norm == 0, F.ones_like(norm), norm)


@converter("MeanVarianceNormalization", since=13)
def mean_variance_norm(n):
    x = _float_input(n)
    axes = [int(a) for a in n.attr("axes", [0, 2, 3])]
    if any(not -x.ndim <= a < x.ndim for a in axes):
        n.fail(f"axes {axes} are out of range for {x.type}")
    axes = tuple(sorted({a % x.ndim for a in axes}))
    mean = F.mean(x, axes, keepdims=True)
    std = F.sqrt(F.mean(F.square(x), axes, keepdims=True) - F.square(mean))
    # the epsilon of ONNX's function body
    return (x - mean) / (std + 1e-9)
