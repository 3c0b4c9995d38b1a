"""A plain ``pip install symfuse`` (no extras) runs every README command that names
no extra: what ``symfuse train`` imports (the digits, the progress bar) is a base
dependency or ships in the package, and the packaging metadata is what PEP 639 asks."""
import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _f:
    PYPROJECT = tomllib.load(_f)

# distribution name -> the module it installs, where they differ
IMPORT_NAME = {"scikit-learn": "sklearn", "cuda-bindings": "cuda", "nvidia-cuda-nvrtc": "nvidia",
               "nvidia-cuda-nvdisasm": "nvidia", "mpich": None, "jaxlib": None}


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def extra_only_modules() -> set[str]:
    """Modules that only an extra installs: hidden to play a plain install."""
    project = PYPROJECT["project"]
    base = {_name(d) for d in project["dependencies"]}
    names = {_name(d) for deps in project["optional-dependencies"].values() for d in deps} - base
    names = {n for n in names if not n.startswith("symfuse")}
    return {IMPORT_NAME.get(n, n.replace("-", "_")) for n in names} - {None}


PLAIN_TRAIN = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None          # as if only the base dependencies were installed
from symfuse.cli import main
main(["train", "mlp", "--epochs", "1", "--batch", "64"])
"""


def test_extras_cover_what_a_plain_install_lacks():
    hidden = extra_only_modules()
    assert {"sklearn", "scipy", "torch", "onnx", "hypothesis", "pytest"} <= hidden
    assert "tqdm" not in hidden


def test_train_runs_with_a_progress_bar_on_a_plain_install(tmp_path):
    code = PLAIN_TRAIN.format(hidden=sorted(extra_only_modules()))
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    # tqdm's bar (a base dependency), not the text fallback used when tqdm is missing
    assert re.search(r"\d+%\|", out.stderr), out.stderr[-2000:]
    assert re.search(r"accuracy|acc", out.stdout + out.stderr, re.IGNORECASE)


def test_license_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE")) as fh:
        text = fh.read()
    assert text.startswith("MIT License") and "symfuse contributors" in text
    # setuptools understands an SPDX string from 77 on; older ones reject it
    requires = PYPROJECT["build-system"]["requires"]
    (setuptools,) = [r for r in requires if _name(r) == "setuptools"]
    assert int(re.search(r">=\s*(\d+)", setuptools).group(1)) >= 77


def test_console_script_exists():
    import importlib
    for name, target in PYPROJECT["project"]["scripts"].items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def _make_dry_run(target):
    import shutil
    import pytest
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    out = subprocess.run(["make", "-n", "-C", ROOT, target], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_clean_removes_what_an_editable_install_built():
    assert "symfuse/_build" in _make_dry_run("clean")


def test_make_demo_says_how_to_activate_the_environment():
    assert ".venv/bin/activate" in _make_dry_run("demo")
