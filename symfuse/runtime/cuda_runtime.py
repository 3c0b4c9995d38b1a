"""The precompiled CUDA runtime library: the kernels of
``codegen/cuda_lib_kernels.LIB_KERNELS`` (matmul, conv2d and both gradients, the
split-K sum, pooling, one_hot, the warp-per-row softmax family) with their sizes
as kernel arguments, compiled once per installation, NVRTC and arch -- the CUDA
counterpart of ``c_runtime.py``.

Why: NVRTC spends 0.1-0.25 s on each shape-specialised tiled GEMM, so they
dominated every cold compile of a model; compiled once (like cuBLAS/CUTLASS
kernels), a function's NVRTC units hold only its fused kernels and the cheap
specialised library kernels, and launch these by name.

* ``device="cuda"``: :func:`library` gives the CUBIN images (the kernels
  split into a few parts compiled in parallel threads) and the ptxas resources
  of every kernel, in one file ``nvrtc-<arch>-<key>.lib``: a magic line, the
  SHA-256 of the payload, then the payload (JSON header: image sizes, ptxas
  logs, kernel -> image; then the images). Written atomically; a file whose
  checksum does not match is rebuilt.
* ``device="cuda-emu"``: :func:`emu_library` compiles the same kernels with the
  emulator's host compiler into their own shared object (``cuda_emu``'s build
  and naming, in the library's directory).

Location: the compile cache's ``runtime/cuda-<key>/`` (``cache prune`` and
``cache clear`` keep it: compiles beside them use it); never the installed package, which holds only what
``pip install`` put there, so that ``pip uninstall`` removes everything.
``<key>`` hashes the library's sources and headers, so a stale build is never
picked up.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import struct
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .cache import cache_key, environment_cache
from .toolchain import VERSION, nvrtc_identity, workers

LIB_VERSION = "1"
MAGIC = b"SFCUDALIB1\n"
_lock = threading.Lock()          # one build at a time per process
_loaded: dict = {}                # path -> ((mtime_ns, size), CudaLibrary): a file is read once while unchanged


def build_dirs() -> list[str]:
    """Where the library may live, in order of preference (tests replace this)."""
    cache_dir = environment_cache().private_dir("runtime")   # only a private cache
    return [cache_dir] if cache_dir is not None else []


def _template_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates", "cuda")


@functools.lru_cache(maxsize=None)
def parts() -> tuple[tuple[str, ...], ...]:
    """The library kernels in NVRTC units of balanced cost (GEMMs weigh 8, the
    rest 1), as many as the build has CPUs for, at most 4."""
    from ..codegen.cuda_lib_kernels import LIB_GEMM, LIB_KERNELS
    n = max(1, min(4, workers()))
    load, units = [0] * n, [[] for _ in range(n)]
    for name, k in LIB_KERNELS.items():
        u = min(range(n), key=load.__getitem__)
        load[u] += 8 if k.family in LIB_GEMM else 1
        units[u].append(name)
    return tuple(tuple(u) for u in units if u)


@functools.lru_cache(maxsize=None)
def sources() -> tuple[str, ...]:
    from ..codegen.cuda_module import library_source
    return tuple(library_source(names, part=i, version=VERSION) for i, names in enumerate(parts()))


@functools.lru_cache(maxsize=None)
def source_key() -> str:
    """What the library's code depends on: the kernel table (the module that
    defines it), the templates that render it and the headers they include --
    read as bytes, not imported or rendered: a warm compile asks for the key.
    How the kernels are split into parts is not part of it (the file maps each
    kernel to its image)."""
    d = _template_dir()
    files = b""
    for path in [os.path.join(d, n) for n in ("runtime.cuh", "prelude.cuh", "lib_kernel.cu.j2", "lib.cu.j2")] + \
            [os.path.join(os.path.dirname(d), "..", "codegen", "cuda_lib_kernels.py")]:
        with open(path, "rb") as fh:
            files += fh.read()
    return cache_key(files, VERSION, LIB_VERSION)[:20]


@dataclass
class CudaLibrary:
    arch: str
    path: str
    images: list[bytes]               # CUBIN per part
    kernel_image: dict[str, int]      # kernel name -> index into images
    logs: list[str]                   # ptxas -v log per part
    build_seconds: float = 0.0        # > 0 when this process built it
    _resources: dict | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return os.path.basename(self.path)

    def image(self, kernel: str) -> bytes:
        return self.images[self.kernel_image[kernel]]

    @property
    def resources(self) -> dict:
        """Kernel name -> nvrtc.KernelResources, from the ptxas logs kept with the images."""
        if self._resources is None:
            from .nvrtc import parse_ptxas_log
            self._resources = {n: r for log in self.logs for n, r in parse_ptxas_log(log).items()}
        return self._resources


def _file_name(arch: str) -> str:
    return f"nvrtc-{arch}-{cache_key(nvrtc_identity(), arch, source_key())[:16]}.lib"


def _candidates(arch: str) -> list[str]:
    sub, name = "cuda-" + source_key(), _file_name(arch)
    return [os.path.join(d, sub, name) for d in build_dirs()]


def _pack(images, logs, kernel_image) -> bytes:
    meta = json.dumps({"sizes": [len(im) for im in images], "logs": logs, "kernels": kernel_image}).encode()
    payload = struct.pack(">I", len(meta)) + meta + b"".join(images)
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _read(path: str, arch: str) -> CudaLibrary | None:
    """The library in ``path``, or None when it is missing, truncated or corrupt."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    got = _loaded.get(path)
    if got is not None and got[0] == stamp:
        return got[1]
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
        head = len(MAGIC) + 65
        if not blob.startswith(MAGIC) or hashlib.sha256(blob[head:]).hexdigest().encode() != blob[len(MAGIC):head - 1]:
            return None
        payload = blob[head:]
        (n,) = struct.unpack_from(">I", payload)
        meta = json.loads(payload[4:4 + n])
        images, at = [], 4 + n
        for size in meta["sizes"]:
            images.append(payload[at:at + size])
            at += size
        if at != len(payload) or not all(im[:4] == b"\x7fELF" for im in images):
            return None
        lib = CudaLibrary(arch, path, images, dict(meta["kernels"]), list(meta["logs"]))
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    _loaded[path] = (stamp, lib)
    return lib


def find_library(arch: str) -> CudaLibrary | None:
    """The built library for ``arch``, without building it (a graph-cache hit
    needs it and must not compile)."""
    for path in _candidates(arch):
        lib = _read(path, arch)
        if lib is not None:
            return lib
    return None


def library(arch: str) -> CudaLibrary:
    """The library for ``arch``, built (NVRTC, parts in parallel threads) if it
    is missing or corrupt."""
    lib = find_library(arch)
    if lib is not None:
        return lib
    with _lock:
        lib = find_library(arch)          # another thread may have built it meanwhile
        if lib is not None:
            return lib
        return _build(arch)


def _build(arch: str) -> CudaLibrary:
    from . import nvrtc
    t0 = time.perf_counter()
    srcs = sources()
    compile_one = functools.partial(nvrtc.compile_cuda, arch=arch, include_dirs=[_template_dir()], cache=False)
    names = [f"symfuse_cuda_library_{i}" for i in range(len(srcs))]
    with ThreadPoolExecutor(len(srcs)) as pool:      # NVRTC releases the GIL
        results = list(pool.map(compile_one, srcs, names))
    images = [r.cubin for r in results]
    kernel_image = {n: i for i, names_ in enumerate(parts()) for n in names_}
    blob = _pack(images, [r.log for r in results], kernel_image)
    for path in _candidates(arch):
        d = os.path.dirname(path)
        try:
            os.makedirs(d, mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".build-", dir=d)
        except OSError:
            continue                      # read-only package directory: try the cache
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)         # atomic: readers see no file or a complete one
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass
            continue
        lib = _read(path, arch)
        if lib is not None:     # a copy: the one _read keeps for later lookups was found, not built
            return dataclasses.replace(lib, build_seconds=time.perf_counter() - t0)
    # nowhere to write: keep it in memory for this process
    return CudaLibrary(arch, "", images, kernel_image, [r.log for r in results], time.perf_counter() - t0)


# ------------------------------------------------------------------ cuda-emu
_emu: dict = {}


def emu_library():
    """(EmuModule of every library kernel, built now?) for device="cuda-emu":
    the library source compiled by the emulator's host compiler into a shared
    object beside the NVRTC builds (cuda_emu names it by the hash of source,
    header, compiler and flags)."""
    from .cuda_emu import EmuModule
    with _lock:
        mod = _emu.get("mod")
        if mod is not None:         # loaded (and checked) once per process
            return mod, False
        dirs = [os.path.join(d, "cuda-" + source_key()) for d in build_dirs()]
        mod = EmuModule("\n".join(sources()), name="symfuse_cuda_library", include_dirs=[_template_dir()],
                        lib_dirs=dirs)
        _emu["mod"] = mod
        return mod, not mod.cache_hit


if __name__ == "__main__":   # python -m symfuse.runtime.cuda_runtime sm_90 [sm_80 ...]: build ahead of time
    import sys
    for a in sys.argv[1:] or ["sm_90"]:
        lib = library(a)
        print(a, lib.path or "(in memory)", f"built in {lib.build_seconds:.2f} s" if lib.build_seconds else "found")
