"""The ``dockscope`` command: typer glue that parses, calls the library, renders, exits.

Heavy modules (rich, the readers, hashing) are imported inside the commands so that
``dockscope --help`` starts fast; typer itself is imported when the app is built, which a
plain ``dockscope run`` skips (runtime_lab/cli/run_args.py).
"""

from __future__ import annotations

import contextlib
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import typer


def version() -> str:
    """The installed package's version (its metadata), else the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("dockscope")
    except metadata.PackageNotFoundError:
        from inspect_tool import __version__

        return __version__


# The module that registers each command: a command line names one, and only that module is
# imported (the others cost start-up time for nothing). A name not listed loads them all.
_MODULES = (
    "images",
    "files",
    "analysis",
    "contents",
    "extract",
    "storage",
    "visual",
    "transfer",
    "registry",
    "explore",
    "runtime",
)
COMMAND_MODULES = {
    **dict.fromkeys(("inspect", "verify"), "images"),
    **dict.fromkeys(("layers", "ls", "cat", "find", "diff"), "files"),
    **dict.fromkeys(("efficiency", "types", "history"), "analysis"),
    **dict.fromkeys(("packages", "secrets"), "contents"),
    **dict.fromkeys(("unpack", "export"), "extract"),
    **dict.fromkeys(("storage",), "storage"),
    **dict.fromkeys(("graph", "tree", "report"), "visual"),
    **dict.fromkeys(("copy", "pull"), "transfer"),
    **dict.fromkeys(("login", "logout"), "registry"),
    **dict.fromkeys(("explore",), "explore"),
    **dict.fromkeys(
        (
            "run",
            "ps",
            "logs",
            "stop",
            "start",
            "rm",
            "cleanup",
            "container",
            "attach",
            "exec",
            "volume",
            "runtime",
            "port",
        ),
        "runtime",
    ),
}


def build_app(command: str | None = None, *, commands: bool = True) -> typer.Typer:
    """The typer app, with every command, or just the module that registers ``command``;
    with none when not ``commands`` (``dockscope --version`` needs only the root)."""
    import importlib

    import typer

    from inspect_tool.cli._root import root
    from inspect_tool.cli._usage import DockscopeGroup

    application = typer.Typer(
        cls=DockscopeGroup,
        name="dockscope",
        help=(
            "See inside container images and containers.\n\n"
            "Reads image archives written by docker save (legacy and Docker 25+), OCI layouts "
            "and archives, with gzip, zstd or uncompressed layers, and verifies every digest."
        ),
        epilog=(
            "Examples:\n\n"
            "  dockscope inspect image.tar\n\n"
            "  dockscope verify --json image.tar\n\n"
            "Exit codes: 0 ok, 1 problems found, 2 usage error, 3 unreadable or invalid input, "
            "4 internal error; a usage error is one line naming the command. -h is --help "
            "everywhere; every option means one thing in every command (docs/CLI.md). "
            "NO_COLOR=1 turns colour off. Names and text from images and "
            "containers are shown with control and bidi characters escaped (docs/TERMINAL.md); "
            "--json output is exact."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(root)
    wanted = COMMAND_MODULES.get(command or "")
    for name in ((wanted,) if wanted else _MODULES) if commands else ():
        if name == "runtime":
            from runtime_lab.cli import commands as runtime

            runtime.register(application, only=command if wanted else None)
            continue
        importlib.import_module(f"inspect_tool.cli.{name}").register(application)
    from inspect_tool.cli._access import add_access_options

    add_access_options(application)
    return application


_app: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    """``inspect_tool.cli.app``: the full app, built on first use (tests and embedders)."""
    global _app
    if name == "app":
        if _app is None:
            _app = build_app()
        return _app
    raise AttributeError(name)


def main() -> None:
    """Entry point of the console script and ``python -m inspect_tool``."""
    argv = sys.argv[1:]
    if "--debug" in argv:
        # --debug is accepted anywhere on the line, as users type it after the command.
        argv = ["--debug", *[a for a in argv if a != "--debug"]]
    command = next((a for a in argv if not a.startswith("-")), None)
    # --version alone needs no command module: the root answers it at once
    commands = command is not None or not {"--version", "-V"} & set(argv)
    code: int | str | None = 0
    from inspect_tool import classcode, heap

    heap.pause_collection()  # until the command's own work starts
    classcode.install()  # the dataclasses' methods compiled once, not at every start
    try:
        fast = None
        if argv[:1] == ["run"] and "--debug" not in argv:  # a plain run: no typer (run_args.py)
            from runtime_lab.cli.run_args import run as run_plain

            fast = run_plain(argv[1:])
        if fast is not None:
            code = fast
        else:
            app = build_app(command, commands=commands)
            heap.resume_collection()
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
    classcode.save()
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    os._exit(code or 0)
