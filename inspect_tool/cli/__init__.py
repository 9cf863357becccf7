"""The ``dockscope`` command: typer glue that parses, calls the library, renders, exits.

Heavy modules (rich, the readers, hashing) are imported inside the commands so that
``dockscope --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from inspect_tool.cli import _state

app = typer.Typer(
    name="dockscope",
    help=(
        "See inside container images and containers.\n\n"
        "Reads image archives written by docker save (legacy and Docker 25+), OCI layouts and "
        "archives, with gzip, zstd or uncompressed layers, and verifies every digest."
    ),
    epilog=(
        "Examples:\n\n"
        "  dockscope inspect image.tar\n\n"
        "  dockscope verify --json image.tar\n\n"
        "Exit codes: 0 ok, 1 problems found, 2 usage error, 3 unreadable or invalid input, "
        "4 internal error. NO_COLOR=1 turns colour off."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks on errors (anywhere on the command line)."
    ),
) -> None:
    _state.debug = debug


def _register() -> None:
    # Each command module adds its commands; the modules import their heavy parts lazily.
    from inspect_tool.cli import analysis, extract, files, images, storage, visual
    from runtime_lab import cli as runtime

    for module in (images, files, analysis, extract, storage, visual, runtime):
        module.register(app)


_register()


def main() -> None:
    """Entry point of the console script and ``python -m inspect_tool``."""
    argv = sys.argv[1:]
    if "--debug" in argv:
        # --debug is accepted anywhere on the line, as users type it after the command.
        argv = ["--debug", *[a for a in argv if a != "--debug"]]
    code: int | str | None = 0
    try:
        app(args=argv, prog_name="dockscope")
    except SystemExit as exc:
        code = exc.code
    except BrokenPipeError:
        sys.stderr.close()
        code = 1
    # Every command has closed its files by now: leave without tearing down the interpreter
    # (with typer and pydantic loaded that alone costs tens of milliseconds per command).
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    os._exit(code or 0)
