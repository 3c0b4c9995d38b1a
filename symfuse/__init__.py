"""symfuse: a symbolic deep-learning graph compiler, its whole symbolic API in
one namespace::

    import symfuse as sf
    x = sf.tensor("x", (128, 784))
    W = sf.shared(np.zeros((784, 10), np.float32), name="W")
    loss = sf.log_softmax(x @ W).mean()
    f = sf.function([x], loss, updates=[(W, W - 0.1 * sf.grad(loss, W))])
"""
from . import ir  # noqa: F401  (registers ops)
from .errors import (  # noqa: F401
    AxisError, CompileError, DeviceUnavailable, DTypeError, GradError, InputError, IRParseError,
    ShapeError, SymfuseError, VerifyError,
)
from .ir.types import float16, float32, float64, int32, int64, bool_  # noqa: F401
from .frontend.api import (  # noqa: F401
    SharedVariable, abs, add, argmax, argmin, as_tensor, bitwise_and, bitwise_not, bitwise_or, bitwise_xor,
    broadcast_to, cast, ceil, clip, concatenate, constant, cos, divide, dot, equal, erf, exp, expand_dims,
    expm1, flatten, flip, floor, full, getitem, grad, greater, greater_equal, left_shift, less, less_equal,
    log, log1p, logical_and, logical_not, logical_or, matmul, max, maximum, mean, min, minimum, multiply,
    negative, not_equal, ones, ones_like, pad, power, prod, reciprocal, relu, reshape, right_shift, round,
    rsqrt, shared, sigmoid, sign, sin, softplus, sqrt, square, squeeze, stack, std, subtract, sum, tanh,
    tensor, transpose, var, where, zeros, zeros_like,
    cond, scan, stop_gradient, while_loop,
)
from .frontend.nn_api import (  # noqa: F401
    avg_pool2d, conv2d, log_softmax, logsumexp, max_pool2d, one_hot, softmax,
    softmax_cross_entropy, take,
)
from .frontend import random  # noqa: F401
from .ir.core import apply, defop  # noqa: F401  (user ops: docs/custom_ops.md)
from .runtime.function import function  # noqa: F401

__version__ = "0.1.0"


def export(f, out_dir, name=None, target=None, arch=None, cuda_graph=None, ptx=True, r=False):
    """Write the compiled function ``f`` as a directory C programs use without
    Python: ``lib<name>.so``, ``<name>.h``, ``<name>.json``, ``<name>.params`` and
    the libraries they need (docs/export.md). ``target="cuda"`` with ``arch``
    (one or several, e.g. ``["sm_80", "sm_90"]``) for NVIDIA GPUs; ``r=True`` adds
    an R wrapper, ``<name>.R``. Loaded on first use."""
    from .runtime.export import export as export_function
    return export_function(f, out_dir, name, target=target, arch=arch, cuda_graph=cuda_graph, ptx=ptx, r=r)


def __getattr__(name):
    # subpackages with optional dependencies load on first use: import time is a headline number
    if name in ("onnx", "nn", "distributed"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'symfuse' has no attribute {name!r}")
