"""Transfer learning: a pretrained ONNX model's layers as a symfuse layer, and a
classifier around any module that ``fit`` trains.

    import symfuse as sf
    from symfuse import nn
    from symfuse.nn import finetune

    pre = sf.onnx.load(finetune.pretrained("lenet_digits04"), shapes={"x": (20, 1, 28, 28)})
    backbone = finetune.OnnxBackbone(pre)          # input -> the features before the last Gemm/MatMul
    backbone.freeze("conv0", "conv1")              # or backbone.freeze(): train the new head only
    model = nn.Sequential(backbone, nn.Dense(backbone.features, 5))
    zm = finetune.classifier(model, input_shape=(1, 28, 28), classes=5, batch=20)
    nn.fit(zm, data, epochs=30, device="cpu")

:class:`OnnxBackbone` makes the ONNX initializers the module's parameters under
their ONNX names (``conv0.W``; a dot nests, as in a symfuse model), so freezing,
saving, checkpoints and optimisers see them like any layer's. ``pretrained``
names the models shipped in ``symfuse/nn/pretrained`` (see docs/finetuning.md for
how they are made).
"""
from __future__ import annotations

import math
import os

from ..frontend.api import SharedVariable
from ..ir.core import ancestors
from ..ir.regions import substitute
from . import optim
from .module import Module

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
PRETRAINED = {
    "lenet_digits04": "LeNet-5 (conv 6, conv 16, dense 120) trained on the shipped digits 0-4 (28x28, MNIST "
                      "framing); input x (N, 1, 28, 28) in [0, 1], output probs (N, 5). "
                      "Made by scripts/make_pretrained_lenet.py.",
}


def pretrained(name: str) -> str:
    """The path of a pretrained model shipped with symfuse (``PRETRAINED`` lists them)."""
    if name not in PRETRAINED:
        raise KeyError(f"pretrained: unknown model {name!r}; available: {sorted(PRETRAINED)}")
    path = os.path.join(PRETRAINED_DIR, f"{name}.onnx")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained: {path} is missing from this installation; regenerate it with "
                                "scripts/make_pretrained_lenet.py")
    return path


def head_input(source) -> str:
    """The name of the value that feeds the model's last ``Gemm`` or ``MatMul`` node
    (in graph order): the features a new classification head takes. ``source``: an
    ``OnnxModel`` loaded from a file, a path, bytes or an ``onnx.ModelProto``."""
    from ..onnx.reader import read_model
    proto, label, _ = read_model(_source_of(source))
    init = {t.name for t in proto.graph.initializer}
    for node in reversed(proto.graph.node):
        if node.op_type in ("Gemm", "MatMul"):
            data = [n for n in node.input[:2] if n not in init]
            if data:
                return data[0]
    raise ValueError(f"head_input: {label} has no Gemm or MatMul node with a non-constant input; name the "
                     "feature value yourself (OnnxBackbone(model, output=...))")


def _source_of(source):
    from ..onnx.model import OnnxModel
    if isinstance(source, OnnxModel):
        if not os.path.isfile(source.source):
            raise ValueError(f"the OnnxModel was not loaded from a file ({source.source}); pass the file, bytes "
                             "or ModelProto instead")
        return source.source
    return source


class _Group(Module):
    """A node of a dotted parameter path (``conv0`` of ``conv0.W``): variables only."""

    default_name = "group"

    def forward(self, x, train):
        raise TypeError(f"{self.name}: a group of imported parameters is not a layer")


class OnnxBackbone(Module):
    """The graph of an imported ONNX model (``sf.onnx.load``) from its single input
    to the value ``output`` (default: :func:`head_input`, the features before the
    last Gemm/MatMul), as a layer. The initializers that value depends on are this
    module's parameters, named by their ONNX names (a dot nests: ``conv0.W`` is
    parameter ``W`` of sub-module ``conv0``, so ``freeze("conv0")`` works); they are
    the OnnxModel's own shared variables, so training changes ``model.params`` too.

    Called on an input of the imported shape, it reuses the imported graph; another
    batch size re-imports the file (loaded from a path; the model's batch axis
    must be symbolic) and shares the parameters. ``features`` is the size of the
    output's last axis."""

    default_name = "backbone"

    def __init__(self, model, output: str | None = None, name: str | None = None):
        super().__init__(name)
        if len(model.inputs) != 1:
            raise ValueError(f"OnnxBackbone: the model has {len(model.inputs)} inputs ({model.input_names}); "
                             "fix the others at import (sf.onnx.load(..., constants=...))")
        output = head_input(model) if output is None else output
        if output not in model.values:
            raise KeyError(f"OnnxBackbone: the model has no value {output!r}; some of its values: "
                           f"{list(model.values)[-12:]}")
        object.__setattr__(self, "onnx_model", model)
        self.output = output
        self.input_name = model.input_names[0]
        value = model.values[output]
        used = ancestors(value)
        self.onnx_params = {k: v for k, v in model.params.items() if id(v) in used}
        for k, v in self.onnx_params.items():
            self._register(k, v)
        self.named_variables()
        self.features = int(value.type.shape[-1]) if value.type.shape else 1
        self._graphs = {tuple(model.inputs[0].type.shape): model}

    def _register(self, onnx_name: str, v: SharedVariable) -> None:
        *groups, leaf = onnx_name.split(".")
        owner = self
        for g in groups:
            child = owner._children.get(g)
            if child is None and g not in owner._vars and g and g not in owner.__dict__:
                child = _Group(g)
                owner._children[g] = child
            if not isinstance(child, _Group):       # a name that cannot nest: one flat variable
                owner, leaf = self, onnx_name.replace(".", "_")
                break
            owner = child
        if not leaf or leaf in owner._vars or leaf in owner._children:
            raise ValueError(f"OnnxBackbone: cannot name parameter {onnx_name!r} uniquely")
        owner.add_param(leaf, v)

    def _graph_for(self, shape: tuple):
        m = self._graphs.get(shape)
        if m is None:
            from ..onnx.model import load
            source = self.onnx_model.source
            if not os.path.isfile(source):
                raise ValueError(f"{self.name}: the ONNX model was imported for input {self.input_name!r} of shape "
                                 f"{tuple(self.onnx_model.inputs[0].type.shape)}, and is called on {shape}; load it "
                                 "from a file so that it can be re-imported for that shape")
            m = self._graphs[shape] = load(source, shapes={self.input_name: shape})
        return m

    def forward(self, x, train):
        from ..frontend import api as F
        x = F.as_tensor(x)
        m = self._graph_for(tuple(x.type.shape))
        subst = {id(m.inputs[0]): x}
        subst.update({id(m.params[k]): v for k, v in self.onnx_params.items() if m.params[k] is not v})
        return substitute([m.values[self.output]], subst)[0]


def classifier(module: Module, input_shape, classes: int, batch: int, optimizer=None, name: str = "finetune",
               dtype: str = "float32"):
    """A :class:`~symfuse.nn.zoo.ZooModel` (what ``fit``, ``evaluate`` and the
    checkpoints take) for ``module`` mapping ``(batch, *input_shape)`` inputs to
    ``classes`` logits: softmax cross-entropy, accuracy, and ``optimizer`` (default
    Adam(1e-3)) on ``module.params`` -- the parameters not frozen when this is
    called. Freeze first, then build."""
    from .zoo import _classifier
    input_shape = tuple(int(s) for s in input_shape)
    if not module.params:
        raise ValueError(f"classifier: {type(module).__name__} {module.name!r} has no trainable parameters "
                         "(everything is frozen)")
    opt = optim.get(optimizer) if optimizer is not None else optim.Adam(1e-3)
    if math.prod(input_shape) <= 0:
        raise ValueError(f"classifier: input_shape {input_shape} is empty")
    return _classifier(name, module, int(batch), input_shape, int(classes), opt, dtype)


__all__ = ["PRETRAINED", "PRETRAINED_DIR", "pretrained", "head_input", "OnnxBackbone", "classifier"]
