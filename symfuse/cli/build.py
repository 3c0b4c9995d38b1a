"""``symfuse compile``, ``inspect`` and ``time``: compiling a MODEL and
looking at what came out (kernels, IR, PTX/SASS, resources, compile time)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import click

from .common import (_compile, _fail, arch_opt, batch_opt, check_arch, check_out_dir, json_opt, load_model, main,
                     model_arg, run_time_batch, run_time_options, target_opt, train_opt)


# ----------------------------------------------------------------------------- compile
@main.command("compile")
@model_arg
@target_opt
@arch_opt
@run_time_batch
@train_opt
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write kernels, IR, memory plan and report.json to this directory (created if missing; "
                   "what an earlier compile wrote there is replaced)")
@click.option("--force", is_flag=True, help="with -o: write into a non-empty directory symfuse did not write")
@json_opt
def compile_cmd(model, target, arch, batch, max_batch, specialize, train, out_dir, force, as_json):
    """Compile MODEL ahead of time and print where the compile time went."""
    check_arch(target, arch)
    if out_dir is not None:
        check_out_dir(out_dir, MANIFEST, force)
    sized = run_time_options(batch, max_batch, specialize)
    graph = load_model(model, batch, train)
    f = _compile(graph, target, arch, **sized)
    if out_dir is not None:
        _write_artifacts(f, out_dir, target)
    if as_json:
        click.echo(f.report.to_json())
    else:
        click.echo(f.report.table())
        click.echo(f"{len(f.kernels)} kernels" + (f"; artefacts in {out_dir}" if out_dir else ""))


MANIFEST = ".symfuse-compile.json"


def _clear_previous(out_dir: str) -> None:
    """Remove what an earlier compile wrote here (its manifest lists it), so that
    nothing of another model or target stays next to the new artefacts."""
    try:
        with open(os.path.join(out_dir, MANIFEST)) as fh:
            written = json.load(fh)
    except (OSError, ValueError):
        return
    root = os.path.realpath(out_dir)
    for rel in written if isinstance(written, list) else []:
        p = os.path.realpath(os.path.join(out_dir, str(rel)))
        if p.startswith(root + os.sep) and os.path.isfile(p):    # never outside -o, whatever the file says
            os.remove(p)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(out_dir, "kernels"))


def _write_artifacts(f, out_dir: str, target: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
        _clear_previous(out_dir)
        written = _write_files(f, out_dir, target)
        with open(os.path.join(out_dir, MANIFEST), "w") as fh:
            json.dump(sorted(os.path.relpath(p, out_dir) for p in written), fh, indent=1)
    except OSError as e:
        _fail(f"cannot write {out_dir}: {e.strerror or e} ({e.filename or out_dir})", 1)


def _write_files(f, out_dir: str, target: str) -> list[str]:
    """Every artefact; returns their paths (for the manifest)."""
    from ..ir.printer import print_function
    written = []

    def put(name: str, data) -> None:
        path = os.path.join(out_dir, name)
        with open(path, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
        written.append(path)

    os.makedirs(os.path.join(out_dir, "kernels"), exist_ok=True)
    ext = ".cu" if target.startswith("cuda") else ".c"
    put("ir_before.txt", print_function(f.source_function, True))
    put("ir_after.txt", f.ir(locations=True))
    if f.source:
        put("module" + ext, f.source)
    for k in _all_kernels(f.kernels):
        put(os.path.join("kernels", k.name + ext), k.source)
    run = f._run
    if getattr(run, "lib_path", None):
        shutil.copyfile(run.lib_path, os.path.join(out_dir, "module.so"))
        written.append(os.path.join(out_dir, "module.so"))
    images = getattr(run, "images", None)
    if images:      # one CUBIN per NVRTC unit: module.cubin, or module_0.cubin, module_1.cubin, ...
        for i, image in enumerate(images):
            put("module.cubin" if len(images) == 1 else f"module_{i}.cubin", image)
        try:
            from ..runtime import nvrtc
            put("module.ptx", nvrtc.ptx_for(run.source, run.name, arch=run.arch,
                                            include_dirs=[os.path.dirname(nvrtc.__file__) + "/../templates/cuda"]))
        except Exception as e:  # noqa: BLE001 -- PTX is a bonus next to the CUBIN
            click.echo(f"symfuse: PTX not written: {e}", err=True)
    lib = getattr(run, "library", None)
    if lib is not None:     # the precompiled library images the library launches run from
        for i, image in enumerate(lib.images):
            put(f"library_{i}.cubin", image)
    put("memory_plan.json", json.dumps(f.report.info.get("memory", {}), indent=2))
    put("report.json", f.report.to_json())
    return written


# ----------------------------------------------------------------------------- inspect
@main.command("inspect")
@model_arg
@target_opt
@arch_opt
@batch_opt
@train_opt
@click.option("--kernel", default=None, help="one kernel by name")
@click.option("--ir", "what", flag_value="ir", help="the optimised IR")
@click.option("--source", "what", flag_value="source", help="kernel source")
@click.option("--ptx", "what", flag_value="ptx", help="PTX (cuda)")
@click.option("--sass", "what", flag_value="sass", help="SASS (cuda, needs nvidia-cuda-nvdisasm)")
@click.option("--resources", "what", flag_value="resources", help="registers, shared memory, spills (cuda)")
@json_opt
def inspect_cmd(model, target, arch, batch, train, kernel, what, as_json):
    """List MODEL's kernels, or show one kernel's source, PTX, SASS or resources."""
    check_arch(target, arch)
    if what == "ir" and kernel:
        raise click.UsageError("--ir shows the whole function's IR; --kernel picks a kernel's --source, --ptx, "
                               "--sass or --resources")
    if as_json and what in ("ir", "source", "ptx", "sass"):
        raise click.UsageError(f"--json is for the kernel list and --resources, not --{what} (plain text)")
    graph = load_model(model, batch, train)
    f = _compile(graph, target, arch)
    if what == "ir":
        click.echo(f.ir(), nl=False)
        return
    kernels = f.kernels
    if kernel:
        kernels = [k for k in _all_kernels(kernels) if k.name == kernel]
        if not kernels:
            raise click.BadParameter(f"no kernel {kernel!r}; kernels: {', '.join(k.name for k in f.kernels)}",
                                     param_hint="--kernel")
    if what in ("ptx", "sass", "resources") and not target.startswith("cuda"):
        raise click.UsageError(f"--{what} needs --target cuda")
    if what == "source":
        for k in kernels:
            click.echo(k.source)
        return
    if what in ("ptx", "sass"):
        from ..errors import CompileError
        for k in kernels:
            try:
                click.echo(_listing(k, what) if kernel else getattr(k, what))
            except CompileError as e:
                _fail(str(e))
        return
    rows = _rows(kernels, target)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_rows(rows, bool(what == "resources" or kernel))


_SASS_HEADER = re.compile(r"^//-+ (\S+)\s*-*$", re.M)


def _listing(k, what: str) -> str:
    """One kernel's own PTX entries or SASS sections: a name that is a prefix of
    another kernel's (E_add of E_add_1) must not pick that one, nor the whole unit."""
    names = [ln.kernel for ln in k.launches] or [k.name]
    if what == "ptx":
        text = k.program.ptx_of(k)
        parts = []
        for n in names:
            m = re.search(rf"^[^\n]*\.entry\s+{re.escape(n)}\s*\(", text, re.M)
            if m:
                end = text.find("\n}\n", m.start())
                parts.append(text[m.start():end + 2 if end >= 0 else len(text)])
    else:
        if k.cubin is None:
            raise click.UsageError("--sass needs --target cuda (cuda-emu compiles no CUBIN)")
        text = k.program.sass_of(k.cubin)
        heads = list(_SASS_HEADER.finditer(text))
        wanted = {f".text.{n}" for n in names}
        parts = [text[h.start():(heads[i + 1].start() if i + 1 < len(heads) else len(text))].rstrip() + "\n"
                 for i, h in enumerate(heads) if h.group(1) in wanted]
    if not parts:
        _fail(f"the {what.upper()} of {k.program.name} has no {', '.join(names)}: the listing's format "
              "was not understood", 1)
    return "\n".join(parts)


def _is_loop(k) -> bool:
    """A loop or branch: its region bodies' kernels are its parts (a multi kernel's
    parts are pieces of one kernel)."""
    return bool(k.parts) and not k.launches and k.kind != "multi"


def _all_kernels(kernels):
    for k in kernels:
        yield k
        if _is_loop(k):
            yield from _all_kernels(k.parts)


def _rows(kernels, target: str) -> list[dict]:
    rows = []
    for k in kernels:
        row = {"name": k.name, "kind": k.kind, "ops": list(k.fused_ops), "provenance": list(k.provenance)}
        if target.startswith("cuda"):     # GPU kernels: their launches and what ptxas reported
            row["launches"] = k.launch_config
            row["resources"] = {n: (vars(r) if r is not None else None) for n, r in k.resources.items()}
        if _is_loop(k):                   # a loop's body kernels, nested under it
            row["body"] = _rows(k.parts, target)
        rows.append(row)
    return rows


def _print_rows(rows, detail: bool, depth: int = 0) -> None:
    pad = "  " * depth
    for row in rows:
        if "body" in row:
            click.echo(f"{pad}{row['name']:{44 - len(pad)}} {row['kind']:9} {row['provenance'][0]}, "
                       f"{len(row['body'])} kernel(s) per step:")
            _print_rows(row["body"], detail, depth + 1)
            continue
        line = f"{pad}{row['name']:{44 - len(pad)}} {row['kind']:9} {len(row['ops']):3} ops"
        for n, r in (row.get("resources") or {}).items():
            if r:
                line += f"  {r['registers']} regs, {r['shared_bytes']} B smem, {r['spill_stores']} B spills"
        click.echo(line)
        if detail:
            for ln in row.get("launches", []):
                click.echo(f"{pad}    launch {ln['kernel']}: grid {ln['grid']} block {ln['block']} "
                           f"smem {ln['shared_bytes']}")
            for p in row["provenance"]:
                click.echo(f"{pad}    {p}")


# ----------------------------------------------------------------------------- time
@main.command("time")
@model_arg
@target_opt
@arch_opt
@batch_opt
@train_opt
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="fresh processes per measurement (the median is shown)")
@json_opt
def time_cmd(model, target, arch, batch, train, repeat, as_json):
    """Compile-time breakdown of MODEL, cold (empty cache) and warm, each the
    median over REPEAT fresh processes."""
    check_arch(target, arch)
    graph = load_model(model, batch, train)   # validate MODEL here, with a usage error, not in the children
    args = [model, "--target", target] + (["--arch", arch] if arch else []) + \
           (["--batch", str(batch)] if batch else []) + (["--train"] if train else [])
    results = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as warm_dir:
        _child(args, warm_dir)          # fills the warm cache
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as cold_dir:
                results["cold"].append(_child(args, cold_dir))
            results["warm"].append(_child(args, warm_dir))
    summary = {}
    for mode, runs in results.items():
        stages = {}
        for r in runs:
            for name, sec in r["stages"].items():
                stages.setdefault(name, []).append(sec)
        summary[mode] = {"total_s": statistics.median(r["total"] for r in runs),
                         "min_s": min(r["total"] for r in runs), "max_s": max(r["total"] for r in runs),
                         "stages": {n: statistics.median(v) for n, v in stages.items()}}
    if as_json:
        click.echo(json.dumps({"model": model, "target": target, "repeat": repeat, **summary}, indent=2))
        return
    names = list(dict.fromkeys(list(summary["cold"]["stages"]) + list(summary["warm"]["stages"])))
    click.echo(f"compile time of {model} ({'train' if train or graph.updates else 'predict'}, {target}), "
               f"median of {repeat} fresh processes")
    click.echo(f"{'stage':24} {'cold ms':>10} {'warm ms':>10}")
    for n in names:
        c, w = summary["cold"]["stages"].get(n), summary["warm"]["stages"].get(n)
        click.echo(f"{n:24} {'' if c is None else f'{c * 1e3:10.2f}':>10} {'' if w is None else f'{w * 1e3:10.2f}':>10}")
    click.echo(f"{'total':24} {summary['cold']['total_s'] * 1e3:10.2f} {summary['warm']['total_s'] * 1e3:10.2f}")


def _child(args, cache_dir):
    env = dict(os.environ, SYMFUSE_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-m", "symfuse.cli", "_time-child", *args], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        _fail(f"timing run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@main.command("_time-child", hidden=True)
@model_arg
@target_opt
@arch_opt
@batch_opt
@train_opt
def time_child(model, target, arch, batch, train):
    check_arch(target, arch)
    graph = load_model(model, batch, train)
    f = _compile(graph, target, arch)
    stages = {}
    for s in f.report.stages:
        stages[s.name] = stages.get(s.name, 0.0) + s.seconds
    click.echo(json.dumps({"total": f.report.total_seconds, "stages": stages}))
