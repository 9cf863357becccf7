"""Usage errors as one line: ``dockscope: ls: missing argument IMAGE (see dockscope ls --help)``.

click (through typer) reports a bad command line as its usage block, a "Try ..." hint and an
``Error:`` line. dockscope promises one line on stderr and exit 2 (README, docs/CLI.md), for
every command: the root group turns each click usage error, raised while parsing any command
line or from inside a command, into :class:`UsageLine`. A group run with no command still
prints its help. It also records the command it runs (``_state.command``), so that a usage
error a command finds itself (dockscope's ``UsageError``) names it the same way.
"""

from __future__ import annotations

from typing import IO, Any

import typer
from typer.core import TyperGroup

from inspect_tool.errors import ExitCode


def _click_class(name: str) -> type[Exception]:
    """A click exception class by name, whether typer vendors click or depends on it."""
    for klass in typer.BadParameter.__mro__:
        if klass.__name__ == name:
            return klass
    raise LookupError(name)  # pragma: no cover - click's hierarchy changed


ClickException = _click_class("ClickException")
ClickUsageError = _click_class("UsageError")


class UsageLine(ClickException):  # type: ignore[misc, valid-type]
    """A click error already worded as dockscope's one line."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.line = line
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        import sys

        (file or sys.stderr).write(self.line + "\n")


def _param_name(param: Any) -> str:
    """``--layer`` for an option, ``IMAGE`` for an argument (its metavar, bare)."""
    opts = list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", "") == "option" and opts:
        return str(next((o for o in opts if o.startswith("--")), opts[0]))
    metavar = getattr(param, "metavar", None) or (param.name or "").upper()
    return str(metavar).split()[0].strip("[]{}.") or str(metavar)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _named_command(ctx: Any, tokens: list[str]) -> str:
    """The subcommand a command line names (``container diff``), found from the words left
    after the root's options: for the errors click raises without a context."""
    names: list[str] = []
    command = ctx.command
    for token in tokens:
        if token.startswith("-") or not hasattr(command, "get_command"):
            break
        command = command.get_command(ctx, token)
        if command is None:
            break
        names.append(token)
    return " ".join(names)


def usage_line(exc: Exception, root: Any = None, tokens: list[str] | None = None) -> str:
    """The one line for a click error: what is wrong, and where to read how to do it.
    ``root`` and ``tokens``: the root context and the words after its options, to name the
    command when the error carries no context."""
    from inspect_tool.render.text import visible

    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        command = ctx.command_path.partition(" ")[2]
    else:
        command = _named_command(root, tokens or []) if root is not None else ""
    param = getattr(exc, "param", None)
    message = str(getattr(exc, "message", "") or "")
    if hasattr(exc, "param_type"):  # MissingParameter
        kind = exc.param_type or getattr(param, "param_type_name", "parameter")
        hint = getattr(exc, "param_hint", None)
        what = _param_name(param) if param is not None else str(hint or "")
        text = f"missing {kind} {what}".rstrip()
        if message:
            text += f": {_sentence(message)}"
    elif hasattr(exc, "possibilities"):  # NoSuchOption
        text = _sentence(message)
        choices = sorted(exc.possibilities or [])
        if choices:
            text += f" (did you mean {' or '.join(choices)}?)"
    elif hasattr(exc, "param_hint"):  # BadParameter
        hint = exc.param_hint
        if hint is None and param is not None:
            hint = _param_name(param)
        if isinstance(hint, list | tuple):
            hint = " / ".join(hint)
        text = f"{hint}: {_sentence(message)}" if hint else _sentence(message)
    else:
        format_message = getattr(exc, "format_message", None)
        text = _sentence(format_message() if format_message else str(exc))
    where = f"{command}: " if command else ""
    see = f"dockscope {command} --help" if command else "dockscope --help"
    return f"dockscope: {where}{visible(text)} (see {visible(see)})"


class DockscopeGroup(TyperGroup):
    """The root group: every click error under it becomes one line (see module doc)."""

    @staticmethod
    def _one_line(exc: Exception, root: Any = None, tokens: list[str] | None = None) -> Exception:
        if isinstance(exc, UsageLine) or type(exc).__name__ == "NoArgsIsHelpError":
            return exc  # a group with no command: its help, as click shows it
        code = getattr(exc, "exit_code", ExitCode.USAGE)
        if isinstance(exc, ClickUsageError):
            code = ExitCode.USAGE
        return UsageLine(usage_line(exc, root, tokens), int(code))

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except ClickException as exc:
            raise self._one_line(exc) from None

    def invoke(self, ctx: Any) -> Any:
        from inspect_tool.cli import _state

        # click empties these as it resolves the command: keep them to name it in an error
        tokens = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        # a usage error a command raises itself names it too (cli/_common.py handle_errors)
        _state.command = _named_command(ctx, tokens)
        try:
            return super().invoke(ctx)
        except ClickException as exc:
            raise self._one_line(exc, ctx, tokens) from None
        finally:
            _state.command = ""
