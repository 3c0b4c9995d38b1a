"""Long fuzzing runs: ``python -m tests.fuzz --programs 100000 --devices interp,cpu,cuda-emu --seed S``.

Programs S, S+1, ... are generated in batches (one sf.function per batch and device:
compiles are the slow part) and run in worker processes, so a crash that kills a
process is caught and pinned on its batch. The first finding of each kind (device,
mismatch/crash, check) is shrunk and printed as a reproducer; ``--replay SEED`` prints
and checks one program.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import multiprocessing
import os
import shutil
import sys
import time

from . import run

# "+batch": the programs that take their inputs' first axis as a run-time size (run.SIZED);
# give such a device alone, since a batch of programs is narrowed to those for all its devices
DEVICES = ("interp", "cpu", "cuda-emu", "cpu+batch", "cuda-emu+batch")


def isolated(seeds, devices, exclude):
    """Re-run a batch whose worker died, one device at a time, to name the device."""
    out = []
    for d in devices:
        with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
            try:
                out += ex.submit(run.task, seeds, [d], exclude, 0.0).result()[0]
            except BrokenProcessPool:
                out.append(run.Finding(d, "crash", "process died", list(seeds),
                                       message="the process running this batch died (signal)"))
    return out


def main(argv=None):
    a = parse(argv)
    made = run.private_cache()
    try:
        return fuzz(a)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--devices", default="interp,cpu,cuda-emu")
    ap.add_argument("--seed", type=int, default=None, help="first program seed (default: random)")
    ap.add_argument("--batch", type=int, default=8, help="programs per compiled function")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (0: run in this process)")
    ap.add_argument("--shrink-budget", type=float, default=120.0, help="seconds per shrunk finding")
    ap.add_argument("--exclude", default="", help="comma-separated recipes/tags the generator must not use "
                    "(also TAG:VARIANT, a variant of a control-flow recipe, as the summary lists them: cond:untaken_nan), "
                    "checks to skip (scribble:DEVICE: writing into that device's results) and known "
                    "findings to ignore (known:F2; see run.KNOWN)")
    ap.add_argument("--replay", type=int, default=None, help="print and check one program seed")
    ap.add_argument("--progress", type=float, default=15.0, help="seconds between progress lines")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds before a batch counts as hung")
    a = ap.parse_args(argv)
    a.devices = [d for d in a.devices.split(",") if d]
    bad = [d for d in a.devices if d not in DEVICES]
    if bad:
        ap.error(f"unknown device {bad[0]!r}; choose from {', '.join(DEVICES)}")
    a.exclude = tuple(x for x in a.exclude.split(",") if x)
    return a


def fuzz(a):
    devices, exclude = a.devices, a.exclude

    if a.replay is not None:
        p = run.programs_for([a.replay], frozenset(exclude) | run.pending(devices))[0]
        print("\n".join(p.statements()[0]))
        # alone, with the options of a batch that starts with it
        found = run.check([p], devices, run.batch_options([a.replay], devices), frozenset(exclude))
        found = [run.shrink(f, devices, a.shrink_budget, frozenset(exclude)) for f in found]
        for f in found:
            print(f"\n{f.summary()}\n{f.message}\n--- reproducer ---\n{f.source}")
        print(f"\n{len(found)} finding(s)")
        return 1 if found else 0

    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"fuzz: seed {seed}, {a.programs} programs, devices {','.join(devices)}, batch {a.batch}, "
          f"jobs {a.jobs}, cache {os.environ['SYMFUSE_CACHE_DIR']}", flush=True)
    batches = [list(range(s, min(s + a.batch, seed + a.programs))) for s in range(seed, seed + a.programs, a.batch)]
    stats = {d: {"programs": 0, "mismatch": 0, "crash": 0} for d in devices + ["build"]}
    findings, shrunk, tags = [], set(), {}
    t0 = last = time.monotonic()

    def account(seeds, found, counts=None):
        nonlocal last
        for t, k in (counts or {}).items():
            tags[t] = tags.get(t, 0) + k
        for d in devices:
            stats[d]["programs"] += len(seeds)
        for f in found:
            stats[f.device][f.kind] += 1
            findings.append(f)
            print(f"  {f.summary()}", flush=True)
            if f.source:
                print(f"--- reproducer ({f.device}, {f.kind}, {f.check}; max error {f.err:.3g}) ---\n"
                      f"{f.source}\n--- end ---", flush=True)
        now = time.monotonic()
        if now - last >= a.progress:
            last = now
            done = stats[devices[0]]["programs"]
            per = " ".join(f"{d}:{s['mismatch']}m/{s['crash']}c" for d, s in stats.items() if d in devices)
            print(f"[{now - t0:7.0f}s] {done}/{a.programs} programs, {done / (now - t0):.2f}/s  {per}", flush=True)

    if a.jobs == 0:
        for seeds in batches:
            found, counts = run.task(seeds, devices, exclude, a.shrink_budget, shrunk)
            shrunk.update(f.signature for f in found if f.source)
            account(seeds, found, counts)
    else:
        pending = list(batches)
        while pending:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(a.jobs, mp_context=ctx) as ex:
                futs = {}
                try:
                    while pending or futs:
                        while pending and len(futs) < 2 * a.jobs:
                            seeds = pending.pop(0)
                            futs[ex.submit(run.task, seeds, devices, exclude, a.shrink_budget, tuple(shrunk))] = seeds
                        done, _ = cf.wait(futs, timeout=a.timeout, return_when=cf.FIRST_COMPLETED)
                        if not done:         # hung: report the batches, stop their workers
                            for seeds in futs.values():
                                account(seeds, [run.Finding(d, "crash", "hang", list(seeds),
                                                            message=f"no result after {a.timeout:.0f} s")
                                                for d in devices])
                            for proc in list(ex._processes.values()):
                                proc.kill()
                            futs = {}
                            break
                        for fu in done:
                            found, counts = fu.result()
                            seeds = futs.pop(fu)
                            shrunk.update(f.signature for f in found if f.source)
                            account(seeds, found, counts)
                except BrokenProcessPool:
                    # a worker died: pin it on a batch by re-running the unfinished ones alone
                    for seeds in futs.values():
                        account(seeds, isolated(seeds, devices, exclude))
    dt = time.monotonic() - t0
    print(f"\nsummary: seed {seed}, {dt:.0f} s")
    print(f"{'device':10} {'programs':>9} {'mismatches':>11} {'crashes':>8} {'programs/s':>11}")
    for d, s in stats.items():
        if d in devices or s["crash"]:
            print(f"{d:10} {s['programs']:9} {s['mismatch']:11} {s['crash']:8} {s['programs'] / dt:11.2f}")
    if tags:
        skipped = sorted(run.pending(devices))
        print(f"programs with control flow: {tags.get('control flow', 0)}"
              + (f" (none on {', '.join(d for d in devices if d in run.PENDING)}: "
                 f"{', '.join(skipped)} left out, {run.PENDING[next(d for d in devices if d in run.PENDING)][1]})"
                 if skipped else ""))
        for t in run.CONTROL_TAGS:
            if t in tags:
                parts = sorted((k.split(":", 1)[1], v) for k, v in tags.items() if k.startswith(t + ":"))
                print(f"  {t:14} {tags[t]:7}  " + " ".join(f"{k} {v}" for k, v in parts))
    for f in findings:
        print(f"  {f.summary()}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
