"""How the C runtime library is built and named: the one recipe shared by the
run-time build (``c_runtime.py``) and the install-time build (``setup.py``).

Why a module of its own, with the standard library only and no package-relative
imports: ``setup.py`` loads this file by path inside pip's isolated build
environment, where symfuse's dependencies (numpy, jinja2, ...) are absent. The
library built there must carry the same key that a run-time lookup computes, so
the key, the flags and the source are defined here once.

The key names what the library's bytes depend on and nothing about where things
lie: the header text, the compiler, the flags, the OpenBLAS library's name (its
ABI; the wheel's directory differs between the build environment and the
installation) and the CPU, since ``-march=native`` makes the code this CPU's. A
library built for another CPU (an installation copied elsewhere) is a miss and
is rebuilt, never loaded.
"""
from __future__ import annotations

import hashlib
import os
import struct

COMPILER_ENV = "CC"
COMPILER_NAMES = ("cc", "gcc", "clang")
LIBRARY_NAME = "libsymfuse_rt.so"
API_HEADER = "sf_runtime_api.h"
BLAS_LIBRARY = "scipy_openblas"
# Where OpenBLAS lies relative to the library in an installed package
# (site-packages/symfuse/_build/<key>/ beside site-packages/scipy_openblas32/lib):
# a hint only, since symfuse loads OpenBLAS before any unit (c_runtime.preload_blas).
BLAS_RUN_PATH = "-Wl,-rpath,$ORIGIN/../../../scipy_openblas32/lib"
LIBRARY_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11", "-fno-math-errno")
LINK_FLAGS = (f"-l{BLAS_LIBRARY}", BLAS_RUN_PATH, "-lm")
# how the cpu backend compiles a function's unit (runtime/cpu.py), and the header every unit
# includes first, precompiled with the units' flags (c_runtime.unit_prelude)
UNIT_FLAGS = ("-O2", "-ftree-vectorize", "-fvect-cost-model=very-cheap", "-fno-trapping-math", "-march=native",
              "-fopenmp", "-shared", "-fPIC", "-std=gnu11", "-fno-math-errno")
UNIT_PRELUDE = ("/* What every generated C unit includes first: the kernel prelude and the\n"
                " * prebuilt runtime library's API. Precompiled (sf_unit.h.gch) with the units' flags. */\n"
                "#include <stdint.h>\n#include <math.h>\n#include <tgmath.h>\n"
                "#include \"kernel.h\"\n#include \"sf_runtime_api.h\"\n")
SOURCE_NAME = "runtime_lib.c"
SOURCE = '#define SF_RUNTIME_LIBRARY 1\n#include "runtime.h"\n'
HEADERS = ("runtime.h", "kernel.h")


def key_of(*parts: str | bytes) -> str:
    """sha256 hex over the parts, each prefixed by its length, so that part
    boundaries matter: ("ab", "c") and ("a", "bc") give different keys. A str
    part hashes as its UTF-8 bytes. Every key of the compile cache (``cache_key``)."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else bytes(p)
        h.update(struct.pack(">Q", len(b)))
        h.update(b)
    return h.hexdigest()


def header_bytes(include_dir: str) -> bytes:
    out = b""
    for name in HEADERS:
        with open(os.path.join(include_dir, name), "rb") as fh:
            out += fh.read()
    return out


def cpu_identity() -> str:
    """The CPU model and feature flags of the first processor (what -march=native reads)."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "Processor", "cpu model") and not model:
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = value.strip()
                elif not line.strip() and (model or flags):
                    break
    except OSError:
        pass
    import platform
    return f"{platform.machine()}|{model}|{key_of(flags)[:16]}"


def library_key(headers: bytes, compiler_version: str, cpu: str) -> str:
    return key_of(headers, compiler_version, " ".join(LIBRARY_FLAGS + LINK_FLAGS), cpu)[:20]


def prelude_flags(api_dir: str) -> list[str]:
    """The flags a unit's object is compiled with (UNIT_FLAGS but the link's), which
    a precompiled header must have been made with."""
    return [f for f in UNIT_FLAGS if f != "-shared"] + ["-I", api_dir]


def prelude_key(headers: bytes, cc: str, library_key: str) -> str:
    """Names the precompiled prelude of a library: its text, the headers, the compiler
    and the flags (the library's directory named by its key, not its path)."""
    return key_of(UNIT_PRELUDE, headers, cc, " ".join(prelude_flags(library_key)))[:16]


def compile_command(cc: str, include_dir: str, blas_dir: str) -> list[str]:
    """Run in the build directory holding SOURCE_NAME; writes LIBRARY_NAME and aux.h."""
    return [cc, SOURCE_NAME, "-o", LIBRARY_NAME, "-I", include_dir, "-aux-info=aux.h",
            *LIBRARY_FLAGS, f"-L{blas_dir}", *LINK_FLAGS]


def api_header(aux_lines) -> str:
    """``sf_runtime_api.h``: the prototypes of the library's exported functions, from
    what gcc's ``-aux-info`` wrote of the build ("/* runtime.h:123:NF */ extern void
    sf_x (...); /* (...) ... */" for each definition)."""
    protos = []
    for line in aux_lines:
        if "runtime.h:" in line and "F */ extern" in line:
            decl = line.split("*/", 1)[1].split("/*", 1)[0].strip()
            if decl.split("(", 1)[0].split()[-1].lstrip("*").startswith("sf_"):
                protos.append(decl)
    return ("/* Exported by libsymfuse_rt (generated from runtime.h by gcc -aux-info). */\n"
            "#include <stddef.h>\n#include <stdint.h>\n" + "\n".join(protos) + "\n")


def find_compiler() -> tuple[str, str] | None:
    """(path, first line of ``--version``) of $CC, cc, gcc or clang."""
    import shutil
    import subprocess  # lazy: a warm compile reads keys only
    for name in filter(None, [os.environ.get(COMPILER_ENV), *COMPILER_NAMES]):
        path = shutil.which(name)
        if not path:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        return path, (out.splitlines()[0] if out else name)
    return None


def _sealed(path: str) -> bool:
    try:
        with open(path, "rb") as fh, open(path + ".sha256") as seal:
            return hashlib.sha256(fh.read()).hexdigest() == seal.read().strip()
    except OSError:
        return False


def prebuild(package_dir: str, blas_dir: str, log=print) -> str | None:
    """Build the library into ``package_dir/_build/<key>/`` as the run-time lookup
    expects it (library, API header, their ``.sha256`` seals): what ``setup.py`` runs
    so that the first compile after ``pip install`` does not wait for it. Returns the
    library's path, or None (with a message) when it cannot be built here; the
    installation then builds it on first use, as before."""
    found = find_compiler()
    if found is None:
        log("symfuse: no C compiler; the C runtime library will be built on first use")
        return None
    cc, version = found
    if "clang" in version.lower():       # no -aux-info: units include runtime.h whole
        return None
    package_dir = os.path.abspath(package_dir)   # the compiler runs in the build directory
    include_dir = os.path.join(package_dir, "templates", "c")
    key = library_key(header_bytes(include_dir), version, cpu_identity())
    out_dir = os.path.join(package_dir, "_build", key)
    if all(_sealed(os.path.join(out_dir, name)) for name in (API_HEADER, LIBRARY_NAME)):
        return os.path.join(out_dir, LIBRARY_NAME)

    def write_api_header(work):
        with open(os.path.join(work, "aux.h")) as fh:
            header = api_header(fh)
        with open(os.path.join(work, API_HEADER), "w") as fh:
            fh.write(header)
    # the library last: readers test for it
    ok = _build_sealed(os.path.join(package_dir, "_build", f".prebuild-{key}"), {SOURCE_NAME: SOURCE},
                       compile_command(cc, include_dir, blas_dir), out_dir, (API_HEADER, LIBRARY_NAME),
                       "building the C runtime library", log, finish=write_api_header)
    return os.path.join(out_dir, LIBRARY_NAME) if ok else None


def prebuild_prelude(library: str, cc: str, log=print) -> str | None:
    """The precompiled unit prelude of the installed ``library`` (``prebuild``'s),
    beside it in ``unit-<key>/``: built at install time too, because a cold compile
    with a fresh cache would otherwise precompile it first (~0.1 s of ~0.3 s)."""
    lib_dir = os.path.dirname(os.path.abspath(library))
    package_dir = os.path.dirname(os.path.dirname(lib_dir))
    include_dir = os.path.join(package_dir, "templates", "c")
    key = prelude_key(header_bytes(include_dir), cc, os.path.basename(lib_dir))
    out_dir = os.path.join(lib_dir, "unit-" + key)
    if all(_sealed(os.path.join(out_dir, n)) for n in ("sf_unit.h", "sf_unit.h.gch")):
        return out_dir
    cmd = [cc, "-x", "c-header", "sf_unit.h", "-o", "sf_unit.h.gch", "-I", include_dir, *prelude_flags(lib_dir)]
    # the header itself last: readers test for it
    ok = _build_sealed(os.path.join(lib_dir, ".prebuild-unit"), {"sf_unit.h": UNIT_PRELUDE}, cmd, out_dir,
                       ("sf_unit.h.gch", "sf_unit.h"), "precompiling the unit header", log)
    return out_dir if ok else None


def _build_sealed(work: str, sources: dict, cmd: list, out_dir: str, products: tuple, what: str, log,
                  finish=None) -> bool:
    """Run ``cmd`` in a fresh ``work`` holding ``sources``, then move ``products`` into
    ``out_dir`` in order, each with the ``.sha256`` seal the run-time lookup checks."""
    import shutil
    import subprocess  # lazy: a warm compile reads keys only
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        for name, text in sources.items():
            with open(os.path.join(work, name), "w") as fh:
                fh.write(text)
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            log(f"symfuse: {what} failed; it is done on first use instead:\n" + (proc.stderr or proc.stdout)[-2000:])
            return False
        if finish is not None:
            finish(work)
        os.makedirs(out_dir, exist_ok=True)
        for name in products:
            with open(os.path.join(work, name), "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            with open(os.path.join(out_dir, name + ".sha256"), "w") as fh:
                fh.write(digest)
            os.replace(os.path.join(work, name), os.path.join(out_dir, name))
            os.chmod(os.path.join(out_dir, name), 0o755 if name.endswith(".so") else 0o644)
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)
