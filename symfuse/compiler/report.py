"""CompileReport: where compile time went, stage by stage, and what each pass did."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field


@dataclass
class Stage:
    name: str
    start: float            # seconds since the report began
    seconds: float
    ops_before: int | None = None
    ops_after: int | None = None
    rewrites: dict = field(default_factory=dict)
    note: str = ""


class CompileReport:
    def __init__(self, name: str = "main"):
        self.name = name
        self.t0 = time.perf_counter()
        self.stages: list[Stage] = []
        self.total_seconds = 0.0
        self.info: dict = {}

    @contextmanager
    def stage(self, name: str, **kw):
        st = Stage(name, time.perf_counter() - self.t0, 0.0, **kw)
        t = time.perf_counter()
        try:
            yield st
        finally:
            st.seconds = time.perf_counter() - t
            self.stages.append(st)

    def add_stage(self, name: str, seconds: float, **kw) -> Stage:
        """Record a stage that was timed elsewhere (and just ended)."""
        st = Stage(name, time.perf_counter() - self.t0 - seconds, seconds, **kw)
        self.stages.append(st)
        return st

    def add_if_slow(self, name: str, t0: float, note: str = "", threshold: float = 1e-3) -> None:
        """A stage from ``t0`` to now when it took longer than ``threshold``: work
        done once per process (importing the compile path), shown where it happens."""
        dt = time.perf_counter() - t0
        if dt > threshold:
            self.add_stage(name, dt, note=note)

    def finish(self):
        self.total_seconds = time.perf_counter() - self.t0

    # ---------------------------------------------------------------- views
    def rewrite_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.stages:
            for k, v in s.rewrites.items():
                out[k] = out.get(k, 0) + v
        return out

    def table(self) -> str:
        """One row per stage name (fixpoint rounds of a pass are summed: ``x3``)."""
        agg: dict[str, list] = {}
        for s in self.stages:
            row = agg.get(s.name)
            if row is None:
                agg[s.name] = [s.seconds, s.ops_before, s.ops_after, sum(s.rewrites.values()), 1, s.note]
            else:
                row[0] += s.seconds
                row[2] = s.ops_after
                row[3] += sum(s.rewrites.values())
                row[4] += 1
        rows = [("stage", "ms", "ops", "rewrites", "note")]
        for name, (sec, b, a, rw, n, note) in agg.items():
            ops = f"{b}->{a}" if b is not None else ""
            rows.append((name + (f" x{n}" if n > 1 else ""), f"{sec * 1e3:.2f}", ops, str(rw) if rw else "", note))
        rows.append(("total", f"{self.total_seconds * 1e3:.2f}", "", "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"compile report for @{self.name}"]
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if j in (0, 4) else c.rjust(w)
                                   for j, (c, w) in enumerate(zip(r, widths))).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    __str__ = table

    def __repr__(self):
        return self.table()

    def to_json(self) -> str:
        return json.dumps({"function": self.name, "total_seconds": self.total_seconds,
                           "stages": [asdict(s) for s in self.stages], "info": self.info}, indent=2)

    def to_chrome_trace(self, path: str) -> None:
        """Trace Event Format (chrome://tracing, Perfetto): one complete event per stage."""
        events = [{"name": s.name, "ph": "X", "ts": s.start * 1e6, "dur": s.seconds * 1e6,
                   "pid": os.getpid(), "tid": 0, "cat": "compile",
                   "args": {"ops_before": s.ops_before, "ops_after": s.ops_after, **s.rewrites}}
                  for s in self.stages]
        with open(path, "w") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)
