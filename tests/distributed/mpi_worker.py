"""One rank of a test job (tests/distributed/test_collectives.py runs it under mpiexec):
``python mpi_worker.py CASE OUT_DIR``. Each rank writes ``OUT_DIR/<rank>.json`` or
``.npz``; the test compares what the ranks wrote with its own oracles."""
import json
import os
import sys

import numpy as np

import symfuse as sf
from symfuse import distributed as dist
from symfuse.nn import optim, zoo

CASE, OUT = sys.argv[1], sys.argv[2]
comm = dist.init()
RANK, WORLD = dist.rank(), dist.size()


def write_json(obj):
    with open(os.path.join(OUT, f"{RANK}.json"), "w") as fh:
        json.dump(obj, fh)


def rank_input(shape, dtype="float64", seed=0):
    return np.random.default_rng(1000 * seed + RANK).standard_normal(shape).astype(dtype)


def collective_graphs(x):
    """name -> symbolic result of each collective on ``x`` (rank >= 1, axis 0 divisible by
    WORLD); the means only for a float ``x``."""
    out = {"allreduce_sum": dist.allreduce(x, "sum"), "broadcast0": dist.broadcast(x, 0),
           "broadcast_last": dist.broadcast(x, WORLD - 1), "reduce0": dist.reduce(x, 0),
           "allgather": dist.allgather(x), "reduce_scatter": dist.reduce_scatter(x)}
    if x.dtype.is_float:
        out.update(allreduce_mean=dist.allreduce(x, "mean"),
                   bucket_mean=dist.average_gradients([x, x * 2.0], bucket_bytes=1 << 20, overlap=True)[1],
                   bucket_blocking=dist.average_gradients([x * 3.0, x], bucket_bytes=1 << 20, overlap=False)[0])
    return out


def case_values():
    """Each collective's value on interp and cpu, float32 and float64 (and int32 where it sums)."""
    out = {}
    for dt in ("float32", "float64", "int32"):
        xv = (rank_input((WORLD * 2, 3), "float64") * 10).astype(dt)
        x = sf.tensor("x", xv.shape, dt)
        graphs = collective_graphs(x)
        names = sorted(graphs)
        for dev in ("interp", "cpu", "cuda-emu"):
            f = sf.function([x], [graphs[n] for n in names], device=dev, name=f"coll_{dt}")
            res = f(xv)
            for n, r in zip(names, res):
                out[f"{dt}/{dev}/{n}"] = np.asarray(r).tolist()
        out[f"{dt}/input"] = xv.tolist()
    write_json(out)


def case_gradients():
    """sf.grad of L = sum over ranks of sum(w_r * collective(x_r)) on interp and cpu, and the
    same derivative by central differences, each rank perturbing only when it is its turn."""
    out = {}
    xv = rank_input((WORLD, 2), seed=1)
    wv = {n: rank_input(shape, seed=2 + i) for i, (n, shape) in
          enumerate([("allreduce_sum", (WORLD, 2)), ("allreduce_mean", (WORLD, 2)), ("broadcast0", (WORLD, 2)),
                     ("broadcast_last", (WORLD, 2)), ("reduce0", (WORLD, 2)), ("allgather", (WORLD * WORLD, 2)),
                     ("reduce_scatter", (1, 2)), ("bucket_mean", (WORLD, 2)), ("bucket_blocking", (WORLD, 2))])}
    x = sf.tensor("x", xv.shape, "float64")
    graphs = collective_graphs(x)
    for n, y in graphs.items():
        loss = sf.sum(y * sf.constant(wv[n]))
        for dev in ("interp", "cpu", "cuda-emu"):
            g = sf.function([x], sf.grad(loss, x), device=dev, name=f"grad_{n}")(xv)
            out[f"{dev}/{n}"] = np.asarray(g).tolist()
        f = sf.function([x], loss, device="interp", name=f"loss_{n}")
        fd = np.zeros_like(xv)
        eps = 1e-6
        for owner in range(WORLD):
            for i in np.ndindex(xv.shape):
                vals = []
                for s in (eps, -eps):
                    xp = xv.copy()
                    if RANK == owner:
                        xp[i] += s
                    vals.append(comm.allreduce(float(f(xp))))
                if RANK == owner:
                    fd[i] = (vals[0] - vals[1]) / (2 * eps)
        out[f"fd/{n}"] = fd.tolist()
    write_json(out)


def _train(name, batch, device, bucket_bytes=dist.DEFAULT_BUCKET_BYTES, overlap=True, data_parallel=True):
    kw = {"batch": batch, "seed": 3, "optimizer": optim.SGD(0.1)}
    if data_parallel:
        with dist.data_parallel(bucket_bytes, overlap):
            m = zoo.get(name, **kw)
    else:
        m = zoo.get(name, **kw)
    return m, m.train_function(device)


def _global_batches(m, steps, glob):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (steps, glob) + m.input_shape).astype(np.float32)
    y = rng.integers(0, m.classes, (steps, glob)).astype(np.int32)
    return x, y


def case_equivalence():
    """5 SGD steps of batch 64 on each of WORLD ranks against 5 steps of batch 64*WORLD on one
    (rank 0 runs that too, without collectives); interp and cpu; MLP and LeNet-5."""
    arrays = {}
    for name in ("mlp", "lenet"):
        for dev in ("interp", "cpu", "cuda-emu") if name == "mlp" else ("interp", "cpu"):
            m, f = _train(name, 64, dev)
            x, y = _global_batches(m, 5, 64 * WORLD)
            for s in range(5):
                f(x[s, RANK * 64:(RANK + 1) * 64], y[s, RANK * 64:(RANK + 1) * 64])
            for k, v in m.model.named_variables().items():
                arrays[f"{name}/{dev}/ranks/{k}"] = v.get_value()
            if RANK == 0:
                m1, f1 = _train(name, 64 * WORLD, dev, data_parallel=False)
                for s in range(5):
                    f1(x[s], y[s])
                for k, v in m1.model.named_variables().items():
                    arrays[f"{name}/{dev}/single/{k}"] = v.get_value()
    np.savez(os.path.join(OUT, f"{RANK}.npz"), **arrays)


def case_bucketing():
    """The MLP step on cpu, unbucketed, bucketed blocking and bucketed with overlap: its
    parameters after 5 steps (the test wants them bitwise equal), and the generated entry."""
    arrays, sources = {}, {}
    for tag, bb, ov in (("plain", 0, False), ("blocking", 300_000, False), ("overlap", 300_000, True)):
        m, f = _train("mlp", 32, "cpu", bb, ov)
        x, y = _global_batches(m, 5, 32 * WORLD)
        for s in range(5):
            f(x[s, RANK * 32:(RANK + 1) * 32], y[s, RANK * 32:(RANK + 1) * 32])
        for k, v in m.model.named_variables().items():
            arrays[f"{tag}/{k}"] = v.get_value()
        sources[tag] = f.source
    np.savez(os.path.join(OUT, f"{RANK}.npz"), **arrays)
    write_json(sources)


def case_compile_once():
    with dist.data_parallel():
        m = zoo.get("mlp", batch=16, seed=3, optimizer=optim.SGD(0.1))
    f = dist.compile_once(lambda: m.train_function("cpu"))
    dist.check_same(dist.fingerprint(f), "compiled training step")
    write_json({"graph_cache": f.report.info.get("graph_cache"), "c_cache": f.report.info.get("c_cache")})


def case_mismatch():
    kw = {"batch": 16, "dims": (784, 64 if RANK == 0 else 65, 10)}
    with dist.data_parallel():
        m = zoo.get("mlp", **kw)
    f = m.train_function("interp")
    try:
        dist.check_same(dist.fingerprint(f), "compiled training step")
        write_json({"error": None})
    except dist.DistributedError as e:
        write_json({"error": str(e)})


def case_fault():
    """Rank 1 dies (SIGKILL) or raises after its first step, while rank 0 goes on into the
    next step's allreduce: the job must end, not hang."""
    import signal
    how = sys.argv[3]
    m, f = _train("mlp", 16, "cpu")
    x, y = _global_batches(m, 50, 16 * WORLD)
    for s in range(50):
        f(x[s, RANK * 16:(RANK + 1) * 16], y[s, RANK * 16:(RANK + 1) * 16])
        if s == 1 and RANK == 1:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("a bad batch on purpose")
    write_json({"finished": True})


{"values": case_values, "gradients": case_gradients, "equivalence": case_equivalence,
 "bucketing": case_bucketing, "compile_once": case_compile_once, "mismatch": case_mismatch,
 "fault": case_fault}[CASE]()
