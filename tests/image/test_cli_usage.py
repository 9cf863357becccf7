"""Usage errors, -h and option names, for every command the dockscope CLI has.

Each test walks the whole command tree, so a command added later is held to the same rules:
a bad command line is one line on stderr naming the command, exit 2; -h is help everywhere;
each option name means one thing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from inspect_tool.cli import app
from tests.support.cli import invoke
from tests.support.paths import SAMPLES

SAMPLE = SAMPLES / "docker-archive-v25.tar"


def _commands() -> Iterator[tuple[str, Any]]:
    """(``container diff``, its click command) for every leaf command."""

    def walk(prefix: str, group: Any) -> Iterator[tuple[str, Any]]:
        for name in sorted(group.commands):
            command = group.commands[name]
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                yield from walk(path, command)
            else:
                yield path, command

    yield from walk("", typer.main.get_command(app))


COMMANDS = dict(_commands())
GROUPS = ["container", "storage", "volume"]


def _required(command: Any) -> bool:
    return any(param.required for param in command.params)


def _one_usage_line(args: list[str]) -> str:
    result = invoke(*args)
    lines = result.err.splitlines()
    assert result.code == 2, (args, result.code, result.err)
    assert len(lines) == 1, (args, result.err)
    assert "internal error" not in lines[0]
    return lines[0]


def test_the_walk_finds_every_command() -> None:
    assert {"ls", "run", "ps", "logs", "container diff", "storage ls", "volume rm"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(p for p, c in COMMANDS.items() if _required(c)))
def test_no_arguments_is_one_line_naming_what_is_missing(path: str) -> None:
    line = _one_usage_line(path.split())
    assert line.startswith(f"dockscope: {path}: missing "), line
    assert line.endswith(f"(see dockscope {path} --help)"), line


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_an_unknown_option_is_one_line(path: str) -> None:
    line = _one_usage_line([*path.split(), "--no-such-option"])
    assert line.startswith(f"dockscope: {path}: no such option: --no-such-option "), line
    assert line.endswith(f"(see dockscope {path} --help)"), line


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_an_option_without_its_value_is_one_line(path: str) -> None:
    takes_value = [
        p for p in COMMANDS[path].params if p.param_type_name == "option" and not p.is_flag
    ]
    for option in takes_value:
        name = next(o for o in option.opts if o.startswith("--"))
        line = _one_usage_line([*path.split(), name])
        assert line.startswith(f"dockscope: {path}: "), line


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_a_number_option_given_a_word_is_one_line(path: str) -> None:
    numeric = [
        p
        for p in COMMANDS[path].params
        if p.param_type_name == "option" and p.type.name in ("integer", "float")
    ]
    for option in numeric:
        name = next(o for o in option.opts if o.startswith("--"))
        line = _one_usage_line([*path.split(), name, "many", str(SAMPLE), "x"])
        assert f": {name}: 'many' is not a valid" in line, line


@pytest.mark.parametrize("path", [*sorted(COMMANDS), *GROUPS, ""])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_h_is_help_everywhere(path: str, flag: str) -> None:
    result = invoke(*path.split(), flag)
    assert result.code == 0, result.err
    assert result.out.startswith(f"Usage: dockscope {path}".rstrip())


def test_diff_with_one_image_says_what_to_give() -> None:
    result = invoke("diff", str(SAMPLE))
    assert result.code == 2
    assert result.err == (
        "dockscope: diff: give a second image B, or --layer N to see what one layer changed\n"
    )
    result = invoke("diff", "--layer", "1", str(SAMPLE), str(SAMPLE))
    assert result.code == 2
    assert result.err == (
        "dockscope: diff: --layer shows what one layer of A changed: give only A\n"
    )


def test_a_usage_error_a_command_finds_itself_names_the_command() -> None:
    """A check of the command's own (a bad combination, a layer the image lacks) names the
    command as click's usage errors do; a group's command by its whole path. An error about
    an input (exit 3) stays ``dockscope: <file>: <problem>``."""
    assert _one_usage_line(["ls", "--at", "9", str(SAMPLE)]) == (
        f"dockscope: ls: {SAMPLE}: --at 9: the image has layers 0 to 3"
    )
    assert _one_usage_line(["container", "export", "--json", "-o", "-", "web"]) == (
        "dockscope: container export: --json needs -o FILE: with -o - stdout carries the tar"
    )
    result = invoke("inspect", "/nonexistent/image.tar")
    assert (result.code, result.err) == (
        3,
        "dockscope: /nonexistent/image.tar: no such file or directory\n",
    )


def test_a_bad_value_names_the_option() -> None:
    line = _one_usage_line(["ls", "--at", "x", str(SAMPLE)])
    assert line == "dockscope: ls: --at: 'x' is not a valid int (see dockscope ls --help)"


def test_an_unknown_command_is_one_line() -> None:
    assert _one_usage_line(["nosuch"]) == (
        "dockscope: no such command 'nosuch' (see dockscope --help)"
    )
    assert _one_usage_line(["container", "nosuch"]) == (
        "dockscope: container: no such command 'nosuch' (see dockscope container --help)"
    )


def test_extra_arguments_are_one_line() -> None:
    line = _one_usage_line(["inspect", str(SAMPLE), "extra"])
    assert line.startswith("dockscope: inspect: got unexpected extra argument(s) (extra) "), line


def test_the_installed_command_prints_one_line_too() -> None:
    """Through main(), as users run it: the same line, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "inspect_tool", "container", "export", "web", "-o"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 2
    assert result.stderr == (
        "dockscope: container export: option '-o' requires an argument "
        "(see dockscope container export --help)\n"
    )


# Run as root first, so that every module the commands import is loaded (the interpreter may
# live where uid 65534 cannot read), then as uid/gid 65534 for good: each command's exit code
# and stderr, as JSON on stdout.
AS_NOBODY = """
import contextlib, io, json, os, sys
from inspect_tool.cli import app
state, commands = sys.argv[1], json.loads(sys.argv[2])
def run(args):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app(args=[*args, "--root", state], prog_name="dockscope")
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()
for args in commands:
    run(args)
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
print(json.dumps([run(args) for args in commands]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="drops from root to uid 65534")
def test_state_a_user_may_not_read_is_one_line_exit_3(tmp_path: Path) -> None:
    """dockscope's state is root's (mode 0700): as another user, ps and the rest say so and
    what to do, instead of an internal error."""
    import json

    state = tmp_path / "state"
    (state / "containers").mkdir(parents=True)
    (state / "volumes" / "data" / "_data").mkdir(parents=True)
    state.chmod(0o700)
    commands = [
        ["ps"],
        ["logs", "web"],
        ["container", "diff", "web"],
        ["container", "inspect", "web"],
        ["volume", "ls"],
        ["volume", "inspect", "data"],
        ["rm", "web"],
    ]
    result = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, str(state), json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for args, (code, stderr) in zip(commands, json.loads(result.stdout), strict=True):
        assert code == 3, (args, stderr)
        assert len(stderr.splitlines()) == 1 and stderr.startswith(f"dockscope: {state}"), args
        assert "cannot read dockscope's state: permission denied" in stderr, args
        assert "sudo" in stderr and "--root" in stderr, args  # what to do


def test_any_permission_error_is_exit_3_not_an_internal_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from inspect_tool.cli._common import handle_errors

    with pytest.raises(typer.Exit) as stopped, handle_errors():
        raise PermissionError(13, "Permission denied", "/srv/image.tar")
    assert stopped.value.exit_code == 3
    assert capsys.readouterr().err == (
        "dockscope: /srv/image.tar: permission denied (run it as a user who may read it, "
        "e.g. with sudo)\n"
    )
