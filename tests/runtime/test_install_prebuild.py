"""Installing builds the C runtime library (setup.py -> rt_recipe.prebuild) under the
key that the run-time lookup computes, so the first compile after ``pip install``
finds it instead of spending ~5 s building it."""
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from symfuse.runtime import rt_recipe
from symfuse.runtime.c_runtime import header_bytes
from symfuse.runtime.toolchain import blas_lib_dir, find_compiler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMPILE_ONCE = """
import json, sys
import numpy as np
import symfuse as sf
x = sf.tensor("x", (4, 3))
w = sf.shared(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
f = sf.function([x], sf.relu(x @ w), device="cpu")
rows = [[s.name, s.note] for s in f.report.stages]
print(json.dumps({"rows": rows, "out": f(np.ones((4, 3), np.float32)).tolist()}))
"""


def _gcc():
    found = find_compiler()
    if found is None or "clang" in found[1].lower():
        pytest.skip("the runtime library needs gcc (-aux-info); this machine's compiler is " + repr(found))
    return found


def _expected_key(version):
    return rt_recipe.library_key(header_bytes(), version, rt_recipe.cpu_identity())


def test_prebuilt_library_is_found_by_the_first_compile(tmp_path):
    _, version = _gcc()
    package = tmp_path / "symfuse"
    shutil.copytree(os.path.join(ROOT, "symfuse", "templates"), package / "templates")
    path = rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None)
    assert path is not None
    assert os.path.basename(os.path.dirname(path)) == _expected_key(version)
    built = os.stat(path).st_mtime_ns
    # the run path is the installed package's sibling, not this build's OpenBLAS directory
    runpath = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    assert "$ORIGIN/../../../scipy_openblas32/lib" in runpath and blas_lib_dir() not in runpath

    env = dict(os.environ, SYMFUSE_BUILD_DIR=str(package / "_build"), SYMFUSE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", COMPILE_ONCE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    builds = [detail for name, detail in result["rows"] if name == "runtime library build"]
    assert not [d for d in builds if d.endswith(rt_recipe.LIBRARY_NAME)], builds
    expect = np.maximum(np.ones((4, 3), np.float32) @ np.arange(6, dtype=np.float32).reshape(3, 2), 0)
    np.testing.assert_array_equal(np.array(result["out"], np.float32), expect)
    assert os.stat(path).st_mtime_ns == built
    # a second prebuild (pip install -e again) keeps the sealed library
    assert rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None) == path
    assert os.stat(path).st_mtime_ns == built


def test_damaged_prebuilt_library_is_rebuilt_not_loaded(tmp_path):
    _gcc()
    package = tmp_path / "symfuse"
    shutil.copytree(os.path.join(ROOT, "symfuse", "templates"), package / "templates")
    path = rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None)
    with open(path, "r+b") as fh:
        fh.seek(200)
        fh.write(b"\0" * 16)
    assert rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None) == path
    with open(path, "rb") as fh, open(path + ".sha256") as seal:
        import hashlib
        assert hashlib.sha256(fh.read()).hexdigest() == seal.read().strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    _gcc()
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    # a copy without build outputs: setuptools builds in the source tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "_build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".hypothesis"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = (tmp_path / "dist").glob("symfuse-*.whl")
    return path


def test_wheel_carries_the_library_under_the_runtime_key(wheel):
    _, version = _gcc()
    names = zipfile.ZipFile(wheel).namelist()
    key = _expected_key(version)
    for name in (rt_recipe.LIBRARY_NAME, rt_recipe.API_HEADER):
        assert f"symfuse/_build/{key}/{name}" in names
        assert f"symfuse/_build/{key}/{name}.sha256" in names
    # the precompiled unit prelude beside it, under the key the run time computes
    from symfuse.runtime.c_runtime import header_bytes as hb
    from symfuse.runtime.toolchain import find_compiler as fc
    unit = rt_recipe.prelude_key(hb(), fc()[0], key)
    assert f"symfuse/_build/{key}/unit-{unit}/sf_unit.h.gch" in names
    # and Jinja's compiled templates, one per template
    templates = [n for n in names if n.startswith("symfuse/templates/") and n.endswith(".j2")]
    jinja = [n for n in names if n.startswith("symfuse/_build/jinja/__jinja2_")]
    assert templates and len(jinja) == len(templates)
    assert not [n for n in names if "/_build/" in n and f"/_build/{key}/" not in n and "/_build/jinja/" not in n]


COMPILE_EVERYTHING = """
import sys
import numpy as np
import symfuse as sf
x = sf.tensor("x", (4, 3))
w = sf.shared(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
y = sf.softmax(sf.relu(x @ w))
f = sf.function([x], y, device="cpu")
f(np.ones((4, 3), np.float32))
sf.export(f, sys.argv[1], name="tiny")
g = sf.function([x], y, device="cuda-emu")
np.testing.assert_allclose(g(np.ones((4, 3), np.float32)), f(np.ones((4, 3), np.float32)), rtol=1e-5)
print(sf.__file__)
"""


def _tree(d):
    return sorted(os.path.relpath(os.path.join(r, n), d) for r, _, names in os.walk(d) for n in names)


def test_run_time_builds_nothing_into_the_installation(tmp_path):
    """What a compile, an export and the CUDA emulator build at run time (the unit
    prelude, Jinja's bytecode, the export runtime, the CUDA library) goes into the
    compile cache: the package's ``_build`` keeps exactly what the install put there,
    so ``pip uninstall`` (which removes what the wheel's RECORD lists) removes it all."""
    _gcc()
    package = tmp_path / "symfuse"
    shutil.copytree(os.path.join(ROOT, "symfuse", "templates"), package / "templates")
    assert rt_recipe.prebuild(str(package), blas_lib_dir(), log=lambda m: None) is not None
    installed = _tree(package / "_build")
    assert len(installed) == 4, installed          # library and API header, each with its seal
    cache = tmp_path / "cache"
    env = dict(os.environ, SYMFUSE_BUILD_DIR=str(package / "_build"), SYMFUSE_CACHE_DIR=str(cache),
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", COMPILE_EVERYTHING, str(tmp_path / "export")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _tree(package / "_build") == installed
    built = _tree(cache)
    for prefix in ("runtime/unit-", "runtime/export-", "runtime/cuda-", "jinja/"):
        assert any(p.startswith(prefix) for p in built), (prefix, built)


def test_without_the_install_time_library_it_is_built_into_the_cache(tmp_path):
    _gcc()
    package = tmp_path / "symfuse" / "_build"
    env = dict(os.environ, SYMFUSE_BUILD_DIR=str(package), SYMFUSE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", COMPILE_ONCE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert not package.exists()
    assert glob.glob(str(tmp_path / "cache" / "runtime" / "*" / rt_recipe.LIBRARY_NAME))


def test_wheel_metadata_has_the_spdx_license_and_its_file(wheel):
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        text = z.read(meta).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in z.namelist())
    assert "License-Expression: MIT" in text and "License-File: LICENSE" in text
    assert "Classifier: License" not in text        # PEP 639: the expression replaces the classifier


def test_uninstall_after_compiling_leaves_no_package_directory(wheel, tmp_path):
    """A real installation: the wheel into a fresh environment (its dependencies
    taken from this one), a compile, an export and the emulator run from it, then
    ``pip uninstall``: the package directory goes, with nothing built at run time
    left in it."""
    import sysconfig
    import venv
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = str(env_dir / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # numpy, jinja2, ... from this environment, after the fresh one's own site-packages
    with open(os.path.join(site, "_deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", python]
    out = subprocess.run([*pip, "install", "--no-deps", "-q", str(wheel)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    package = os.path.join(site, "symfuse")
    record = next(p for p in os.listdir(site) if p.startswith("symfuse-") and p.endswith(".dist-info"))
    with open(os.path.join(site, record, "RECORD")) as fh:
        listed = sorted(line.split(",")[0][len("symfuse/_build/"):] for line in fh
                        if line.startswith("symfuse/_build/"))
    assert listed and _tree(os.path.join(package, "_build")) == listed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SYMFUSE_BUILD_DIR")}
    env["SYMFUSE_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run([python, "-c", COMPILE_EVERYTHING, str(tmp_path / "export")], capture_output=True,
                         text=True, env=env, timeout=900, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == os.path.join(package, "__init__.py")
    assert _tree(os.path.join(package, "_build")) == listed
    out = subprocess.run([*pip, "uninstall", "-y", "symfuse"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not os.path.exists(package), _tree(package)


def test_a_one_time_build_is_reported_by_one_compile_only(monkeypatch):
    """The runtime library and unit prelude are built once per process: a later
    compile's report must not show a 0 ms 'runtime library build' stage."""
    from symfuse.compiler.report import CompileReport
    from symfuse.runtime import cpu
    monkeypatch.setattr(cpu, "_REPORTED_BUILDS", set())
    first, second = CompileReport("a"), CompileReport("b")
    assert cpu._first_report_of("/lib/rt.so", first)
    assert not cpu._first_report_of("/lib/unit-x", first)      # one stage per report
    assert not cpu._first_report_of("/lib/unit-x", second)     # and none in later compiles
