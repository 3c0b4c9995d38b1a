"""Integer bit manipulation: BitwiseAnd / Or / Xor / Not (opset 18) and BitShift
(opset 11): a right shift is logical on unsigned integers and arithmetic on signed
ones; shifting by a negative amount or by the width or more gives 0 (-1 shifting a
negative value right), as numpy and symfuse's shift ops do."""
from __future__ import annotations

from ...frontend import api as F
from ..registry import converter

BITWISE = {"BitwiseAnd": F.bitwise_and, "BitwiseOr": F.bitwise_or, "BitwiseXor": F.bitwise_xor}
SHIFTS = {"LEFT": F.left_shift, "RIGHT": F.right_shift}


def _binary(fn):
    return lambda n: fn(n.value(0), n.value(1))


for _op, _fn in BITWISE.items():
    converter(_op, since=18)(_binary(_fn))


@converter("BitwiseNot", since=18)
def _bitwise_not(n):
    return F.bitwise_not(n.value(0))


@converter("BitShift", since=11)
def _bit_shift(n):
    direction = n.attr("direction")
    if direction not in SHIFTS:
        n.fail(f"attribute 'direction' must be 'LEFT' or 'RIGHT', got {direction!r}")
    return SHIFTS[direction](n.value(0), n.value(1))
