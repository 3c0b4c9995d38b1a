"""The interface every device implements: ``Backend`` (what ``sf.function`` asks
of a device) and ``Program`` (what a compile returns and a call runs). A backend
overrides only what differs from these defaults."""
from __future__ import annotations

from .cache import DiskCache, environment_cache


class Program:
    """A compiled function: ``program(arrays) -> arrays`` (inputs, then the shared
    variables' values; outputs, then the updated values)."""

    device_values = False     # results may be DeviceValues kept on the device between calls
    kernels: list = []        # what f.kernels shows (KernelInfo, CudaKernel, ...)
    source: str | None = None

    def __call__(self, arrays: list) -> list:
        raise NotImplementedError

    def recycle(self, result: int, array) -> None:
        """``array``, the previous value of a shared variable updated from ``result``
        and referenced nowhere else, may hold that result next call (a backend that
        writes results into buffers of its own overrides this)."""

    def profile(self) -> list[tuple[str, float, int]]:
        """(kernel, mean seconds per call, calls) for a function compiled with profile=True."""
        raise ValueError("this device has no per-kernel profile")


class Backend:
    """A device ``sf.function`` can compile for.

    ``options``: the keyword options ``sf.function`` accepts for it (anything else
    is an error naming the closest one). ``graph_cache``: its compiles can be
    stored in and restored from the graph cache (``identity``, ``export``,
    ``load``)."""

    name: str = ""
    options: frozenset = frozenset()
    graph_cache: bool = False

    def missing(self) -> list[str]:
        """What this machine lacks for the device, each with how to get it."""
        return []

    def available(self) -> bool:
        """It can compile here."""
        return not self.missing()

    def runnable(self) -> bool:
        """It can also run here (a GPU device may compile without a GPU)."""
        return self.available()

    @property
    def cache(self) -> DiskCache:
        return environment_cache()

    def prepare(self, report) -> None:
        """One-time work before a compile (building a runtime library), shown in the
        report as a stage of its own rather than inside the graph-cache lookup."""

    def compile(self, fn, options: dict, report) -> Program:
        raise NotImplementedError

    def identity(self) -> str:
        """What, besides the graph and options, decides the compiled artefact."""
        return self.name

    def export(self, program: Program, report) -> dict:
        """The graph-cache entry of ``program``: plain data (``runtime/plain.py``)."""
        raise NotImplementedError

    def load(self, entry: dict, report) -> Program | None:
        """A program from a graph-cache entry, or None when it cannot be used (a miss)."""
        return None
