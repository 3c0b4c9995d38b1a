"""``symfuse export MODEL -o DIR``: MODEL's function as a directory that C programs
use without Python (``runtime/export``, docs/export.md): for the CPU, or with
``--target cuda --arch sm_XY`` (repeatable) for NVIDIA GPUs."""
from __future__ import annotations

import json
import os

import click

from .common import (_compile, _fail, check_out_dir, json_opt, load_model, main, model_arg, run_time_batch,
                     run_time_options, train_opt)


def _sm_arches(ctx, param, value):
    from ..runtime.nvrtc import _ARCH_RE
    for a in value:
        m = _ARCH_RE.match(a)
        if m is None or m.group(1) != "sm":
            raise click.BadParameter(f"{a!r} is not a GPU architecture like sm_80 or sm_90 (an export holds CUBINs "
                                     f"for real architectures, and adds PTX of the newest by itself)")
    return value


@main.command("export")
@model_arg
@run_time_batch
@train_opt
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="the directory to write (made when missing)")
@click.option("--target", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cpu, or cuda: NVIDIA GPUs (the driver is loaded at run time; builds without one)")
@click.option("--arch", "arches", multiple=True, callback=_sm_arches,
              help="cuda: a GPU architecture to hold a CUBIN for, e.g. sm_90; repeat for several (default sm_90)")
@click.option("--cuda-graph", is_flag=True, help="cuda: replay the launches as one CUDA graph")
@click.option("--name", default=None,
              help="C prefix and file stem (a C identifier; default: the function's name, e.g. lenet_predict)")
@click.option("--r", "r", is_flag=True,
              help="also write an R wrapper: <name>.R and its glue lib<name>_r.so (predict/train_step from R)")
@json_opt
def export_cmd(model, batch, max_batch, specialize, train, target, arches, cuda_graph, out_dir, name, r, as_json):
    """Export MODEL's inference function (--train: its training step) for C:
    lib<name>.so, <name>.h, <name>.json, <name>.params and the libraries they need
    (--r: and <name>.R for R). --batch batch: one library for every batch size."""
    from ..errors import CompileError, InputError
    from ..runtime.export import export
    if target == "cpu" and (arches or cuda_graph):
        _fail("--arch and --cuda-graph are options of --target cuda", 2)
    check_out_dir(out_dir)
    sized = run_time_options(batch, max_batch, specialize)
    graph = load_model(model, batch, train)
    arches = list(arches) or (["sm_90"] if target == "cuda" else [])
    f = _compile(graph, target, arches[0] if arches else None, **({"cuda_graph": True} if cuda_graph else {}),
                 **sized)
    try:
        done = (export(f, out_dir, name, target="cuda", arch=arches, r=r) if target == "cuda"
                else export(f, out_dir, name, r=r))
    except InputError as e:
        _fail(str(e), 2)
    except CompileError as e:
        _fail(f"export failed: {e}", 1)
    except OSError as e:
        _fail(f"export failed: cannot write {out_dir}: {e.strerror or e}", 1)
    sizes = {os.path.basename(p): os.path.getsize(p) for p in done.files.values()}
    if as_json:
        click.echo(json.dumps({"directory": done.directory, "name": done.name, "seconds": done.seconds,
                               "files": sizes}, indent=2))
        return
    click.echo(f"exported @{f.function.name} as {done.name} to {done.directory} in {done.seconds:.2f} s")
    for fname, size in sizes.items():
        click.echo(f"  {fname:28} {size / 1024:10.1f} KiB")
    if target == "cuda":
        t = done.manifest["target"]
        click.echo(f"CUDA: CUBINs for {', '.join(t['arches'])}" + (f", PTX {t['ptx']}" if t["ptx"] else "")
                   + "; the driver (libcuda.so.1) is loaded at run time")
    click.echo(f"C API: {os.path.join(done.directory, done.name + '.h')}; example: examples/c/predict.c")
    if r:
        click.echo(f"R: source(\"{os.path.join(done.directory, done.name + '.R')}\"); "
                   f"model <- {done.name}_load()")
