"""The C runtime library (``templates/c/runtime.h``) built once into a shared
object, so that a function's translation unit holds only its fused kernels.

Why: the library kernels (im2col convolution, pooling, the softmax family,
gathers, Philox, ...) are the same for every model; compiling them into every
unit at -O3 cost ~1.5 s of the LeNet-5 cold compile. Built once per
installation and compiler (like any framework's prebuilt runtime), a unit
compiles in a fraction of that and links against it.

The library is compiled with ``-DSF_RUNTIME_LIBRARY`` (its functions become
exported) and gcc's ``-aux-info`` writes their prototypes, which become the
unit's API header. A compiler without ``-aux-info`` (clang) makes
``runtime_library()`` return None and the cpu backend falls back to including
the whole header into each unit (static functions, specialised per call site).

Location: ``symfuse/_build`` inside the installed package when writable (it
belongs to the installation, so emptying the compile cache does not rebuild
it), else ``$SYMFUSE_CACHE_DIR/runtime``. The file names carry the hash of the
header, compiler and flags, so a stale build is never picked up.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

from ..install_dirs import BUILD_DIR, C_TEMPLATE_DIR as INCLUDE_DIR
from .cache import artefact_ok, cache_key, environment_cache, seal_artefact, warn_once
from .toolchain import blas_link_flags, find_compiler

log = logging.getLogger("symfuse.cpu")

BUILD_SECONDS_HINT = 5        # on a 2-core machine; shown before the one-time build starts
LIBRARY_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11", "-fno-math-errno"]
PACKAGE_BUILD_DIR = BUILD_DIR


@dataclass(frozen=True)
class RuntimeLibrary:
    path: str            # the shared object
    header_dir: str      # holds sf_runtime_api.h for this build
    key: str
    build_seconds: float = 0.0   # > 0 when this process built it

    def link_flags(self) -> list[str]:
        d = os.path.dirname(self.path)
        return [f"-L{d}", f"-l:{os.path.basename(self.path)}", f"-Wl,-rpath,{d}"]


def _build_dirs():
    """The installation's build directory, then the cache's (only when it is private)."""
    yield PACKAGE_BUILD_DIR
    d = environment_cache().private_dir("runtime")
    if d is not None:
        yield d


def _writable_dir(d: str) -> bool:
    try:
        os.makedirs(d, mode=0o755, exist_ok=True)
        return os.access(d, os.W_OK)
    except OSError:
        return False


def _intact(path: str) -> bool:
    return os.path.exists(path) and artefact_ok(path, environment_cache())


def _install(tmp: str, final: str) -> bool:
    """Seal ``tmp``'s bytes as ``final``'s, then move it there (a reader never sees a
    file without its seal); False when the seal cannot be written."""
    with open(tmp, "rb") as fh:
        if not seal_artefact(final, fh.read(), environment_cache()):
            return False
    os.replace(tmp, final)
    return True


@functools.lru_cache(maxsize=None)
def header_bytes() -> bytes:
    """runtime.h and kernel.h: what a build or a unit depends on besides its own text."""
    out = b""
    for name in ("runtime.h", "kernel.h"):
        with open(os.path.join(INCLUDE_DIR, name), "rb") as fh:
            out += fh.read()
    return out


@functools.lru_cache(maxsize=None)
def runtime_library(cc: str, ccver: str) -> RuntimeLibrary | None:
    """The built library for compiler ``cc`` (building it if needed), or None
    when this compiler cannot produce the API header."""
    if "clang" in ccver.lower():   # no -aux-info
        return None
    header = header_bytes()
    flags = LIBRARY_FLAGS + list(blas_link_flags())
    key = cache_key(header, ccver, " ".join(flags))[:20]
    for d in _build_dirs():
        lib = os.path.join(d, key, "libsymfuse_rt.so")
        if _intact(lib) and _intact(os.path.join(d, key, "sf_runtime_api.h")):
            return RuntimeLibrary(lib, os.path.dirname(lib), key)
    for d in _build_dirs():
        if _writable_dir(os.path.join(d, key)):
            warn_once(f"symfuse: building the C runtime library once for this installation and compiler "
                      f"(~{BUILD_SECONDS_HINT} s) in {os.path.join(d, key)}")
            t0 = time.perf_counter()
            if _build(cc, flags, os.path.join(d, key)):
                lib = os.path.join(d, key, "libsymfuse_rt.so")
                return RuntimeLibrary(lib, os.path.dirname(lib), key, time.perf_counter() - t0)
            return None
    log.warning("symfuse: no writable directory for the C runtime library; compiling it into each unit")
    return None


def _build(cc: str, flags: list[str], out_dir: str) -> bool:
    import tempfile  # lazy: only a build needs it
    import shutil  # lazy: only a build needs it
    import subprocess  # lazy: only a build needs it
    work = tempfile.mkdtemp(prefix=".build-", dir=out_dir)
    src = os.path.join(work, "runtime_lib.c")
    with open(src, "w") as fh:
        fh.write('#define SF_RUNTIME_LIBRARY 1\n#include "runtime.h"\n')
    aux = os.path.join(work, "aux.h")
    tmp_lib = os.path.join(work, "libsymfuse_rt.so")
    proc = subprocess.run([cc, src, "-o", tmp_lib, "-I", INCLUDE_DIR, f"-aux-info={aux}", *flags, "-lm"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(aux):
        log.warning("symfuse: building the C runtime library failed (%s); compiling it into each unit:\n%s",
                    cc, proc.stderr[-2000:])
        return False
    protos = []
    with open(aux) as fh:
        for line in fh:
            # "/* runtime.h:123:NF */ extern void sf_x (...); /* (...) ... */": the exported definitions
            if "runtime.h:" in line and "F */ extern" in line:
                decl = line.split("*/", 1)[1].split("/*", 1)[0].strip()
                if decl.split("(", 1)[0].split()[-1].lstrip("*").startswith("sf_"):
                    protos.append(decl)
    api = ("/* Exported by libsymfuse_rt (generated from runtime.h by gcc -aux-info). */\n"
           "#include <stddef.h>\n#include <stdint.h>\n" + "\n".join(protos) + "\n")
    with open(os.path.join(work, "sf_runtime_api.h"), "w") as fh:
        fh.write(api)
    # header first, library last: readers test for the library, so they never see half a build
    ok = (_install(os.path.join(work, "sf_runtime_api.h"), os.path.join(out_dir, "sf_runtime_api.h"))
          and _install(tmp_lib, os.path.join(out_dir, "libsymfuse_rt.so")))
    shutil.rmtree(work, ignore_errors=True)
    return ok


UNIT_PRELUDE = ("/* What every generated C unit includes first: the kernel prelude and the\n"
                " * prebuilt runtime library's API. Precompiled (sf_unit.h.gch) with the units' flags. */\n"
                "#include <stdint.h>\n#include <math.h>\n#include <tgmath.h>\n"
                "#include \"kernel.h\"\n#include \"sf_runtime_api.h\"\n")


@functools.lru_cache(maxsize=None)
def unit_prelude(rt: RuntimeLibrary, cc: str, flags: tuple[str, ...]) -> tuple[str | None, float]:
    """(directory holding ``sf_unit.h`` for units compiled with ``flags``, or None
    when none can be written; seconds spent building it here). The header is
    precompiled next to itself: parsing math.h, tgmath.h and the prelude cost
    each unit's compiler process ~30 ms of its ~0.2 s, and a LeNet-5 step
    compiles two units. gcc uses a precompiled header only with the flags it
    was made with (else it reads the text), hence one directory per flag set;
    a failed precompile leaves the text header, which works the same, slower."""
    key = cache_key(UNIT_PRELUDE, header_bytes(), cc, " ".join(flags))[:16]
    dirs = [os.path.join(d, "unit-" + key) for d in (rt.header_dir, environment_cache().private_dir("runtime"))
            if d is not None]
    for d in dirs:
        if _intact(os.path.join(d, "sf_unit.h")):
            if os.path.exists(os.path.join(d, "sf_unit.h.gch")) and not _intact(os.path.join(d, "sf_unit.h.gch")):
                break                  # a damaged precompiled header: build both again
            return d, 0.0
    for d in dirs:
        if _writable_dir(d):
            t0 = time.perf_counter()
            _precompile_prelude(cc, flags, d, rt.header_dir)
            return d, time.perf_counter() - t0
    return None, 0.0


def _precompile_prelude(cc: str, flags, out: str, api_dir: str) -> None:
    import tempfile  # lazy: only a build needs it
    import subprocess  # lazy: only a build needs it
    header = os.path.join(out, "sf_unit.h")
    fd, tmp = tempfile.mkstemp(suffix=".h", prefix=".tmp-", dir=out)
    with os.fdopen(fd, "w") as fh:
        fh.write(UNIT_PRELUDE)
    os.chmod(tmp, 0o644)             # like the library: readable by every user of the installation
    tmp_gch = tmp + ".gch"
    proc = subprocess.run([cc, "-x", "c-header", tmp, "-o", tmp_gch, "-I", INCLUDE_DIR, "-I", api_dir, *flags],
                          capture_output=True, text=True)
    if proc.returncode == 0:      # the precompiled header first: whoever sees sf_unit.h sees its .gch too
        if not _install(tmp_gch, header + ".gch"):
            os.remove(tmp_gch)
    else:
        log.warning("symfuse: precompiling the unit header failed (%s); units parse it as text:\n%s",
                    cc, proc.stderr[-2000:])
        if os.path.exists(tmp_gch):
            os.remove(tmp_gch)
        try:
            os.remove(header + ".gch")     # a stale one would be used with the new text
        except OSError:
            pass
    if not _install(tmp, header):
        os.remove(tmp)


if __name__ == "__main__":   # python -m symfuse.runtime.c_runtime: build it ahead of the first compile
    found = find_compiler()
    lib = runtime_library(*found) if found else None
    print(lib.path if lib else "no runtime library (units include runtime.h)")
