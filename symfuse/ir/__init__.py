"""The SSA IR: types, values, ops, functions, printer and parser."""
from .types import DType, TensorType, as_dtype, tensor_type  # noqa: F401
from .core import OPS, Function, Op, OpDef, Region, Value, apply, defop, register  # noqa: F401
from . import ops  # noqa: F401  (registers every op)
from .printer import print_function  # noqa: F401
from .verify import verify  # noqa: F401


def __getattr__(name):
    # the parser is imported on first use: `import symfuse` and a warm compile never parse
    if name == "parse":
        from .parser import parse
        return parse
    raise AttributeError(f"module 'symfuse.ir' has no attribute {name!r}")
