"""Content-addressed disk cache for compiled artefacts.

Entries live at ``root/namespace/key[:2]/key``; the key is a hash of
everything that determines the artefact (``cache_key``), so an entry never
needs invalidating, only evicting (``prune``).

Each entry is a 46-byte header (magic ``SYMF``, format version, payload
length, sha256 of the payload) followed by the payload. The header lets get()
reject a truncated or damaged file (a crash mid-copy, a full disk, a bad
sector) as a miss instead of handing garbage to a compiler or ``dlopen``.

Writes are atomic: a private temporary file in the entry's directory is
written, fsynced and ``os.replace``d onto the final name, so readers see the
old entry, no entry or the complete new one, and concurrent writers of the
same key (several processes compiling the same model) all succeed with the
last one winning -- all wrote the same bytes anyway.

Failure is never fatal: an unusable cache directory logs one warning and the
compiler carries on without caching.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import stat
import struct
import tempfile
import time
from dataclasses import dataclass

log = logging.getLogger("symfuse.cache")

MAGIC = b"SYMF"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sHQ32s")     # magic, format version, payload length, sha256(payload)
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600      # a temporary file this old belongs to a writer that died, not one in progress
# namespaces and keys become path components: keep them to a safe alphabet
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def cache_key(*parts: str | bytes) -> str:
    """sha256 hex over the parts, each prefixed by its length, so that part
    boundaries matter: ("ab", "c") and ("a", "bc") give different keys. A str
    part hashes as its UTF-8 bytes."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else bytes(p)
        h.update(struct.pack(">Q", len(b)))
        h.update(b)
    return h.hexdigest()


_ENV_CACHE: dict = {}


def environment_cache() -> "DiskCache":
    """The cache at $SYMFUSE_CACHE_DIR as it is now (a new one when the variable
    changed since the last call): what every backend compiles through."""
    root = os.environ.get("SYMFUSE_CACHE_DIR")
    c = _ENV_CACHE.get(root)
    if c is None:
        _ENV_CACHE.clear()
        c = _ENV_CACHE[root] = DiskCache()
    return c


@functools.lru_cache(maxsize=None)
def find_program(env_var: str, *names: str) -> tuple[str, str] | None:
    """(path, first line of --version) of the first of $env_var, names... on PATH.

    The version line is remembered in the cache (namespace ``programs``) under
    the resolved binary's path, size and mtime: asking the compiler costs a
    process start (~3 ms, a third of a warm compile), and an upgraded compiler
    is a different file, so a stale answer cannot be read back."""
    import shutil
    import subprocess
    for name in filter(None, [os.environ.get(env_var), *names]):
        path = shutil.which(name)
        if not path:
            continue
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except OSError:
            continue
        key = cache_key("program", real, str(st.st_size), str(st.st_mtime_ns))
        cache = environment_cache()
        known = cache.get("programs", key)
        if known is not None:
            return path, known.decode("utf-8", "replace")
        try:
            ver = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        line = ver.splitlines()[0] if ver else name
        cache.put("programs", key, line.encode("utf-8"))
        return path, line
    return None


@functools.lru_cache(maxsize=None)
def code_identity() -> str:
    """Identity of this symfuse installation's code: (path, size, mtime) of
    every module and template. Graph-cache entries hold the output of passes
    and codegen, so an edited pass must miss even when the version string
    did not change. Stat only (no reads): this runs on every warm compile."""
    parts: list[str] = []

    def walk(path: str, rel: str) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if not e.name.startswith((".", "_")):
                    walk(e.path, rel + e.name + "/")
            elif e.name.endswith((".py", ".j2", ".h", ".cuh")):
                st = e.stat()
                parts.append(f"{rel}{e.name}:{st.st_size}:{st.st_mtime_ns}")

    walk(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
    return cache_key(*parts)


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


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0      # includes corrupt entries
    corrupt: int = 0     # entries that failed validation or could not be read
    writes: int = 0


class DiskCache:
    """See the module docstring. ``enabled`` says whether puts are stored;
    ``readable`` whether gets look at the disk at all."""

    def __init__(self, root: str | None = None):
        if root is None:
            root = os.environ.get("SYMFUSE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "symfuse")
        self.root = os.path.abspath(os.path.expanduser(root))
        self.stats = CacheStats()
        self.enabled = True
        self.readable = True
        self._warned = False
        try:
            # 0o700: compiled shared objects get loaded into the process, so
            # nobody else may write them (and cached sources may be private)
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            st = os.stat(self.root)
        except OSError as e:
            self._disable(f"cannot create cache directory {self.root} ({e})")
            return
        if st.st_uid != os.getuid() and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            # someone else could plant entries (i.e. code we would load): use none of it
            self.readable = False
            self._disable(f"cache directory {self.root} is owned by uid {st.st_uid} and writable by others; "
                          "refusing to use it (set SYMFUSE_CACHE_DIR to a private directory)")
            return
        if not os.access(self.root, os.W_OK | os.X_OK):
            self._disable(f"cache directory {self.root} is not writable")

    def _disable(self, why: str) -> None:
        self.enabled = False
        if not self._warned:               # one warning per cache, not one per compile
            self._warned = True
            log.warning("%s; compiling without caching", why)

    # -- entries -------------------------------------------------------------

    def path(self, namespace: str, key: str) -> str:
        if not _NAME_RE.match(namespace) or not _NAME_RE.match(key) or len(key) < 2:
            raise ValueError(f"bad cache namespace/key {namespace!r}/{key!r}")
        return os.path.join(self.root, namespace, key[:2], key)

    def get(self, namespace: str, key: str) -> bytes | None:
        p = self.path(namespace, key)
        if not self.readable:
            self.stats.misses += 1
            return None
        try:
            with open(p, "rb") as f:
                blob = f.read()
        except (FileNotFoundError, NotADirectoryError):
            self.stats.misses += 1
            return None
        except OSError as e:
            return self._corrupt(p, f"unreadable ({e})")
        if len(blob) < _HEADER.size:
            return self._corrupt(p, f"truncated ({len(blob)} bytes)")
        magic, version, length, digest = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            return self._corrupt(p, "bad magic")
        if version != FORMAT_VERSION:
            return self._corrupt(p, f"format version {version}, expected {FORMAT_VERSION}")
        data = blob[_HEADER.size:]
        if len(data) != length:
            return self._corrupt(p, f"payload is {len(data)} bytes, header says {length}")
        if hashlib.sha256(data).digest() != digest:
            return self._corrupt(p, "checksum mismatch")
        try:
            os.utime(p)                    # mark as recently used for prune()
        except OSError:
            pass                           # read-only cache: LRU order just goes stale
        self.stats.hits += 1
        return data

    def _corrupt(self, p: str, why: str) -> None:
        self.stats.misses += 1
        self.stats.corrupt += 1
        log.warning("cache entry %s is %s; ignoring it", p, why)
        try:
            os.remove(p)                   # so the next put replaces it and we warn only once
        except OSError:
            pass
        return None

    def put(self, namespace: str, key: str, data: bytes) -> str | None:
        p = self.path(namespace, key)
        if not self.enabled:
            return None
        data = bytes(data)
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(data), hashlib.sha256(data).digest())
        tmp = None
        try:
            d = os.path.dirname(p)
            os.makedirs(d, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=_TMP_PREFIX)   # same filesystem: replace is atomic
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())   # contents on disk before the name points at them
            os.replace(tmp, p)
        except OSError as e:
            if tmp is not None:
                try:
                    os.remove(tmp)
                except OSError:
                    pass
            # a full or read-only disk will not get better during this process
            self._disable(f"cannot write cache entry {p} ({e})")
            return None
        self.stats.writes += 1
        return p

    # -- maintenance ---------------------------------------------------------

    def _walk(self):
        """(namespace, path, stat) of every entry and stale temporary file."""
        try:
            namespaces = sorted(os.listdir(self.root)) if self.readable else []
        except OSError:
            return
        for ns in namespaces:
            nsdir = os.path.join(self.root, ns)
            if not os.path.isdir(nsdir):
                continue
            for sub in sorted(os.listdir(nsdir)):
                subdir = os.path.join(nsdir, sub)
                if not os.path.isdir(subdir):
                    continue
                for name in sorted(os.listdir(subdir)):
                    p = os.path.join(subdir, name)
                    try:
                        st = os.stat(p)
                    except OSError:
                        continue           # removed concurrently
                    if stat.S_ISREG(st.st_mode):
                        yield ns, p, st

    def info(self) -> dict:
        namespaces: dict[str, dict] = {}
        for ns, p, st in self._walk():
            if os.path.basename(p).startswith(_TMP_PREFIX):
                continue
            e = namespaces.setdefault(ns, {"entries": 0, "bytes": 0})
            e["entries"] += 1
            e["bytes"] += st.st_size
        return {"root": self.root, "enabled": self.enabled, "readable": self.readable,
                "entries": sum(e["entries"] for e in namespaces.values()),
                "bytes": sum(e["bytes"] for e in namespaces.values()),
                "namespaces": namespaces}

    def clear(self) -> int:
        """Remove every entry (and stale temporary files); returns entries removed."""
        removed = 0
        now = time.time()
        for _, p, st in list(self._walk()):
            if os.path.basename(p).startswith(_TMP_PREFIX) and now - st.st_mtime < _STALE_TMP_S:
                continue                   # another process is writing it right now
            try:
                os.remove(p)
            except OSError:
                continue
            removed += not os.path.basename(p).startswith(_TMP_PREFIX)
        return removed

    def prune(self, max_bytes: int) -> int:
        """Remove least-recently-used entries (oldest mtime first; get() touches
        the mtime) until the total size is at most max_bytes."""
        entries = [(st.st_mtime_ns, p, st.st_size) for _, p, st in self._walk()
                   if not os.path.basename(p).startswith(_TMP_PREFIX)]
        total = sum(size for _, _, size in entries)
        removed = 0
        for _, p, size in sorted(entries):
            if total <= max_bytes:
                break
            try:
                os.remove(p)
            except OSError:
                continue
            total -= size
            removed += 1
        return removed
