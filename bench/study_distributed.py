"""Data-parallel training on MPI: step time of 1 and 2 ranks, time in collectives and
how much of it overlaps compute, an alpha-beta model of ring allreduce at 8-512
workers, and PyTorch DDP (gloo) on the same models in the same run.

    python bench/study_distributed.py [--quick] [--rounds 5] [--steps 200] [--batch 64]

One command runs everything: the script starts its own jobs (``mpiexec -n 2 python
bench/study_distributed.py --worker JSON`` for 2 ranks, plain ``python`` for 1) with
one thread per process (OMP/OpenBLAS/MKL, ``torch.set_num_threads(1)``), in rounds
whose job order alternates, and reports the median over rounds of each job's median
step and the 10th percentile of all steps. Writes bench/results/distributed.{json,md,png}
(``--quick``: bench/results/quick/).

symfuse's steps are compiled with ``profile=True``: the per-kernel clock reads are the
time in collectives (the allreduce kernels of the blocking step) and what the overlapped
step still waits for (its total minus the blocking step's compute kernels); the
1-rank job times the step without the profile too, to show what it costs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
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

MODELS = ("mlp", "lenet")
# label -> (data parallel, bucket bytes, overlap, profile); bucket bytes None: the default
SF_VARIANTS = {
    "1 rank": (False, None, False, True),
    "1 rank, no profile": (False, None, False, False),
    "overlap": (True, None, True, True),
    "blocking": (True, None, False, True),
    "unbucketed": (True, 0, False, True),
}
SF_ONE = ("1 rank", "1 rank, no profile")
SF_TWO = ("overlap", "blocking", "unbucketed")
# alpha-beta model: workers, link bandwidths (bit/s), per-message latencies (s) besides the measured one
WORKERS = (8, 64, 512)
CURVE_WORKERS = (2, 4, 8, 16, 32, 64, 128, 256, 512)
BANDWIDTHS = (10e9, 100e9)
ALPHAS = (5e-6, 25e-6)
# the backward pass, which gradient allreduces can hide behind, taken as 2/3 of the step
# (backward does about twice the forward's arithmetic)
BACKWARD_SHARE = 2 / 3
LOW = 0.1               # the low quantile reported beside the medians
# Horovod's published 512-GPU scaling efficiency (128 servers x 4 Pascal GPUs, RoCE-capable
# 25 Gbit/s; horovod docs/benchmarks) and gradient sizes of the three models (float32)
HOROVOD_BW = 25e9
HOROVOD = (("Inception V3", 0.90, 23.8e6), ("ResNet-101", 0.90, 44.5e6), ("VGG-16", 0.68, 138e6))
RESULT_FILE = "result-{rank}.json"


# ------------------------------------------------------------------------------------------ workers
def _rank_world() -> tuple[int, int]:
    # hydra's environment: the torch worker never imports mpi4py
    return int(os.environ.get("PMI_RANK", "0")), int(os.environ.get("PMI_SIZE", "1"))


def _median(xs):
    return statistics.median(xs) if xs else None


def _write(job, obj) -> None:
    rank, _ = _rank_world()
    with open(os.path.join(job["out"], RESULT_FILE.format(rank=rank)), "w") as fh:
        json.dump(obj, fh)


def _timed_blocks(steps: dict, n: int, block: int, barrier, after=None) -> dict:
    """label -> n step times; the labels take turns in blocks of ``block`` steps (the first
    label rotating), so that a slow spell of the machine is shared out. ``after[label]()``
    runs after each of that label's steps, outside the timing."""
    after = after or {}
    times = {k: [] for k in steps}
    labels = list(steps)
    for b in range(math.ceil(n / block)):
        for k in labels[b % len(labels):] + labels[:b % len(labels)]:
            barrier()
            step = steps[k]
            for _ in range(block):
                t = time.perf_counter()
                step()
                times[k].append(time.perf_counter() - t)
                if k in after:
                    after[k]()
    return times


def _profile_totals(f) -> dict:
    # the compiled module's counters (Function.profile() only formats them) are sums over every
    # call so far: a step's times are differences
    return {name: mean * calls for name, mean, calls in f._run.profile()}


class StepProfile:
    """Per step of a function compiled with profile=True: its kernels' seconds summed as
    compute, collective (the allreduce kernels) and window (the compute kernels between the
    first collective's start and the first wait), so that medians over steps can be taken
    (the kernels' means would carry every slow spell of the machine)."""

    def __init__(self, f, schedule):
        self.f, self.schedule = f, schedule
        self.last = _profile_totals(f)
        self.first = dict(self.last)
        self.steps: list[dict] = []
        first = next((i for i, (kn, _) in enumerate(schedule) if "allreduce" in kn), None)
        stop = next((i for i, (_, w) in enumerate(schedule) if w), len(schedule))
        self.window = set() if first is None else {kn for kn, _ in schedule[first + 1:stop] if "allreduce" not in kn}

    def __call__(self):
        now = _profile_totals(self.f)
        d = {kn: now[kn] - self.last.get(kn, 0.0) for kn in now}
        self.last = now
        coll = sum(t for kn, t in d.items() if "allreduce" in kn)
        total = sum(d.values())
        self.steps.append({"total": total, "collective": coll, "compute": total - coll,
                           "window": sum(d[kn] for kn in self.window)})

    def kernels(self) -> dict:
        """kernel -> mean seconds per timed step."""
        n = max(len(self.steps), 1)
        return {kn: (t - self.first.get(kn, 0.0)) / n for kn, t in self.last.items()}


def _collective_bytes(f) -> list[int]:
    """Bytes of each allreduce of the compiled step, in schedule order."""
    return [op.outputs[0].type.nbytes for op in f.function.ops
            if op.opdef.name in ("allreduce", "allreduce_bucket")]


def _schedule(f) -> list:
    """[kernel, waits for a collective first] in the entry's call order."""
    import re
    names = {k.name for k in f.kernels}
    out, wait = [], False
    for m in re.finditer(r"\b(\w+)\(", (f.source or "").split("void sf_entry", 1)[-1]):
        if m.group(1) == "sf_mpi_wait":
            wait = True
        elif m.group(1) in names:
            out.append([m.group(1), wait])
            wait = False
    return out


def sf_worker(job) -> None:
    from symfuse.nn import optim, zoo
    rank, world = _rank_world()
    comm = None
    if world > 1:
        from symfuse import distributed as dist
        comm = dist.init()
        compile_once, barrier = dist.compile_once, comm.Barrier
        default_bucket = dist.DEFAULT_BUCKET_BYTES
    else:
        compile_once, barrier = (lambda build: build()), (lambda: None)
        default_bucket = None
    out = {"models": {}, "world": world}
    for name in job["models"]:
        fns, args, info = {}, {}, {}
        for label in job["variants"]:
            dp, bucket, overlap, profile = SF_VARIANTS[label]
            kw = {"batch": job["batch"], "seed": 3, "optimizer": optim.SGD(0.01)}
            if dp:
                from symfuse import distributed as dist
                with dist.data_parallel(default_bucket if bucket is None else bucket, overlap):
                    m = zoo.get(name, **kw)
            else:
                m = zoo.get(name, **kw)
            f = compile_once(lambda m=m, profile=profile: m.train_function("cpu", profile=profile))
            x, y = m.example_batch(seed=rank)
            fns[label], args[label] = f, (x, y)
            info[label] = {"collective_bytes": _collective_bytes(f), "profiled": profile, "schedule": _schedule(f),
                           "param_bytes": int(sum(p.get_value().nbytes for p in m.params)),
                           "param_bytes_each": [int(p.get_value().nbytes) for p in m.params]}
        for label, f in fns.items():
            for _ in range(job["warmup"]):
                f(*args[label])
        profs = {k: StepProfile(f, info[k]["schedule"]) for k, f in fns.items() if info[k]["profiled"]}
        steps = {k: (lambda f=f, a=args[k]: f(*a)) for k, f in fns.items()}
        times = _timed_blocks(steps, job["steps"], job["block"], barrier, profs)
        for k, pr in profs.items():
            info[k]["kernels"], info[k]["profile_steps"] = pr.kernels(), pr.steps
        if comm is not None:
            # a blocking collective holds the rank that arrives first until the other one comes;
            # the rank that came last spent only the collective's own time in it
            mine = {k: [st["collective"] for st in pr.steps] for k, pr in profs.items()}
            ranks = comm.gather(mine, root=0)
            if rank == 0:
                for k in profs:
                    for st, *others in zip(profs[k].steps, *(r[k] for r in ranks[1:])):
                        st["collective_later"] = min([st["collective"], *others])
        medians = {k: _median(v) for k, v in times.items()}
        every = comm.gather(medians, root=0) if comm is not None else [medians]
        out["models"][name] = {k: {**info[k], "median": medians[k], "times": times[k],
                                   "rank_medians": [e[k] for e in every] if every else None}
                               for k in fns}
    if job.get("raw") and comm is not None:
        out["raw"] = raw_mpi(comm, job, out)
    out["gamma"] = reduction_cost(barrier)
    if rank == 0:
        _write(job, out)


def raw_mpi(comm, job, out) -> dict:
    """Median seconds of one MPI_Allreduce (float32 sum, in place) per message size: a
    sweep from 4 bytes to 16 MiB for alpha and beta, and every allreduce size of the
    compiled steps. Each call starts right after a barrier, so the other rank's lateness
    is not counted."""
    import numpy as np
    from mpi4py import MPI
    sizes = {4 << (2 * k) for k in range(12)} | {4 << 22}
    for m in out["models"].values():
        for v in m.values():
            sizes.update(v["collective_bytes"])
    res = {}
    for nbytes in sorted(sizes):
        buf = np.ones(max(nbytes // 4, 1), np.float32)

        def timed(reps):
            ts = []
            for _ in range(reps):
                comm.Barrier()
                t = time.perf_counter()
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
                ts.append(time.perf_counter() - t)
            return ts
        # every rank must make the same number of calls: rank 0's pilot decides
        pilot = comm.bcast(statistics.median(timed(5)), root=0)
        reps = int(min(job["raw_reps"], max(10, job["raw_seconds"] / max(pilot, 1e-7))))
        med = comm.bcast(statistics.median(timed(reps)), root=0)
        res[str(nbytes)] = {"median": med, "reps": reps}
    return res


def reduction_cost(barrier) -> float:
    """Seconds per byte of an elementwise float32 sum out of cache (the gamma of the
    model), with every process doing it at once as the ranks of a node would."""
    import numpy as np
    a, b = np.ones(1 << 22, np.float32), np.ones(1 << 22, np.float32)
    barrier()
    ts = []
    for _ in range(15):
        t = time.perf_counter()
        np.add(a, b, out=a)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) / a.nbytes


def torch_worker(job) -> None:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(1)
    rank, world = _rank_world()
    if world > 1:
        import torch.distributed as td
        td.init_process_group("gloo", init_method="file://" + job["store"], rank=rank, world_size=world)
        barrier = td.barrier
    else:
        barrier = lambda: None  # noqa: E731
    out = {"models": {}, "world": world, "torch": torch.__version__}
    for name in job["models"]:
        torch.manual_seed(3)
        if name == "mlp":        # zoo.mlp: 784-512-512-10, relu
            net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
            shape = (784,)
        else:                    # zoo.lenet: conv 20 5x5, pool 2, tanh; conv 50 5x5, pool 2, tanh; 800-500 tanh; 10
            net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Tanh(), nn.Conv2d(20, 50, 5),
                                nn.MaxPool2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(800, 500), nn.Tanh(),
                                nn.Linear(500, 10))
            shape = (1, 28, 28)
        model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(rank)
        x = torch.rand((job["batch"], *shape), generator=g)
        y = torch.randint(0, 10, (job["batch"],), generator=g)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        for _ in range(job["warmup"]):
            step()
        times = _timed_blocks({"step": step}, job["steps"], job["block"], barrier)["step"]
        out["models"][name] = {"median": _median(times), "times": times,
                               "param_bytes": int(sum(p.numel() * p.element_size() for p in net.parameters()))}
    if world > 1:
        td.destroy_process_group()
    if rank == 0:
        _write(job, out)


# ------------------------------------------------------------------------------------------ driver
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def job_env(cache: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["SYMFUSE_CACHE_DIR"] = cache
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = "1"
    env["GLOO_SOCKET_IFNAME"] = "lo"       # gloo looks for a network interface; the job is on this host
    return env


def run_job(job: dict, ranks: int, scratch: str, cache: str, timeout: float) -> dict:
    from symfuse.distributed.launch import find_mpiexec
    out = tempfile.mkdtemp(prefix=f"{job['kind']}-{ranks}-", dir=scratch)
    job = dict(job, out=out, store=os.path.join(out, "store"))
    py = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    cmd = [find_mpiexec(), "-n", str(ranks)] + py if ranks > 1 else py
    t = time.perf_counter()
    # its own process group: a job past its time is ended with its ranks, not just mpiexec
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=job_env(cache),
                         cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        return {"error": f"no result within {timeout:.0f} s"}
    wall = time.perf_counter() - t
    path = os.path.join(out, RESULT_FILE.format(rank=0))
    if p.returncode != 0 or not os.path.exists(path):
        return {"error": f"exit {p.returncode}: {(stderr or stdout)[-1500:]}"}
    with open(path) as fh:
        res = json.load(fh)
    res["wall_s"] = wall
    log(f"  {job['kind']} x{ranks}: {wall:.1f} s")
    return res


def measure(args, scratch: str) -> tuple[list, list]:
    cache = os.path.join(scratch, "cache")
    base = {"models": args.models, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
            "block": args.block, "raw_reps": args.raw_reps, "raw_seconds": args.raw_seconds}
    jobs = [("sf", 1, dict(base, kind="sf", variants=list(SF_ONE))),
            ("sf", 2, dict(base, kind="sf", variants=list(SF_TWO), raw=True)),
            ("torch", 1, dict(base, kind="torch")),
            ("torch", 2, dict(base, kind="torch"))]
    rounds, errors = [], []
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        got = {}
        for kind, ranks, job in (jobs if r % 2 == 0 else jobs[::-1]):
            res = run_job(job, ranks, scratch, cache, args.timeout)
            if "error" in res:
                errors.append(f"round {r + 1} {kind} x{ranks}: {res['error']}")
                log("  FAILED: " + errors[-1][:600])
            got[f"{kind}{ranks}"] = res
        rounds.append(got)
    return rounds, errors


# ------------------------------------------------------------------------------------------ analysis
def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


STEP_KEYS = (("symfuse 1 rank", "sf1", "1 rank"), ("symfuse 1 rank, no profile", "sf1", "1 rank, no profile"),
             ("symfuse 2 ranks, overlap", "sf2", "overlap"), ("symfuse 2 ranks, blocking", "sf2", "blocking"),
             ("symfuse 2 ranks, unbucketed", "sf2", "unbucketed"), ("torch 1 process", "torch1", None),
             ("torch DDP 2 processes", "torch2", None))


def summarise(rounds: list, models, low: float | None = None) -> dict:
    """Per model: each variant's step time, the profile-derived compute, collective, window
    and exposed times, the raw allreduce costs of its buckets. The statistic: the median over
    rounds of each round's median, or with ``low`` that quantile of every round's steps
    pooled (the steps the machine's other load slowed least)."""
    def stat(lists):
        lists = [v for v in lists if v]
        if low is None:
            return _med([statistics.median(v) for v in lists])
        pooled = sorted(x for v in lists for x in v)
        return pooled[int(low * (len(pooled) - 1))] if pooled else None

    def per_round(key, fn):
        return [fn(r[key]) for r in rounds if key in r and "error" not in r[key]]

    s = {}
    for name in models:
        def times(job, k):
            return per_round(job, lambda r: r["models"][name]["times"] if k is None else r["models"][name][k]["times"])
        row = {"steps": {label: stat(times(job, k)) for label, job, k in STEP_KEYS}}

        def prof(k, q):
            job = "sf1" if k == "1 rank" else "sf2"
            return stat(per_round(job, lambda r: [st.get(q) for st in r["models"][name][k]["profile_steps"]
                                                  if st.get(q) is not None]))
        row["profile"] = {k: {q: prof(k, q) for q in ("total", "collective", "compute", "window", "collective_later")}
                          for k in ("1 rank",) + SF_TWO}
        pr = row["profile"]
        # what the overlapped step still waits for: its kernels' time beyond the blocking step's
        # compute kernels (the two were timed in alternating blocks)
        a, b = pr["overlap"]["total"], pr["blocking"]["compute"]
        row["exposed_overlap"] = a - b if None not in (a, b) else None
        row["window"] = pr["overlap"]["window"]
        c2 = pr["blocking"]["compute"]
        row["window_share"] = row["window"] / c2 if row["window"] is not None and c2 else None
        coll = pr["blocking"]["collective"]
        row["hidden_share_profile"] = 1 - row["exposed_overlap"] / coll \
            if coll and row["exposed_overlap"] is not None else None
        # from step times: the 1-rank step + the raw allreduce of the buckets against the 2-rank step
        sizes = {k: per_round("sf2", lambda r, k=k: r["models"][name][k]["collective_bytes"]) for k in SF_TWO}
        row["collective_bytes"] = {k: (v[0] if v else []) for k, v in sizes.items()}
        raw = [r["sf2"]["raw"] for r in rounds if "sf2" in r and "raw" in r["sf2"]]
        row["raw_collective"] = {k: _med([sum(x[str(b)]["median"] for b in row["collective_bytes"][k]) for x in raw])
                                 for k in SF_TWO}
        t1, t2, c = row["steps"]["symfuse 1 rank"], row["steps"]["symfuse 2 ranks, overlap"], \
            row["raw_collective"]["overlap"]
        row["hidden_share_steps"] = (t1 + c - t2) / c if None not in (t1, t2, c) and c else None
        pb = per_round("sf1", lambda r: r["models"][name]["1 rank"]["param_bytes_each"])
        row["gradient_bytes"] = sum(pb[0]) if pb else None
        from symfuse.distributed import DEFAULT_BUCKET_BYTES
        row["backprop_buckets"] = backprop_buckets(pb[0], DEFAULT_BUCKET_BYTES) if pb else []
        s[name] = row
    raw = [r["sf2"]["raw"] for r in rounds if "sf2" in r and "raw" in r["sf2"]]
    s["_raw"] = {b: _med([x[b]["median"] for x in raw]) for b in (raw[0] if raw else {})}
    s["_gamma"] = _med([r[k]["gamma"] for r in rounds for k in ("sf1", "sf2") if k in r and "gamma" in r[k]])
    return s


def backprop_buckets(param_bytes: list[int], bucket_bytes: int) -> list[int]:
    """Bucket sizes in the order backpropagation makes them ready (the last layer's first),
    by the rule of ``distributed.average_gradients``: filled from the last gradient back,
    closed when the next one would pass ``bucket_bytes``."""
    out, cur = [], 0
    for n in reversed(param_bytes):
        if cur and cur + n > bucket_bytes:
            out.append(cur)
            cur = 0
        cur += n
    return out + ([cur] if cur else [])


def fit_alpha_beta(raw: dict) -> tuple[float, float]:
    """alpha (s) and B (byte/s) of the 2-rank allreduce here: T(n) = 2 alpha + n / B (ring,
    p = 2), alpha from the 4-byte message, B from a least-squares slope over >= 64 KiB."""
    pts = sorted((int(b), t) for b, t in raw.items() if t is not None)
    alpha = pts[0][1] / 2
    big = [(n, t) for n, t in pts if n >= 1 << 16]
    mn, mt = statistics.fmean(n for n, _ in big), statistics.fmean(t for _, t in big)
    slope = sum((n - mn) * (t - mt) for n, t in big) / sum((n - mn) ** 2 for n, _ in big)
    return alpha, 1 / slope


def ring_time(p: int, buckets, alpha: float, bw: float, gamma: float) -> float:
    """Ring allreduce of each bucket (bytes) over p workers: 2(p-1) messages of n/p bytes
    (reduce-scatter then allgather), and (p-1)/p of n summed on the way."""
    return sum(2 * (p - 1) * alpha + 2 * (p - 1) / p * n / bw + (p - 1) / p * n * gamma for n in buckets)


def efficiency(t_compute: float, p: int, buckets, alpha, bw, gamma, window: float) -> float:
    """t_compute / (t_compute + exposed communication). The buckets (in the order they
    start) travel during the last ``window`` share of the step's compute; the last one to
    start cannot be hidden. window 0: blocking."""
    total = ring_time(p, buckets, alpha, bw, gamma)
    if window > 0:
        last = ring_time(p, buckets[-1:], alpha, bw, gamma)
        exposed = max(total - window * t_compute, last)
    else:
        exposed = total
    return t_compute / (t_compute + exposed)


def model_table(s: dict, models, alpha_here: float) -> list[dict]:
    rows = []
    gamma = s["_gamma"] or 0.0
    for name in models:
        t = s[name]["steps"]["symfuse 1 rank"]
        buckets = s[name]["backprop_buckets"]
        sched, share = s[name]["collective_bytes"]["overlap"], s[name]["window_share"]
        if t is None or not buckets:
            continue
        for bw in BANDWIDTHS:
            for alpha in (alpha_here,) + ALPHAS:
                rows.append({"model": name, "bandwidth": bw, "alpha": alpha, "measured_alpha": alpha == alpha_here,
                             "t_compute": t, "buckets": buckets,
                             "comm": {p: ring_time(p, buckets, alpha, bw / 8, gamma) for p in WORKERS},
                             "blocking": {p: efficiency(t, p, buckets, alpha, bw / 8, gamma, 0) for p in WORKERS},
                             "overlap": {p: efficiency(t, p, buckets, alpha, bw / 8, gamma, BACKWARD_SHARE)
                                         for p in WORKERS},
                             "symfuse": {p: efficiency(t, p, sched, alpha, bw / 8, gamma, share) for p in WORKERS}
                             if share else None})
    return rows


# ------------------------------------------------------------------------------------------ outputs
def _compact(o):
    """For the json: floats to 4 significant digits, the per-step profile sums left out
    (the summaries hold their statistics)."""
    if isinstance(o, float):
        return float(f"{o:.4g}")
    if isinstance(o, dict):
        return {k: _compact(v) for k, v in o.items() if k != "profile_steps"}
    if isinstance(o, (list, tuple)):
        return [_compact(v) for v in o]
    return o


def fmt_s(v) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1:
        return f"{v:.2f} s"
    if a >= 1e-3:
        return f"{v * 1e3:.2f} ms"
    return f"{v * 1e6:.1f} us"


def fmt_pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def fmt_hidden(v) -> str:
    # below 0 the 2-rank step lost more to contention than the collective costs: no share to show
    return "< 0" if v is not None and v < 0 else fmt_pct(v)


def fmt_bytes(n) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 1 << 20 else f"{n / 2**10:.1f} KiB" if n >= 1 << 10 else f"{n} B"


def md_table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "| :--- |" + " ---: |" * (len(headers) - 1)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def write_outputs(args, meta, rounds, s, s10, alpha_here, bw_here, model_rows, errors) -> str:
    d = args.out_dir or (os.path.join(HERE, "results", "quick") if args.quick else os.path.join(HERE, "results"))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "distributed.json"), "w") as fh:
        json.dump(_compact({"meta": meta, "summary": s, "summary_p10": s10, "model": model_rows,
                            "alpha_here": alpha_here, "bw_here": bw_here, "errors": errors, "rounds": rounds}),
                  fh, default=str)
    L = ["# distributed", ""]
    if args.quick:
        L += ["**QUICK MODE** (`--quick`): a smoke test with few steps; the numbers are not measurements.", ""]
    m = meta
    L += [f"- machine: {m['cpu']}, {m['cores']} cores; load average at start / end: {m['load_start']} / "
          f"{m['load_end']} (the machine is shared: other work runs beside these jobs)",
          f"- command: `python bench/study_distributed.py {' '.join(m['argv'])}`".rstrip() + f" ({m['started']}, "
          f"{m['wall_s']:.0f} s)",
          f"- versions: symfuse {m['symfuse']}, torch {m['torch']}, mpi4py {m['mpi4py']}, {m['mpi']}, numpy "
          f"{m['numpy']}, Python {m['python']}",
          f"- every process single-threaded (OMP/OpenBLAS/MKL_NUM_THREADS=1, `torch.set_num_threads(1)`), "
          f"cpu target, float32, batch {args.batch} per rank, SGD lr 0.01; rounds: {args.rounds}, each {args.steps} "
          f"timed steps per variant after {args.warmup} warm-up steps", ""]
    if errors:
        L += [f"**{len(errors)} job(s) failed**, see the end of this file.", ""]
    L += summary(s, s10, model_rows, args.models)
    L += ["## What is measured", "",
          "Each round runs four jobs, in alternating order: symfuse on 1 process (no MPI), symfuse on 2 ranks "
          "(`mpiexec -n 2`), torch on 1 process, torch DDP on 2 processes (gloo, a FileStore, loopback). Inside a "
          "job the variants of a model take turns in blocks of "
          f"{args.block} steps after a barrier, and every step is timed alone (`time.perf_counter`, rank 0). "
          "*median*: the median over rounds of each round's median; *p10*: the 10th percentile of all rounds' "
          "steps, the steps the machine's other load slowed least (on an idle machine the two would be close). "
          "Each rank trains on its own random batch (the per-rank batch is fixed: weak scaling, as Horovod's "
          "benchmarks).", "",
          "symfuse variants: `1 rank` (the model built without `data_parallel`: no collectives), and on 2 ranks "
          "`overlap` (`data_parallel()`: buckets of at most 1 MiB, each a non-blocking `MPI_Iallreduce` started "
          "where its gradients are ready and waited before its first reader), `blocking` (`data_parallel(overlap="
          "False)`: the same buckets, `MPI_Allreduce`) and `unbucketed` (`data_parallel(0)`: one blocking "
          "allreduce per gradient). All are compiled with `profile=True` (a clock read per kernel); `1 rank, no "
          "profile` shows what that costs.", "",
          "**Time in collectives** is measured two ways. *Profile*: the module's per-kernel clocks are read after "
          "every step (outside its timing), and the sums below are medians over steps. In the blocking step the "
          "allreduce kernels "
          "(pack the bucket, `MPI_Allreduce`, divide by the ranks) are the collective time; in the overlapped step "
          "a bucket's wait is counted in the kernel before which it was put, so its exposed communication is its "
          "kernels' total minus the blocking step's compute kernels, and the hidden share is 1 - exposed / "
          "blocking collective time. The profiled collective includes waiting for the other rank to arrive. "
          "*Raw MPI*: `comm.Allreduce` (mpi4py, float32 sum in place) of the same byte counts right after a "
          "barrier, median of many; hidden share = (1-rank step + raw collective - 2-rank overlapped step) / raw "
          "collective. The second way also charges the 2-rank step with the two processes' contention for the "
          "cores, caches and memory bandwidth (and this machine's other load), so it can come out negative.", ""]
    # ---- step times
    stats = (("median", s), ("p10", s10))
    keys = list(s[args.models[0]]["steps"])
    L += ["## Step time", "", md_table(["model", "statistic"] + keys,
                                       [[n, tag] + [fmt_s(ss[n]["steps"][k]) for k in keys]
                                        for n in args.models for tag, ss in stats]), ""]
    rows = []
    for n, (tag, ss) in ((n, st) for n in args.models for st in stats):
        st = ss[n]["steps"]
        t1 = st["symfuse 1 rank"]
        rows.append([n, tag, *(f"{t1 / st[k]:.2f}" if t1 and st[k] else "-" for k in
                          ("symfuse 2 ranks, overlap", "symfuse 2 ranks, blocking", "symfuse 2 ranks, unbucketed")),
                     f"{st['torch 1 process'] / st['torch DDP 2 processes']:.2f}"
                     if st["torch 1 process"] and st["torch DDP 2 processes"] else "-",
                     f"{st['symfuse 2 ranks, overlap'] / st['torch DDP 2 processes']:.2f}"
                     if st["symfuse 2 ranks, overlap"] and st["torch DDP 2 processes"] else "-"])
    L += ["Weak-scaling efficiency of 2 ranks (1-rank step / 2-rank step; 1.00 = twice the samples per second) "
          "and symfuse against DDP:", "",
          md_table(["model", "statistic", "symfuse overlap", "symfuse blocking", "symfuse unbucketed", "torch DDP",
                    "symfuse overlap / DDP step (< 1: symfuse faster)"], rows), ""]
    # ---- collectives
    rows = []
    for n, (tag, ss) in ((n, st) for n in args.models for st in stats):
        r = ss[n]
        pr = r["profile"]
        rows.append([n, tag, fmt_bytes(r["gradient_bytes"] or 0), len(r["collective_bytes"]["overlap"]),
                     fmt_s(pr["1 rank"]["compute"]), fmt_s(pr["blocking"]["compute"]),
                     fmt_s(pr["blocking"]["collective"]), fmt_s(pr["blocking"]["collective_later"]),
                     fmt_s(pr["unbucketed"]["collective"]),
                     fmt_s(r["raw_collective"]["overlap"]), fmt_s(r["window"]), fmt_s(r["exposed_overlap"]),
                     fmt_hidden(r["hidden_share_profile"]), fmt_hidden(r["hidden_share_steps"])])
    L += ["## Time in collectives and overlap (2 ranks, per step)", "",
          md_table(["model", "statistic", "gradients", "buckets", "compute, 1 rank", "compute, 2 ranks",
                    "collective, blocking", "the same, later rank", "collective, unbucketed", "raw MPI, buckets",
                    "window", "exposed, overlap", "hidden (profile)", "hidden (steps)"], rows), "",
          "compute: the profiled kernels other than the allreduce kernels. *the same, later rank*: per step, the "
          "smaller of the two ranks' allreduce-kernel times, i.e. that of the rank the other one waited for: what "
          "the collectives cost without the wait for a late partner. Buckets of the overlapped step, in "
          "the order they start: " + "; ".join(f"{n}: " + ", ".join(fmt_bytes(b) for b in s[n]["collective_bytes"]
                                                                   ["overlap"]) for n in args.models)
          + ". A bucket closes when the next gradient would take it past 1 MiB, so a small gradient between two "
          "large ones can travel alone and pay a whole allreduce's latency. window: the compute kernels between "
          "the first bucket's start and the first wait, all a collective can hide behind. The compiled schedule "
          "runs the chain of input gradients (the backward pass proper) first and the weight gradients after it, "
          "and the SGD update is one fused kernel that reads every gradient, so every wait lands before that "
          "kernel: the buckets start late in the backward pass and overlap only the remaining weight-gradient "
          "kernels. That, and MPICH's progress (see the notes), bounds the hidden share here.", ""]
    # ---- raw MPI
    used = {}
    for n in args.models:
        for k in SF_TWO:
            for b in s[n]["collective_bytes"][k]:
                used.setdefault(b, set()).add(f"{n} {k}")
    raw_rows = [[f"{int(b):,}", fmt_s(s["_raw"][b]), f"{int(b) / s['_raw'][b] / 1e9:.2f}",
                 ", ".join(sorted(used.get(int(b), ())))] for b in sorted(s["_raw"], key=int)]
    L += ["## Raw MPI_Allreduce here (2 ranks, shared memory)", "",
          md_table(["bytes", "median", "GB/s", "an allreduce of"], raw_rows), "",
          f"Fitted as a 2-rank ring, T(n) = 2 alpha + n / B: alpha = {fmt_s(alpha_here)} (half the 4-byte "
          f"allreduce), B = {bw_here / 1e9:.2f} GB/s (least-squares slope over 64 KiB-16 MiB). Reduction cost "
          f"gamma = {s['_gamma'] * 1e9:.3f} ns/byte (numpy float32 add of 16 MiB, both processes at once).", ""]
    # ---- the model against the 2-rank steps measured here
    rows = []
    for n, (tag, ss) in ((n, st) for n in args.models for st in stats):
        st, cb = ss[n]["steps"], ss[n]["collective_bytes"]
        t1, share = st["symfuse 1 rank"], ss[n]["window_share"]
        if not t1 or not cb["overlap"]:
            continue
        # B fitted here already includes the reduction: no gamma at p = 2
        pred = {k: t1 + ring_time(2, cb[k], alpha_here, bw_here, 0.0) for k in ("blocking", "unbucketed")}
        pred["overlap"] = t1 / efficiency(t1, 2, cb["overlap"], alpha_here, bw_here, 0.0, share or 0)
        rows.append([n, tag, fmt_s(t1)] + [f"{fmt_s(pred[k])} / {fmt_s(st['symfuse 2 ranks, ' + k])}"
                                            for k in ("overlap", "blocking", "unbucketed")])
    L += ["The model below at p = 2 with this machine's alpha and B, against the measured 2-rank steps "
          "(predicted / measured; the prediction is the 1-rank step plus the exposed allreduce time, the "
          "overlapped one with the measured window):", "",
          md_table(["model", "statistic", "1-rank step", "overlap", "blocking", "unbucketed"], rows), "",
          "Where the measured step is longer, the difference is what the model leaves out: the two processes "
          "slowing each other's compute, ranks arriving at a collective at different times (the machine's other "
          "load deschedules one of them), and MPI's progress.", ""]
    # ---- model
    meds = ", ".join(f"{n} {fmt_s(s[n]['steps']['symfuse 1 rank'])}" for n in args.models)
    L += ["## Alpha-beta model of ring allreduce at 8, 64 and 512 workers", "",
          "Each bucket b of n_b bytes: T_b(p) = 2(p-1) alpha + 2 (p-1)/p n_b / B + (p-1)/p n_b gamma (reduce-"
          "scatter then allgather around the ring: 2(p-1) messages of n_b/p bytes, (p-1)/p of the bytes summed); "
          "the step's communication is the sum over the buckets of `data_parallel()`, in the order "
          "backpropagation makes them ready ("
          + "; ".join(f"{n}: " + ", ".join(fmt_bytes(b) for b in s[n]["backprop_buckets"]) for n in args.models)
          + "). t_compute = the p10 of the measured "
          "1-rank step (the least disturbed steps: the machine's other load is no part of the work; the "
          f"median was {meds}), the same at every p since the per-rank batch is fixed. Efficiency E(p) = t_compute / "
          "(t_compute + exposed): *blocking*, exposed = all of it; *overlap*, the buckets travel during the "
          f"backward pass, taken as {BACKWARD_SHARE:.2f} of the step, except the last bucket, which is ready only "
          "when the backward pass ends: exposed = max(T - backward, T_last). alpha: the value measured here "
          "(shared memory, a floor no network reaches) and 5 and 25 us (typical TCP / RoCE per-message latency "
          "between datacenter hosts); B: 10 and 100 Gbit/s.", ""]
    rows = []
    for r in model_rows:
        rows.append([r["model"], f"{r['bandwidth'] / 1e9:.0f} Gbit/s",
                     fmt_s(r["alpha"]) + (" (here)" if r["measured_alpha"] else ""),
                     fmt_s(r["t_compute"])] +
                    [f"{fmt_s(r['comm'][p])}: {fmt_pct(r['blocking'][p])} / {fmt_pct(r['overlap'][p])} / "
                     f"{fmt_pct(r['symfuse'][p]) if r['symfuse'] else '-'}" for p in WORKERS])
    L += [md_table(["model", "network", "alpha", "t_compute"] +
                   [f"p = {p}: comm; E blocking / overlap / symfuse schedule" for p in WORKERS], rows), "",
          "comm: the ring allreduce of all buckets per step. *symfuse schedule*: overlap with the window measured "
          "above (" + ", ".join(f"{n} {fmt_pct(s10[n]['window_share'])} of the compute" for n in args.models)
          + ") instead of the whole backward pass, the buckets in the order the compiled step starts them.", ""]
    hv = []
    for label, eff, params in HOROVOD:
        hv.append([label, f"{params / 1e6:.1f} M", fmt_bytes(int(params * 4)), fmt_pct(eff)])
    for n in args.models:
        # Horovod's network: the model at 25 Gbit/s
        r, g = s10[n], s10["_gamma"] or 0.0
        t, nb = r["steps"]["symfuse 1 rank"], r["gradient_bytes"]
        if t and nb and r["backprop_buckets"]:
            e = efficiency(t, 512, r["backprop_buckets"], ALPHAS[0], HOROVOD_BW / 8, g, BACKWARD_SHARE)
            es = efficiency(t, 512, r["collective_bytes"]["overlap"], ALPHAS[0], HOROVOD_BW / 8, g,
                            r["window_share"]) if r["window_share"] else None
            hv.append([f"{n} (the model above at 25 Gbit/s, alpha 5 us: overlap / symfuse schedule)",
                       f"{nb / 4 / 1e6:.2f} M", fmt_bytes(nb), f"{fmt_pct(e)} / {fmt_pct(es)}"])
    L += ["### Beside Horovod's published scaling", "",
          md_table(["model", "parameters", "gradients (float32)", "scaling efficiency, 512 workers"], hv), "",
          "Horovod: Sergeev and Del Balso, *Horovod: fast and easy distributed deep learning in TensorFlow*, "
          "arXiv:1802.05799 (2018), which introduced its ring-allreduce design; the 512-GPU figures are from "
          "Horovod's benchmark page (docs/benchmarks in the horovod repository): 128 servers with 4 Pascal GPUs "
          "each, RoCE-capable 25 Gbit/s network, tf_cnn_benchmarks, batch 64 per GPU (the same page's earlier "
          "128-GPU run gave 90% / 90% / 79%). Those models spend hundreds of milliseconds of GPU compute per "
          "step, so even the 90-530 MiB of gradients travel mostly while the backward pass runs; Horovod fuses "
          "small tensors into one buffer per allreduce (Tensor Fusion), and NCCL's ring crosses the network only "
          "between servers (the hops inside a server go over PCIe/NVLink).", "",
          why_small(s10, args.models), ""]
    L += ["## Notes", "",
          "- MPICH progresses a non-blocking collective only inside MPI calls (no progress thread unless "
          "`MPICH_ASYNC_PROGRESS=1`, which would take a core from compute on this machine): an `MPI_Iallreduce` "
          "started mid-backward moves what it can at the start and the rest in `MPI_Wait`, so the hidden share "
          "measured here is a lower bound of what a NIC-offloaded or progress-threaded MPI would give.",
          "- DDP's allreduce time is not separated out (gloo runs it on its own thread during backward); only its "
          "step time is compared. DDP uses its default buckets (25 MiB, the first 1 MiB), so each model's "
          "gradients go in one or two allreduces.",
          "- Two ranks on two cores leave no core for anything else: the other processes of this machine, the "
          "MPI progress engine and gloo's threads all take time from the ranks' compute, which 1 rank never "
          "sees. The 2-rank numbers are therefore pessimistic for both symfuse and DDP.",
          "- MPI waits by polling: a rank inside a collective keeps its core spinning until the other rank "
          "has done its part. A large allreduce passes through shared memory in pieces, each needing both ranks "
          "to run; with more runnable processes than cores (the load average above), one of them is often "
          "descheduled, before the collective (the other waits for it: *collective, blocking* against *the same, "
          "later rank*) or in the middle of it (both wait: *later rank* against *raw MPI*), and a wait then "
          "lasts a scheduler time slice (milliseconds) instead of the allreduce's microseconds. The raw MPI cost, "
          "taken right after a barrier with both ranks running, is the floor; the p10 rows come close to it. "
          "gloo waits on sockets and gives its core up meanwhile, which on an oversubscribed machine costs DDP "
          "less.",
          "- Two changes to the compiled schedule would widen the overlap window: computing each layer's weight "
          "gradient as soon as its output gradient exists (before going on down the input-gradient chain), and "
          "updating each bucket's parameters right after its own wait instead of all of them in one fused kernel "
          "after every wait.", ""]
    if errors:
        L += ["## Failures", ""] + [f"- `{e[:600]}`" for e in errors] + [""]
    L += ["## For docs/distributed.md", "",
          "**Performance.** A data-parallel step costs the single-rank step plus whatever part of the gradient "
          "allreduce it could not hide. Each bucket (`data_parallel(bucket_bytes)`) starts where its gradients "
          "are computed and is waited only before the first kernel that reads it, so it overlaps whatever compute "
          "the schedule puts in between; today that is little, because the compiled step computes the weight "
          "gradients after the whole chain of input gradients and updates every parameter in one fused kernel. "
          "MPICH, moreover, moves a non-blocking collective along only inside MPI calls unless it has a progress "
          "thread. For the small models of the zoo the allreduce is latency-bound: a ring over p workers sends "
          "2(p-1) messages per bucket, which at hundreds of workers costs more than a whole step of the MLP, so "
          "such models want a larger per-rank batch, fewer buckets, or an allreduce whose latency grows with "
          "log p. `bench/study_distributed.py` measures the 1- and 2-rank steps, the time in collectives and the "
          "share hidden, compares PyTorch DDP (gloo), and extrapolates to 8-512 workers with an alpha-beta model "
          "(bench/results/distributed.md).", ""]
    md = "\n".join(L)
    with open(os.path.join(d, "distributed.md"), "w") as fh:
        fh.write(md)
    plot(os.path.join(d, "distributed.png"), args, s, s10)
    return d


def summary(s, s10, model_rows, models) -> list[str]:
    """The headline numbers, from the tables below."""
    out = ["## Summary", ""]
    for n in models:
        st, r = s[n]["steps"], s[n]
        t1, t2 = st["symfuse 1 rank"], st["symfuse 2 ranks, overlap"]
        ddp1, ddp2 = st["torch 1 process"], st["torch DDP 2 processes"]
        if None in (t1, t2):
            continue
        lo = s10[n]["steps"]
        e10 = lo["symfuse 1 rank"] / lo["symfuse 2 ranks, overlap"]
        line = (f"- **{n}** (median step): 1 rank {fmt_s(t1)}, 2 ranks {fmt_s(t2)} with overlap "
                f"({fmt_s(st['symfuse 2 ranks, blocking'])} blocking, {fmt_s(st['symfuse 2 ranks, unbucketed'])} "
                f"unbucketed): 2-rank weak-scaling efficiency {t1 / t2:.2f}, i.e. {2 * t1 / t2:.2f}x the samples "
                f"per second of one rank (on the p10 steps: {e10:.2f})")
        if ddp1 and ddp2:
            line += (f"; torch {fmt_s(ddp1)} on 1 process, DDP {fmt_s(ddp2)} on 2 ({ddp1 / ddp2:.2f}), so symfuse's "
                     f"2-rank step takes {t2 / ddp2:.2f}x DDP's")
        h = r["hidden_share_profile"]
        hidden = "none" if h is not None and h <= 0 else fmt_pct(h)
        line += (f". Collectives: {fmt_s(r['profile']['blocking']['collective'])} per step in the blocking step's "
                 f"allreduce kernels against {fmt_s(r['raw_collective']['overlap'])} of raw MPI_Allreduce for the "
                 f"same bytes; the overlapped step hides {hidden} of it (its "
                 f"window is {fmt_s(r['window'])} of compute).")
        model = {(m["bandwidth"], m["alpha"]): m for m in model_rows if m["model"] == n}
        effs = [f"{bw / 1e9:.0f} Gbit/s {fmt_pct(model[(bw, ALPHAS[0])]['overlap'][512])}"
                for bw in BANDWIDTHS if (bw, ALPHAS[0]) in model]
        if effs:
            line += (" Modelled at 512 workers (alpha 5 us, overlap in the backward pass): " + ", ".join(effs)
                     + ".")
        out.append(line)
    out += ["- Horovod's published 512-GPU scaling efficiency: 90% (Inception V3, ResNet-101) and 68% (VGG-16).",
            ""]
    return out


def why_small(s, models) -> str:
    """Why the small models scale worse, with their own numbers."""
    alpha, parts = ALPHAS[0], []
    for n in models:
        t, nb, k = s[n]["steps"]["symfuse 1 rank"], s[n]["gradient_bytes"], len(s[n]["backprop_buckets"])
        if not t or not nb:
            continue
        bw = [2 * 511 / 512 * nb / (b / 8) for b in BANDWIDTHS]
        parts.append(f"{n}: a {fmt_s(t)} step, {fmt_bytes(nb)} of gradients in {k} buckets; the bandwidth term "
                     f"2(p-1)/p n/B is {fmt_s(bw[0])} at 10 Gbit/s and {fmt_s(bw[1])} at 100 Gbit/s, the latency "
                     f"term 2(p-1) alpha x buckets {fmt_s(2 * 511 * alpha * k)} at p = 512 and alpha = 5 us")
    return ("The small models here have little compute to hide communication behind (" + "; ".join(parts) + "). "
            "The bandwidth term barely grows with p, the latency term grows linearly: at 10 Gbit/s the MLP "
            "is bandwidth-bound from a few workers on, and at any bandwidth the ring's 2(p-1) messages per bucket "
            "outgrow a millisecond-scale step by p = 512. Overlap cannot hide more than the backward pass (and in "
            "symfuse's schedule, less: the window above). A latency-bound allreduce wants fewer, larger buckets, a "
            "tree or recursive-doubling algorithm (2 log2 p alpha instead of 2(p-1) alpha), hierarchy (reduce "
            "inside a host first), or more work per step (a larger per-rank batch).")


def plot(path, args, s, s10) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    keys = ["symfuse 1 rank", "symfuse 2 ranks, overlap", "symfuse 2 ranks, blocking", "symfuse 2 ranks, unbucketed",
            "torch 1 process", "torch DDP 2 processes"]
    colors = ["#d62728", "#ff7f0e", "#ffbb78", "#bcbd22", "#1f77b4", "#aec7e8"]
    w = 0.8 / len(keys)
    for i, (k, c) in enumerate(zip(keys, colors)):
        vals = [(s[n]["steps"][k] or 0) * 1e3 for n in args.models]
        bars = a1.bar([j + i * w for j in range(len(args.models))], vals, w, label=k, color=c)
        for b, v in zip(bars, vals):
            a1.annotate(f"{v:.2g}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                        fontsize=6)
    a1.set_xticks([j + w * (len(keys) - 1) / 2 for j in range(len(args.models))], args.models)
    a1.set_ylabel("ms per step (median)")
    a1.set_yscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    a1.yaxis.set_major_locator(FixedLocator([0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]))
    a1.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a1.yaxis.set_minor_formatter(NullFormatter())
    a1.set_title(f"measured: batch {args.batch} per rank, 1 thread per process")
    a1.legend(fontsize=7)
    gamma = s10["_gamma"] or 0.0
    colors = {"mlp": "#d62728", "lenet": "#1f77b4"}
    for n in args.models:
        t = s10[n]["steps"]["symfuse 1 rank"]
        buckets = s10[n]["backprop_buckets"]
        if not t or not buckets:
            continue
        for bw, ls in zip(BANDWIDTHS, ("--", "-")):
            e = [100 * efficiency(t, p, buckets, ALPHAS[0], bw / 8, gamma, BACKWARD_SHARE) for p in CURVE_WORKERS]
            a2.plot(CURVE_WORKERS, e, linestyle=ls, color=colors.get(n, "k"), marker="o", ms=3,
                    label=f"{n}, {bw / 1e9:.0f} Gbit/s")
    # nudged apart: two of them are at the same efficiency
    for (label, eff, _), mk, x in zip(HOROVOD, ("s", "^", "v"), (440, 600, 512)):
        a2.plot([x], [100 * eff], mk, color="k", label=f"Horovod {label}, 512 GPUs (published, 25 Gbit/s)")
    a2.set_xscale("log", base=2)
    a2.set_xticks(CURVE_WORKERS, [str(p) for p in CURVE_WORKERS])
    a2.set_ylim(0, 105)
    a2.set_xlabel("workers p")
    a2.set_ylabel("scaling efficiency, %")
    a2.set_title("ring-allreduce model: alpha 5 us, overlap in the backward pass")
    a2.legend(fontsize=6, handlelength=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def meta_info(args) -> dict:
    import platform

    import numpy
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    import mpi4py
    from mpi4py import MPI
    import symfuse
    try:
        import torch
        tv = torch.__version__
    except ImportError:
        tv = "-"
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "argv": sys.argv[1:],
            "python": platform.python_version(), "numpy": numpy.__version__, "mpi4py": mpi4py.__version__,
            "mpi": " ".join(MPI.Get_library_version().splitlines()[0].split()), "torch": tv,
            "symfuse": getattr(symfuse, "__version__", "?"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_start": "/".join(f"{x:.2f}" for x in os.getloadavg())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 round, 30 steps; writes bench/results/quick/")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200, help="timed steps per variant and round (>= 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--block", type=int, default=10, help="steps per turn of a variant")
    ap.add_argument("--batch", type=int, default=64, help="per rank")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--raw-reps", type=int, default=300, help="most MPI_Allreduce calls per message size")
    ap.add_argument("--raw-seconds", type=float, default=0.5, help="time per message size")
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed for one job")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        (sf_worker if job["kind"] == "sf" else torch_worker)(job)
        return 0
    if args.quick:
        args.rounds, args.steps, args.warmup, args.raw_reps, args.raw_seconds = 1, 30, 3, 50, 0.1
    args.models = args.models.split(",")
    meta = meta_info(args)
    t0 = time.time()
    scratch = tempfile.mkdtemp(prefix="symfuse-bench-distributed-")
    try:
        rounds, errors = measure(args, scratch)
    finally:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)
    meta["load_end"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    meta["wall_s"] = time.time() - t0
    s = summarise(rounds, args.models)
    s10 = summarise(rounds, args.models, LOW)
    if not s["_raw"]:
        log("no 2-rank symfuse job finished: nothing to model\n  " + "\n  ".join(e[:600] for e in errors))
        return 1
    alpha_here, bw_here = fit_alpha_beta(s["_raw"])
    # the model's compute: the 1-rank steps least slowed by the machine's other work
    rows = model_table(s10, args.models, alpha_here)
    d = write_outputs(args, meta, rounds, s, s10, alpha_here, bw_here, rows, errors)
    log(f"wrote {d}/distributed.{{json,md,png}}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
