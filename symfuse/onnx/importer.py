"""ONNX graph -> symfuse graph: each node through its converter (``registry``), in
file order, with values looked up through nested scopes (If/Loop/Scan bodies see
the names of the graphs around them).

Values are symfuse ``Value``s. Initializers become shared variables when a
converter uses them as tensors (so the model can be trained) and stay numpy arrays
when a converter needs them at import time (a Reshape's shape, a Pad's widths);
integer initializers are constants. ``Node.static`` also evaluates a value computed
only from constants (a Shape -> Gather -> Concat chain), so shape arithmetic in the
graph becomes literal attributes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SymfuseError, VerifyError
from ..ir.core import Function, Value, location
from .errors import OnnxError, OnnxNeedsConstant, OnnxUnsupported
from .registry import lookup

# ONNX TensorProto element types symfuse represents exactly
DTYPES = {1: "float32", 10: "float16", 11: "float64", 6: "int32", 7: "int64", 9: "bool",
          3: "int8", 5: "int16", 2: "uint8", 12: "uint32", 13: "uint64"}


def dtype_name(code: int) -> str:
    import onnx
    try:
        return onnx.TensorProto.DataType.Name(code).lower()
    except ValueError:
        return f"element type {code}"


def symfuse_dtype(code: int, what: str) -> str:
    if code not in DTYPES:
        raise OnnxUnsupported(f"{what}: dtype {dtype_name(code)} is not supported (symfuse has "
                              f"{', '.join(sorted(set(DTYPES.values())))})", reason=f"dtype {dtype_name(code)}")
    return DTYPES[code]


class Scope:
    """Names visible in one graph: its own values and initializers, then its parent's."""

    __slots__ = ("env", "inits", "parent")

    def __init__(self, parent: "Scope | None" = None):
        self.env: dict[str, Value] = {}
        self.inits: dict[str, np.ndarray] = {}
        self.parent = parent

    def find(self, name: str):
        s = self
        while s is not None:
            if name in s.env:
                return s.env[name], None
            if name in s.inits:
                return None, s.inits[name]
            s = s.parent
        raise KeyError(name)


class Node:
    """One ONNX node as its converter sees it."""

    __slots__ = ("proto", "index", "imp", "scope", "op_type", "name", "opset", "_attrs")

    def __init__(self, proto, index: int, imp: "Importer", scope: Scope):
        self.proto, self.index, self.imp, self.scope = proto, index, imp, scope
        self.op_type, self.name = proto.op_type, proto.name
        self.opset = imp.opset
        self._attrs = None

    # -------------------------------------------------------------- description
    @property
    def where(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"{self.imp.label}: node {self.index}{label} ({self.op_type})"

    def fail(self, msg: str):
        raise OnnxError(f"{self.where}: {msg}")

    def unsupported(self, what: str, reason: str | None = None):
        raise OnnxUnsupported(f"{self.where}: {what} is not supported", self.op_type,
                              reason or f"{self.op_type}: {what}")

    # -------------------------------------------------------------- attributes
    @property
    def attrs(self) -> dict:
        if self._attrs is None:
            from onnx import helper, numpy_helper
            out = {}
            for a in self.proto.attribute:
                if a.ref_attr_name:
                    self.unsupported(f"attribute {a.name!r} referring to a function attribute")
                v = helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "replace")
                elif isinstance(v, list) and v and isinstance(v[0], bytes):
                    v = [s.decode("utf-8", "replace") for s in v]
                elif a.type == a.TENSOR:
                    v = numpy_helper.to_array(v)
                out[a.name] = v
            self._attrs = out
        return self._attrs

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    # -------------------------------------------------------------- inputs and outputs
    @property
    def n_inputs(self) -> int:
        return len(self.proto.input)

    @property
    def n_outputs(self) -> int:
        return len(self.proto.output)

    def has(self, i: int) -> bool:
        """Whether optional input ``i`` is given (present and not the empty name)."""
        return i < len(self.proto.input) and bool(self.proto.input[i])

    def wants(self, i: int) -> bool:
        """Whether optional output ``i`` is used."""
        return i < len(self.proto.output) and bool(self.proto.output[i])

    def _find(self, i: int):
        if not self.has(i):
            self.fail(f"input {i} is required")
        name = self.proto.input[i]
        try:
            return name, *self.scope.find(name)
        except KeyError:
            self.fail(f"input {i} {name!r} is not defined (no graph input, initializer or earlier node produces it)")

    def value(self, i: int) -> Value:
        """Input ``i`` as a symfuse value (an initializer becomes a trainable shared
        variable if it is floating point, a constant otherwise)."""
        name, v, arr = self._find(i)
        return v if v is not None else self.imp.initializer_value(name, arr)

    def values(self, start: int = 0) -> list[Value]:
        return [self.value(i) for i in range(start, self.n_inputs) if self.has(i)]

    def static(self, i: int) -> np.ndarray:
        """Input ``i``'s value at import time, or an error saying why it is not known."""
        name, v, arr = self._find(i)
        if v is None:
            return arr
        return self.imp.evaluate(v, f"{self.where}: input {i} {name!r}")

    def is_static(self, i: int) -> bool:
        try:
            self.static(i)
            return True
        except OnnxNeedsConstant:
            return False

    def ints(self, i: int) -> list[int] | None:
        """An optional integer-list input (axes, pads, shapes, repeats) as Python ints."""
        return [int(x) for x in self.static(i).reshape(-1)] if self.has(i) else None

    def subgraph(self, attr: str, inputs: Sequence[Value]) -> list[Value]:
        """Convert graph attribute ``attr`` with its inputs bound to ``inputs``; its
        outputs as values. Names of the enclosing graphs stay visible (captures)."""
        g = self.attrs.get(attr)
        if g is None:
            self.fail(f"graph attribute {attr!r} is required")
        if len(g.input) != len(inputs):
            self.fail(f"body {attr!r} takes {len(g.input)} inputs, the op gives it {len(inputs)}")
        scope = Scope(self.scope)
        for inp, v in zip(g.input, inputs):
            scope.env[inp.name] = v
        return self.imp.convert_graph(g, scope)


class Importer:
    """Converts one model's graph; ``params`` collects the shared variables made."""

    def __init__(self, model, label: str, shapes: dict | None = None, constants: dict | None = None,
                 base_dir: str | None = None):
        self.model, self.label = model, label
        self.shapes = dict(shapes or {})
        self.constants = {k: np.asarray(v) for k, v in (constants or {}).items()}
        self.base_dir = base_dir
        self.params: dict[str, Value] = {}
        self._static: dict[int, np.ndarray] = {}
        self.opset = default_opset(model)

    # -------------------------------------------------------------- values
    def initializer_value(self, name: str, arr: np.ndarray) -> Value:
        from ..frontend import api as F
        if arr.dtype.kind == "f":
            p = self.params.get(name)
            if p is None:
                p = self.params[name] = F.shared(arr, name=name)
            return p
        return F.constant(arr)

    def evaluate(self, v: Value, what: str) -> np.ndarray:
        """The value of ``v`` if it depends on constants only."""
        if v.op is not None and v.op.opdef.name == "constant":
            return v.op.attrs["value"]
        got = self._static.get(v.id)
        if got is not None:
            return got
        from ..ir.evaluate import evaluate
        try:
            fn = Function([], [v])
        except VerifyError:
            raise OnnxNeedsConstant(f"{what} must be known when the model is imported, but it is computed from "
                                    f"{', '.join(repr(n) for n in _free_names(v)) or 'run-time values'}; pass its "
                                    "value with load(..., constants={name: array})",
                                    next(iter(_free_names(v)), "")) from None
        got = self._static[v.id] = evaluate(fn, [])[0]
        return got

    # -------------------------------------------------------------- graphs
    def convert_graph(self, graph, scope: Scope) -> list[Value]:
        for t in graph.initializer:
            scope.inits[t.name] = self.tensor_array(t)
        for t in graph.sparse_initializer:
            raise OnnxUnsupported(f"{self.label}: sparse initializer {t.values.name!r} is not supported",
                                  reason="sparse initializers")
        for i, proto in enumerate(graph.node):
            self.convert_node(Node(proto, i, self, scope))
        outs = []
        for o in graph.output:
            try:
                v, arr = scope.find(o.name)
            except KeyError:
                raise OnnxError(f"{self.label}: graph output {o.name!r} is not produced by any node") from None
            outs.append(v if v is not None else self.initializer_value(o.name, arr))
        return outs

    def convert_node(self, node: Node) -> None:
        proto = node.proto
        rule = lookup(proto.domain, proto.op_type)
        if rule is None:
            dom = f" of domain {proto.domain!r}" if proto.domain not in ("", "ai.onnx") else ""
            raise OnnxUnsupported(f"{node.where}: op {proto.op_type}{dom} is not supported", proto.op_type,
                                  f"op {proto.op_type}{dom}")
        if self.opset < rule.since:
            node.unsupported(f"opset {self.opset} (the rule follows opset {rule.since} and later)",
                             f"{proto.op_type} before opset {rule.since}")
        with location((self.label, node.index + 1)):
            try:
                out = rule.fn(node)
            except OnnxError:
                raise
            except SymfuseError as e:
                raise OnnxError(f"{node.where}: {e}") from None
        outs = [out] if isinstance(out, Value) else list(out)
        for k, name in enumerate(proto.output):
            if not name:
                continue
            if k >= len(outs) or outs[k] is None:
                node.unsupported(f"output {k} ({name!r})")
            node.scope.env[name] = outs[k]

    def tensor_array(self, t) -> np.ndarray:
        from .reader import tensor_to_array
        return tensor_to_array(t, self.base_dir, self.label)


def _free_names(v: Value) -> list[str]:
    seen, stack, names = set(), [v], []
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if x.op is None:
            if x.name and x.name not in names:
                names.append(x.name)
        else:
            stack.extend(x.op.inputs)
    return names


def default_opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1
