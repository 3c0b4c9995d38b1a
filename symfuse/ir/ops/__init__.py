"""Op families. Importing this package registers every op in ``symfuse.ir.core.OPS``."""
from . import special, elementwise, reduce, shape, linalg  # noqa: F401
from . import nn, random, control, collective  # noqa: F401
