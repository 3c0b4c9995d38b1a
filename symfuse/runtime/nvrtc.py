"""CUDA C++ -> CUBIN or PTX in-process with NVRTC, cached on disk, with
ptxas resource usage (registers, shared memory, spills) for every kernel.

    r = compile_cuda(src, "fused_add", arch="sm_90")
    r.cubin                      # ELF bytes for cuModuleLoadData
    r.resources["fused_add"]     # KernelResources(registers=12, ...)
    ptx_for(src, "fused_add", arch="sm_90")   # PTX text, for reading

NVRTC comes from the ``cuda-bindings`` and ``nvidia-cuda-nvrtc`` wheels
(cuda-bindings finds libnvrtc in the wheel through cuda-pathfinder). It is
imported lazily, so ``import symfuse`` works without them; no GPU or driver is
needed to compile.

PTX: a cubin compile returns ``ptx=None``. Call :func:`ptx_for` (or
``compile_cuda(..., output="ptx")``) when you want to read the PTX: it
compiles for the virtual ``compute_XY`` arch, which skips ptxas, and is cached
separately. (NVRTC 13 would also hand out PTX after an ``sm_XY`` compile, but
keeping it would double every cache entry for text that is rarely read.)

SASS: :func:`sass` runs ``nvdisasm`` from the ``nvidia-cuda-nvdisasm`` wheel
(or PATH) on a cubin.

Cache: namespace ``nvrtc`` of :class:`DiskCache`; the key covers the source,
in-memory headers, a stat fingerprint of the include dirs, arch, output, the
options, the NVRTC version and the symfuse version. An entry holds the
artefact *and* the ptxas log, so resources are known on a hit, which makes no
NVRTC call at all (:data:`NVRTC_CALLS` counts ``nvrtcCompileProgram`` calls).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import CompileError
from ..compiler.kernel_info import KernelResources
from .cache import DiskCache, cache_key, environment_cache

NAMESPACE = "nvrtc"
NVRTC_CALLS = 0            # nvrtcCompileProgram calls made by this process
_calls_lock = threading.Lock()
_INSTALL = "pip install 'symfuse[cuda]'"
_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)([af]?)$")   # sm_90, sm_90a, compute_100f, ...


# --------------------------------------------------------------------- NVRTC

def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        raise CompileError(f"NVRTC is not available ({e}); install it with `{_INSTALL}`") from e
    return nvrtc


def _check(result, what: str):
    """Unpack a cuda-bindings ``(status, *values)`` tuple, raising on failure."""
    nvrtc = _nvrtc()
    status, *values = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise CompileError(f"{what} failed: {status.name}")
    return values[0] if len(values) == 1 else tuple(values)


@functools.lru_cache(maxsize=None)
def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the loaded libnvrtc."""
    nvrtc = _nvrtc()
    try:
        return tuple(_check(nvrtc.nvrtcVersion(), "nvrtcVersion"))
    except CompileError:
        raise
    except (RuntimeError, OSError) as e:   # cuda-pathfinder could not find or load libnvrtc
        raise CompileError(f"cannot load libnvrtc ({e}); install it with `{_INSTALL}`") from e


@functools.lru_cache(maxsize=None)
def _supported_numbers() -> tuple[int, ...]:
    nvrtc_version()                                   # a clear error if libnvrtc is missing
    return tuple(_check(_nvrtc().nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs"))


def supported_archs() -> list[str]:
    """Real architectures this NVRTC can compile for, e.g. ['sm_75', 'sm_80', ...].
    The matching compute_XY and the arch-specific sm_XYa/sm_XYf variants work too."""
    return [f"sm_{n}" for n in _supported_numbers()]


def _validate_arch(arch: str, output: str) -> str:
    """The arch NVRTC is given: sm_XY for a cubin, compute_XY for PTX (no ptxas run)."""
    m = _ARCH_RE.match(arch)
    if not m or int(m.group(2)) not in _supported_numbers():
        raise CompileError(f"unsupported CUDA arch {arch!r} for NVRTC {'.'.join(map(str, nvrtc_version()))}; "
                           f"supported: {', '.join(supported_archs())} (or compute_XY / sm_XYa variants)")
    kind, num, suffix = m.groups()
    if output == "cubin":
        if kind == "compute":
            raise CompileError(f"a cubin needs a real architecture (sm_{num}{suffix}), not {arch}")
        return arch
    return f"compute_{num}{suffix}"


# ----------------------------------------------------------- ptxas -v parsing

_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)'")
_PROPS_RE = re.compile(r"Function properties for (\S+)")
_FRAME_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED_RE = re.compile(r"ptxas\s+info\s*:\s*Used (\d+) registers(.*)")
_ITEM_RE = re.compile(r"^(?:used (\d+) barriers|(\d+) bytes (smem|lmem|cmem\[(\d+)\])|(\d+) bytes (.+))$")


def parse_ptxas_log(log: str) -> dict[str, KernelResources]:
    """Resources of each entry function (kernel) in a ``ptxas -v`` log, keyed by
    the symbol name as ptxas prints it (mangled, or plain for ``extern "C"``).

    A "Used N registers" line belongs to the latest "Compiling entry function";
    a stack-frame line to the latest "Function properties for" -- which may come
    before or after its entry line, and may name a non-inlined device function
    (those are not kernels and are left out of the result).
    """
    used: dict[str, KernelResources] = {}
    frames: dict[str, tuple[int, int, int]] = {}
    entries: list[str] = []
    entry = props = None
    for line in log.splitlines():
        if m := _ENTRY_RE.search(line):
            entry = m.group(1)
            if entry not in entries:
                entries.append(entry)
        elif m := _PROPS_RE.search(line):
            props = m.group(1)
        elif m := _FRAME_RE.search(line):
            if props is not None:
                frames[props] = tuple(map(int, m.groups()))
        elif m := _USED_RE.search(line):
            owner = entry if entry is not None else props     # lenient: a log without entry lines
            if owner is None:
                continue
            if owner not in entries:
                entries.append(owner)
            r = used[owner] = KernelResources(registers=int(m.group(1)))
            for item in filter(None, (s.strip() for s in m.group(2).split(","))):
                if not (i := _ITEM_RE.match(item)):
                    continue
                barriers, n, kind, bank, n_other, what = i.groups()
                if barriers is not None:
                    r.barriers = int(barriers)
                elif kind == "smem":
                    r.shared_bytes = int(n)
                elif kind == "lmem":
                    r.local_bytes = int(n)
                elif bank is not None:
                    r.cmem[int(bank)] = int(n)
                else:
                    r.other[what] = int(n_other)
            r.const_bytes = sum(r.cmem.values())
    out = {}
    for name in entries:
        r = used.get(name) or KernelResources()
        if name in frames:
            r.stack_bytes, r.spill_stores, r.spill_loads = frames[name]
        out[name] = r
    return out


# ------------------------------------------------------------------ compiling

@dataclass
class NvrtcResult:
    name: str
    arch: str                 # the arch NVRTC compiled for (compute_XY for PTX output)
    cubin: bytes | None
    ptx: str | None
    log: str
    resources: dict[str, KernelResources]
    seconds: float            # wall time of this call (a cache lookup on a hit)
    cache_hit: bool

    @property
    def image(self) -> bytes:
        """What cuModuleLoadData takes: the cubin, or NUL-terminated PTX."""
        return self.cubin if self.cubin is not None else self.ptx.encode() + b"\0"


def _symfuse_version() -> str:
    try:
        from .. import __version__
        return __version__
    except ImportError:        # symfuse/__init__ still importing (a cycle): fall back to metadata
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("symfuse")
        except PackageNotFoundError:
            return "unknown"


def _include_fingerprint(include_dirs: Sequence[str]) -> str:
    """Paths, sizes and mtimes of every file under the include dirs: headers the
    source includes must invalidate the cache when they change, and which ones
    it includes is unknown before preprocessing. stat only, no reads: cheap."""
    parts = []
    for d in include_dirs:
        d = os.path.abspath(d)
        parts.append(d)
        for root, dirs, files in os.walk(d):
            dirs.sort()
            for f in sorted(files):
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                parts.append(f"{os.path.relpath(os.path.join(root, f), d)}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


# cache payload: >I length of a JSON header, the header, then the artefact
def _pack(log: str, cubin: bytes | None, ptx: str | None) -> bytes:
    body = cubin if cubin is not None else ptx.encode()
    meta = json.dumps({"log": log, "kind": "cubin" if cubin is not None else "ptx"}).encode()
    return struct.pack(">I", len(meta)) + meta + body


def _unpack(blob: bytes):
    try:
        (n,) = struct.unpack_from(">I", blob)
        meta = json.loads(blob[4:4 + n])
        body = blob[4 + n:]
        if meta["kind"] == "cubin":
            return meta["log"], body, None
        return meta["log"], None, body.decode()
    except (struct.error, ValueError, KeyError, TypeError):
        return None               # a payload of another layout: treat as a miss


def _save_failed(cache: DiskCache | None, key: str, name: str, source: str) -> str:
    """Keep a failed source for the user to look at: under the cache root (in a
    ``failed/xx/`` subdir, so prune and clear evict it like an entry) or a tempdir."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "program"
    d = cache.private_dir("failed", key[:2]) if cache is not None and cache.enabled else None
    if d is not None:
        try:
            path = os.path.join(d, f"{safe}-{key[:16]}.cu")
            with open(path, "w") as f:
                f.write(source)
            return path
        except OSError:
            pass
    fd, path = tempfile.mkstemp(prefix=f"symfuse-nvrtc-{safe}-", suffix=".cu")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    return path


def _get_buffer(prog, size_fn, get_fn, what, text: bool) -> bytes:
    size = _check(size_fn(prog), what + "Size")
    buf = b" " * size                  # cuda-bindings fills the bytes object in place
    _check(get_fn(prog, buf), what)
    # text comes NUL-terminated; a cubin is an ELF image whose trailing zeros are data
    return buf.rstrip(b"\0") if text else buf


def _run_nvrtc(source, name, output, options, headers) -> tuple[bytes | None, str | None, str, bool, str]:
    """One NVRTC compile: (cubin, ptx, log, ok, status name). Releases the GIL
    in nvrtcCompileProgram, so threads compile in parallel."""
    global NVRTC_CALLS
    nvrtc = _nvrtc()
    hnames = [k.encode() for k in headers]
    hsrcs = [v.encode() for v in headers.values()]
    prog = _check(nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), len(hnames), hsrcs, hnames),
                  "nvrtcCreateProgram")
    try:
        with _calls_lock:
            NVRTC_CALLS += 1
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
        log = _get_buffer(prog, nvrtc.nvrtcGetProgramLogSize, nvrtc.nvrtcGetProgramLog,
                          "nvrtcGetProgramLog", text=True).decode(errors="replace").strip()
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return None, None, log, False, status.name
        if output == "cubin":
            return _get_buffer(prog, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN, "nvrtcGetCUBIN", text=False), \
                None, log, True, status.name
        ptx = _get_buffer(prog, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX, "nvrtcGetPTX", text=True)
        return None, ptx.decode(), log, True, status.name
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def compile_cuda(source: str, name: str, arch: str = "sm_90", output: str = "cubin",
                 options: Sequence[str] = (), include_dirs: Sequence[str] = (),
                 cache: DiskCache | bool | None = None, headers: Mapping[str, str] | None = None,
                 report=None) -> NvrtcResult:
    """Compile one CUDA C++ translation unit with NVRTC.

    ``name`` names the program (``name.cu`` in diagnostics) and the saved
    source of a failed compile; the kernels are whatever ``__global__``
    functions the source defines. ``output`` is "cubin" (for ``arch`` sm_XY)
    or "ptx" (compiled for compute_XY). ``options`` are extra NVRTC flags
    (``-lineinfo``, ``--use_fast_math``, ``--maxrregcount=N``, ``-DX=1``);
    always passed: ``--gpu-architecture``, ``-Xptxas=-v`` and ``--std=c++17``
    unless options give a ``--std``. ``headers`` maps include names to
    in-memory header text. ``cache``: None (or True) for the default
    :class:`DiskCache` (``$SYMFUSE_CACHE_DIR``), False for none. ``report``: a CompileReport that
    gets an "nvrtc <name>" stage.
    """
    t0 = time.perf_counter()
    if output not in ("cubin", "ptx"):
        raise CompileError(f"NVRTC output must be 'cubin' or 'ptx', not {output!r}")
    options = [str(o) for o in options]
    if any(o.startswith(("-arch", "--gpu-architecture")) for o in options):
        raise CompileError(f"pass the architecture as arch=..., not in options: {options}")
    headers = dict(headers or {})
    target = _validate_arch(arch, output)
    flags = [f"--gpu-architecture={target}", "-Xptxas=-v"]
    if not any(o.startswith(("--std", "-std")) for o in options):
        flags.append("--std=c++17")
    flags += [f"--include-path={os.path.abspath(d)}" for d in include_dirs] + options
    if cache is None or cache is True:
        cache = environment_cache()
    elif cache is False:
        cache = None
    # options stay in the given order (not sorted): -D/-U pairs and include
    # paths are order-sensitive, and codegen emits them deterministically anyway
    key = cache_key(source, json.dumps(sorted(headers.items())), _include_fingerprint(include_dirs),
                    target, output, "\0".join(flags), "%d.%d" % nvrtc_version(), _symfuse_version())

    hit = None
    if cache is not None and (blob := cache.get(NAMESPACE, key)) is not None:
        hit = _unpack(blob)
    if hit is not None:
        log, cubin, ptx = hit
    else:
        cubin, ptx, log, ok, status = _run_nvrtc(source, name, output, flags, headers)
        if not ok:
            path = _save_failed(cache, key, name, source)
            raise CompileError(f"NVRTC failed to compile '{name}' for {target} ({status}); "
                               f"source saved at {path}\noptions: {' '.join(flags)}\n{log[-8000:]}")
        if cache is not None:
            cache.put(NAMESPACE, key, _pack(log, cubin, ptx))
    res = NvrtcResult(name, target, cubin, ptx, log, parse_ptxas_log(log),
                      time.perf_counter() - t0, hit is not None)
    if report is not None:
        regs = ", ".join(f"{k}: {r.registers} regs" + (" SPILLS" if r.spills else "")
                         for k, r in res.resources.items())
        report.add_stage(f"nvrtc {name}", res.seconds,
                         note=("cache hit" if res.cache_hit else "cache miss") + (f"; {regs}" if regs else ""))
        report.info["nvrtc_calls"] = NVRTC_CALLS
    return res


def ptx_for(source: str, name: str, arch: str = "sm_90", options: Sequence[str] = (),
            include_dirs: Sequence[str] = (), cache: DiskCache | bool | None = None,
            headers: Mapping[str, str] | None = None) -> str:
    """The PTX of a program compiled (or to be compiled) to a cubin for ``arch``:
    a separate, cached compile for the virtual arch compute_XY."""
    return compile_cuda(source, name, arch, "ptx", options, include_dirs, cache, headers).ptx


def compile_many(programs: Sequence[tuple[str, str]], arch: str = "sm_90", output: str = "cubin",
                 options: Sequence[str] = (), include_dirs: Sequence[str] = (),
                 cache: DiskCache | bool | None = None, headers: Mapping[str, str] | None = None,
                 parallel: bool = True, max_workers: int | None = None) -> list[NvrtcResult]:
    """Compile several ``(source, name)`` programs; results in input order.
    nvrtcCompileProgram releases the GIL, so ``parallel`` uses threads (one per
    CPU by default). The first failure is raised after the others finish."""
    if cache is None or cache is True:
        cache = environment_cache()  # one instance: shared stats, one warning if unusable
    _validate_arch(arch, output)     # fail once, up front, not once per program

    def one(p):
        return compile_cuda(p[0], p[1], arch, output, options, include_dirs, cache, headers)

    if not parallel or len(programs) < 2:
        return [one(p) for p in programs]
    workers = max_workers or min(len(programs), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                 else os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nvrtc") as ex:
        futures = [ex.submit(one, p) for p in programs]
    return [f.result() for f in futures]


# ---------------------------------------------------------------------- SASS

def _find_nvdisasm() -> str | None:
    try:    # cuda-pathfinder knows the wheel layouts (nvidia/cu13/bin, nvidia/cuda_nvdisasm/bin) and CUDA_HOME
        from cuda.pathfinder import find_nvidia_binary_utility
        if path := find_nvidia_binary_utility("nvdisasm"):
            return path
    except Exception:   # an old pathfinder without it, or a lookup error: try the other places
        pass
    try:
        from importlib.metadata import PackageNotFoundError, files
        for f in files("nvidia-cuda-nvdisasm") or ():
            if f.name == "nvdisasm" and f.parent.name == "bin":
                p = str(f.locate())
                if os.access(p, os.X_OK):
                    return p
    except PackageNotFoundError:
        pass
    return shutil.which("nvdisasm")


def sass(cubin: bytes) -> str:
    """SASS disassembly of a cubin, from nvdisasm (``pip install nvidia-cuda-nvdisasm``)."""
    exe = _find_nvdisasm()
    if exe is None:
        raise CompileError("nvdisasm not found; install it with `pip install nvidia-cuda-nvdisasm` "
                           "(or put a CUDA toolkit's bin/ on PATH)")
    with tempfile.TemporaryDirectory(prefix="symfuse-sass-") as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        proc = subprocess.run([exe, "-c", "-g", path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"nvdisasm failed ({exe}):\n{proc.stderr[-4000:]}")
    return proc.stdout
