"""Content-addressed disk cache for compiled artefacts.

Entries live at ``root/namespace/key[:2]/key``; the key is a hash of
everything that determines the artefact (``cache_key``), so an entry never
needs invalidating, only evicting (``prune``; ``cache_maintenance.py``).

The cache is a trust boundary (threat model: ``docs/cache.md``). Its root and
every level below it that symfuse creates or reads must be a real directory
(not a symlink) owned by the current user and not writable by group or others;
otherwise the cache is not used at all (one warning; compiles go on without
caching). Each entry is a 46-byte header (magic ``SYMF``, format version,
payload length, HMAC-SHA256 of namespace, key and payload under a per-cache
secret kept in ``root/hmac.key``, mode 0600) followed by the payload, so get()
rejects a truncated or damaged file (a crash mid-copy, a full disk, a bad
sector) and one written by anybody without the secret as a miss. Files that are
loaded by path (shared objects for ``dlopen``) get the same HMAC in a sidecar
(``seal_file`` / ``file_verified``).

Writes are atomic: a private temporary file in the entry's directory is
written, fsynced and ``os.replace``d onto the final name, so readers see the
old entry, no entry or the complete new one, and concurrent writers of the
same key (several processes compiling the same model) all succeed with the
last one winning -- all wrote the same bytes anyway.

Failure is never fatal: an unusable cache directory logs one warning and the
compiler carries on without caching.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import mmap
import os
import re
import stat
import struct
from dataclasses import dataclass

from . import cache_maintenance
from .cache_maintenance import _TMP_PREFIX, PRUNE_KEEPS, parse_size  # noqa: F401  (the cache's names)
from .rt_recipe import key_of

log = logging.getLogger("symfuse.cache")

MAGIC = b"SYMF"
FORMAT_VERSION = 2
_HEADER = struct.Struct(">4sHQ32s")     # magic, format version, payload length, HMAC-SHA256
KEY_FILE = "hmac.key"
MAC_SUFFIX = ".mac"
_KEY_BYTES = 32
# namespaces and keys become path components: keep them to a safe alphabet
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


cache_key = key_of


_ENV_CACHE: dict = {}
_WARNED: set = set()


def jinja_bytecode_dir() -> str | None:
    """Where Jinja's compiled templates go: the compile cache's private "jinja"
    directory (None when the cache is refused).
    Each compile path hands it to codegen, which knows nothing of the cache."""
    return environment_cache().private_dir("jinja")


def warn_once(message: str) -> None:
    """Log ``message`` once per process, however many caches or compiles meet it."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def private(st: os.stat_result) -> bool:
    """Owned by the current user and writable by nobody else."""
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def environment_cache() -> "DiskCache":
    """The cache at $SYMFUSE_CACHE_DIR as it is now (a new one when the variable
    changed since the last call): what every backend compiles through."""
    root = os.environ.get("SYMFUSE_CACHE_DIR")
    c = _ENV_CACHE.get(root)
    if c is None:
        _ENV_CACHE.clear()
        c = _ENV_CACHE[root] = DiskCache()
    return c


def file_digest(fh) -> bytes:
    """sha256 of an open file's content, mapped rather than copied (a precompiled
    header is ~6 MB, and copying it costs more than hashing it)."""
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        return hashlib.sha256(b"").digest()
    with mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ) as m:
        return hashlib.sha256(m).digest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0      # includes corrupt entries
    corrupt: int = 0     # entries that failed validation or could not be read
    writes: int = 0


def _nofollow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


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
        self._key: bytes | None = None
        self._private_dirs: set[str] = set()     # checked already: only we can change them
        try:
            # 0o700: compiled shared objects get loaded into the process, so
            # nobody else may write them (and cached sources may be private)
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            st = os.stat(self.root)        # the root may be a link the user made; below it, none is followed
        except OSError as e:
            self._refuse(f"cannot create cache directory {self.root} ({e})")
            return
        if not stat.S_ISDIR(st.st_mode) or not private(st):
            # someone else could plant entries (i.e. code we would load): use none of it
            self._refuse(f"cache directory {self.root} is not a private directory (owner uid {st.st_uid}, "
                         f"mode {stat.S_IMODE(st.st_mode):04o}; it must be owned by uid {os.getuid()} and "
                         "not writable by group or others); refusing to use it "
                         "(chmod go-w it, or set SYMFUSE_CACHE_DIR to a private directory)")
            return
        self._private_dirs.add(self.root)
        if not os.access(self.root, os.W_OK | os.X_OK):
            self._disable(f"cache directory {self.root} is not writable")

    def _refuse(self, why: str) -> None:
        self.readable = False
        self._disable(why)

    def _disable(self, why: str) -> None:
        self.enabled = False
        warn_once(f"symfuse: {why}; compiling without caching")

    # -- the trust boundary --------------------------------------------------

    def private_dir(self, *parts: str, create: bool = True) -> str | None:
        """``root/parts...`` when every level is a real directory owned by us and
        writable by nobody else (created 0700 when missing and ``create``); None
        when the cache is not usable, a level is missing, or one fails the check
        (then the whole cache is refused, with one warning)."""
        if not self.readable:
            return None
        d = self.root
        for part in parts:
            if not _NAME_RE.match(part):
                raise ValueError(f"bad cache path component {part!r}")
            d = os.path.join(d, part)
            if d in self._private_dirs:
                continue
            if create and self.enabled:
                try:
                    os.mkdir(d, 0o700)
                except FileExistsError:
                    pass
                except OSError as e:
                    self._disable(f"cannot create {d} ({e})")
                    return None
            try:
                st = os.lstat(d)
            except OSError:
                return None
            if not stat.S_ISDIR(st.st_mode) or not private(st):
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else \
                    f"owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}"
                self._refuse(f"{d} inside the cache is {kind}, not a private directory; refusing the cache")
                return None
            self._private_dirs.add(d)
        return d

    def _secret(self) -> bytes | None:
        """The per-cache HMAC key, made on first use (0600, never through a symlink)."""
        if self._key is not None:
            return self._key
        path = os.path.join(self.root, KEY_FILE)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                if not self.enabled:
                    return None
                self._make_secret(path)
                continue
            except OSError as e:
                self._refuse(f"cannot read the cache key {path} ({e})")
                return None
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                key = fh.read(_KEY_BYTES + 1)
            if not stat.S_ISREG(st.st_mode) or not private(st) or st.st_mode & 0o077 or len(key) != _KEY_BYTES:
                self._refuse(f"the cache key {path} is not a private {_KEY_BYTES}-byte file of uid {os.getuid()} "
                             "with mode 0600; refusing the cache (delete the file to make a new key)")
                return None
            self._key = key
            return key
        return None

    def _make_secret(self, path: str) -> None:
        import tempfile  # lazy: only writes need it (import symfuse stays light)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=_TMP_PREFIX)   # mode 0600
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(_KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)         # never replaces: racing processes agree on the first key
            except FileExistsError:
                pass
            finally:
                os.remove(tmp)
        except OSError as e:
            self._disable(f"cannot create the cache key {path} ({e})")

    def _mac(self, *parts: bytes) -> bytes | None:
        key = self._secret()
        if key is None:
            return None
        h = hmac.new(key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(struct.pack(">Q", len(p)))
            h.update(p)
        return h.digest()

    def _relative(self, path: str) -> str | None:
        """``path`` relative to the root when it lies inside it (no ``..``), else None."""
        rel = os.path.relpath(os.path.abspath(path), self.root)
        if rel.startswith(("..", os.sep)) or rel == ".":
            return None
        return rel

    def seal_file(self, path: str, data: bytes, staged: str | None = None) -> bool:
        """Write the sidecar that authenticates ``data`` as the content of ``path``
        (a file inside the cache, written before or after this): True when written.
        ``staged``: where the file is being built (a directory renamed onto
        ``path``'s afterwards); the sidecar goes beside it."""
        import tempfile  # lazy: only writes need it (import symfuse stays light)
        rel = self._relative(path)
        mac = (self._mac(b"file", rel.encode(), hashlib.sha256(data).digest())
               if rel is not None and self.enabled else None)
        if mac is None:
            return False
        path = staged or path
        d = os.path.dirname(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=_TMP_PREFIX)
            with os.fdopen(fd, "w") as fh:
                fh.write(mac.hex())
            os.replace(tmp, path + MAC_SUFFIX)
        except OSError as e:
            self._disable(f"cannot write {path + MAC_SUFFIX} ({e})")
            return False
        return True

    def file_verified(self, path: str) -> bool:
        """``path`` lies in a private directory of the cache, is a regular file of
        ours that nobody else can write, and matches the sidecar ``seal_file``
        wrote: only then may it be handed to ``dlopen``. False otherwise (a
        damaged or foreign file is also logged once)."""
        rel = self._relative(path)
        if rel is None or not self.readable:
            return False
        parts = rel.split(os.sep)
        if self.private_dir(*parts[:-1], create=False) is None:
            return False
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or not private(st):
                warn_once(f"symfuse: cached file {path} is not a private file of uid {os.getuid()}; ignoring it")
                return False
            digest = file_digest(fh)
        try:
            with open(path + MAC_SUFFIX, "rb", opener=_nofollow) as fh:
                want = bytes.fromhex(fh.read(200).decode("ascii"))
        except (OSError, ValueError):      # missing, a symlink, not hex, not ASCII
            return False
        got = self._mac(b"file", rel.encode(), digest)
        if got is None or not hmac.compare_digest(got, want):
            warn_once(f"symfuse: cached file {path} does not match its authentication code "
                      "(damaged, or not written by symfuse for this cache); recompiling")
            return False
        return True

    # -- entries -------------------------------------------------------------

    def path(self, namespace: str, key: str) -> str:
        if not _NAME_RE.match(namespace) or not _NAME_RE.match(key) or len(key) < 2:
            raise ValueError(f"bad cache namespace/key {namespace!r}/{key!r}")
        return os.path.join(self.root, namespace, key[:2], key)

    def get(self, namespace: str, key: str) -> bytes | None:
        p = self.path(namespace, key)
        if not self.readable or self.private_dir(namespace, key[:2], create=False) is None:
            self.stats.misses += 1
            return None
        try:
            with open(p, "rb", opener=_nofollow) as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or not private(st):
                    return self._corrupt(p, f"not a private file (uid {st.st_uid}, mode "
                                            f"{stat.S_IMODE(st.st_mode):04o})")
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
        if version < FORMAT_VERSION:       # written before an upgrade: a miss, replaced by the next put
            self.stats.misses += 1
            return None
        if version != FORMAT_VERSION:
            return self._corrupt(p, f"format version {version}, expected {FORMAT_VERSION}")
        data = blob[_HEADER.size:]
        if len(data) != length:
            return self._corrupt(p, f"payload is {len(data)} bytes, header says {length}")
        mac = self._mac(namespace.encode(), key.encode(), data)
        if mac is None or not hmac.compare_digest(mac, digest):
            return self._corrupt(p, "not authenticated (damaged, or not written by symfuse for this cache)")
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
        import tempfile  # lazy: only writes need it (import symfuse stays light)
        p = self.path(namespace, key)
        if not self.enabled:
            return None
        data = bytes(data)
        d = self.private_dir(namespace, key[:2])
        mac = self._mac(namespace.encode(), key.encode(), data) if d is not None else None
        if mac is None:
            return None
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(data), mac)
        tmp = None
        try:
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

    def info(self) -> dict:
        return cache_maintenance.info(self)

    def clear(self) -> int:
        """Remove every entry but the runtime builds (``runtime/``, which compiles beside
        this one are using; ``cache_maintenance.clear``) and stale temporary files;
        returns entries removed."""
        return cache_maintenance.clear(self)

    def prune(self, max_bytes: int) -> int:
        """Remove least-recently-used entries until the total size is at most max_bytes
        (``cache_maintenance.prune``)."""
        return cache_maintenance.prune(self, max_bytes)
