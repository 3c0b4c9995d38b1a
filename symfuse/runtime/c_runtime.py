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

Location: ``pip install`` builds it into ``symfuse/_build/<key>/`` (``setup.py``
runs ``rt_recipe.prebuild``; the wheel's RECORD lists it, so ``pip uninstall``
removes it), and the first compile does not wait ~5 s for it. Without that
build (no compiler at install time, another compiler now, a damaged file) it is
built at run time into the compile cache's ``runtime/<key>/``: the run time
never writes into the installation, whose files uninstall could not know of.
The directory name is the recipe's key (header, compiler, flags, OpenBLAS's
name, CPU), so a stale build is never picked up and the install-time build is
found although it was linked in pip's build environment.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

from ..errors import CompileError
from ..install_dirs import BUILD_DIR, C_TEMPLATE_DIR as INCLUDE_DIR
from . import rt_recipe
from .cache import cache_key, environment_cache, warn_once
from .shared_object import Recipe, SharedObject, in_directory, installed, intact, put_file
from .toolchain import blas_lib_dir, blas_library, find_compiler, load_with_single_threaded_blas

log = logging.getLogger("symfuse.cpu")

BUILD_SECONDS_HINT = 5        # on a 2-core machine; shown before the one-time build starts
LIBRARY_FLAGS = list(rt_recipe.LIBRARY_FLAGS)
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


def run_time_dir() -> str | None:
    """Where the run time builds what the installation lacks: the compile cache's
    ``runtime/`` (None when the cache is not private)."""
    return environment_cache().private_dir("runtime")


def _locations(sub: str) -> list:
    """``sub`` of the installation's build directory (looked in only), then of the cache's."""
    d = run_time_dir()
    return [installed(os.path.join(PACKAGE_BUILD_DIR, sub))] + ([in_directory(os.path.join(d, sub))] if d else [])


@functools.lru_cache(maxsize=None)
def header_bytes() -> bytes:
    """runtime.h and kernel.h: what a build or a unit depends on besides its own text."""
    return rt_recipe.header_bytes(INCLUDE_DIR)


@functools.lru_cache(maxsize=None)
def preload_blas() -> None:
    """Load the wheel's OpenBLAS into the process before the runtime library: the
    library names it by soname only (its run path is a hint relative to an
    installed package), and a loaded soname satisfies that dependency."""
    load_with_single_threaded_blas(blas_library())


@functools.lru_cache(maxsize=None)
def runtime_library(cc: str, ccver: str) -> RuntimeLibrary | None:
    """The built library for compiler ``cc`` (building it if needed), or None
    when this compiler cannot produce the API header."""
    if "clang" in ccver.lower():   # no -aux-info
        return None
    key = rt_recipe.library_key(header_bytes(), ccver, rt_recipe.cpu_identity())
    # header first, library last: readers test for the library, so they never see half a build
    lib = SharedObject(rt_recipe.LIBRARY_NAME, _locations(key), companions=(rt_recipe.API_HEADER,))
    preload_blas()
    found = lib.find()
    if found is not None:
        return RuntimeLibrary(found.path, os.path.dirname(found.path), key)
    if lib.place() is None:
        log.warning("symfuse: no writable directory for the C runtime library; compiling it into each unit")
        return None
    warn_once(f"symfuse: building the C runtime library once for this installation and compiler "
              f"(~{BUILD_SECONDS_HINT} s) in {lib.place()}")
    t0 = time.perf_counter()
    command = rt_recipe.compile_command(cc, INCLUDE_DIR, blas_lib_dir())
    recipe = Recipe(cc, ((rt_recipe.SOURCE_NAME, rt_recipe.SOURCE),), tuple(command[4:]),
                    output=rt_recipe.LIBRARY_NAME, what="building the C runtime library")
    try:
        built = lib.build(recipe, finish=_write_api_header, keep_failed=False)
    except CompileError as e:
        log.warning("symfuse: building the C runtime library failed (%s); compiling it into each unit:\n%s",
                    cc, _compiler_output(e))
        return None
    built.done()
    if not built.stored:
        return None
    return RuntimeLibrary(built.path, os.path.dirname(built.path), key, time.perf_counter() - t0)


def _compiler_output(e: CompileError) -> str:
    """What the compiler said, without the build directory the message names (removed)."""
    return str(e).split("\n", 1)[-1][-2000:]


def _write_api_header(work: str) -> None:
    """``sf_runtime_api.h``: the prototypes of the library's exported functions,
    from what ``-aux-info`` wrote of the build."""
    try:
        with open(os.path.join(work, "aux.h")) as fh:
            api = rt_recipe.api_header(fh)
    except OSError:
        raise CompileError("building the C runtime library failed: the compiler wrote no -aux-info") from None
    with open(os.path.join(work, rt_recipe.API_HEADER), "w") as fh:
        fh.write(api)


UNIT_PRELUDE = rt_recipe.UNIT_PRELUDE


@functools.lru_cache(maxsize=None)
def unit_prelude(rt: RuntimeLibrary, cc: str, flags: tuple[str, ...]) -> tuple[str | None, float]:
    """(directory holding ``sf_unit.h`` for units compiled with ``flags``, or None
    when none can be written; seconds spent building it here). The header is
    precompiled next to itself: parsing math.h, tgmath.h and the prelude cost
    each unit's compiler process ~30 ms of its ~0.2 s, and a LeNet-5 step
    compiles two units. gcc uses a precompiled header only with the flags it
    was made with (else it reads the text), hence one directory per flag set;
    a failed precompile leaves the text header, which works the same, slower."""
    # the library's directory is named by its key rather than its path: the same build
    # lies in the installation or in a cache that was copied, and its API header is the same
    key = cache_key(UNIT_PRELUDE, header_bytes(), cc, " ".join(rt.key if f == rt.header_dir else f for f in flags))[:16]
    # beside an installed library when pip precompiled it there (rt_recipe.prebuild_prelude);
    # what the run time builds goes into the cache, never into the installation
    installed_dir = os.path.join(rt.header_dir, "unit-" + key)
    if os.path.realpath(rt.header_dir).startswith(os.path.realpath(PACKAGE_BUILD_DIR) + os.sep) \
            and intact(os.path.join(installed_dir, "sf_unit.h")) and intact(os.path.join(installed_dir, "sf_unit.h.gch")):
        return installed_dir, 0.0
    dirs = [os.path.join(d, "unit-" + key) for d in (run_time_dir(),) if d is not None]
    for d in dirs:
        if intact(os.path.join(d, "sf_unit.h")):
            if os.path.exists(os.path.join(d, "sf_unit.h.gch")) and not intact(os.path.join(d, "sf_unit.h.gch")):
                break                  # a damaged precompiled header: build both again
            return d, 0.0
    pch = SharedObject("sf_unit.h.gch", map(in_directory, dirs), companions=("sf_unit.h",))
    d = pch.place()
    if d is None:
        return None, 0.0
    t0 = time.perf_counter()
    recipe = Recipe(cc, (("sf_unit.h", UNIT_PRELUDE),), ("-I", INCLUDE_DIR, "-I", rt.header_dir, *flags),
                    output="sf_unit.h.gch", language="c-header", what="precompiling the unit header")
    try:
        pch.build(recipe, keep_failed=False).done()
    except CompileError as e:
        log.warning("symfuse: precompiling the unit header failed (%s); units parse it as text:\n%s",
                    cc, _compiler_output(e))
        try:
            os.remove(os.path.join(d, "sf_unit.h.gch"))     # a stale one would be used with the new text
        except OSError:
            pass
        put_file(os.path.join(d, "sf_unit.h"), UNIT_PRELUDE.encode(), environment_cache())
    return d, time.perf_counter() - t0


if __name__ == "__main__":   # python -m symfuse.runtime.c_runtime: build it ahead of the first compile
    found = find_compiler()
    lib = runtime_library(*found) if found else None
    print(lib.path if lib else "no runtime library (units include runtime.h)")
