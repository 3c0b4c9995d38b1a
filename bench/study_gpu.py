"""Study 5 (GPU machine only): symfuse device="cuda" against PyTorch and JAX, and fused-kernel bandwidth.

The step study on the GPU, and the achieved memory bandwidth of symfuse's fused
kernels against a device-to-device copy.

    python bench/study_gpu.py [--frameworks a,b,c] [--steps 100] [--quick]

Needs an NVIDIA GPU and, per framework: symfuse-cuda: PyCUDA (built
from source: scripts/pycuda_offline.sh), cuda-bindings and nvidia-cuda-nvrtc;
torch-cuda-eager / torch-cuda-compile: a CUDA build of PyTorch; jax-cuda: JAX
with its CUDA plugin; the bandwidth reference copy: CuPy (else PyTorch). Without
a GPU it exits with status 2 and says so.

Part 1, steps: the step study (bench/study_step.py) on the GPU: MLP
784-512-512-10 and LeNet-5, batch 128, float32, training step and inference,
each framework in a fresh process; ``--warmup`` untimed calls, then ``--steps``
calls each timed with the host clock after a device synchronisation. symfuse's
call takes and returns host (numpy) arrays, so it includes copying every input
and parameter to the device and every result back; the row "symfuse-cuda
(kernels)" times the same launch schedule on buffers already on the device
(CUDA events), which is what the peers' calls do.

Part 2, bandwidth: a symfuse elementwise chain over 2^26 float32 (one fused
kernel: read x, write y) and a row softmax of a (2^26 / cols, cols) matrix,
timed with CUDA events over ``--bw-iters`` launches of the compiled kernels on
device-resident buffers; bytes = one read of the input + one write of the
output. The reference is a device-to-device copy of the same bytes (CuPy, else
torch), in the same run.

Writes bench/results/gpu.{json,md,png} (bench/results/quick/ with --quick).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness as H  # noqa: E402
import peers  # noqa: E402

GPU_FRAMEWORKS = ("symfuse-cuda", "symfuse-cuda-graph", "torch-cuda-eager", "torch-cuda-compile", "jax-cuda")
REQUIRES = {
    "symfuse-cuda": [("symfuse", "symfuse (this repository)"), ("pycuda", "pycuda (from source: "
                                                                       "scripts/pycuda_offline.sh)"),
                     ("cuda.bindings", "cuda-bindings"), ("dist:nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc")],
    "torch-cuda-eager": [("torch", "torch (a CUDA build)")],
    "torch-cuda-compile": [("torch", "torch (a CUDA build)"), ("triton", "triton (comes with CUDA builds of torch)")],
    "jax-cuda": [("jax", "jax[cuda12] or jax[cuda13]"), ("jaxlib", "jaxlib")],
}
REQUIRES["symfuse-cuda-graph"] = REQUIRES["symfuse-cuda"]
FUNCS = [("mlp", "train"), ("mlp", "infer"), ("lenet", "train"), ("lenet", "infer")]
NO_GPU_EXIT = 2


# ------------------------------------------------------------------------------------------ GPU probing


def find_gpu() -> tuple[str | None, list[str]]:
    """(name of GPU 0, notes): tries PyCUDA, CuPy, then PyTorch, then nvidia-smi."""
    notes = []
    try:
        import pycuda.driver as drv
        drv.init()
        if drv.Device.count():
            return drv.Device(0).name(), notes
        notes.append("PyCUDA: no device")
    except Exception as e:  # noqa: BLE001
        notes.append(f"PyCUDA: {type(e).__name__}: {e}")
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount():
            return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), notes
        notes.append("CuPy: no device")
    except Exception as e:  # noqa: BLE001
        notes.append(f"CuPy: {type(e).__name__}: {e}")
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), notes
        notes.append(f"PyTorch {torch.__version__}: torch.cuda.is_available() is False")
    except Exception as e:  # noqa: BLE001
        notes.append(f"PyTorch: {type(e).__name__}: {e}")
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and "GPU" in out.stdout:
            return out.stdout.splitlines()[0], notes + ["(only nvidia-smi sees it: install PyCUDA, CuPy or torch)"]
        notes.append(f"nvidia-smi: exit {out.returncode} {out.stderr.strip()[:200]}")
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"nvidia-smi: {e}")
    return None, notes


# ------------------------------------------------------------------------------- symfuse kernel timing


def sf_kernel_timer(f, host_args):
    """Time the launch schedule of a symfuse device="cuda" function on buffers that already live on
    the device (inputs and parameters staged once): returns (seconds per call of all launches, number
    of launches). Runs symfuse.runtime.cuda_exec.PyCudaExecutor's own launch loop, without the
    per-call staging of inputs and allocation of results."""
    prog = f._run
    try:
        if prog._executor is None:
            prog._executor = prog._factory(prog)
        ex = prog._executor
        drv = ex.drv
        arrays = list(host_args) + [s._value for s in f.shared]
        params = [ex._param(p, a) for p, a in enumerate(arrays)]
        results = [ex.allocate(n) for n in ex.slot_bytes]
    except AttributeError as e:
        raise RuntimeError(f"symfuse's CUDA executor changed ({e}): update bench/study_gpu.py sf_kernel_timer") from e

    def run():
        ex._launch(params, results)

    def timed(iters: int) -> float:
        run()
        drv.Context.synchronize()
        start, end = drv.Event(), drv.Event()
        start.record()
        for _ in range(iters):
            run()
        end.record()
        end.synchronize()
        return start.time_till(end) / 1e3 / iters

    return timed, len(prog.launches), results


# ------------------------------------------------------------------------------------------- children


def child(job: dict) -> dict:
    mode = job["mode"]
    if mode == "step":
        return peers.measure(job)
    if mode == "kernels":       # symfuse-cuda's compiled schedule on device-resident buffers
        spec = peers.Spec.from_json(job["spec"])
        peers.import_framework("symfuse-cuda")
        b = peers.build("symfuse-cuda", spec, settle=1, device="cuda")
        x, y = peers.make_data(spec)
        timed, launches, _ = sf_kernel_timer(b.step.fn, [x] if spec.kind == "infer" else [x, y])
        timed(max(1, job.get("warmup", 10)))
        times = sorted(timed(1) for _ in range(job.get("steps", 100)))
        return {"status": "ok", "framework": "symfuse-cuda (kernels)", "compile_s": b.compile_s, "times_s": times,
                "step_s": times[len(times) // 2], "step_min_s": times[0], "step_q1_s": times[len(times) // 4],
                "step_q3_s": times[(3 * len(times)) // 4], "launches": launches, "first_value": b.first_value,
                "versions": peers.versions("symfuse-cuda")}
    if mode == "bw-copy":
        return bw_copy(job["n"], job["iters"])
    if mode == "bw-symfuse":
        return bw_symfuse(job["n"], job["cols"], job["iters"])
    raise ValueError(mode)


def bw_copy(n: int, iters: int) -> dict:
    nbytes = 2 * n * 4
    try:
        import cupy as cp
        a = cp.random.standard_normal(n, dtype=cp.float32)
        b = cp.empty_like(a)
        b[...] = a
        cp.cuda.Device().synchronize()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(iters):
            b.data.copy_from_device(a.data, n * 4)
        end.record()
        end.synchronize()
        s = cp.cuda.get_elapsed_time(start, end) / 1e3 / iters
        via = f"CuPy {cp.__version__} (cudaMemcpy device-to-device)"
    except ImportError:
        import torch
        a = torch.randn(n, device="cuda")
        b = torch.empty_like(a)
        b.copy_(a)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            b.copy_(a)
        end.record()
        end.synchronize()
        s = start.elapsed_time(end) / 1e3 / iters
        via = f"torch {torch.__version__} (Tensor.copy_)"
    return {"status": "ok", "what": "device-to-device copy", "via": via, "n": n, "bytes": nbytes, "seconds": s,
            "gb_s": nbytes / s / 1e9}


def bw_symfuse(n: int, cols: int, iters: int) -> dict:
    import numpy as np
    import symfuse as sf
    rng = np.random.default_rng(0)
    out = {"status": "ok", "n": n, "rows": []}
    x = sf.tensor("x", (n,))
    f_ew = sf.function([x], sf.tanh(x * 1.5 + 0.25) * 0.5 - 0.125, device="cuda", name="bw_elementwise")
    xs = sf.tensor("xs", (n // cols, cols))
    f_sm = sf.function([xs], sf.softmax(xs, axis=-1), device="cuda", name="bw_softmax")
    xv = rng.standard_normal(n).astype(np.float32)
    for label, f, arg, ref in (
            ("elementwise chain tanh(x*1.5+0.25)*0.5-0.125", f_ew, xv, lambda a: np.tanh(a * 1.5 + 0.25) * 0.5 - 0.125),
            (f"row softmax ({n // cols} x {cols})", f_sm, xv.reshape(n // cols, cols), None)):
        got = f(arg)                                      # correctness, through the normal (host) call
        if ref is not None:
            err = float(np.max(np.abs(got - ref(arg))))
        else:
            e = np.exp(arg - arg.max(axis=1, keepdims=True))
            err = float(np.max(np.abs(got - e / e.sum(axis=1, keepdims=True))))
        timed, launches, _ = sf_kernel_timer(f, [arg])
        timed(3)
        s = min(timed(iters) for _ in range(3))
        nbytes = 2 * n * 4
        out["rows"].append({"what": label, "kernels": len(f.kernels), "launches": launches, "bytes": nbytes,
                            "seconds": s, "gb_s": nbytes / s / 1e9, "max_abs_err": err,
                            "kernel_names": [k.name for k in f.kernels]})
    return out


def run_gpu_child(st: H.Study, job: dict, timeout: float, what: str) -> dict:
    env = H.child_env(st.fresh_cache(what.replace(" ", "_").replace("(", "").replace(")", "")[:40]), st.args.threads)
    res = H.run_child(job, env, timeout, script=os.path.abspath(__file__))
    H.log(f"  {what}: {res.get('status')} {(res.get('error') or '')[:300]}")
    if res.get("versions"):
        st.meta["versions"].setdefault(res.get("framework") or what, res["versions"])
    return res


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=None, help="timed calls per point (default 100; quick: 20)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls (default 10; quick: 3)")
    ap.add_argument("--elements", type=int, default=1 << 26, help="float32 elements of the bandwidth tests (2^26)")
    ap.add_argument("--softmax-cols", type=int, default=1024, help="row length of the softmax bandwidth test")
    ap.add_argument("--bw-iters", type=int, default=None, help="launches per bandwidth timing (default 50; quick: 10)")
    ap.add_argument("--parts", default="steps,bandwidth", help="steps, bandwidth or both")
    H.add_common_args(ap, GPU_FRAMEWORKS)
    args = ap.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        try:
            res = child(job)
        except Exception as e:  # noqa: BLE001
            import traceback
            res = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        print(peers.RESULT_MARK + " " + json.dumps(res), flush=True)
        return 0

    gpu, notes = find_gpu()
    if gpu is None:
        print("study_gpu: no CUDA GPU found -- this study needs an NVIDIA GPU (and PyCUDA / CuPy / a CUDA build of "
              "PyTorch / JAX with CUDA); run it on a GPU machine.\n  " + "\n  ".join(notes), file=sys.stderr)
        return NO_GPU_EXIT
    frameworks = peers.parse_frameworks(args.frameworks, GPU_FRAMEWORKS, GPU_FRAMEWORKS)
    parts = set(args.parts.split(","))
    peers.check_frameworks(frameworks, REQUIRES, {})
    if "bandwidth" in parts:
        peers.check_frameworks(["symfuse-cuda"], REQUIRES, {})
        import importlib.util
        if importlib.util.find_spec("cupy") is None and importlib.util.find_spec("torch") is None:
            raise peers.MissingPeer("the bandwidth reference copy needs CuPy or PyTorch -- pip install cupy-cuda12x")
    steps = args.steps or (20 if args.quick else 100)
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 10)
    bw_iters = args.bw_iters or (10 if args.quick else 50)
    timeout = args.timeout or 1800
    args.frameworks = ",".join(frameworks)
    st = H.Study("gpu", args, GPU_FRAMEWORKS)
    st.meta["gpu"] = gpu

    runs, bw = [], {}
    if "steps" in parts:
        for fw in frameworks:
            for model, kind in FUNCS:
                spec = peers.Spec(model, kind)
                job = {"framework": fw, "spec": spec.to_json(), "mode": "step", "warmup": warmup, "steps": steps,
                       "settle": 1, "device": "cuda"}
                res = run_gpu_child(st, job, timeout, f"{fw} {spec.label}")
                runs.append({**res, "framework": fw, "label": spec.label})
                if res.get("status") != "ok":
                    st.record_error(f"{fw} {spec.label}: {res.get('error')}")
                if fw == "symfuse-cuda":
                    res = run_gpu_child(st, {**job, "mode": "kernels"}, timeout, f"symfuse-cuda (kernels) {spec.label}")
                    runs.append({**res, "framework": "symfuse-cuda (kernels)", "label": spec.label})
                    if res.get("status") != "ok":
                        st.record_error(f"symfuse-cuda (kernels) {spec.label}: {res.get('error')}")
    if "bandwidth" in parts:
        bw["copy"] = run_gpu_child(st, {"mode": "bw-copy", "n": args.elements, "iters": bw_iters}, timeout, "bw copy")
        bw["symfuse"] = run_gpu_child(st, {"mode": "bw-symfuse", "n": args.elements, "cols": args.softmax_cols,
                                           "iters": bw_iters}, timeout, "bw symfuse")
        for k, v in bw.items():
            if v.get("status") != "ok":
                st.record_error(f"bandwidth {k}: {v.get('error')}")

    fws = [f for f in frameworks] + (["symfuse-cuda (kernels)"] if "symfuse-cuda" in frameworks else [])
    summary = summarise(runs, fws)
    md = render_md(summary, fws, bw, steps, warmup, gpu) + H.md_errors(st)
    fig = plot(summary, fws, bw)
    return st.finish({"gpu": gpu, "summary": summary, "runs": runs, "bandwidth": bw}, md, fig)


def summarise(runs, fws):
    out = []
    for model, kind in FUNCS:
        label = peers.Spec(model, kind).label
        for fw in fws:
            r = next((x for x in runs if x["framework"] == fw and x["label"] == label), None)
            e = {"function": label, "framework": fw}
            if r and r.get("status") == "ok" and r.get("step_s") is not None:
                e.update(status="ok", median_s=r["step_s"], q1_s=r["step_q1_s"], q3_s=r["step_q3_s"],
                         min_s=r["step_min_s"], calls=len(r.get("times_s", [])), first_value=r.get("first_value"),
                         compile_s=r.get("compile_s"))
            else:
                e.update(status=(r or {}).get("status", "not run"), error=(r or {}).get("error"))
            out.append(e)
    for e in out:
        sf = next((x for x in out if x["framework"] == "symfuse-cuda" and x["function"] == e["function"]), None)
        if sf and sf.get("median_s") and e.get("median_s"):
            e["symfuse_over_peer"] = sf["median_s"] / e["median_s"]
        sk = next((x for x in out if x["framework"] == "symfuse-cuda (kernels)" and x["function"] == e["function"]),
                  None)
        if sk and sk.get("median_s") and e.get("median_s"):
            e["symfuse_kernels_over_peer"] = sk["median_s"] / e["median_s"]
    return out


def render_md(summary, fws, bw, steps, warmup, gpu) -> str:
    md = [f"GPU: {gpu}\n", "## What is measured\n",
          f"Steps: each framework in a fresh process, {warmup} untimed calls, then {steps} calls each timed with the "
          "host clock around call + device synchronisation. symfuse-cuda's call takes and returns numpy arrays: it "
          "uploads every input and parameter and downloads every result on every call (that is its executor today). "
          "'symfuse-cuda (kernels)' times the same compiled launch schedule with CUDA events on buffers already on "
          "the device, which is what the peers' calls do (their inputs and parameters stay on the device). "
          "'symfuse / peer' = ratio of the medians of symfuse-cuda (full call) and the peer, 'symfuse kernels / peer' the "
          "same for the kernels alone; <1: symfuse faster. 'compile (cold)' as in study_compile (fresh caches).\n",
          "## Time per call (GPU)\n"]
    rows = []
    for e in summary:
        if e["status"] != "ok":
            rows.append([e["function"], e["framework"], e["status"], "", "", "", "", ""])
            continue
        rows.append([e["function"], e["framework"], H.fmt_s(e["median_s"]), f"{H.fmt_s(e['q1_s'])} - {H.fmt_s(e['q3_s'])}",
                     H.fmt_s(e["min_s"]), H.fmt_s(e.get("compile_s")),
                     f"{e['symfuse_over_peer']:.2f}" if "symfuse_over_peer" in e and e["framework"] != "symfuse-cuda"
                     else "",
                     f"{e['symfuse_kernels_over_peer']:.2f}" if "symfuse_kernels_over_peer" in e
                     and not e["framework"].startswith("symfuse") else ""])
    md.append(H.md_table(["function", "framework", "median", "quartiles", "min", "compile (cold)", "symfuse / peer",
                          "symfuse kernels / peer"], rows, ["l", "l"] + ["r"] * 6))
    if bw:
        md.append("\n## Achieved bandwidth\n\nbytes = one read of the input + one write of the output (float32); "
                  "time = CUDA events around the compiled kernels' launches on device-resident buffers, best of 3 "
                  "timings of `--bw-iters` launches.\n\n")
        rows = []
        copy = bw.get("copy", {})
        cgb = copy.get("gb_s") if copy.get("status") == "ok" else None
        if cgb:
            rows.append([f"device-to-device copy ({copy['via']})", f"{copy['bytes'] / 2**20:.0f}",
                         H.fmt_s(copy["seconds"]), f"{cgb:.0f}", "1.00", "-", "-"])
        sfb = bw.get("symfuse", {})
        for r in sfb.get("rows", []):
            rows.append([f"symfuse: {r['what']}", f"{r['bytes'] / 2**20:.0f}", H.fmt_s(r["seconds"]), f"{r['gb_s']:.0f}",
                         f"{r['gb_s'] / cgb:.2f}" if cgb else "-", f"{r['kernels']} / {r['launches']}",
                         f"{r['max_abs_err']:.1e}"])
        md.append(H.md_table(["what", "MiB moved", "time", "GB/s", "of copy", "kernels / launches", "max abs err"],
                             rows, ["l"] + ["r"] * 6))
    return "\n".join(md)


def plot(summary, fws, bw):
    plt = H.pyplot()
    fig, axes = plt.subplots(1, len(FUNCS) + (1 if bw else 0), figsize=(4 * (len(FUNCS) + 1), 4.2), squeeze=False)
    for ax, (model, kind) in zip(axes[0], FUNCS):
        label = peers.Spec(model, kind).label
        es = [next(x for x in summary if x["framework"] == fw and x["function"] == label) for fw in fws]
        vals = [e["median_s"] * 1e3 if e.get("median_s") else float("nan") for e in es]
        bars = ax.bar(range(len(fws)), vals, color=[H.COLORS.get(fw, "#333333") for fw in fws])
        H.plain_log_y(ax)
        H.label_bars(ax, bars, vals)
        ax.set_xticks(range(len(fws)))
        ax.set_xticklabels(fws, rotation=45, ha="right", fontsize=8)
        ax.set_title(label)
        ax.set_ylabel("ms per call (median)")
        ax.grid(axis="y", alpha=0.3, which="both")
    if bw:
        ax = axes[0][-1]
        labels, vals = [], []
        if bw.get("copy", {}).get("status") == "ok":
            labels.append("D2D copy")
            vals.append(bw["copy"]["gb_s"])
        for r in bw.get("symfuse", {}).get("rows", []):
            labels.append("symfuse " + ("elementwise" if r["what"].startswith("elementwise") else "softmax"))
            vals.append(r["gb_s"])
        bars = ax.bar(range(len(vals)), vals, color=["#7f7f7f"] + ["#d62728"] * (len(vals) - 1))
        H.label_bars(ax, bars, vals)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("GB/s")
        ax.set_title("achieved bandwidth, 2^26 float32")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        sys.exit(main())
    except peers.MissingPeer as e:
        print(f"study_gpu: {e}", file=sys.stderr)
        sys.exit(2)
