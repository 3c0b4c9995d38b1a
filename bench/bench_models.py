"""Compile time (cold: empty cache, warm: second process) and steady-state step
time of the MLP (784-512-512-10, relu) and LeNet-5 training steps at batch 128,
for symfuse's cpu backend and the interpreter, plus a plain-numpy MLP step.

    python bench/bench_models.py [--repeat 3] [--steps 30]

Writes bench/results/models.json and prints a table. Each compile is measured in
a fresh Python process (imports excluded), as a user would see it.
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

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

BATCH = 128


def build(model: str, device: str):
    import symfuse as sf
    rng = np.random.default_rng(0)
    if model == "mlp":
        dims = [784, 512, 512, 10]
        params = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            params += [sf.shared(rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32), name=f"W{i}"),
                       sf.shared(np.zeros(b, np.float32), name=f"b{i}")]
        x = sf.tensor("x", (BATCH, 784))
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h = sf.relu(h)
        xv = rng.normal(size=(BATCH, 784)).astype(np.float32)
    else:
        def init(shape, fan_in, name):
            return sf.shared(rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32), name=name)
        params = [init((20, 1, 5, 5), 25, "c1"), init((20,), 25, "c1b"), init((50, 20, 5, 5), 500, "c2"),
                  init((50,), 500, "c2b"), init((800, 500), 800, "d1"), init((500,), 800, "d1b"),
                  init((500, 10), 500, "d2"), init((10,), 500, "d2b")]
        c1, c1b, c2, c2b, d1, d1b, d2, d2b = params
        x = sf.tensor("x", (BATCH, 1, 28, 28))
        h = sf.max_pool2d(sf.tanh(sf.conv2d(x, c1) + c1b.reshape(1, 20, 1, 1)), 2)
        h = sf.max_pool2d(sf.tanh(sf.conv2d(h, c2) + c2b.reshape(1, 50, 1, 1)), 2)
        h = sf.tanh(h.reshape(BATCH, 800) @ d1 + d1b)
        h = h @ d2 + d2b
        xv = rng.normal(size=(BATCH, 1, 28, 28)).astype(np.float32)
    y = sf.tensor("y", (BATCH,), "int32")
    loss = -(sf.one_hot(y, 10) * sf.log_softmax(h)).sum(axis=1).mean()
    grads = sf.grad(loss, params)
    t0 = time.perf_counter()
    step = sf.function([x, y], loss, updates=[(p, p - 0.01 * g) for p, g in zip(params, grads)],
                       device=device, name=f"{model}_train_step")
    compile_s = time.perf_counter() - t0
    yv = rng.integers(0, 10, BATCH).astype(np.int32)
    return step, compile_s, (xv, yv)


def child(model, device, steps):
    step, compile_s, args = build(model, device)
    times = []
    if steps:
        for _ in range(3):
            step(*args)
        for _ in range(steps):
            t = time.perf_counter()
            step(*args)
            times.append(time.perf_counter() - t)
    stages = {}
    for s in step.report.stages:
        stages[s.name] = stages.get(s.name, 0.0) + s.seconds
    print(json.dumps({"compile_s": compile_s, "step_s": statistics.median(times) if times else None,
                      "stages": stages, "kernels": len(step.kernels), "ops": len(step.function.ops),
                      "memory": step.report.info.get("memory")}))


def run_child(model, device, steps, cache_dir):
    env = dict(os.environ, SYMFUSE_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, __file__, "--child", model, device, str(steps)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def numpy_mlp_step_time(steps):
    rng = np.random.default_rng(0)
    dims = [784, 512, 512, 10]
    Ws = [rng.normal(0, 0.05, (a, b)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:])]
    bs = [np.zeros(b, np.float32) for b in dims[1:]]
    x = rng.normal(size=(BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)

    def step():
        acts = [x]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = acts[-1] @ W + b
            acts.append(np.maximum(z, 0) if i < 2 else z)
        z = acts[-1] - acts[-1].max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = p.copy()
        g[np.arange(BATCH), y] -= 1
        g /= BATCH
        for i in reversed(range(3)):
            gW, gb = acts[i].T @ g, g.sum(0)
            if i:
                g = (g @ Ws[i].T) * (acts[i] > 0)
            Ws[i] -= 0.01 * gW
            bs[i] -= 0.01 * gb
    for _ in range(3):
        step()
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]))
        return
    rows = []
    for model in ("mlp", "lenet"):
        for device in ("cpu", "interp"):
            cold, warm, step = [], [], None
            for r in range(a.repeat):
                with tempfile.TemporaryDirectory() as cache:
                    c = run_child(model, device, 0, cache)
                    w = run_child(model, device, a.steps if r == 0 else 0, cache)
                cold.append(c["compile_s"])
                warm.append(w["compile_s"])
                if r == 0:
                    step, stages, info = w["step_s"], c["stages"], w
            rows.append({"model": model, "device": device, "cold_s": statistics.median(cold),
                         "warm_s": statistics.median(warm), "step_s": step, "kernels": info["kernels"],
                         "ops": info["ops"], "memory": info["memory"], "cold_stages": stages})
    np_step = numpy_mlp_step_time(a.steps)
    rows.append({"model": "mlp", "device": "numpy (hand-written)", "cold_s": None, "warm_s": None,
                 "step_s": np_step})
    print(f"{'model':6} {'device':22} {'cold ms':>9} {'warm ms':>9} {'step ms':>9} {'kernels':>8}")
    for r in rows:
        f = lambda v: f"{v * 1e3:9.1f}" if v is not None else f"{'-':>9}"  # noqa: E731
        print(f"{r['model']:6} {r['device']:22} {f(r['cold_s'])} {f(r['warm_s'])} {f(r['step_s'])} "
              f"{r.get('kernels', '-')!s:>8}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "models.json"), "w") as fh:
        json.dump({"machine": dict(zip(("sysname", "nodename", "release", "version", "machine"), os.uname())), "cores": os.cpu_count(), "batch": BATCH, "rows": rows},
                  fh, indent=2)


if __name__ == "__main__":
    main()
