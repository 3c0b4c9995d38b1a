"""``symfuse onnx check``: which of a model's nodes symfuse converts, before compiling."""
from __future__ import annotations

import json
import os

import click

from .common import _fail, json_opt, main


@main.group("onnx")
def onnx_group():
    """ONNX models (the symfuse[onnx] extra)."""


@onnx_group.command("check")
@click.argument("path")
@json_opt
def onnx_check(path, as_json):
    """Each node of the ONNX model at PATH with supported / not supported (and why).
    Exit code 0 when every node converts, 1 otherwise."""
    if not os.path.isfile(path):
        raise click.BadParameter(f"no such file: {path}", param_hint="PATH")
    from ..onnx import OnnxError, check
    from ..onnx.errors import OnnxMissingDependency
    try:
        report = check(path)
    except OnnxMissingDependency as e:
        _fail(str(e), 2)
    except OnnxError as e:
        _fail(f"{e}", 1)
    if as_json:
        click.echo(json.dumps({"source": report.source, "opset": report.opset, "ok": report.ok,
                               "error": report.error,
                               "nodes": [dict(index=n.index, name=n.name, op_type=n.op_type, domain=n.domain,
                                              supported=n.supported, reason=n.reason) for n in report.nodes]},
                              indent=2))
    else:
        _print(report)
    raise SystemExit(0 if report.ok else 1)


def _print(report) -> None:
    click.echo(f"{report.source}: opset {report.opset}, {len(report.nodes)} nodes")
    width = max([len(n.index) for n in report.nodes] + [4])
    for n in report.nodes:
        status = "supported" if n.supported else "NOT SUPPORTED"
        name = f" {n.name!r}" if n.name else ""
        why = f"  ({n.reason})" if n.reason else ""
        click.echo(f"  {n.index:>{width}}  {n.op_type}{name}: {status}{why}")
    counts = report.op_counts()
    bad = sorted(op for op, (total, good) in counts.items() if good < total)
    click.echo(f"{len(counts)} op types, {len(counts) - len(bad)} supported"
               + (f"; not supported: {', '.join(bad)}" if bad else ""))
    if report.error:
        click.echo(f"import fails: {report.error}")
