"""Keeping the compile cache (``cache.py``) in bounds: what it holds
(``info``), emptying it (``clear``), evicting the least recently used entries
(``prune``, ``symfuse cache prune --max-size``), and removing what writers
that died left behind. Temporary files and build directories (``.tmp-*``)
are left alone while they are fresh: another process is writing them.

Functions of a ``DiskCache`` (``cache.root``, ``readable``, ``enabled``); its
methods of the same names call them."""
from __future__ import annotations

import contextlib
import os
import re
import stat
import time

_TMP_PREFIX = ".tmp-"
# the runtime builds (the C and CUDA runtime libraries, the unit prelude): built once per
# installation and cache, and in use by every compile, so maintenance never removes them
# beside a compile that is reading them; removing the cache directory drops them
PRUNE_KEEPS = frozenset({"runtime"})
_STALE_TMP_S = 3600      # a temporary file this old belongs to a writer that died, not one in progress
_BUILD_DIR_DEPTH = 3     # a build directory sits at most this deep (cuda-emu/pch/<key>/.tmp-build-*)


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def entries(cache):
    """(namespace, path, stat) of every entry and temporary file (``root/namespace/sub/name``)."""
    try:
        namespaces = sorted(os.listdir(cache.root)) if cache.readable else []
    except OSError:
        return
    for ns in namespaces:
        nsdir = os.path.join(cache.root, ns)
        if not _is_real_dir(nsdir):
            continue
        for sub in sorted(os.listdir(nsdir)):
            subdir = os.path.join(nsdir, sub)
            if not _is_real_dir(subdir):
                continue
            for name in sorted(os.listdir(subdir)):
                p = os.path.join(subdir, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue           # removed concurrently
                if stat.S_ISREG(st.st_mode):
                    yield ns, p, st


def _build_dir_paths(cache):
    """(path, lstat) of every build directory (``.tmp-build-*``) in the cache."""
    out = []

    def visit(d: str, depth: int) -> None:
        try:
            names = os.listdir(d)
        except OSError:
            return
        for name in names:
            p = os.path.join(d, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if name.startswith(_TMP_PREFIX):
                if depth >= 2:
                    out.append((p, st))
            elif depth < _BUILD_DIR_DEPTH:
                visit(p, depth + 1)

    if cache.readable and _is_real_dir(cache.root):
        visit(cache.root, 0)
    return out


def remove_stale_build_dirs(cache) -> None:
    """Build directories (``.tmp-build-*``) of writers that died (kill -9) long ago."""
    import shutil  # lazy: only maintenance needs it
    now = time.time()
    for p, st in _build_dir_paths(cache):
        if now - st.st_mtime >= _STALE_TMP_S:
            shutil.rmtree(p, ignore_errors=True)


def info(cache) -> dict:
    namespaces: dict[str, dict] = {}
    for ns, p, st in entries(cache):
        if os.path.basename(p).startswith(_TMP_PREFIX):
            continue
        e = namespaces.setdefault(ns, {"entries": 0, "bytes": 0})
        e["entries"] += 1
        e["bytes"] += st.st_size
    return {"root": cache.root, "enabled": cache.enabled, "readable": cache.readable,
            "entries": sum(e["entries"] for e in namespaces.values()),
            "bytes": sum(e["bytes"] for e in namespaces.values()),
            "namespaces": namespaces, "unfinished_builds": _build_dirs(cache)}


def _build_dirs(cache) -> dict:
    """Build directories (``.tmp-build-*``): compiles in progress, or interrupted ones
    (whose sources stay until ``clear`` finds them an hour old). Not entries."""
    found = {"count": 0, "bytes": 0}
    for p, _ in _build_dir_paths(cache):
        found["count"] += 1
        for base, _, files in os.walk(p):
            for f in files:
                with contextlib.suppress(OSError):
                    found["bytes"] += os.lstat(os.path.join(base, f)).st_size
    return found


def clear(cache) -> int:
    """Remove every entry but the runtime builds (and stale temporary files); returns
    entries removed."""
    remove_stale_build_dirs(cache)
    removed = 0
    now = time.time()
    for ns, p, st in list(entries(cache)):
        if ns in PRUNE_KEEPS:
            continue
        if os.path.basename(p).startswith(_TMP_PREFIX) and now - st.st_mtime < _STALE_TMP_S:
            continue                   # another process is writing it right now
        try:
            os.remove(p)
        except OSError:
            continue
        removed += not os.path.basename(p).startswith(_TMP_PREFIX)
    return removed


def prune(cache, max_bytes: int) -> int:
    """Remove least-recently-used entries (oldest mtime first; get() touches
    the mtime) until the total size is at most max_bytes. The runtime build
    (``runtime/``) is not an entry: every compiled library links against it,
    so it is never pruned (nor cleared)."""
    remove_stale_build_dirs(cache)
    found = [(st.st_mtime_ns, p, st.st_size) for ns, p, st in entries(cache)
             if not os.path.basename(p).startswith(_TMP_PREFIX) and ns not in PRUNE_KEEPS]
    total = sum(size for _, _, size in found)
    removed = 0
    for _, p, size in sorted(found):
        if total <= max_bytes:
            break
        try:
            os.remove(p)
        except OSError:
            continue
        total -= size
        removed += 1
    return removed


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from "1024", "500M", "2G", "10KiB", "1.5 GB", "64k".

    K/M/G/T with or without "i"/"iB"/"B" are binary (1024-based), like most
    cache-size settings (ccache's "Gi", du -h): the distinction between "GB"
    and "GiB" is too easily blurred by users to be worth enforcing.
    """
    m = _SIZE_RE.match(str(text))
    if not m or (m.group(3) and not m.group(2) and m.group(3).lower() != "b"):
        raise ValueError(f"not a size: {text!r} (expected e.g. 1024, 500M, 2G, 10KiB)")
    return int(round(float(m.group(1)) * _UNITS[m.group(2).lower()]))
