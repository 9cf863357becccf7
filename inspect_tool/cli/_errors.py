"""How an exception ends a command: one line on stderr and a documented exit code
(docs/CLI.md). Free of typer, so that ``run``'s fast path (runtime_lab/cli/run_args.py)
ends exactly as every command does."""

from __future__ import annotations

import sys

from inspect_tool.cli import _state
from inspect_tool.errors import DockscopeError, ExitCode


def say(message: str) -> None:
    """One error line on stderr, the message escaped as every name dockscope prints
    (render/text.py): a hostile path in it cannot reach the terminal raw."""
    from inspect_tool.render.text import visible

    sys.stderr.write(f"dockscope: {visible(message)}\n")


def error_line(exc: DockscopeError) -> str:
    """What follows ``dockscope: ``: about an input, ``<file>: <problem>``; a usage error
    (exit 2) names the command first, as click's usage errors do (``ls: --at 9: ...``)."""
    if exc.exit_code == ExitCode.USAGE and _state.command:
        return f"{_state.command}: {exc}"
    return str(exc)


def exit_code(exc: BaseException) -> int | None:
    """The code ``exc`` ends a command with, its line written on stderr; None when it is to
    be raised on (with --debug, or not an exception a command ends with)."""
    if isinstance(exc, DockscopeError):
        if _state.debug:
            return None
        say(error_line(exc))
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        say("interrupted")
        return int(ExitCode.PROBLEMS)
    if isinstance(exc, PermissionError):  # a file the user may not read or write: not a bug
        if _state.debug:
            return None
        where = f"{exc.filename}: " if exc.filename else ""
        say(f"{where}permission denied (run it as a user who may read it, e.g. with sudo)")
        return int(ExitCode.BAD_INPUT)
    if isinstance(exc, Exception):
        if _state.debug:
            return None
        say(
            f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the "
            "traceback, and please report it)"
        )
        return int(ExitCode.INTERNAL)
    return None
