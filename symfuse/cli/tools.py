"""``symfuse train``, ``graph``, ``cache`` and ``parse``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import click

from .common import TARGETS, _compile, _fail, batch_opt, load_model, main, model_arg, train_opt


# ----------------------------------------------------------------------------- train
@main.command("train")
@click.argument("model")
@click.option("--target", type=click.Choice(sorted(TARGETS)), default=None,
              help="backend to train on  [default: cpu]")
# every other command says --target; --device is what train said first, kept working, not documented
@click.option("--device", type=click.Choice(sorted(TARGETS)), default=None, hidden=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="passes over the training data")
@click.option("--data", default="digits", show_default=True,
              help="digits | mnist:DIR | synthetic (charlstm: text | text:FILE)")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="batch size (default: the model's; with --workers, the global batch)")
@click.option("--lr", type=float, default=None, help="learning rate, > 0 (default: the model's)")
@click.option("--seed", type=int, default=0, show_default=True, help="initial weights and shuffling")
@click.option("--samples", type=click.Path(dir_okay=False), default=None,
              help="rbm: where to write the PNG grid of samples (default: rbm_samples.png in the "
                   "current directory)")
@click.option("--save", type=click.Path(dir_okay=False), default=None,
              help="save parameters to this .npz (on Ctrl-C: those of the last completed epoch)")
@click.option("--load", "load_path", type=click.Path(dir_okay=False), default=None,
              help="start from parameters in this .npz")
@click.option("--no-progress", is_flag=True, help="no progress bar (one line per epoch only)")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="data-parallel processes under mpiexec (MPI: pip install 'symfuse[mpi]'); "
                   "--batch is then the global batch, split between them")
@click.option("--hostfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="with --workers: MPI's host list, to run on several machines (docs/distributed.md)")
def train_cmd(model, target, device, epochs, data, batch, lr, seed, samples, save, load_path, no_progress, workers,
              hostfile):
    """Train a zoo MODEL (mlp, lenet, rbm, seqdigits, charlstm): compile report,
    progress bar, loss and accuracy per epoch."""
    from ..errors import DeviceUnavailable, InputError, SymfuseError
    from ..nn import __main__ as nn_main
    from ..nn import zoo
    if model not in zoo.ZOO:
        raise click.BadParameter(f"unknown model {model!r}; zoo models: {', '.join(sorted(zoo.ZOO))}",
                                 param_hint="MODEL")
    if target and device and target != device:
        raise click.BadParameter(f"--target {target} and --device {device} disagree (--device is another name "
                                 "for --target: give one)", param_hint="--target")
    flag = "--device" if device and not target else "--target"
    target = target or device or "cpu"
    if lr is not None and not lr > 0:     # not lr > 0: NaN too
        raise click.BadParameter(f"the learning rate must be > 0, not {lr}", param_hint="--lr")
    if samples is not None and model != "rbm":
        raise click.BadParameter(f"--samples is for the rbm, not {model}", param_hint="--samples")
    if target == "cuda":
        from ..runtime.backends import get_backend
        if not get_backend("cuda").runnable():
            _fail(f"{flag} cuda needs an NVIDIA GPU with its driver and PyCUDA (pip install 'symfuse[gpu]', "
                  "which builds PyCUDA against an installed CUDA toolkit); "
                  f"none here: use {flag} cpu", 2)
    if model == "rbm" and samples is None:
        samples = "rbm_samples.png"
    argv = [model, "--data", data, "--epochs", str(epochs), "--device", target, "--seed", str(seed)]
    argv += ["--batch", str(batch)] if batch else []
    argv += ["--lr", repr(lr)] if lr is not None else []
    argv += ["--samples", samples] if samples else []
    argv += ["--save", save] if save else []
    argv += ["--load", load_path] if load_path else []
    argv += ["--no-progress"] if no_progress else []
    if hostfile and workers == 1:
        raise click.BadParameter("--hostfile needs --workers N (N > 1)", param_hint="--hostfile")
    if workers > 1:
        from ..distributed.launch import launch
        sys.exit(launch(["-m", "symfuse.nn", *argv, "--distributed"], workers, hostfile))
    try:
        rc = nn_main.main(argv)
    except (DeviceUnavailable, InputError, OSError) as e:     # --device, --data, --load
        _fail(str(e), 2)
    except ImportError as e:        # a package this machine lacks: not the command line's fault
        _fail(str(e), 1)
    except SymfuseError as e:       # not a usage error: a compile that failed, say
        _fail(f"{type(e).__name__}: {e}", 1)
    sys.exit(rc)


# ----------------------------------------------------------------------------- graph
@main.command("graph")
@model_arg
@batch_opt
@train_opt
@click.option("--format", "fmt", type=click.Choice(["txt", "dot", "svg"]), default="txt", show_default=True,
              help="the IR as text, Graphviz DOT, or SVG (drawn by Graphviz's dot)")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="write to this file (default: standard output)")
def graph_cmd(model, batch, train, fmt, out_path):
    """The optimised IR as a graph: text, Graphviz DOT, or SVG (needs `dot`)."""
    graph = load_model(model, batch, train)
    f = _compile(graph, "interp", None)
    if fmt == "txt":
        text = f.ir()
    else:
        text = to_dot(f.function)
        if fmt == "svg":
            dot = shutil.which("dot")
            if dot is None:
                _fail("--format svg needs Graphviz's `dot` (apt-get install graphviz); "
                      "use --format dot to get the DOT text", 1)
            text = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True, check=True).stdout
    if out_path:
        with open(out_path, "w") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


def to_dot(fn) -> str:
    """DOT text of a Function's dataflow graph (built as a networkx DiGraph)."""
    import networkx as nx
    g = nx.DiGraph()
    ids = {}
    for k, p in enumerate(fn.params):
        ids[id(p)] = f"p{k}"
        g.add_node(f"p{k}", label=f"{p.name or f'arg{k}'}\\n{p.type}", shape="box")
    for k, op in enumerate(fn.ops):
        node = f"o{k}"
        g.add_node(node, label=f"{op.opdef.name}\\n{', '.join(str(o.type) for o in op.outputs)}", shape="ellipse")
        for o in op.outputs:
            ids[id(o)] = node
        for v in op.inputs:
            if id(v) in ids:
                g.add_edge(ids[id(v)], node)
    for k, r in enumerate(fn.results):
        g.add_node(f"r{k}", label=f"result {k}", shape="box")
        if id(r) in ids:
            g.add_edge(ids[id(r)], f"r{k}")
    lines = [f"digraph {fn.name} {{", "  rankdir=TB;"]
    for n, a in g.nodes(data=True):
        lines.append(f'  {n} [label="{a["label"]}", shape={a["shape"]}];')
    for u, v in g.edges():
        lines.append(f"  {u} -> {v};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- cache
@main.group("cache")
def cache_group():
    """The on-disk compile cache ($SYMFUSE_CACHE_DIR, default ~/.cache/symfuse)."""


@cache_group.command("info")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (sizes in bytes)")
def cache_info(as_json):
    """Where the cache is, and its entries and size per namespace."""
    from ..runtime.cache import DiskCache
    info = DiskCache().info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    state = "enabled" if info["enabled"] else ("read-only" if info["readable"] else "disabled")
    click.echo(f"cache: {info['root']} ({state})")
    click.echo(f"total: {info['entries']} {'entry' if info['entries'] == 1 else 'entries'}, "
               f"{human_size(info['bytes'])}")
    width = max((len(ns) for ns in info["namespaces"]), default=0)
    for ns, e in sorted(info["namespaces"].items()):
        click.echo(f"  {ns:{width}}  {e['entries']:6} {'entry  ' if e['entries'] == 1 else 'entries'}  "
                   f"{human_size(e['bytes']):>9}")
    builds = info.get("unfinished_builds") or {}
    if builds.get("count"):
        click.echo(f"not counted: {builds['count']} unfinished build(s), {human_size(builds['bytes'])} "
                   "(compiling now, or interrupted: `symfuse cache clear` removes those an hour old)")


def human_size(n: int) -> str:
    """1024-based, as ``cache prune --max-size`` reads them: 512 B, 28.6 KiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@cache_group.command("clear")
def cache_clear():
    """Remove every entry."""
    from ..runtime.cache import DiskCache
    n = DiskCache().clear()
    click.echo(f"removed {n} entries")


@cache_group.command("prune")
@click.option("--max-size", required=True, help="e.g. 500M, 2G")
def cache_prune(max_size):
    """Remove least-recently-used entries until the cache fits in --max-size."""
    from ..runtime.cache import DiskCache, parse_size
    try:
        limit = parse_size(max_size)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--max-size")
    n = DiskCache().prune(limit)
    click.echo(f"removed {n} entries")


# ----------------------------------------------------------------------------- parse
@main.command("parse")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def parse_cmd(path):
    """Parse and verify an IR file; print it back in canonical form."""
    from ..errors import SymfuseError
    from ..ir import parse, verify

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except UnicodeDecodeError as e:
        _fail(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})")
    try:
        fn = parse(text)
        verify(fn)
    except SymfuseError as e:
        click.echo(f"{path}: {e}", err=True)
        sys.exit(1)
    click.echo(str(fn), nl=False)
