"""What the ``symfuse`` subcommands share: the ``main`` group they are
registered on, MODEL resolution (a zoo name or ``file.py:function``, whose
errors are reported at the model file's line), compiling it for a target,
and the common options."""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import sys

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
        from ..ir.core import location
        with location(self.loc) if self.loc else contextlib.nullcontext():
            return sf.function(self.inputs, self.outputs, updates=self.updates or None, device=device,
                               name=self.name, **options)


def _user_code(path: str, what: str, call):
    """Run code from a model file. What it raises is a bug in that file, not a usage
    error: exit code 1 and the file's own line, never a traceback through click."""
    from ..errors import SymfuseError
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


def _onnx_model(path: str, batch: int | None, train: bool) -> Graph:
    if not os.path.isfile(path):
        raise click.BadParameter(f"no such file: {path}", param_hint="MODEL")
    if train:
        raise click.BadParameter(f"{path}: an ONNX model has no training step (no loss or updates) to compile; "
                                 "fine-tune it from Python with sf.onnx.load (docs/onnx.md)", param_hint="--train")
    from ..onnx import OnnxError, load
    from ..onnx.errors import OnnxMissingDependency
    from ..onnx.support import input_shapes
    try:
        m = load(path, shapes=input_shapes(path, batch))
    except OnnxMissingDependency as e:
        _fail(str(e), 2)
    except OnnxError as e:
        hint = " (on the command line, --batch N gives a symbolic first axis its size)" \
            if "symbolic size" in str(e) and batch is None else ""
        _fail(f"{e}{hint}", 1)
    return Graph(m.name, m.inputs, m.outputs, path=path)


def load_model(spec: str, batch: int | str | None, train: bool) -> Graph:
    if isinstance(batch, str) and (spec.endswith(".onnx") or ":" in spec):
        raise click.BadParameter(f"a named run-time batch (--batch {batch}) is for zoo models", param_hint="--batch")
    if spec.endswith(".onnx"):
        return _onnx_model(spec, batch, train)
    if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        path, func = spec.rsplit(":", 1)
        # the function fixes its shapes and returns its updates or none: neither flag can change them
        if batch is not None:
            raise click.BadParameter(f"--batch is for zoo and ONNX models; {spec} gives its inputs' shapes itself",
                                     param_hint="--batch")
        if train:
            raise click.BadParameter(f"--train is for zoo models; {spec} is compiled as it is "
                                     "(a training step if it returns updates)", param_hint="--train")
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
    from ..nn import zoo
    if spec not in zoo.ZOO:
        raise click.BadParameter(f"unknown model {spec!r}; zoo models: {', '.join(sorted(zoo.ZOO))}, "
                                 "path/to/file.py:function, or path/to/model.onnx", param_hint="MODEL")
    from ..ir.core import location
    # no user line builds a zoo model here: its ops name their layers and where the zoo defines them
    with location(("<symfuse>", 0)):
        m = zoo.get(spec, **({"batch": batch} if batch else {}))
        if train:
            return Graph(f"{spec}_train", m.inputs, m.train_outputs, m.updates, zoo=m)
        import symfuse as sf
        x = sf.tensor("x", (m.batch,) + tuple(m.input_shape), m.dtype)
        return Graph(f"{spec}_predict", [x], m.predict_graph(x), zoo=m)


def _compile(graph: Graph, target: str, arch: str | None, **options):
    from ..errors import CompileError, DeviceUnavailable, InputError, SymfuseError
    opts = {**({"arch": arch} if arch and target.startswith("cuda") else {}), **options}
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


def check_out_dir(out_dir: str, manifest: str | None = None, force: bool = True) -> None:
    """Before compiling: -o must be a directory symfuse can create or write, and
    (unless ``force``) empty or holding ``manifest``, the list of what symfuse wrote there."""
    def bad(why):
        raise click.BadParameter(f"{out_dir}: {why}", param_hint="-o")
    if not out_dir.strip():
        raise click.BadParameter("an empty path is no directory", param_hint="-o")
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            bad("exists and is not a directory")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            bad("is not writable")
        names = set(os.listdir(out_dir))
        if names and manifest not in names and not force:
            bad("is not empty and symfuse did not write it: choose a new or empty directory, "
                "or --force to write into it")
        return
    parent = os.path.dirname(os.path.abspath(out_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        bad(f"cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        bad(f"cannot be created: {parent} is not writable")


def _arch(ctx, param, value):
    # the cuda-emu target takes the option too, and would accept any text
    from ..runtime.nvrtc import _ARCH_RE
    if value is not None and not _ARCH_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a CUDA architecture like sm_90, sm_90a or compute_90")
    return value


MODEL_HELP = """MODEL is a zoo model (mlp, lenet, rbm, seqdigits, charlstm; --batch sets
its batch, --train picks its training step), path/to/file.py:function (the
function takes no arguments and returns (inputs, outputs) or (inputs,
outputs, updates); its shapes are its own), or path/to/model.onnx."""


def model_arg(f):
    """The MODEL argument, explained in the command's --help."""
    f.__doc__ = f"{(f.__doc__ or '').rstrip()}\n\n{MODEL_HELP}"
    return click.argument("model")(f)


def check_arch(target: str, arch: str | None) -> None:
    if arch and not target.startswith("cuda"):
        raise click.BadParameter(f"--arch {arch} is for --target cuda or cuda-emu, not {target}",
                                 param_hint="--arch")


target_opt = click.option("--target", type=click.Choice(sorted(TARGETS)), default="cpu", show_default=True,
                          help="backend to compile for")
arch_opt = click.option("--arch", default=None, callback=_arch,
                        help="CUDA architecture, e.g. sm_90 (cuda targets)")
batch_opt = click.option("--batch", type=click.IntRange(min=1), default=None,
                         help="batch size (zoo models; an ONNX model's symbolic first axis)")


class _BatchSize(click.ParamType):
    """A batch size, or a name: the batch is then chosen at each call (a run-time size)."""
    name = "N|NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value)
        if text.isdigit() and int(text) >= 1:
            return int(text)
        from ..ir.symdim import _NAME
        if _NAME.match(text):
            return text
        self.fail(f"{text!r} is neither a batch size >= 1 nor a name for a run-time batch (like 'batch')", param, ctx)


run_time_batch_opts = [
    click.option("--batch", type=_BatchSize(), default=None,
                 help="batch size (zoo models; an ONNX model's symbolic first axis), or a name such as 'batch': "
                      "the batch is then chosen at each call (zoo models)"),
    click.option("--max-batch", type=click.IntRange(min=1), default=None,
                 help="with --batch NAME: the largest batch a call may have (default: any)"),
    click.option("--specialize", type=click.IntRange(min=1), multiple=True,
                 help="with --batch NAME: a batch size that also gets a build of its own (repeatable)"),
]


def run_time_batch(f):
    for opt in reversed(run_time_batch_opts):
        f = opt(f)
    return f


def run_time_options(batch, max_batch, specialize) -> dict:
    """sf.function's keywords for --max-batch / --specialize (usage errors without --batch NAME)."""
    if (max_batch or specialize) and not isinstance(batch, str):
        raise click.BadParameter("--max-batch and --specialize are for a run-time batch (--batch NAME)",
                                 param_hint="--max-batch")
    return {**({"max_batch": max_batch} if max_batch else {}),
            **({"specialize": list(specialize)} if specialize else {})}
train_opt = click.option("--train", is_flag=True, help="the training step (default: inference)")
json_opt = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


class _Group(click.Group):
    def invoke(self, ctx):
        # click turns Ctrl-C into "Aborted!" and exit 1; shells and scripts expect 128 + SIGINT
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("symfuse: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="symfuse")
def main():
    """symfuse: a symbolic deep-learning graph compiler."""
