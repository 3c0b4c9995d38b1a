"""Builders of the recurrent-network study (bench/study_rnn.py): one LSTM
training step per framework, identical everywhere; and that study's child process.

Frameworks (names used by ``--frameworks``):

    symfuse-cpu      symfuse.nn.LSTM / zoo.seqdigits, sf.function(..., device="cpu")
    torch-eager      torch.nn.LSTM, autograd, in-place SGD
    torch-compile    torch.compile(fullgraph=True) of the functional step
                     (torch.func.grad_and_value + SGD), the LSTM cell written out
                     over a Python loop (dynamo unrolls it: one copy of the cell per step)
    jax              the cell written out under jax.lax.scan; jax.jit of
                     value_and_grad + SGD with the parameters donated
    pytensor         the cell under pytensor.scan, pytensor.grad through it,
                     Mode(linker="cvm", optimizer="fast_run")
    symfuse-interp   (smoke tests of the harness only) the symfuse graph on the
                     numpy interpreter, device="interp"

Workloads:

    lstm       (A) 1-layer LSTM, input 128, hidden 256, batch 64, 50 steps;
               loss = mean(h_T ** 2) of the last hidden state
    seqdigits  (B) symfuse.nn.zoo.seqdigits: 32 digits (8x8) read row by row,
               LSTM hidden 64, Dense 64->10, softmax cross-entropy

Both train with SGD, lr 0.01, on every parameter, as ONE compiled function.
Parameters are PyTorch's LSTM layout (``weight_ih_l0`` (4H, I), ``weight_hh_l0``
(4H, H), ``bias_ih_l0``, ``bias_hh_l0``; gates i, f, g, o) plus the dense head
``W`` (H, 10), ``b`` (10), drawn once from seeded numpy generators and copied into
every framework; ``make_data`` gives the same inputs everywhere.

``python bench/peers_rnn.py --child JSON`` runs one measurement in a fresh process
and prints one line ``@@RESULT@@ {json}`` (as bench/peers.py does);
``python bench/peers_rnn.py --framework jax --workload lstm --seq 10`` runs one
framework once and prints what a child reports.
"""
from __future__ import annotations

import argparse
import gzip
import importlib
import json
import resource
import os
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import peers  # noqa: E402
from peers import LR, RESULT_MARK, checksum  # noqa: E402

FRAMEWORKS = ("symfuse-cpu", "torch-eager", "torch-compile", "jax", "pytensor")
SMOKE_ONLY = ("symfuse-interp",)
ALL_FRAMEWORKS = FRAMEWORKS + SMOKE_ONLY
NO_COMPILE = ("torch-eager",)

# Study.__init__ checks frameworks against peers.REQUIRES; the smoke-test-only name must be known there
peers.REQUIRES.setdefault("symfuse-interp", [("symfuse", "symfuse (this repository: set PYTHONPATH or "
                                                         "pip install -e .)")])

DIGITS_FILE = os.path.join(peers.ROOT, "symfuse", "nn", "datasets", "digits.csv.gz")
PARAM_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "W", "b")

IMPORTS = {
    "symfuse-cpu": ["symfuse", "symfuse.nn"], "symfuse-interp": ["symfuse", "symfuse.nn"],
    "pytensor": ["pytensor", "pytensor.tensor"],
    "jax": ["jax", "jax.numpy"],
    "torch-eager": ["torch", "torch.nn.functional"], "torch-compile": ["torch", "torch.nn.functional"],
}


@dataclass(frozen=True)
class RnnSpec:
    model: str              # "lstm" (workload A) | "seqdigits" (workload B)
    batch: int
    seq: int                # time steps
    inputs: int             # features per step
    hidden: int
    classes: int = 0        # > 0: dense head + softmax cross-entropy; 0: mean(h_T ** 2)

    @property
    def label(self) -> str:
        return f"{self.model}-t{self.seq}"

    def describe(self) -> str:
        head = f", Dense {self.hidden}->{self.classes}, softmax xent" if self.classes else ", loss mean(h_T^2)"
        return (f"batch {self.batch}, {self.seq} steps x {self.inputs} features, LSTM hidden {self.hidden}{head}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "RnnSpec":
        return cls(**d)


WORKLOAD_A = RnnSpec("lstm", batch=64, seq=50, inputs=128, hidden=256)
WORKLOAD_B = RnnSpec("seqdigits", batch=32, seq=8, inputs=8, hidden=64, classes=10)
# --quick: small enough for the numpy interpreter and a 2-core machine; B is small already
QUICK_A = RnnSpec("lstm", batch=8, seq=10, inputs=16, hidden=32)


def with_seq(spec: RnnSpec, seq: int) -> RnnSpec:
    return RnnSpec(spec.model, spec.batch, seq, spec.inputs, spec.hidden, spec.classes)


def make_params(spec: RnnSpec, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """PyTorch's LSTM initialisation U(-1/sqrt(H), 1/sqrt(H)); Glorot-uniform head, zero bias."""
    rng = np.random.default_rng(seed)
    H, G = spec.hidden, 4 * spec.hidden
    k = 1.0 / np.sqrt(H)
    u = lambda lim, *shape: rng.uniform(-lim, lim, shape).astype(np.float32)  # noqa: E731
    out = [("weight_ih_l0", u(k, G, spec.inputs)), ("weight_hh_l0", u(k, G, H)),
           ("bias_ih_l0", u(k, G)), ("bias_hh_l0", u(k, G))]
    if spec.classes:
        lim = np.sqrt(6.0 / (H + spec.classes))
        out += [("W", u(lim, H, spec.classes)), ("b", np.zeros(spec.classes, np.float32))]
    return out


def make_data(spec: RnnSpec, seed: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """x (batch, time, features) float32; y int32 labels for the classifier.

    seqdigits reads the shipped digits file with numpy, not through symfuse.nn.data, so that
    the peers' processes never import symfuse (it would count in their memory)."""
    if spec.model == "lstm":
        rng = np.random.default_rng(seed)
        return rng.normal(size=(spec.batch, spec.seq, spec.inputs)).astype(np.float32), None
    if spec.seq != 8 or spec.inputs != 8:
        raise ValueError("seqdigits: the shipped digits are 8x8 (8 steps of 8 features)")
    with gzip.open(DIGITS_FILE, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", max_rows=spec.batch)
    if table.shape[0] < spec.batch:
        raise ValueError(f"seqdigits: batch {spec.batch} > {table.shape[0]} digits")
    x = (table[:, :64] / 16.0).reshape(spec.batch, 8, 8).astype(np.float32)
    return x, table[:, 64].astype(np.int32)


# ------------------------------------------------------------------------------------------ builders
# Each returns (step, info) as in bench/peers.py: step() runs one training call on fixed inputs, returns
# the loss once the work is done; info is a dict, or a function returning one (called after the timing).


def _assign(shared, params) -> None:
    """Copy the study's arrays into symfuse's parameters, by name and shape: a change of symfuse's
    layout must fail here, not compare different models."""
    if len(shared) != len(params):
        raise RuntimeError(f"symfuse model has {len(shared)} parameters, the study {len(params)}")
    for p, (n, v) in zip(shared, params):
        have = p.get_value()
        if not p.name.endswith(n) or have.shape != v.shape:
            raise RuntimeError(f"symfuse parameter {p.name} {have.shape} does not match the study's {n} {v.shape}")
        p.set_value(v)


def _build_symfuse(spec: RnnSpec, params, data, device: str):
    import symfuse as sf
    from symfuse import nn
    xv, yv = data
    if spec.model == "lstm":
        lstm = nn.LSTM(spec.inputs, spec.hidden)
        ps = lstm.params
        _assign(ps, params)
        x = sf.tensor("x", xv.shape)
        _, (h, _c) = lstm.run(x)
        hT = h[0]                                    # final state is (layers, batch, hidden)
        loss = (hT * hT).mean()
        grads = sf.grad(loss, ps)
        f = sf.function([x], loss, updates=[(p, p - LR * g) for p, g in zip(ps, grads)], device=device,
                        name="lstm_train")
        args = (xv,)
    else:
        from symfuse.nn import zoo
        zm = zoo.seqdigits(batch=spec.batch, rows=spec.seq, hidden=spec.hidden, optimizer=nn.SGD(LR))
        _assign(zm.params, params)
        # the zoo's training graph and updates; the loss alone as output, as every peer returns
        f = sf.function(zm.inputs, zm.train_outputs[0], updates=zm.updates, device=device, name="seqdigits_train")
        args = (xv.reshape(spec.batch, 1, spec.seq, spec.inputs), yv)

    def info():     # after the timing: reading f.function parses the cached IR on a graph-cache hit
        stages: dict[str, float] = {}
        for s in f.report.stages:
            stages[s.name] = stages.get(s.name, 0.0) + s.seconds
        out = {"stages": stages, "report_total_s": f.report.total_seconds,
               "graph_cache": f.report.info.get("graph_cache"), "memory": f.report.info.get("memory"),
               "ops_built": next((s.ops_before for s in f.report.stages if s.name == "build graph"), None)}
        for key, get in (("kernels", lambda: len(f.kernels)), ("ops_optimized", lambda: len(f.function.ops))):
            try:
                out[key] = get()
            except Exception:  # noqa: BLE001 -- the interpreter has no kernels
                pass
        return out

    return (lambda: f(*args)), info


def _torch_cell_loop(torch, ps, x, hidden: int):
    """The LSTM written out: the input projection of every step as one product, then the cell per step."""
    w_ih, w_hh, b_ih, b_hh = ps[:4]
    B, T, I = x.shape
    xp = (x.transpose(0, 1).reshape(T * B, I) @ w_ih.t() + b_ih).reshape(T, B, 4 * hidden)
    h = x.new_zeros(B, hidden)
    c = x.new_zeros(B, hidden)
    w_hh_t = w_hh.t()
    for t in range(T):
        i, f, g, o = (xp[t] + h @ w_hh_t + b_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return h


def _build_torch(spec: RnnSpec, params, data, compiled: bool):
    import torch
    import torch.nn.functional as F
    xv, yv = data
    x = torch.tensor(xv)
    y = torch.tensor(yv.astype(np.int64)) if yv is not None else None

    def head_loss(hT, head):
        if not spec.classes:
            return (hT * hT).mean()
        return F.cross_entropy(hT @ head[0] + head[1], y)

    info = {"threads": torch.get_num_threads()}
    if not compiled:
        lstm = torch.nn.LSTM(spec.inputs, spec.hidden, batch_first=True)
        with torch.no_grad():
            for n, v in params[:4]:
                getattr(lstm, n).copy_(torch.from_numpy(v))
        head = [torch.tensor(v, requires_grad=True) for _, v in params[4:]]
        ps = list(lstm.parameters()) + head

        def step():
            for p in ps:
                p.grad = None
            _, (h, _c) = lstm(x)
            loss = head_loss(h[-1], head)
            loss.backward()
            with torch.no_grad():
                for p in ps:
                    p.add_(p.grad, alpha=-LR)
            return loss.detach()
        return step, info

    def loss_fn(ps, x):
        return head_loss(_torch_cell_loop(torch, ps, x, spec.hidden), ps[4:])

    def train_step(ps, x):
        g, loss = torch.func.grad_and_value(loss_fn)(ps, x)
        return loss, [p - LR * gi for p, gi in zip(ps, g)]

    f = torch.compile(train_step, fullgraph=True)
    state = [[torch.tensor(v) for _, v in params]]

    def step():
        loss, state[0] = f(state[0], x)
        return loss

    def info_after():
        out = dict(info)
        try:    # which of inductor's persistent caches answered (warm runs)
            from torch._dynamo.utils import counters
            out["inductor_counters"] = {k: v for k, v in counters["inductor"].items()
                                        if "cache" in k and v}
            out["aot_autograd_counters"] = {k: v for k, v in counters["aot_autograd"].items()
                                            if "cache" in k and v}
        except Exception:  # noqa: BLE001
            pass
        return out
    return step, info_after


def _build_jax(spec: RnnSpec, params, data):
    import jax
    import jax.numpy as jnp
    xv, yv = data
    x = jnp.asarray(xv)
    y = jnp.asarray(yv) if yv is not None else None
    H = spec.hidden

    def forward(ps, x):
        w_ih, w_hh, b_ih, b_hh = ps[:4]
        B, T, I = x.shape
        xp = (jnp.swapaxes(x, 0, 1).reshape(T * B, I) @ w_ih.T + b_ih).reshape(T, B, 4 * H)
        w_hh_t = w_hh.T

        def cell(carry, xt):
            h, c = carry
            i, f, g, o = jnp.split(xt + h @ w_hh_t + b_hh, 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zero = jnp.zeros((B, H), x.dtype)
        (h, _c), _ = jax.lax.scan(cell, (zero, zero), xp)
        return h

    def loss_fn(ps, x):
        hT = forward(ps, x)
        if not spec.classes:
            return jnp.mean(hT * hT)
        logp = jax.nn.log_softmax(hT @ ps[4] + ps[5], axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def train(ps, x):
        loss, g = jax.value_and_grad(loss_fn)(ps, x)
        return loss, [p - LR * gi for p, gi in zip(ps, g)]

    f = jax.jit(train, donate_argnums=0)
    state = [[jnp.asarray(v) for _, v in params]]

    def step():
        loss, state[0] = f(state[0], x)
        return loss.block_until_ready()

    def info():
        d = os.environ.get("JAX_COMPILATION_CACHE_DIR")
        return {"persistent_cache_files": len(os.listdir(d)) if d and os.path.isdir(d) else None}
    return step, info


def _build_pytensor(spec: RnnSpec, params, data):
    import pytensor
    import pytensor.tensor as pt
    try:
        from pytensor.compile.debug import profiling as ptprof     # PyTensor >= 3
    except ImportError:
        from pytensor.compile import profiling as ptprof           # PyTensor 2
    from pytensor.link.c import cmodule
    xv, yv = data
    rw0, ln0, im0 = ptprof.total_graph_rewrite_time, ptprof.total_time_linker, cmodule.import_time
    mode = pytensor.compile.mode.Mode(linker="cvm", optimizer="fast_run")
    B, T, I, H = spec.batch, spec.seq, spec.inputs, spec.hidden
    x = pt.tensor("x", dtype="float32", shape=(B, T, I))
    ps = [pytensor.shared(v, name=n) for n, v in params]
    w_ih, w_hh, b_ih, b_hh = ps[:4]
    xp = (pt.dot(x.dimshuffle(1, 0, 2).reshape((T * B, I)), w_ih.T) + b_ih).reshape((T, B, 4 * H))

    def cell(xt, h, c, w_hh, b_hh):
        z = xt + pt.dot(h, w_hh.T) + b_hh
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
        c = pt.sigmoid(f) * c + pt.sigmoid(i) * pt.tanh(g)
        h = pt.sigmoid(o) * pt.tanh(c)
        return h, c

    zero = pt.zeros((B, H), dtype="float32")
    (hs, _cs), _ = pytensor.scan(cell, sequences=[xp], outputs_info=[zero, zero], non_sequences=[w_hh, b_hh],
                                 strict=True)
    hT = hs[-1]
    if spec.classes:
        y = pt.tensor("y", dtype="int32", shape=(B,))
        logits = pt.dot(hT, ps[4]) + ps[5]
        # as bench/peers.py: the Theano tutorial's negative log-likelihood, which PyTensor stabilises
        loss = -pt.mean(pt.log(pt.special.softmax(logits, axis=-1))[pt.arange(B), y])
        inputs, args = [x, y], (xv, yv)
    else:
        loss = pt.mean(hT * hT)
        inputs, args = [x], (xv,)
    grads = pytensor.grad(loss, ps)
    f = pytensor.function(inputs, loss, updates=[(p, p - np.float32(LR) * g) for p, g in zip(ps, grads)],
                          mode=mode)
    info = {"stages": {"rewrite": ptprof.total_graph_rewrite_time - rw0, "link": ptprof.total_time_linker - ln0,
                       "import": cmodule.import_time - im0},
            "nodes": len(f.maker.fgraph.apply_nodes), "blas_ldflags": pytensor.config.blas__ldflags,
            "floatX": pytensor.config.floatX}
    return (lambda: f(*args)), info


def _builder(framework: str):
    if framework == "symfuse-cpu":
        return lambda s, p, d: _build_symfuse(s, p, d, "cpu")
    if framework == "symfuse-interp":
        return lambda s, p, d: _build_symfuse(s, p, d, "interp")
    if framework == "torch-eager":
        return lambda s, p, d: _build_torch(s, p, d, False)
    if framework == "torch-compile":
        return lambda s, p, d: _build_torch(s, p, d, True)
    if framework == "jax":
        return _build_jax
    if framework == "pytensor":
        return _build_pytensor
    raise ValueError(f"unknown framework {framework!r}")


# ------------------------------------------------------------------------------------------- measuring


def build(framework: str, spec: RnnSpec, settle: int = 3) -> peers.Built:
    """As peers.build: compile_s = (graph construction + explicit compile + first call) - one steady call."""
    params, data = make_params(spec), make_data(spec)
    peers.configure_caches(framework)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        step, info = _builder(framework)(spec, params, data)
        t1 = time.perf_counter()
        out = step()
        t2 = time.perf_counter()
        first = checksum(out)
        times, second = [], None
        for i in range(max(1, settle)):
            t = time.perf_counter()
            out = step()
            times.append(time.perf_counter() - t)
            if i == 0:
                second = checksum(out)
    steady = statistics.median(times)
    info = info() if callable(info) else info
    return peers.Built(framework, spec, step, (t2 - t0) - steady, t1 - t0, t2 - t1, steady, info, first, second)


def measure(job: dict) -> dict:
    """One measurement in this (fresh) process. job: framework, spec, mode (compile | step), settle,
    warmup, steps, budget_s, min_steps. Mirrors peers.measure (same fields, same RSS readings)."""
    fw, spec, mode = job["framework"], RnnSpec.from_json(job["spec"]), job["mode"]
    res: dict = {"framework": fw, "spec": spec.to_json(), "label": spec.label, "mode": mode}
    t = time.perf_counter()
    for m in IMPORTS[fw]:
        importlib.import_module(m)
    res["import_s"] = time.perf_counter() - t
    peers._apply_threads(fw)
    res["rss_after_import_mb"] = peers._maxrss_mb()
    b = build(fw, spec, settle=job.get("settle", 3))
    res.update(compile_s=b.compile_s, build_s=b.build_s, first_s=b.first_s, settle_s=b.steady_s,
               info=b.info, first_value=b.first_value, second_value=b.second_value)
    res["rss_after_compile_mb"] = peers._maxrss_mb()
    if mode == "step":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(job.get("warmup", 5)):
                b.step()
            times = []
            budget = job.get("budget_s")
            t_start = time.perf_counter()
            for i in range(job.get("steps", 30)):
                t = time.perf_counter()
                b.step()
                times.append(time.perf_counter() - t)
                if budget and time.perf_counter() - t_start > budget and i + 1 >= job.get("min_steps", 5):
                    break
        res["times_s"] = times
        res["step_s"] = statistics.median(times)
        res["step_min_s"] = min(times)
        q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
        res["step_q1_s"], res["step_q3_s"] = q[0], q[2]
    res["maxrss_mb"] = peers._maxrss_mb()
    res["vmhwm_mb"] = peers._vmhwm_mb()
    res["versions"] = peers.versions(fw)
    res["children_maxrss_mb"] = peers._maxrss_mb(resource.RUSAGE_CHILDREN)
    res["status"] = "ok"
    return res


def child_main(job_json: str) -> int:
    job = json.loads(job_json)
    try:
        res = measure(job)
    except Exception as e:  # noqa: BLE001 -- reported to the parent, which records it
        res = {"framework": job.get("framework"), "status": "error",
               "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    sys.stdout.flush()
    print(RESULT_MARK + " " + json.dumps(res), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Builders of the recurrent-network study; run one measurement.")
    ap.add_argument("--child", metavar="JSON", help="run one job (used by bench/study_rnn.py)")
    ap.add_argument("--framework", default="torch-eager", help=f"one of {', '.join(ALL_FRAMEWORKS)}")
    ap.add_argument("--workload", default="lstm", choices=["lstm", "seqdigits"])
    ap.add_argument("--seq", type=int, default=None, help="time steps (lstm only; default 50)")
    ap.add_argument("--quick", action="store_true", help="the --quick sizes of study_rnn.py")
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args(argv)
    if a.child:
        return child_main(a.child)
    peers.check_frameworks([a.framework])
    spec = WORKLOAD_B if a.workload == "seqdigits" else (QUICK_A if a.quick else WORKLOAD_A)
    if a.seq and a.workload == "lstm":
        spec = with_seq(spec, a.seq)
    res = measure({"framework": a.framework, "spec": spec.to_json(), "mode": "step", "steps": a.steps, "warmup": 2})
    res.pop("times_s", None)
    print(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
