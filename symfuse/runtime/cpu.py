"""``device="cpu"``: fused C kernels in one translation unit, compiled by the
system C compiler, cached on disk, loaded with ctypes; one call per step.

Stages (each timed in the CompileReport): fusion -> memory plan -> codegen ->
C compile (or cache hit) -> load.
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..codegen import c_module
from ..codegen.c_library import LIBRARY, blas_link_flags
from ..compiler.fusion import fuse
from ..compiler.memory import BufferUse, plan_memory
from ..errors import CompileError
from ..ir.core import Function, Value
from .cache import DiskCache, cache_key

VERSION = "0.1.0"
FAST_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11", "-fno-math-errno"]


@functools.lru_cache(maxsize=None)
def find_compiler() -> tuple[str, str] | None:
    """(path, version line) of the C compiler: $CC, then cc, gcc, clang."""
    for name in filter(None, [os.environ.get("CC"), "cc", "gcc", "clang"]):
        path = shutil.which(name)
        if path:
            try:
                ver = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            return path, ver.splitlines()[0] if ver else name
    return None


class CompiledModule:
    """The loaded shared library plus everything needed to call it."""

    def __init__(self, lib_path, param_count, slots, result_plan, arena_bytes, kernels, source, plan):
        self.lib = ctypes.CDLL(lib_path)
        self.entry = self.lib.sf_entry
        self.entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.entry.restype = None
        self.param_count = param_count
        self.slots = slots                  # [(shape, np dtype)] of result buffers the C code writes
        self.result_plan = result_plan      # per result: ("slot", k) | ("param", p) | ("const", array)
        self._arena = np.zeros(arena_bytes + 64, np.uint8)
        self._arena_ptr = (self._arena.ctypes.data + 63) & ~63
        self.kernels = kernels
        self.source = source
        self.memory_plan = plan
        self.lib_path = lib_path

    def __call__(self, arrays):
        outs = [np.empty(shape, dt) for shape, dt in self.slots]
        ins = [a if a.flags.c_contiguous else np.ascontiguousarray(a) for a in arrays]
        ptrs = (ctypes.c_void_p * (len(ins) + len(outs)))(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs])
        self.entry(ptrs, self._arena_ptr)
        res = []
        for kind, x in self.result_plan:
            res.append(outs[x] if kind == "slot" else arrays[x].copy() if kind == "param" else x.copy())
        return res


class CpuBackend:
    name = "cpu"

    def __init__(self):
        self._cache = None

    @staticmethod
    def available() -> bool:
        return find_compiler() is not None

    @property
    def cache(self) -> DiskCache:
        if self._cache is None:
            self._cache = DiskCache()
        return self._cache

    def compile(self, fn: Function, options: dict, report):
        with report.stage("fusion", ops_before=len(fn.ops)) as st:
            part = fuse(fn)
            st.ops_after = len(part.groups)
            st.note = f"{len(fn.ops)} ops -> {len(part.groups)} kernels"
        with report.stage("memory plan") as st:
            layout = _layout(fn, part)
            st.note = layout.plan.table().splitlines()[0] if hasattr(layout.plan, "table") else ""
        with report.stage("codegen") as st:
            source, kernels = _render(fn, part, layout)
        report.info["kernels"] = [{"name": k.name, "kind": k.kind, "ops": k.fused_ops,
                                   "bytes_read": k.bytes_read, "bytes_written": k.bytes_written} for k in kernels]
        report.info["memory"] = {"arena_bytes": layout.plan.arena_bytes, "naive_bytes": layout.plan.naive_bytes,
                                 "lower_bound_bytes": layout.plan.lower_bound_bytes}
        with report.stage("c compile") as st:
            lib_path, hit = self._compile(source, fn.name)
            st.note = "cache hit" if hit else "cache miss"
            report.info["c_cache"] = "hit" if hit else "miss"
        with report.stage("load"):
            mod = CompiledModule(lib_path, len(fn.params), layout.slots, layout.result_plan,
                                 layout.plan.arena_bytes, kernels, source, layout.plan)
        return mod

    def _compile(self, source: str, name: str) -> tuple[str, bool]:
        cc, ccver = find_compiler()
        flags = FAST_FLAGS + blas_link_flags()
        key = cache_key(source, ccver, " ".join(flags), VERSION, os.uname().machine)
        lib_dir = os.path.join(self.cache.root, "cpu-lib", key[:2])
        lib_path = os.path.join(lib_dir, key + ".so")
        cache = self.cache
        if cache.readable and os.path.exists(lib_path):
            try:
                ctypes.CDLL(lib_path)
                os.utime(lib_path)  # LRU for `prune`
                return lib_path, True
            except OSError:
                pass  # truncated or corrupt: rebuild below
        writable = cache.enabled
        if writable:
            try:
                os.makedirs(lib_dir, mode=0o700, exist_ok=True)
                writable = os.access(lib_dir, os.W_OK)
            except OSError:
                writable = False
        work = lib_dir if writable else tempfile.mkdtemp(prefix="symfuse-")
        fd, src_path = tempfile.mkstemp(suffix=".c", prefix=name + "-", dir=work)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        tmp_lib = src_path[:-2] + ".so.tmp"
        cmd = [cc, src_path, "-o", tmp_lib, "-I", c_module.TEMPLATE_DIR, *flags, "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"C compilation of @{name} failed ({cc}); source saved at {src_path}:\n"
                               + proc.stderr[-4000:])
        os.remove(src_path)
        final = lib_path if writable else tmp_lib[:-4]
        os.replace(tmp_lib, final)
        return final, False


class _Layout:
    pass


def _layout(fn: Function, part) -> _Layout:
    """Where every materialised value lives: a parameter slot, a result slot,
    a static constant, or an arena offset from the memory planner."""
    lay = _Layout()
    param_pos = {id(p): k for k, p in enumerate(fn.params)}
    lay.where: dict[int, tuple] = {}
    slots, result_plan = [], []
    produced = {}
    for g in part.groups:
        for v in g.outputs:
            produced[id(v)] = g.index
    for r in fn.results:
        if id(r) in lay.where and lay.where[id(r)][0] == "result":
            result_plan.append(("slot", lay.where[id(r)][1]))
        elif id(r) in produced:
            lay.where[id(r)] = ("result", len(slots))
            result_plan.append(("slot", len(slots)))
            slots.append((r.type.shape, r.type.dtype.np))
        elif id(r) in param_pos:
            result_plan.append(("param", param_pos[id(r)]))
        else:  # a constant result
            result_plan.append(("const", r.op.attrs["value"]))
    for p, k in param_pos.items():
        lay.where.setdefault(p, ("param", k))
    # liveness of arena buffers over the schedule
    last: dict[int, int] = {}
    for g in part.groups:
        for op in g.ops:
            for v in op.inputs:
                m = _materialised(v, part.folded_views)
                last[id(m)] = max(last.get(id(m), -1), g.index)
    bufs = []
    for g in part.groups:
        for v in g.outputs:
            if id(v) in lay.where:
                continue
            bufs.append(BufferUse(str(id(v)), max(v.type.nbytes, 1), g.index, max(last.get(id(v), g.index), g.index)))
    lay.plan = plan_memory(bufs)
    for b in bufs:
        lay.where[int(b.name)] = ("arena", lay.plan.offsets[b.name])
    lay.slots, lay.result_plan = slots, result_plan
    return lay


def _materialised(v: Value, folded) -> Value:
    while v.op is not None and id(v.op) in folded:
        v = v.op.inputs[0]
    return v


def _render(fn, part, lay):
    kernels, calls, constants, const_names = [], [], [], {}
    nparams = len(fn.params)
    names: dict[str, int] = {}

    def ptr(v: Value, const: bool) -> str:
        ct = c_module.c_type(v.dtype)
        kind = lay.where.get(id(v))
        if kind is None:  # a constant read as a buffer
            name = const_names.get(id(v))
            if name is None:
                name = const_names[id(v)] = f"c{len(constants)}"
                constants.append({"name": name, "ctype": ct, "size": max(v.type.size, 1),
                                  "data": c_module.constant_data(v.op.attrs["value"], v.dtype) or "0"})
            return f"(const {ct}*){name}"
        q = "const " if const else ""
        if kind[0] == "param":
            return f"({q}{ct}*)args[{kind[1]}]"
        if kind[0] == "result":
            return f"({q}{ct}*)args[{nparams + kind[1]}]"
        return f"({q}{ct}*)(arena + {kind[1]})"

    for g in part.groups:
        spec = c_module.build_kernel(g, part, lambda v: _materialised(v, part.folded_views), LIBRARY)
        n = names.get(spec.name, 0)
        names[spec.name] = n + 1
        if n:
            spec.name = f"{spec.name}_{n}"
        c_module.render_kernel(spec)
        kernels.append(spec)
        args = [ptr(v, True) for v in spec.inputs] + [ptr(v, False) for v in spec.outputs]
        calls.append(f"{spec.name}({', '.join(args)});")
    source = c_module.render_module(fn.name, VERSION, kernels, calls, constants, lay.plan.arena_bytes)
    return source, kernels
