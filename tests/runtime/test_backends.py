"""The backend registry: a device that cannot run here says what it lacks and how
to get it (issue 14, item 6), and backends are made on first use."""
import pytest

import symfuse as sf
from symfuse.runtime import backends, cpu


@pytest.mark.parametrize("lacks, needle", [("blas", r"OpenBLAS \(pip install scipy-openblas32\)"),
                                           ("cc", r"a C compiler")])
def test_unavailable_cpu_names_what_is_missing(monkeypatch, lacks, needle):
    if lacks == "blas":
        monkeypatch.setattr(cpu, "blas_available", lambda: False)
    else:
        monkeypatch.setattr(cpu, "find_compiler", lambda: None)
    x = sf.tensor("x", (2,))
    with pytest.raises(sf.DeviceUnavailable, match=rf"device 'cpu' is not available here: it needs .*{needle}"
                       r".*\(at .*test_backends.py:\d+\)"):
        sf.function([x], x + 1, device="cpu")


def test_unknown_device_lists_the_known_ones():
    x = sf.tensor("x", (2,))
    with pytest.raises(sf.DeviceUnavailable, match=r"unknown device 'tpu'; known: cpu, cuda, cuda-emu, interp"):
        sf.function([x], x + 1, device="tpu")


def test_backends_are_made_once_on_first_use():
    assert backends.get_backend("cpu") is backends.get_backend("cpu")
    assert backends.get_backend("cuda-emu").name == "cuda-emu"


def test_a_missing_cc_is_named_once_and_the_default_compiler_is_used(tmp_path):
    import os
    import subprocess
    import sys
    code = ("import logging, numpy as np, symfuse as sf; logging.basicConfig(); x = sf.tensor('x', (3,)); "
            "f = sf.function([x], x * 2, device='cpu'); g = sf.function([x], x * 3, device='cpu'); "
            "print(f(np.ones(3, np.float32)).tolist(), g(np.ones(3, np.float32)).tolist())")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, CC="no-such-cc-here", SYMFUSE_CACHE_DIR=str(tmp_path), PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2.0, 2.0, 2.0] [3.0, 3.0, 3.0]"
    assert out.stderr.count("$CC='no-such-cc-here' is not a program on PATH") == 1


def test_a_backend_supplies_hooks_and_the_base_runs_the_pipeline(monkeypatch, tmp_path):
    """Backend.compile runs lower -> fuse -> plan -> emit -> build -> load with the
    report's stages; a backend's lowering passes are the lowering database's passes
    carrying a tag it names, and only those."""
    import numpy as np
    from symfuse.compiler.passes.lowering import LOWERINGS, Lowering
    from symfuse.runtime.backend import Backend, Program
    from symfuse.runtime.interp import evaluate

    seen = []
    monkeypatch.setitem(LOWERINGS.passes, "test_lowering",
                        Lowering("test_lowering", lambda fn, counts: (seen.append(fn.name), fn)[1], 5,
                                 frozenset({"test_tag"})))

    class Run(Program):
        def __init__(self, fn):
            self.fn = fn

        def __call__(self, arrays):
            return evaluate(self.fn, arrays)

    class Toy(Backend):
        name = "toy"

        def lower_passes(self, options):
            return ("test_tag",)

        def emit(self, job):
            return f"{len(job.partition.groups)} groups, arena {job.layout.plan.arena_bytes} B"

        def build(self, job, emitted):
            with job.report.stage("toy build"):
                return emitted.upper()

        def load_built(self, job, emitted, built):
            assert built == emitted.upper()
            return Run(job.fn)

    from symfuse.runtime import backends as registry
    monkeypatch.setitem(registry.BACKENDS, "toy", Toy())
    x = sf.tensor("x", (4, 3))
    f = sf.function([x], sf.tanh(x).sum(axis=1) * 2.0, device="toy")
    xv = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    np.testing.assert_allclose(f(xv), np.tanh(xv).sum(axis=1) * 2.0, rtol=1e-6)
    names = [s.name for s in f.report.stages]
    order = ["test_lowering", "fusion", "memory plan", "codegen", "toy build", "load"]
    assert [n for n in names if n in order] == order and seen == [f.function.name]
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))      # a compile, not a graph-cache hit
    g = sf.function([x], sf.exp(x), device="cpu")     # the cpu names "blas" only
    assert "test_lowering" not in {s.name for s in g.report.stages} and "blas" in {s.name for s in g.report.stages}
