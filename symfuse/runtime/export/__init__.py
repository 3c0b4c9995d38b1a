"""``sf.export(f, out_dir)``: a compiled function as a directory that C programs
use without Python or symfuse (docs/export.md). For ``target="cuda"`` see
``cuda.py``: the same API, header and params file; the library holds the CUBINs
and loads the CUDA driver at run time.

    out_dir/
      lib<name>.so        the function's kernels, its schedule and the C API
      <name>.h            the API, documented
      <name>.json         manifest: inputs, outputs, parameters, updates, toolchain
      <name>.params       the shared variables' values (params.py has the format)
      libsymfuse_rt.so    symfuse's C runtime, run path $ORIGIN
      libscipy_openblas.so  OpenBLAS from the scipy-openblas32 wheel
      libgomp.so.1        only when the compiler's libgomp is not a system library
      <name>.R, lib<name>_r.so, <name>_r.c   with r=True: the R wrapper and its .C glue (r.py)

A function compiled with a run-time size (``sf.tensor("x", ("batch", 784))``) exports
with it: ``run`` takes the batch from the bytes of the input that has it, and the
header adds ``<name>_max_batch`` and ``<name>_input_bytes_for`` / ``_output_bytes_for``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError

__all__ = ["export", "Exported", "read_params", "write_params"]

FORMAT = "symfuse-export"
FORMAT_VERSION = 1


@dataclass
class Exported:
    """What ``export`` wrote: the directory, the name, and its files by role."""
    directory: str
    name: str
    files: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def library(self) -> str:
        return self.files["library"]


def read_params(path: str) -> dict:
    from .params import read_params as read
    return read(path)


def write_params(path: str, named_arrays) -> int:
    from .params import write_params as write
    return write(path, named_arrays)


@dataclass
class Described:
    """A compiled function as its export sees it: the tensors of its API and how updates map."""
    name: str
    inputs: list
    outputs: list
    params: list
    updated: list            # per parameter: does each run replace it
    update_vars: list        # per update result: the parameter it replaces
    fingerprint: int
    values: list             # the parameters' values now


def describe(f, name: str | None) -> Described:
    from ..device_values import host
    from . import api, params as pfile
    name = api.export_name(name, f.function.name)
    inputs = [api.Tensor(n, v.type.dtype.name, tuple(v.type.shape))
              for n, v in zip(api.unique_names([v.name for v in f.inputs], "input"), f.inputs)]
    outputs = [api.Tensor(n, v.type.dtype.name, tuple(v.type.shape))
               for n, v in zip(api.unique_names([v.name for v in f.outputs], "output"), f.outputs)]
    pnames = api.unique_names([s.name for s in f.shared], "param")
    params = [api.Tensor(n, s.type.dtype.name, tuple(s.type.shape)) for n, s in zip(pnames, f.shared)]
    index = {id(s): i for i, s in enumerate(f.shared)}
    update_vars = [index[id(s)] for s, _ in f.updates]
    updated = [i in set(update_vars) for i in range(len(params))]
    fp = pfile.fingerprint([(t.name, t.dtype, t.shape) for t in params])
    # reshaped: ascontiguousarray makes a 0-d value (a step counter) 1-d, another layout
    values = [np.ascontiguousarray(host(s._value), dtype=t.dtype).reshape(t.shape)
              for s, t in zip(f.shared, params)]
    return Described(name, inputs, outputs, params, updated, update_vars, fp, values)


def refuse_collectives(kernels) -> None:
    """An export runs without Python, so without mpi4py's communicator: a function with
    collective ops (data-parallel training) is refused rather than built to crash."""
    def walk(ks):
        for k in ks:
            if k.kind == "collective":
                return k
            found = walk(k.parts or ())
            if found is not None:
                return found
        return None
    k = walk(kernels)
    if k is not None:
        raise InputError(f"export: the function runs a collective op ({', '.join(k.fused_ops)}); an exported "
                         "library has no MPI communicator: export the single-process step instead "
                         "(built outside symfuse.distributed.data_parallel)")


def write_common(out_dir: str, d: Described, header: str, files: dict) -> None:
    """The header and the params file, the same for every target."""
    from . import params as pfile
    with open(os.path.join(out_dir, files["header"]), "w") as fh:
        fh.write(header)
    pfile.write_params(os.path.join(out_dir, files["params"]), [(t.name, v) for t, v in zip(d.params, d.values)])


def manifest_head(d: Described, f, files: dict) -> dict:
    from ..toolchain import VERSION
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": d.name, "function": f.function.name,
        "symfuse_version": VERSION, "inputs": [t.manifest() for t in d.inputs],
        "outputs": [t.manifest() for t in d.outputs],
        "params": [t.manifest(updated=u) for t, u in zip(d.params, d.updated)],
        "updates": [d.params[v].name for v in d.update_vars],
        "params_file": files["params"], "params_fingerprint": f"{d.fingerprint:016x}",
    }


def write_r(out_dir: str, d: Described, header: str, cc: str, files: dict, manifest: dict) -> None:
    """The R wrapper ``<name>.R`` and its ``.C`` glue library over the export's C API
    (docs/export.md, "R"): the same for every target, since it calls that API only."""
    from ..toolchain import VERSION
    from . import r as rwrap
    if any(t.sized for t in d.inputs):
        raise InputError("export: the R wrapper takes static shapes; export the function without r=True, or "
                         "compile it with a number for the batch")
    script, glue = rwrap.render(d.name, VERSION, d.inputs, d.outputs, d.params,
                                [d.params[v].name for v in d.update_vars])
    rwrap.build_glue(out_dir, d.name, glue, header, cc)
    files.update(rwrap.files(d.name))
    for role, text in (("r_script", script), ("r_source", glue)):
        with open(os.path.join(out_dir, files[role]), "w") as fh:
            fh.write(text)
    manifest["r"] = {"script": files["r_script"], "library": files["r_library"], "source": files["r_source"]}


def write_manifest(out_dir: str, files: dict, manifest: dict) -> None:
    with open(os.path.join(out_dir, files["manifest"]), "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")


def export(f, out_dir: str, name: str | None = None, target: str | None = None, arch=None,
           cuda_graph: bool | None = None, ptx: bool = True, r: bool = False) -> Exported:
    """Write ``f`` as a self-contained directory: its library, C header, manifest,
    parameters and the shared objects they need. ``name`` (a C identifier)
    prefixes the API and names the files; by default the function's name.

    ``target``: "cpu" (``f`` compiled for ``device="cpu"``) or "cuda" (NVIDIA
    GPUs; docs/export.md "CUDA"): ``f`` compiled for ``device="cuda"``, or any
    compiled function or a model's function maker (``model.predict_function``),
    compiled here for cuda. ``arch``: the CUDA architectures to hold CUBINs for
    (a name or a list; default the function's), ``ptx``: PTX of the newest for
    later GPUs, ``cuda_graph``: replay the launches as a CUDA graph (default: as
    compiled). By default the target is the one ``f`` was compiled for. ``r``:
    also the R wrapper ``<name>.R`` and its glue library (docs/export.md, "R")."""
    if target is None:
        from ..cuda_program import CudaProgram
        run = getattr(f, "_run", None)
        target = "cuda" if isinstance(run, CudaProgram) and run.arch != "emu" else "cpu"
    if target == "cuda":
        from .cuda import export_cuda
        return export_cuda(f, out_dir, name, arch, cuda_graph, ptx, r)
    if target != "cpu":
        raise InputError(f"export: target {target!r} is not one of 'cpu', 'cuda'")
    if arch is not None or cuda_graph is not None:
        raise InputError("export: arch and cuda_graph are options of target='cuda'")
    return _export_cpu(f, out_dir, name, r)


def _export_cpu(f, out_dir: str, name: str | None, r: bool = False) -> Exported:
    from ..cpu import FAST_FLAGS, CompiledModule
    from ..toolchain import VERSION
    from . import api, build
    t0 = time.perf_counter()
    run = getattr(f, "_run", None)
    if not isinstance(run, CompiledModule) or not run.source:
        raise InputError(f"export: {f!r} was not compiled for device='cpu'; export compiles the C backend's "
                         f"code into a library (sf.function(..., device='cpu'), or target='cuda')")
    if run.param_count != len(f.inputs) + len(f.shared):
        raise InputError("export: the compiled function's parameters do not match its inputs and shared variables")
    refuse_collectives(run.kernels)
    d = describe(f, name)
    name = d.name
    cc, ccver = build.toolchain()
    header, api_source = api.render(name, VERSION, d.inputs, d.outputs, d.params, d.updated, run, d.update_vars,
                                    d.fingerprint)
    os.makedirs(out_dir, exist_ok=True)
    files = {"library": f"lib{name}.so", "header": f"{name}.h", "manifest": f"{name}.json",
             "params": f"{name}.params"}
    deps = _copy_dependencies(out_dir, cc, ccver)
    spec = run.sizes.specialize if run.sizes else ()
    build.build_library(os.path.join(out_dir, files["library"]), name, run.source, api_source, header, cc, ccver,
                        FAST_FLAGS, [(v, build.variant_source(run.source, run.sizes.names, v)) for v in spec])
    write_common(out_dir, d, header, files)
    manifest = manifest_head(d, f, files)
    manifest.update({
        "target": {"os": platform.system().lower(), "machine": platform.machine(),
                   "march": build.resolved_march(cc), "flags": list(FAST_FLAGS)},
        "compiler": {"path": cc, "version": ccver},
        "libraries": deps, "arena_bytes": run.arena_bytes,
    })
    if run.sizes is not None:
        sized = api.sized_context(d.inputs, run.sizes)
        manifest["sizes"] = {sized["name"]: {"max": sized["max"], "from_input": d.inputs[sized["input"]].name,
                                             "bytes_per_row": sized["unit"], "specialized": list(spec)}}
    if r:
        write_r(out_dir, d, header, cc, files, manifest)
    write_manifest(out_dir, files, manifest)
    files.update({k: k for k in deps["bundled"]})
    return Exported(os.path.abspath(out_dir), name, {k: os.path.join(out_dir, v) for k, v in files.items()},
                    manifest, time.perf_counter() - t0)


def _copy_dependencies(out_dir: str, cc: str, ccver: str) -> dict:
    """Copy the shared objects the library needs into ``out_dir``: {bundled: [...], system: [...]}."""
    from . import build
    bundled, system = [], ["libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0"]
    rt = build.export_runtime(cc, ccver)
    sources = ([rt] if rt else []) + [build.blas_library()]
    gomp = build.libgomp_path(cc)
    if gomp:
        sources.append(gomp)
    else:
        system.append("libgomp.so.1")
    for src in sources:
        dst = os.path.join(out_dir, "libsymfuse_rt.so" if src == rt else os.path.basename(src))
        tmp = dst + ".tmp"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dst)           # a library a running program has mapped is replaced, not rewritten
        bundled.append(os.path.basename(dst))
    return {"bundled": bundled, "system": system}
