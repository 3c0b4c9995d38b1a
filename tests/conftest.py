import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# A test run writes nothing into the user's compile cache (~/.cache/symfuse): unless
# SYMFUSE_CACHE_DIR names one, the run compiles into a private temporary cache,
# removed when the run ends. Set here, before symfuse is imported, so that every
# cache the run opens and every subprocess it starts (pytest-xdist's workers too,
# which then share it) sees it.
if not os.environ.get("SYMFUSE_CACHE_DIR"):
    _RUN_CACHE = tempfile.mkdtemp(prefix="symfuse-test-cache-")
    os.environ["SYMFUSE_CACHE_DIR"] = _RUN_CACHE
    atexit.register(shutil.rmtree, _RUN_CACHE, True)

import numpy as np
import pytest
from hypothesis import settings

# tests/ mirrors the package; a test module may use another's models and helpers
# (test_models_grad.lenet, test_ops_nn.grad_check) by module name from any folder
sys.path[:0] = [str(d) for d in sorted(Path(__file__).parent.iterdir())
                if d.is_dir() and d.name.isidentifier() and d.name not in ("fakes", "fuzz")]

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------- backend cross-check
# Every test of the symbolic core (issue 2) that evaluates a function on the
# interpreter also runs it on the compiled backends and asserts agreement
# (issue 3: cpu). The first CROSS_CHECK_PER_TEST functions of each test are
# checked (hypothesis tests build hundreds; each cpu compile costs a C compile).
import symfuse as _sf  # noqa: E402
from symfuse.runtime import function as _function_mod  # noqa: E402

CROSS_CHECK_MODULES = {"test_ops_core", "test_ops_nn", "test_random", "test_function", "test_models_grad",
                       "test_rewrites", "test_api_errors"}
CROSS_CHECK_DEVICES = tuple(os.environ.get("SYMFUSE_CROSS_CHECK", "cpu,cuda-emu").split(","))
CROSS_CHECK_PER_TEST = 3
_ORIGINAL_FUNCTION = _function_mod.function
_EXACT_KINDS = {"elementwise", "shape", "special"}


def _tolerance(fn, dtype):
    if dtype.kind not in "fc":
        return 0.0, 0.0
    if dtype == np.float64:
        return 1e-9, 1e-12
    exact = all(op.opdef.kind in _EXACT_KINDS for op in fn.ops)
    return (1e-5, 1e-6) if exact else (1e-4, 1e-5)


class CrossChecked:
    """An interpreter Executable whose calls are repeated on other devices,
    with the same shared-variable state, and compared."""

    def __init__(self, ref, build):
        self._ref, self._build, self._others = ref, build, None

    def __getattr__(self, name):
        return getattr(self._ref, name)

    def __call__(self, *args, **kwargs):
        shared = self._ref.shared
        before = [s._value.copy() for s in shared]
        out = self._ref(*args, **kwargs)
        after = [s._value.copy() for s in shared]
        if self._others is None:
            self._others = [(d, self._build(d)) for d in CROSS_CHECK_DEVICES]
        outs = out if isinstance(out, list) else [out]
        for device, f in self._others:
            for s, v in zip(shared, before):
                s._value = v.copy()
            got = f(*args, **kwargs)
            got = got if isinstance(got, list) else [got]
            new = [s._value for s in shared]
            for k, (a, b) in enumerate(list(zip(outs, got)) + list(zip(after, new))):
                a, b = np.asarray(a), np.asarray(b)
                assert a.shape == b.shape and a.dtype == b.dtype, (device, k, a.shape, b.shape, a.dtype, b.dtype)
                rtol, atol = _tolerance(self._ref.function, a.dtype)
                np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True,
                                           err_msg=f"{device} disagrees with interp on result {k}\n{self._ref.ir()}")
        for s, v in zip(shared, after):
            s._value = v
        return out


@pytest.fixture(autouse=True)
def _cross_check_backends(request, monkeypatch):
    if request.module.__name__.rsplit(".", 1)[-1] not in CROSS_CHECK_MODULES:
        yield
        return
    count = {"n": 0}
    current = _sf.function

    def function(inputs, outputs=None, *a, **kw):
        f = current(inputs, outputs, *a, **kw)
        if kw.get("device") != "interp" or count["n"] >= CROSS_CHECK_PER_TEST:
            return f
        count["n"] += 1
        opts = {k: v for k, v in kw.items() if k != "device"}
        return CrossChecked(f, lambda d: _ORIGINAL_FUNCTION(inputs, outputs, *a, device=d, **opts))

    monkeypatch.setattr(_sf, "function", function)
    yield
