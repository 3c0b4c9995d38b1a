"""Numerical stabilisation rewrites (tag "stabilise")."""
