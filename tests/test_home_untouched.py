"""A test run writes nothing into the user's home: the compile cache is the run's own."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a test that compiles on the cpu through the environment's cache (no cache of its own)
CHILD_TEST = "tests/frontend/test_api_edges.py::test_out_of_range_labels_give_zero_rows_as_documented"


def _files(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


def test_a_run_writes_nothing_into_home(tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SYMFUSE_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          CHILD_TEST], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "1 passed" in out.stdout
    assert _files(home) == [] and not (home / ".cache").exists()
    # the run's own cache was made under TMPDIR and removed when the run ended
    assert _files(tmp) == [], _files(tmp)
