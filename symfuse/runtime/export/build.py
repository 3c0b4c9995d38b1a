"""Building an export's shared objects and gathering the libraries they need,
so that the directory works wherever it is copied, without Python.

Every object in the directory finds its dependencies through ``$ORIGIN``: the
function's library needs ``libsymfuse_rt.so`` and OpenBLAS, the runtime library
needs OpenBLAS. The installation's runtime library cannot be copied: its run path
is the absolute directory of the scipy-openblas32 wheel, which a copy elsewhere
would still (wrongly) depend on. So the runtime is built once more with the same
flags and a ``$ORIGIN`` run path, once per installation and compiler (in the
compile cache's ``runtime/``), and copied into each export.

libgomp (gcc's OpenMP runtime) stays a system library when the compiler's copy
lies in a system library directory (Debian/Ubuntu ``libgomp1``, installed with
gcc and by many packages); a compiler elsewhere (a toolchain in /opt, conda) has
its libgomp copied into the directory.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from ...errors import CompileError
from ...install_dirs import C_TEMPLATE_DIR
from ..c_runtime import LIBRARY_FLAGS, UNIT_PRELUDE, header_bytes, run_time_dir, runtime_library
from ..cache import cache_key
from ..shared_object import Recipe, SharedObject, compile_in, in_directory
from ..toolchain import blas_library, blas_link_flags, find_compiler  # noqa: F401  (blas_library: the export copies it)

ORIGIN = "-Wl,-rpath,$ORIGIN"
SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
# the function's code is compiled as the cpu backend compiles it (runtime/cpu.py FAST_FLAGS), with
# everything but the API hidden: two exported models in one process never see each other's sf_entry
EXPORT_FLAGS = ("-fvisibility=hidden",)


def toolchain():
    """(compiler path, its version line); CompileError when there is none."""
    found = find_compiler()
    if found is None:
        raise CompileError("export needs a C compiler (cc, gcc or clang on PATH, or $CC)")
    return found


def _blas_flags_origin() -> list[str]:
    """Link OpenBLAS by its name only: the run path is $ORIGIN, not the wheel's directory."""
    return [f for f in blas_link_flags() if not f.startswith("-Wl,-rpath")]


def export_runtime(cc: str, ccver: str) -> str | None:
    """``libsymfuse_rt.so`` with a ``$ORIGIN`` run path (built here once), or None
    when this compiler has no prebuilt runtime (clang: units include it whole)."""
    if runtime_library(cc, ccver) is None:
        return None
    flags = LIBRARY_FLAGS + _blas_flags_origin() + [ORIGIN, "-Wl,-soname,libsymfuse_rt.so"]
    key = cache_key(header_bytes(), ccver, " ".join(flags))[:20]
    d = run_time_dir()
    lib = SharedObject("libsymfuse_rt.so", [in_directory(os.path.join(d, "export-" + key))] if d else [])
    found = lib.find()
    if found is not None:
        return found.path
    recipe = Recipe(cc, (("runtime_lib.c", '#define SF_RUNTIME_LIBRARY 1\n#include "runtime.h"\n'),),
                    ("-I", C_TEMPLATE_DIR, *flags, "-lm"), output="libsymfuse_rt.so",
                    what="building the C runtime library for export")
    built = lib.build(recipe, keep_failed=False)
    if not built.stored:          # no writable build directory: keep this process's copy
        keep = os.path.join(os.path.dirname(built.work), "libsymfuse_rt.export.so")
        shutil.copyfile(built.path, keep)
        built.done()
        return keep
    built.done()
    return built.path


def variant_source(module_source: str, names, value: int) -> str:
    """The unit again with every run-time size the literal ``value`` and its entry
    named ``sf_entry_<value>`` (``specialize=``): the C compiler folds the size in."""
    head = "".join(f"#define SF_FIXED_{n} {int(value)}\n" for n in names)
    return head + f"#define sf_entry sf_entry_{int(value)}\n" + module_source


def build_library(out_path: str, name: str, module_source: str, api_source: str, header: str,
                  cc: str, ccver: str, cpu_flags, variants=()) -> None:
    """``lib<name>.so``: the function's unit and its API, compiled as two units at
    once; ``variants``: (value, source) of the unit's literal-size builds, more units."""
    rt = runtime_library(cc, ccver)
    uses_rt = '#include "sf_unit.h"' in module_source
    flags = ["-I", C_TEMPLATE_DIR, "-I", "."]
    if uses_rt:
        flags += ["-I", rt.header_dir]
    flags += [f for f in cpu_flags] + list(EXPORT_FLAGS)
    link = ([f"-L{os.path.dirname(os.path.abspath(out_path))}", "-l:libsymfuse_rt.so"] if uses_rt else []) + _blas_flags_origin()
    extra = tuple((f"module_{value}.c", src) for value, src in variants)
    sources = (("module.c", module_source), ("api.c", api_source), *extra, (f"{name}.h", header))
    if uses_rt:     # the one header a unit includes first (precompiled for the cpu backend; text here)
        sources += (("sf_unit.h", UNIT_PRELUDE),)
    recipe = Recipe(cc, sources, tuple(flags + link + [ORIGIN, "-ldl", "-lm", "-lpthread"]), output="lib.so",
                    units=("module.c", "api.c", *(f for f, _ in extra)), what=f"building lib{name}.so")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="symfuse-export-") as work:
        tmp = out_path + ".tmp"
        shutil.copyfile(compile_in(recipe, work), tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out_path)       # a program running the old library keeps its mapping intact


def libgomp_path(cc: str) -> str | None:
    """gcc's libgomp.so.1 when it is not a system library (then it is copied), else None."""
    try:
        out = subprocess.run([cc, "-print-file-name=libgomp.so.1"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not os.path.isabs(out) or not os.path.exists(out):
        return None
    real = os.path.realpath(out)
    if any(real.startswith(d + "/") for d in SYSTEM_LIB_DIRS):
        return None
    return real


def resolved_march(cc: str) -> str:
    """What -march=native means on this machine (e.g. "skylake-avx512"): the CPUs the export runs on."""
    try:
        out = subprocess.run([cc, "-march=native", "-Q", "--help=target"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "native"
    m = re.search(r"^\s*-march=\s*(\S+)", out, re.M)
    return m.group(1) if m else "native"
