"""Errors raised by :mod:`symfuse.nn` (all under :class:`symfuse.errors.SymfuseError`)."""
from __future__ import annotations

from ..errors import InputError, SymfuseError


class ModelFileError(InputError):
    """A model file could not be saved or loaded: missing, corrupt, or its
    parameters do not match the model (names, shapes, dtypes). The message names
    the path and the parameter."""


class DataError(InputError):
    """A data set could not be read: a missing file (the message names the file and
    the directory searched), a wrong IDX magic number, a truncated file, ..."""


class MissingDependencyError(SymfuseError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class UnknownModelError(SymfuseError, KeyError):
    """A zoo model name that is not registered; the message lists the names."""

    def __str__(self):             # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
