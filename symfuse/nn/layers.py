"""Layers and containers for symfuse graphs (Keras/PyTorch style, Theano semantics).

A layer is a :class:`Module` that owns shared variables (its parameters and, for
BatchNorm, its running statistics) and builds symbolic graphs when called::

    import symfuse as sf
    from symfuse import nn

    model = nn.Sequential(
        nn.Conv2D(1, 20, 5), nn.MaxPool2D(2), nn.Tanh(),
        nn.Flatten(), nn.Dense(20 * 12 * 12, 10))
    x = sf.tensor("x", (64, 1, 28, 28))
    logits = model(x, train=True)          # builds the training graph
    updates = model.updates                # BatchNorm running stats, if any
    model.params                           # trainable shared variables, named "conv0.W", ...

Calls are pure graph construction: ``model(x, train=True)`` builds the training
graph (dropout active, BatchNorm on batch statistics) and records the state
updates that graph implies in ``model.updates`` (a list of ``(shared, expr)``
pairs for ``sf.function(updates=...)``); ``model(x)`` (``train=False``) builds the
inference graph. ``model.apply(x, train)`` returns ``(y, updates)`` explicitly.

Layout conventions: NCHW activations, OIHW convolution weights, dense weights
``(in, out)`` (``y = x @ W + b``). ``Module`` itself (variables, saving, the call
protocol) is in ``module.py``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..frontend import api as F
from ..frontend import nn_api as NN
from ..frontend.random import RandomStream
from . import init as initializers
from .module import Module

# --------------------------------------------------------------------------- activations (functions)


def relu(x):
    return F.relu(x)


def tanh(x):
    return F.tanh(x)


def sigmoid(x):
    return F.sigmoid(x)


def softmax(x, axis=-1):
    return NN.softmax(x, axis)


def log_softmax(x, axis=-1):
    return NN.log_softmax(x, axis)


def softplus(x):
    return F.softplus(x)


def leaky_relu(x, alpha=0.01):
    return F.where(x > 0, x, x * alpha)


def linear(x):
    return x


ACTIVATIONS: dict[str, Callable] = {
    "relu": relu, "tanh": tanh, "sigmoid": sigmoid, "softmax": softmax, "log_softmax": log_softmax,
    "softplus": softplus, "leaky_relu": leaky_relu, "linear": linear,
}


def get_activation(act) -> Callable:
    """An activation function from a name, a callable, or None (identity)."""
    if act is None:
        return linear
    if callable(act):
        return act
    try:
        return ACTIVATIONS[act]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {act!r}; known: {sorted(ACTIVATIONS)}") from None


# --------------------------------------------------------------------------- layers
class Dense(Module):
    """``y = act(x @ W + b)`` with W ``(in_features, out_features)``; inputs of rank > 2
    are applied along the last axis."""

    default_name = "dense"

    def __init__(self, in_features: int, out_features: int, activation=None, bias: bool = True,
                 init="glorot_uniform", bias_init="zeros", rng=None, dtype="float32", name=None):
        super().__init__(name)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = get_activation(activation)
        rng = initializers.as_rng(rng)
        self.W = self.add_param("W", initializers.get(init)((self.in_features, self.out_features), rng, dtype))
        self.b = self.add_param("b", initializers.get(bias_init)((self.out_features,), rng, dtype)) if bias else None

    def forward(self, x, train):
        x = F.as_tensor(x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{self.name}: expected inputs with last dimension {self.in_features}, "
                             f"got {x.type}")
        if x.ndim > 2:
            lead = x.shape[:-1]
            y = F.reshape(F.reshape(x, (-1, self.in_features)) @ self.W, (*lead, self.out_features))
        else:
            y = x @ self.W
        if self.b is not None:
            y = y + self.b
        return self.activation(y)


class Conv2D(Module):
    """2-D convolution (cross-correlation), NCHW inputs, OIHW weight
    ``(out_channels, in_channels // groups, kh, kw)``, then bias and activation.
    ``padding``: int, pair, ``"valid"`` or ``"same"`` (stride 1)."""

    default_name = "conv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, activation=None, init="glorot_uniform",
                 bias_init="zeros", rng=None, dtype="float32", name=None):
        super().__init__(name)
        kh, kw = NN.pair(kernel_size, "Conv2D: kernel_size", 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2D: in_channels={in_channels} and out_channels={out_channels} must both be "
                             f"divisible by groups={groups}")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.padding, self.dilation = (kh, kw), stride, padding, dilation
        self.activation = get_activation(activation)
        rng = initializers.as_rng(rng)
        self.W = self.add_param("W", initializers.get(init)((out_channels, in_channels // groups, kh, kw), rng, dtype))
        self.b = self.add_param("b", initializers.get(bias_init)((out_channels,), rng, dtype)) if bias else None

    def forward(self, x, train):
        x = F.as_tensor(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.name}: expected NCHW inputs with {self.in_channels} channels, got {x.type}")
        y = NN.conv2d(x, self.W, self.stride, self.padding, self.dilation, self.groups)
        if self.b is not None:
            y = y + F.reshape(self.b, (1, self.out_channels, 1, 1))
        return self.activation(y)


class MaxPool2D(Module):
    default_name = "maxpool"

    def __init__(self, kernel_size=2, stride=None, padding=0, name=None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x, train):
        return NN.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2D(Module):
    default_name = "avgpool"

    def __init__(self, kernel_size=2, stride=None, padding=0, name=None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x, train):
        return NN.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    default_name = "flatten"

    def forward(self, x, train):
        x = F.as_tensor(x)
        return F.reshape(x, (x.shape[0], -1)) if x.ndim != 2 else x


class Activation(Module):
    default_name = "act"

    def __init__(self, fn, name=None):
        super().__init__(name)
        self.fn = get_activation(fn)

    def forward(self, x, train):
        return self.fn(x)


class ReLU(Activation):
    default_name = "relu"

    def __init__(self, name=None):
        super().__init__(relu, name)


class Tanh(Activation):
    default_name = "tanh"

    def __init__(self, name=None):
        super().__init__(tanh, name)


class Sigmoid(Activation):
    default_name = "sigmoid"

    def __init__(self, name=None):
        super().__init__(sigmoid, name)


class Softmax(Activation):
    default_name = "softmax"

    def __init__(self, axis=-1, name=None):
        super().__init__(lambda x: softmax(x, axis), name)


class LogSoftmax(Activation):
    default_name = "log_softmax"

    def __init__(self, axis=-1, name=None):
        super().__init__(lambda x: log_softmax(x, axis), name)


class LeakyReLU(Activation):
    default_name = "leaky_relu"

    def __init__(self, alpha=0.01, name=None):
        super().__init__(lambda x: leaky_relu(x, alpha), name)


class Lambda(Activation):
    """Wrap any ``fn(x) -> y`` of symbolic tensors as a layer."""

    default_name = "lambda"


class Dropout(Module):
    """Inverted dropout: in training, each element is kept with probability ``1 - p``
    and scaled by ``1 / (1 - p)``; at inference the identity.

    The mask comes from the counter-based generator seeded by a per-layer int64
    shared counter (initialised from ``seed``) whose ``default_update`` adds 1, so
    every call of a compiled training function draws a new mask without listing
    any update; each draw in one graph uses its own salt. ``seed`` defaults to a
    draw from ``symfuse.nn.init``'s default generator (reproducible per script)."""

    default_name = "dropout"

    def __init__(self, p: float = 0.5, seed: int | None = None, name=None):
        super().__init__(name)
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        if seed is None:
            seed = int(initializers.as_rng(None).integers(0, 2**31 - 1))
        self.seed = int(seed)
        self.counter = F.shared(np.int64(self.seed), name=f"{self.name}.rng_counter")
        self.counter.default_update = self.counter + 1
        # distinct salts for distinct layers, even if two counters ever meet
        self.stream = RandomStream(self.counter, salt=(self.seed * 2654435761 % 2**16) << 16)

    def forward(self, x, train):
        x = F.as_tensor(x)
        if not train or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = self.stream.bernoulli(keep, shape=x.shape, dtype=x.dtype.name)
        return x * mask * (1.0 / keep)


class BatchNorm(Module):
    """Batch normalisation over axis 1 (features of (N, C) or channels of (N, C, H, W)).

    train=True: normalise with the batch mean and (biased) variance, and record the
    updates ``running = (1 - momentum) * running + momentum * batch`` (the running
    variance uses the unbiased batch variance, as PyTorch does) in the call's
    ``updates``. train=False: normalise with the running statistics.
    """

    default_name = "bn"

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 dtype="float32", name=None):
        super().__init__(name)
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        c = self.num_features
        self.gamma = self.add_param("gamma", np.ones(c, dtype)) if affine else None
        self.beta = self.add_param("beta", np.zeros(c, dtype)) if affine else None
        self.running_mean = self.add_state("running_mean", np.zeros(c, dtype))
        self.running_var = self.add_state("running_var", np.ones(c, dtype))

    def forward(self, x, train):
        x = F.as_tensor(x)
        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"{self.name}: expected inputs (N, {self.num_features}, ...), got {x.type}")
        bshape = [1] * x.ndim
        bshape[1] = self.num_features
        axes = tuple(i for i in range(x.ndim) if i != 1)
        if train:
            mean = F.mean(x, axes, keepdims=True)
            centred = x - mean
            var = F.mean(centred * centred, axes, keepdims=True)
            n = x.size // self.num_features
            m = self.momentum
            bm, bv = F.reshape(mean, (self.num_features,)), F.reshape(var, (self.num_features,))
            unbiased = bv * (n / max(n - 1, 1))
            self.add_update(self.running_mean, self.running_mean * (1.0 - m) + bm * m)
            self.add_update(self.running_var, self.running_var * (1.0 - m) + unbiased * m)
            y = centred * F.rsqrt(var + self.eps)
        else:
            y = (x - F.reshape(self.running_mean, bshape)) * F.reshape(F.rsqrt(self.running_var + self.eps), bshape)
        if self.gamma is not None:
            y = y * F.reshape(self.gamma, bshape) + F.reshape(self.beta, bshape)
        return y


BatchNorm2D = BatchNorm
BatchNorm1D = BatchNorm


# --------------------------------------------------------------------------- containers
class Sequential(Module):
    """Layers applied in order. Children are named by their explicit ``name=`` or
    ``<kind><k>`` for the k-th layer of that kind (``conv0``, ``conv1``, ``dense0``,
    ``bn0``), so parameters are ``conv0.W``, ``dense1.b``, ...: names do not change
    when activation, pooling or dropout layers are added. ``model[i]`` is the i-th layer."""

    default_name = "sequential"

    def __init__(self, *layers, name=None):
        super().__init__(name)
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.layers: list[Module] = []
        for layer in layers:
            self.add(layer)

    def add(self, layer: Module) -> "Sequential":
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential: layers must be Modules, got {type(layer).__name__}")
        if layer._explicit_name:
            base = layer.name
        else:   # numbered per kind, so adding a dropout or activation layer renames nothing
            base = f"{layer.default_name}{sum(1 for c in self.layers if type(c) is type(layer) and not c._explicit_name)}"
        key, k = base, 1
        while key in self._children or key in self.__dict__:
            key, k = f"{base}_{k}", k + 1
        self._children[key] = layer
        self.layers.append(layer)
        self.named_variables()          # name the shared variables by their paths
        return self

    def __getitem__(self, i):
        """The i-th layer, or the layer named ``i`` (``model["dense1"]``)."""
        return self.submodule(i) if isinstance(i, str) else self.layers[i]

    def __setitem__(self, i, layer: Module) -> None:
        """Replace the i-th layer, or the layer named ``i``, keeping its name
        (``model[-1] = Dense(500, 5)`` gives a new ``dense1``); see :meth:`Module.replace`."""
        if isinstance(i, str):
            self.replace(i, layer)
            return
        old = self.layers[i]
        self.replace(next(k for k, c in self._children.items() if c is old), layer)

    def _replace_child(self, key, old, new) -> None:
        if not isinstance(new, Module):
            raise TypeError(f"Sequential: layers must be Modules, got {type(new).__name__}")
        super()._replace_child(key, old, new)
        self.layers[next(i for i, c in enumerate(self.layers) if c is old)] = new

    def pop(self) -> Module:
        """Remove and return the last layer (Keras's ``Sequential.pop``)."""
        if not self.layers:
            raise IndexError("Sequential.pop: the model has no layers")
        layer = self.layers.pop()
        key = next(k for k, c in self._children.items() if c is layer)
        del self._children[key]
        self.__dict__.pop(key, None)
        return layer

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x, train):
        for layer in self.layers:
            x = layer(x, train=train)
        return x


Model = Module
