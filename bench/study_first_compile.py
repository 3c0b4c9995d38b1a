"""The first compile after ``pip install .``, against a later cold compile.

Installs this checkout into a fresh virtual environment (pip's cache makes the
dependencies cheap; the install itself builds the C runtime library, setup.py),
then runs ``symfuse compile MODEL`` in new processes, each with an empty compile
cache: the first one right after the install, then ``--repeat`` more. Writes
``bench/results/first_compile.md``.

    python bench/study_first_compile.py [--model mlp] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results", "first_compile.md")


def _run(cmd, env=None, cwd=None) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0, p.stdout + p.stderr


def _stages(text: str) -> dict:
    """The report's top-level rows: stage -> ms."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(\S.*?)\s{2,}([\d.]+)\b", line)
        if m and not line.startswith("-"):
            rows[m.group(1).strip()] = float(m.group(2))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="symfuse-first-")
    try:
        src = os.path.join(work, "src")
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "_build", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", ".hypothesis"))
        venv = os.path.join(work, "venv")
        _run([sys.executable, "-m", "venv", venv])
        pip = os.path.join(venv, "bin", "pip")
        install_s, log = _run([pip, "install", "-q", src])
        symfuse = os.path.join(venv, "bin", "symfuse")
        runs = []
        for i in range(1 + a.repeat):
            env = dict(os.environ, SYMFUSE_CACHE_DIR=os.path.join(work, f"cache{i}"))
            wall, text = _run([symfuse, "compile", a.model], env=env, cwd=work)
            st = _stages(text)
            runs.append({"wall_s": wall, "total_ms": st.get("total"), "runtime_build_ms": st.get("runtime library build", 0.0),
                         "c_compile_ms": st.get("c compile")})
        first, later = runs[0], runs[1:]
        later_total = sorted(r["total_ms"] for r in later)[len(later) // 2]
        ratio = first["total_ms"] / later_total
        print(json.dumps({"install_s": install_s, "runs": runs, "ratio": ratio}, indent=1))
        if not a.no_write:
            lines = [
                "# The first compile after `pip install .`", "",
                f"`python bench/study_first_compile.py --model {a.model} --repeat {a.repeat}`: this checkout installed "
                "into a fresh virtual environment (dependencies from pip's cache), then "
                f"`symfuse compile {a.model}` in new processes, each with an empty compile cache. "
                f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
                f"{os.getloadavg()[0]:.1f} at the end (other work on the machine slows every row alike).", "",
                f"`pip install .` took {install_s:.1f} s, which includes the C runtime library build (setup.py, "
                "`rt_recipe.prebuild`) is most; before it moved there, the first compile paid it (~5-8 s).", "",
                "| compile | report total (ms) | wall, process included (s) | runtime library build (ms) | C compile (ms) |",
                "|---|---:|---:|---:|---:|"]
            for i, r in enumerate(runs):
                lines.append(f"| {'first after install' if i == 0 else f'cold #{i}'} | {r['total_ms']:.0f} | "
                             f"{r['wall_s']:.2f} | {r['runtime_build_ms']:.0f} | {r['c_compile_ms']:.0f} |")
            lines += ["", f"First / median later cold: **{ratio:.2f}x** (target: within 2x). What the first one still "
                      "pays once: precompiling the unit header (`runtime library build` row, the `unit-*` "
                      "directory) and compiling the Jinja templates to bytecode.", ""]
            with open(OUT, "w") as fh:
                fh.write("\n".join(lines))
            print(f"wrote {OUT}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
