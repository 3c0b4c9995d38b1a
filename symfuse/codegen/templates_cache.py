"""The Jinja environments of the code generators, one per template directory,
and Jinja's compiled templates kept on disk: compiling the C templates costs
~100 ms per process, a third of a cold compile's codegen. Like the C runtime
library they belong to the installation (``symfuse/_build/jinja``), so a cold
compile with an empty compile cache does not pay for them again; Jinja checks
each template's source (checksum) before using its cached bytecode."""
from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=None)
def bytecode_cache():
    import jinja2
    from ..runtime.c_runtime import PACKAGE_BUILD_DIR
    from ..runtime.cache import environment_cache
    # Jinja's bytecode is marshalled code: only the installation's directory or a private cache
    for d in (os.path.join(PACKAGE_BUILD_DIR, "jinja"), environment_cache().private_dir("jinja")):
        if d is None:
            continue
        try:
            os.makedirs(d, mode=0o755, exist_ok=True)
            if os.access(d, os.W_OK):
                return jinja2.FileSystemBytecodeCache(d)
        except OSError:
            continue
    return None


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
