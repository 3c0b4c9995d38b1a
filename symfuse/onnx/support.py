"""What symfuse can do with a model before anything is compiled: each node with
whether it converts (``check``), and input shapes with the batch size filled in
(``input_shapes``)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import OnnxError, OnnxNeedsConstant, OnnxUnsupported
from .importer import default_opset
from .reader import read_model
from .registry import lookup


@dataclass(frozen=True)
class NodeSupport:
    index: str          # "12", or "12/then_branch/3" inside a subgraph
    name: str
    op_type: str
    domain: str
    supported: bool
    reason: str = ""


@dataclass(frozen=True)
class Report:
    source: str
    opset: int
    nodes: tuple
    error: str = ""     # why the whole import failed, where it did

    @property
    def ok(self) -> bool:
        return not self.error and all(n.supported for n in self.nodes)

    def op_counts(self) -> dict:
        """op type -> (nodes, supported nodes)."""
        out: dict = {}
        for n in self.nodes:
            total, good = out.get(n.op_type, (0, 0))
            out[n.op_type] = (total + 1, good + n.supported)
        return out


def _walk(graph, prefix=""):
    for i, node in enumerate(graph.node):
        idx = f"{prefix}{i}"
        yield idx, node
        for a in node.attribute:
            if a.type == a.GRAPH:
                yield from _walk(a.g, f"{idx}/{a.name}/")
            for k, g in enumerate(a.graphs):
                yield from _walk(g, f"{idx}/{a.name}[{k}]/")


def check(source, shapes=None, constants=None) -> Report:
    """Each node of the model (subgraphs too) with whether symfuse has a rule for its
    op at the model's opset; then a trial conversion (no compilation) marks the node
    whose attributes or inputs the rule refuses."""
    from .model import load
    model, label, _ = read_model(source)
    opset = default_opset(model)
    rows = []
    for idx, node in _walk(model.graph):
        rule = lookup(node.domain, node.op_type)
        if rule is None:
            rows.append(NodeSupport(idx, node.name, node.op_type, node.domain, False, "no converter for this op"))
        elif opset < rule.since:
            rows.append(NodeSupport(idx, node.name, node.op_type, node.domain, False,
                                    f"converted from opset {rule.since}, the model has opset {opset}"))
        else:
            rows.append(NodeSupport(idx, node.name, node.op_type, node.domain, True))
    error = ""
    if all(r.supported for r in rows):
        try:
            # a trial at batch 1 wherever a size is symbolic: support does not depend on it
            load(model, shapes=shapes if shapes is not None else input_shapes(model, None, fill=1),
                 constants=constants)
        except OnnxUnsupported as e:
            error = str(e)
            rows = [_mark(r, e) for r in rows]
        except (OnnxNeedsConstant, OnnxError) as e:
            error = str(e)
    return Report(label, opset, tuple(rows), error)


def _mark(row: NodeSupport, e: OnnxUnsupported) -> NodeSupport:
    where = f": node {row.index} "
    if where in str(e) and row.op_type == e.op_type:
        return NodeSupport(row.index, row.name, row.op_type, row.domain, False, e.reason)
    return row


def input_shapes(source, batch: int | None, fill: int | None = None) -> dict:
    """Input name -> static shape, with ``batch`` for a symbolic (or unknown) size on
    axis 0 and ``fill`` for any other; inputs left with symbolic sizes are left to
    ``load`` to report."""
    model, _, _ = read_model(source)
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        if batch is not None and sizes and sizes[0] is None:
            sizes[0] = batch
        elif batch is not None and sizes and sizes[0] != batch:
            raise OnnxError(f"{source}: input {vi.name!r} has a fixed batch size {sizes[0]} in the model, "
                            f"--batch asks for {batch}")
        if fill is not None:
            sizes = [fill if s is None else s for s in sizes]
        if None not in sizes:
            out[vi.name] = tuple(sizes)
    return out
