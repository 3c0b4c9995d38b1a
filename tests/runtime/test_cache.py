"""Disk cache: round trips, corruption handling, unusable directories (made
meaningful when the tests run as root, where chmod does not stop writes),
concurrent writers in separate processes, LRU pruning, size parsing."""
import logging
import multiprocessing
import os
import stat

import pytest

from symfuse.runtime import cache as cache_mod
from symfuse.runtime import toolchain
from symfuse.runtime.cache import DiskCache, cache_key, parse_size

NS = "test"


@pytest.fixture
def cache(tmp_path):
    return DiskCache(str(tmp_path / "cache"))


def test_round_trip(cache, tmp_path):
    key = cache_key("source", b"\x00flags")
    assert cache.get(NS, key) is None
    p = cache.put(NS, key, b"payload \x00\xff")
    assert p == cache.path(NS, key) == str(tmp_path / "cache" / NS / key[:2] / key)
    assert cache.get(NS, key) == b"payload \x00\xff"
    assert cache.put(NS, key, b"") and cache.get(NS, key) == b""
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes, cache.stats.corrupt) == (2, 1, 2, 0)
    # private: the root is created 0o700 and entries are not readable by others
    assert stat.S_IMODE(os.stat(cache.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0
    assert DiskCache(cache.root).get(NS, key) == b""          # another instance, same disk


def test_default_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "env"))
    assert DiskCache().root == str(tmp_path / "env")
    assert os.path.isdir(tmp_path / "env")


def test_key_separation(cache):
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("abc") != cache_key("ab", "c") != cache_key("abc", "")
    assert cache_key("x") == cache_key(b"x") and len(cache_key()) == 64
    k1, k2 = cache_key("one"), cache_key("two")
    cache.put(NS, k1, b"1")
    cache.put(NS, k2, b"2")
    cache.put("other", k1, b"3")
    assert (cache.get(NS, k1), cache.get(NS, k2), cache.get("other", k1)) == (b"1", b"2", b"3")
    for bad in ("../x", "a/b", "", "."):
        with pytest.raises(ValueError):
            cache.path(bad, k1)
        with pytest.raises(ValueError):
            cache.get(NS, bad)


def _damage(path, how):
    data = open(path, "rb").read()
    if how == "truncate":
        data = data[:len(data) - 5]
    elif how == "truncate-header":
        data = data[:10]
    elif how == "flip-payload":
        data = data[:-1] + bytes([data[-1] ^ 1])
    elif how == "flip-magic":
        data = b"X" + data[1:]
    elif how == "version":
        data = data[:4] + b"\x00\x63" + data[6:]
    open(path, "wb").write(data)


@pytest.mark.parametrize("how", ["truncate", "truncate-header", "flip-payload", "flip-magic", "version"])
def test_corrupt_entry_is_a_logged_miss(cache, caplog, how):
    key = cache_key(how)
    p = cache.put(NS, key, b"x" * 1000)
    _damage(p, how)
    with caplog.at_level(logging.WARNING, logger="symfuse.cache"):
        assert cache.get(NS, key) is None
    assert len(caplog.records) == 1 and p in caplog.records[0].getMessage()
    assert cache.stats.corrupt == 1 and not os.path.exists(p)      # removed
    assert cache.put(NS, key, b"fresh") == p and cache.get(NS, key) == b"fresh"


def test_unreadable_entry_is_a_logged_miss(cache, caplog):
    key = cache_key("dir")
    os.makedirs(cache.path(NS, key))        # a directory where the file should be: open() fails
    with caplog.at_level(logging.WARNING, logger="symfuse.cache"):
        assert cache.get(NS, key) is None
    assert "unreadable" in caplog.text and cache.stats.corrupt == 1


def test_root_under_a_regular_file_disables_writes(tmp_path, caplog):
    # mkdir under a regular file fails for root too (ENOTDIR)
    (tmp_path / "file").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="symfuse.cache"):
        c = DiskCache(str(tmp_path / "file" / "cache"))
        assert c.put(NS, cache_key("k"), b"data") is None
        assert c.put(NS, cache_key("k2"), b"data") is None
        assert c.get(NS, cache_key("k")) is None
    assert not c.enabled
    assert len(caplog.records) == 1 and "compiling without caching" in caplog.text
    assert c.info()["entries"] == 0 and c.clear() == 0 and c.prune(0) == 0


def test_read_only_root_still_serves_reads(tmp_path, caplog, monkeypatch):
    root = tmp_path / "ro"
    key = cache_key("k")
    DiskCache(str(root)).put(NS, key, b"old")
    before = sorted(p for p in root.rglob("*"))
    os.chmod(root, 0o500)
    # root ignores the mode bits, so also make access() report what a normal user would see
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if m & os.W_OK else real_access(p, m, **kw))
    try:
        with caplog.at_level(logging.WARNING, logger="symfuse.cache"):
            c = DiskCache(str(root))
            assert not c.enabled
            assert c.get(NS, key) == b"old"
            assert c.put(NS, cache_key("new"), b"x") is None
            assert c.put(NS, key, b"y") is None
        assert len(caplog.records) == 1 and "compiling without caching" in caplog.text
        assert sorted(p for p in root.rglob("*")) == before and c.get(NS, key) == b"old"
    finally:
        os.chmod(root, 0o700)


def test_failed_write_disables_with_one_warning(cache, caplog):
    # the namespace path is taken by a regular file: makedirs fails, as root too
    open(os.path.join(cache.root, "blocked"), "wb").close()
    with caplog.at_level(logging.WARNING, logger="symfuse.cache"):
        assert cache.put("blocked", cache_key("a"), b"1") is None
        assert cache.put(NS, cache_key("b"), b"2") is None      # writes are off from now on
    assert len(caplog.records) == 1 and "compiling without caching" in caplog.text
    assert not cache.enabled and os.listdir(cache.root) == ["blocked"]


@pytest.mark.parametrize("mode, other_user", [(0o777, True), (0o755, True), (0o700, True), (0o777, False),
                                              (0o770, False), (0o702, False)])
def test_refuses_a_root_that_is_not_private(tmp_path, caplog, monkeypatch, mode, other_user):
    """Only a root owned by us and writable by nobody else is used: someone else's
    (even 0755) or our own group/world-writable one could hold planted entries."""
    root = tmp_path / f"shared-{mode:o}-{other_user}"
    key = cache_key("k")
    DiskCache(str(root)).put(NS, key, b"planted")
    os.chmod(root, mode)
    if other_user:   # pretend to be another user (as root we could chown instead, but this works for everyone)
        monkeypatch.setattr(os, "getuid", lambda: os.stat(root).st_uid + 1)
    with caplog.at_level(logging.WARNING, logger="symfuse.cache"):
        c = DiskCache(str(root))
    assert "refusing" in caplog.text and len(caplog.records) == 1 and str(root) in caplog.text
    assert c.get(NS, key) is None and c.put(NS, key, b"x") is None
    assert not c.enabled and not c.readable
    assert c.private_dir("runtime") is None and c.private_dir("jinja") is None
    monkeypatch.undo()
    os.chmod(root, 0o700)   # made private again, the same tree is ours
    assert DiskCache(str(root)).get(NS, key) == b"planted"


def _worker(root, key, payload, barrier, results, rounds):
    c = DiskCache(root)
    barrier.wait()                          # maximise overlap between the writers
    seen = []
    for _ in range(rounds):
        p = c.put(NS, key, payload)
        got = c.get(NS, key)
        seen.append((p is not None, got == payload))
    results.put((all(ok for ok, _ in seen), all(same for _, same in seen), c.stats.corrupt))


def test_concurrent_processes_same_key(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    root, key = str(tmp_path / "mp"), cache_key("shared")
    payload = os.urandom(1 << 20)           # 1 MiB: writes take long enough to interleave
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(root, key, payload, barrier, results, 20)) for _ in range(4)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert outcome == [(True, True, 0)] * 4
    assert DiskCache(root).get(NS, key) == payload
    assert os.listdir(os.path.dirname(DiskCache(root).path(NS, key))) == [key]   # no temp files left


def test_info_clear(cache):
    for i in range(3):
        cache.put(NS, cache_key(str(i)), b"x" * 100)
    cache.put("other", cache_key("o"), b"y" * 10)
    info = cache.info()
    assert info["root"] == cache.root and info["enabled"]
    assert info["namespaces"][NS]["entries"] == 3 and info["namespaces"]["other"]["entries"] == 1
    assert info["entries"] == 4 and info["bytes"] == 3 * (100 + 46) + 10 + 46
    assert cache.clear() == 4 and cache.info()["entries"] == 0


def test_prune_removes_least_recently_used(cache):
    keys = [cache_key(str(i)) for i in range(6)]
    for t, k in enumerate(keys):
        p = cache.put(NS, k, b"z" * 954)                 # 1000 bytes with the header
        os.utime(p, (1_000_000 + t, 1_000_000 + t))     # explicit ages: k0 oldest
    assert cache.get(NS, keys[0]) == b"z" * 954        # a read makes k0 the most recent
    assert cache.prune(10_000) == 0
    assert cache.prune(3000) == 3
    left = [k for k in keys if os.path.exists(cache.path(NS, k))]
    assert left == [keys[0], keys[4], keys[5]]
    assert cache.info()["bytes"] == 3000
    assert cache.prune(0) == 3 and cache.info()["entries"] == 0


def test_clear_spares_temp_files_in_progress(cache):
    key = cache_key("k")
    p = cache.put(NS, key, b"1")
    tmp = os.path.join(os.path.dirname(p), cache_mod._TMP_PREFIX + "inflight")
    stale = os.path.join(os.path.dirname(p), cache_mod._TMP_PREFIX + "stale")
    open(tmp, "wb").close()
    open(stale, "wb").close()
    os.utime(stale, (1_000_000, 1_000_000))
    assert cache.info()["entries"] == 1
    assert cache.clear() == 1
    assert os.path.exists(tmp) and not os.path.exists(stale)


@pytest.mark.parametrize("text, n", [
    ("1024", 1024), ("0", 0), ("500M", 500 << 20), ("2G", 2 << 30), ("10KiB", 10240), ("10k", 10240),
    ("1.5 GB", 3 << 29), ("64Ki", 64 << 10), ("3T", 3 << 40), ("7b", 7), (" 2g ", 2 << 30),
])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "M", "-1", "10X", "10 MiBs", "1e3", "10i"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def _fake_compiler(path, version, runs):
    path.write_text(f"#!/bin/sh\necho run >> {runs}\necho '{version}'\necho second line\n")
    path.chmod(0o755)


def test_program_version_remembered_until_the_binary_changes(tmp_path, monkeypatch):
    """find_program asks a compiler for --version once; later processes (a fresh
    lru cache) read the answer back, and a changed binary is asked again."""
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    cc = tmp_path / "fakecc"
    _fake_compiler(cc, "fakecc 1.0", runs)
    monkeypatch.setenv("SF_TEST_CC", str(cc))
    find = toolchain.find_program.__wrapped__
    assert find("SF_TEST_CC") == (str(cc), "fakecc 1.0")
    assert find("SF_TEST_CC") == (str(cc), "fakecc 1.0")
    assert runs.read_text().count("run") == 1                   # the second answer came from the cache
    _fake_compiler(cc, "fakecc 2.0 (upgraded)", runs)            # a new binary: other size and mtime
    os.utime(cc, ns=(os.stat(cc).st_atime_ns, os.stat(cc).st_mtime_ns + 10**9))
    assert find("SF_TEST_CC") == (str(cc), "fakecc 2.0 (upgraded)")
    assert runs.read_text().count("run") == 2


def test_code_identity_follows_edits(tmp_path, monkeypatch):
    """The graph cache's code identity changes when a module is edited (size or mtime)."""
    before = toolchain.code_identity.__wrapped__()
    assert before == toolchain.code_identity.__wrapped__()
    target = cache_mod.__file__
    st = os.stat(target)
    try:
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert toolchain.code_identity.__wrapped__() != before
    finally:
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert toolchain.code_identity.__wrapped__() == before


def test_clear_and_prune_keep_the_runtime_builds(cache):
    """runtime/ holds what every compile reads (the runtime libraries, the unit
    prelude): maintenance beside a compile must not take it away."""
    cache.put(NS, cache_key("a"), b"x" * 100)
    d = cache.private_dir("runtime", "abc123")
    lib = os.path.join(d, "libsymfuse_rt.so")
    with open(lib, "wb") as fh:
        fh.write(b"\x7fELF" + b"\0" * 100)
    assert cache.prune(0) == 1 and os.path.exists(lib)
    cache.put(NS, cache_key("b"), b"y" * 100)
    assert cache.clear() == 1 and os.path.exists(lib)
    assert cache.info()["namespaces"].keys() == {"runtime"}
