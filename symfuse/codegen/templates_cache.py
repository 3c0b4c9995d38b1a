"""The Jinja environments of the code generators, one per template directory,
and Jinja's compiled templates kept on disk: compiling the C templates costs
~100 ms per process, a third of a cold compile's codegen. They go into the
compile cache's private ``jinja/`` directory, not the installed package: run
time writes nothing there that ``pip uninstall`` would not know to remove.
Jinja checks each template's source (checksum) before using its cached bytecode.

``pip install`` compiles every template once into the package (``setup.py`` calls
``precompile``; the wheel lists the files, so uninstall removes them): a cold
compile with a fresh cache then reads them there instead of compiling (~45 ms of
a LeNet-5 cold compile). This module imports nothing of symfuse at the top so
that ``setup.py`` can load it by path in pip's build environment."""
from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
from typing import Callable


# where bytecode goes: set by the runtime to the compile cache's private "jinja"
# directory (None when the cache is refused); codegen itself knows nothing of the cache
fallback_dir: Callable[[], str | None] = lambda: None


def _installed_dir() -> str | None:
    """The package's precompiled templates (read only), when the install made them."""
    from ..install_dirs import BUILD_DIR
    d = os.path.join(BUILD_DIR, "jinja")
    return d if os.path.isdir(d) else None


@functools.lru_cache(maxsize=None)
def bytecode_cache():
    # Jinja's bytecode is marshalled code: only a private cache directory, or the
    # installation's own (as trusted as symfuse's code)
    d = fallback_dir()
    if d is not None and not os.access(d, os.W_OK):
        d = None
    installed = _installed_dir()
    if d is None and installed is None:
        return None
    return _checked_bytecode_cache(d, (installed,) if installed else ())


def _environment_for(template_dir: str, bytecode):
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, bytecode_cache=bytecode)


def precompile(template_root: str, out_dir: str) -> int:
    """Compile every template under ``template_root`` (one directory per target) into
    ``out_dir``, with the environment the code generators use: what ``setup.py``
    runs. Returns how many."""
    os.makedirs(out_dir, exist_ok=True)
    cache = _checked_bytecode_cache(out_dir)
    n = 0
    for sub in sorted(os.listdir(template_root)):
        d = os.path.join(template_root, sub)
        if not os.path.isdir(d):
            continue
        env = _environment_for(d, cache)
        for name in sorted(os.listdir(d)):
            if name.endswith(".j2"):
                env.get_template(name)
                n += 1
    return n


def _checked_bytecode_cache(directory: str | None, read_only=()):
    """Jinja's file bytecode cache with a sha256 over each file: Jinja checks only
    that the template's source is unchanged, so a damaged file (truncated, flipped
    bytes) would fail every later compile, or load as wrong code. A file that does
    not match its digest is ignored; Jinja then compiles the template and the
    file is rewritten."""
    import jinja2

    class CheckedBytecodeCache(jinja2.BytecodeCache):
        def get_cache_key(self, name, filename=None) -> str:
            # the template's directory name and its name, not its absolute path: the files
            # precompiled in pip's build tree are found in the installed package
            where = os.path.basename(os.path.dirname(filename)) if filename else ""
            return hashlib.sha1(f"{where}|{name}".encode("utf-8")).hexdigest()

        def _path(self, bucket, d=None) -> str:
            return os.path.join(d or directory, f"__jinja2_{bucket.key}.cache")

        def load_bytecode(self, bucket) -> None:
            for d in ((directory,) if directory else ()) + tuple(read_only):
                try:
                    with open(self._path(bucket, d), "rb") as fh:
                        blob = fh.read()
                except OSError:
                    continue
                data = blob[32:]
                if len(blob) >= 32 and hashlib.sha256(data).digest() == blob[:32]:
                    bucket.load_bytecode(io.BytesIO(data))
                    if bucket.code is not None:    # else stale (another source or Jinja): try on
                        return

        def dump_bytecode(self, bucket) -> None:
            if directory is None:
                return
            data = bucket.bytecode_to_string()
            try:
                fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(hashlib.sha256(data).digest() + data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self._path(bucket))      # atomic: readers see the old file or this one
            except OSError:
                pass                                     # read-only meanwhile: compile next time too

    return CheckedBytecodeCache()


@functools.lru_cache(maxsize=None)
def template(template_dir: str, name: str):
    """A template of ``template_dir``, loaded on first use (a warm compile, a
    graph-cache hit, never imports jinja2)."""
    return _environment(template_dir).get_template(name)


@functools.lru_cache(maxsize=None)
def _environment(template_dir: str):
    return _environment_for(template_dir, bytecode_cache())
