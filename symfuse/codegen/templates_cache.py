"""Jinja's compiled templates, kept on disk: compiling the C templates costs
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
    from ..runtime.cache import DiskCache
    for d in (os.path.join(PACKAGE_BUILD_DIR, "jinja"), os.path.join(DiskCache().root, "jinja")):
        try:
            os.makedirs(d, mode=0o755, exist_ok=True)
            if os.access(d, os.W_OK):
                return jinja2.FileSystemBytecodeCache(d)
        except OSError:
            continue
    return None
