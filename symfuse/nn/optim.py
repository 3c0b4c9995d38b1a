"""Optimisers as update rules (Theano/Lasagne style).

``opt.updates(loss_or_grads, params)`` returns ``[(shared, new_value_expr), ...]``
for ``sf.function(..., updates=...)``: the parameter updates plus the updates of
the optimiser's own state, which it creates as shared variables (velocities,
moments, the step counter) at that call and lists in ``opt.state``.

``loss_or_grads`` is a scalar loss (gradients are taken with ``sf.grad``) or a
list of gradient expressions, one per parameter. ``params`` is a list of shared
variables, a ``{name: shared}`` dict, or a :class:`~symfuse.nn.layers.Module`
(its trainable ``params``). ``lr`` may be a float or a scalar shared variable (for
schedules: ``lr.set_value(...)`` between calls).

The formulas are PyTorch's (written out in each class), so results match
``torch.optim`` step for step.

``opt.state_dict(names)`` / ``opt.load_state_dict(arrays, names)`` read and write
that state by parameter name (``"dense0.W/m"``, ``"step"``), for checkpoints that
resume training exactly (:func:`symfuse.nn.train.save_checkpoint`).
"""
from __future__ import annotations


import numbers

import numpy as np

from .. import distributed as _dist
from ..frontend import api as F
from ..frontend.api import SharedVariable
from ..ir.core import Value, layer_scope


def _params(params) -> list[SharedVariable]:
    if hasattr(params, "params") and not isinstance(params, (list, tuple, dict)):
        params = params.params
    elif isinstance(params, dict):
        params = list(params.values())
    elif isinstance(params, SharedVariable):
        params = [params]
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, SharedVariable):
            raise TypeError(f"optimiser: parameter {i} must be a shared variable, got {p!r}")
        if not p.dtype.is_float:
            raise TypeError(f"optimiser: parameter {p.name or i} has dtype {p.dtype}; only float "
                            "parameters can be optimised")
    if len({id(p) for p in params}) != len(params):
        raise ValueError("optimiser: a parameter is listed twice")
    return params


class Optimizer:
    transformed = False           # its gradients were averaged across ranks (distributed.data_parallel)

    def __init__(self, lr):
        if isinstance(lr, numbers.Real) and lr <= 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0, got {lr!r}")
        self.lr = lr
        self.state: list[SharedVariable] = []
        # (parameter or None for a global counter, what, shared): the state by meaning
        self.slots: list[tuple[SharedVariable | None, str, SharedVariable]] = []

    # ---- helpers
    def _grads(self, loss_or_grads, params):
        if isinstance(loss_or_grads, (list, tuple)):
            grads = [F.as_tensor(g) for g in loss_or_grads]
            if len(grads) != len(params):
                raise ValueError(f"{type(self).__name__}.updates: {len(grads)} gradients for "
                                 f"{len(params)} parameters")
            for g, p in zip(grads, params):
                if g.type is not p.type:
                    raise ValueError(f"{type(self).__name__}.updates: gradient {g.type} does not match "
                                     f"parameter {p.name} {p.type}")
            return grads
        if not isinstance(loss_or_grads, Value):
            raise TypeError(f"{type(self).__name__}.updates: expected a scalar loss or a list of gradients, "
                            f"got {type(loss_or_grads).__name__}")
        return F.grad(loss_or_grads, params)

    def _slot(self, p: SharedVariable, what: str) -> SharedVariable:
        s = F.shared(np.zeros(p.type.shape, p.type.dtype.np), name=f"{p.name or 'param'}.{what}")
        self.state.append(s)
        self.slots.append((p, what, s))
        return s

    def _counter(self, what: str) -> SharedVariable:
        s = F.shared(np.int32(0), name=f"{type(self).__name__.lower()}.{what}")
        self.state.append(s)
        self.slots.append((None, what, s))
        return s

    def _lr(self, p):
        return self._scalar(self.lr, p)

    @staticmethod
    def _scalar(v, p):
        if isinstance(v, Value):
            return F.cast(v, p.dtype)
        return float(v)

    def reset(self) -> None:
        """Zero every state variable (velocities, moments, step counters)."""
        for s in self.state:
            s.set_value(np.zeros(s.type.shape, s.type.dtype.np))

    # ---- state by name (checkpoints)
    def named_state(self, names: dict | None = None) -> dict[str, SharedVariable]:
        """The optimiser's state by name: ``"<param>/<what>"`` for a parameter's slot
        (``"dense0.W/velocity"``, ``"conv0.b/m"``), ``"<what>"`` for a global counter
        (Adam's ``"step"``) and ``"lr"`` when the learning rate is a shared variable.
        A parameter is named by ``names`` (``id(shared) -> name``, e.g. from a model's
        ``named_variables``) or else its own name. A slot made twice (``updates``
        called twice for one parameter) gets ``.1``, ``.2`` ... in creation order."""
        names = names or {}
        out: dict[str, SharedVariable] = {}
        for p, what, s in self.slots:
            if p is None:
                base = what
            else:
                pname = names.get(id(p)) or p.name
                if not pname:
                    raise ValueError(f"{type(self).__name__}.named_state: a parameter of shape {p.type.shape} "
                                     "has no name; pass names={id(shared): name}")
                base = f"{pname}/{what}"
            key, k = base, 1
            while key in out:
                key, k = f"{base}.{k}", k + 1
            out[key] = s
        if isinstance(self.lr, SharedVariable):
            out["lr"] = self.lr
        return out

    def state_dict(self, names: dict | None = None) -> dict[str, np.ndarray]:
        """Copies of :meth:`named_state`'s values."""
        return {k: s.get_value() for k, s in self.named_state(names).items()}

    def load_state_dict(self, arrays: dict, names: dict | None = None, strict: bool = True,
                        source: str = "load_state_dict") -> None:
        """Set the state from :meth:`state_dict`'s arrays. The state exists once the
        training step is built (``updates`` was called): build it first. Names and
        shapes are checked before anything changes; with ``strict``, a name on one
        side only is an error."""
        from .module import assign
        assign(self.stage_state(arrays, names, strict, source))

    def stage_state(self, arrays: dict, names: dict | None = None, strict: bool = True,
                    source: str = "load_state_dict") -> list:
        """:meth:`load_state_dict`'s checks: the ``(shared, array)`` pairs it would set."""
        from .errors import ModelFileError
        from .module import stage
        own = self.named_state(names)
        kind = type(self).__name__
        if strict and arrays and not own:
            raise ModelFileError(f"{source}: the {kind} optimiser has no state yet and the file has "
                                 f"{sorted(arrays)[:4]}...; build the training step first (opt.updates(...), a "
                                 "zoo model, or finetune.classifier), then load")
        return stage(own, arrays, strict, source, what=f"{kind} state", holder="the optimiser")

    def config(self) -> dict:
        """The hyperparameters (JSON-friendly; a shared ``lr`` is given by its value)."""
        out = {k: v for k, v in vars(self).items() if k not in ("state", "slots", "lr")}
        lr = self.lr
        out["lr"] = (float(lr.get_value()) if isinstance(lr, SharedVariable)
                     else float(lr) if isinstance(lr, numbers.Real) else repr(lr))
        return out

    def updates(self, loss_or_grads, params) -> list[tuple[SharedVariable, Value]]:
        params = _params(params)
        grads = self._grads(loss_or_grads, params)
        transform = _dist.gradient_transform()
        if transform is not None:
            grads = transform(grads)
            self.transformed = True
        with layer_scope(f"{type(self).__name__} update"):      # provenance of the update kernels
            return self._updates(params, grads)

    def _updates(self, params, grads):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight
    decay::

        g = grad + weight_decay * p
        v = momentum * v + g                       (momentum > 0)
        step = g + momentum * v if nesterov else v (or g without momentum)
        p = p - lr * step
    """

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(lr)
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def _updates(self, params, grads):
        ups = []
        for p, g in zip(params, grads):
            if self.weight_decay:
                g = g + p * self.weight_decay
            step = g
            if self.momentum:
                v = self._slot(p, "velocity")
                v_new = v * self.momentum + g
                ups.append((v, v_new))
                step = g + v_new * self.momentum if self.nesterov else v_new
            ups.append((p, p - self._lr(p) * step))
        return ups


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 weight decay added to the gradient, or decoupled
    weight decay (AdamW) with ``decoupled=True``::

        t = t + 1;   g = grad (+ weight_decay * p unless decoupled)
        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g**2
        p = p - lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)  (- lr * weight_decay * p if decoupled)
    """

    def __init__(self, lr=0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled: bool = False):
        super().__init__(lr)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"Adam: b1 and b2 must be in [0, 1), got {b1}, {b2}")
        self.b1, self.b2, self.eps = float(b1), float(b2), float(eps)
        self.weight_decay, self.decoupled = float(weight_decay), bool(decoupled)

    def _updates(self, params, grads):
        t = self._counter("step")
        t_new = t + 1
        ups = [(t, t_new)]
        for p, g in zip(params, grads):
            if self.weight_decay and not self.decoupled:
                g = g + p * self.weight_decay
            m, v = self._slot(p, "m"), self._slot(p, "v")
            m_new = m * self.b1 + g * (1.0 - self.b1)
            v_new = v * self.b2 + g * g * (1.0 - self.b2)
            tf = F.cast(t_new, p.dtype)
            bc1 = 1.0 - F.power(self.b1, tf)
            bc2 = 1.0 - F.power(self.b2, tf)
            lr = self._lr(p)
            step = (m_new / bc1) / (F.sqrt(v_new / bc2) + self.eps)
            new_p = p - lr * step
            if self.weight_decay and self.decoupled:
                new_p = new_p - lr * self.weight_decay * p
            ups += [(m, m_new), (v, v_new), (p, new_p)]
        return ups


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01)."""

    def __init__(self, lr=0.001, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, b1, b2, eps, weight_decay, decoupled=True)


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton), PyTorch's formulation::

        g = grad + weight_decay * p
        s = rho * s + (1 - rho) * g**2
        step = g / (sqrt(s) + eps)
        buf = momentum * buf + step; step = buf          (momentum > 0)
        p = p - lr * step

    (``rho`` is PyTorch's ``alpha``; the default 0.9 is Keras's and Hinton's.)"""

    def __init__(self, lr=0.001, rho: float = 0.9, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(lr)
        if not 0 <= rho < 1:
            raise ValueError(f"RMSProp: rho must be in [0, 1), got {rho}")
        self.rho, self.eps, self.momentum, self.weight_decay = float(rho), float(eps), float(momentum), float(weight_decay)

    def _updates(self, params, grads):
        ups = []
        for p, g in zip(params, grads):
            if self.weight_decay:
                g = g + p * self.weight_decay
            s = self._slot(p, "sq_avg")
            s_new = s * self.rho + g * g * (1.0 - self.rho)
            ups.append((s, s_new))
            step = g / (F.sqrt(s_new) + self.eps)
            if self.momentum:
                b = self._slot(p, "momentum_buffer")
                b_new = b * self.momentum + step
                ups.append((b, b_new))
                step = b_new
            ups.append((p, p - self._lr(p) * step))
        return ups


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSProp}


def get(opt, **kw) -> Optimizer:
    """An optimiser instance from an instance, or a name with keyword arguments."""
    if isinstance(opt, Optimizer):
        return opt
    try:
        return OPTIMIZERS[str(opt).lower()](**kw)
    except KeyError:
        raise ValueError(f"unknown optimiser {opt!r}; known: {sorted(OPTIMIZERS)}") from None
