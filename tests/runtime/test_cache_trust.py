"""The compile cache as a trust boundary (issue 20, item 1; docs/cache.md).

Each attack plants code where symfuse would find it -- a shared object with a
constructor that leaves a marker file, a pickle whose loading would do the same
-- and asserts that a compile in a fresh process neither runs it nor fails:
it compiles without the planted artefact and gives correct results."""
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import pytest

from symfuse.runtime import plain
from symfuse.runtime.cache import KEY_FILE, DiskCache, cache_key

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = 65534

CHILD = textwrap.dedent("""
    import json, logging, sys
    import numpy as np
    import symfuse as sf
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    x = sf.tensor("x", (4, 6)); W = sf.tensor("W", (6, 3))
    loss = (sf.tanh(x @ W) ** 2).sum()
    f = sf.function([x, W], [loss, sf.grad(loss, W)], device=sys.argv[1])
    rng = np.random.default_rng(0)
    xv, Wv = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    l, g = f(xv, Wv)
    t = np.tanh(xv @ Wv)
    ok = np.allclose(l, (t ** 2).sum(), rtol=1e-4) and np.allclose(g, xv.T @ (2 * t * (1 - t * t)), rtol=1e-4, atol=1e-5)
    print(json.dumps({"ok": bool(ok), "graph_cache": f.report.info.get("graph_cache")}))
""")


def run_child(cache_dir, device="cpu"):
    env = dict(os.environ, SYMFUSE_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", CHILD, device], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.fixture(scope="module")
def evil_so(tmp_path_factory):
    """A shared object whose constructor creates the file named by $SF_PWNED."""
    d = tmp_path_factory.mktemp("evil")
    src = d / "evil.c"
    src.write_text('#include <stdlib.h>\n#include <stdio.h>\n'
                   '__attribute__((constructor)) static void pwn(void) {\n'
                   '  const char* p = getenv("SF_PWNED"); FILE* f = fopen(p ? p : "/tmp/sf-pwned", "w");\n'
                   '  if (f) { fputs("pwned", f); fclose(f); } }\n')
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(d / "evil.so")], check=True)
    return d / "evil.so"


@pytest.fixture
def warm_cache(tmp_path):
    """A cache that one compile has filled (graph entry, library, its seal)."""
    d = tmp_path / "cache"
    first, _ = run_child(d)
    assert first["ok"] and first["graph_cache"] == "miss"
    return d


def _pwned(tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    monkeypatch.setenv("SF_PWNED", str(marker))
    return marker


def test_replaced_library_is_not_loaded(warm_cache, evil_so, tmp_path, monkeypatch):
    marker = _pwned(tmp_path, monkeypatch)
    libs = glob.glob(str(warm_cache / "cpu-lib" / "*" / "*.so"))
    assert libs
    for lib in libs:              # the attacker keeps the sidecar: the seal no longer matches
        shutil.copy(evil_so, lib)
    out, err = run_child(warm_cache)
    assert out["ok"] and not marker.exists()
    assert "does not match its authentication code" in err


def test_library_with_a_forged_seal_is_not_loaded(warm_cache, evil_so, tmp_path, monkeypatch):
    """An unkeyed checksum is no protection: whoever writes the file writes its sum."""
    import hashlib
    marker = _pwned(tmp_path, monkeypatch)
    for lib in glob.glob(str(warm_cache / "cpu-lib" / "*" / "*.so")):
        shutil.copy(evil_so, lib)
        with open(lib + ".mac", "w") as fh:
            fh.write(hashlib.sha256(evil_so.read_bytes()).hexdigest())
        with open(lib + ".sha256", "w") as fh:
            fh.write(hashlib.sha256(evil_so.read_bytes()).hexdigest())
    out, _ = run_child(warm_cache)
    assert out["ok"] and not marker.exists()


def test_graph_entries_are_never_unpickled(warm_cache, tmp_path, monkeypatch):
    """Even an entry that passes authentication (written with the cache's own key)
    is parsed as plain data: a pickle in it is a miss, not code."""
    marker = _pwned(tmp_path, monkeypatch)

    class Pwn:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    cache = DiskCache(str(warm_cache))
    entries = glob.glob(str(warm_cache / "graph" / "*" / "*"))
    assert entries
    for p in entries:
        cache.put("graph", os.path.basename(p), pickle.dumps({"x": Pwn()}))
    out, err = run_child(warm_cache)
    assert out["ok"] and out["graph_cache"] == "miss" and not marker.exists()
    assert "unusable" in err


def test_entry_without_the_key_is_rejected(warm_cache):
    """Someone who can write an entry but does not hold the key cannot forge it."""
    cache = DiskCache(str(warm_cache))
    key = cache_key("planted")
    cache.put("graph", key, b"{}")
    other = tmp = warm_cache.parent / "other"
    DiskCache(str(tmp)).put("graph", key, b'{"forged": true}')       # same layout, another key
    shutil.copy(other / "graph" / key[:2] / key, warm_cache / "graph" / key[:2] / key)
    assert DiskCache(str(warm_cache)).get("graph", key) is None


def test_entry_moved_to_another_key_is_rejected(tmp_path):
    """The code binds namespace and key: an entry renamed onto another key is a miss."""
    cache = DiskCache(str(tmp_path / "c"))
    a, b = cache_key("a"), cache_key("b")
    cache.put("graph", a, b"entry of a")
    os.makedirs(os.path.dirname(cache.path("graph", b)), exist_ok=True)
    shutil.copy(cache.path("graph", a), cache.path("graph", b))
    assert cache.get("graph", b) is None and cache.get("graph", a) == b"entry of a"


@pytest.mark.parametrize("where", ["namespace", "subdir", "entry", "key"])
def test_symlinks_inside_the_cache_are_refused(tmp_path, where):
    root = tmp_path / "c"
    cache = DiskCache(str(root))
    key = cache_key("k")
    cache.put("graph", key, b"mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    if where == "namespace":
        shutil.move(str(root / "graph"), str(outside / "graph"))
        os.symlink(outside / "graph", root / "graph")
    elif where == "subdir":
        shutil.move(str(root / "graph" / key[:2]), str(outside / "sub"))
        os.symlink(outside / "sub", root / "graph" / key[:2])
    elif where == "entry":
        shutil.move(cache.path("graph", key), str(outside / "entry"))
        os.symlink(outside / "entry", cache.path("graph", key))
    else:
        shutil.move(str(root / KEY_FILE), str(outside / "key"))
        os.symlink(outside / "key", root / KEY_FILE)
    assert DiskCache(str(root)).get("graph", key) is None


def test_key_file_must_be_private(tmp_path):
    root = tmp_path / "c"
    key = cache_key("k")
    DiskCache(str(root)).put("graph", key, b"mine")
    os.chmod(root / KEY_FILE, 0o644)
    c = DiskCache(str(root))
    assert c.get("graph", key) is None and c.put("graph", key, b"x") is None and not c.readable


def test_a_refused_cache_compiles_without_caching_and_leaves_its_tree_unused(tmp_path, evil_so, monkeypatch):
    """runtime/ and jinja/ under a refused directory are not used either."""
    marker = _pwned(tmp_path, monkeypatch)
    root = tmp_path / "open"
    run_child(root)
    for lib in glob.glob(str(root / "**" / "*.so"), recursive=True):
        shutil.copy(evil_so, lib)
    os.chmod(root, 0o777)
    out, err = run_child(root)
    assert out["ok"] and out["graph_cache"] in (None, "miss") and not marker.exists()
    assert err.count("refusing") == 1       # one warning per process


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_directory_of_another_user_is_refused(tmp_path, evil_so, monkeypatch, mode):
    """A cache directory the attacker made (and owns) is not used, even when it
    looks private: its owner could change anything in it at any time."""
    marker = _pwned(tmp_path, monkeypatch)
    root = tmp_path / "theirs"
    run_child(root)
    for lib in glob.glob(str(root / "**" / "*.so"), recursive=True):
        shutil.copy(evil_so, lib)
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            os.chown(os.path.join(dirpath, n), NOBODY, NOBODY)
    os.chown(root, NOBODY, NOBODY)
    os.chmod(root, mode)
    out, err = run_child(root)
    assert out["ok"] and not marker.exists() and "refusing" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_entry_owned_by_another_user_is_refused(warm_cache):
    cache = DiskCache(str(warm_cache))
    key = cache_key("theirs")
    cache.put("graph", key, b"{}")
    os.chown(cache.path("graph", key), NOBODY, NOBODY)
    assert DiskCache(str(warm_cache)).get("graph", key) is None


def test_plain_entries_round_trip_and_refuse_code():
    import numpy as np
    from symfuse.compiler.kernel_info import KernelInfo
    k = KernelInfo("E_1", "pointwise", ["add"], ["add f32[2]"], "src", 2, False, 8, 8, None)
    value = {"t": (1, 2.5, "s"), "b": b"\x00\xff", "dt": np.dtype("float32"), "sc": np.int32,
             "nd": np.arange(6, dtype=np.int64).reshape(2, 3), "k": [k], 3: None, "$x": True,
             "f": float("inf"), "np": np.float32(1.5)}
    back = plain.loads(plain.dumps(value))
    assert back["t"] == (1, 2.5, "s") and back["b"] == b"\x00\xff" and back["dt"] == np.float32
    assert back["sc"] is np.int32 and back[3] is None and back["$x"] is True and back["f"] == float("inf")
    np.testing.assert_array_equal(back["nd"], value["nd"])
    assert back["k"] == [k] and back["np"] == np.float32(1.5) and type(back["np"]) is np.float32
    with pytest.raises(plain.PlainDataError, match="is not plain data"):
        plain.dumps({"f": open})
    for bad in (b'{"$dtype": "O"}', b'{"$dc": ["os.system", {}]}', b'{"$nd": ["<f4", [3], "AAAA"]}',
                b'{"$zz": 1}', b"\xff", b"[" * 100000):
        with pytest.raises(plain.PlainDataError):
            plain.loads(bad)


def test_replaced_emulator_library_is_not_loaded(tmp_path, evil_so, monkeypatch):
    marker = _pwned(tmp_path, monkeypatch)
    d = tmp_path / "cache"
    first, _ = run_child(d, "cuda-emu")
    assert first["ok"]
    libs = glob.glob(str(d / "cuda-emu" / "*" / "*.so"))
    assert libs
    for lib in libs:
        shutil.copy(evil_so, lib)
    out, err = run_child(d, "cuda-emu")
    assert out["ok"] and not marker.exists()


def _second_user() -> int | None:
    """uid of a second local user for the attacker's side (created once; root only)."""
    import pwd
    try:
        return pwd.getpwnam("sfattacker").pw_uid
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        return None
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "sfattacker"],
                       capture_output=True)
    if r.returncode != 0:
        return None
    return pwd.getpwnam("sfattacker").pw_uid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a second user")
def test_cache_prepared_by_another_user_is_refused(tmp_path, evil_so, monkeypatch):
    """Another local user makes the cache directory first (as a shared /tmp allows),
    0755 so that it looks safe, and plants a shared object where symfuse would look:
    the victim's compile refuses the directory and runs nothing from it."""
    uid = _second_user()
    if uid is None:
        pytest.skip("cannot create a second user here")
    import tempfile
    from pathlib import Path
    marker = _pwned(tmp_path, monkeypatch)
    shared = Path(tempfile.mkdtemp(prefix="sf-shared-", dir="/tmp"))   # pytest's tmp_path is private to root
    try:
        os.chmod(shared, 0o1777)                      # like /tmp itself
        shutil.copy(evil_so, shared / "evil.so")
        os.chmod(shared / "evil.so", 0o644)
        plant = textwrap.dedent(f"""
            import os, shutil
            root = {str(shared / 'cache')!r}
            for sub in ("cpu-lib/00", "runtime", "jinja", "graph/00"):
                os.makedirs(os.path.join(root, sub), mode=0o755, exist_ok=True)
            shutil.copy({str(shared / 'evil.so')!r}, os.path.join(root, "cpu-lib", "00", "planted.so"))
            os.chmod(root, 0o755)
        """)
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        out = subprocess.run([python, "-c", plant], capture_output=True, text=True, cwd="/",
                             preexec_fn=lambda: (os.setgid(uid), os.setuid(uid)))
        assert out.returncode == 0, out.stderr
        assert os.stat(shared / "cache").st_uid == uid
        result, err = run_child(shared / "cache")
        assert result["ok"] and not marker.exists()
        assert "refusing" in err and str(shared / "cache") in err
    finally:
        shutil.rmtree(shared, ignore_errors=True)
