"""LeNet-5 training step and inference, batch 128: the static build against the
build whose batch is chosen at run time (zoo.get(..., batch="batch")), in one
process, alternating blocks of calls; median ms per call of each."""
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("SYMFUSE_CACHE_DIR", tempfile.mkdtemp())
from symfuse.nn import zoo  # noqa: E402


def block(f, args, n=20):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f(*args)
        ts.append(time.perf_counter() - t)
    return ts


out = {}
for model in ("lenet", "mlp"):
    for what in ("train", "predict"):
        fns = {}
        for key, batch in (("static", 128), ("run-time", "batch")):
            m = zoo.get(model, batch=batch, seed=0)
            fns[key] = m.train_function("cpu") if what == "train" else m.predict_function("cpu")
        data = zoo.get(model, batch=128, seed=0).example_batch(size=128)
        args = data if what == "train" else data[:1]
        times = {k: [] for k in fns}
        for k, f in fns.items():
            block(f, args, 5)
        for _ in range(10):
            for k, f in fns.items():
                times[k] += block(f, args)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        out[f"{model} {what}"] = {**med, "ratio": med["run-time"] / med["static"]}
        print(f"{model} {what}: static {med['static']:.2f} ms, run-time batch {med['run-time']:.2f} ms, "
              f"ratio {med['run-time'] / med['static']:.3f}", flush=True)
print(json.dumps(out))
