"""onnx's ``Backend`` interface over symfuse, so onnx's own test runner drives it:

    import onnx.backend.test
    import symfuse.onnx.backend
    globals().update(onnx.backend.test.BackendTest(symfuse.onnx.backend, __name__).test_cases)

``prepare(model, device="CPU")`` returns a :class:`SymfuseRep`; its ``run(inputs)``
imports and compiles the model on first use (sizes the model leaves symbolic come
from the arrays) and returns the outputs as onnx's named tuple. ONNX device "CPU"
runs on symfuse's ``cpu`` and "CUDA" on ``cuda``; ``symfuse_device="interp"`` (or
``backend_for("interp")``) picks any symfuse device.

An input whose value a converter needs at import time (a Reshape's shape given as a
graph input: :class:`OnnxNeedsConstant`) is bound as a constant from the values
``run`` receives; the rep compiles once per distinct set of such values.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from .errors import OnnxError, OnnxNeedsConstant, OnnxUnsupported
from .importer import DTYPES, symfuse_dtype
from .reader import require_onnx

require_onnx()
from onnx.backend.base import Backend, BackendRep, namedtupledict  # noqa: E402

ONNX_DEVICES = {"CPU": "cpu", "CUDA": "cuda"}
# keywords onnx's test runner passes to prepare (a test's tolerances); not ours to use
RUNNER_KEYWORDS = ("rtol", "atol")


def symfuse_device_for(device: str, default: str | None = None) -> str:
    """The symfuse device that runs ONNX device ``device`` ("CPU", "CUDA:0")."""
    if default is not None:
        return default
    kind = str(device).split(":")[0].upper()
    if kind not in ONNX_DEVICES:
        raise OnnxError(f"ONNX device {device!r} is not one symfuse knows (CPU, CUDA)")
    return ONNX_DEVICES[kind]


def device_available(symfuse_device: str) -> bool:
    """Whether ``symfuse_device`` can compile and run here (cuda needs a GPU)."""
    from ..errors import DeviceUnavailable
    from ..runtime.backends import get_backend
    try:
        return get_backend(symfuse_device).runnable()
    except DeviceUnavailable:
        return False


def as_array(x) -> np.ndarray:
    """A run() input as an array (onnx's runner may hand over TensorProtos and scalars)."""
    onnx = require_onnx()
    if isinstance(x, onnx.TensorProto):
        return onnx.numpy_helper.to_array(x)
    if x is None or isinstance(x, (list, tuple, dict)):
        kind = "an omitted optional input" if x is None else f"a {type(x).__name__} (an ONNX sequence or map)"
        raise OnnxUnsupported(f"an input value is {kind}; symfuse runs tensors only",
                              reason="sequence/optional input values")
    return np.asarray(x)


def check_output_types(model, label: str = "<onnx model>") -> None:
    """Refuse by name a model whose declared outputs have a dtype symfuse lacks (its
    results could never match): the dtype is the reason, not a wrong value."""
    for vi in model.graph.output:
        t = vi.type
        kind = t.WhichOneof("value")
        if kind is None:
            continue
        if kind != "tensor_type":
            raise OnnxUnsupported(f"{label}: output {vi.name!r} is a {kind.replace('_type', '')}, not a tensor",
                                  reason=f"{kind.replace('_type', '')} outputs")
        code = t.tensor_type.elem_type
        if code and code not in DTYPES:
            symfuse_dtype(code, f"{label}: output {vi.name!r}")


class _Compiled:
    __slots__ = ("fn", "input_names")

    def __init__(self, fn, input_names):
        self.fn, self.input_names = fn, input_names


class SymfuseRep(BackendRep):
    """A prepared model: ``run(inputs)`` -> outputs (onnx's named tuple of arrays).

    ``inputs``: one array per graph input that is not an initializer, in graph order,
    or a dict name -> array. Compiled functions are kept per key: the values of the
    inputs bound as constants and the shapes of inputs the model leaves symbolic."""

    def __init__(self, model, symfuse_device: str, options: dict | None = None):
        self.model = model
        self.device = symfuse_device
        self.options = dict(options or {})
        graph = model.graph
        inits = {t.name for t in graph.initializer}
        self.input_names = [vi.name for vi in graph.input if vi.name not in inits]
        self.output_names = [vi.name for vi in graph.output]
        self.symbolic = {vi.name for vi in graph.input if vi.name not in inits and not _static_shape(vi)}
        self.constant_names: list[str] = []       # found by OnnxNeedsConstant, in the order found
        self.compiled: dict[tuple, _Compiled] = {}
        check_output_types(model)

    # -------------------------------------------------------------- running
    def run(self, inputs: Any, **kwargs) -> tuple:
        arrays = self._arrange(inputs)
        c = self.compiled.get(self._key(arrays))
        if c is None:
            c = self._compile(arrays)
            self.compiled[self._key(arrays)] = c
        outs = c.fn(*[arrays[n] for n in c.input_names])
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return namedtupledict("Outputs", self.output_names)(*[np.asarray(o) for o in outs])

    def _arrange(self, inputs) -> dict:
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            extra = [n for n in inputs if n not in self.input_names]
            if missing or extra:
                raise OnnxError(f"run: inputs {sorted(inputs)} do not match the model's inputs {self.input_names}")
            return {n: as_array(inputs[n]) for n in self.input_names}
        if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != len(self.input_names):
            raise OnnxError(f"run: {len(inputs)} input(s) given, the model takes {len(self.input_names)} "
                            f"({', '.join(self.input_names)})")
        return {n: as_array(x) for n, x in zip(self.input_names, inputs)}

    def _key(self, arrays: dict) -> tuple:
        bound = tuple((n, arrays[n].dtype.str, arrays[n].shape, np.ascontiguousarray(arrays[n]).tobytes())
                      for n in self.constant_names)
        shapes = tuple((n, arrays[n].shape) for n in sorted(self.symbolic) if n not in self.constant_names)
        return bound, shapes

    def _compile(self, arrays: dict) -> _Compiled:
        from .model import load
        while True:
            constants = {n: arrays[n] for n in self.constant_names}
            shapes = {n: arrays[n].shape for n in self.symbolic if n not in constants}
            try:
                m = load(self.model, shapes=shapes, constants=constants)
                break
            except OnnxNeedsConstant as e:
                if e.name not in arrays:
                    raise _computed_at_run_time(e) from None
                if e.name in self.constant_names:
                    raise
                self.constant_names.append(e.name)
        return _Compiled(m.function(self.device, **self.options), list(m.input_names))


def _computed_at_run_time(e: OnnxNeedsConstant) -> OnnxUnsupported:
    """A value a converter needs at import time that no graph input gives (a loop
    body's Slice bounds from its iteration count): refused by name, as the run's
    values cannot bind it."""
    m = re.search(r"\((\w+)\): input (\d+)", str(e))
    what = f"{m.group(1)}: input {m.group(2)}" if m else "a value a converter needs at import time"
    return OnnxUnsupported(str(e), m.group(1) if m else "", f"{what} computed at run time")


def _static_shape(vi) -> bool:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return False
    return all(d.HasField("dim_value") and d.dim_value >= 0 for d in t.tensor_type.shape.dim)


class SymfuseBackend(Backend):
    """onnx's ``Backend`` (``onnx.backend.base.Backend``) over symfuse. ``default_device``:
    the symfuse device every ONNX device maps to (None: CPU -> cpu, CUDA -> cuda)."""

    default_device: str | None = None

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        return True

    @classmethod
    def prepare(cls, model, device: str = "CPU", symfuse_device: str | None = None,
                function_options: dict | None = None, **kwargs) -> SymfuseRep:
        """``model``: a ModelProto, bytes or a path; ``symfuse_device`` overrides the
        device mapping; ``function_options``: keywords for ``sf.function``."""
        from .reader import read_model
        unknown = sorted(set(kwargs) - set(RUNNER_KEYWORDS))
        if unknown:
            raise OnnxError(f"prepare: unknown keyword {unknown[0]!r}; symfuse takes symfuse_device= and "
                            "function_options=")
        proto, _, _ = read_model(model)
        return SymfuseRep(proto, symfuse_device_for(device, symfuse_device or cls.default_device),
                          function_options)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs) -> tuple:
        """Run one NodeProto on ``inputs`` (one array per named input of the node);
        ``opset_version=`` picks the default-domain opset (default: the newest onnx knows)."""
        opset = kwargs.pop("opset_version", None)
        model = node_model(node, inputs, outputs_info, opset)
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return device_available(symfuse_device_for(device, cls.default_device))
        except OnnxError:
            return False


def node_model(node, inputs, outputs_info=None, opset: int | None = None):
    """A model of the single node ``node`` whose graph inputs are typed from ``inputs``."""
    onnx = require_onnx()
    from onnx import helper
    names = [n for n in node.input if n]
    arrays = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    if len(arrays) != len(names):
        raise OnnxError(f"run_node: the {node.op_type} node has {len(names)} input(s), {len(arrays)} given")
    graph_inputs = []
    for name, x in zip(names, arrays):
        a = as_array(x)
        try:
            code = helper.np_dtype_to_tensor_dtype(a.dtype)
        except (KeyError, ValueError, TypeError):
            raise OnnxUnsupported(f"run_node: input {name!r} has dtype {a.dtype}", reason=f"dtype {a.dtype}") from None
        graph_inputs.append(helper.make_tensor_value_info(name, code, a.shape))
    outs = [n for n in node.output if n]
    if outputs_info:
        graph_outputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape)
                         for n, (dt, shape) in zip(outs, outputs_info)]
    else:
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in outs]
    graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs)
    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    imports = [helper.make_opsetid("", opset or onnx.defs.onnx_opset_version())]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports)


def backend_for(symfuse_device: str) -> type:
    """A Backend class that runs every ONNX device on ``symfuse_device`` ("interp",
    "cpu", "cuda-emu", "cuda")."""
    return type(f"SymfuseBackend_{symfuse_device.replace('-', '_')}", (SymfuseBackend,),
                {"default_device": symfuse_device})


# the module itself is a backend (onnx.backend.test.BackendTest(symfuse.onnx.backend, ...))
is_compatible = SymfuseBackend.is_compatible
prepare = SymfuseBackend.prepare
run_model = SymfuseBackend.run_model
run_node = SymfuseBackend.run_node
supports_device = SymfuseBackend.supports_device

__all__ = ["SymfuseBackend", "SymfuseRep", "backend_for", "prepare", "run_model", "run_node",
           "supports_device", "is_compatible"]
