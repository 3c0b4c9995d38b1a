"""``symfuse export MODEL -o DIR``: MODEL's cpu function as a directory that C
programs use without Python (``runtime/export``, docs/export.md)."""
from __future__ import annotations

import json
import os

import click

from .common import _compile, _fail, batch_opt, json_opt, load_model, main, model_arg, train_opt


@main.command("export")
@model_arg
@batch_opt
@train_opt
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="the directory to write (made when missing)")
@click.option("--name", default=None,
              help="C prefix and file stem (a C identifier; default: the function's name, e.g. lenet_predict)")
@click.option("--r", "r", is_flag=True,
              help="also write an R wrapper: <name>.R and its glue lib<name>_r.so (predict/train_step from R)")
@json_opt
def export_cmd(model, batch, train, out_dir, name, r, as_json):
    """Export MODEL's inference function (--train: its training step) for C:
    lib<name>.so, <name>.h, <name>.json, <name>.params and the libraries they need
    (--r: and <name>.R for R)."""
    from ..errors import CompileError, InputError
    from ..runtime.export import export
    graph = load_model(model, batch, train)
    f = _compile(graph, "cpu", None)
    try:
        done = export(f, out_dir, name, r=r)
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
    click.echo(f"C API: {os.path.join(done.directory, done.name + '.h')}; example: examples/c/predict.c")
    if r:
        click.echo(f"R: source(\"{os.path.join(done.directory, done.name + '.R')}\"); "
                   f"model <- {done.name}_load()")
