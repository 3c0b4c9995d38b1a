"""Start-up cost: what `import symfuse` adds to `import numpy`, and which modules a
warm compile (a graph-cache hit) loads.

    python bench/study_import.py [--runs 15]

Each measurement is a fresh process; `import numpy` and `import numpy, symfuse`
alternate, and the table gives the medians and their difference. The module table
is `python -X importtime -c "import symfuse"`'s cumulative times for symfuse's
top-level parts (one run). The warm-compile row compiles the LeNet-5 training
step twice in fresh processes with one cache directory and lists, for the second
(a graph-cache hit), whether codegen, Jinja, networkx or the passes were imported.
Writes bench/results/import.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
HEAVY = ("symfuse.codegen", "symfuse.compiler.passes", "symfuse.compiler.fusion", "symfuse.compiler.pipeline",
         "jinja2", "networkx")
WARM = """
import sys, time
t0 = time.perf_counter()
import symfuse as sf
from symfuse.nn import zoo
f = zoo.get("lenet", batch=128).train_function("cpu")
print(f.report.info.get("graph_cache"), time.perf_counter() - t0,
      sorted({m.split(".")[0] if not m.startswith("symfuse") else ".".join(m.split(".")[:3])
              for m in sys.modules if m.startswith(%r)}))
""" % (HEAVY,)


def _wall(code: str, env) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=ROOT)
    base, full = [], []
    for _ in range(args.runs):
        base.append(_wall("import numpy", env))
        full.append(_wall("import numpy, symfuse", env))
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import symfuse"], env=env,
                         capture_output=True, text=True).stderr
    parts = {}
    for line in out.splitlines():
        if "|" not in line or "import time:" not in line:
            continue
        _, cum, name = [x.strip() for x in line.split("|")]
        if name.startswith("symfuse") and name.count(".") <= 1:
            parts[name] = int(cum) / 1e3
    with tempfile.TemporaryDirectory() as cache:
        wenv = dict(env, SYMFUSE_CACHE_DIR=cache)
        runs = [subprocess.run([sys.executable, "-c", WARM], env=wenv, capture_output=True, text=True,
                               check=True).stdout.split(" ", 2) for _ in range(2)]
    warm = {"graph_cache": runs[1][0], "seconds": float(runs[1][1]), "heavy_modules": runs[1][2].strip()}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "runs": args.runs,
              "numpy_s": statistics.median(base), "numpy_symfuse_s": statistics.median(full),
              "symfuse_beyond_numpy_s": statistics.median(full) - statistics.median(base),
              "modules_ms": parts, "warm_compile": warm}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "import.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    lines = [f"# Start-up cost ({result['date']})", "",
             f"`python bench/study_import.py`: fresh processes, {args.runs} of each, alternating; medians.", "",
             "| process | wall |", "|---|---:|",
             f"| `import numpy` | {1e3 * result['numpy_s']:.0f} ms |",
             f"| `import numpy, symfuse` | {1e3 * result['numpy_symfuse_s']:.0f} ms |",
             f"| symfuse beyond numpy | **{1e3 * result['symfuse_beyond_numpy_s']:.0f} ms** |", "",
             "`-X importtime` cumulative, one run (includes numpy where a module is the first to import it):", "",
             "| module | ms |", "|---|---:|"]
    lines += [f"| `{k}` | {v:.1f} |" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])]
    lines += ["", f"Warm compile of the LeNet-5 training step (second process, graph cache "
              f"{warm['graph_cache']}): {1e3 * warm['seconds']:.0f} ms from `import symfuse` to a compiled "
              f"function; compile-path modules imported: {warm['heavy_modules']}"]
    with open(os.path.join(RESULTS, "import.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
