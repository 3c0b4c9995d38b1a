"""``load``: an ONNX model as a symfuse model -- symbolic inputs, trainable shared
variables for its initializers, outputs, every intermediate value by name, and the
graph's metadata."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir.core import Value
from .errors import OnnxError
from .importer import Importer, Scope, symfuse_dtype
from .reader import read_model


@dataclass
class OnnxModel:
    """A converted ONNX model.

    ``inputs``: symbolic tensors in the graph's input order (``input_names``);
    ``outputs``: their results (``output_names``); ``params``: initializer name ->
    shared variable (train them, or read them with ``get_value``); ``values``: every
    ONNX value name -> symfuse value (pick an intermediate as a feature extractor);
    ``metadata``: producer, versions, opset, doc string and ``metadata_props``.
    """

    name: str
    inputs: list
    outputs: list
    input_names: list
    output_names: list
    params: dict
    values: dict
    metadata: dict
    opset: int
    source: str = ""
    _functions: dict = field(default_factory=dict, repr=False)

    def function(self, device=None, outputs=None, **options):
        """The compiled inference function ``inputs -> outputs`` (each output name, or
        ``outputs=`` a list of value names or values)."""
        from ..runtime.function import function
        outs = self.outputs if outputs is None else [self.values[o] if isinstance(o, str) else o for o in outputs]
        return function(self.inputs, outs, device=device, name=self.name, **options)

    def run(self, *arrays, device="interp"):
        """Compile (once per device) and run: a convenience for checking a model."""
        f = self._functions.get(device)
        if f is None:
            f = self._functions[device] = self.function(device)
        out = f(*arrays)
        return list(out) if isinstance(out, (list, tuple)) else [out]


_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def _function_name(graph_name: str) -> str:
    name = "".join(c if c in _NAME_OK else "_" for c in graph_name)[:100].strip(".")
    return name if name and (name[0].isalpha() or name[0] == "_") else f"onnx_{name}" if name else "onnx_model"


def load(source, shapes: dict | None = None, constants: dict | None = None, name: str | None = None) -> OnnxModel:
    """Import an ONNX model (a path, bytes or an ``onnx.ModelProto``).

    ``shapes``: input name -> shape, for inputs whose shape the model leaves symbolic
    (``"batch"``) and to check the others; ``constants``: input name -> array, to
    fix an input at import time (a shape or axes input that converters need as a
    literal)."""
    model, label, base_dir = read_model(source)
    imp = Importer(model, label, shapes, constants, base_dir)
    graph = model.graph
    scope = Scope()
    init_names = {t.name for t in graph.initializer}
    inputs, input_names = [], []
    unknown = set(imp.shapes) | set(imp.constants)
    for vi in graph.input:
        if vi.name in init_names:
            continue
        unknown.discard(vi.name)
        if vi.name in imp.constants:
            scope.env[vi.name] = _constant_input(vi, imp.constants[vi.name], label)
            continue
        v = _input(vi, imp.shapes.get(vi.name), label)
        scope.env[vi.name] = v
        inputs.append(v)
        input_names.append(vi.name)
    if unknown:
        raise OnnxError(f"{label}: shapes= or constants= names {', '.join(sorted(map(repr, unknown)))}, which "
                        f"the model's inputs ({', '.join(repr(i.name) for i in graph.input)}) do not include")
    outputs = imp.convert_graph(graph, scope)
    meta = {"producer_name": model.producer_name, "producer_version": model.producer_version,
            "domain": model.domain, "model_version": model.model_version, "doc_string": model.doc_string,
            "graph_name": graph.name, "ir_version": model.ir_version,
            "opset_import": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "metadata_props": {p.key: p.value for p in model.metadata_props}}
    return OnnxModel(name or _function_name(graph.name or "onnx_model"), inputs, outputs, input_names,
                     [o.name for o in graph.output], imp.params, dict(scope.env), meta, imp.opset, label)


def _tensor_type(vi, label: str):
    t = vi.type
    if not t.HasField("tensor_type"):
        from .errors import OnnxUnsupported
        kind = t.WhichOneof("value") or "untyped"
        raise OnnxUnsupported(f"{label}: input {vi.name!r} is a {kind.replace('_type', '')}, not a tensor",
                              reason=f"{kind.replace('_type', '')} inputs")
    return t.tensor_type


def _input(vi, shape, label: str) -> Value:
    from ..frontend import api as F
    tt = _tensor_type(vi, label)
    dtype = symfuse_dtype(tt.elem_type, f"{label}: input {vi.name!r}")
    dims = list(tt.shape.dim) if tt.HasField("shape") else None
    if shape is not None:
        # a name is a run-time size (sf.tensor's): the function then serves any size of that axis
        shape = tuple(s if isinstance(s, str) else int(s) for s in shape)
        if dims is not None:
            if len(dims) != len(shape):
                raise OnnxError(f"{label}: input {vi.name!r} has rank {len(dims)} in the model, shapes= gives "
                                f"{shape}")
            for k, (d, s) in enumerate(zip(dims, shape)):
                if d.HasField("dim_value") and d.dim_value != s:
                    raise OnnxError(f"{label}: input {vi.name!r} has size {d.dim_value} on axis {k} in the model, "
                                    f"shapes= gives {shape}")
        return F.tensor(vi.name, shape, dtype)
    if dims is None:
        raise OnnxError(f"{label}: input {vi.name!r} has no shape in the model; give it with "
                        f"load(..., shapes={{{vi.name!r}: (...)}})")
    out = []
    for k, d in enumerate(dims):
        if not d.HasField("dim_value") or d.dim_value < 0:
            sym = d.dim_param or "?"
            raise OnnxError(f"{label}: input {vi.name!r} has a symbolic size {sym!r} on axis {k}; give its shape "
                            f"with load(..., shapes={{{vi.name!r}: (...)}})")
        out.append(int(d.dim_value))
    return F.tensor(vi.name, tuple(out), dtype)


def _constant_input(vi, arr: np.ndarray, label: str) -> Value:
    from ..frontend import api as F
    tt = _tensor_type(vi, label)
    dtype = symfuse_dtype(tt.elem_type, f"{label}: input {vi.name!r}")
    want = np.dtype(dtype if dtype != "bool" else np.bool_)
    if arr.dtype != want:
        raise OnnxError(f"{label}: constants[{vi.name!r}] has dtype {arr.dtype}, the model's input is {want}")
    return F.constant(arr)
