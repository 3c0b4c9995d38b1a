"""One exception hierarchy for everything symfuse raises on bad input.

Every error subclasses :class:`SymfuseError` and, where Python has a matching
builtin, that builtin too, so ``except ValueError`` in user code still works.
Messages name the op, the shapes/dtypes involved, and where the op came from
(the user's ``file:line``, or ``line:col`` in IR text).
"""
from __future__ import annotations


class SymfuseError(Exception):
    """Base class of every error symfuse raises deliberately."""


class ShapeError(SymfuseError, ValueError):
    """Operand shapes do not satisfy an op's shape rule."""


class DTypeError(SymfuseError, TypeError):
    """Operand dtypes do not satisfy an op's type rule."""


class AxisError(ShapeError):
    """An axis argument is out of range for the operand's rank."""


class GradError(SymfuseError, ValueError):
    """A gradient was requested that is not defined (non-scalar cost, disconnected wrt, ...)."""


class VerifyError(SymfuseError):
    """The IR violates an invariant (SSA, types, op rules)."""


class IRParseError(SymfuseError, ValueError):
    """IR text could not be parsed; carries the line and column."""

    def __init__(self, message: str, line: int, col: int, source_line: str = ""):
        self.line, self.col, self.source_line = line, col, source_line
        text = f"IR parse error at {line}:{col}: {message}"
        if source_line:
            text += f"\n  {source_line}\n  {' ' * (col - 1)}^"
        super().__init__(text)


class InputError(SymfuseError, ValueError):
    """A compiled function was called with arguments that do not match its signature."""


class DeviceUnavailable(SymfuseError, RuntimeError):
    """The requested device/backend cannot run here."""


class CompileError(SymfuseError, RuntimeError):
    """A backend failed to compile generated code."""
