"""``save``: a symfuse graph as an ONNX model.

Each IR op is written by its own rule, the ``onnx`` field of its ``OpDef``
(``symfuse/ir/ops/*.py``, beside the op's type rule, reference and VJP): an ONNX
op type, or a function ``(g, op, names) -> names`` that emits nodes through the
:class:`GraphBuilder` ``g`` defined here. Loop and branch bodies become ONNX
subgraphs (``Loop``, ``If``) through the same builder. An op with no rule is
refused by name, with the user's line that built it.
"""
from __future__ import annotations

import re

import numpy as np

from ..ir.symdim import trace_multiple
from ..ir.core import Function, Value, format_loc, toposort
from ..ir.types import TensorType, as_dtype
from .errors import OnnxError, OnnxUnsupported
from .reader import require_onnx

OPSET = 17          # the oldest opset written; reductions keep their axes attributes up to it
_NAME = re.compile(r"[^A-Za-z0-9_.]")


# --------------------------------------------------------------------------- names
class _Names:
    """Every name of the model, subgraphs included: ONNX names are one SSA namespace
    (a body may read an enclosing graph's names, never redefine one)."""

    def __init__(self):
        self.used: set[str] = set()
        self.counts: dict[str, int] = {}

    def unique(self, name: str | None, default: str) -> str:
        base = _NAME.sub("_", name or "") or default
        if not (base[0].isalpha() or base[0] == "_"):
            base = f"_{base}"
        out, k = base, 1
        while out in self.used:
            out, k = f"{base}_{k}", k + 1
        self.used.add(out)
        return out

    def fresh(self, hint: str) -> str:
        k = self.counts.get(hint, 0)
        while f"{hint}_{k}" in self.used:
            k += 1
        self.counts[hint] = k + 1
        name = f"{hint}_{k}"
        self.used.add(name)
        return name


# --------------------------------------------------------------------------- the builder rules see
class GraphBuilder:
    """The nodes of one ONNX graph (the model's, or a loop or branch body), as an op's
    ``onnx`` rule writes them: ``g.node`` for a node, ``g.const`` / ``g.ints`` /
    ``g.scalar`` for constants, ``g.subgraph`` and ``g.inline`` for bodies."""

    def __init__(self, names: _Names, opset: int, parent: "GraphBuilder | None" = None):
        self.onnx = require_onnx()
        self.names, self.opset, self.parent = names, opset, parent
        self.nodes: list = []
        self.inputs: list = []          # ValueInfoProtos (subgraphs)
        self.produced: set[str] = set()
        self.op = None                  # the IR op being written, for node names and messages

    # ------------------------------------------------------------------ nodes and constants
    def node(self, op_type: str, inputs, outputs=1, **attrs) -> list[str]:
        """One node; ``outputs`` is a count (fresh names) or a list of names. Returns
        the output names."""
        outs = [self.names.fresh(op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) \
            else list(outputs)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        label = self.names.fresh(f"{self.op.opdef.name}_{op_type}" if self.op is not None else op_type)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=label, **attrs))
        self.produced.update(outs)
        return outs

    def const(self, array, dtype=None) -> str:
        """A Constant node holding ``array`` (as ``dtype`` if given). Constants are
        nodes, not initializers: initializers are the model's trainable parameters.
        A number made from a run-time size is refused: the file would fix the size."""
        arr = np.asarray(array, dtype=None if dtype is None else as_dtype(dtype).np)
        name = trace_multiple(arr)
        if name is not None:
            raise OnnxError(f"sf.onnx.save: a number of the graph depends on the run-time size {name!r}, which an "
                            "ONNX file would hold fixed; save a function built with a number for it")
        name = self.names.fresh("const")
        tensor = self.onnx.numpy_helper.from_array(np.array(arr, order="C"), name)
        return self.node("Constant", [], [name], value=tensor)[0]

    def ints(self, values) -> str:
        """A 1-D int64 constant (shapes, axes, starts, pads)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def scalar(self, value, dtype) -> str:
        """A 0-d constant of a symfuse dtype."""
        return self.const(np.asarray(value).astype(as_dtype(dtype).np))

    def dtype(self, dtype) -> int:
        """The ONNX element type of a symfuse dtype."""
        return int(self.onnx.helper.np_dtype_to_tensor_dtype(as_dtype(dtype).np))

    def reduce(self, op_type: str, x: str, axes, keepdims: bool) -> list[str]:
        """A Reduce* node over ``axes`` (non-empty), in the form of the opset: the
        axes are an input of ReduceSum from opset 13 and of the others from 18."""
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.node(op_type, [x], axes=axes, keepdims=int(keepdims))

    @staticmethod
    def constant_value(v: Value):
        """The value of ``v`` when a ``constant`` op makes it, else None."""
        return v.op.attrs["value"] if v.op is not None and v.op.opdef.name == "constant" else None

    def unsupported(self, op, what: str):
        """Refuse one case of an op (an attribute value, a dtype) with the reason."""
        raise _unsupported(op, what)

    # ------------------------------------------------------------------ bodies
    def inline(self, region, names) -> list[str]:
        """Write ``region``'s ops into this graph, its parameters bound to ``names``;
        the names of its results."""
        env = {id(p): n for p, n in zip(region.params, names)}
        self.emit(region.ops, env)
        return [env[id(r)] for r in region.results]

    def subgraph(self) -> "GraphBuilder":
        """A builder for a body graph (a Loop's or an If's); it may read this graph's
        names. Declare its inputs with ``input``, finish it with ``graph``."""
        return GraphBuilder(self.names, self.opset, self)

    def input(self, type: TensorType, hint: str = "in") -> str:
        name = self.names.fresh(hint)
        self.inputs.append(self.value_info(name, type))
        return name

    def graph(self, outputs, types, name: str = "body"):
        """This builder's GraphProto with ``outputs`` (names) of ``types``. An output
        this graph does not compute itself (an input, an outer name, a repeat) is
        copied by an Identity: a graph's outputs are its own, distinct values."""
        outs, seen = [], set()
        for n, t in zip(outputs, types):
            if n not in self.produced or n in seen:
                n = self.node("Identity", [n])[0]
            seen.add(n)
            outs.append(self.value_info(n, t))
        return self.onnx.helper.make_graph(self.nodes, self.names.fresh(name), self.inputs, outs)

    def value_info(self, name: str, type: TensorType):
        # a run-time size is a symbolic dimension of the file (dim_param), spelled as in the IR
        shape = [d if d.__class__ is int else repr(d) for d in type.shape]
        return self.onnx.helper.make_tensor_value_info(name, self.dtype(type.dtype), shape)

    # ------------------------------------------------------------------ ops
    def emit(self, ops, env: dict) -> None:
        """Write ``ops`` (in order), reading operands from and binding results in ``env``
        (value id -> name)."""
        for op in ops:
            rule = op.opdef.onnx
            if rule is None:
                raise _unsupported(op, "it has no ONNX export rule")
            names = [env[id(v)] for v in op.inputs]
            prev, self.op = self.op, op
            try:
                outs = self.node(rule, names) if isinstance(rule, str) else list(rule(self, op, names))
            finally:
                self.op = prev
            if len(outs) != len(op.outputs):
                raise OnnxError(f"sf.onnx.save: the ONNX rule of {op.opdef.name} returned {len(outs)} names for "
                                f"{len(op.outputs)} results (a bug in the rule)")
            for v, n in zip(op.outputs, outs):
                env[id(v)] = n


def _unsupported(op, what: str) -> OnnxUnsupported:
    where = format_loc(op.loc)
    at = f" (built at {where})" if where else ""
    return OnnxUnsupported(f"sf.onnx.save: op {op.opdef.name}{at} cannot be exported to ONNX: {what}",
                           op.opdef.name, f"export {op.opdef.name}")


# --------------------------------------------------------------------------- what is saved
class _Graph:
    """What save() writes: a function's parameters split into graph inputs and
    initializers (shared variables with their names and values), and its outputs."""

    def __init__(self, fn: Function, inputs, input_names, params, outputs, output_names, name):
        self.fn, self.inputs, self.input_names = fn, list(inputs), list(input_names)
        self.params = list(params)            # (value in fn, name, array)
        self.outputs, self.output_names, self.name = list(outputs), list(output_names), name


def _output_names(values, given) -> list[str]:
    if given is not None:
        given = [given] if isinstance(given, str) else list(given)
        if len(given) != len(values):
            raise OnnxError(f"sf.onnx.save: output_names gives {len(given)} names for {len(values)} outputs")
        return given
    if len(values) == 1:
        return [values[0].name or "output"]
    return [v.name or f"output_{k}" for k, v in enumerate(values)]


def _from_executable(exe, output_names) -> _Graph:
    fn = exe.function                          # optimised, before the backend's lowering
    n_in, n_out = len(exe.inputs), len(exe.outputs)
    if len(fn.params) != n_in + len(exe.shared):
        raise OnnxError(f"sf.onnx.save: the compiled function has {len(fn.params)} parameters, expected "
                        f"{n_in} inputs and {len(exe.shared)} shared variables")
    params = [(p, s.name, s.get_value()) for p, s in zip(fn.params[n_in:], exe.shared)]
    return _Graph(fn, fn.params[:n_in], [v.name for v in exe.inputs], params, fn.results[:n_out],
                  _output_names(exe.outputs, output_names), fn.name)


def _from_values(inputs, outputs, output_names, name, shared_names=None) -> _Graph:
    from ..frontend.api import SharedVariable
    inputs = [inputs] if isinstance(inputs, Value) else list(inputs)
    outputs = [outputs] if isinstance(outputs, Value) else list(outputs)
    for v in inputs:
        if not isinstance(v, Value) or v.op is not None or isinstance(v, SharedVariable):
            raise OnnxError(f"sf.onnx.save: an input must be a symbolic tensor made by sf.tensor, got {v!r}")
    for v in outputs:
        if not isinstance(v, Value):
            raise OnnxError(f"sf.onnx.save: an output must be a symbolic tensor, got {v!r}")
    known = {id(v) for v in inputs}
    shared = []
    leaves = [v for op in toposort(outputs, allow_free=True) for v in op.inputs] + outputs
    for v in leaves:
        if v.op is None and id(v) not in known:
            known.add(id(v))
            if not isinstance(v, SharedVariable):
                raise OnnxError(f"sf.onnx.save: the outputs depend on {v.name or '<unnamed>'} {v.type}, "
                                "which is neither an input nor a shared variable: list it among the inputs")
            shared.append(v)
    fn = Function(inputs + shared, outputs, name)
    if _has_grad(fn):               # sf.grad is expanded by the pass pipeline (the same parameters)
        from ..compiler.pipeline import optimize
        fn = optimize(fn)
    names, n_in = shared_names or {}, len(inputs)
    params = [(p, names.get(id(s), s.name), s.get_value()) for p, s in zip(fn.params[n_in:], shared)]
    return _Graph(fn, fn.params[:n_in], [v.name for v in inputs], params, fn.results[:len(outputs)],
                  _output_names(outputs, output_names), name)


def _has_grad(region) -> bool:
    return any(op.opdef.name == "grad" or any(_has_grad(r) for r in op.regions) for op in region.ops)


def _source(obj, output_names) -> _Graph:
    from ..runtime.function import Executable
    from .model import OnnxModel
    if isinstance(obj, Executable):
        return _from_executable(obj, output_names)
    if isinstance(obj, OnnxModel):
        shared_names = {id(v): k for k, v in obj.params.items()}
        return _from_values(obj.inputs, obj.outputs, output_names or obj.output_names, obj.name, shared_names)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return _from_values(obj[0], obj[1], output_names, "main")
    raise OnnxError(f"sf.onnx.save: expected a compiled sf.function, an OnnxModel or (inputs, outputs), got "
                    f"{type(obj).__name__}")


# --------------------------------------------------------------------------- the model
def save(function_or_graph, path=None, *, output_names=None, opset: int = OPSET, doc_string: str = "",
         check: bool = True):
    """Write a symfuse graph as an ONNX model; returns the ``onnx.ModelProto`` (and
    writes it to ``path`` when given).

    ``function_or_graph``: a compiled ``sf.function`` (its optimised graph, before
    the backend's lowering: portable ops only), an ``OnnxModel`` (``sf.onnx.load``),
    or ``(inputs, outputs)``: lists of symbolic values. Of a training step only the
    outputs are written (e.g. the loss of its forward pass): **updates of shared
    variables are not part of the model.** Shared variables become initializers
    named after them (made unique), with their current values; inputs and outputs
    keep their names (``output_names=`` names the outputs, which default to the
    values' names or ``output`` / ``output_<k>``). ``opset``: of the default domain,
    17 or newer. ``check``: run onnx's checker with strict shape inference on the
    result. Loops (``sf.scan``, ``sf.while_loop``) become ONNX ``Loop`` nodes and
    ``sf.cond`` an ``If``. An op with no ONNX equivalent (the random draws, most
    gradient ops) raises :class:`OnnxUnsupported` naming the op and the line that
    built it.
    """
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not OPSET <= opset <= newest:
        raise OnnxError(f"sf.onnx.save: opset must be an int from {OPSET} to {newest}, got {opset!r}")
    src = _source(function_or_graph, output_names)
    model = _build(src, opset, doc_string)
    if check:
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise OnnxError(f"sf.onnx.save: the written model fails onnx's checker (a bug in an export rule): "
                            f"{e}") from None
    if path is not None:
        onnx.save_model(model, path)
    return model


def _build(src: _Graph, opset: int, doc_string: str):
    onnx = require_onnx()
    helper = onnx.helper
    import symfuse
    names = _Names()
    g = GraphBuilder(names, opset)
    env: dict[int, str] = {}
    graph_inputs = []
    for v, n in zip(src.inputs, src.input_names):
        env[id(v)] = names.unique(n, "input")
        graph_inputs.append(g.value_info(env[id(v)], v.type))
    ops = toposort(src.outputs, src.fn.params)
    used = {id(v) for op in ops for v in op.inputs} | {id(v) for v in src.outputs}
    initializers = []
    for v, n, arr in src.params:
        if id(v) in used:
            env[id(v)] = names.unique(n, "param")
            initializers.append(onnx.numpy_helper.from_array(np.array(arr, order="C"), env[id(v)]))
    out_names = [names.unique(n, "output") for n in src.output_names]
    g.emit(ops, env)
    outputs = []
    for v, want in zip(src.outputs, out_names):
        have = env[id(v)]
        if have in g.produced and have not in out_names:
            _rename(g.nodes, have, want)
            g.produced.add(want)
            for o in src.outputs:       # the same value as a later output: copied from this one
                if env[id(o)] == have:
                    env[id(o)] = want
        else:
            g.node("Identity", [have], [want])
        outputs.append(g.value_info(want, v.type))
    graph = helper.make_graph(g.nodes, src.name, graph_inputs, outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="symfuse",
                              producer_version=symfuse.__version__, doc_string=doc_string)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def _rename(nodes, old: str, new: str) -> None:
    """Rename value ``old`` to ``new`` in ``nodes`` and in the bodies they hold."""
    for node in nodes:
        for seq in (node.input, node.output):
            for i, n in enumerate(seq):
                if n == old:
                    seq[i] = new
        for a in node.attribute:
            if a.HasField("g"):
                _rename(a.g.node, old, new)
                for o in a.g.output:
                    if o.name == old:
                        o.name = new
            for sub in a.graphs:
                _rename(sub.node, old, new)

