import os, sys, tempfile, time, json
os.environ["SYMFUSE_CACHE_DIR"] = tempfile.mkdtemp()
t0 = time.perf_counter()
import numpy as np, symfuse as sf
from symfuse.nn import zoo
m = zoo.get("lenet", batch=128)
f = m.train_function("cpu")
cold = time.perf_counter() - t0
x, y = m.example_batch()
for _ in range(3):
    f(x, y)
ts = []
for _ in range(20):
    t = time.perf_counter(); f(x, y); ts.append(time.perf_counter() - t)
print(json.dumps({"src": sf.__file__, "cold_s": cold, "compile_total_ms": f.report.total_seconds * 1e3, "step_ms": sorted(ts)[10] * 1e3}))
