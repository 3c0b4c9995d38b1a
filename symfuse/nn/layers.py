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
``(in, out)`` (``y = x @ W + b``).
"""
from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from typing import Callable, Iterable

import numpy as np

from ..frontend import api as F
from ..frontend import nn_api as NN
from ..frontend.random import RandomStream
from ..frontend.api import SharedVariable
from ..ir.core import Value
from . import init as initializers
from .errors import ModelFileError

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


# --------------------------------------------------------------------------- module machinery
class _CallContext:
    __slots__ = ("train", "updates")

    def __init__(self, train: bool):
        self.train = train
        self.updates: list[tuple[SharedVariable, Value]] = []


_local = threading.local()


def _stack() -> list:
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


class Module:
    """Base class of layers and models.

    Subclasses create variables with :meth:`add_param` / :meth:`add_state` in
    ``__init__``, assign sub-modules as attributes (they are registered in order),
    and implement ``forward(x, train)``. Parameters are named by their path:
    ``"conv0.W"``, ``"block.bn1.running_mean"``.
    """

    default_name = "module"

    def __init__(self, name: str | None = None):
        object.__setattr__(self, "_vars", {})
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "_explicit_name", name is not None)
        self.name = name if name is not None else self.default_name
        self.updates: list[tuple[SharedVariable, Value]] = []

    # ---- registration
    def __setattr__(self, key, value):
        if isinstance(value, Module) and "_children" in self.__dict__:
            self._children[key] = value
        object.__setattr__(self, key, value)

    def add_param(self, name: str, value, trainable: bool = True) -> SharedVariable:
        """Create a shared variable owned by this module (trainable -> in ``.params``)."""
        if not name or "." in name:
            raise ValueError(f"variable name must be non-empty and contain no '.', got {name!r}")
        if name in self._vars:
            raise ValueError(f"{type(self).__name__} already has a variable {name!r}")
        v = value if isinstance(value, SharedVariable) else F.shared(np.asarray(value), name=f"{self.name}.{name}")
        self._vars[name] = (v, trainable)
        return v

    def add_state(self, name: str, value) -> SharedVariable:
        """A non-trainable variable (saved and loaded, not optimised): running statistics."""
        return self.add_param(name, value, trainable=False)

    def children(self) -> dict[str, "Module"]:
        return dict(self._children)

    # ---- variables
    def _named(self, prefix: str, want) -> Iterable[tuple[str, SharedVariable]]:
        for n, (v, trainable) in self._vars.items():
            if want is None or want == trainable:
                yield prefix + n, v
        for cname, child in self._children.items():
            yield from child._named(f"{prefix}{cname}.", want)

    def _collect(self, want) -> dict[str, SharedVariable]:
        out: dict[str, SharedVariable] = {}
        seen: set[int] = set()
        for qname, v in self._named("", want):
            if id(v) in seen:        # a variable shared between two layers is listed once
                continue
            seen.add(id(v))
            v.name = qname
            out[qname] = v
        return out

    def named_variables(self) -> dict[str, SharedVariable]:
        """Every variable (parameters and state) by qualified name, in definition order."""
        return self._collect(None)

    def named_params(self) -> dict[str, SharedVariable]:
        """Trainable parameters by qualified name."""
        return self._collect(True)

    def named_state(self) -> dict[str, SharedVariable]:
        """Non-trainable state (BatchNorm running statistics) by qualified name."""
        return self._collect(False)

    @property
    def params(self) -> list[SharedVariable]:
        """Trainable parameters (shared variables named by their path), in definition order."""
        return list(self.named_params().values())

    @property
    def state(self) -> list[SharedVariable]:
        return list(self.named_state().values())

    def num_params(self) -> int:
        return int(sum(v.size for v in self.params))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every variable's value, by qualified name."""
        return {k: v.get_value() for k, v in self.named_variables().items()}

    def set_weights(self, weights: dict, strict: bool = True, source: str = "set_weights") -> None:
        """Set variables from a name -> array mapping; checks names and shapes first and
        changes nothing if any check fails."""
        own = self.named_variables()
        missing = [k for k in own if k not in weights]
        extra = [k for k in weights if k not in own]
        if strict and missing:
            raise ModelFileError(f"{source}: parameter {missing[0]!r} is missing"
                                 + (f" (all missing: {missing})" if len(missing) > 1 else "")
                                 + f"; it has {sorted(weights)}")
        if strict and extra:
            raise ModelFileError(f"{source}: unexpected parameter {extra[0]!r}"
                                 + (f" (all unexpected: {extra})" if len(extra) > 1 else "")
                                 + f"; the model has {list(own)}")
        staged = []
        for k, v in own.items():
            if k not in weights:
                continue
            a = np.asarray(weights[k])
            if a.shape != v.type.shape:
                raise ModelFileError(f"{source}: parameter {k!r} has shape {a.shape}, the model expects "
                                     f"{v.type.shape}")
            if not np.can_cast(a.dtype, v.type.dtype.np, casting="same_kind"):
                raise ModelFileError(f"{source}: parameter {k!r} has dtype {a.dtype}, which cannot be "
                                     f"stored in {v.type.dtype}")
            staged.append((v, a))
        for v, a in staged:
            v.set_value(a.astype(v.type.dtype.np))

    # ---- save / load
    def save(self, path) -> None:
        """Write every variable to an ``.npz`` file at exactly ``path`` (atomically)."""
        path = os.fspath(path)
        arrays = self.get_weights()
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ModelFileError(f"save: directory {directory!r} of {path!r} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=".symfuse-", suffix=".npz.tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load(self, path, strict: bool = True) -> None:
        """Read variables saved by :meth:`save`. With ``strict`` (the default), a name in
        the model but not the file, or in the file but not the model, is an error; a
        shape mismatch always is. Nothing is changed unless every check passes."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelFileError(f"load: model file {path!r} does not exist")
        if os.path.isdir(path):
            raise ModelFileError(f"load: {path!r} is a directory, not an .npz model file")
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ModelFileError(f"load: {path!r} holds a single .npy array, not an .npz archive "
                                     "of named parameters")
            with data:
                arrays = {k: data[k] for k in data.files}
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
            raise ModelFileError(f"load: {path!r} is not a valid .npz model file ({type(e).__name__}: {e})") from e
        self.set_weights(arrays, strict=strict, source=f"load {path!r}")

    # ---- calling
    def forward(self, x, train: bool):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, x, train: bool = False):
        stack = _stack()
        if stack:
            return self.forward(x, train)
        ctx = _CallContext(train)
        stack.append(ctx)
        try:
            y = self.forward(x, train)
        finally:
            stack.pop()
        self.updates = ctx.updates
        return y

    def apply(self, x, train: bool = False):
        """``(y, updates)``: the output and the state updates this call implies."""
        y = self(x, train=train)
        return y, list(self.updates)

    def add_update(self, shared: SharedVariable, expr: Value) -> None:
        """Record a state update from inside ``forward`` (a later update of the same
        variable in the same call replaces an earlier one)."""
        stack = _stack()
        target = stack[-1].updates if stack else self.updates
        for i, (s, _) in enumerate(target):
            if s is shared:
                target[i] = (shared, expr)
                return
        target.append((shared, expr))

    # ---- display
    def summary(self) -> str:
        lines = [f"{type(self).__name__} {self.name!r}"]
        total = 0
        for k, v in self.named_variables().items():
            kind = "param" if any(v is p for p in self.params) else "state"
            lines.append(f"  {k:32} {str(v.type.shape):18} {v.type.dtype!s:8} {kind}")
            total += v.size if kind == "param" else 0
        lines.append(f"  {total} trainable parameters")
        return "\n".join(lines)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


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
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x, train):
        for layer in self.layers:
            x = layer(x, train=train)
        return x


Model = Module
