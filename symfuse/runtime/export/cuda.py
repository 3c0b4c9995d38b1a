"""``sf.export(f, out_dir, target="cuda", arch=[...])``: a function for NVIDIA GPUs
as a directory a C program uses without Python, symfuse or the CUDA toolkit.

    out_dir/
      lib<name>.so    the C API (``templates/c/export_cuda.c.j2``), the kernels' CUBINs for
                      each arch and PTX for later GPUs, embedded; links libc, libdl, libpthread
      <name>.h        the same API as a cpu export, plus <name>_run_device
      <name>.json     manifest: target cuda, the arches, image sizes, registers and spills
      <name>.params   the parameters (the cpu export's format)

The launcher is C generated here: it loads ``libcuda.so.1`` with dlopen when the
first handle is made (no CUDA at build or link time), loads the module of the
variant that fits the GPU, and runs the launch plan the PyCUDA executor runs
(``runtime/cuda_exec.py``): the same kernels, grids, blocks, dynamic shared
memory and arguments, the precompiled library's kernels included, loops and
branches as ``cuda_schedule.ScheduleRunner`` runs them, under ``cuda_graph`` as
one captured graph (when no while loop or cond needs the host between launches).

Per arch the library holds two modules: the function's unit (its source
compiled as one NVRTC unit) and the library kernels it launches (their source
alone, not the whole precompiled library). The sources do not depend on the
arch, so one launch plan serves every arch.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np

from ...compiler.kernel_info import ControlStep
from ...errors import CompileError, InputError
from ...install_dirs import C_TEMPLATE_DIR

KERNEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}\Z")
# the C enums of a schedule's steps and of its refs (``sf_steps``, ``sf_args`` in export_cuda.c.j2)
STEP_OPS = {"scan": "SF_STEP_SCAN", "while_loop": "SF_STEP_WHILE", "cond": "SF_STEP_COND"}
ARG_KINDS = {"param": "SF_A_ARG", "result": "SF_A_SLOT", "arena": "SF_A_ARENA", "const": "SF_A_CONST",
             "null": "SF_A_NULL"}
SCALAR_KINDS = {np.dtype(np.int32): ("SF_A_I32", -2 ** 31, 2 ** 31 - 1),
                np.dtype(np.uint32): ("SF_A_U32", 0, 2 ** 32 - 1),
                np.dtype(np.int64): ("SF_A_I64", -2 ** 63, 2 ** 63 - 1)}
# what lib<name>.so links: the C library's, nothing of CUDA (libdl and libpthread are libc's on glibc >= 2.34)
LINK_LIBRARIES = ("-ldl", "-lpthread")
FLAGS = ("-std=gnu11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall")


def arch_list(arch) -> list[str]:
    """``arch`` (a name, a list, or None) as a list of distinct, checked sm_XY names."""
    from ..nvrtc import _ARCH_RE
    names = [arch] if isinstance(arch, str) else list(arch or ())
    out = []
    for a in names:
        m = _ARCH_RE.match(a) if isinstance(a, str) else None
        if m is None or m.group(1) != "sm":
            raise InputError(f"export: arch {a!r} is not a CUDA GPU architecture like sm_80 or sm_90 "
                             f"(a CUBIN needs a real architecture; PTX is added by itself)")
        if a not in out:
            out.append(a)
    return out


def _program(f, arch: str, cuda_graph: bool | None):
    """(the Executable, its CudaProgram): ``f`` itself when it was compiled for cuda
    (its source does not depend on the arch) with the cuda_graph asked for, else
    compiled here for ``arch``."""
    from ..cuda_program import CudaProgram
    from ..function import Executable, function
    run = getattr(f, "_run", None)
    compiled = isinstance(run, CudaProgram) and run.arch != "emu"
    if compiled and cuda_graph in (None, run.cuda_graph):
        return f, run
    graph = run.cuda_graph if cuda_graph is None and isinstance(run, CudaProgram) else bool(cuda_graph)
    opts = {"arch": arch, **({"cuda_graph": True} if graph else {})}
    if isinstance(f, Executable):
        g = function(f.inputs, f.outputs, updates=list(f.updates) or None, device="cuda",
                     name=f.source_function.name, **opts)
    elif callable(f):            # a model's function maker: model.predict_function, model.train_function
        g = f(device="cuda", **opts)
    else:
        raise InputError(f"export: {f!r} is neither a compiled function nor a function maker")
    if not isinstance(getattr(g, "_run", None), CudaProgram):
        raise InputError(f"export: {f!r} did not give a function compiled for cuda")
    return g, g._run


def _refuse_sizes(f) -> None:
    sizes = getattr(f, "sizes", None)
    if sizes is not None:
        # the C API here runs one fixed launch schedule; the cpu export reads the batch from the input's bytes
        raise InputError(f"export: the function has the run-time size {sizes.names[0]!r}, which target 'cuda' "
                         "cannot export yet; export a run-time batch for target cpu, or compile with a number "
                         "for the batch")


def _images(prog, arches: list[str], ptx: bool, name: str):
    """Per variant: its images {"unit": bytes, "library": bytes} (absent: no such kernels),
    and ptxas's resources of each kernel for the CUBINs."""
    from ...codegen import cuda_module
    from ..toolchain import VERSION
    from .. import nvrtc
    launches = [ln for ln, _ in all_launches(prog.launches)]
    lib_names = sorted({ln.kernel for ln in launches if ln.library})
    sources = {}
    if any(not ln.library for ln in launches):
        sources["unit"] = (prog.source, prog.name)
    if lib_names:
        sources["library"] = (cuda_module.library_source(lib_names, version=VERSION), f"{name}_library")
    inc = [cuda_module.TEMPLATE_DIR]
    variants = []
    for a in arches:
        images, resources = {}, {}
        for role, (src, unit) in sources.items():
            r = nvrtc.compile_cuda(src, unit, arch=a, include_dirs=inc)
            images[role] = r.cubin
            resources.update({k: {"registers": v.registers, "spill_stores": v.spill_stores,
                                   "spill_loads": v.spill_loads} for k, v in r.resources.items()
                              if k in {ln.kernel for ln in launches}})
        variants.append({"arch": a, "ptx": False, "images": images, "resources": resources})
    if ptx:     # the newest arch's PTX: the driver compiles it for a GPU newer than every CUBIN
        newest = max(arches, key=lambda a: int(re.match(r"sm_(\d+)", a).group(1)))
        images = {role: nvrtc.ptx_for(src, unit, arch=newest, include_dirs=inc).encode()
                  for role, (src, unit) in sources.items()}
        variants.append({"arch": newest.replace("sm_", "compute_"), "ptx": True, "images": images,
                         "resources": {}})
    return variants


def all_launches(schedule):
    """Every (LaunchSpec, refs) of a schedule, the bodies of its loops and branches included."""
    for item in schedule:
        if isinstance(item, ControlStep):
            for body in item.bodies:
                yield from all_launches(body)
        else:
            yield item


class _Schedule:
    """The schedule as the C tables' rows: ``steps`` (a launch, or a loop or branch whose bodies
    are ranges of steps), ``launches``, their kernels (``functions``), the argument refs of both
    (``args``) and the integers of the loops (``ints``: carry offsets and sizes, slice steps)."""

    def __init__(self, api, schedule):
        self.api = api
        self.functions, self.index, self.launches, self.args, self.steps, self.ints = [], {}, [], [], [], []
        self.max_refs = 1
        self.top = self.add(schedule)[1]

    def ref(self, kind, x, dt, where):
        if kind == "scalar":
            ck, lo, hi = SCALAR_KINDS[np.dtype(dt)]
            if not lo <= int(x) <= hi:
                raise CompileError(f"export: scalar argument {x} of {where} does not fit {np.dtype(dt)}")
            return {"kind": ck, "value": int(x)}
        return {"kind": ARG_KINDS[kind], "value": int(x)}

    def refs(self, refs, where) -> int:
        at = len(self.args)
        self.args += [self.ref(kind, x, dt, where) for kind, x, _, dt in refs]
        self.max_refs = max(self.max_refs, len(refs))
        return at

    def table(self, values) -> int:
        at = len(self.ints)
        self.ints += [int(v) for v in values]
        return at

    def add(self, schedule) -> tuple[int, int]:
        """(first step, count): a schedule's steps are consecutive, its bodies' after them."""
        at = len(self.steps)
        self.steps += [None] * len(schedule)
        for i, item in enumerate(schedule):
            self.steps[at + i] = self.control(item) if isinstance(item, ControlStep) else self.launch(*item)
        return at, len(schedule)

    def launch(self, ln, refs) -> dict:
        if not KERNEL_NAME.match(ln.kernel):
            raise CompileError(f"export: kernel name {ln.kernel!r} is not a C identifier")
        key = (bool(ln.library), ln.kernel)
        if key not in self.index:
            self.index[key] = len(self.functions)
            self.functions.append({"c_name": self.api.c_string(ln.kernel), "module": int(key[0]), "shared": 0,
                                   "name": ln.kernel})
        fn = self.functions[self.index[key]]
        fn["shared"] = max(fn["shared"], int(ln.shared_bytes))
        grid, block = (tuple(int(x) for x in (tuple(d) + (1, 1))[:3]) for d in
                       ((ln.grid,) if isinstance(ln.grid, int) else ln.grid,
                        (ln.block,) if isinstance(ln.block, int) else ln.block))
        self.launches.append({"fn": self.index[key], "grid": grid, "block": block, "shared": int(ln.shared_bytes),
                              "arg_at": self.refs(refs, ln.kernel), "nargs": len(refs), "kernel": ln.kernel})
        return {"op": "SF_STEP_LAUNCH", "launch": len(self.launches) - 1}

    def control(self, st: ControlStep) -> dict:
        if st.op not in STEP_OPS or len(st.bodies) > 2:
            raise InputError(f"export: a {st.op!r} step cannot be exported for cuda")
        bodies = [self.add(b) for b in st.bodies] + [(0, 0)] * (2 - len(st.bodies))
        return {"op": STEP_OPS[st.op], "launch": -1, "ins_at": self.refs(st.ins, st.op), "nins": len(st.ins),
                "outs_at": self.refs(st.outs, st.op), "nouts": len(st.outs), "scratch": int(st.scratch),
                "carries_at": self.table(tuple(st.carry_offsets) + tuple(st.carry_nbytes)),
                "ncarries": len(st.carry_offsets), "carry_bytes": int(st.carry_bytes),
                "body_arena": int(st.body_arena), "seq_at": self.table(st.seq_step), "nseq": len(st.seq_step),
                "ostep_at": self.table(st.out_step), "nostep": len(st.out_step), "length": int(st.length),
                "reverse": int(bool(st.reverse)), "save": int(bool(st.save)),
                "max_iterations": int(st.max_iterations or 0), "bodies": bodies}


def _control_steps(schedule):
    for item in schedule:
        if isinstance(item, ControlStep):
            yield item
            for body in item.bodies:
                yield from _control_steps(body)


def _results(prog, d):
    """The slots' sizes, the kernels' constant buffers, and where each output and update comes from."""
    lay = prog.layout
    slots = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize for shape, dt in lay.slots]
    consts = [_bytes(np.ascontiguousarray(c)) for c in prog.constants]
    host, outputs, updates = [], [], []
    n_outputs = len(d.outputs)
    for r, (kind, x) in enumerate(lay.result_plan):
        t = d.outputs[r] if r < n_outputs else d.params[d.update_vars[r - n_outputs]]
        if kind == "slot":
            src = {"kind": "SF_SRC_SLOT", "index": int(x), "bytes": t.bytes}
        elif kind == "param":
            src = {"kind": "SF_SRC_ARG", "index": int(x), "bytes": t.bytes}
        else:       # a constant result: its bytes in the tensor's dtype and shape
            host.append(_bytes(np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=t.dtype), t.shape))))
            src = {"kind": "SF_SRC_HOST", "index": len(host) - 1, "bytes": t.bytes}
        if r < n_outputs:
            outputs.append(src)
        else:
            updates.append({"param": d.update_vars[r - n_outputs], **src})
    return slots, consts, host, outputs, updates


def _variant_rows(variants, api):
    """(the image files the library embeds, the C table's row of each variant)."""
    files_in, rows = [], []
    for i, v in enumerate(variants):
        images, refs = [], []
        for m, role in enumerate(("unit", "library")):      # the module indices of sf_fn_module
            if role in v["images"]:
                sym, fname = f"sf_image_{i}_{m}", f"image_{i}_{m}.bin"
                files_in.append((fname, v["images"][role]))
                images.append({"symbol": sym, "file": fname})
                refs.append(sym)
            else:
                refs.append("NULL")
        num = re.match(r"(?:sm|compute)_(\d+)([af]?)", v["arch"])
        n = int(num.group(1))
        rows.append({"c_arch": api.c_string(v["arch"]), "major": n // 10, "minor": n % 10,
                     "exact": int(num.group(2) == "a"), "ptx": int(v["ptx"]), "images": images, "image_refs": refs})
    return files_in, rows


def _needed(path: str) -> list[str]:
    """The shared objects ``path`` names as needed (readelf), or what it was linked with."""
    try:
        out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, timeout=30).stdout
        found = re.findall(r"\(NEEDED\).*\[(.*)\]", out)
    except (OSError, subprocess.SubprocessError):
        found = []
    return found or ["libc.so.6", "libdl.so.2", "libpthread.so.0"]


def _bytes(arr: np.ndarray) -> dict:
    raw = arr.tobytes()
    return {"size": max(len(raw), 1), "data": ", ".join(map(str, raw)) or "0"}


def export_cuda(f, out_dir: str, name: str | None, arch, cuda_graph: bool | None, ptx: bool, r: bool = False):
    from .. import nvrtc
    from ..cuda_schedule import has_control, has_host_decisions
    from ..shared_object import Recipe, compile_in
    from ..toolchain import VERSION
    from ...codegen.templates_cache import template
    from . import Exported, api, build, describe, manifest_head, refuse_collectives, write_common, write_manifest, write_r
    t0 = time.perf_counter()
    arches = arch_list(arch)
    given = getattr(getattr(f, "_run", None), "arch", None)
    if not arches:
        arches = [given if isinstance(given, str) and given.startswith("sm_") else "sm_90"]
    _refuse_sizes(f)
    f, prog = _program(f, arches[0], cuda_graph)
    _refuse_sizes(f)        # a function maker's model may have been built with a run-time batch
    refuse_collectives(prog.kernels)
    if prog.param_count != len(f.inputs) + len(f.shared):
        raise InputError("export: the compiled function's parameters do not match its inputs and shared variables")
    d = describe(f, name)
    name = d.name
    variants = _images(prog, arches, ptx, name)
    plan = _Schedule(api, prog.launches)
    slots, consts, host, outputs, updates = _results(prog, d)
    # a while loop or cond needs the host to read a flag between launches, which a graph cannot do:
    # such a function runs eagerly, as the Python executor runs it
    graph = bool(prog.cuda_graph) and not has_host_decisions(prog.launches)
    files_in, rows = _variant_rows(variants, api)
    ctx = api.context(name, VERSION, d.inputs, d.outputs, d.params, d.updated, d.fingerprint,
                      prog.layout.arena_bytes)
    ptx_arch = next((v["arch"] for v in variants if v["ptx"]), None)
    ctx["functions"] = api.FUNCTIONS + ("run_device",)
    ctx["cuda"] = {"arches": arches, "ptx": ptx_arch, "graph": graph, "variants": rows,
                   "c_arch_list": api.c_string(", ".join(arches) + (f" (+PTX {ptx_arch})" if ptx_arch else "")),
                   "functions": plan.functions, "launches": plan.launches, "args": plan.args, "steps": plan.steps,
                   "ints": plan.ints, "top": plan.top, "control": has_control(prog.launches),
                   "max_refs": max(plan.max_refs, len(d.inputs) + len(d.params), len(slots)),
                   "max_args": max([ln["nargs"] for ln in plan.launches] + [1]),
                   "slots": slots, "consts": consts,
                   "const_names": [f"sf_const{i}" for i in range(len(consts))], "host_consts": host,
                   "host_names": [f"sf_host{i}" for i in range(len(host))], "outputs": outputs,
                   "updates": updates}
    header = template(C_TEMPLATE_DIR, "export_api.h.j2").render(**ctx)
    source = template(C_TEMPLATE_DIR, "export_cuda.c.j2").render(**ctx)

    os.makedirs(out_dir, exist_ok=True)
    files = {"library": f"lib{name}.so", "header": f"{name}.h", "manifest": f"{name}.json",
             "params": f"{name}.params"}
    cc, ccver = build.toolchain()
    recipe = Recipe(cc, (("api.c", source), (f"{name}.h", header), *files_in),
                    (*FLAGS, "-I", C_TEMPLATE_DIR, "-I", ".", build.ORIGIN, f"-Wl,-soname,lib{name}.so",
                     *LINK_LIBRARIES), output="lib.so", what=f"building lib{name}.so")
    out = os.path.join(out_dir, files["library"])
    with tempfile.TemporaryDirectory(prefix="symfuse-export-") as work:
        tmp = out + ".tmp"
        shutil.copyfile(compile_in(recipe, work), tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)        # a program running the old library keeps its mapping intact
    write_common(out_dir, d, header, files)
    manifest = manifest_head(d, f, files)
    manifest.update({
        "target": {"kind": "cuda", "os": platform.system().lower(), "machine": platform.machine(),
                   "arches": arches, "ptx": ptx_arch, "cuda_graph": graph,
                   "nvrtc": ".".join(map(str, nvrtc.nvrtc_version())),
                   "driver": "libcuda.so.1, loaded at run time (SF_CUDA_DRIVER_PATH overrides)",
                   "images": {v["arch"]: {role: len(im) for role, im in v["images"].items()} for v in variants},
                   "resources": {v["arch"]: v["resources"] for v in variants if not v["ptx"]}},
        "compiler": {"path": cc, "version": ccver},
        "libraries": {"bundled": [], "system": _needed(out)},
        "arena_bytes": prog.layout.arena_bytes,
        "kernels": [fn["name"] for fn in plan.functions],
        "launches": [{"kernel": ln["kernel"], "grid": list(ln["grid"]), "block": list(ln["block"]),
                      "shared_bytes": ln["shared"]} for ln in plan.launches],
        "control": sorted({st.op for st in _control_steps(prog.launches)}),
    })
    if r:
        write_r(out_dir, d, header, cc, files, manifest)
    write_manifest(out_dir, files, manifest)
    return Exported(os.path.abspath(out_dir), name, {k: os.path.join(out_dir, v) for k, v in files.items()},
                    manifest, time.perf_counter() - t0)
