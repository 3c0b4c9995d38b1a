"""The Jinja environments of the code generators, one per template directory,
and Jinja's compiled templates kept on disk: compiling the C templates costs
~100 ms per process, a third of a cold compile's codegen. They go into the
compile cache's private ``jinja/`` directory, not the installed package: run
time writes nothing there that ``pip uninstall`` would not know to remove.
Jinja checks each template's source (checksum) before using its cached bytecode."""
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


@functools.lru_cache(maxsize=None)
def bytecode_cache():
    # Jinja's bytecode is marshalled code: only a private cache directory
    d = fallback_dir()
    if d is None or not os.access(d, os.W_OK):
        return None
    return _checked_bytecode_cache(d)


def _checked_bytecode_cache(directory: str):
    """Jinja's file bytecode cache with a sha256 over each file: Jinja checks only
    that the template's source is unchanged, so a damaged file (truncated, flipped
    bytes) would fail every later compile, or load as wrong code. A file that does
    not match its digest is ignored; Jinja then compiles the template and the
    file is rewritten."""
    import jinja2

    class CheckedBytecodeCache(jinja2.BytecodeCache):
        def _path(self, bucket) -> str:
            return os.path.join(directory, f"__jinja2_{bucket.key}.cache")

        def load_bytecode(self, bucket) -> None:
            try:
                with open(self._path(bucket), "rb") as fh:
                    blob = fh.read()
            except OSError:
                return
            data = blob[32:]
            if len(blob) >= 32 and hashlib.sha256(data).digest() == blob[:32]:
                bucket.load_bytecode(io.BytesIO(data))

        def dump_bytecode(self, bucket) -> None:
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
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, bytecode_cache=bytecode_cache())
