"""The API reference (docs/api, Sphinx autodoc over the public namespace) builds with
warnings as errors, and documents what a user calls: a docstring that is not valid
reST, or a public name that vanished from the pages, fails here and in CI."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx comes with the dev extra (pip install -e '.[dev]')")
    env = dict(os.environ, PYTHONPATH=ROOT, SYMFUSE_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          "-d", str(tmp_path / "doctrees"), os.path.join(ROOT, "docs", "api"), str(tmp_path / "html")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    pages = {}
    for name in ("symfuse", "symfuse.nn", "symfuse.distributed", "symfuse.onnx"):
        with open(tmp_path / "html" / f"{name}.html") as fh:
            pages[name] = fh.read()
    for ident in ("symfuse.tensor", "symfuse.function", "symfuse.grad", "symfuse.scan", "symfuse.export"):
        assert f'id="{ident}"' in pages["symfuse"], ident
    for ident in ("symfuse.nn.Dense", "symfuse.nn.fit", "symfuse.nn.data.digits", "symfuse.nn.zoo.get"):
        assert f'id="{ident}"' in pages["symfuse.nn"], ident
    assert 'id="symfuse.distributed.allreduce"' in pages["symfuse.distributed"]
    assert 'id="symfuse.onnx.load"' in pages["symfuse.onnx"]


MACHINE_PATHS = ("/work/", "/root/", "/home/", "/tmp/benchvenv")


def test_docs_and_scripts_name_no_directory_of_a_machine():
    """What a newcomer reads or runs speaks of the repository, not of where it was
    checked out on the machine that wrote it."""
    import glob
    files = [os.path.join(ROOT, f) for f in ("README.md", "CHANGELOG.md", "bench/README.md", "Makefile")]
    for pattern in ("docs/**/*.md", "docs/**/*.py", "bench/*.py", "scripts/*", "examples/**/*"):
        files += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    found = []
    for path in files:
        if not os.path.isfile(path):
            continue
        with open(path, errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                found += [f"{os.path.relpath(path, ROOT)}:{n}: {line.strip()}" for p in MACHINE_PATHS if p in line]
    assert len(files) > 20 and not found, found


def test_readme_shows_the_setup_and_keeps_the_numbers_short():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    assert ". .venv/bin/activate" in readme
    assert re.search(r"^pip install \.\s", readme, re.MULTILINE)
    assert "load_digits" in readme and "28x28" in readme and "shipped" in readme
    assert "docs/tutorial.md" in readme and "CHANGELOG.md" in readme
    performance = readme[readme.index("## Performance"):]
    assert len(performance.split()) < len(readme.split()) / 4, "the full account belongs in bench/README.md"
    with open(os.path.join(ROOT, "bench", "README.md")) as fh:
        assert "## Results: the full account" in fh.read()
