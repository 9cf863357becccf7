"""The root of the ``dockscope`` app: the options every command line may carry."""

from __future__ import annotations

import sys

import typer

from inspect_tool.cli import _state, version


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"dockscope {version()}\n")
        raise typer.Exit()


def root(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks on errors (anywhere on the command line)."
    ),
    _version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help="Print the version (dockscope X.Y.Z) and exit.",
        is_eager=True,
        expose_value=False,
        callback=_print_version,
    ),
) -> None:
    _state.debug = debug
