"""Values a backend keeps in its own memory (a GPU's) between calls, and the
one way to get their numbers back."""
from __future__ import annotations

import numpy as np


class DeviceValue:
    """A value a backend keeps in its own memory (a GPU's) between calls.

    A backend whose ``run`` has ``device_values = True`` may return these for
    results; a shared variable updated by one then holds it instead of a host
    array, so parameters stay on the device from step to step. Whoever needs
    the numbers asks: ``get_value()``, an output handed to the caller, a
    function on another device reading the variable (``to_host``)."""

    __slots__ = ("shape", "dtype")

    def to_host(self) -> np.ndarray:
        raise NotImplementedError

    def copy(self) -> "DeviceValue":
        raise NotImplementedError


def host(a):
    return a.to_host() if isinstance(a, DeviceValue) else a
