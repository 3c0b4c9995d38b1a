"""Study 7: an exported model's latency from C against Python, and against PyTorch AOTInductor.

    python bench/study_export.py [--quick] [--rounds 5] [--models mlp,lenet] [--batches 1,128]

For the zoo's MLP (784-512-512-10) and LeNet-5 inference functions (softmax
probabilities, float32) at each batch size:

* **builds**, each in a fresh process: the symfuse export (``sf.export`` of
  ``predict_function("cpu")``, fresh SYMFUSE_CACHE_DIR: the cold compile, then
  the export step) and its directory size; PyTorch's AOTInductor package of
  the same model with the same weights (``torch.export.export`` +
  ``torch._inductor.aoti_compile_and_package``, fresh TORCHINDUCTOR_CACHE_DIR)
  and its ``.pt2`` size. The C timing driver (bench/c/time_export.c) is built
  against each export, the C++ one (bench/c/time_aoti.cpp) once against the
  torch wheel's headers and libtorch.
* **latency of one call**, each variant in its own process: symfuse's export
  from C, the same compiled function from Python (``f(x)``), torch eager, the
  AOTInductor package from Python (``aoti_load_package``) and from C++
  (``AOTIModelPackageLoader``), and from C++ an AOTInductor package whose batch
  dimension is left to run time (torch's price of a run-time batch). Every
  process makes untimed warm-up calls (50 at batch 1, 10 above), then times
  calls one by one (clock_gettime in C/C++, perf_counter_ns in Python): 1000
  at batch 1, 200 above, or fewer (at least 30) once a second has passed, so
  that a loaded machine lengthens the study little; it reports the median,
  p10 and p90. The variants
  run in ``--rounds`` rounds, their order rotated each round, so that a slow
  spell of the shared machine falls on all of them alike; a point's value is
  the median of its rounds' medians. Python's overhead is the median over the
  rounds of (Python - C), both from the same round.
* **the same computation**: the first round's outputs are compared: symfuse C
  against symfuse Python to 1e-6, every torch variant against symfuse to 1e-4
  (the study stops otherwise).

``symfuse-c-dyn`` is the export of the same model with the batch left to run time
(``zoo.get(model, batch="batch")``: one library for every batch), timed by the same
C driver at each batch and compared with the static ``symfuse-c`` in
``batch_cost_table`` (the issue's target: within 5 % at batch 128).

Writes bench/results/export.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import harness as H  # noqa: E402
import peers  # noqa: E402

C_DIR = os.path.join(HERE, "c")
MODELS = ("mlp", "lenet")
INPUT_SHAPE = {"mlp": (784,), "lenet": (1, 28, 28)}
MAX_BATCH = 4096         # the run-time batch range of the dynamic AOTInductor build: 1..MAX_BATCH
MIN_CALLS = 30          # as bench/c/timing.h
TOL_C_VS_PY = 1e-6
TOL_TORCH = 1e-4
TOL_DYN = 1e-5           # the run-time-batch export: the same math, other loop schedules (rounding)
# symfuse's Python process runs OpenBLAS single-threaded inside its OpenMP threads and
# shortens libgomp's spin (runtime/cpu.py, toolchain.OPENMP_ENV); the C driver gets the same
# environment so that C and Python differ by the Python call only
SYMFUSE_ENV = {"OPENBLAS_NUM_THREADS": "1", "GOMP_SPINCOUNT": "10000"}


# ------------------------------------------------------------------------------------- the models

def torch_twin(model: str, params: dict):
    """The zoo model in torch, with symfuse's weights (Dense W is (in, out): torch's is its transpose)."""
    import torch
    import torch.nn.functional as F

    def t(name, transpose=False):
        a = params[name].T if transpose else params[name]
        return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)), requires_grad=False)

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.ParameterList([t(f"dense{i}.W", True) for i in range(3)])
            self.b = torch.nn.ParameterList([t(f"dense{i}.b") for i in range(3)])

        def forward(self, x):
            h = x.reshape(x.shape[0], -1)
            for i in range(3):
                h = F.linear(h, self.w[i], self.b[i])
                if i < 2:
                    h = torch.relu(h)
            return torch.softmax(h, -1)

    class LeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c0w, self.c0b, self.c1w, self.c1b = t("conv0.W"), t("conv0.b"), t("conv1.W"), t("conv1.b")
            self.d0w, self.d0b = t("dense0.W", True), t("dense0.b")
            self.d1w, self.d1b = t("dense1.W", True), t("dense1.b")

        def forward(self, x):
            # zoo order: conv -> maxpool -> tanh
            h = torch.tanh(F.max_pool2d(F.conv2d(x, self.c0w, self.c0b), 2))
            h = torch.tanh(F.max_pool2d(F.conv2d(h, self.c1w, self.c1b), 2))
            h = torch.tanh(F.linear(h.reshape(h.shape[0], -1), self.d0w, self.d0b))
            return torch.softmax(F.linear(h, self.d1w, self.d1b), -1)

    return (MLP if model == "mlp" else LeNet)().eval()


def make_input(model: str, batch: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(0.0, 1.0, (batch, *INPUT_SHAPE[model])).astype(np.float32)


def stats_us(ns: list[int]) -> dict:
    """The C drivers' statistics (bench/c/timing.h: nearest-rank percentiles)."""
    s = sorted(v / 1e3 for v in ns)
    n = len(s)

    def pct(q):
        return s[min(n - 1, max(0, int(q * (n - 1) + 0.5)))]
    return {"calls": n, "median_us": pct(0.5), "p10_us": pct(0.1), "p90_us": pct(0.9), "min_us": s[0]}


def timed_calls(call, warmup: int, calls: int, budget_s: float):
    """The C drivers' loop (bench/c/timing.h): up to ``calls`` calls, fewer once ``budget_s`` has
    passed and MIN_CALLS were made."""
    out = None
    for _ in range(warmup):
        out = call()
    ns = []
    start = time.perf_counter_ns()
    while len(ns) < calls:
        t0 = time.perf_counter_ns()
        out = call()
        ns.append(time.perf_counter_ns() - t0)
        if len(ns) >= MIN_CALLS and time.perf_counter_ns() - start > budget_s * 1e9:
            break
    return out, stats_us(ns)


# ------------------------------------------------------------------------------- child processes

def child(job: dict) -> dict:
    kind = job["kind"]
    if kind == "sf-export":
        t0 = time.perf_counter()
        import symfuse as sf
        from symfuse.nn import zoo
        t1 = time.perf_counter()
        m = zoo.get(job["model"], batch=job["batch"])
        f = m.predict_function("cpu")
        t2 = time.perf_counter()
        done = sf.export(f, job["dir"], job["name"])
        t3 = time.perf_counter()
        np.savez(job["params"], **{p.name: p.get_value() for p in m.params})
        return {"import_s": t1 - t0, "compile_s": t2 - t1, "export_s": t3 - t2, "files": done.files,
                "march": done.manifest.get("target", {}).get("march"), "symfuse": sf.__version__}
    if kind == "aoti-build":
        t0 = time.perf_counter()
        import torch
        t1 = time.perf_counter()
        torch.set_num_threads(job["threads"])
        model = torch_twin(job["model"], dict(np.load(job["params"])))
        x = torch.from_numpy(np.load(job["input"]))
        dyn = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if job.get("dynamic") else None
        with torch.no_grad():
            ep = torch.export.export(model, (x,), dynamic_shapes=dyn)
            t2 = time.perf_counter()
            pkg = torch._inductor.aoti_compile_and_package(ep, package_path=job["package"])
            t3 = time.perf_counter()
        return {"import_s": t1 - t0, "torch_export_s": t2 - t1, "aoti_compile_s": t3 - t2, "package": pkg,
                "torch": torch.__version__}
    x = np.load(job["input"])
    if kind == "symfuse-py":
        from symfuse.nn import zoo
        from symfuse.runtime.toolchain import workers
        f = zoo.get(job["model"], batch=job["batch"]).predict_function("cpu")
        out, st = timed_calls(lambda: f(x), job["warmup"], job["calls"], job["budget"])
        st["threads"] = int(os.environ.get("OMP_NUM_THREADS") or workers())
    else:
        import torch
        torch.set_num_threads(job["threads"])
        xt = torch.from_numpy(x)
        if kind == "torch-eager":
            fn = torch_twin(job["model"], dict(np.load(job["params"])))
        else:
            fn = torch._inductor.aoti_load_package(job["package"])
        with torch.inference_mode():
            out, st = timed_calls(lambda: fn(xt), job["warmup"], job["calls"], job["budget"])
        out = (out[0] if isinstance(out, (list, tuple)) else out).numpy()
        st["threads"] = torch.get_num_threads()
    np.save(job["output"], np.asarray(out))
    return st


def child_main(text: str) -> int:
    job = json.loads(text)
    try:
        res = {"status": "ok", **child(job)}
    except Exception as e:  # noqa: BLE001 -- reported to the parent, which records it
        import traceback
        res = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    print(peers.RESULT_MARK + " " + json.dumps(res), flush=True)
    return 0


# ------------------------------------------------------------------------------------ the study

@dataclass
class Point:
    model: str
    batch: int

    @property
    def key(self) -> str:
        return f"{self.model}-b{self.batch}"

    @property
    def name(self) -> str:      # the export's C prefix
        return f"{self.model}_b{self.batch}"


@dataclass
class Variant:
    key: str
    label: str
    kind: str           # "c" (a driver binary), "py" (a child of this script)
    needs: str          # "symfuse" or "torch": skipped when that side could not be built


VARIANTS = [
    Variant("symfuse-c", "symfuse C", "c", "symfuse"),
    Variant("symfuse-py", "symfuse Python", "py", "symfuse"),
    Variant("torch-eager", "torch eager", "py", "torch"),
    Variant("aoti-py", "AOTInductor (Python)", "py", "aoti"),
    Variant("aoti-cpp", "AOTInductor (C++)", "c", "aoti-cpp"),
    Variant("symfuse-c-dyn", "symfuse C, run-time batch", "c", "symfuse-dyn"),
    # torch's own price of a batch chosen at run time
    Variant("aoti-cpp-dyn", "AOTInductor (C++), run-time batch", "c", "aoti-dyn"),
]
# rows the results name without a measurement: what is not there yet, and why
PENDING: dict = {}
DYN = "batch"            # the run-time batch's name: Point(model, DYN) is the model's one run-time-batch export


class Study:
    def __init__(self, args):
        self.args = args
        self.scratch = tempfile.mkdtemp(prefix="symfuse-bench-export-")
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.threads = args.threads
        self.meta = {"study": "export", "argv": sys.argv[1:], "quick": bool(args.quick),
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": H.machine_info(), "loadavg_start": os.getloadavg(), "threads": args.threads,
                     "rounds": args.rounds, "warmup": args.warmup, "calls": args.calls, "budget_s": args.budget}
        self.sf_cache = os.path.join(self.scratch, "symfuse-cache")
        self.builds: dict[str, dict] = {}
        self.runs: dict[tuple, list] = {}
        self.outputs: dict[tuple, np.ndarray] = {}
        self.aoti_cpp: str | None = None

    # -- processes

    def env(self, side: str, cache: str | None = None) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["OMP_NUM_THREADS"] = str(self.threads)
        env["SYMFUSE_CACHE_DIR"] = cache or self.sf_cache
        for k in SYMFUSE_ENV:
            env.pop(k, None)
        if side == "symfuse":
            env.update(SYMFUSE_ENV)
        return env

    def py_child(self, job: dict, side: str, cache: str | None = None, env_extra=None) -> dict:
        env = self.env(side, cache)
        env.update(env_extra or {})
        cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)]
        rc, out, err, wall = H.spawn(cmd, env, self.args.timeout)
        res = H.parse_result(rc, out, err, wall, job["kind"], self.args.timeout)
        if res.get("status") != "ok":
            res.setdefault("error", "?")
            res["stderr_tail"] = err[-2000:]
        return res

    def c_child(self, cmd: list[str], side: str) -> dict:
        rc, out, err, wall = H.spawn(cmd, self.env(side), self.args.timeout)
        try:
            if rc == 0:
                return {"status": "ok", **json.loads(out.strip().splitlines()[-1]), "wall_s": wall}
        except (ValueError, IndexError):
            pass
        return {"status": "error", "error": f"exit {rc}: {(err or out)[-1500:]}"}

    def fail(self, what: str, res: dict) -> None:
        msg = f"{what}: {res.get('error', res.get('status'))}"
        self.errors.append(msg)
        H.log("  FAILED " + msg[:600])

    # -- builds

    def prime(self) -> None:
        """Build symfuse's one-time libraries (the export's $ORIGIN runtime: once per installation and
        compiler, in the compile cache's runtime/) before the cold exports, whose fresh caches get a
        copy of that runtime/: they then time the model's compile and export only."""
        d = os.path.join(self.scratch, "prime")
        res = self.py_child({"kind": "sf-export", "model": "mlp", "batch": 1, "dir": d, "name": "prime",
                             "params": os.path.join(self.scratch, "prime.npz")}, "symfuse",
                            cache=os.path.join(self.scratch, "prime-cache"))
        if res.get("status") != "ok":
            self.fail("symfuse priming export", res)

    def build_symfuse(self, p: Point) -> None:
        d = os.path.join(self.scratch, "export", p.key)
        job = {"kind": "sf-export", "model": p.model, "batch": p.batch, "dir": d, "name": p.name,
               "params": os.path.join(self.scratch, f"{p.key}.params.npz")}
        # a fresh cache per point: each export is a cold compile; the timing children then find it warm.
        # It holds the one-time runtime builds, as an installation's cache does after its first export
        cache = os.path.join(self.scratch, "sf-cold", p.key)
        primed = os.path.join(self.scratch, "prime-cache")
        if os.path.isdir(os.path.join(primed, "runtime")):
            # with the cache's key: its files carry authentication codes under that key
            shutil.copytree(os.path.join(primed, "runtime"), os.path.join(cache, "runtime"), symlinks=True)
            shutil.copy2(os.path.join(primed, "hmac.key"), os.path.join(cache, "hmac.key"))
            os.chmod(cache, 0o700)
        res = self.py_child(job, "symfuse", cache=cache)
        b = self.builds.setdefault(p.key, {})
        if res.get("status") != "ok":
            self.fail(f"symfuse export {p.key}", res)
            return
        shutil.copytree(cache, self.sf_cache, dirs_exist_ok=True)
        sizes = {os.path.basename(f): os.path.getsize(f) for f in res["files"].values()}
        self.meta["symfuse"] = res["symfuse"]
        b["symfuse"] = {**{k: res[k] for k in ("import_s", "compile_s", "export_s", "march")},
                        "wall_s": res["wall_s"], "dir": d, "params_npz": job["params"], "sizes": sizes,
                        "total_bytes": sum(sizes.values()), "model_bytes": sum(
                            v for k, v in sizes.items() if k.startswith((f"lib{p.name}.", f"{p.name}.")))}
        exe = os.path.join(d, "time_export")
        cc = shutil.which("gcc") or shutil.which("cc")
        r = subprocess.run([cc, "-O2", "-Wall", os.path.join(C_DIR, "time_export.c"), "-I", C_DIR, "-I", d,
                            f'-DSF_MODEL_HEADER="{p.name}.h"', "-L", d, f"-l{p.name}", "-Wl,-rpath,$ORIGIN", "-o", exe],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.fail(f"time_export.c against {p.key}", {"error": r.stderr[-1500:]})
            return
        b["symfuse"]["driver"] = exe
        H.log(f"  symfuse {p.key}: compile {res['compile_s']:.2f} s, export {res['export_s']:.2f} s, "
              f"{b['symfuse']['total_bytes'] / 2**20:.1f} MiB")

    def build_aoti(self, p: Point, dynamic: bool = False) -> None:
        """The AOTInductor package of point p; with dynamic, its model's package with the batch
        dimension left to run time (1..MAX_BATCH), traced at p's batch."""
        b = self.builds.get(p.key, {})
        if "symfuse" not in b:
            return
        key = f"{p.model}-dyn" if dynamic else p.key
        cache = tempfile.mkdtemp(prefix=f"inductor-{key}-", dir=self.scratch)
        pkg = os.path.join(self.scratch, f"{key}.pt2")
        job = {"kind": "aoti-build", "model": p.model, "batch": p.batch, "params": b["symfuse"]["params_npz"],
               "input": self.input_path(p), "package": pkg, "threads": self.threads, "dynamic": dynamic}
        b = self.builds.setdefault(key, {})
        res = self.py_child(job, "torch", env_extra={"TORCHINDUCTOR_CACHE_DIR": cache,
                                                     "TRITON_CACHE_DIR": os.path.join(cache, "triton")})
        if res.get("status") != "ok":
            self.fail(f"AOTInductor build {key}", res)
            return
        self.meta["torch"] = res["torch"]
        b["aoti"] = {k: res[k] for k in ("import_s", "torch_export_s", "aoti_compile_s", "wall_s")}
        b["aoti"].update(package=pkg, package_bytes=os.path.getsize(pkg))
        H.log(f"  AOTInductor {key}: torch.export {res['torch_export_s']:.1f} s, "
              f"compile {res['aoti_compile_s']:.1f} s, {b['aoti']['package_bytes'] / 2**20:.1f} MiB")

    def build_aoti_cpp(self) -> None:
        """The C++ runner, against the torch wheel's headers and libtorch (the wheel ships both)."""
        try:
            import importlib.util
            spec = importlib.util.find_spec("torch")
            tdir = os.path.dirname(spec.origin)
        except (ImportError, AttributeError, TypeError):
            self.notes.append("AOTInductor (C++): torch is not installed")
            return
        cxx = shutil.which("g++") or shutil.which("c++")
        if cxx is None:
            self.notes.append("AOTInductor (C++): no C++ compiler")
            return
        exe = os.path.join(self.scratch, "time_aoti")
        lib = os.path.join(tdir, "lib")
        # --no-as-needed: the package's model library is dlopened and needs libtorch.so already loaded
        cmd = [cxx, "-O2", "-std=c++20", os.path.join(C_DIR, "time_aoti.cpp"), "-I", C_DIR,
               "-I", os.path.join(tdir, "include"), "-L", lib, f"-Wl,-rpath,{lib}", "-Wl,--no-as-needed",
               "-ltorch", "-ltorch_cpu", "-lc10", "-o", exe]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            # optional by the issue ("where torch can build it"): said in the results, not a failure
            self.notes.append("AOTInductor (C++): bench/c/time_aoti.cpp did not build here: " + r.stderr[-800:])
            return
        self.aoti_cpp = exe
        libs = {n: os.path.getsize(os.path.join(lib, n)) for n in ("libtorch.so", "libtorch_cpu.so", "libc10.so")
                if os.path.exists(os.path.join(lib, n))}
        gomp = os.path.join(lib, "libgomp.so.1")
        if os.path.exists(gomp):
            libs["libgomp.so.1"] = os.path.getsize(gomp)
        self.meta["aoti_cpp"] = {"build_s": time.perf_counter() - t, "compiler": cxx, "runtime_libs": libs}
        H.log(f"  time_aoti.cpp: built in {self.meta['aoti_cpp']['build_s']:.1f} s")

    def input_path(self, p: Point) -> str:
        path = os.path.join(self.scratch, f"{p.key}.x.npy")
        if not os.path.exists(path):
            x = make_input(p.model, p.batch)
            np.save(path, x)
            x.tofile(path[:-4] + ".bin")
        return path

    # -- timing

    def available(self, v: Variant, p: Point) -> bool:
        b = self.builds.get(p.key, {})
        if v.needs == "symfuse":
            return "driver" in b.get("symfuse", {})
        if v.needs == "torch":
            return "symfuse" in b and self.meta.get("torch_ok", True)
        if v.needs == "aoti":
            return "aoti" in b
        if v.needs == "symfuse-dyn":
            return "driver" in self.builds.get(Point(p.model, DYN).key, {}).get("symfuse", {})
        if v.needs == "aoti-dyn":
            b = self.builds.get(f"{p.model}-dyn", {})
        return "aoti" in b and self.aoti_cpp is not None

    def measure(self, v: Variant, p: Point, rnd: int) -> dict:
        b = self.builds[p.key]
        warm, calls, budget = self.args.warmup[p.batch > 1], self.args.calls[p.batch > 1], self.args.budget
        out = os.path.join(self.scratch, f"out-{v.key}-{p.key}-r{rnd}.npy")
        xin = self.input_path(p)
        if v.key in ("symfuse-c", "symfuse-c-dyn"):
            drv = (b if v.key == "symfuse-c" else self.builds[Point(p.model, DYN).key])["symfuse"]["driver"]
            res = self.c_child([drv, str(warm), str(calls), str(budget), xin[:-4] + ".bin", out + ".bin"], "symfuse")
            res["threads"] = self.threads
        elif v.key in ("aoti-cpp", "aoti-cpp-dyn"):
            shape = [str(p.batch), *map(str, INPUT_SHAPE[p.model])]
            pkg = self.builds[p.key if v.key == "aoti-cpp" else f"{p.model}-dyn"]["aoti"]["package"]
            res = self.c_child([self.aoti_cpp, pkg, str(self.threads), str(warm), str(calls), str(budget),
                                xin[:-4] + ".bin", out + ".bin", *shape], "torch")
            res["threads"] = self.threads
        else:
            job = {"kind": v.key if v.key != "aoti-py" else "aoti-load", "model": p.model, "batch": p.batch,
                   "input": xin, "output": out, "warmup": warm, "calls": calls, "budget": budget,
                   "threads": self.threads,
                   "params": b["symfuse"]["params_npz"], "package": b.get("aoti", {}).get("package")}
            res = self.py_child(job, "symfuse" if v.key == "symfuse-py" else "torch")
        if res.get("status") == "ok":
            if v.kind == "c":
                y = np.fromfile(out + ".bin", np.float32)
            else:
                y = np.load(out)
            self.outputs.setdefault((v.key, p.key), y.reshape(p.batch, -1))
        return res

    def check_outputs(self, points) -> dict:
        """symfuse C == symfuse Python to 1e-6; every torch variant == symfuse Python to 1e-4."""
        diffs = {}
        for p in points:
            ref = self.outputs.get(("symfuse-py", p.key))
            if ref is None:
                continue
            for v in VARIANTS:
                y = self.outputs.get((v.key, p.key))
                if y is None or v.key == "symfuse-py":
                    continue
                d = float(np.max(np.abs(y.astype(np.float64) - ref)))
                diffs[f"{v.key} {p.key}"] = d
                tol = TOL_C_VS_PY if v.key == "symfuse-c" else TOL_DYN if v.key == "symfuse-c-dyn" else TOL_TORCH
                assert d <= tol, f"{v.label} {p.key}: max |output - symfuse Python| = {d:.3g} > {tol:g}"
        return diffs

    def run(self, points) -> None:
        self.notes += [f"{label}: {why}" for label, why in PENDING.values()]
        H.log(f"builds (scratch {self.scratch})")
        self.prime()
        for p in points:
            self.input_path(p)
            self.build_symfuse(p)
        for m in dict.fromkeys(p.model for p in points):    # one run-time-batch export per model
            self.build_symfuse(Point(m, DYN))
        if self.args.no_torch:
            self.meta["torch_ok"] = False
            self.notes.append("torch rows skipped (--no-torch)")
        else:
            try:
                import importlib.util
                ok = importlib.util.find_spec("torch") is not None
            except ImportError:
                ok = False
            self.meta["torch_ok"] = ok
            if not ok:
                self.notes.append("torch is not installed: no torch rows (pip install torch)")
            else:
                for p in points:
                    self.build_aoti(p)
                # a quick run leaves the dynamic builds out: two more cold AOTInductor compiles
                for m in dict.fromkeys(p.model for p in points) if not self.args.quick else ():
                    self.build_aoti(max((p for p in points if p.model == m), key=lambda p: p.batch), dynamic=True)
                self.build_aoti_cpp()
        for rnd in range(self.args.rounds):
            H.log(f"round {rnd + 1}/{self.args.rounds}")
            for i, p in enumerate(points):
                order = VARIANTS[(rnd + i) % len(VARIANTS):] + VARIANTS[:(rnd + i) % len(VARIANTS)]
                for v in order:
                    if not self.available(v, p):
                        continue
                    res = self.measure(v, p, rnd)
                    if res.get("status") != "ok":
                        self.fail(f"{v.label} {p.key} round {rnd + 1}", res)
                        continue
                    self.runs.setdefault((v.key, p.key), []).append(res)
                    H.log(f"  {p.key} {v.label}: {res['median_us']:.1f} us")
            if rnd == 0:
                self.meta["max_abs_diff"] = self.check_outputs(points)

    # -- summaries

    def median_of(self, vkey: str, pkey: str, field: str = "median_us"):
        runs = self.runs.get((vkey, pkey), [])
        return statistics.median(r[field] for r in runs) if runs else None

    def overhead(self, pkey: str):
        """Median over the rounds of (Python - C) from the same round."""
        c, py = self.runs.get(("symfuse-c", pkey), []), self.runs.get(("symfuse-py", pkey), [])
        pairs = [b["median_us"] - a["median_us"] for a, b in zip(c, py)]
        return statistics.median(pairs) if pairs else None


# ------------------------------------------------------------------------------------- outputs

def fmt_us(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1e3:.2f} ms" if v >= 1e3 else f"{v:.1f} us"


def fmt_mib(n) -> str:
    return "-" if n is None else (f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB")


def latency_table(st: Study, points) -> str:
    heads = ["model", "batch"] + [v.label for v in VARIANTS[:2]] + ["Python overhead"] + [v.label for v in VARIANTS[2:]]
    rows = []
    for p in points:
        cells = [fmt_us(st.median_of(v.key, p.key)) for v in VARIANTS]
        ov, c = st.overhead(p.key), st.median_of("symfuse-c", p.key)
        ovs = "-" if ov is None or not c else f"{fmt_us(ov)} ({100 * ov / c:+.0f} %)"
        rows.append([p.model, p.batch, *cells[:2], ovs, *cells[2:]])
    return H.md_table(heads, rows, ["l", "r"] + ["r"] * (len(heads) - 2))


def spread_table(st: Study, points) -> str:
    rows = []
    for p in points:
        for v in VARIANTS:
            runs = st.runs.get((v.key, p.key), [])
            if not runs:
                continue
            meds = [r["median_us"] for r in runs]
            med = (fmt_us(st.median_of(v.key, p.key, f)) for f in ("median_us", "p10_us", "p90_us"))
            rows.append([p.key, v.label, *med, fmt_us(min(r["min_us"] for r in runs)),
                         f"{fmt_us(min(meds))} - {fmt_us(max(meds))}",
                         f"{len(runs)}, {min(r['calls'] for r in runs)}-{max(r['calls'] for r in runs)}",
                         runs[0].get("threads", "-")])
    return H.md_table(["point", "variant", "median", "p10", "p90", "min", "round medians", "rounds, calls each", "threads"],
                      rows, ["l", "l"] + ["r"] * 7)


def ratio(a, b) -> str:
    return "-" if a is None or not b else f"{a / b:.3f}"


def batch_cost_table(st: Study, points) -> str:
    rows = []
    for p in points:
        sc, sd, ac, ad = (st.median_of(k, p.key) for k in ("symfuse-c", "symfuse-c-dyn", "aoti-cpp", "aoti-cpp-dyn"))
        rows.append([p.model, p.batch, fmt_us(sc), fmt_us(sd), ratio(sd, sc), fmt_us(ac), fmt_us(ad), ratio(ad, ac)])
    return H.md_table(["model", "batch", "symfuse C, static", "symfuse C, run-time batch", "symfuse run-time / static",
                       "AOTInductor C++, static", "AOTInductor C++, run-time batch", "AOTInductor run-time / static"],
                      rows, ["l"] + ["r"] * 7)


def build_rows(st: Study, points):
    """(model, batch label, symfuse build or None, AOTInductor build or None) per build."""
    for p in points:
        b = st.builds.get(p.key, {})
        yield p.model, str(p.batch), b.get("symfuse"), b.get("aoti")
    for m in dict.fromkeys(p.model for p in points):
        s = st.builds.get(Point(m, DYN).key, {}).get("symfuse")
        if s:
            yield m, "any (run-time)", s, None
        a = st.builds.get(f"{m}-dyn", {}).get("aoti")
        if a:
            yield m, f"1..{MAX_BATCH}", None, a


def build_table(st: Study, points) -> str:
    rows = []
    for model, batch, s, a in build_rows(st, points):
        rows.append([model, batch,
                     f"{s['compile_s']:.2f} s" if s else "-", f"{s['export_s']:.2f} s" if s else "-",
                     fmt_mib(s and s["model_bytes"]), fmt_mib(s and s["total_bytes"]),
                     f"{a['torch_export_s']:.2f} s" if a else "-", f"{a['aoti_compile_s']:.1f} s" if a else "-",
                     fmt_mib(a and a["package_bytes"])])
    return H.md_table(["model", "batch", "symfuse compile (cold)", "sf.export", "model files", "export dir",
                       "torch.export", "AOTInductor compile (cold)", ".pt2 package"], rows,
                      ["l", "r"] + ["r"] * 7)


def write_md(st: Study, points) -> str:
    m = st.meta
    mach = m["machine"]
    a = st.args
    L = ["# export", ""]
    if m["quick"]:
        L += ["**QUICK MODE** (`--quick`): a smoke test with few calls; the numbers are not measurements.", ""]
    L += [f"- machine: {mach['cpu']}, {mach['cores']} cores, {mach['mem_gib']} GiB, {mach['os']}, "
          f"Python {mach['python']}; shared with other jobs",
          f"- load average at start / end: {H.fmt_load(m['loadavg_start'])} / {H.fmt_load(m.get('loadavg_end'))}",
          f"- threads: {st.threads} everywhere (OMP_NUM_THREADS; `torch.set_num_threads` in Python, "
          "`at::set_num_threads` in the C++ runner); symfuse's C driver runs with "
          + ", ".join(f"{k}={v}" for k, v in SYMFUSE_ENV.items()) + " as symfuse's Python process does; "
          "the torch processes with torch's defaults otherwise",
          f"- versions: symfuse {m.get('symfuse', '?')}, torch {m.get('torch', 'not installed')}, "
          f"numpy {np.__version__}, compiler `{m['machine'].get('cc')}`, -march={m.get('march', '?')}",
          f"- command: `python bench/study_export.py {' '.join(m['argv'])}`".rstrip() + f" ({m['started']}, "
          f"{m.get('wall_s', 0) / 60:.1f} min)", ""]
    load = max(x[0] for x in (m["loadavg_start"], m.get("loadavg_end") or (0,)))
    if load > mach["cores"]:
        L += [f"**A loaded machine**: the 1-minute load average reached {load:.1f} on {mach['cores']} cores "
              "while this ran (other jobs). Every process then shares its cores, the medians are inflated "
              "(most at batch 128 and wherever threads wait for each other), and the rounds disagree; the lower "
              "end of *round medians* (Spread) is the least disturbed round. Compare variants within a row, "
              "not with runs on a quiet machine.", ""]
    L += ["## What is measured", "",
          "The zoo's MLP (784-512-512-10, relu) and LeNet-5 inference functions (softmax probabilities, "
          "float32), exported with `sf.export`, and the same models in PyTorch with the same "
          "weights. Latency of one call: each variant in its own process; "
          f"{a.warmup[0]} / {a.warmup[1]} untimed calls (batch 1 / larger), then {a.calls[0]} / {a.calls[1]} calls "
          f"(fewer, at least {MIN_CALLS}, once {a.budget:g} s have passed) timed one by one (`clock_gettime` inside the C and C++ drivers, `time.perf_counter_ns` in Python); "
          f"{a.rounds} rounds with the variants' order rotated, and the median of the rounds' medians. "
          "*symfuse C*: `bench/c/time_export.c` calling `<name>_run` on buffers allocated once. "
          "*symfuse Python*: `f(x)` of the `sf.function` the export was made from (returns a new numpy array). "
          "*Python overhead*: the median over the rounds of (Python - C). "
          "*torch eager*: the module under `torch.inference_mode`. "
          "*AOTInductor (Python)*: `torch._inductor.aoti_load_package(pkg)(x)`; "
          "*AOTInductor (C++)*: `bench/c/time_aoti.cpp`, `AOTIModelPackageLoader::run` (both return new tensors). "
          "Outputs checked in the first round: symfuse C against symfuse Python "
          f"to {TOL_C_VS_PY:g}, every torch variant against symfuse to {TOL_TORCH:g} "
          "(largest differences at the end).", ""]
    L += ["## Latency of one call (median)", "", latency_table(st, points)]
    L += ["## The cost of a run-time batch size", "",
          "The issue's target: an export whose batch is chosen at run time within 5 % of the static build "
          "at batch 128. *symfuse C, run-time batch*: one export per model of `zoo.get(model, batch=\"batch\")` "
          "(one library for every batch: sizes, loop bounds and arena offsets read at each call), timed by "
          "the same C driver at each batch and checked against symfuse Python to "
          f"{TOL_DYN:g}. For scale, the same price in PyTorch: one AOTInductor package per model "
          f"exported with the batch dimension dynamic (`torch.export.Dim('batch', min=1, max={MAX_BATCH})`, "
          "traced at the largest batch), run by the same C++ driver, against the per-batch packages.", "",
          batch_cost_table(st, points)]
    L += ["## Build time and size", "",
          "Each build in a fresh process with fresh caches (SYMFUSE_CACHE_DIR, holding only the one-time "
          "runtime builds an installation's first export makes; TORCHINDUCTOR_CACHE_DIR). "
          "*symfuse compile*: `zoo.get(...).predict_function(\"cpu\")` (graph, passes, codegen, C compile); "
          "*sf.export*: writing the directory (the API unit and the library built again with `$ORIGIN`). "
          "symfuse's runtime libraries are built once per installation, before these (not counted). "
          "*model files*: `lib<name>.so`, header, manifest, params; *export dir*: everything a C program "
          "needs, libsymfuse_rt.so and OpenBLAS included. "
          "*torch.export* and *AOTInductor compile* (`aoti_compile_and_package`) are timed separately; "
          "torch's import is not counted on either side. The `.pt2` holds the model library with the "
          "weights in it; running it needs libtorch as well:", ""]
    libs = m.get("aoti_cpp", {}).get("runtime_libs")
    if libs:
        L += [", ".join(f"`{k}` {fmt_mib(v)}" for k, v in libs.items())
              + f" ({fmt_mib(sum(libs.values()))} in all, what `time_aoti` links and loads).", ""]
    L += [build_table(st, points)]
    if m.get("aoti_cpp"):
        L += [f"The C++ runner (`bench/c/time_aoti.cpp`, including `model_package_loader.h` from the wheel) "
              f"compiled in {m['aoti_cpp']['build_s']:.1f} s.", ""]
    L += ["## Spread", "", "p10 / p90 / min over all rounds' calls (medians of the rounds' values; min of all); "
          "the range of the rounds' medians.", "", spread_table(st, points)]
    diffs = m.get("max_abs_diff") or {}
    if diffs:
        L += ["## Same computation", "", "Largest |output - symfuse Python| (first round):", "",
              H.md_table(["variant, point", "max abs diff"], [[k, f"{v:.2e}"] for k, v in diffs.items()])]
    if st.notes:
        L += ["## Not measured", ""] + [f"- {n}" for n in st.notes] + [""]
    if st.errors:
        L += ["## Failures", ""] + [f"- `{e[:600]}`" for e in st.errors] + [""]
    return "\n".join(L) + "\n"


def _bar_labels(ax, bars, texts) -> None:
    for b, t in zip(bars, texts):
        h = b.get_height()
        if h == h and h > 0:
            ax.annotate(t, (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=6, rotation=90,
                        xytext=(0, 1), textcoords="offset points")


def plot(st: Study, points):
    plt = H.pyplot()
    ncol = max(2, len(points))
    fig = plt.figure(figsize=(max(3.4 * ncol, 10), 8))
    gs = fig.add_gridspec(2, ncol)
    colors = ["#d62728", "#ff9896", "#ff7f0e", "#9467bd", "#c5b0d5", "#e377c2", "#8c6d31"]
    for i, p in enumerate(points):
        ax = fig.add_subplot(gs[0, i])
        vals, lo, hi = [], [], []
        shown = [v for v in VARIANTS if st.runs.get((v.key, p.key))]
        for v in shown:
            med = st.median_of(v.key, p.key)
            vals.append(med if med is not None else float("nan"))
            lo.append(med - st.median_of(v.key, p.key, "p10_us") if med is not None else 0)
            hi.append(st.median_of(v.key, p.key, "p90_us") - med if med is not None else 0)
        ax.bar(range(len(vals)), vals, color=[colors[VARIANTS.index(v)] for v in shown], yerr=[lo, hi], capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#555555"})
        H.plain_log_y(ax)
        # the values go with the names: above the bars they would cross the p10-p90 whiskers
        ax.set_xticks(range(len(vals)), [f"{v.label}: {fmt_us(val)}" for v, val in zip(shown, vals)],
                      rotation=60, ha="right", fontsize=6.5)
        ax.set_title(f"{p.model}, batch {p.batch}", fontsize=9)
        if i == 0:
            ax.set_ylabel("us per call (median; p10-p90)")
    rows = list(build_rows(st, points))
    x = np.arange(len(rows))
    labels = [f"{m}\n{b}" for m, b, _, _ in rows]
    half = ncol // 2
    ax = fig.add_subplot(gs[1, :half])
    t_sf = [s["compile_s"] + s["export_s"] if s else np.nan for _, _, s, _ in rows]
    t_ao = [a["torch_export_s"] + a["aoti_compile_s"] if a else np.nan for _, _, _, a in rows]
    b1 = ax.bar(x - 0.2, t_sf, 0.4, color="#d62728", label="symfuse compile + sf.export")
    b2 = ax.bar(x + 0.2, t_ao, 0.4, color="#9467bd", label="torch.export + AOTInductor")
    H.plain_log_y(ax)
    _bar_labels(ax, b1, [f"{v:.2f} s" for v in t_sf])
    _bar_labels(ax, b2, [f"{v:.1f} s" for v in t_ao])
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("cold build, s")
    ax.set_ylim(top=ax.get_ylim()[1] * 8)       # room for the legend above the bars
    ax.legend(fontsize=7, loc="upper left")
    ax = fig.add_subplot(gs[1, half:])
    libs = sum((st.meta.get("aoti_cpp") or {}).get("runtime_libs", {}).values())
    z_sf = [s["total_bytes"] / 2**20 if s else np.nan for _, _, s, _ in rows]
    z_ao = [a["package_bytes"] / 2**20 if a else np.nan for _, _, _, a in rows]
    z_all = [v + libs / 2**20 if libs else np.nan for v in z_ao]
    b1 = ax.bar(x - 0.27, z_sf, 0.27, color="#d62728", label="symfuse export dir (OpenBLAS included)")
    b2 = ax.bar(x, z_ao, 0.27, color="#9467bd", label=".pt2 package")
    b3 = ax.bar(x + 0.27, z_all, 0.27, color="#c5b0d5", label=".pt2 + the libtorch it loads")
    H.plain_log_y(ax)
    for bars, vals in ((b1, z_sf), (b2, z_ao), (b3, z_all)):
        _bar_labels(ax, bars, [f"{v:.1f}" for v in vals])
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("MiB on disk")
    ax.set_ylim(top=ax.get_ylim()[1] * 20)
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"exported inference: symfuse vs PyTorch AOTInductor ({st.threads} thread{'s' if st.threads > 1 else ''}, "
                 f"{st.meta['machine']['cores']} cores, shared machine)", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--quick", action="store_true",
                    help="MLP only, 2 rounds, few calls, no dynamic-batch AOTInductor; writes bench/results/quick/")
    ap.add_argument("--models", default=None, help="comma-separated subset of mlp,lenet (default both; quick: mlp)")
    ap.add_argument("--batches", default="1,128")
    ap.add_argument("--rounds", type=int, default=None, help="processes per variant and point (default 5; quick 2)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads everywhere (default: the cores this may use); another count writes export-t<N>.*")
    ap.add_argument("--no-torch", action="store_true", help="symfuse rows only")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one child process")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--replot", metavar="JSON", help="write the .md and .png again from a study's .json, measuring nothing")
    args = ap.parse_args(argv)
    if args.replot:
        return replot(args.replot)
    q = args.quick
    args.rounds = args.rounds or (2 if q else 5)
    cores = len(os.sched_getaffinity(0))
    args.threads = args.threads or cores
    # (batch 1, larger batches): enough calls for a stable median in about a second per process
    args.warmup = (20, 5) if q else (50, 10)
    args.calls = (200, 50) if q else (1000, 200)
    args.budget = 0.3 if q else 1.0
    models = (args.models or ("mlp" if q else ",".join(MODELS))).split(",")
    points = [Point(m, int(b)) for m in models for b in args.batches.split(",")]
    out = args.out_dir or (os.path.join(HERE, "results", "quick") if q else os.path.join(HERE, "results"))
    st = Study(args)
    t0 = time.time()
    try:
        st.run(points)
    finally:
        st.meta["loadavg_end"] = os.getloadavg()
        st.meta["wall_s"] = time.time() - t0
        st.meta["march"] = next((b["symfuse"].get("march") for b in st.builds.values() if "symfuse" in b), None)
        st.meta["errors"], st.meta["notes"] = st.errors, st.notes
        st.meta["points"] = [(p.model, p.batch) for p in points]
        os.makedirs(out, exist_ok=True)
        # a thread count other than the default is a second result beside the first, not instead of it
        base = os.path.join(out, "export" if args.threads == cores else f"export-t{args.threads}")
        with open(base + ".json", "w") as fh:
            json.dump({"meta": st.meta, "builds": st.builds,
                       "runs": {f"{k[0]} {k[1]}": v for k, v in st.runs.items()}}, fh, indent=2, default=str)
        write_outputs(st, points, base)
        H.log(f"({st.meta['wall_s'] / 60:.1f} min)")
    return 1 if st.errors else 0


def write_outputs(st: Study, points, base: str) -> None:
    with open(base + ".md", "w") as fh:
        fh.write(write_md(st, points))
    plot(st, points).savefig(base + ".png", dpi=110, bbox_inches="tight")
    shutil.rmtree(st.scratch, ignore_errors=True)
    H.log(f"wrote {base}.md, {base}.png")


def replot(path: str) -> int:
    """The tables and the plot again from a study's json, without measuring."""
    with open(path) as fh:
        d = json.load(fh)
    m = d["meta"]
    args = argparse.Namespace(quick=m["quick"], rounds=m["rounds"], threads=m["threads"], warmup=m["warmup"],
                              calls=m["calls"], budget=m["budget_s"])
    st = Study(args)
    st.meta, st.builds, st.errors, st.notes = m, d["builds"], m["errors"], m["notes"]
    st.runs = {tuple(k.split(" ", 1)): v for k, v in d["runs"].items()}
    write_outputs(st, [Point(model, batch) for model, batch in m["points"]], path[:-len(".json")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
