"""Parallel builds: a function's kernels split into units compiled by parallel
compiler processes (cpu: gcc, then one link) or NVRTC threads (cuda). The
split must change nothing but compile time: same results as one unit and as
the interpreter, every kernel found in the unit that holds it."""
import os

import numpy as np
import pytest

import symfuse as sf
from symfuse.codegen import c_program
from symfuse.runtime import cpu as cpu_backend
from symfuse.runtime import cuda as cuda_backend


def _graph():
    rng = np.random.default_rng(5)
    W1 = sf.shared(rng.normal(0, 0.3, (20, 16)).astype(np.float32), name="W1")
    W2 = sf.shared(rng.normal(0, 0.3, (16, 4)).astype(np.float32), name="W2")
    x = sf.tensor("x", (12, 20))
    h = sf.tanh(x @ W1) * sf.sigmoid(x @ W1 + 1.0)
    loss = sf.log_softmax(h @ W2).max(axis=1).sum() + (h * h).mean()
    g1, g2 = sf.grad(loss, [W1, W2])
    return [x], [loss, h], [(W1, W1 - 0.05 * g1), (W2, W2 - 0.05 * g2)], rng.normal(size=(12, 20)).astype(np.float32)


def _run(device, **kw):
    inputs, outs, ups, xv = _graph()
    f = sf.function(inputs, outs, updates=ups, device=device, **kw)
    res = [f(xv) for _ in range(3)]
    return f, res, [s.get_value() for s, _ in ups]


def test_cpu_parallel_units_agree_with_one_unit_and_the_interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    _, ref, ref_w = _run("interp")
    _, one, one_w = _run("cpu")
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "split"))   # a fresh cache: no graph-cache hit
    monkeypatch.setattr(c_program, "UNIT_MIN_CHARS", 1)        # split whatever there is
    monkeypatch.setattr(cpu_backend, "_workers", lambda: 3)
    f, many, many_w = _run("cpu")
    note = next(s.note for s in f.report.stages if s.name == "c compile")
    assert "3 parallel units" in note and f.report.info["graph_cache"] == "miss", note
    for a, b, c in zip(ref_w + [o for call in ref for o in call], one_w + [o for call in one for o in call],
                       many_w + [o for call in many for o in call]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, b, rtol=1e-6, atol=1e-7)   # the same kernels, only built differently


def test_cpu_split_balances_by_source_length():
    class K:
        def __init__(self, n):
            self.source = "x" * n
    ks = [K(n) for n in (9000, 8000, 5000, 4000, 1000)]
    units = c_program.split_units(ks, workers=2)
    assert len(units) == 2 and sorted(map(len, units)) == [2, 3]
    loads = [sum(len(k.source) for k in u) for u in units]
    assert abs(loads[0] + c_program.ENTRY_CHARS - loads[1]) <= 9000
    assert c_program.split_units(ks[-1:], workers=8) == [ks[-1:]]      # too little to split


@pytest.mark.skipif(not cuda_backend.CudaBackend().available(), reason="NVRTC not installed")
def test_cuda_units_hold_their_kernels(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cuda_backend, "UNIT_MIN_COST", 1)
    monkeypatch.setattr(cuda_backend, "_workers", lambda: 3)
    inputs, outs, ups, _ = _graph()
    f = sf.function(inputs, outs, updates=ups, device="cuda", arch="sm_90")
    prog = f._run
    assert f.report.info["nvrtc_units"] == 3 and len(prog.images) == 3
    assert all(im[:4] == b"\x7fELF" for im in prog.images)
    for k in f.kernels:     # each kernel's CUBIN is the unit that defines it, and only that one
        holders = [i for i, im in enumerate(prog.images) if k.launches[0].kernel.encode() + b"\0" in im]
        if k.in_library:    # launched from the precompiled library: in no unit, its CUBIN the library's
            assert holders == [] and k.name not in prog.unit_of
            assert k.cubin is prog.library.image(k.launches[0].kernel)
            assert k.launches[0].kernel.encode() + b"\0" in k.cubin
        else:
            assert holders == [prog.unit_of[k.name]] and k.cubin is prog.images[holders[0]]
        assert all(r is not None and r.spill_stores == 0 for r in k.resources.values())
    assert any(k.in_library for k in f.kernels) and sum(not k.in_library for k in f.kernels) >= 3


def test_cpu_units_use_the_precompiled_prelude(monkeypatch, tmp_path):
    """Every unit starts with the one prelude header; gcc finds its precompiled
    form (made once with the units' own flags) and reads it instead of the text."""
    import subprocess
    from symfuse.runtime import c_runtime
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    cc, ccver = cpu_backend.find_compiler()
    rt = c_runtime.runtime_library(cc, ccver)
    if rt is None:
        pytest.skip("this compiler builds no runtime library (clang): units include the runtime whole")
    flags = tuple(cpu_backend._compile_flags(rt))
    prelude, _ = c_runtime.unit_prelude(rt, cc, flags)
    assert prelude and os.path.exists(os.path.join(prelude, "sf_unit.h.gch"))
    f, _, _ = _run("cpu")
    assert f.source.split("*/", 1)[1].lstrip().startswith('#include "sf_unit.h"\n')   # first token: the prelude
    src = tmp_path / "probe.c"
    src.write_text(f.source)
    proc = subprocess.run([cc, "-c", str(src), "-o", str(tmp_path / "probe.o"), "-H", "-Winvalid-pch",
                           "-I", c_runtime.INCLUDE_DIR, "-I", prelude, *flags], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    used = [ln for ln in proc.stderr.splitlines() if ln.startswith("! ")]
    assert used and used[0].endswith("sf_unit.h.gch"), proc.stderr[:2000]
