"""One builder per framework for the side-by-side studies (bench/study_*.py).

Frameworks (names used by ``--frameworks``):

    symfuse-cpu        sf.function(..., device="cpu"): fused C kernels, gcc, OpenBLAS
    symfuse-cuda-aot   sf.function(..., device="cuda", arch="sm_90"): NVRTC, compile only
    pytensor           pytensor.function, C backend (linker "cvm", optimizer "fast_run")
    jax                jax.jit on the CPU (XLA)
    torch-eager        PyTorch eager mode, autograd
    torch-compile      torch.compile(fullgraph=True) of the whole functional step
    numpy              hand-written forward and backward in numpy

Models (identical in every framework: same float32 initial parameters, same
batch, same labels):

    mlp     784-512-512-10, relu, batch 128
    lenet   LeNet-5 as in the Theano tutorial: conv 20 5x5 valid, +bias, tanh,
            maxpool 2; conv 50 5x5, +bias, tanh, maxpool 2; flatten 800; dense 500
            tanh; dense 10; softmax cross-entropy with integer labels, batch 128
    chain   (scale study) n elementwise ops on a (batch, width) tensor:
            x*1.0001, +0.001 alternating, tanh every fifth op

and two functions each: ``train`` (forward, backward and the SGD update of
every parameter, lr 0.01, as ONE compiled function; returns the loss) and
``infer`` (softmax probabilities). ``mlp`` takes any layer sizes (``dims``):
the scale study uses deep narrow ones.

``build(framework, spec)`` imports nothing that is not already imported,
builds the graph, compiles it, calls it once, then a few more times, and
returns a :class:`Built`: the zero-argument ``step`` (one call on fixed inputs,
finished when it returns) and the compile time, defined for every framework as

    compile_s = (graph construction + explicit compile + FIRST call) - one steady-state call

so lazy compilers (JAX, torch.compile, which compile on the first call) and
ahead-of-time ones (symfuse, PyTensor) are measured the same way.

This file is also the child process of the studies: ``python bench/peers.py
--child JSON`` runs one measurement in a fresh process and prints one line
``@@RESULT@@ {json}``.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import resource
import shutil
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCH = 128
LR = 0.01
CUDA_ARCH = "sm_90"
RESULT_MARK = "@@RESULT@@"

FRAMEWORKS = ("symfuse-cpu", "symfuse-cuda-aot", "pytensor", "jax", "torch-eager", "torch-compile", "numpy")
COMPILE_ONLY = {"symfuse-cuda-aot"}

# framework -> [(importable module, pip package)]: checked (without importing) before a study starts
REQUIRES = {
    "symfuse-cpu": [("symfuse", "symfuse (this repository: set PYTHONPATH or pip install -e .)"),
                    ("scipy_openblas32", "scipy-openblas32")],
    "symfuse-cuda-aot": [("symfuse", "symfuse (this repository)"), ("cuda.bindings", "cuda-bindings"),
                         ("dist:nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc")],
    "pytensor": [("pytensor", "pytensor")],
    "jax": [("jax", "jax"), ("jaxlib", "jaxlib")],
    "torch-eager": [("torch", "torch")],
    "torch-compile": [("torch", "torch")],
    "numpy": [("numpy", "numpy")],
}
# framework -> executables it compiles with
REQUIRES_EXE = {"symfuse-cpu": ["cc|gcc|clang"], "pytensor": ["g++|c++|clang++"], "torch-compile": ["g++|c++|clang++"]}


class MissingPeer(SystemExit):
    """A requested framework cannot run here: the message names what to install."""


def parse_frameworks(text: str | None, allowed=FRAMEWORKS, default=FRAMEWORKS) -> list[str]:
    if not text:
        return list(default)
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(f"unknown framework(s) {', '.join(bad)}; known: {', '.join(allowed)}")
    return names


def check_frameworks(names, requires=None, requires_exe=None) -> None:
    """Exit non-zero, naming the missing package, unless every requested
    framework can be imported (looked up with find_spec, not imported) and
    its compiler is on PATH."""
    requires = requires or REQUIRES
    requires_exe = requires_exe if requires_exe is not None else REQUIRES_EXE
    missing = []
    for n in names:
        for mod, pkg in requires.get(n, []):
            if mod.startswith("dist:"):     # an installed distribution (wheels of shared libraries only)
                try:
                    importlib.metadata.version(mod[5:])
                except importlib.metadata.PackageNotFoundError:
                    missing.append(f"{n}: package {mod[5:]!r} not installed -- pip install {pkg}")
                continue
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(f"{n}: Python module {mod!r} not found -- pip install {pkg}")
        for alts in requires_exe.get(n, []):
            if not any(shutil.which(a) for a in alts.split("|")):
                missing.append(f"{n}: no C/C++ compiler ({alts.replace('|', ', ')}) on PATH")
    for n in [n for n in names if n.startswith("symfuse-cuda") and not any(m.startswith(n + ":") for m in missing)]:
        try:
            from symfuse.runtime import nvrtc
            nvrtc.nvrtc_version()
        except Exception as e:  # noqa: BLE001
            missing.append(f"{n}: NVRTC does not load ({e}) -- pip install cuda-bindings nvidia-cuda-nvrtc")
    if missing:
        raise MissingPeer("missing peer(s) requested with --frameworks:\n  " + "\n  ".join(missing)
                          + "\n(install them, or leave the framework out of --frameworks)")


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Spec:
    model: str                          # "mlp" | "lenet" | "chain"
    kind: str = "train"                 # "train" | "infer"
    batch: int = BATCH
    dims: tuple = (784, 512, 512, 10)   # mlp layer sizes
    n_ops: int = 0                      # chain length
    width: int = 64                     # chain: (batch, width)

    @property
    def label(self) -> str:
        if self.model == "mlp" and tuple(self.dims) != (784, 512, 512, 10):
            return f"mlp{len(self.dims) - 2}x{self.dims[1]}-{self.kind}"
        if self.model == "chain":
            return f"chain{self.n_ops}"
        return f"{self.model}-{self.kind}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["dims"] = list(self.dims)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Spec":
        d = dict(d)
        d["dims"] = tuple(d.get("dims", (784, 512, 512, 10)))
        return cls(**d)


def mlp_spec(depth: int, width: int = 64, batch: int = 32, kind: str = "train") -> Spec:
    """``depth`` hidden layers of ``width`` units on a ``width``-wide input, 10 outputs."""
    return Spec("mlp", kind, batch, tuple([width] * (depth + 1) + [10]))


def chain_spec(n_ops: int, batch: int = 32, width: int = 64) -> Spec:
    return Spec("chain", "infer", batch, n_ops=n_ops, width=width)


def chain_ops(n: int) -> list[str]:
    """The elementwise chain: mul, add alternating, every fifth op a tanh."""
    out, k = [], 0
    for i in range(n):
        if i % 5 == 4:
            out.append("tanh")
        else:
            out.append("mul" if k % 2 == 0 else "add")
            k += 1
    return out


def apply_chain(x, n: int, tanh):
    for op in chain_ops(n):
        x = tanh(x) if op == "tanh" else (x * 1.0001 if op == "mul" else x + 0.001)
    return x


LENET_PARAMS = (("c1", (20, 1, 5, 5), 25), ("c1b", (20,), 25), ("c2", (50, 20, 5, 5), 500), ("c2b", (50,), 500),
                ("d1", (800, 500), 800), ("d1b", (500,), 800), ("d2", (500, 10), 500), ("d2b", (10,), 500))


def make_params(spec: Spec, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Initial float32 parameters, as bench/bench_models.py initialises them."""
    rng = np.random.default_rng(seed)
    if spec.model == "chain":
        return []
    if spec.model == "mlp":
        out = []
        for i, (a, b) in enumerate(zip(spec.dims[:-1], spec.dims[1:])):
            out += [(f"W{i}", rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32)),
                    (f"b{i}", np.zeros(b, np.float32))]
        return out
    if spec.model == "lenet":
        return [(n, rng.normal(0, 1 / np.sqrt(fan), shape).astype(np.float32)) for n, shape, fan in LENET_PARAMS]
    raise ValueError(f"unknown model {spec.model!r}")


def input_shape(spec: Spec) -> tuple:
    if spec.model == "mlp":
        return (spec.batch, spec.dims[0])
    if spec.model == "lenet":
        return (spec.batch, 1, 28, 28)
    return (spec.batch, spec.width)


def make_data(spec: Spec, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=input_shape(spec)).astype(np.float32)
    if spec.model == "chain":
        x = np.tanh(x)
    n_out = spec.dims[-1] if spec.model == "mlp" else 10
    y = rng.integers(0, n_out, spec.batch).astype(np.int32)
    return x, y


# ------------------------------------------------------------------------------------------ builders
# Each returns (step, info): step() runs one call on fixed inputs and returns only when the work is
# done (JAX: block_until_ready); its return value is the loss (train) or the probabilities (infer).
# info is a dict, or a function returning one that build() calls after the timing.


def _build_symfuse(spec: Spec, params, data, device: str = "cpu", arch: str | None = None, cuda_graph: bool = False):
    import symfuse as sf
    xv, yv = data
    opts = {"arch": arch or CUDA_ARCH} if device == "cuda" and (arch or not _sf_gpu()) else {}
    if cuda_graph:
        opts["cuda_graph"] = True
    name = spec.label.replace("-", "_")
    x = sf.tensor("x", input_shape(spec))
    if spec.model == "chain":
        f = sf.function([x], apply_chain(x, spec.n_ops, sf.tanh), device=device, name=name, **opts)
        args = (xv,)
    else:
        ps = [sf.shared(v, name=n) for n, v in params]
        h = _forward(spec, x, ps, sf)
        if spec.kind == "infer":
            f = sf.function([x], sf.softmax(h), device=device, name=name, **opts)
            args = (xv,)
        else:
            y = sf.tensor("y", (spec.batch,), "int32")
            loss = -(sf.one_hot(y, h.type.shape[-1]) * sf.log_softmax(h)).sum(axis=1).mean()
            grads = sf.grad(loss, ps)
            f = sf.function([x, y], loss, updates=[(p, p - LR * g) for p, g in zip(ps, grads)],
                            device=device, name=name, **opts)
            args = (xv, yv)

    def info():     # gathered after the timing: f.function parses the cached IR on a graph-cache hit
        stages: dict[str, float] = {}
        for s in f.report.stages:
            stages[s.name] = stages.get(s.name, 0.0) + s.seconds
        out = {"stages": stages, "report_total_s": f.report.total_seconds, "memory": f.report.info.get("memory"),
               "kernels": len(f.kernels), "graph_cache": f.report.info.get("graph_cache"),
               "ops_built": next((s.ops_before for s in f.report.stages if s.name == "build graph"), None)}
        if device == "cuda":
            out["arch"] = f.report.info.get("arch")
            out["nvrtc_calls"] = f.report.info.get("nvrtc_calls")
        try:
            out["ops_optimized"] = len(f.function.ops)
        except Exception:  # noqa: BLE001
            pass
        return out

    step = (lambda: f(*args))
    step.fn = f
    return step, info


def _sf_gpu() -> bool:
    from symfuse.runtime.cuda import gpu_arch
    return gpu_arch() is not None


def _forward(spec: Spec, x, ps, sf):
    """symfuse forward to logits (the exact graph of bench_models.build)."""
    if spec.model == "mlp":
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i + 2 < len(ps):
                h = sf.relu(h)
        return h
    c1, c1b, c2, c2b, d1, d1b, d2, d2b = ps
    B = spec.batch
    h = sf.max_pool2d(sf.tanh(sf.conv2d(x, c1) + c1b.reshape(1, 20, 1, 1)), 2)
    h = sf.max_pool2d(sf.tanh(sf.conv2d(h, c2) + c2b.reshape(1, 50, 1, 1)), 2)
    h = sf.tanh(h.reshape(B, 800) @ d1 + d1b)
    return h @ d2 + d2b


PYTENSOR_STAGE_NOTE = ("PyTensor: 'rewrite' = graph rewriting, 'link' = C code generation, compilation and loading "
                       "(pytensor.compile.debug.profiling.total_graph_rewrite_time / total_time_linker), of which "
                       "'import' = loading compiled modules")


def _build_pytensor(spec: Spec, params, data):
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
    x = pt.tensor("x", dtype="float32", shape=input_shape(spec))
    if spec.model == "chain":
        f = pytensor.function([x], apply_chain(x, spec.n_ops, pt.tanh), mode=mode)
        args = (xv,)
    else:
        ps = [pytensor.shared(v, name=n) for n, v in params]
        h = _pt_forward(spec, x, ps, pt)
        if spec.kind == "infer":
            f = pytensor.function([x], pt.special.softmax(h, axis=-1), mode=mode)
            args = (xv,)
        else:
            y = pt.tensor("y", dtype="int32", shape=(spec.batch,))
            # the Theano tutorial's negative log-likelihood; PyTensor stabilises it
            loss = -pt.mean(pt.log(pt.special.softmax(h, axis=-1))[pt.arange(spec.batch), y])
            grads = pytensor.grad(loss, ps)
            f = pytensor.function([x, y], loss, updates=[(p, p - np.float32(LR) * g) for p, g in zip(ps, grads)],
                                  mode=mode)
            args = (xv, yv)
    info = {"stages": {"rewrite": ptprof.total_graph_rewrite_time - rw0, "link": ptprof.total_time_linker - ln0,
                       "import": cmodule.import_time - im0},
            "nodes": len(f.maker.fgraph.apply_nodes), "blas_ldflags": pytensor.config.blas__ldflags,
            "floatX": pytensor.config.floatX}
    return (lambda: f(*args)), info


def _pt_conv_valid(x, w, shape_in, shape_w, pt):
    """Valid cross-correlation by im2col: k*k slices stacked, one matrix product (PyTensor 3 has no
    CorrMM/conv2d op any more; this keeps the work in C ops and BLAS)."""
    B, C, H, W = shape_in
    O, _, k, _ = shape_w
    oh, ow = H - k + 1, W - k + 1
    cols = pt.stack([x[:, :, i:i + oh, j:j + ow] for i in range(k) for j in range(k)], axis=2)  # B,C,kk,oh,ow
    cols = cols.reshape((B, C * k * k, oh * ow)).dimshuffle(0, 2, 1).reshape((B * oh * ow, C * k * k))
    out = pt.dot(cols, w.reshape((O, C * k * k)).T)                                               # B*oh*ow, O
    return out.reshape((B, oh, ow, O)).dimshuffle(0, 3, 1, 2)


def _pt_forward(spec, x, ps, pt):
    if spec.model == "mlp":
        h = x
        for i in range(0, len(ps), 2):
            h = pt.dot(h, ps[i]) + ps[i + 1]
            if i + 2 < len(ps):
                h = pt.maximum(h, 0)
        return h
    B = spec.batch
    c1, c1b, c2, c2b, d1, d1b, d2, d2b = ps

    def pool(h, C, H):
        return pt.max(h.reshape((B, C, H // 2, 2, H // 2, 2)), axis=(3, 5))

    h = pool(pt.tanh(_pt_conv_valid(x, c1, (B, 1, 28, 28), (20, 1, 5, 5), pt) + c1b.dimshuffle("x", 0, "x", "x")),
             20, 24)
    h = pool(pt.tanh(_pt_conv_valid(h, c2, (B, 20, 12, 12), (50, 20, 5, 5), pt) + c2b.dimshuffle("x", 0, "x", "x")),
             50, 8)
    h = pt.tanh(pt.dot(h.reshape((B, 800)), d1) + d1b)
    return pt.dot(h, d2) + d2b


def _build_jax(spec: Spec, params, data, device: str = "cpu"):
    import jax
    import jax.numpy as jnp
    dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    xv, yv = data
    x = jax.device_put(xv, dev)
    if spec.model == "chain":
        f = jax.jit(lambda x: apply_chain(x, spec.n_ops, jnp.tanh))

        def step():
            return f(x).block_until_ready()
        return step, {}
    ps = [jax.device_put(v, dev) for _, v in params]

    def forward(ps, x):
        if spec.model == "mlp":
            h = x
            for i in range(0, len(ps), 2):
                h = h @ ps[i] + ps[i + 1]
                if i + 2 < len(ps):
                    h = jax.nn.relu(h)
            return h
        c1, c1b, c2, c2b, d1, d1b, d2, d2b = ps
        dn = ("NCHW", "OIHW", "NCHW")

        def block(h, w, b):
            h = jax.lax.conv_general_dilated(h, w, (1, 1), "VALID", dimension_numbers=dn)
            h = jnp.tanh(h + b.reshape(1, -1, 1, 1))
            return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = block(block(x, c1, c1b), c2, c2b)
        h = jnp.tanh(h.reshape(spec.batch, 800) @ d1 + d1b)
        return h @ d2 + d2b

    if spec.kind == "infer":
        f = jax.jit(lambda ps, x: jax.nn.softmax(forward(ps, x), axis=-1))

        def step():
            return f(ps, x).block_until_ready()
        return step, {}

    y = jax.device_put(yv, dev)

    def loss_fn(ps, x, y):
        logp = jax.nn.log_softmax(forward(ps, x), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def train(ps, x, y):
        loss, g = jax.value_and_grad(loss_fn)(ps, x, y)
        return loss, [p - LR * gi for p, gi in zip(ps, g)]

    f = jax.jit(train, donate_argnums=0)
    state = [ps]

    def step():
        loss, state[0] = f(state[0], x, y)
        return loss.block_until_ready()
    return step, {}


def _build_torch(spec: Spec, params, data, compiled: bool, device: str = "cpu"):
    import torch
    import torch.nn.functional as F
    dev = torch.device("cuda" if device == "cuda" else "cpu")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    xv, yv = data
    x = torch.tensor(xv, device=dev)
    if spec.model == "chain":
        fn = (lambda x: apply_chain(x, spec.n_ops, torch.tanh))
        f = torch.compile(fn, fullgraph=True) if compiled else fn

        def step():
            with torch.no_grad():
                out = f(x)
            sync()
            return out
        return step, {"threads": torch.get_num_threads()}
    y = torch.tensor(yv.astype(np.int64), device=dev)
    train = spec.kind == "train"

    def forward(ps, x):
        if spec.model == "mlp":
            h = x
            for i in range(0, len(ps), 2):
                h = h @ ps[i] + ps[i + 1]
                if i + 2 < len(ps):
                    h = torch.relu(h)
            return h
        c1, c1b, c2, c2b, d1, d1b, d2, d2b = ps
        h = F.max_pool2d(torch.tanh(F.conv2d(x, c1, c1b)), 2)
        h = F.max_pool2d(torch.tanh(F.conv2d(h, c2, c2b)), 2)
        h = torch.tanh(h.reshape(spec.batch, 800) @ d1 + d1b)
        return h @ d2 + d2b

    info = {"threads": torch.get_num_threads()}
    if not train:
        ps = [torch.tensor(v, device=dev) for _, v in params]
        fn = (lambda ps, x: F.softmax(forward(ps, x), dim=-1))
        f = torch.compile(fn, fullgraph=True) if compiled else fn

        def step():
            with torch.no_grad():
                out = f(ps, x)
            sync()
            return out
        return step, info

    if not compiled:
        ps = [torch.tensor(v, device=dev, requires_grad=True) for _, v in params]

        def step():
            for p in ps:
                p.grad = None
            loss = F.cross_entropy(forward(ps, x), y)
            loss.backward()
            with torch.no_grad():
                for p in ps:
                    p.add_(p.grad, alpha=-LR)
            sync()
            return loss.detach()
        return step, info

    def loss_fn(ps, x, y):
        return F.cross_entropy(forward(ps, x), y)

    def train_step(ps, x, y):
        g, loss = torch.func.grad_and_value(loss_fn)(ps, x, y)
        return loss, [p - LR * gi for p, gi in zip(ps, g)]

    f = torch.compile(train_step, fullgraph=True)
    state = [[torch.tensor(v, device=dev) for _, v in params]]

    def step():
        loss, state[0] = f(state[0], x, y)
        sync()
        return loss
    return step, info


# numpy: hand-written forward and backward ------------------------------------------------------------


def _np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_xent_grad(z, y):
    """(mean softmax cross-entropy, its gradient wrt the logits)."""
    B = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - z[np.arange(B), y]))
    g = e / s
    g[np.arange(B), y] -= 1
    g /= B
    return loss, g


def _np_conv(x, w):
    """Valid cross-correlation by im2col: (columns, output (B, O, oh, ow))."""
    B, C, H, W = x.shape
    O, _, k, _ = w.shape
    oh, ow = H - k + 1, W - k + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))    # B,C,oh,ow,k,k
    cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(B * oh * ow, C * k * k)
    out = (cols @ w.reshape(O, -1).T).reshape(B, oh, ow, O).transpose(0, 3, 1, 2)
    return cols, out


def _np_pool(a):
    """2x2 max pool; the gradient goes to the first maximum of each window (as symfuse's)."""
    B, C, H, W = a.shape
    r = a.reshape(B, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(B, C, H // 2, W // 2, 4)
    idx = r.argmax(axis=-1)
    return np.take_along_axis(r, idx[..., None], axis=-1)[..., 0], idx


def _np_unpool(g, idx, shape):
    B, C, H, W = shape
    r = np.zeros((B, C, H // 2, W // 2, 4), np.float32)
    np.put_along_axis(r, idx[..., None], g[..., None], axis=-1)
    return r.reshape(B, C, H // 2, W // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(B, C, H, W)


def _build_numpy(spec: Spec, params, data):
    xv, yv = data
    ps = [v.copy() for _, v in params]
    B = spec.batch
    if spec.model == "chain":
        return (lambda: apply_chain(xv, spec.n_ops, np.tanh)), {}

    if spec.model == "mlp":
        n = len(ps) // 2

        def forward(keep):
            acts = [xv]
            for i in range(n):
                z = acts[-1] @ ps[2 * i] + ps[2 * i + 1]
                acts.append(np.maximum(z, 0) if i + 1 < n else z)
            return acts if keep else acts[-1]

        def train():
            acts = forward(True)
            loss, g = _np_xent_grad(acts[-1], yv)
            for i in reversed(range(n)):
                gW, gb = acts[i].T @ g, g.sum(0)
                if i:
                    g = (g @ ps[2 * i].T) * (acts[i] > 0)
                ps[2 * i] -= LR * gW
                ps[2 * i + 1] -= LR * gb
            return loss
    else:
        c1, c1b, c2, c2b, d1, d1b, d2, d2b = ps

        def fwd():
            cols1, z1 = _np_conv(xv, c1)
            a1 = np.tanh(z1 + c1b.reshape(1, -1, 1, 1))
            p1, i1 = _np_pool(a1)
            cols2, z2 = _np_conv(p1, c2)
            a2 = np.tanh(z2 + c2b.reshape(1, -1, 1, 1))
            p2, i2 = _np_pool(a2)
            f = p2.reshape(B, 800)
            h3 = np.tanh(f @ d1 + d1b)
            return (cols1, a1, i1, p1, cols2, a2, i2, f, h3), h3 @ d2 + d2b

        def forward(keep):
            return fwd()[1]

        def train():
            (cols1, a1, i1, p1, cols2, a2, i2, f, h3), z = fwd()
            loss, g = _np_xent_grad(z, yv)
            gd2, gd2b = h3.T @ g, g.sum(0)
            gz3 = (g @ d2.T) * (1 - h3 * h3)
            gd1, gd1b = f.T @ gz3, gz3.sum(0)
            gp2 = (gz3 @ d1.T).reshape(B, 50, 4, 4)
            gz2 = _np_unpool(gp2, i2, a2.shape) * (1 - a2 * a2)                        # B,50,8,8
            g2 = gz2.transpose(0, 2, 3, 1).reshape(-1, 50)
            gc2, gc2b = (g2.T @ cols2).reshape(c2.shape), gz2.sum((0, 2, 3))
            gcols = (g2 @ c2.reshape(50, -1)).reshape(B, 8, 8, 20, 5, 5)
            gp1 = np.zeros((B, 20, 12, 12), np.float32)
            for i in range(5):
                for j in range(5):
                    gp1[:, :, i:i + 8, j:j + 8] += gcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
            gz1 = _np_unpool(gp1, i1, a1.shape) * (1 - a1 * a1)                        # B,20,24,24
            g1 = gz1.transpose(0, 2, 3, 1).reshape(-1, 20)
            gc1, gc1b = (g1.T @ cols1).reshape(c1.shape), gz1.sum((0, 2, 3))
            for p, gp in zip(ps, (gc1, gc1b, gc2, gc2b, gd1, gd1b, gd2, gd2b)):
                p -= LR * gp
            return loss

    if spec.kind == "infer":
        return (lambda: _np_softmax(forward(False))), {}
    return train, {}


def _builder(framework: str, device: str = "cpu") -> Callable:
    if framework == "symfuse-cpu":
        return lambda s, p, d: _build_symfuse(s, p, d, "cpu")
    if framework == "symfuse-cuda-aot":
        return lambda s, p, d: _build_symfuse(s, p, d, "cuda", CUDA_ARCH)
    if framework == "symfuse-cuda":
        return lambda s, p, d: _build_symfuse(s, p, d, "cuda")
    if framework == "symfuse-cuda-graph":      # the step replayed as one CUDA graph
        return lambda s, p, d: _build_symfuse(s, p, d, "cuda", cuda_graph=True)
    if framework == "pytensor":
        return _build_pytensor
    if framework in ("jax", "jax-cuda"):
        return lambda s, p, d: _build_jax(s, p, d, device)
    if framework in ("torch-eager", "torch-cuda-eager"):
        return lambda s, p, d: _build_torch(s, p, d, False, device)
    if framework in ("torch-compile", "torch-cuda-compile"):
        return lambda s, p, d: _build_torch(s, p, d, True, device)
    if framework == "numpy":
        return _build_numpy
    raise ValueError(f"unknown framework {framework!r}")


# ------------------------------------------------------------------------------------------- measuring

IMPORTS = {
    "symfuse-cpu": ["symfuse"], "symfuse-cuda-aot": ["symfuse"], "symfuse-cuda": ["symfuse"],
    "symfuse-cuda-graph": ["symfuse"],
    "pytensor": ["pytensor", "pytensor.tensor"],
    "jax": ["jax", "jax.numpy"], "jax-cuda": ["jax", "jax.numpy"],
    "torch-eager": ["torch", "torch.nn.functional"], "torch-compile": ["torch", "torch.nn.functional"],
    "torch-cuda-eager": ["torch", "torch.nn.functional"], "torch-cuda-compile": ["torch", "torch.nn.functional"],
    "numpy": ["numpy"],
}


def import_framework(framework: str) -> float:
    """Import the framework's modules; seconds taken (not part of the compile time)."""
    t = time.perf_counter()
    for m in IMPORTS.get(framework, []):
        importlib.import_module(m)
    return time.perf_counter() - t


def configure_caches(framework: str) -> None:
    """Point JAX at the persistent cache named by the environment (the study sets
    JAX_COMPILATION_CACHE_DIR to a fresh directory) and make it store everything."""
    if framework.startswith("jax") and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        import jax
        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@dataclass
class Built:
    framework: str
    spec: Spec
    step: Callable[[], Any] | None
    compile_s: float          # build_s + first_s - steady_s
    build_s: float            # graph construction + explicit compile (the builder)
    first_s: float            # the first call (lazy compilers compile here)
    steady_s: float           # median of `settle` calls right after the first
    info: dict = field(default_factory=dict)
    first_value: float | None = None     # loss of call 1 (train) or checksum of the output (infer)
    second_value: float | None = None    # the same for call 2 (after one SGD update)


def checksum(out) -> float:
    """A number that identifies an output: the loss itself, or a fixed weighted sum."""
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    a = np.asarray(out, dtype=np.float64).ravel()
    if a.size == 1:
        return float(a[0])
    return float(a @ np.cos(np.arange(a.size)))


def build(framework: str, spec: Spec, settle: int = 3, device: str = "cpu") -> Built:
    """Build, compile, call once and ``settle`` more times; time each part."""
    params, data = make_params(spec), make_data(spec)
    configure_caches(framework)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        step, info = _builder(framework, device)(spec, params, data)
        t1 = time.perf_counter()
        if framework in COMPILE_ONLY:
            return Built(framework, spec, None, t1 - t0, t1 - t0, 0.0, 0.0, info() if callable(info) else info)
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
    info = info() if callable(info) else info     # builders may defer what costs time to gather
    return Built(framework, spec, step, (t2 - t0) - steady, t1 - t0, t2 - t1, steady, info, first, second)


def versions(framework: str) -> dict:
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    mods = {"symfuse": "symfuse", "pytensor": "pytensor", "jax": "jax", "torch": "torch"}
    for key, mod in mods.items():
        if key in framework and mod in sys.modules:
            out[key] = getattr(sys.modules[mod], "__version__", "?")
    if "torch" in framework and "torch" in sys.modules and "cuda" in framework:
        out["torch_cuda"] = sys.modules["torch"].version.cuda
    if framework.startswith("jax"):
        try:
            import jaxlib
            out["jaxlib"] = jaxlib.__version__
            import jax
            out["jax_backend"] = jax.default_backend()
        except Exception:  # noqa: BLE001
            pass
    if "symfuse-cuda" in framework:
        try:
            from symfuse.runtime import nvrtc
            out["nvrtc"] = ".".join(map(str, nvrtc.nvrtc_version()))
        except Exception:  # noqa: BLE001
            pass
    return out


def _maxrss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0     # Linux: KiB


def _vmhwm_mb() -> float | None:
    """Peak RSS of this process image (/proc/self/status VmHWM), a cross-check of ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _apply_threads(framework: str) -> None:
    n = os.environ.get("BENCH_THREADS")
    if n and framework.startswith("torch"):
        import torch
        torch.set_num_threads(int(n))


def measure(job: dict) -> dict:
    """One measurement in this (fresh) process. job: framework, spec, mode (compile | step | memory),
    settle, warmup, steps."""
    fw, spec, mode = job["framework"], Spec.from_json(job["spec"]), job["mode"]
    device = job.get("device", "cpu")
    res: dict = {"framework": fw, "spec": spec.to_json(), "label": spec.label, "mode": mode}
    res["import_s"] = import_framework(fw)
    _apply_threads(fw)
    res["rss_after_import_mb"] = _maxrss_mb()
    b = build(fw, spec, settle=job.get("settle", 3), device=device)
    res.update(compile_s=b.compile_s, build_s=b.build_s, first_s=b.first_s, settle_s=b.steady_s,
               info=b.info, first_value=b.first_value, second_value=b.second_value)
    res["rss_after_compile_mb"] = _maxrss_mb()
    if mode in ("step", "memory") and b.step is not None:
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
    res["maxrss_mb"] = _maxrss_mb()
    res["vmhwm_mb"] = _vmhwm_mb()
    res["versions"] = versions(fw)
    res["children_maxrss_mb"] = _maxrss_mb(resource.RUSAGE_CHILDREN)
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


def main(argv=None):
    ap = argparse.ArgumentParser(description="Builders of the side-by-side studies; run one measurement.")
    ap.add_argument("--child", metavar="JSON", help="run one job (used by bench/study_*.py)")
    ap.add_argument("--framework", default="symfuse-cpu", help=f"one of {', '.join(FRAMEWORKS)}")
    ap.add_argument("--model", default="mlp", choices=["mlp", "lenet"])
    ap.add_argument("--kind", default="train", choices=["train", "infer"])
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args(argv)
    if a.child:
        return child_main(a.child)
    check_frameworks([a.framework])
    res = measure({"framework": a.framework, "spec": Spec(a.model, a.kind).to_json(), "mode": "step",
                   "steps": a.steps, "warmup": 2})
    res.pop("times_s", None)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
