"""``Module``, the base of every layer and model (``layers.py``): the shared
variables it owns (parameters, and state such as BatchNorm's running
statistics), its sub-modules, saving and loading them, and the call protocol:
``model(x, train)`` builds a graph and records the state updates it implies in
``model.updates`` (see ``layers.py``)."""
from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from typing import Iterable

import numpy as np

from ..frontend import api as F
from ..frontend.api import SharedVariable
from ..ir.core import Value
from .errors import ModelFileError


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
