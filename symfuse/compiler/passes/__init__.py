"""Compiler passes. Importing this package registers every named rewrite."""
from .rewrite import REWRITES, RewriteContext, rewrite  # noqa: F401
from . import algebraic, blas, stabilise  # noqa: F401
