"""Compile-time benchmark of the pass pipeline on generated graphs of 100, 1 000 and 10 000 ops.

    python bench/bench_passes.py [--sizes 100 1000 10000] [--repeat 3] [--grad] [--profile]

The generated graph is a mesh of elementwise ops over a (8, 16) float32 input:
each new value combines the previous one with an earlier one (so the graph is a
DAG, not a chain), with Python constants (0, 1, 2, 0.5, -1: algebraic rewrites
fire), reshape/transpose round trips, keepdims reductions broadcast back,
a few matmuls and repeated subexpressions (CSE fires). Every op is live.

Times: graph construction (the Python API calls), each pipeline stage from
``f.report.stages`` aggregated by stage name, and the whole pass pipeline
(every stage after "build graph"). Best of ``--repeat`` runs. Results go to
bench/results/passes.json. ``--profile`` prints the cProfile hot spots of the
largest size.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from collections import Counter, defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import symfuse as sf  # noqa: E402
from symfuse.ir.core import Function  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONSTS = (0.0, 1.0, 2.0, 0.5, -1.0)


def build_graph(n_ops: int, seed: int = 0, grad: bool = False):
    """A deterministic graph of about ``n_ops`` ops; returns (inputs, outputs)."""
    rng = np.random.default_rng(seed)
    x = sf.tensor("x", (8, 16))
    W = sf.tensor("W", (16, 16))
    pool = [x, sf.tanh(x @ (W @ W.T * 0.1))]
    recipes = []
    count = 0  # ops created, approximately (constants of Python scalars included)

    def emit(v, recipe=None, cost=1):
        nonlocal count
        pool.append(v)
        if recipe is not None:
            recipes.append(recipe)
        count += cost

    unary = [sf.tanh, sf.sigmoid, sf.exp, sf.sin, sf.cos, sf.abs, sf.negative, sf.relu, sf.softplus]
    while count < n_ops:
        a = pool[-1]
        b = pool[int(rng.integers(max(0, len(pool) - 64), len(pool)))]  # local mesh
        r = rng.random()
        if r < 0.25:
            f = unary[int(rng.integers(len(unary)))]
            emit(f(a) if f is not sf.exp else f(sf.tanh(a)), (lambda f, a: lambda: f(a))(f, a),
                 1 if f is not sf.exp else 2)
        elif r < 0.55:
            op = rng.choice(["add", "sub", "mul", "max"])
            g = {"add": lambda p, q: p + q, "sub": lambda p, q: p - q,
                 "mul": lambda p, q: p * q * 0.5, "max": sf.maximum}[op]
            emit(g(a, b), (lambda g, a, b: lambda: g(a, b))(g, a, b), 3 if op == "mul" else 1)
        elif r < 0.72:
            c = float(rng.choice(CONSTS))
            op = int(rng.integers(3))
            g = [lambda p: p * c, lambda p: p + c, lambda p: p - c][op]
            emit(g(a), None, 2)
        elif r < 0.80:
            emit(sf.reshape(sf.transpose(sf.reshape(a, (16, 8))), (8, 16)), None, 3)
        elif r < 0.88:
            emit(a - sf.mean(a, axis=1, keepdims=True), None, 4)
        elif r < 0.91:
            emit(sf.tanh(a @ W) , None, 2)
        else:
            if recipes:   # a repeated subexpression: CSE merges it
                v = recipes[int(rng.integers(max(0, len(recipes) - 32), len(recipes)))]()
                emit(v + a, None, 2)
    outs = [pool[-1], pool[-2], sf.sum(pool[len(pool) // 2])]
    if grad:
        outs.append(sf.grad(sf.sum(pool[-1]), W))
    return [x, W], outs


def run_size(n: int, repeat: int, grad: bool):
    best = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        inputs, outs = build_graph(n, grad=grad)
        t_build = time.perf_counter() - t0
        gc.collect()
        f = sf.function(inputs, outs, device="interp")
        stages = defaultdict(float)
        for s in f.report.stages:
            stages[s.name] += s.seconds
        pipeline = sum(v for k, v in stages.items() if k != "build graph")
        ops_in = len(f.source_function.ops)
        res = {"ops": ops_in, "ops_after": len(f.function.ops), "construct": t_build,
               "stages": dict(stages), "pipeline": pipeline, "compile_total": f.report.total_seconds,
               "rewrites": sum(f.report.rewrite_counts().values()),
               "iterations": sum(1 for s in f.report.stages if s.name.endswith(".fold"))}
        if best is None or res["pipeline"] < best["pipeline"]:
            best = res
    best["steady_us_per_op"] = steady_state(f.function)
    return best


def steady_state(fn: Function) -> dict:
    """us/op of one sweep of each pass over the already-optimised function (no
    rewrite fires, nothing is rebuilt): the per-op cost, independent of how many
    fixpoint sweeps a graph happens to need."""
    from symfuse.compiler.passes import REWRITES, RewriteContext
    from symfuse.compiler.passes.basic import cse, fold_constants
    from symfuse.compiler.passes.rewrite import apply_rewrites
    from symfuse.ir.verify import verify
    table = REWRITES.table(include=["simplify", "stabilise"])
    jobs = {"verify": lambda: verify(fn), "fold": lambda: fold_constants(fn, Counter()),
            "rewrite": lambda: apply_rewrites(fn, table, RewriteContext(), Counter()),
            "cse": lambda: cse(fn, Counter()), "toposort": lambda: Function(fn.params, fn.results, fn.name)}
    out = {}
    for name, job in jobs.items():
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            job()
            t.append(time.perf_counter() - t0)
        out[name] = min(t) / len(fn.ops) * 1e6
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--grad", action="store_true", help="add sf.grad of the result wrt W")
    ap.add_argument("--profile", action="store_true", help="cProfile the largest size")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "passes.json"))
    args = ap.parse_args(argv)

    results = {}
    for n in args.sizes:
        results[n] = run_size(n, args.repeat if n < 10000 else max(1, min(args.repeat, 3)), args.grad)

    # table: stage x size, ms
    stage_names = []
    for r in results.values():
        for k in r["stages"]:
            if k not in stage_names:
                stage_names.append(k)
    cols = [f"{r['ops']} ops" for r in results.values()]
    rows = [("construct graph", [r["construct"] for r in results.values()])]
    rows += [(k, [r["stages"].get(k, 0.0) for r in results.values()]) for k in stage_names]
    rows += [("= pass pipeline", [r["pipeline"] for r in results.values()]),
             ("compile total", [r["compile_total"] for r in results.values()])]
    w = max(len(k) for k, _ in rows)
    print(f"{'stage (ms)':<{w}}  " + "  ".join(f"{c:>11}" for c in cols))
    print("-" * (w + 13 * len(cols) + 2))
    for k, vals in rows:
        print(f"{k:<{w}}  " + "  ".join(f"{v * 1e3:11.2f}" for v in vals))
    print("-" * (w + 13 * len(cols) + 2))
    print(f"{'ops after passes':<{w}}  " + "  ".join(f"{r['ops_after']:>11}" for r in results.values()))
    print(f"{'rewrites applied':<{w}}  " + "  ".join(f"{r['rewrites']:>11}" for r in results.values()))
    print(f"{'fixpoint sweeps':<{w}}  " + "  ".join(f"{r['iterations']:>11}" for r in results.values()))

    # per-op cost and scaling between consecutive sizes
    print("\nper-op pipeline time and scaling (ratio 1.0 = linear):")
    prev = None
    for n, r in results.items():
        per_op = r["pipeline"] / r["ops"] * 1e6
        line = f"  {r['ops']:>6} ops: {per_op:8.2f} us/op (pipeline), {r['construct'] / r['ops'] * 1e6:8.2f} us/op (construct)"
        if prev is not None:
            ratio = per_op / (prev["pipeline"] / prev["ops"] * 1e6)
            line += f"   per-op ratio vs {prev['ops']} ops: {ratio:.2f}"
        print(line)
        prev = r
    print("\nsteady-state sweep over the optimised graph (us/op; flat across sizes = linear passes):")
    names = list(next(iter(results.values()))["steady_us_per_op"])
    print(f"  {'ops':>6}  " + "  ".join(f"{k:>9}" for k in names))
    for r in results.values():
        print(f"  {r['ops_after']:>6}  " + "  ".join(f"{r['steady_us_per_op'][k]:9.2f}" for k in names))
    big = results[max(results)]
    target = 1.0
    verdict = "OK" if big["pipeline"] < target else "SLOW"
    print(f"\n{big['ops']} ops through all passes: {big['pipeline']:.3f} s (target < {target:.1f} s): {verdict}")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    payload = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "grad": args.grad, "repeat": args.repeat,
               "sizes": {str(n): r for n, r in results.items()}}
    with open(args.out, "w") as fh:
        json.dump(payload, fh, indent=2)
    print(f"wrote {os.path.relpath(args.out)}")

    if args.profile:
        n = max(args.sizes)
        inputs, outs = build_graph(n, grad=args.grad)
        pr = cProfile.Profile()
        pr.enable()
        sf.function(inputs, outs, device="interp")
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
        print(s.getvalue())


if __name__ == "__main__":
    main()
