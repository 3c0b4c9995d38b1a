"""The ``symfuse`` command: compile, inspect, time, train, graph, cache, parse.

MODEL is a zoo name (``mlp``, ``lenet``, ``rbm``) or ``path/to/file.py:function``
where the function returns ``(inputs, outputs)`` or ``(inputs, outputs, updates)``.
Usage errors (bad MODEL, unknown options, an unusable device) exit with code 2;
an error in a model file (or sys.exit in it) exits with code 1 and names its file:line.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import click

TARGETS = {"cpu": "cpu", "cuda": "cuda", "cuda-emu": "cuda-emu", "interp": "interp"}


def _fail(msg: str, code: int = 1):
    click.echo(f"symfuse: {msg}", err=True)
    sys.exit(code)


# ----------------------------------------------------------------------------- models
class Graph:
    """What a MODEL argument resolves to: a symbolic graph to compile. ``loc`` is the
    (file, line) of a model file's return statement: sf.function's errors name it."""

    def __init__(self, name, inputs, outputs, updates=(), zoo=None, loc=None, path=None):
        self.name, self.inputs, self.outputs, self.updates, self.zoo = name, inputs, outputs, updates, zoo
        self.loc, self.path = loc, path

    def function(self, device, **options):
        import symfuse as sf
        from .ir.core import location
        with location(self.loc) if self.loc else contextlib.nullcontext():
            return sf.function(self.inputs, self.outputs, updates=self.updates or None, device=device,
                               name=self.name, **options)


def _user_code(path: str, what: str, call):
    """Run code from a model file. What it raises is a bug in that file, not a usage
    error: exit code 1 and the file's own line, never a traceback through click."""
    from .errors import SymfuseError
    try:
        return call()
    except SystemExit as e:
        _fail(f"{_where(e, path)}: the model file called sys.exit({e.code!r}) while {what}; nothing was compiled")
    except SymfuseError as e:
        _fail(f"{_where(e, path)}: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 -- any error of the user's code, reported at its line
        _fail(f"{_where(e, path)}: {type(e).__name__}: {e.msg if isinstance(e, SyntaxError) else e} (while {what})")


def _where(e: BaseException, path: str) -> str:
    """file:line of the innermost frame in the model file (a SyntaxError's own line)."""
    real = os.path.realpath(path)
    if isinstance(e, SyntaxError) and e.filename and os.path.realpath(e.filename) == real:
        return f"{path}:{e.lineno}"
    tb, line = e.__traceback__, None
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == real:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line else path


def _call_model(fn):
    """``fn()`` and the (file, line) it returned from (a profile hook sees the return event)."""
    code = getattr(fn, "__code__", None)
    loc = [(code.co_filename, code.co_firstlineno) if code else None]

    def hook(frame, event, arg):
        if event == "return" and frame.f_code is code:
            loc[0] = (code.co_filename, frame.f_lineno)
    prev = sys.getprofile()
    sys.setprofile(hook)
    try:
        return fn(), loc[0]
    finally:
        sys.setprofile(prev)


def load_model(spec: str, batch: int | None, train: bool) -> Graph:
    if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        path, func = spec.rsplit(":", 1)
        if not os.path.isfile(path):
            raise click.BadParameter(f"no such file: {path}", param_hint="MODEL")
        name = f"symfuse_user_{abs(hash(os.path.abspath(path)))}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        # as `python path.py` would: its directory importable, the module in sys.modules (dataclasses need it)
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        sys.modules[name] = module
        _user_code(path, "it was imported", lambda: mod_spec.loader.exec_module(module))
        fn = getattr(module, func, None)
        if not callable(fn):
            raise click.BadParameter(f"{path} has no function {func!r}", param_hint="MODEL")
        try:
            inspect.signature(fn).bind()
        except TypeError:
            raise click.BadParameter(f"{path}:{func} must take no arguments, it is {func}{inspect.signature(fn)}",
                                     param_hint="MODEL") from None
        except ValueError:      # no signature to inspect (a builtin): let the call decide
            pass
        res, loc = _user_code(path, f"{func}() ran", lambda: _call_model(fn))
        if not isinstance(res, (tuple, list)) or len(res) not in (2, 3):
            got = f"{len(res)} items" if isinstance(res, (tuple, list)) else type(res).__name__
            raise click.BadParameter(f"{path}:{func} must return (inputs, outputs) or (inputs, outputs, updates), "
                                     f"not {got}", param_hint="MODEL")
        return Graph(func, *res, loc=loc, path=path)
    from .nn import zoo
    if spec not in zoo.ZOO:
        raise click.BadParameter(f"unknown model {spec!r}; zoo models: {', '.join(sorted(zoo.ZOO))}, "
                                 "or path/to/file.py:function", param_hint="MODEL")
    m = zoo.get(spec, **({"batch": batch} if batch else {}))
    if train:
        return Graph(f"{spec}_train", m.inputs, m.train_outputs, m.updates, zoo=m)
    import symfuse as sf
    x = sf.tensor("x", (m.batch,) + tuple(m.input_shape), m.dtype)
    return Graph(f"{spec}_predict", [x], m.predict_graph(x), zoo=m)


def _compile(graph: Graph, target: str, arch: str | None):
    from .errors import CompileError, DeviceUnavailable, InputError, SymfuseError
    opts = {"arch": arch} if arch and target.startswith("cuda") else {}
    try:
        return graph.function(TARGETS[target], **opts)
    except DeviceUnavailable as e:
        _fail(f"{e}", 2)
    except CompileError as e:
        _fail(f"compile failed: {e}", 1)
    except SymfuseError as e:
        # an error in the model's graph names the model file (every such message ends in its
        # location); an InputError without it is an option's fault (--arch): a usage error
        mine = graph.loc is not None and f"(at {graph.loc[0]}:" in str(e)
        where = f"{graph.path}:{graph.loc[1]}: " if mine else ""
        _fail(f"{where}{type(e).__name__}: {e}", 2 if isinstance(e, InputError) and not mine else 1)


def _arch(ctx, param, value):
    # the cuda-emu target takes the option too, and would accept any text
    from .runtime.nvrtc import _ARCH_RE
    if value is not None and not _ARCH_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a CUDA architecture like sm_90, sm_90a or compute_90")
    return value


model_arg = click.argument("model")
target_opt = click.option("--target", type=click.Choice(sorted(TARGETS)), default="cpu", show_default=True,
                          help="backend to compile for")
arch_opt = click.option("--arch", default=None, callback=_arch,
                        help="CUDA architecture, e.g. sm_90 (cuda targets)")
batch_opt = click.option("--batch", type=click.IntRange(min=1), default=None, help="batch size (zoo models)")
train_opt = click.option("--train", is_flag=True, help="the training step (default: inference)")
json_opt = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="symfuse")
def main():
    """symfuse: a symbolic deep-learning graph compiler."""


# ----------------------------------------------------------------------------- compile
@main.command("compile")
@model_arg
@target_opt
@arch_opt
@batch_opt
@train_opt
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="write kernels, IR, memory plan and report.json here")
@json_opt
def compile_cmd(model, target, arch, batch, train, out_dir, as_json):
    """Compile MODEL ahead of time and print where the compile time went."""
    graph = load_model(model, batch, train)
    f = _compile(graph, target, arch)
    if out_dir:
        _write_artifacts(f, out_dir, target)
    if as_json:
        click.echo(f.report.to_json())
    else:
        click.echo(f.report.table())
        click.echo(f"{len(f.kernels)} kernels" + (f"; artefacts in {out_dir}" if out_dir else ""))


def _write_artifacts(f, out_dir: str, target: str) -> None:
    from .ir.printer import print_function
    kdir = os.path.join(out_dir, "kernels")
    os.makedirs(kdir, exist_ok=True)
    ext = ".cu" if target.startswith("cuda") else ".c"
    with open(os.path.join(out_dir, "ir_before.txt"), "w") as fh:
        fh.write(print_function(f.source_function, True))
    with open(os.path.join(out_dir, "ir_after.txt"), "w") as fh:
        fh.write(f.ir(locations=True))
    if f.source:
        with open(os.path.join(out_dir, "module" + ext), "w") as fh:
            fh.write(f.source)
    for k in f.kernels:
        with open(os.path.join(kdir, k.name + ext), "w") as fh:
            fh.write(k.source)
    run = f._run
    if getattr(run, "lib_path", None):
        shutil.copyfile(run.lib_path, os.path.join(out_dir, "module.so"))
    images = getattr(run, "images", None)
    if images:      # one CUBIN per NVRTC unit: module.cubin, or module_0.cubin, module_1.cubin, ...
        for i, image in enumerate(images):
            with open(os.path.join(out_dir, "module.cubin" if len(images) == 1 else f"module_{i}.cubin"), "wb") as fh:
                fh.write(image)
        try:
            from .runtime import nvrtc
            with open(os.path.join(out_dir, "module.ptx"), "w") as fh:
                fh.write(nvrtc.ptx_for(run.source, run.name, arch=run.arch,
                                       include_dirs=[os.path.dirname(nvrtc.__file__) + "/../templates/cuda"]))
        except Exception as e:  # noqa: BLE001 -- PTX is a bonus next to the CUBIN
            click.echo(f"symfuse: PTX not written: {e}", err=True)
    lib = getattr(run, "library", None)
    if lib is not None:     # the precompiled library images the library launches run from
        for i, image in enumerate(lib.images):
            with open(os.path.join(out_dir, f"library_{i}.cubin"), "wb") as fh:
                fh.write(image)
    with open(os.path.join(out_dir, "memory_plan.json"), "w") as fh:
        json.dump(f.report.info.get("memory", {}), fh, indent=2)
    with open(os.path.join(out_dir, "report.json"), "w") as fh:
        fh.write(f.report.to_json())


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
    graph = load_model(model, batch, train)
    f = _compile(graph, target, arch)
    if what == "ir":
        click.echo(f.ir(), nl=False)
        return
    kernels = f.kernels
    if kernel:
        kernels = [k for k in kernels if k.name == kernel]
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
        from .errors import CompileError
        for k in kernels:
            try:
                click.echo(getattr(k, what))
            except CompileError as e:
                _fail(str(e))
        return
    rows = []
    for k in kernels:
        row = {"name": k.name, "kind": k.kind, "ops": list(k.fused_ops), "provenance": list(k.provenance)}
        if hasattr(k, "launch_config"):
            row["launches"] = k.launch_config
            row["resources"] = {n: (vars(r) if r is not None else None) for n, r in getattr(k, "resources", {}).items()}
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        line = f"{row['name']:44} {row['kind']:9} {len(row['ops']):3} ops"
        for n, r in (row.get("resources") or {}).items():
            if r:
                line += f"  {r['registers']} regs, {r['shared_bytes']} B smem, {r['spill_stores']} B spills"
        click.echo(line)
        if what == "resources" or kernel:
            for ln in row.get("launches", []):
                click.echo(f"    launch {ln['kernel']}: grid {ln['grid']} block {ln['block']} smem {ln['shared_bytes']}")
            for p in row["provenance"]:
                click.echo(f"    {p}")


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
    load_model(model, batch, train)   # validate MODEL here, with a usage error, not in the children
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
    click.echo(f"compile time of {model} ({'train' if train else 'predict'}, {target}), median of {repeat} "
               f"fresh processes")
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
    graph = load_model(model, batch, train)
    f = _compile(graph, target, arch)
    stages = {}
    for s in f.report.stages:
        stages[s.name] = stages.get(s.name, 0.0) + s.seconds
    click.echo(json.dumps({"total": f.report.total_seconds, "stages": stages}))


# ----------------------------------------------------------------------------- train
@main.command("train")
@model_arg
@click.option("--device", type=click.Choice(sorted(TARGETS)), default="cpu", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--data", default="digits", show_default=True, help="digits | mnist:PATH | synthetic")
@batch_opt
@click.option("--lr", type=float, default=None, help="learning rate (default: the model's)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--samples", type=click.Path(dir_okay=False), default=None,
              help="rbm: where to write the PNG grid of samples (default rbm_samples.png)")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="save parameters to this .npz")
@click.option("--load", "load_path", type=click.Path(dir_okay=False), default=None,
              help="start from parameters in this .npz")
@click.option("--no-progress", is_flag=True)
def train_cmd(model, device, epochs, data, batch, lr, seed, samples, save, load_path, no_progress):
    """Train a zoo MODEL: compile report, progress bar, loss and accuracy per epoch."""
    from .errors import DeviceUnavailable, InputError, SymfuseError
    from .nn import __main__ as nn_main
    from .nn import zoo
    if model not in zoo.ZOO:
        raise click.BadParameter(f"unknown model {model!r}; zoo models: {', '.join(sorted(zoo.ZOO))}",
                                 param_hint="MODEL")
    if device == "cuda":
        from .runtime.backends import get_backend
        if not get_backend("cuda").runnable():
            _fail("--device cuda needs an NVIDIA GPU and PyCUDA (pip install 'symfuse[cuda]'); "
                  "none here: use --device cpu", 2)
    if model == "rbm" and samples is None:
        samples = "rbm_samples.png"
    argv = [model, "--data", data, "--epochs", str(epochs), "--device", device, "--seed", str(seed)]
    argv += ["--batch", str(batch)] if batch else []
    argv += ["--lr", str(lr)] if lr else []
    argv += ["--samples", samples] if samples else []
    argv += ["--save", save] if save else []
    argv += ["--load", load_path] if load_path else []
    argv += ["--no-progress"] if no_progress else []
    try:
        rc = nn_main.main(argv)
    except (DeviceUnavailable, InputError, OSError, ImportError) as e:     # --device, --data, --load
        _fail(str(e), 2)
    except SymfuseError as e:       # not a usage error: a compile that failed, say
        _fail(f"{type(e).__name__}: {e}", 1)
    sys.exit(rc)


# ----------------------------------------------------------------------------- graph
@main.command("graph")
@model_arg
@batch_opt
@train_opt
@click.option("--format", "fmt", type=click.Choice(["txt", "dot", "svg"]), default="txt", show_default=True)
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None)
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
@json_opt
def cache_info(as_json):
    """Entries and bytes per namespace."""
    from .runtime.cache import DiskCache
    info = DiskCache().info()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            click.echo(f"{k}: {v}")


@cache_group.command("clear")
def cache_clear():
    """Remove every entry."""
    from .runtime.cache import DiskCache
    n = DiskCache().clear()
    click.echo(f"removed {n} entries")


@cache_group.command("prune")
@click.option("--max-size", required=True, help="e.g. 500M, 2G")
def cache_prune(max_size):
    """Remove least-recently-used entries until the cache fits in --max-size."""
    from .runtime.cache import DiskCache, parse_size
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
    from .errors import SymfuseError
    from .ir import parse, verify

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


if __name__ == "__main__":
    main()
