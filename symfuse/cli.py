"""The ``symfuse`` command."""
from __future__ import annotations

import sys

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="symfuse")
def main():
    """symfuse: a symbolic deep-learning graph compiler."""


@main.command("parse")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def parse_cmd(path):
    """Parse and verify an IR file; print it back in canonical form."""
    from .errors import SymfuseError
    from .ir import parse, verify

    text = sys.stdin.read() if path == "-" else open(path).read()
    try:
        fn = parse(text)
        verify(fn)
    except SymfuseError as e:
        click.echo(f"{path}: {e}", err=True)
        sys.exit(1)
    click.echo(str(fn), nl=False)


if __name__ == "__main__":
    main()
