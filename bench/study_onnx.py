"""ONNX inference study: models exported from PyTorch, run by symfuse (cpu),
onnxruntime (CPU provider) and torch eager, side by side in one run.

    python bench/study_onnx.py                       # ResNet-18 at batch 1 and 32, LeNet-5 at 64
    python bench/study_onnx.py --quick               # smaller: a smoke run of the harness

Each (framework, model, batch) is measured in fresh processes:

* cold compile -- symfuse: ``sf.onnx.load`` + ``function("cpu")`` with an empty cache
  directory; onnxruntime: creating its ``InferenceSession``; torch: none (eager);
* warm compile -- the same in a second fresh process (symfuse: the cache is warm;
  onnxruntime keeps no cache, so it repeats its cold work);
* latency -- median and min over ``--repeat`` calls after two warm-up calls;
* peak memory -- the process's maximum resident set (``ru_maxrss``) after the
  measurement, and the same before the model is loaded (the framework's own import).

All frameworks use the machine's cores (2 here). The models are the ones of the ONNX
tests (tests/onnx/torch_models.py) at the study's sizes: ResNet-18 is full width (64,
1000 classes) at 224x224. Results: bench/results/onnx.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULT_MARK = "@@RESULT@@"
FRAMEWORKS = ("symfuse-cpu", "onnxruntime", "torch-eager")
WORKLOADS = {        # name -> (torch_models name, input shape of one example)
    "resnet18": ("resnet18", (3, 224, 224)),
    "lenet5": ("lenet5", (1, 28, 28)),
}


def _peak_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report
    # the parent's peak (the parent imports torch to export the models)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def export(workload: str, batch: int, path: str) -> None:
    sys.path.insert(0, os.path.join(ROOT, "tests", "onnx"))
    import numpy as np
    from torch_models import ResNet18, export as torch_export
    name, shape = WORKLOADS[workload]
    build = (lambda: ResNet18(width=64, classes=1000)) if name == "resnet18" else None
    data, x = torch_export(name, shape=(batch, *shape), build=build)
    with open(path, "wb") as f:
        f.write(data)
    np.save(path + ".x.npy", x)


def child(spec: dict) -> dict:
    import numpy as np
    fw, path, repeat = spec["framework"], spec["model"], spec["repeat"]
    x = np.load(path + ".x.npy")
    if fw == "symfuse-cpu":
        import onnx  # noqa: F401  (imported up front: its import is not part of loading a model)
        import symfuse as sf
        mem0 = _peak_mb()
        t0 = time.perf_counter()
        model = sf.onnx.load(path)
        load_s = time.perf_counter() - t0
        f = model.function("cpu")
        compile_s = time.perf_counter() - t0

        def run():
            return f(x)[0]
    elif fw == "onnxruntime":
        import onnxruntime as ort
        mem0 = _peak_mb()
        t0 = time.perf_counter()
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        compile_s = load_s = time.perf_counter() - t0

        def run():
            return sess.run(None, {"x": x})[0]
    else:
        raise ValueError(f"unknown framework {fw!r}")
    out = run()
    run()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return {"compile_s": compile_s, "load_s": load_s, "median_ms": 1e3 * statistics.median(times),
            "min_ms": 1e3 * min(times), "peak_mb": _peak_mb(), "import_peak_mb": mem0,
            "checksum": float(np.abs(out).sum())}


def torch_child(spec: dict) -> dict:
    import numpy as np
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "onnx"))
    from torch_models import MODELS, ResNet18
    mem0 = _peak_mb()
    name, _ = WORKLOADS[spec["workload"]]
    torch.manual_seed(0)
    model = (ResNet18(width=64, classes=1000) if name == "resnet18" else MODELS[name][0]()).eval()
    x = torch.from_numpy(np.load(spec["model"] + ".x.npy"))
    with torch.no_grad():
        out = model(x)
        model(x)
        times = []
        for _ in range(spec["repeat"]):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return {"compile_s": 0.0, "load_s": 0.0, "median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "peak_mb": _peak_mb(), "import_peak_mb": mem0, "checksum": float(out.abs().sum())}


def _spawn(spec: dict, cache: str) -> dict:
    env = dict(os.environ, SYMFUSE_CACHE_DIR=cache, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         env=env, timeout=1800)
    for line in out.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"child {spec} failed:\n{out.stderr[-3000:]}")


def measure(workload: str, batch: int, repeat: int, frameworks, tmp: str) -> list[dict]:
    path = os.path.join(tmp, f"{workload}_b{batch}.onnx")
    export(workload, batch, path)
    rows = []
    for fw in frameworks:
        cache = tempfile.mkdtemp(dir=tmp, prefix="cache-")
        spec = {"framework": fw, "model": path, "repeat": repeat, "workload": workload}
        cold = _spawn(spec, cache)
        warm = _spawn(spec, cache) if fw != "torch-eager" else cold
        rows.append({"framework": fw, "workload": workload, "batch": batch, "cold_compile_s": cold["compile_s"],
                     "cold_load_s": cold["load_s"],
                     "warm_compile_s": warm["compile_s"], "median_ms": warm["median_ms"], "min_ms": warm["min_ms"],
                     "cold_median_ms": cold["median_ms"], "peak_mb": max(cold["peak_mb"], warm["peak_mb"]),
                     "import_peak_mb": cold["import_peak_mb"], "checksum": cold["checksum"]})
        print(f"  {workload} b{batch} {fw:12s} cold {cold['compile_s']:.2f}s warm {warm['compile_s']:.3f}s "
              f"step {warm['median_ms']:.2f} ms peak {rows[-1]['peak_mb']:.0f} MB", flush=True)
    return rows


def write_report(rows: list[dict], out_dir: str, meta: dict) -> None:
    with open(os.path.join(out_dir, "onnx.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = ["# ONNX inference: symfuse cpu vs onnxruntime (CPU provider) vs torch eager", "",
             f"Run: `python bench/study_onnx.py` on {meta['machine']}; {meta['repeat']} timed calls after 2 "
             "warm-up calls, each framework in fresh processes; peak = max resident set (VmHWM) of the process, "
             "and in brackets after importing the framework. Compile: symfuse's `sf.onnx.load` (reading and "
             "converting the file; in brackets) plus `function(\"cpu\")`; onnxruntime's `InferenceSession`.", "",
             "| model | batch | framework | cold compile s (load) | warm compile s | median ms | min ms | "
             "vs onnxruntime | peak MB (import) |", "|---|---|---|---|---|---|---|---|---|"]
    ref = {(r["workload"], r["batch"]): r["median_ms"] for r in rows if r["framework"] == "onnxruntime"}
    for r in rows:
        ratio = r["median_ms"] / ref[(r["workload"], r["batch"])] if (r["workload"], r["batch"]) in ref else None
        lines.append(f"| {r['workload']} | {r['batch']} | {r['framework']} | {r['cold_compile_s']:.2f} "
                     f"({r['cold_load_s']:.2f}) | "
                     f"{r['warm_compile_s']:.3f} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | "
                     f"{f'{ratio:.2f}x' if ratio else '-'} | {r['peak_mb']:.0f} ({r['import_peak_mb']:.0f}) |")
    with open(os.path.join(out_dir, "onnx.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="LeNet-5 only, 3 calls: a smoke run")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        res = torch_child(spec) if spec["framework"] == "torch-eager" else child(spec)
        print(RESULT_MARK + json.dumps(res))
        return
    frameworks = args.frameworks.split(",")
    plan = [("lenet5", 64)] if args.quick else [("lenet5", 64), ("resnet18", 1), ("resnet18", 32)]
    repeat = 3 if args.quick else args.repeat
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload, batch in plan:
            rows += measure(workload, batch, repeat if batch < 32 else max(3, repeat // 2), frameworks, tmp)
    meta = {"machine": f"{os.cpu_count()} cores", "repeat": repeat, "date": time.strftime("%Y-%m-%d")}
    os.makedirs(args.out, exist_ok=True)
    write_report(rows, args.out, meta)
    print(open(os.path.join(args.out, "onnx.md")).read())


if __name__ == "__main__":
    main()
