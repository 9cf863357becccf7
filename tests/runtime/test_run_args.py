"""``dockscope run`` parsed without typer (runtime_lab/cli/run_args.py): the same options as
the typer command, the same values typer gives ``run_container``, and typer's turn for
everything else. No root needed: ``run_container`` is replaced by a recorder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.cli import build_app
from runtime_lab.cli import run_args
from runtime_lab.cli.run_args import DEFAULTS, FLAG, MULTIPLE, OPTIONS, VALUE, parse_run

REPO = Path(__file__).resolve().parents[2]
# the options typer alone parses: they change what a registry read may use
ACCESS = {"--creds", "--authfile", "--cert-dir", "--tls-verify"}


def run_command() -> Any:
    import typer

    group = typer.main.get_command(build_app("run"))
    return group.commands["run"]  # type: ignore[attr-defined]


def test_the_table_is_the_typer_command_s_options() -> None:
    from typer.core import TyperOption

    seen: dict[str, tuple[str, str]] = {}
    for param in run_command().params:
        if not isinstance(param, TyperOption):
            continue
        names = [*param.opts, *param.secondary_opts]
        if set(names) <= ACCESS | {"--help", "-h"}:
            continue
        kind = FLAG if param.is_flag else MULTIPLE if param.multiple else VALUE
        for name in names:
            seen[name] = (param.name, kind)
        default = param.default if param.default is not None else None
        if kind == MULTIPLE:
            default = list(default or [])
        assert DEFAULTS[param.name] == default, param.name
        assert (param.envvar or None) == ("DOCKSCOPE_ROOT" if param.name == "root" else None)
    assert {name: spec[:2] for name, spec in OPTIONS.items()} == seen


def typer_arguments(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the typer command passes to ``run_container`` for ``dockscope run ARGV``."""
    import runtime_lab.cli.run_container as module

    got: dict[str, Any] = {}

    def record(image_path: Path, command: list[str], **kwargs: Any) -> int:
        got.update(image_path=image_path, command=command, **kwargs)
        return 0

    monkeypatch.setattr(module, "run_container", record)
    app = build_app("run")
    with pytest.raises(SystemExit) as ended:
        app(args=["run", *argv], prog_name="dockscope")
    assert ended.value.code == 0
    return got


CASES = [
    ["img"],
    ["--rm", "img", "true"],
    ["-it", "img", "sh"],
    ["-dit", "--restart", "on-failure:3", "img"],
    # after IMAGE everything is the command, options of run's own names too
    ["--name=web", "-e", "A=1", "--env", "B=2", "-p", "8080:80", "img", "echo", "--rm", "-x"],
    ["--cpus", "0.5", "--pids-limit", "10", "--memory", "64m", "-m", "1g", "img"],
    ["--name", "a", "--name", "b", "img"],  # the last one counts
    ["--network", "none", "--net", "host", "img"],
    ["--env-file", "f", "--env-file", "g", "--trace-json", "t.json", "img"],
    ["--root", "/x", "img"],
    ["--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt", "seccomp=unconfined", "img"],
    ["--privileged", "--read-only", "-l", "a=b", "--label", "c=d", "-v", "/x:/y", "img"],
    ["-a", "stdout", "--attach", "stderr", "-u", "1000", "-w", "/tmp", "--entrypoint", "", "img"],
    ["--image", "x:y", "--ref", "r", "--platform", "linux/amd64", "oci:dir:ref", "true"],
    ["--explain", "--step", "--trace", "--hostname", "lab", "--pid", "host", "--ipc=host", "img"],
    ["--interactive", "--tty", "--detach", "--name", "-x", "img"],  # a value may start with -
    ["--", "img", "true"],
    ["--rm", "--", "-img", "true"],
    ["--user=", "docker://quay.io/x/y:1", "a", "--", "b"],
]


@pytest.mark.parametrize("argv", CASES, ids=" ".join)
@pytest.mark.parametrize("variable", [None, "", "/from/env"])
def test_the_values_are_typer_s(
    argv: list[str], variable: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable is None:
        monkeypatch.delenv("DOCKSCOPE_ROOT", raising=False)
    else:
        monkeypatch.setenv("DOCKSCOPE_ROOT", variable)
    ours = parse_run(argv, os.environ)
    assert ours is not None
    theirs = typer_arguments(argv, monkeypatch)
    assert ours == theirs
    assert type(ours["image_path"]) is type(theirs["image_path"])


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--rm"],  # no IMAGE
        ["--help"],
        ["-h", "img"],
        ["--bogus", "img"],
        ["--cpus", "abc", "img"],
        ["--pids-limit", "1.5", "img"],
        ["--name"],
        ["--rm=yes", "img"],
        ["-p80:80", "img"],
        ["-ie", "A=1", "img"],
        ["--creds", "u:p", "docker://x/y"],
        ["--tls-verify=false", "img"],
    ],
    ids=" ".join,
)
def test_anything_else_is_typer_s(argv: list[str]) -> None:
    assert parse_run(argv, {}) is None
    assert run_args.run(argv) is None  # nothing run: main() builds the typer app


def dockscope(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inspect_tool", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_errors_end_a_plain_run_as_they_end_every_command(tmp_path: Path) -> None:
    missing = tmp_path / "missing.tar"
    done = dockscope("run", "--root", str(tmp_path / "root"), str(missing), "true")
    assert done.returncode == 3
    assert done.stderr == f"dockscope: {missing}: no such file or directory\n"
    # a usage error found after parsing names the command, as typer's path does
    done = dockscope("run", "--restart", "sometimes", "--explain", str(missing))
    assert done.returncode == 2
    assert done.stderr.startswith("dockscope: run: --restart") and done.stderr.count("\n") == 1
    # what the plain parser leaves to typer: typer's own one-line usage error
    done = dockscope("run", "--cpus", "abc", str(missing))
    assert done.returncode == 2 and "--cpus" in done.stderr and done.stderr.count("\n") == 1
