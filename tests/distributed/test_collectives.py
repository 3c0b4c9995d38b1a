"""Data-parallel training on MPI, run as real jobs of 2 and 3 ranks under mpiexec
(mpi_worker.py): the collectives' values (interp, cpu, and cuda-emu, where the host runs
them between launches) against numpy over every rank's input, their
gradients against central differences of the sum of the ranks' losses, a 2-rank step
against one rank with the whole batch, bucketing and overlap against the plain step
(bitwise), compiling once, and a job whose graphs differ or whose rank dies."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_worker.py")

mpi4py = pytest.importorskip("mpi4py", reason="MPI not installed: pip install 'symfuse[mpi]'")
from symfuse.distributed.launch import failed_ranks, find_mpiexec, launch  # noqa: E402


def _env(tmp_path):
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1",
                SYMFUSE_CACHE_DIR=os.environ.get("SYMFUSE_CACHE_DIR") or str(tmp_path / "cache"))


def run_job(tmp_path, case, ranks, *extra, timeout=600, check=True):
    out = tmp_path / f"{case}-{ranks}"
    out.mkdir()
    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, WORKER, case, str(out), *extra]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=timeout)
    proc.seconds = time.monotonic() - t0
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def _json(out, ranks):
    return [json.load(open(out / f"{r}.json")) for r in range(ranks)]


@pytest.mark.parametrize("ranks", [2, 3])
def test_collective_values_match_numpy_over_all_ranks(tmp_path, ranks):
    out, _ = run_job(tmp_path, "values", ranks)
    res = _json(out, ranks)
    for dt in ("float32", "float64", "int32"):
        xs = [np.array(r[f"{dt}/input"], dt) for r in res]
        total = sum(x.astype(np.float64) for x in xs)
        n = xs[0].shape[0] // ranks
        for r, got in enumerate(res):
            want = {"allreduce_sum": total, "allreduce_mean": total / ranks, "broadcast0": xs[0],
                    "broadcast_last": xs[-1], "reduce0": total if r == 0 else np.zeros_like(total),
                    "allgather": np.concatenate(xs), "reduce_scatter": total[r * n:(r + 1) * n],
                    "bucket_mean": 2 * total / ranks, "bucket_blocking": 3 * total / ranks}
            for dev in ("interp", "cpu", "cuda-emu"):
                names = [k.split("/")[2] for k in got if k.startswith(f"{dt}/{dev}/")]
                assert len(names) == (9 if dt != "int32" else 6)
                for name in names:
                    v = np.array(got[f"{dt}/{dev}/{name}"])
                    tol = 1e-5 if dt == "float32" else 1e-12 if dt == "float64" else 0
                    np.testing.assert_allclose(v, want[name], rtol=tol, atol=tol * 100,
                                               err_msg=f"rank {r} {dt} {dev} {name}")


def test_collective_gradients_match_finite_differences(tmp_path):
    ranks = 2
    out, _ = run_job(tmp_path, "gradients", ranks)
    for r, got in enumerate(_json(out, ranks)):
        names = [k[3:] for k in got if k.startswith("fd/")]
        assert len(names) == 9
        for name in names:
            fd = np.array(got[f"fd/{name}"])
            assert np.abs(fd).max() > 0.1 or name == "reduce0" and r != 0 or name == "broadcast0" and r != 0 \
                or name == "broadcast_last" and r != ranks - 1, (name, r, fd)
            for dev in ("interp", "cpu", "cuda-emu"):
                np.testing.assert_allclose(np.array(got[f"{dev}/{name}"]), fd, rtol=1e-6, atol=1e-7,
                                           err_msg=f"rank {r} {dev} d/dx {name}")


def test_two_ranks_equal_one_rank_with_the_whole_batch(tmp_path):
    ranks = 2
    out, _ = run_job(tmp_path, "equivalence", ranks)
    r0, r1 = (np.load(out / f"{r}.npz") for r in range(ranks))
    checked = 0
    for key in r0.files:
        if "/ranks/" not in key:
            continue
        single = key.replace("/ranks/", "/single/")
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=f"ranks disagree on {key}")
        np.testing.assert_allclose(r0[key], r0[single], rtol=1e-5, atol=1e-6, err_msg=key)
        checked += 1
    assert checked >= 3 * 6 + 2 * 8      # mlp on interp, cpu, cuda-emu; lenet on interp, cpu; every variable
    # the steps changed the parameters (a step that did nothing would also "agree")
    assert any(not np.allclose(r0[k], r1[k.replace("mlp/cpu", "mlp/interp")] * 0) for k in r0.files if "mlp/cpu" in k)


def test_bucketing_and_overlap_leave_the_step_bitwise_equal(tmp_path):
    ranks = 2
    out, _ = run_job(tmp_path, "bucketing", ranks)
    r0 = np.load(out / "0.npz")
    sources = _json(out, ranks)[0]
    for key in (k for k in r0.files if k.startswith("plain/")):
        for tag in ("blocking", "overlap"):
            np.testing.assert_array_equal(r0[key], r0[key.replace("plain/", tag + "/")], err_msg=f"{tag}: {key}")
    # the three steps are what they claim to be
    assert "MPI_Iallreduce" not in sources["plain"] and "sf_mpi_allreduce(" in sources["plain"]
    assert sources["blocking"].count("sf_mpi_allreduce(out0, out0") >= 2
    entry = sources["overlap"].split("void sf_entry", 1)[1]
    starts = [m.start() for m in re.finditer(r"L_\w*allreduce_bucket\w*\(", entry)]
    waits = [m.start() for m in re.finditer(r"sf_mpi_wait\(", entry)]
    assert len(starts) >= 2 and len(waits) == len(starts)
    # the first bucket's wait comes after other kernels ran: it overlaps
    between = entry[starts[0]:waits[0]]
    assert between.count(");") >= 3, between


def test_local_rank_zero_compiles_and_the_others_load_it(tmp_path):
    ranks = 2
    out, _ = run_job(tmp_path, "compile_once", ranks)
    res = _json(out, ranks)
    assert res[0]["graph_cache"] == "miss" and res[0]["c_cache"] == "miss"
    assert res[1]["graph_cache"] == "hit"


def test_ranks_with_different_graphs_are_refused(tmp_path):
    ranks = 2
    out, _ = run_job(tmp_path, "mismatch", ranks)
    for r in _json(out, ranks):
        assert r["error"] and "ranks [1]" in r["error"] and "same symfuse version and model" in r["error"]


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_failed_rank_ends_the_job_with_its_rank_named(tmp_path, how, capfd):
    ranks = 2
    t0 = time.monotonic()
    rc = launch([WORKER, "fault", str(tmp_path), how], ranks, timeout=300)
    elapsed = time.monotonic() - t0
    err = capfd.readouterr().err
    assert rc != 0
    assert elapsed < 120, elapsed          # ended by MPI, not by the launcher's timeout
    assert not (tmp_path / "0.json").exists()    # rank 0 never finished its 50 steps
    verdict = [line for line in err.splitlines() if "-rank job failed" in line]
    assert verdict, err[-2000:]
    if how == "kill":
        assert "rank 1: killed by signal: 9" in verdict[0], verdict
    else:
        assert "rank 1 of 2 failed with ValueError: a bad batch on purpose" in verdict[0], err[-3000:]


def test_failed_rank_lines_of_hydra_and_open_mpi_are_read():
    hydra = ("=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n=   RANK 1 PID 4242 RUNNING AT box\n"
             "=   KILLED BY SIGNAL: 9 (Killed)\n")
    ompi = "mpiexec noticed that process rank 3 with PID 77 on node n1 exited on signal 11 (Segmentation fault).\n"
    assert failed_ranks(hydra) == ["rank 1: killed by signal: 9 (killed)"]
    assert failed_ranks(ompi) == ["rank 3: exited on signal 11 (segmentation fault)"]


def test_symfuse_train_with_two_workers_reaches_the_single_process_accuracy(tmp_path):
    env = _env(tmp_path)
    args = ["mlp", "--epochs", "3", "--no-progress", "--seed", "1"]
    runs = {}
    for tag, extra in (("one", []), ("two", ["--workers", "2"])):
        p = subprocess.run([sys.executable, "-m", "symfuse", "train", *args, *extra], capture_output=True, text=True,
                           env=env, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        last = [line for line in p.stdout.splitlines() if line.startswith("epoch 3/3")]
        assert len(last) == 1, p.stdout[-2000:]        # rank 0 alone logs
        runs[tag] = float(re.search(r"test_accuracy (\S+)", last[0]).group(1))
    assert runs["one"] > 0.85
    assert runs["two"] >= runs["one"] - 0.02, runs


ROUND_TRIP = """
import symfuse as sf
from symfuse import distributed as dist
from symfuse.ir.printer import print_function
dist.init()
x = sf.tensor("x", (4, 3))
y = dist.average_gradients([x, x * 2.0], bucket_bytes=1 << 20, overlap=True)
outs = [y[0], y[1], dist.allgather(dist.broadcast(x, 0)), dist.reduce(x), dist.reduce_scatter(x),
        dist.allreduce(x, "mean")]
text = print_function(sf.function([x], outs, device="interp").source_function)
assert print_function(sf.ir.parse(text)) == text
print(text)
"""


def test_collectives_print_and_parse_back(tmp_path):
    out = subprocess.run([sys.executable, "-c", ROUND_TRIP], capture_output=True, text=True, env=_env(tmp_path),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for op in ("allreduce_bucket", "allgather", "broadcast", "reduce ", "reduce_scatter", "allreduce "):
        assert op in out.stdout, op
    assert 'overlap = true' in out.stdout and 'op = "mean"' in out.stdout
