"""The ONNX conformance suite on symfuse: every node test case the onnx package
generates (``onnx.backend.test.case.node.collect_testcases``), run through
:mod:`symfuse.onnx.backend` on a symfuse device and compared with the expected
outputs the way onnx's own runner compares them (same shape, same dtype,
``np.testing.assert_allclose`` at the case's rtol/atol, NaNs in the same places).

Each case ends in one status, with a reason:

- ``passed``;
- ``failed``: a wrong result (which output, how far off), or a deliberate symfuse
  error (``OnnxError``, ``ShapeError``, a compile error ...) on a model the suite
  says is valid: ``rejected: <error>``;
- ``errored``: an exception symfuse did not mean to raise (a crash), a hang past
  the per-case timeout, or a worker process that died;
- ``unsupported``: ``OnnxUnsupported`` (an op, an attribute value, a dtype, an
  opset an op's rule does not follow): its ``reason``, which the report groups by;
  or a ``NotImplementedError`` a symfuse backend raises for a gap it names (the C
  runtime's float16 matmul): ``<device>: <message>``.

Cases run in worker processes (``jobs``), each case with a timeout, all compiling
into one ``SYMFUSE_CACHE_DIR``. ``python bench/onnx_conformance.py`` writes
``bench/results/onnx_conformance.json`` and ``.md`` (:func:`to_json`, :func:`markdown`).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

STATUSES = ("passed", "failed", "errored", "unsupported")
DEVICES = ("interp", "cpu", "cuda-emu")
SAMPLED = {"cuda-emu": 150}            # devices that run a random sample by default
REASON_CHARS = 400


@dataclass
class Outcome:
    status: str
    reason: str
    seconds: float = 0.0


# ----------------------------------------------------------------------------- cases
def collect_cases() -> list:
    """Every node test case of the installed onnx, sorted by name."""
    from onnx.backend.test.case import node
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    return sorted(cases, key=lambda c: c.name)


def case_op(case, by_name: dict | None = None) -> str:
    """The ONNX op a case tests: its node's op type (an ``_expanded`` case, a function
    body of many nodes, tests the op of the case it expands)."""
    nodes = case.model.graph.node
    if "_expanded" in case.name and by_name is not None:
        base = by_name.get(re.sub(r"_expanded.*$", "", case.name))
        if base is not None:
            return case_op(base)
    return nodes[0].op_type if len(nodes) == 1 else "+".join(sorted({n.op_type for n in nodes}))


def _array(x):
    import onnx
    if isinstance(x, onnx.TensorProto):
        return onnx.numpy_helper.to_array(x)
    if isinstance(x, (list, tuple)):
        return [_array(y) for y in x]
    return x if x is None else np.asarray(x)


# ----------------------------------------------------------------------------- comparing
def compare(expected: list, got: list, rtol: float, atol: float) -> str | None:
    """None when ``got`` matches ``expected`` as onnx's runner requires, else what differs."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        e = _array(e)
        if isinstance(e, list):
            return f"output {i}: a sequence is expected"
        g = np.asarray(g)
        if g.shape != e.shape:
            return f"output {i}: shape {g.shape}, expected {e.shape}"
        if e.dtype == object:
            if not np.array_equal(g, e):
                return f"output {i}: strings differ"
            continue
        if g.dtype != e.dtype:
            return f"output {i}: dtype {g.dtype}, expected {e.dtype}"
        try:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
        except AssertionError:
            return f"output {i}: {mismatch(g, e, rtol, atol)}"
    return None


def mismatch(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str:
    """How two same-shaped arrays differ: NaN places, or the count and largest error."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    gn, wn = np.isnan(g), np.isnan(w)
    if (gn != wn).any():
        return f"NaN positions differ ({int((gn != wn).sum())} of {g.size} elements)"
    finite = ~wn
    with np.errstate(all="ignore"):
        err = np.where(finite & ~np.isnan(g - w), np.abs(g - w), 0.0)        # inf - inf: the same inf
        bad = finite & ~np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        rel = np.where(bad & (w != 0), err / np.abs(w), 0.0)
    k = int(bad.sum())
    return (f"{k} of {g.size} elements differ; max abs error {float(err.max()):.3g}, max rel error "
            f"{float(rel.max()):.3g} (rtol {rtol:g}, atol {atol:g})")


# ----------------------------------------------------------------------------- one case
def run_case(case, device: str) -> Outcome:
    """Run every data set of ``case`` on symfuse device ``device``."""
    from ..errors import SymfuseError
    from .backend import SymfuseBackend
    from .errors import OnnxUnsupported
    t0 = time.perf_counter()

    def outcome(status: str, reason: str) -> Outcome:
        return Outcome(status, _clip(reason), time.perf_counter() - t0)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rep = SymfuseBackend.prepare(case.model, symfuse_device=device)
            for k, (inputs, expected) in enumerate(case.data_sets):
                got = rep.run([_array(x) for x in inputs])
                problem = compare(list(expected), list(got), case.rtol, case.atol)
                if problem:
                    return outcome("failed", (f"data set {k}: " if len(case.data_sets) > 1 else "") + problem)
        return outcome("passed", "ok")
    except OnnxUnsupported as e:
        return outcome("unsupported", e.reason)
    except SymfuseError as e:
        return outcome("failed", f"rejected: {_describe(e)}")
    except NotImplementedError as e:
        if _raised_by_symfuse(e):              # a device's named gap (no float16 matmul in C)
            return outcome("unsupported", f"{device}: {e}")
        return outcome("errored", f"NotImplementedError: {e}")
    except Exception as e:  # noqa: BLE001 -- a crash is what this status reports
        return outcome("errored", f"{type(e).__name__}: {e}{_where(e)}")


def _describe(e: BaseException) -> str:
    """A deliberate error as a reason: a compile error by the compiler's first error
    line (not the temporary paths around it)."""
    text = str(e)
    if type(e).__name__ == "CompileError":
        first = re.search(r"[\w.-]+:\d+:\d+: error: [^\n]*", text)
        if first:
            text = f"{text.split(';')[0].split(' (')[0]}: {first.group(0)}"
    return f"{type(e).__name__}: {text}"


def _clip(text: str) -> str:
    root = os.environ.get("SYMFUSE_CACHE_DIR")
    text = " ".join(str(text).split())
    if root:
        text = text.replace(root, "$SYMFUSE_CACHE_DIR")
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."


def _raised_by_symfuse(e: BaseException) -> bool:
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and f"{os.sep}symfuse{os.sep}" in frames[-1].filename


def _where(e: BaseException) -> str:
    """The innermost symfuse frame of a crash, as `` (at path:line)``."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f"{os.sep}symfuse{os.sep}" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename[f.filename.rindex(os.sep + 'symfuse' + os.sep) + 1:]}:{f.lineno})"


# ----------------------------------------------------------------------------- worker pool
def _worker(conn, device: str, memory_mb: int, runner) -> None:
    if memory_mb:
        import resource
        limit = memory_mb * 2 ** 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            task = None
        if task is None:
            return
        i, case = task
        try:
            out = (runner or run_case)(case, device)
        except MemoryError:
            out = Outcome("errored", "MemoryError: past the worker's memory limit")
        conn.send((i, out.status, out.reason, out.seconds))


class _Slot:
    __slots__ = ("cases", "proc", "conn", "task", "started", "done")

    def __init__(self, ctx, cases, device, memory_mb, runner=None):
        self.cases = cases
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, device, memory_mb, runner), daemon=True)
        self.proc.start()
        child.close()
        self.task, self.started, self.done = None, 0.0, 0

    def give(self, i: int) -> None:
        self.task, self.started = i, time.monotonic()
        self.conn.send((i, self.cases[i]))

    def stop(self, kill: bool = False) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            if kill:
                self.proc.kill()
            else:
                self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_cases(cases: list, device: str, jobs: int = 2, timeout: float = 300.0, memory_mb: int = 6144,
              tasks_per_worker: int = 150, progress=None, runner=None) -> dict[str, Outcome]:
    """Run ``cases`` on ``device`` in ``jobs`` worker processes: name -> Outcome. A case
    past ``timeout`` seconds, or whose worker dies, is ``errored`` and its worker replaced;
    a worker is also replaced after ``tasks_per_worker`` cases (loaded libraries pile up).
    ``runner(case, device) -> Outcome`` (a module-level function) replaces ``run_case``."""
    import multiprocessing as mp
    from multiprocessing.connection import wait
    # never fork this process: a parent that has run OpenMP code (a test session, a notebook)
    # leaves libgomp's thread pool behind, and a forked child's first parallel region hangs
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    pending, results = deque(range(len(cases))), {}
    slots = [_Slot(ctx, cases, device, memory_mb, runner) for _ in range(max(1, min(jobs, len(cases))))]

    def finish(slot, out: Outcome):
        name = cases[slot.task].name
        results[name] = out
        slot.task, slot.done = None, slot.done + 1
        if progress:
            progress(len(results), len(cases), name, out)

    def replace(k, kill):
        slots[k].stop(kill)
        slots[k] = _Slot(ctx, cases, device, memory_mb, runner)

    try:
        while pending or any(s.task is not None for s in slots):
            for k, s in enumerate(slots):
                if s.task is None and pending:
                    if s.done >= tasks_per_worker:
                        replace(k, kill=False)
                    slots[k].give(pending.popleft())
            busy = [s for s in slots if s.task is not None]
            deadline = min(s.started for s in busy) + timeout
            for conn in wait([s.conn for s in busy], timeout=max(0.05, deadline - time.monotonic())):
                k = next(k for k, s in enumerate(slots) if s.conn is conn)
                s = slots[k]
                try:
                    i, status, reason, seconds = s.conn.recv()
                except (EOFError, OSError):
                    s.proc.join(5)
                    finish(s, Outcome("errored", f"worker died ({_exit(s.proc.exitcode)})",
                                      time.monotonic() - s.started))
                    replace(k, kill=True)
                    continue
                finish(s, Outcome(status, reason, seconds))
            now = time.monotonic()
            for k, s in enumerate(slots):
                if s.task is not None and now - s.started > timeout:
                    finish(s, Outcome("errored", f"timeout: no result after {timeout:g} s", now - s.started))
                    replace(k, kill=True)
    finally:
        for s in slots:
            s.stop(kill=s.task is not None)
    return {c.name: results[c.name] for c in cases}


def _exit(code) -> str:
    import signal
    names = {-int(s): s.name for s in signal.Signals}
    return f"exit status {code}" if code is None or code >= 0 else f"signal {names.get(code, -code)}"


# ----------------------------------------------------------------------------- the suite
@contextlib.contextmanager
def cache_dir_env(cache_dir: str | None):
    """``SYMFUSE_CACHE_DIR`` set to ``cache_dir`` (None: a fresh private temporary
    directory, removed afterwards) while the suite runs."""
    root = cache_dir or tempfile.mkdtemp(prefix="symfuse-onnx-conformance-")
    old = os.environ.get("SYMFUSE_CACHE_DIR")
    os.environ["SYMFUSE_CACHE_DIR"] = root
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("SYMFUSE_CACHE_DIR", None)
        else:
            os.environ["SYMFUSE_CACHE_DIR"] = old
        if cache_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def choose(cases: list, n: int | None, seed: int) -> list:
    """A random sample of ``n`` cases (seeded; in name order), or all for None/0."""
    if not n or n >= len(cases):
        return list(cases)
    keep = set(random.Random(seed).sample(range(len(cases)), n))
    return [c for i, c in enumerate(cases) if i in keep]


def _warm_up(device: str) -> None:
    """Import what every case needs once, before the workers fork."""
    import importlib
    for module in ("..compiler.pipeline", "..runtime.function", ".backend"):
        importlib.import_module(module, __package__)
    from ..runtime.backends import get_backend
    from .registry import _load_rules
    _load_rules()
    get_backend(device)


def run_device(cases: list, device: str, ops: dict, jobs: int = 2, timeout: float = 300.0,
               sample: dict | None = None, verbose: bool = False) -> dict:
    """One device's results: counts, wall time, and each case's status and reason."""
    from .backend import device_available
    if not device_available(device):
        return {"unavailable": f"device {device!r} cannot run here"}
    _warm_up(device)
    counts = Counter()

    def progress(done, total, name, out):
        counts[out.status] += 1
        if verbose and (done % 100 == 0 or done == total or out.status == "errored"):
            line = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
            print(f"  {device}: {done}/{total} ({line}){' -- errored: ' + name if out.status == 'errored' else ''}",
                  file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    res = run_cases(cases, device, jobs=jobs, timeout=timeout, progress=progress)
    wall = time.perf_counter() - t0
    summary = {s: sum(o.status == s for o in res.values()) for s in STATUSES}
    summary.update(total=len(res), sample=sample, wall_s=round(wall, 1), jobs=jobs,
                   slowest=[[n, round(o.seconds, 2)] for n, o in
                            sorted(res.items(), key=lambda kv: -kv[1].seconds)[:10]],
                   cases={n: {"status": o.status, "reason": o.reason, "op": ops[n]} for n, o in res.items()})
    return summary


def run_suite(devices=DEVICES, sample: dict | None = None, seed: int = 0, jobs: int = 2, timeout: float = 300.0,
              cache_dir: str | None = None, match: str | None = None, verbose: bool = False) -> dict:
    """Run the node suite on each of ``devices``. ``sample``: device -> number of cases
    to draw at random with ``seed`` (default: 150 on cuda-emu; the others run every
    case); ``match``: only cases whose name matches this regular expression (for
    debugging a converter: the result is not the suite's score)."""
    import onnx
    sample = SAMPLED if sample is None else sample
    cases = collect_cases()
    by_name = {c.name: c for c in cases}
    ops = {c.name: case_op(c, by_name) for c in cases}
    if match:
        cases = [c for c in cases if re.search(match, c.name)]
    out = {"meta": {"onnx_version": onnx.__version__, "suite_cases": len(by_name), "match": match},
           "devices": {}}
    t0 = time.perf_counter()
    with cache_dir_env(cache_dir):
        for device in devices:
            n = sample.get(device)
            chosen = choose(cases, n, seed)
            info = {"n": len(chosen), "seed": seed} if len(chosen) < len(cases) else None
            if verbose:
                print(f"{device}: {len(chosen)} cases, {jobs} jobs", file=sys.stderr, flush=True)
            out["devices"][device] = run_device(chosen, device, ops, jobs, timeout, info, verbose)
    out["meta"]["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def changes(old: dict, new: dict) -> list[str]:
    """Cases of one device whose status moved away from ``passed``, or to ``errored``
    (``old``/``new``: a device's entry in the results)."""
    lines = []
    oc, nc = old.get("cases", {}), new.get("cases", {})
    for name, n in sorted(nc.items()):
        o = oc.get(name, {"status": "absent", "reason": ""})
        if n["status"] != o["status"] and (o["status"] == "passed" or n["status"] == "errored"):
            lines.append(f"{name}: {o['status']} -> {n['status']}: {n['reason']}")
    return lines


# ----------------------------------------------------------------------------- the report
def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _label(device: str, d: dict) -> str:
    return f"{device} (sample)" if d.get("sample") else device


def markdown(results: dict) -> str:
    """The report: scores, then failed and errored cases one by one, then the
    unsupported cases grouped by reason."""
    meta = results.get("meta", {})
    devs = {k: v for k, v in results.get("devices", {}).items() if "cases" in v}
    lines = ["# ONNX conformance: the node test suite on symfuse", "",
             f"Every node test case of onnx {meta.get('onnx_version', '?')} ({meta.get('suite_cases', '?')} cases), "
             "run through `symfuse.onnx.backend` and compared as onnx's runner compares (shape, dtype, "
             "`assert_allclose` at the case's rtol/atol, NaN places). Generated by `python bench/onnx_conformance.py`.",
             "", "## Score", "",
             "| device | cases | passed | failed | errored | not supported | passed % | wall time | jobs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for device, d in results.get("devices", {}).items():
        if "cases" not in d:
            lines.append(f"| {device} | {_md(d.get('unavailable', 'not run'))} ||||||||")
            continue
        s = d.get("sample")
        cases = f"{d['total']} (sample, seed {s['seed']})" if s else str(d["total"])
        lines.append(f"| {device} | {cases} | {d['passed']} | {d['failed']} | {d['errored']} | {d['unsupported']} | "
                     f"{100 * d['passed'] / max(1, d['total']):.1f} | {d['wall_s']:.0f} s | {d.get('jobs', '')} |")
    lines += ["", "Failed: a wrong result, or a deliberate symfuse error on a valid model (`rejected:`). "
              "Errored: a crash (an exception symfuse did not mean to raise), a timeout or a dead worker. "
              "Not supported: `OnnxUnsupported`, with its reason, or a gap a symfuse device names "
              "(`<device>: ...`, a `NotImplementedError` of its code generator).", ""]
    lines += _bad_section(devs) + _unsupported_section(devs)
    return "\n".join(lines) + "\n"


def _bad_section(devs: dict) -> list[str]:
    bad: dict[str, dict] = {}
    for device, d in devs.items():
        for name, c in d["cases"].items():
            if c["status"] in ("failed", "errored"):
                bad.setdefault(name, {"op": c.get("op", "")})[device] = (c["status"], c["reason"])
    lines = ["## Failed and errored", ""]
    if not bad:
        return lines + ["None.", ""]
    by_op = Counter(v["op"] for v in bad.values())
    lines += ["By op (cases failed or errored on any device):", "",
              ", ".join(f"{op} {k}" for op, k in by_op.most_common()), "",
              "| case | op | device | status | reason |", "|---|---|---|---|---|"]
    for name in sorted(bad, key=lambda n: (bad[n]["op"], n)):
        entry = bad[name]
        groups: dict[tuple, list] = {}
        for device in devs:
            if device in entry:
                groups.setdefault(entry[device], []).append(_label(device, devs[device]))
        for (status, reason), where in groups.items():
            lines.append(f"| `{name}` | {entry['op']} | {', '.join(where)} | {status} | {_md(reason)} |")
    return lines + [""]


def _unsupported_section(devs: dict) -> list[str]:
    per: dict[str, Counter] = {}
    examples: dict[str, dict] = {}                 # reason -> case names (a dict keeps their order)
    for device, d in devs.items():
        for name, c in d["cases"].items():
            if c["status"] == "unsupported":
                per.setdefault(c["reason"], Counter())[device] += 1
                examples.setdefault(c["reason"], {})[name] = None
    first = next(iter(devs), None)
    order = sorted(per, key=lambda r: (-per[r][first] if first else 0, -sum(per[r].values()), r))
    lines = ["## Not supported, by reason", "",
             "| reason | " + " | ".join(_label(k, v) for k, v in devs.items()) + " | cases (first 3) |",
             "|---|" + "---:|" * len(devs) + "---|"]
    for r in order:
        names = list(examples[r])
        ex = ", ".join(f"`{n}`" for n in names[:3]) + (" ..." if len(names) > 3 else "")
        lines.append(f"| {_md(r)} | " + " | ".join(str(per[r][k]) for k in devs) + f" | {ex} |")
    return lines + [""]


def to_json(results: dict) -> str:
    """The results as JSON with one line per case (a diff shows which cases moved)."""
    text = json.dumps(results, indent=1)
    return re.sub(r'\{\n\s+"status": (.*),\n\s+"reason": (.*),\n\s+"op": (.*)\n\s+\}',
                  r'{"status": \1, "reason": \2, "op": \3}', text) + "\n"


def merge(old: dict | None, new: dict) -> dict:
    """``new``'s devices over ``old``'s (a run of one device keeps the others' results)."""
    old = old or {}
    return {"meta": {**old.get("meta", {}), **new["meta"]}, "devices": {**old.get("devices", {}), **new["devices"]}}
