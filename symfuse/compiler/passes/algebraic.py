"""Algebraic simplification rewrites (tag "simplify", some "fast_math")."""
