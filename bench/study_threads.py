"""Throughput of one compiled function called from 1, 2 and 4 Python threads.

    python bench/study_threads.py [--calls 60] [--functions lenet-infer,lenet-train,mlp-train]

A compiled function serialises its calls (one arena, and a call reads the
shared variables the call before it updated), so more threads cannot raise its
throughput; this measures what they cost: calls per second with N threads each
making ``--calls / N`` calls, against one thread making all of them, in the same
process and on the same function. Each function is compiled once (cpu),
warmed up with 3 calls, then timed per thread count, thread counts interleaved
over 3 rounds (median). Writes bench/results/threads.{json,md} and threads.png
when matplotlib is installed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def build(name: str):
    from symfuse.nn import zoo
    model, kind = name.split("-")
    m = zoo.get(model, batch=128)
    f = m.train_function("cpu") if kind == "train" else m.predict_function("cpu")
    rng = np.random.default_rng(0)
    args = []
    for v in f.inputs:
        t = v.type
        if t.dtype.is_float:
            args.append(rng.normal(size=t.shape).astype(t.dtype.np))
        else:
            args.append(rng.integers(0, 10, t.shape).astype(t.dtype.np))
    return f, args


def throughput(f, args, threads: int, calls: int) -> float:
    per = calls // threads
    start = threading.Barrier(threads + 1)

    def work():
        start.wait()
        for _ in range(per):
            f(*args)

    ths = [threading.Thread(target=work) for _ in range(threads)]
    for t in ths:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ths:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--functions", default="lenet-infer,lenet-train,mlp-train")
    args = ap.parse_args(argv)
    counts = [int(n) for n in args.threads.split(",")]
    rows = []
    for name in args.functions.split(","):
        f, inputs = build(name)
        for _ in range(3):
            f(*inputs)
        got = {n: [] for n in counts}
        for _ in range(args.rounds):
            for n in counts:
                got[n].append(throughput(f, inputs, n, args.calls))
        med = {n: statistics.median(v) for n, v in got.items()}
        rows.append({"function": name, "calls_per_s": med, "relative": {n: med[n] / med[counts[0]] for n in counts}})
        print(name, " ".join(f"{n} thr {med[n]:.1f}/s ({med[n] / med[counts[0]]:.2f}x)" for n in counts), flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "calls": args.calls, "rounds": args.rounds,
            "cpus": os.cpu_count()}
    with open(os.path.join(RESULTS, "threads.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    lines = [f"# One function called from several threads ({meta['date']}, {meta['cpus']} CPUs)", "",
             f"`python bench/study_threads.py`: {args.calls} calls per measurement, median of {args.rounds} "
             "interleaved rounds, cpu backend, batch 128. Calls are serialised by the function's lock, "
             "so the ratio shows the lock's cost under contention (1.00x = none).", "",
             "| function | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in counts) + " |",
             "|---|" + "---:|" * len(counts)]
    for r in rows:
        lines.append(f"| {r['function']} | " + " | ".join(
            f"{r['calls_per_s'][n]:.1f}/s ({r['relative'][n]:.2f}x)" for n in counts) + " |")
    with open(os.path.join(RESULTS, "threads.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(counts)
    for k, n in enumerate(counts):
        ax.bar([i + k * width for i in range(len(rows))], [r["calls_per_s"][n] for r in rows], width,
               label=f"{n} thread{'s' if n > 1 else ''}")
    ax.set_xticks([i + width * (len(counts) - 1) / 2 for i in range(len(rows))], [r["function"] for r in rows])
    ax.set_ylabel("calls / s")
    ax.set_title("one compiled function, several calling threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "threads.png"), dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
