"""Shared plumbing of the side-by-side studies (bench/study_*.py): the common
command-line options, fresh cache directories, one measurement per fresh
child process (bench/peers.py --child), and the json / markdown / png outputs.
"""
from __future__ import annotations

import argparse
import ctypes.util
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import peers  # noqa: E402

CACHE_VARS = ("SYMFUSE_CACHE_DIR", "PYTENSOR_FLAGS (compiledir=)", "JAX_COMPILATION_CACHE_DIR",
              "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def add_common_args(ap: argparse.ArgumentParser, frameworks=peers.FRAMEWORKS) -> None:
    ap.add_argument("--frameworks", default=None,
                    help=f"comma-separated subset of: {','.join(frameworks)} (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test mode: fewer repeats and steps, smaller sweeps; writes to bench/results/quick/")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every framework (OMP/OpenBLAS/MKL, torch.set_num_threads, XLA's eigen pool "
                         "when 1); default: each framework's own default")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed for one child process")
    ap.add_argument("--out-dir", default=None,
                    help="where <study>.json/.md/.png go (default bench/results, or bench/results/quick with --quick)")
    ap.add_argument("--allow-errors", action="store_true",
                    help="exit 0 even when a measurement failed (failures are still recorded in the outputs)")


def portable(arg: str) -> str:
    """A command-line argument as recorded in the results: a path inside the repository
    relative to it, so that the record names no directory of the machine it ran on."""
    flag, eq, value = arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
    if os.path.isabs(value) and os.path.abspath(value).startswith(ROOT + os.sep):
        value = os.path.relpath(value, ROOT)
    return flag + eq + value


def out_dir(args) -> str:
    if args.out_dir:
        return args.out_dir
    return os.path.join(HERE, "results", "quick") if args.quick else os.path.join(HERE, "results")


def pytensor_blas_flags() -> str | None:
    """-lopenblas where a system OpenBLAS is installed (pip's PyTensor finds no BLAS by itself and
    then runs matrix products through numpy, from Python)."""
    user = os.environ.get("PYTENSOR_FLAGS", "")
    if "blas__ldflags" in user or "blas.ldflags" in user:
        return None
    return "-lopenblas" if ctypes.util.find_library("openblas") else None


def child_env(cache_root: str, threads: int | None = None) -> dict:
    """The environment of one child: every framework's compile cache under cache_root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["SYMFUSE_CACHE_DIR"] = os.path.join(cache_root, "symfuse")
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("compiledir=")]
    flags.append("compiledir=" + os.path.join(cache_root, "pytensor"))
    if not any(f.startswith("floatX") for f in flags):
        flags.append("floatX=float32")
    blas = pytensor_blas_flags()
    if blas:
        flags.append("blas__ldflags=" + blas)
    env["PYTENSOR_FLAGS"] = ",".join(flags)
    env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(cache_root, "jax")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_root, "inductor")
    env["TRITON_CACHE_DIR"] = os.path.join(cache_root, "triton")
    if threads:
        for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BENCH_THREADS"):
            env[v] = str(threads)
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                                " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    return env


# Linux keeps the peak RSS of the image a process replaces: a child exec'd straight from this
# (fork or vfork) reports at least this process's RSS in ru_maxrss. Started by a shell that forks
# it, the child's ru_maxrss starts from the shell's few MiB instead.
TRAMPOLINE = ["/bin/sh", "-c", '"$0" "$@"; exit $?']


def spawn(cmd: list[str], env: dict, timeout: float | None) -> tuple[int | None, str, str, float]:
    """Run cmd through TRAMPOLINE in its own process group; (returncode or None on timeout, stdout,
    stderr, wall seconds). A timeout kills the whole group (the child and its compilers)."""
    t = time.perf_counter()
    p = subprocess.Popen(TRAMPOLINE + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=ROOT, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err, time.perf_counter() - t
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return None, out, err, time.perf_counter() - t


def parse_result(rc, out: str, err: str, wall: float, framework, timeout) -> dict:
    if rc is None:
        return {"framework": framework, "status": "timeout", "wall_s": wall,
                "error": f"no result within {timeout:.0f} s"}
    for line in reversed(out.splitlines()):
        if line.startswith(peers.RESULT_MARK):
            res = json.loads(line[len(peers.RESULT_MARK):])
            res["wall_s"] = wall
            if res.get("status") == "error":
                res["stderr_tail"] = err[-2000:]
            return res
    return {"framework": framework, "status": "error", "wall_s": wall,
            "error": f"child exited {rc} without a result: {(err or out)[-1500:]}"}


def run_child(job: dict, env: dict, timeout: float | None, script: str | None = None) -> dict:
    """Run one job in a fresh interpreter; a dict with status ok | error | timeout."""
    cmd = [sys.executable, script or os.path.join(HERE, "peers.py"), "--child", json.dumps(job)]
    rc, out, err, wall = spawn(cmd, env, timeout)
    return parse_result(rc, out, err, wall, job.get("framework"), timeout)


class Study:
    """One study run: options, a scratch directory for caches, results, outputs."""

    def __init__(self, name: str, args, frameworks_allowed=peers.FRAMEWORKS, default=None):
        self.name, self.args = name, args
        self.frameworks = peers.parse_frameworks(args.frameworks, frameworks_allowed, default or frameworks_allowed)
        peers.check_frameworks(self.frameworks)
        self.scratch = tempfile.mkdtemp(prefix=f"symfuse-bench-{name}-")
        self.errors: list[str] = []
        self.t0 = time.time()
        self.meta = {"study": name, "argv": [portable(a) for a in sys.argv[1:]], "quick": bool(args.quick), "frameworks": self.frameworks,
                     "threads": args.threads or "framework defaults",
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine_info(), "loadavg_start": os.getloadavg(), "versions": {}}

    # what a symfuse compile cache keeps across `cache prune --max-size 0`: the libraries
    # built once per installation and cache, not per compile
    INSTALLATION_KEEPS = ("runtime", "jinja", "hmac.key")

    def fresh_cache(self, tag: str) -> str:
        d = tempfile.mkdtemp(prefix=f"{tag}-", dir=self.scratch)
        seed = getattr(self, "installation_cache", None)
        if seed:     # permissions kept: symfuse accepts only a private cache
            shutil.copytree(seed, os.path.join(d, "symfuse"), symlinks=True)
        return d

    def keep_installation_builds(self, cache_root: str) -> None:
        """Every later fresh cache starts from ``cache_root``'s symfuse cache, emptied
        of all but the runtime libraries and Jinja's bytecode: a cold compile then
        pays for what each compile pays for, as after ``pip install``."""
        seed = os.path.join(cache_root, "symfuse")
        for name in os.listdir(seed):
            if name not in self.INSTALLATION_KEEPS:
                p = os.path.join(seed, name)
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
        self.installation_cache = seed

    def run(self, job: dict, cache_root: str, timeout: float | None = None, what: str = "",
            script: str | None = None) -> dict:
        """script: the child's builder module (default bench/peers.py; study_rnn uses peers_rnn.py)."""
        timeout = timeout or self.args.timeout
        res = run_child(job, child_env(cache_root, self.args.threads), timeout, script)
        if res.get("versions"):
            self.meta["versions"].setdefault(res["framework"], res["versions"])
        info = res.get("info") or {}
        if "blas_ldflags" in info and "pytensor_blas_ldflags" not in self.meta:
            self.meta["pytensor_blas_ldflags"] = info["blas_ldflags"] or (
                "(empty: PyTensor found no BLAS and runs matrix products through numpy, from Python; "
                "apt-get install libopenblas-dev lets the harness pass -lopenblas)")
        status = res.get("status")
        tag = f"{res.get('framework')} {what}".strip()
        if status == "ok":
            log(f"  {tag}: ok ({res.get('wall_s', 0):.1f} s wall)")
        else:
            log(f"  {tag}: {status.upper()}: {res.get('error', '')[:400]}")
        return res

    def record_error(self, msg: str) -> None:
        self.errors.append(msg)

    def finish(self, payload: dict, md: str, fig=None) -> int:
        d = out_dir(self.args)
        os.makedirs(d, exist_ok=True)
        self.meta["loadavg_end"] = os.getloadavg()
        self.meta["wall_s"] = time.time() - self.t0
        self.meta["errors"] = self.errors
        base = os.path.join(d, self.name)
        with open(base + ".json", "w") as fh:
            json.dump({"meta": self.meta, **payload}, fh, indent=2, default=_json_default)
        with open(base + ".md", "w") as fh:
            fh.write(md_header(self) + md)
        if fig is not None:
            fig.savefig(base + ".png", dpi=110, bbox_inches="tight")
        shutil.rmtree(self.scratch, ignore_errors=True)
        log(f"wrote {base}.json, {base}.md" + (f", {base}.png" if fig is not None else ""))
        if self.errors:
            log(f"{len(self.errors)} measurement(s) failed:\n  " + "\n  ".join(self.errors))
            if not self.args.allow_errors:
                log("exit status 1 (pass --allow-errors to exit 0 anyway)")
                return 1
        return 0


def _json_default(o):
    if isinstance(o, (set, tuple)):
        return list(o)
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    return str(o)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "mem_gib": mem, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "cc": shutil.which("cc") or shutil.which("gcc")}


# ------------------------------------------------------------------------------------------- formatting


def fmt_s(v) -> str:
    """Seconds, human-sized; '-' for None; strings pass through."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1:
        return f"{v:.2f} s"
    if a >= 1e-3:
        return f"{v * 1e3:.1f} ms"
    return f"{v * 1e6:.0f} us"


def md_table(headers, rows, align=None) -> str:
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out) + "\n"


def md_header(study: Study) -> str:
    m = study.meta
    mach = m["machine"]
    lines = [f"# {study.name}", ""]
    if m["quick"]:
        lines += ["**QUICK MODE** (`--quick`): a smoke test of the harness with few repeats; "
                  "the numbers are not measurements.", ""]
    lines += [f"- machine: {mach['cpu']}, {mach['cores']} cores, {mach['mem_gib']} GiB, {mach['os']}, "
              f"Python {mach['python']}",
              f"- load average at start / end: {fmt_load(m['loadavg_start'])} / {fmt_load(m.get('loadavg_end'))} "
              "(a busy machine makes every number noisy)",
              f"- threads: {m['threads']}",
              f"- command: `python bench/{os.path.basename(sys.argv[0])} {' '.join(m['argv'])}`".rstrip() + f" ({m['started']})"]
    vers = {}
    for fw, v in m["versions"].items():
        for k, x in v.items():
            vers.setdefault(k, x)
    if vers:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items())))
    if "pytensor_blas_ldflags" in m:
        lines.append(f"- PyTensor BLAS: {m['pytensor_blas_ldflags']}")
    if m.get("errors"):
        lines.append(f"- **{len(m['errors'])} measurement(s) failed**, see the end of this file")
    return "\n".join(lines) + "\n\n"


def fmt_load(v) -> str:
    return "?" if not v else "/".join(f"{x:.2f}" for x in v)


def md_errors(study: Study) -> str:
    if not study.errors:
        return ""
    return "\n## Failures\n\n" + "\n".join(f"- `{e[:600]}`" for e in study.errors) + "\n"


def median_minmax(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def fmt_mm(med, lo, hi, n) -> str:
    if med is None:
        return "-"
    if n <= 1:
        return fmt_s(med)
    return f"{fmt_s(med)} ({fmt_s(lo)}-{fmt_s(hi)})"


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


COLORS = {"symfuse-cpu": "#d62728", "symfuse-cuda-aot": "#ff9896", "pytensor": "#2ca02c", "jax": "#1f77b4",
          "torch-eager": "#ff7f0e", "torch-compile": "#9467bd", "numpy": "#7f7f7f",
          "symfuse-cuda": "#d62728", "symfuse-cuda (kernels)": "#ff9896", "jax-cuda": "#1f77b4",
          "torch-cuda-eager": "#ff7f0e", "torch-cuda-compile": "#9467bd"}


# symfuse CompileReport stage names -> the groups the studies report
SF_STAGE_GROUPS = (
    ("build graph", ("build graph",)),
    ("passes", ("verify", "pre.", "differentiate", "post.", "dce", "optimize")),
    ("fusion + memory plan", ("fusion", "memory plan")),
    ("codegen", ("codegen",)),
    ("C / NVRTC compile", ("c compile", "nvrtc", "emu compile")),
    ("select backend", ("select backend",)),
    ("cache look-up / store / load", ("graph cache", "load")),
)


def sf_stage_groups(stages: dict) -> dict:
    """Aggregate symfuse's per-stage seconds into SF_STAGE_GROUPS (+ 'other')."""
    out = {g: 0.0 for g, _ in SF_STAGE_GROUPS}
    out["other"] = 0.0
    for name, sec in (stages or {}).items():
        for g, prefixes in SF_STAGE_GROUPS:
            if any(name == p or (p.endswith(".") and name.startswith(p)) or name.startswith(p + " ")
                   for p in prefixes):
                out[g] += sec
                break
        else:
            out["other"] += sec
    return out


def plain_log_y(ax) -> None:
    """Log y axis with plain-number tick labels (0.5, 20, 300, not 5x10^-1)."""
    from matplotlib.ticker import FuncFormatter
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def label_bars(ax, bars, values, unit="") -> None:
    """Write each bar's value above it."""
    for b, v in zip(bars, values):
        if v is None or v != v:
            continue
        ax.annotate(f"{v:.3g}{unit}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                    fontsize=6, xytext=(0, 1), textcoords="offset points")
