"""Compiler passes. Importing this package registers every named rewrite and
every target's lowering pass."""
from .lowering import LOWERINGS, lowering  # noqa: F401
from .rewrite import REWRITES, RewriteContext, rewrite  # noqa: F401
from . import algebraic, algebraic_unary, algebraic_shape, blas, stabilise  # noqa: F401  (in this order)
