"""The graph-level compile cache of the CUDA backends: a second compile of the
same function (``device="cuda"`` ahead of time, no GPU needed, and
``device="cuda-emu"``) restores the program from the cache entry -- passes,
fusion, codegen and the compiler never run -- and the restored program is the
same: CUBIN bytes, kernels, launches, resources, IR, inspection, numbers.
Damaged or unusable entries are misses that recompile; another arch misses."""
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symfuse as sf
from symfuse.compiler.kernel_info import KernelInfo
from symfuse.runtime import plain
from symfuse.errors import DeviceUnavailable
from symfuse.runtime import cuda as cuda_rt
from symfuse.runtime.backends import get_backend
from symfuse.runtime.cache import environment_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# stages of a compile that a graph-cache hit skips
SKIPPED = {"verify", "pre.fold", "pre.rewrite", "differentiate", "dce", "fusion", "codegen", "memory plan",
           "emu compile"}

needs_nvrtc = pytest.mark.skipif(not get_backend("cuda").available(), reason="needs NVRTC (cuda-bindings)")
needs_cxx = pytest.mark.skipif(not get_backend("cuda-emu").available(), reason="cuda-emu needs a C++ compiler")


@contextlib.contextmanager
def cache_at(path):
    old = os.environ.get("SYMFUSE_CACHE_DIR")
    os.environ["SYMFUSE_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SYMFUSE_CACHE_DIR", None)
        else:
            os.environ["SYMFUSE_CACHE_DIR"] = old


# ----------------------------------------------------------------------------- models (training steps)
# Built from scratch for every compile, from the same lines (source locations are in the key) and the
# same initial values; shared variables are returned so that updates can be compared.

def _mlp(batch=16, dims=(32, 48, 10)):
    rng = np.random.default_rng(0)
    ps = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        ps += [sf.shared(rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32), name=f"W{i}"),
               sf.shared(rng.normal(0, 0.1, b).astype(np.float32), name=f"b{i}")]
    x = sf.tensor("x", (batch, dims[0]))
    y = sf.tensor("y", (batch,), "int32")
    h = x * np.linspace(0.5, 1.5, dims[0]).astype(np.float32)      # constants the kernels read as buffers
    for i in range(0, len(ps), 2):
        h = h @ ps[i] + ps[i + 1]
        if i + 2 < len(ps):
            h = sf.relu(h)
    return x, y, h * np.linspace(2.0, 1.0, dims[-1]).astype(np.float32), ps


def _conv(batch=4):
    rng = np.random.default_rng(0)
    c = sf.shared(rng.normal(0, 1 / 3, (6, 1, 3, 3)).astype(np.float32), name="c")
    cb = sf.shared(rng.normal(0, 0.1, 6).astype(np.float32), name="cb")
    d = sf.shared(rng.normal(0, 1 / 7, (6 * 5 * 5, 10)).astype(np.float32), name="d")
    db = sf.shared(np.zeros(10, np.float32), name="db")
    x = sf.tensor("x", (batch, 1, 12, 12))
    y = sf.tensor("y", (batch,), "int32")
    h = sf.max_pool2d(sf.tanh(sf.conv2d(x, c) + cb.reshape(1, 6, 1, 1)), 2)
    return x, y, h.reshape(batch, 150) @ d + db, [c, cb, d, db]


MODELS = {"mlp": _mlp, "conv": _conv}


def compile_step(model, device, **options):
    x, y, logits, ps = MODELS[model]()
    loss = -(sf.one_hot(y, 10) * sf.log_softmax(logits)).sum(axis=1).mean()
    grads = sf.grad(loss, ps)
    return sf.function([x, y], loss, updates=[(p, p - 0.1 * g) for p, g in zip(ps, grads)], device=device,
                       name=f"{model}_step", **options)


def data(f):
    rng = np.random.default_rng(1)
    x, y = f.inputs
    return rng.normal(size=x.type.shape).astype(np.float32), rng.integers(0, 10, y.type.shape).astype(np.int32)


def two_steps(f):
    """Losses and shared values after each of two calls (the second sees the first's updates)."""
    xv, yv = data(f)
    out = []
    for _ in range(2):
        loss = f(xv, yv)
        out.append([np.asarray(loss)] + [s.get_value() for s in f.shared])
    return out


def stages(f):
    return [s.name for s in f.report.stages]


def plain_kernels(f):
    """Everything f.kernels shows, as comparable data."""
    return [{"name": k.name, "kind": k.kind, "ops": list(k.fused_ops), "provenance": list(k.provenance),
             "source": k.source, "size": k.size, "bytes": (k.bytes_read, k.bytes_written),
             "launches": k.launch_config, "scratch": k.scratch_bytes,
             "resources": {n: (vars(r) if r is not None else None) for n, r in k.resources.items()}}
            for k in f.kernels]


# ----------------------------------------------------------------------------- (a) cuda, ahead of time

class Runs(dict):
    """model -> what ``make(model)`` returns, made on first use (shared by a module's tests)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, model):
        self[model] = self.make(model)
        return self[model]


@pytest.fixture(scope="module")
def aot_runs(tmp_path_factory):
    """model -> (model, cache dir, cold, warm): a cold and a warm compile of its
    training step for sm_90 in a fresh cache."""
    def make(model):
        d = tmp_path_factory.mktemp(f"aot-{model}")
        with cache_at(d):
            cold = compile_step(model, "cuda", arch="sm_90")
            warm = compile_step(model, "cuda", arch="sm_90")
        return model, d, cold, warm
    return Runs(make)


@pytest.fixture(params=["mlp", "conv"])
def aot(request, aot_runs):
    return aot_runs[request.param]


@needs_nvrtc
def test_aot_second_compile_is_a_hit_that_skips_the_compiler(aot):
    _, _, cold, warm = aot
    assert cold.report.info["graph_cache"] == "miss" and warm.report.info["graph_cache"] == "hit"
    assert {"fusion", "codegen", "memory plan", "differentiate"} <= set(stages(cold))
    assert not SKIPPED & set(stages(warm)), stages(warm)
    assert warm.report.info["nvrtc_calls"] == 0
    note = next(s.note for s in warm.report.stages if s.name == "nvrtc")
    assert note.startswith("sm_90: cache hit") and "graph" in note
    assert all(isinstance(k, KernelInfo) for k in warm.kernels)      # restored from plain data, not rebuilt


@needs_nvrtc
def test_aot_hit_gives_the_same_program(aot):
    _, _, cold, warm = aot
    assert all(im[:4] == b"\x7fELF" for im in warm._run.images) and warm._run.images == cold._run.images
    assert [k.cubin for k in warm.kernels] == [k.cubin for k in cold.kernels]
    # a kernel's CUBIN is its unit's, or the precompiled library's image holding its library kernel
    lib_images = cold._run.library.images if cold._run.library is not None else []
    assert all(k.cubin in (lib_images if k.in_library else cold._run.images) for k in warm.kernels)
    assert warm._run.library is not None and warm._run.library.images == lib_images
    assert plain_kernels(warm) == plain_kernels(cold)
    assert any(r for k in warm.kernels for r in k.resources.values())
    assert warm.source == cold.source and warm.ir() == cold.ir() and warm.ir(True) == cold.ir(True)
    for key in ("kernels", "memory", "resources", "arch"):
        assert warm.report.info[key] == cold.report.info[key], key
    assert warm.report.info["arch"] == "sm_90"
    w, c = warm._run, cold._run
    assert (w.name, w.arch, w.param_count) == (c.name, c.arch, c.param_count)
    assert [(ln.kernel, ln.grid, ln.block, ln.shared_bytes, ln.scratch, refs) for ln, refs in w.launches] == \
        [(ln.kernel, ln.grid, ln.block, ln.shared_bytes, ln.scratch, refs) for ln, refs in c.launches]
    assert w.layout == c.layout
    assert len(w.constants) == len(c.constants) and all(np.array_equal(a, b) for a, b in zip(w.constants,
                                                                                            c.constants))
    if aot[0] == "mlp":
        assert len(w.constants) == 2


@needs_nvrtc
def test_aot_hit_kernels_are_inspectable(aot):
    _, _, cold, warm = aot
    k = next(k for k in warm.kernels if k.kind == "pointwise")
    kc = next(c for c in cold.kernels if c.name == k.name)
    assert f".entry {k.name}" in k.ptx and k.ptx == kc.ptx
    assert k.name in k.sass and k.sass == kc.sass


@needs_nvrtc
def test_aot_hit_still_needs_a_gpu_to_run(aot):
    if cuda_rt.gpu_arch() is not None:
        pytest.skip("a GPU is present")
    _, _, _, warm = aot
    with pytest.raises(DeviceUnavailable, match="device='cpu'"):
        warm(*data(warm))


@needs_nvrtc
def test_changed_arch_misses(aot_runs):
    model, d, _, warm = aot_runs["mlp"]
    with cache_at(d):
        other = compile_step(model, "cuda", arch="sm_80")
        again = compile_step(model, "cuda", arch="sm_80")
    assert other.report.info["graph_cache"] == "miss" and "fusion" in stages(other)
    assert other.report.info["arch"] == "sm_80" and other._run.images != warm._run.images
    assert again.report.info["graph_cache"] == "hit" and again._run.images == other._run.images


@needs_nvrtc
def test_default_arch_of_the_gpu_present_is_in_the_key(aot_runs, monkeypatch):
    """Without arch=, the arch comes from GPU 0: another GPU must miss, not get the other GPU's CUBIN."""
    model, d, _, _ = aot_runs["mlp"]
    backend = get_backend("cuda")
    monkeypatch.setattr(cuda_rt, "gpu_arch", lambda: None)             # no GPU: sm_90
    no_gpu = backend.identity()
    with cache_at(d):
        first = compile_step(model, "cuda")
        monkeypatch.setattr(cuda_rt, "gpu_arch", lambda: "sm_80")     # an A100 appears
        assert backend.identity() != no_gpu
        a100 = compile_step(model, "cuda")
        monkeypatch.setattr(cuda_rt, "gpu_arch", lambda: None)
        back = compile_step(model, "cuda")
    assert first.report.info["arch"] == "sm_90"
    assert a100.report.info["graph_cache"] == "miss" and a100.report.info["arch"] == "sm_80"
    assert back.report.info["graph_cache"] == "hit" and back._run.images == first._run.images


# ----------------------------------------------------------------------------- (c) unusable entries

def _graph_entries(d):
    paths = [p for p in glob.glob(os.path.join(str(d), "graph", "*", "*")) if not os.path.basename(p).startswith(".")]
    assert paths, d
    return paths


@needs_nvrtc
def test_truncated_entry_is_a_miss_that_recompiles(aot, tmp_path):
    model, d, cold, _ = aot
    copy = tmp_path / "cache"
    shutil.copytree(d, copy)
    for p in _graph_entries(copy):
        with open(p, "r+b") as fh:
            fh.truncate(os.path.getsize(p) // 2)
    with cache_at(copy):
        again = compile_step(model, "cuda", arch="sm_90")
        third = compile_step(model, "cuda", arch="sm_90")
    assert again.report.info["graph_cache"] == "miss" and "fusion" in stages(again)
    assert again._run.images == cold._run.images and plain_kernels(again) == plain_kernels(cold)
    assert third.report.info["graph_cache"] == "hit" and third._run.images == cold._run.images


@needs_nvrtc
@pytest.mark.parametrize("damage", ["format", "missing key", "no cubin"])
def test_unusable_entry_is_a_miss(aot_runs, tmp_path, damage):
    """An entry intact on disk that ``load`` cannot use (another format, a key
    gone, its CUBIN lost) is a miss, never a failed compile."""
    model, d, cold, _ = aot_runs["mlp"]
    copy = tmp_path / "cache"
    shutil.copytree(d, copy)
    with cache_at(copy):
        cache = environment_cache()
        for p in _graph_entries(copy):
            key = os.path.basename(p)
            entry = plain.loads(cache.get("graph", key))
            if entry.get("backend") != "cuda":
                continue
            if damage == "format":
                entry["format"] = -1
            elif damage == "missing key":
                del entry["kernels"]
            else:
                entry["images"] = [None]
            cache.put("graph", key, plain.dumps(entry))
        again = compile_step(model, "cuda", arch="sm_90")
    assert again.report.info["graph_cache"] == "miss" and "codegen" in stages(again)
    assert again._run.images == cold._run.images


# ----------------------------------------------------------------------------- (b) cuda-emu: numbers

@pytest.fixture(scope="module")
def emu_runs(tmp_path_factory):
    """model -> (model, cache dir, interp steps, cold, its steps, warm, its steps) for cuda-emu."""
    def make(model):
        d = tmp_path_factory.mktemp(f"emu-{model}")
        ref = compile_step(model, "interp")
        with cache_at(d):
            cold = compile_step(model, "cuda-emu")
            warm = compile_step(model, "cuda-emu")
        return model, d, two_steps(ref), cold, two_steps(cold), warm, two_steps(warm)
    return Runs(make)


@pytest.fixture(params=["mlp", "conv"])
def emu(request, emu_runs):
    return emu_runs[request.param]


def assert_same_steps(got, want):
    for step, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w)
        for k, (a, b) in enumerate(zip(g, w)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"step {step}, result {k}")


@needs_cxx
def test_emu_hit_skips_the_compiler_and_reuses_the_emu_module(emu):
    _, _, _, cold, _, warm, _ = emu
    assert cold.report.info["graph_cache"] == "miss" and "emu compile" in stages(cold)
    assert warm.report.info["graph_cache"] == "hit"
    assert not SKIPPED & set(stages(warm)), stages(warm)
    assert warm.report.info["emu_cache"] == "hit (graph)" and warm._run.emu_module.cache_hit
    assert warm._run.emu_module.lib_path == cold._run.emu_module.lib_path
    assert plain_kernels(warm) == plain_kernels(cold) and warm.ir() == cold.ir() and warm.source == cold.source
    assert warm._run.arch == "emu" and warm._run.images == []


@needs_cxx
def test_emu_hit_computes_what_the_miss_and_interp_compute(emu):
    model, _, ref, _, cold_steps, warm, warm_steps = emu
    if model == "mlp":      # constant buffers travel in the entry
        assert [a.shape for a in warm._run.constants] == [(32,), (10,)]
    # the steps really train: the second call sees the first call's updates
    assert not np.array_equal(ref[0][1], ref[1][1]) and ref[0][0] != ref[1][0]
    assert_same_steps(cold_steps, ref)
    assert_same_steps(warm_steps, ref)
    assert_same_steps(warm_steps, cold_steps)


@needs_cxx
def test_emu_truncated_entry_and_lost_library_recompile(emu_runs, tmp_path):
    model, d, ref, _, _, _, _ = emu_runs["mlp"]
    copy = tmp_path / "cache"
    shutil.copytree(d, copy)
    for p in _graph_entries(copy):
        with open(p, "r+b") as fh:
            fh.truncate(os.path.getsize(p) // 3)
    with cache_at(copy):
        again = compile_step(model, "cuda-emu")
        assert again.report.info["graph_cache"] == "miss" and "emu compile" in stages(again)
        assert_same_steps(two_steps(again), ref)
        # the entry is good again, but the emulator library it names is gone: a miss, not a crash
        for lib in glob.glob(os.path.join(str(copy), "cuda-emu", "*", "*.so")):
            os.remove(lib)
        lost = compile_step(model, "cuda-emu")
        assert lost.report.info["graph_cache"] == "miss" and lost.report.info["emu_cache"] == "miss"
        assert_same_steps(two_steps(lost), ref)
        hit = compile_step(model, "cuda-emu")
    assert hit.report.info["graph_cache"] == "hit"
    assert_same_steps(two_steps(hit), ref)


# ----------------------------------------------------------------------------- the command line

@needs_nvrtc
def test_cli_compile_and_inspect_on_a_hit(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(tmp_path / "c"))

    def sym(*args):
        out = subprocess.run([sys.executable, "-m", "symfuse.cli", *args], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=600)
        assert out.returncode == 0, out.stderr
        return out.stdout

    base = ["mlp", "--train", "--batch", "8", "--target", "cuda", "--arch", "sm_90"]
    reports = [json.loads(sym("compile", *base, "-o", str(tmp_path / o), "--json")) for o in ("cold", "warm")]
    assert [r["info"]["graph_cache"] for r in reports] == ["miss", "hit"]
    assert not SKIPPED & {s["name"] for s in reports[1]["stages"]}
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    cubins = sorted(c.name for c in cold.glob("module*.cubin"))
    assert cubins and cubins == sorted(c.name for c in warm.glob("module*.cubin"))
    assert all((warm / c).read_bytes() == (cold / c).read_bytes() for c in cubins)
    for name in ("module.ptx", "module.cu", "ir_after.txt", "memory_plan.json"):
        assert (warm / name).read_text() == (cold / name).read_text(), name
    assert sorted(os.listdir(warm / "kernels")) == sorted(os.listdir(cold / "kernels"))
    rows = json.loads(sym("inspect", *base, "--resources", "--json"))
    assert [r["name"] + ".cu" for r in rows] == [k["name"] + ".cu" for k in reports[0]["info"]["kernels"]]
    assert all(r["launches"] and r["resources"] for r in rows)
    k = next(r["name"] for r in rows if r["kind"] == "pointwise")
    assert f".entry {k}" in sym("inspect", *base, "--kernel", k, "--ptx")


@needs_cxx
def test_loops_come_back_from_the_graph_cache(tmp_path):
    """A program with a scan (and its gradient's reverse scan), a while loop and a cond:
    the second compile restores the nested schedule from the entry, and runs the same."""
    def build():
        x = sf.tensor("x", (6, 3))
        W = sf.shared(np.eye(3, dtype=np.float32) * 0.4, name="W")
        h, ys = sf.scan(lambda c, e: (sf.tanh(c @ W + e), c.sum()), sf.zeros((3,)), x, reverse=True)
        loss = (h ** 2).sum() + ys.sum()
        k = sf.while_loop(lambda c: c.sum() < 20.0, lambda c: c * 1.5 + 1.0, h, max_iterations=30)
        r = sf.cond(loss > 1.0, lambda a: a * 2.0, lambda a: a - 1.0, k)
        return sf.function([x], [loss, sf.grad(loss, W), r], device="cuda-emu")

    xv = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    with cache_at(tmp_path):
        cold = build()
        warm = build()
    assert cold.report.info["graph_cache"] == "miss" and warm.report.info["graph_cache"] == "hit"
    assert "fusion" not in [s.name for s in warm.report.stages]
    for a, b in zip(cold(xv), warm(xv)):
        np.testing.assert_array_equal(a, b)
    assert [k.kind for k in warm.kernels] == [k.kind for k in cold.kernels]
    assert any(k.kind == "scan" and k.parts for k in warm.kernels)
