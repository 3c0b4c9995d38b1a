"""CompileReport: where compile time went, stage by stage, and what each pass did.

Stages nest: one opened (or recorded by ``add_stage``) while another is open ran
inside it and is its child (``Stage.parent``, an index into ``report.stages``).
A parent's seconds include its children's, so siblings add up to at most their
parent and the top-level stages to at most ``total_seconds``; the rest is time
between stages (argument checks, cache lookups that are not stages of their own)."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from ..ir.symdim import spelled


@dataclass
class Stage:
    name: str
    start: float            # seconds since the report began
    seconds: float
    ops_before: int | None = None
    ops_after: int | None = None
    rewrites: dict = field(default_factory=dict)
    note: str = ""
    parent: int | None = None   # index in ``CompileReport.stages`` of the stage this ran inside
    depth: int = 0              # 0: top level


class CompileReport:
    def __init__(self, name: str = "main"):
        self.name = name
        self.t0 = time.perf_counter()
        self.stages: list[Stage] = []
        self.total_seconds = 0.0
        self.info: dict = {}
        # indices of the stages open now, innermost last; stages are opened by the
        # compiling thread only (worker threads are given no report)
        self._open: list[int] = []

    def _record(self, st: Stage) -> int:
        if self._open:
            st.parent = self._open[-1]
            st.depth = self.stages[st.parent].depth + 1
        self.stages.append(st)
        return len(self.stages) - 1

    @contextmanager
    def stage(self, name: str, **kw):
        """Time the block as a stage; recorded when it opens, so ``stages`` lists a
        parent before its children."""
        st = Stage(name, time.perf_counter() - self.t0, 0.0, **kw)
        i = self._record(st)
        self._open.append(i)
        t = time.perf_counter()
        try:
            yield st
        finally:
            st.seconds = time.perf_counter() - t
            self._open.remove(i)

    def add_stage(self, name: str, seconds: float | None = None, *, since: float | None = None, **kw) -> Stage:
        """Record a stage that was timed elsewhere and just ended: it took ``seconds``,
        or began at ``since`` (a ``time.perf_counter()`` reading). Closed sibling
        stages that began after it began ran inside it and become its children;
        ``since`` places that start exactly, ``seconds`` a little late (by the time
        between the caller's clock read and this call). It is listed after them."""
        now = time.perf_counter()
        if since is not None:
            seconds = now - since
        st = Stage(name, now - self.t0 - seconds, seconds, **kw)
        i = self._record(st)
        inside = [j for j in range(i) if self.stages[j].parent == st.parent and j not in self._open
                  and self.stages[j].start >= st.start]
        for j in inside:
            self.stages[j].parent = i
        if inside:
            self._redepth()
        return st

    def _redepth(self) -> None:
        for s in self.stages:
            d, p = 0, s.parent
            while p is not None:
                d, p = d + 1, self.stages[p].parent
            s.depth = d

    def add_if_slow(self, name: str, t0: float, note: str = "", threshold: float = 1e-3) -> None:
        """A stage from ``t0`` to now when it took longer than ``threshold``: work
        done once per process (importing the compile path), shown where it happens."""
        if time.perf_counter() - t0 > threshold:
            self.add_stage(name, since=t0, note=note)

    def finish(self):
        self.total_seconds = time.perf_counter() - self.t0

    # ---------------------------------------------------------------- views
    def rewrite_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.stages:
            for k, v in s.rewrites.items():
                out[k] = out.get(k, 0) + v
        return out

    def children(self, index: int | None = None) -> list[Stage]:
        """The stages that ran directly inside ``stages[index]`` (``None``: the top
        level), in the order they began."""
        return sorted((s for s in self.stages if s.parent == index), key=lambda s: s.start)

    def table(self) -> str:
        """One row per stage name under the same parent (fixpoint rounds of a pass are
        summed: ``x3``); children are indented under their parent, whose time includes
        theirs."""
        kids: dict[int | None, list[int]] = {}
        for i, s in enumerate(self.stages):
            kids.setdefault(s.parent, []).append(i)
        tree: dict = {}     # name -> [sec, before, after, rewrites, count, note, subtree]

        def add(parent, level: dict) -> None:
            for i in sorted(kids.get(parent, ()), key=lambda j: self.stages[j].start):
                s = self.stages[i]
                row = level.get(s.name)
                if row is None:
                    row = level[s.name] = [s.seconds, s.ops_before, s.ops_after, sum(s.rewrites.values()), 1,
                                           s.note, {}]
                else:
                    row[0] += s.seconds
                    row[2] = s.ops_after
                    row[3] += sum(s.rewrites.values())
                    row[4] += 1
                add(i, row[6])
        add(None, tree)

        rows = [("stage", "ms", "ops", "rewrites", "note")]

        def render(level: dict, depth: int) -> None:
            for name, (sec, b, a, rw, n, note, sub) in level.items():
                ops = f"{b}->{a}" if b is not None else ""
                rows.append(("  " * depth + name + (f" x{n}" if n > 1 else ""), f"{sec * 1e3:.2f}", ops,
                             str(rw) if rw else "", note))
                render(sub, depth + 1)
        render(tree, 0)
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
        """The report as JSON; each stage carries ``parent`` (its index in ``stages``,
        null at the top level) and ``depth``."""
        return json.dumps({"function": self.name, "total_seconds": self.total_seconds,
                           "stages": [asdict(s) for s in self.stages], "info": spelled(self.info)}, indent=2)

    def to_chrome_trace(self, path: str) -> None:
        """Trace Event Format (chrome://tracing, Perfetto): one complete event per stage."""
        events = [{"name": s.name, "ph": "X", "ts": s.start * 1e6, "dur": s.seconds * 1e6,
                   "pid": os.getpid(), "tid": 0, "cat": "compile",
                   "args": {"ops_before": s.ops_before, "ops_after": s.ops_after, "depth": s.depth, **s.rewrites}}
                  for s in self.stages]
        with open(path, "w") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)

