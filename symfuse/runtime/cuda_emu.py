"""``device="cuda-emu"`` support: run real CUDA kernel source on the CPU.

The CUDA translation unit is compiled by g++ with ``templates/cuda/emu.h``
force-included (CUDA built-ins mapped onto the CPU, a block's threads run as
cooperative fibers; see the header) and loaded with ctypes, so CI without a
GPU can check generated kernels numerically::

    mod = EmuModule(source)                     # kernels parsed from the source
    mod.launch("saxpy", grid=64, block=256, args=[x, y, 2.0, n])
    f = mod.get_function("saxpy"); f(64, 256, [x, y, 2.0, n])

Arrays are "device pointers": a numpy array passes its data pointer, and the
kernel reads and writes it in place. Scalars are converted to the parameter's
C type (range-checked); an array's dtype must match the pointee type.

Conventions for the CUDA source:
  * kernels are ``__global__ void name(...)`` (``extern "C"`` so that NVRTC's
    module can look them up by the same name); template kernels are launched by
    naming the instantiation in ``kernels={"k<128>": ["const float*", ...]}``;
  * dynamic shared memory is ``extern __shared__ T name[];`` (rewritten here to
    a pointer into the block's buffer) or ``SF_DYNAMIC_SHARED(T, name)``;
  * no CUDA headers, inline PTX or ``__half``.

Execution: blocks run one after another, a block's threads as fibers that
switch only at barriers and warp ops, so runs are deterministic. Dynamic shared
memory starts each block filled with 0xFF bytes and a shuffle from a lane
outside the mask returns all-ones bits (NaN / -1), so reads of undefined values
show. Launches from several Python threads are serialised.

Environment: SYMFUSE_CACHE_DIR (compiled modules live in its cuda-emu/),
SYMFUSE_EMU_STACK_KB (fiber stack size, default 128), SYMFUSE_EMU_PCH=0 (no
precompiled emu.h), CXX (the compiler).

For each kernel a trampoline ``sf_emu_launch_<i>(void** args, grid, block,
dyn_smem)`` is appended to the source: it unpacks the arguments into the
parameter types and runs the grid through the fiber scheduler. A runtime
failure (deadlock, divergent barrier, __trap, failed assert) raises EmuError.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading

import numpy as np

from ..errors import CompileError, InputError, SymfuseError
from .cache import DiskCache, cache_key, environment_cache
from .shared_object import Recipe, SharedObject, in_cache, in_directory
from .toolchain import configure_openmp_env, find_program

__all__ = ["EmuModule", "EmuFunction", "EmuError", "parse_kernels", "preprocess"]

VERSION = "1"
HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates", "cuda", "emu.h")
# -O1 measured against -O0/-O2 (test module compile; 1M floats in 256-thread blocks:
# elementwise, block tree reduction, warp-shuffle reduction):
#   -O0 0.62 s, 21 ms, 670 ms, 513 ms;  -O1 0.86 s, 9.9 ms, 339 ms, 182 ms;
#   -O2 1.25 s, 8.3 ms, 282 ms, 176 ms.
# -fno-strict-aliasing: CUDA code reinterprets float* as float4* freely.
FLAGS = ["-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-strict-aliasing",
         "-fno-math-errno", "-Wno-unknown-pragmas", "-pthread"]
MAX_DYN_SMEM = 232448   # must match kMaxDynSmem in emu.h


class EmuError(SymfuseError, RuntimeError):
    """A kernel failed while running under cuda-emu (deadlock, divergent
    barrier, __trap, failed assert); the message says which block and thread."""


def find_cxx() -> tuple[str, str] | None:
    """(path, version line) of the C++ compiler: $CXX, then g++, c++, clang++."""
    return find_program("CXX", "g++", "c++", "clang++")


# ----------------------------------------------------------------- source text

def _strip_comments(src: str) -> str:
    """Comments blanked out (newlines kept), string and char literals kept."""
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  lambda m: m.group(0) if m.group(0)[0] in "\"'" else re.sub(r"[^\n]", " ", m.group(0)),
                  src, flags=re.S)


_EXTERN_SHARED = re.compile(r"\bextern\s+__shared__\s+([^;\[\]{}()]*(?:\([^;\[\]{}()]*\)[^;\[\]{}()]*)*?)"
                            r"\s*\b([A-Za-z_]\w*)\s*\[\s*\]\s*;")
_ALIGN = re.compile(r"\b(?:__align__|alignas)\s*\([^)]*\)|__attribute__\s*\(\([^)]*\)\)")


def preprocess(source: str) -> str:
    """The source as emu.h compiles it; line numbers are unchanged.

    ``extern __shared__ T name[];`` becomes a pointer into the block's dynamic
    shared memory (every such array starts there, as on the GPU), and
    ``static __shared__`` drops the ``static`` that emu.h's ``__shared__`` adds."""
    def dyn(m):
        ty = " ".join(_ALIGN.sub(" ", m.group(1)).split())
        return (f"{ty}* const {m.group(2)} = reinterpret_cast<{ty}*>(::sf_emu::dyn_smem);"
                + "\n" * m.group(0).count("\n"))
    source = _EXTERN_SHARED.sub(dyn, source)
    return re.sub(r"\bstatic(\s+)__shared__\b", lambda m: "__shared__" + "\n" * m.group(1).count("\n"), source)


_KERNEL = re.compile(r"\b__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
                     r"(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(([^)]*)\)\s*([;{])")
_QUALS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "__grid_constant__"}
_TYPE_WORDS = {"int", "unsigned", "signed", "long", "short", "char", "float", "double", "bool", "void",
               "size_t", "const", "volatile"}


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _param_type(decl: str) -> str:
    """'const float* __restrict__ x' -> 'const float* __restrict__'; 'float x[]' -> 'float*'."""
    decl = decl.split("=")[0].strip()
    array = re.search(r"\[\s*\]\s*$", decl)
    if array:
        decl = decl[:array.start()].rstrip()
    m = re.search(r"([A-Za-z_]\w*)\s*$", decl)
    if m and m.group(1) not in _TYPE_WORDS and m.group(1) not in _QUALS and m.start() > 0:
        decl = decl[:m.start()].rstrip()
    return decl + "*" if array else decl


def parse_kernels(source: str) -> dict[str, list[str]]:
    """{kernel name: [parameter types]} of the non-template ``__global__``
    functions in source, in order of appearance."""
    text = _strip_comments(source)
    found: dict[str, list[str]] = {}
    for m in _KERNEL.finditer(text):
        before = text[max(0, m.start() - 400):m.start()]
        if re.search(r"\btemplate\s*<[^;{}]*$", before):
            continue                       # needs an explicit instantiation: pass kernels=
        name = m.group(1)
        params = _split_params(m.group(2))
        types = [] if params in ([], ["void"]) else [_param_type(p) for p in params]
        if name in found and found[name] != types:
            raise CompileError(f"cuda-emu: kernel {name!r} is declared with different parameter lists "
                               f"({found[name]} and {types}); pass kernels= to choose")
        found[name] = types
    return found


# ------------------------------------------------------------ argument types

_SCALARS = {   # normalised C type -> (ctypes type, kind, numpy dtype of a pointee)
    "bool": (ctypes.c_bool, "b", np.bool_),
    "char": (ctypes.c_int8, "i", np.int8), "signed char": (ctypes.c_int8, "i", np.int8),
    "int8_t": (ctypes.c_int8, "i", np.int8),
    "unsigned char": (ctypes.c_uint8, "u", np.uint8), "uint8_t": (ctypes.c_uint8, "u", np.uint8),
    "short": (ctypes.c_int16, "i", np.int16), "short int": (ctypes.c_int16, "i", np.int16),
    "int16_t": (ctypes.c_int16, "i", np.int16),
    "unsigned short": (ctypes.c_uint16, "u", np.uint16), "uint16_t": (ctypes.c_uint16, "u", np.uint16),
    "int": (ctypes.c_int32, "i", np.int32), "signed": (ctypes.c_int32, "i", np.int32),
    "signed int": (ctypes.c_int32, "i", np.int32), "int32_t": (ctypes.c_int32, "i", np.int32),
    "unsigned": (ctypes.c_uint32, "u", np.uint32), "unsigned int": (ctypes.c_uint32, "u", np.uint32),
    "uint32_t": (ctypes.c_uint32, "u", np.uint32),
    "long": (ctypes.c_int64, "i", np.int64), "long int": (ctypes.c_int64, "i", np.int64),
    "long long": (ctypes.c_int64, "i", np.int64), "long long int": (ctypes.c_int64, "i", np.int64),
    "int64_t": (ctypes.c_int64, "i", np.int64), "ptrdiff_t": (ctypes.c_int64, "i", np.int64),
    "intptr_t": (ctypes.c_int64, "i", np.int64),
    "unsigned long": (ctypes.c_uint64, "u", np.uint64), "unsigned long long": (ctypes.c_uint64, "u", np.uint64),
    "unsigned long int": (ctypes.c_uint64, "u", np.uint64), "uint64_t": (ctypes.c_uint64, "u", np.uint64),
    "size_t": (ctypes.c_uint64, "u", np.uint64), "uintptr_t": (ctypes.c_uint64, "u", np.uint64),
    "float": (ctypes.c_float, "f", np.float32), "double": (ctypes.c_double, "f", np.float64),
}
_VECTORS = {"float": np.float32, "double": np.float64, "int": np.int32, "uint": np.uint32,
            "char": np.int8, "uchar": np.uint8, "short": np.int16, "ushort": np.uint16,
            "long": np.int64, "ulong": np.uint64, "longlong": np.int64, "ulonglong": np.uint64}


def _base(ty: str) -> str:
    return " ".join(w for w in re.sub(r"\*", " ", ty).split() if w not in _QUALS)


def _pointee(ty: str):
    """(numpy dtype or None for 'any', required alignment) of a pointer parameter."""
    base = _base(ty)
    if ty.count("*") > 1:
        return None, 1
    if base in _SCALARS:
        return np.dtype(_SCALARS[base][2]), 1
    m = re.fullmatch(r"([a-z]+)([1-4])", base)
    if m and m.group(1) in _VECTORS:
        dt = np.dtype(_VECTORS[m.group(1)])
        k = int(m.group(2))
        return dt, min(k * dt.itemsize, 16) if k in (2, 4) else dt.itemsize
    return None, 1


def _converter(index: int, ty: str, size: int):
    """A function turning a Python argument into a ctypes object holding the
    parameter's bytes (the trampoline reads args[i] as a pointer to them)."""
    where = f"argument {index} ({ty})"
    if "*" in ty:
        dtype, align = _pointee(ty)
        const = "const" in ty.split("*")[0].split()     # const pointee, not a const pointer
        def ptr(a):
            if isinstance(a, np.ndarray):
                if dtype is not None and a.dtype != dtype and not (dtype.itemsize == 1 and a.dtype.itemsize == 1):
                    raise InputError(f"{where}: got a {a.dtype} array, the kernel expects {dtype}")
                if not const and not a.flags.writeable:
                    raise InputError(f"{where}: the array is read-only but the parameter is not const")
                addr = a.ctypes.data
            elif a is None:
                addr = 0
            elif isinstance(a, (int, np.integer)) and not isinstance(a, bool):
                addr = int(a)
            elif isinstance(a, ctypes._Pointer) or isinstance(a, ctypes.c_void_p):
                addr = ctypes.cast(a, ctypes.c_void_p).value or 0
            else:
                raise InputError(f"{where}: expected a numpy array (device pointer), got {type(a).__name__}")
            if addr % align:
                raise InputError(f"{where}: address 0x{addr:x} is not {align}-byte aligned "
                                 "(a misaligned address fault on the GPU)")
            return ctypes.c_void_p(addr)
        return ptr
    base = _base(ty)
    if base in _SCALARS:
        ctype, kind, _ = _SCALARS[base]
        if kind in "iu":
            bits = ctypes.sizeof(ctype) * 8
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind == "i" else (0, (1 << bits) - 1)

            def integer(a):
                if isinstance(a, (float, np.floating)) or (isinstance(a, np.ndarray) and a.dtype.kind not in "iub"):
                    raise InputError(f"{where}: expected an integer, got {a!r}")
                try:
                    v = int(a)
                except (TypeError, ValueError):
                    raise InputError(f"{where}: expected an integer, got {type(a).__name__}") from None
                if not lo <= v <= hi:
                    raise InputError(f"{where}: {v} is out of range [{lo}, {hi}]")
                return ctype(v)
            return integer
        if kind == "f":
            def real(a):
                try:
                    return ctype(float(a))
                except (TypeError, ValueError):
                    raise InputError(f"{where}: expected a number, got {type(a).__name__}") from None
            return real
        return lambda a: ctype(bool(a))

    def raw(a):   # a struct or vector by value: its bytes
        b = a.tobytes() if isinstance(a, (np.ndarray, np.generic)) else bytes(a)
        if len(b) != size:
            raise InputError(f"{where}: expected {size} bytes, got {len(b)}")
        return ctypes.create_string_buffer(b, size)
    return raw


def _dims(v, what: str) -> tuple[int, int, int]:
    if type(v) is int and v >= 1:          # the common case, fast
        return v, 1, 1
    t = (v,) if isinstance(v, (int, np.integer)) else tuple(v)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1
                                       for x in t):
        raise InputError(f"{what} must be a positive int or a tuple of 1-3 positive ints, got {v!r}")
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


# --------------------------------------------------------------------- module

_pool_lock = threading.Lock()
_pool = None    # the first module's fiber stack pool, shared by all later ones


class EmuFunction:
    """One kernel of an EmuModule; call as ``f(grid, block, args, shared_bytes=0)``."""

    def __init__(self, module: "EmuModule", name: str, index: int, param_types: list[str], sizes: list[int]):
        self.module, self.name, self.param_types = module, name, list(param_types)
        self._fn = getattr(module._lib, f"sf_emu_launch_{index}")
        self._fn.restype = ctypes.c_int    # no argtypes: converting through them costs ~3 us a launch
        self._conv = [_converter(i, t, s) for i, (t, s) in enumerate(zip(param_types, sizes))]
        self._argv = ctypes.c_void_p * max(1, len(param_types))

    def __call__(self, grid, block, args, shared_bytes: int = 0):
        conv = self._conv
        if len(args) != len(conv):
            raise InputError(f"kernel {self.name!r} takes {len(conv)} argument(s) "
                             f"({', '.join(self.param_types)}), got {len(args)}")
        gx, gy, gz = _dims(grid, "grid")
        bx, by, bz = _dims(block, "block")
        if bx * by * bz > 1024 or bx > 1024 or by > 1024 or bz > 64:
            raise InputError(f"kernel {self.name!r}: block {(bx, by, bz)} exceeds 1024 threads (or z > 64)")
        if gx >= 1 << 31 or gy > 65535 or gz > 65535:
            raise InputError(f"kernel {self.name!r}: grid {(gx, gy, gz)} exceeds (2^31-1, 65535, 65535)")
        if not 0 <= shared_bytes <= MAX_DYN_SMEM:
            raise InputError(f"kernel {self.name!r}: {shared_bytes} bytes of dynamic shared memory "
                             f"(at most {MAX_DYN_SMEM})")
        held = [c(a) for c, a in zip(conv, args)]             # kept alive over the call
        argv = self._argv(*[ctypes.addressof(h) for h in held])
        if self._fn(argv, gx, gy, gz, bx, by, bz, ctypes.c_size_t(shared_bytes)) != 0:
            msg = self.module._lib.sf_emu_error().decode(errors="replace")
            raise EmuError(f"kernel {self.name!r} (grid={(gx, gy, gz)}, block={(bx, by, bz)}) "
                           f"failed under cuda-emu: {msg}")

    def __repr__(self):
        return f"<EmuFunction {self.name}({', '.join(self.param_types)})>"


class EmuModule:
    """CUDA source compiled for the CPU emulator (see the module docstring).

    kernels: {name: [parameter C types]} overriding or adding to the kernels
    parsed from the source (e.g. a template instantiation "k<128>").
    lib_dirs: directories to keep the shared object in instead of the compile
    cache (found in any of them; built in the first writable one, else the
    cache): the CUDA runtime library lives with the installation."""

    def __init__(self, source: str, name: str = "module", include_dirs=(), kernels: dict | None = None,
                 lib_dirs=None):
        self.name = name
        sigs = parse_kernels(source)
        sigs.update({k: list(v) for k, v in (kernels or {}).items()})
        if not sigs:
            raise CompileError(f"cuda-emu: no __global__ kernel found in module {name!r}")
        self.kernel_names = list(sigs)
        # errors and barrier reports name "<name>.cu" and the lines of the caller's source
        self.source = f'#line 1 "{_safe(name)}.cu"\n' + preprocess(source) + _trampolines(sigs)
        built = _compile(self.source, name, [os.path.abspath(d) for d in include_dirs], lib_dirs)
        self.lib_path, self.cache_hit = built.path, built.hit
        configure_openmp_env()       # before libgomp is loaded, which reads it then
        lib = ctypes.CDLL(built.load_path)
        built.done()                 # a fresh build's own copy: mapped now, needed no more
        if lib.sf_emu_abi_version() != 1:
            raise CompileError(f"cuda-emu: {self.lib_path} was built from another emu.h")
        lib.sf_emu_error.restype = ctypes.c_char_p
        lib.sf_emu_pool_new.restype = ctypes.c_void_p
        lib.sf_emu_pool_new.argtypes = [ctypes.c_size_t]
        lib.sf_emu_use_pool.argtypes = [ctypes.c_void_p]
        global _pool
        with _pool_lock:
            if _pool is None:
                text = os.environ.get("SYMFUSE_EMU_STACK_KB") or "128"
                if not text.isdigit() or not 16 <= int(text) <= 1 << 20:
                    raise InputError(f"SYMFUSE_EMU_STACK_KB={text!r}: the emulator's fiber stack size in KiB "
                                     "must be a whole number from 16 to 1048576")
                _pool = lib.sf_emu_pool_new(int(text) * 1024)
            lib.sf_emu_use_pool(_pool)
        self._lib = lib
        self._functions: dict[str, EmuFunction] = {}
        for i, (k, types) in enumerate(sigs.items()):
            sizes = (ctypes.c_uint * (len(types) + 1)).in_dll(lib, f"sf_emu_psize_{i}")
            self._functions[k] = EmuFunction(self, k, i, types, list(sizes)[:len(types)])

    def get_function(self, name: str) -> EmuFunction:
        try:
            return self._functions[name]
        except KeyError:
            raise InputError(f"no kernel {name!r} in module {self.name!r} "
                             f"(kernels: {', '.join(self.kernel_names)})") from None

    def launch(self, kernel: str, grid, block, args, shared_bytes: int = 0) -> None:
        self.get_function(kernel)(grid, block, args, shared_bytes)

    def __repr__(self):
        return f"<EmuModule {self.name}: {', '.join(self.kernel_names)}>"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "module"


def _unrestrict(ty: str) -> str:
    # the kernel's own parameter keeps __restrict__; the trampoline's copy needs none
    return " ".join(re.sub(r"\b__restrict(__)?\b", " ", ty).split())


def _trampolines(sigs: dict[str, list[str]]) -> str:
    """One `sf_emu_launch_<i>` per kernel, plus `sf_emu_psize_<i>`: its parameters' sizes
    (checks the bytes of by-value structs). Locals are sf_-prefixed: kernel names stay free."""
    out = ["\n/* ---- cuda-emu launch trampolines (generated by symfuse/runtime/cuda_emu.py) ---- */"]
    for i, (name, types) in enumerate(sigs.items()):
        sizes = "".join(f"(unsigned)sizeof({t}), " for t in types)
        out.append(f"SF_EMU_EXPORT const unsigned sf_emu_psize_{i}[] = {{{sizes}0u}};")
        out.append(f"SF_EMU_EXPORT int sf_emu_launch_{i}(void** sf_args, unsigned gx, unsigned gy, unsigned gz,\n"
                   "    unsigned bx, unsigned by, unsigned bz, size_t dyn_smem) {")
        for j, t in enumerate(types):
            out.append(f"  using sf_T{j} = {_unrestrict(t)};\n"
                       f"  sf_T{j} sf_p{j} = ::sf_emu::arg<sf_T{j}>(sf_args[{j}]);")
        call = ", ".join(f"sf_p{j}" for j in range(len(types)))
        out.append(f"  (void)sf_args;\n  auto sf_body = [&] {{ {name}({call}); }};\n"
                   "  return ::sf_emu::launch(dim3(gx, gy, gz), dim3(bx, by, bz), dyn_smem, sf_body);\n}")
    return "\n".join(out) + "\n"


def _header() -> bytes:
    with open(HEADER, "rb") as f:
        return f.read()


def _precompiled_header(cxx: str, ver: str, cache: DiskCache) -> str:
    """emu.h to force-include: a copy beside its precompiled form (built once
    per header, compiler and flags; a small module then compiles in ~0.13 s
    instead of ~0.4 s, most of which is parsing <cmath>), else the original.
    GCC falls back to the copy's text by itself if the .gch does not fit."""
    if os.environ.get("SYMFUSE_EMU_PCH", "1") == "0" or "clang" in os.path.basename(cxx):
        return HEADER
    flags = tuple(f for f in FLAGS if f != "-shared")
    key = cache_key(_header(), ver, " ".join(flags), VERSION)[:32]
    pch = SharedObject("emu.h.gch", [in_cache("cuda-emu", "pch", key)], cache, companions=("emu.h",))
    found = pch.find()
    if found is None and pch.place() is not None:
        try:
            found = pch.build(Recipe(cxx, (("emu.h", _header()),), flags, output="emu.h.gch",
                                     language="c++-header", what="precompiling emu.h"), keep_failed=False)
        except (CompileError, OSError):     # a header that cannot be precompiled here is used as text
            return HEADER
        found.done()
    return os.path.join(os.path.dirname(found.path), "emu.h") if found is not None and found.stored else HEADER


def _compile(source: str, name: str, include_dirs: list[str], lib_dirs=None):
    """The shared object of ``source`` (``shared_object.Built``): found in one of
    ``lib_dirs`` or the cache, or compiled into the first that can be written."""
    found = find_cxx()
    if found is None:
        raise CompileError("cuda-emu needs a C++ compiler (g++, c++ or clang++; or set $CXX)")
    cxx, ver = found
    flags = FLAGS + [f"-I{d}" for d in include_dirs]
    key = cache_key(source, _header(), ver, " ".join(flags), VERSION, os.uname().machine)
    cache = environment_cache()
    lib = SharedObject(key + ".so", [*map(in_directory, lib_dirs or ()), in_cache("cuda-emu", key[:2])], cache)

    def recipe():
        # the precompiled header lives in the cache: not made for a module that is not kept
        include = _precompiled_header(cxx, ver, cache) if lib.place() is not None else HEADER
        return Recipe(cxx, (("module.cu", source),), (*flags, "-include", include), language="c++",
                      what=f"cuda-emu compilation of {name!r}")
    return lib.get(recipe)
