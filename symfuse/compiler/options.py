"""What the caller chooses about a compile (``sf.function``'s keywords): part of
the graph-cache key, so it lives apart from the passes it steers (a graph-cache
hit imports no pass)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Options:
    optimize: bool = True
    fast_math: bool = False
    verify: bool = True
    disabled: tuple = ()          # rewrite or pass names to skip
    extra: dict = field(default_factory=dict)
