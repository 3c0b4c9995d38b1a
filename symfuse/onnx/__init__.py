"""ONNX models in and out of symfuse (the ``symfuse[onnx]`` extra).

    import symfuse as sf
    m = sf.onnx.load("model.onnx")              # inputs, outputs, trainable params
    f = m.function("cpu")                        # compiled like any symfuse graph
    sf.onnx.save(f, "out.onnx")                  # a compiled function back to ONNX

``symfuse.onnx.backend`` is onnx's ``Backend`` interface over symfuse, which runs
the ONNX conformance suite. The ``onnx`` package is imported on first use.
"""
from .errors import OnnxError, OnnxMissingDependency, OnnxNeedsConstant, OnnxUnsupported  # noqa: F401
from .model import OnnxModel, load  # noqa: F401


def save(function_or_graph, path=None, **kw):
    """Write a compiled function (or an ``OnnxModel``) as an ONNX model; see
    :func:`symfuse.onnx.export.save`."""
    from .export import save as _save
    return _save(function_or_graph, path, **kw)


def check(source, shapes=None, constants=None):
    """Each node of a model with whether symfuse converts it; see
    :func:`symfuse.onnx.support.check`."""
    from .support import check as _check
    return _check(source, shapes=shapes, constants=constants)
