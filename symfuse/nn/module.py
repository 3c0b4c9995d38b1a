"""``Module``, the base of every layer and model (``layers.py``): the shared
variables it owns (parameters, and state such as BatchNorm's running
statistics), its sub-modules, saving and loading them, and the call protocol:
``model(x, train)`` builds a graph and records the state updates it implies in
``model.updates`` (see ``layers.py``).

Transfer learning: ``module.freeze()`` (or ``module.trainable = False``) takes a
module's parameters, recursively, out of ``params`` -- what optimisers and
``fit`` train -- while ``named_variables``, ``save`` and ``load`` keep them;
``freeze("conv0", "dense1.b")`` freezes sub-modules or single parameters by
path. ``replace("dense1", Dense(...))`` (or assigning a new layer to the child's
attribute) swaps a sub-module, keeping its name."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import zipfile

import numpy as np

from ..frontend import api as F
from ..frontend.api import SharedVariable
from ..ir.core import Value, layer_scope
from .errors import ModelFileError


class _CallContext:
    __slots__ = ("train", "updates")

    def __init__(self, train: bool):
        self.train = train
        self.updates: list[tuple[SharedVariable, Value]] = []


_local = threading.local()


def _construction_site(module) -> tuple[str, int]:
    """(file, line) of the code that constructed ``module``: the first frame that is not
    one of its own ``__init__`` methods (a subclass's, then Module's)."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_name == "__init__" and f.f_locals.get("self") is module:
        f = f.f_back
    return (f.f_code.co_filename, f.f_lineno) if f is not None else ("?", 0)


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
        object.__setattr__(self, "_vars", {})           # name -> (shared, is_param)
        object.__setattr__(self, "_frozen", set())      # names of own parameters left out of .params
        object.__setattr__(self, "_trainable", True)
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "_explicit_name", name is not None)
        object.__setattr__(self, "_defined_at", _construction_site(self))
        self.name = name if name is not None else self.default_name
        self.updates: list[tuple[SharedVariable, Value]] = []

    # ---- registration
    def __setattr__(self, key, value):
        children = self.__dict__.get("_children")
        if children is not None:
            if isinstance(value, Module):
                old = children.get(key)
                if old is not None and old is not value:
                    self._replace_child(key, old, value)   # Sequential keeps its layer list in step
                children[key] = value          # a new name is appended; an existing one keeps its place
            elif key in children and value is None:
                del children[key]              # PyTorch's ``model.fc = None``: no longer a child
        object.__setattr__(self, key, value)

    def __getattr__(self, key):
        # only reached when ordinary lookup fails: children registered without an
        # attribute (Sequential's ``conv0``, ``dense1``) are reachable as attributes too
        children = self.__dict__.get("_children")
        if children is not None and key in children:
            return children[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def add_param(self, name: str, value, trainable: bool = True) -> SharedVariable:
        """Create a shared variable owned by this module (trainable -> in ``.params``)."""
        if not name or "." in name:
            raise ValueError(f"variable name must be non-empty and contain no '.', got {name!r}")
        if name in self._vars:
            raise ValueError(f"{type(self).__name__} already has a variable {name!r}")
        v = value if isinstance(value, SharedVariable) else F.shared(np.asarray(value), name=f"{self.name}.{name}")
        self._vars[name] = (v, trainable)
        if trainable and not self._trainable:
            self._frozen.add(name)     # a parameter added to a frozen module starts frozen
        return v

    def add_state(self, name: str, value) -> SharedVariable:
        """A non-trainable variable (saved and loaded, not optimised): running statistics."""
        return self.add_param(name, value, trainable=False)

    def children(self) -> dict[str, "Module"]:
        return dict(self._children)

    # ---- variables
    def _entries(self, prefix: str = ""):
        """(qualified name, owning module, local name, shared, kind) for every variable,
        depth first in definition order; kind is "param", "frozen" or "state"."""
        for n, (v, is_param) in self._vars.items():
            kind = ("frozen" if n in self._frozen else "param") if is_param else "state"
            yield prefix + n, self, n, v, kind
        for cname, child in self._children.items():
            object.__setattr__(child, "_path", f"{prefix}{cname}")     # the name provenance shows
            yield from child._entries(f"{prefix}{cname}.")

    def _collect(self, kinds) -> dict[str, SharedVariable]:
        entries = list(self._entries())
        frozen = {id(v) for *_, v, kind in entries if kind == "frozen"}
        out: dict[str, SharedVariable] = {}
        seen: set[int] = set()
        for qname, _, _, v, kind in entries:
            if id(v) in seen:        # a variable shared between two layers is listed once
                continue
            seen.add(id(v))
            v.name = qname
            if kind == "param" and id(v) in frozen:     # frozen where any owner froze it
                kind = "frozen"
            if kinds is None or kind in kinds:
                out[qname] = v
        return out

    def named_variables(self) -> dict[str, SharedVariable]:
        """Every variable (parameters, frozen or not, and state) by qualified name, in
        definition order: what :meth:`save` writes."""
        return self._collect(None)

    def named_params(self) -> dict[str, SharedVariable]:
        """Trainable parameters (not frozen) by qualified name."""
        return self._collect(("param",))

    def named_frozen(self) -> dict[str, SharedVariable]:
        """Frozen parameters (see :meth:`freeze`) by qualified name."""
        return self._collect(("frozen",))

    def named_state(self) -> dict[str, SharedVariable]:
        """Non-trainable state (BatchNorm running statistics) by qualified name."""
        return self._collect(("state",))

    @property
    def params(self) -> list[SharedVariable]:
        """Trainable parameters (shared variables named by their path), in definition
        order; frozen parameters are left out."""
        return list(self.named_params().values())

    @property
    def state(self) -> list[SharedVariable]:
        return list(self.named_state().values())

    def named_counters(self) -> dict[str, SharedVariable]:
        """Shared variables a module holds as attributes, outside its variables, that
        advance themselves on every call (a ``default_update``: Dropout's and the RBM's
        random counters), by path (``"dropout0.counter"``). Checkpoints save them so
        that a resumed run draws the same masks."""
        out: dict[str, SharedVariable] = {}
        seen: set[int] = set()
        for path, m in self.named_modules().items():
            owned = {id(v) for v, _ in m._vars.values()}
            for attr, v in vars(m).items():
                if (isinstance(v, SharedVariable) and v.default_update is not None and id(v) not in owned
                        and id(v) not in seen):
                    seen.add(id(v))
                    out[f"{path}.{attr}" if path else attr] = v
        return out

    # ---- sub-modules, freezing, replacing
    def named_modules(self, prefix: str = "") -> dict[str, "Module"]:
        """This module (``""``) and every sub-module by path, depth first."""
        out = {prefix: self}
        for cname, child in self._children.items():
            out.update(child.named_modules(f"{prefix}.{cname}" if prefix else cname))
        return out

    def submodule(self, path: str) -> "Module":
        """The sub-module at a dotted path (``"block.conv1"``)."""
        m = self
        for i, part in enumerate(path.split(".")):
            if part not in m._children:
                where = ".".join(path.split(".")[:i]) or "the model"
                raise KeyError(f"{type(self).__name__} {self.name!r}: no sub-module {path!r} "
                               f"({where} has {list(m._children) or 'no sub-modules'})")
            m = m._children[part]
        return m

    def replace(self, path: str, new: "Module") -> "Module":
        """Put ``new`` in place of the sub-module at ``path`` (``"dense1"``,
        ``"block.head"``), under the same name and at the same position, and return
        the old one: a new classification head for fine-tuning. Its variables are
        renamed by their new paths (``dense1.W``); compile the training step afterwards."""
        if not isinstance(new, Module):
            raise TypeError(f"replace: the new layer must be a Module, got {type(new).__name__}")
        parent_path, _, key = path.rpartition(".")
        parent = self.submodule(parent_path) if parent_path else self
        old = self.submodule(path)
        parent._replace_child(key, old, new)
        self.named_variables()          # name the new variables by their paths
        return old

    def _replace_child(self, key: str, old: "Module", new: "Module") -> None:
        self._children[key] = new
        if self.__dict__.get(key) is old:
            object.__setattr__(self, key, new)

    def freeze(self, *paths: str) -> "Module":
        """Leave parameters out of :attr:`params` (so optimisers and ``fit`` do not
        train them); they are still saved, loaded and used. No argument: every
        parameter of this module and its sub-modules (``trainable = False``).
        ``paths``: sub-modules (``"conv0"``, ``"backbone"``) or single parameters
        (``"dense1.b"``). Returns the module. Build the training step after freezing:
        a compiled step trains what ``params`` held when it was built."""
        self._set_frozen(paths, True)
        return self

    def unfreeze(self, *paths: str) -> "Module":
        """Undo :meth:`freeze` (same arguments): the parameters are trained again."""
        self._set_frozen(paths, False)
        return self

    @property
    def trainable(self) -> bool:
        """False after ``freeze()`` (with no paths) of this module or a module above
        it, or ``trainable = False``; setting it freezes or unfreezes the module
        recursively, as in Keras."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._set_frozen((), not bool(value))

    def is_frozen(self, path: str) -> bool:
        """Whether the parameter at ``path`` is frozen."""
        entries = {q: kind for q, _, _, _, kind in self._entries()}
        if path not in entries or entries[path] == "state":
            raise KeyError(f"{type(self).__name__} {self.name!r}: no parameter {path!r}; it has "
                           f"{[q for q, k in entries.items() if k != 'state']}")
        return path in self.named_frozen()

    def _set_frozen(self, paths, frozen: bool) -> None:
        modules = self.named_modules()
        entries = [e for e in self._entries() if e[4] != "state"]
        if not paths:
            targets, flagged = entries, list(modules.values())
        else:
            targets, flagged = [], []
            for path in paths:
                hit = [e for e in entries if e[0] == path or e[0].startswith(path + ".")]
                if path in modules:
                    flagged += [m for p, m in modules.items() if p == path or p.startswith(path + ".")]
                elif not hit:
                    state = [q for q, *_, kind in self._entries() if kind == "state" and q == path]
                    why = "is state, not a parameter" if state else "is neither a sub-module nor a parameter"
                    raise KeyError(f"{'freeze' if frozen else 'unfreeze'}: {path!r} {why} of "
                                   f"{type(self).__name__} {self.name!r}; sub-modules: "
                                   f"{[p for p in modules if p]}, parameters: {[e[0] for e in entries]}")
                targets += hit
        for m in flagged:
            object.__setattr__(m, "_trainable", not frozen)
        for _, owner, local, _, _ in targets:
            (owner._frozen.add if frozen else owner._frozen.discard)(local)

    def num_params(self) -> int:
        return int(sum(v.size for v in self.params))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every variable's value, by qualified name."""
        return {k: v.get_value() for k, v in self.named_variables().items()}

    def set_weights(self, weights: dict, strict: bool = True, source: str = "set_weights") -> None:
        """Set variables from a name -> array mapping; checks names and shapes first and
        changes nothing if any check fails."""
        assign(stage(self.named_variables(), weights, strict, source))

    # ---- save / load
    def save(self, path) -> None:
        """Write every variable to an ``.npz`` file at exactly ``path`` (atomically)."""
        write_npz(path, self.get_weights(), "save")

    def load(self, path, strict: bool = True) -> None:
        """Read variables saved by :meth:`save`. With ``strict`` (the default), a name in
        the model but not the file, or in the file but not the model, is an error; a
        shape mismatch always is. Nothing is changed unless every check passes."""
        arrays = read_npz(path, "load", "model file")
        self.set_weights(arrays, strict=strict, source=f"load {os.fspath(path)!r}")

    # ---- calling
    def forward(self, x, train: bool):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, x, train: bool = False):
        file, line = self.__dict__.get("_defined_at") or ("?", 0)
        # every op the layer builds names it and where it was defined (provenance)
        label = self.__dict__.get("_path") or self.name
        with layer_scope(f"{type(self).__name__} {label!r} ({os.path.basename(file)}:{line})"):
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
        total = frozen_total = 0
        params, frozen = self.named_params(), self.named_frozen()
        for k, v in self.named_variables().items():
            kind = "param" if k in params else "frozen" if k in frozen else "state"
            lines.append(f"  {k:32} {str(v.type.shape):18} {v.type.dtype!s:8} {kind}")
            total += v.size if kind == "param" else 0
            frozen_total += v.size if kind == "frozen" else 0
        lines.append(f"  {total} trainable parameters" + (f", {frozen_total} frozen" if frozen_total else ""))
        return "\n".join(lines)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


# --------------------------------------------------------------------------- staged assignment
def stage(own: dict, arrays: dict, strict: bool = True, source: str = "set_weights", what: str = "parameter",
          holder: str = "the model") -> list[tuple[SharedVariable, np.ndarray]]:
    """Check ``arrays`` (name -> array) against the shared variables ``own`` (name ->
    shared): with ``strict``, a name on one side only is an error; a shape, or a dtype
    that cannot be stored, always is. Returns the ``(shared, array)`` pairs for
    :func:`assign`, so that several groups are checked before any is changed."""
    missing = [k for k in own if k not in arrays]
    extra = [k for k in arrays if k not in own]
    if strict and missing:
        raise ModelFileError(f"{source}: {what} {missing[0]!r} is missing"
                             + (f" (all missing: {missing})" if len(missing) > 1 else "")
                             + f"; it has {sorted(arrays)}")
    if strict and extra:
        raise ModelFileError(f"{source}: unexpected {what} {extra[0]!r}"
                             + (f" (all unexpected: {extra})" if len(extra) > 1 else "")
                             + f"; {holder} has {list(own)}")
    staged = []
    for k, v in own.items():
        if k not in arrays:
            continue
        a = np.asarray(arrays[k])
        if a.shape != v.type.shape:
            raise ModelFileError(f"{source}: {what} {k!r} has shape {a.shape}, {holder} expects {v.type.shape}")
        if not np.can_cast(a.dtype, v.type.dtype.np, casting="same_kind"):
            raise ModelFileError(f"{source}: {what} {k!r} has dtype {a.dtype}, which cannot be "
                                 f"stored in {v.type.dtype}")
        staged.append((v, a))
    return staged


def assign(staged) -> None:
    for v, a in staged:
        v.set_value(a.astype(v.type.dtype.np))


# --------------------------------------------------------------------------- .npz files
def write_npz(path, arrays: dict, what: str = "save") -> None:
    """Write named arrays to an ``.npz`` file at exactly ``path``, atomically (a
    temporary file in the same directory, then renamed)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ModelFileError(f"{what}: directory {directory!r} of {path!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".symfuse-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_npz(path, what: str = "load", kind: str = "model file") -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file (never unpickling: object arrays are
    refused), with a :class:`ModelFileError` naming the file for anything else."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{what}: {kind} {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"{what}: {path!r} is a directory, not an .npz {kind}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{what}: {path!r} holds a single .npy array, not an .npz archive "
                                 "of named arrays")
        with data:
            return {k: data[k] for k in data.files}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ModelFileError(f"{what}: {path!r} is not a valid .npz {kind} ({type(e).__name__}: {e})") from e
