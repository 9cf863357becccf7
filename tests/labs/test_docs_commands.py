"""Every ``dockscope …`` line the README and docs/ show names a command and options that exist.

Command lines in code blocks are parsed as dockscope parses them (types, arity, required
arguments; nothing runs). Synopses in backticks (``dockscope ls IMAGE [PATH] [--at N]``) are
checked word by word: the command exists, and each option is one of its options, with its
value when it takes one. The labs in tutorials/ are run whole by test_tutorials.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from inspect_tool.cli import app
from tests.support.paths import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ROOT = typer.main.get_command(app)
PLACEHOLDER = re.compile(r"^([A-Z_]+|…|\.\.\.)$")  # dockscope COMMAND -h, dockscope …


def _words(line: str) -> list[str]:
    """A shell line's words up to the first pipe, redirection or list operator, without its
    comment."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for word in lexer:
        if set(word) <= set("();<>|&"):
            break
        words.append(word)
    return words


def _code_lines(text: str) -> Iterator[tuple[int, str]]:
    """``dockscope`` command lines in fenced code blocks, continuation lines joined."""
    fenced, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        if pending:
            line = pending + " " + line.strip()
        else:
            start = number
            line = re.sub(r"^\s*(\$ )?(sudo )?", "", line)
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        if re.match(r"dockscope [a-z-]", line):  # not prose in a diagram
            yield start, shlex.join(_words(line))


def _spans(text: str) -> Iterator[tuple[int, str]]:
    """``dockscope …`` in backticks outside code blocks (a span may wrap a line)."""
    prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for match in re.finditer(r"`(dockscope [^`]+)`", prose):
        yield prose.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())


def _cases() -> Iterator[Any]:
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for line, command in _code_lines(text):
            yield pytest.param("run", command, id=f"{path.name}:{line}")
        for line, command in _spans(text):
            yield pytest.param("synopsis", command, id=f"{path.name}:{line}")


def _parse(argv: list[str]) -> None:
    """Parse a command line as dockscope does, down to the command, without running it."""
    command: Any = ROOT
    ctx = ROOT.make_context("dockscope", list(argv))
    while hasattr(command, "commands"):
        rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def _check_synopsis(words: list[str]) -> None:
    command: Any = ROOT
    path = ["dockscope"]
    words = [w.strip("[]") for w in words[1:]]
    root_options = {o for p in ROOT.params for o in (*p.opts, *p.secondary_opts)}
    while words and words[0] in {"-h", "--help", *root_options}:
        if words.pop(0) in ("--version", "-V"):
            return  # answered by the root: no command follows
    while hasattr(command, "commands"):
        if not words or PLACEHOLDER.match(words[0]):
            return  # a group alone prints its help; or a placeholder for any command
        name = words.pop(0).split("|")
        for alternative in name:
            assert alternative in command.commands, f"{' '.join(path)}: no command {alternative}"
        path.append(name[0])
        command = command.commands[name[0]]
    options = {o: p for p in command.params if not p.hidden for o in (*p.opts, *p.secondary_opts)}
    options.update(dict.fromkeys(("-h", "--help", "--debug")))
    positional_ends = command.context_settings.get("allow_interspersed_args") is False
    while words:
        word = words.pop(0)
        if not word.startswith("-") or word in ("-", "--"):
            if positional_ends:
                return  # run: the words after IMAGE are the container's command
            continue
        name = word.split("=", 1)[0]
        names = [name] if name.startswith("--") else [f"-{c}" for c in name[1:]]
        for short in names:
            assert short in options, f"{' '.join(path)}: no option {short}"
            param = options[short]
            if param is not None and not param.is_flag and "=" not in word:
                assert words and not words[0].startswith("-"), f"{word} needs a value"
                words.pop(0)


@pytest.mark.parametrize(("kind", "command"), list(_cases()))
def test_a_documented_command_line_parses(kind: str, command: str) -> None:
    words = shlex.split(command)
    if kind == "run":
        _parse(words[1:])
    else:
        _check_synopsis(words)


def test_the_docs_show_commands() -> None:
    """The collection finds what it is meant to: a command line and a synopsis."""
    cases = {p.values[1] for p in _cases()}
    assert "dockscope inspect --json image.tar" in cases
    assert "dockscope container logs --storage ROOT ID" in cases


@pytest.mark.parametrize(
    "synopsis",
    [
        "dockscope logs --storage ROOT ID",  # engine storage is container logs'
        "dockscope ls IMAGE --layer N",  # hidden: the old spelling is not documented
        "dockscope container export --layer web",
        "dockscope efficiency --top 5 IMAGE",
        "dockscope run --hostname",
        "dockscope nosuch IMAGE",
    ],
)
def test_a_wrong_synopsis_fails(synopsis: str) -> None:
    with pytest.raises(AssertionError):
        _check_synopsis(shlex.split(synopsis))


def test_a_wrong_command_line_fails() -> None:
    with pytest.raises(Exception, match=r"(?i)no such option"):
        _parse(["ls", "--bogus", "image.tar"])
    with pytest.raises(Exception, match=r"(?i)missing"):
        _parse(["container", "diff"])
