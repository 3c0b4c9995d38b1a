"""The ``symfuse`` command: compile, inspect, time, train, graph, cache, parse.

MODEL is a zoo name (``mlp``, ``lenet``, ``rbm``), ``path/to/file.py:function``
where the function returns ``(inputs, outputs)`` or ``(inputs, outputs, updates)``,
or ``path/to/model.onnx``.
Usage errors (bad MODEL, unknown options, an option that does not apply, an
unusable device or -o directory) exit with code 2; an error in a model file (or
sys.exit in it) exits with code 1 and names its file:line; Ctrl-C exits with 130.

The subcommands are registered on ``main`` (``common.py``) by ``build.py``
(compile, inspect, time), ``export_cmd.py`` (export), ``tools.py`` (train, graph, cache, parse) and
``onnx_cmd.py`` (onnx check).
"""
from __future__ import annotations

from .common import TARGETS, Graph, load_model, main  # noqa: F401  (the command's names)
from . import build, export_cmd, onnx_cmd, tools  # noqa: F401  (registers the subcommands)
from .tools import to_dot  # noqa: F401
