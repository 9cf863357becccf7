"""Running dockscope in tests, with one result type: in a child process (``dockscope``, as
the user runs it, with a state root of the test's own), or in this process through typer's
runner (``invoke``, for speed, where no state root or real terminal is needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from inspect_tool.cli import app

DOCKSCOPE = [sys.executable, "-m", "inspect_tool"]

_runner = CliRunner()


@dataclass(frozen=True)
class Result:
    """A finished command: exit code and the bytes it wrote. Unpacks and indexes as
    ``code, out, err``."""

    code: int
    out_bytes: bytes
    err_bytes: bytes

    @property
    def out(self) -> str:
        return self.out_bytes.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.err_bytes.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.out_bytes)

    @property
    def output(self) -> str:
        """stdout then stderr, for checks that do not care which stream."""
        return self.out + self.err

    def _triple(self) -> tuple[int, str, str]:
        return (self.code, self.out, self.err)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._triple())

    def __getitem__(self, index: int) -> Any:
        return self._triple()[index]

    def __len__(self) -> int:
        return 3


def env_for(root: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child dockscope: ``root`` as the state root, no colour, wide
    tables, no rootfs given from outside; then ``env``."""
    environment = {k: v for k, v in os.environ.items() if k != "DOCKSCOPE_ROOTFS"}
    environment.update(DOCKSCOPE_ROOT=str(root), NO_COLOR="1", COLUMNS="200")
    environment.update(env or {})
    return environment


def dockscope(
    root: Path,
    *args: str | Path,
    timeout: float = 180,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    """``dockscope ARGS`` in a child process with ``root`` as the state root and ``env`` added
    to the environment; stdin is ``input`` (a pipe), or /dev/null."""
    given: dict[str, Any] = (
        {"input": input.encode()} if input is not None else {"stdin": subprocess.DEVNULL}
    )
    proc = subprocess.run(
        [*DOCKSCOPE, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env=env_for(root, env),
        check=False,
        **given,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


# Runs dockscope as uid/gid 65534 with no groups: the modules (and the standard library's
# that commands import late) are loaded first, as root, since the interpreter's files may
# not be readable by nobody; then privileges are dropped for good and the command runs.
AS_NOBODY = """
import importlib, os, pkgutil, sys
import inspect_tool, runtime_lab
from inspect_tool.cli import app
for package in (inspect_tool, runtime_lab):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith("__main__"):
            try:
                importlib.import_module(module.name)
            except Exception:
                pass
for name in ("datetime", "tarfile", "gzip", "shutil", "tempfile", "hashlib", "uuid", "fcntl"):
    importlib.import_module(name)
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
assert os.geteuid() == 65534 and os.getuid() == 65534
app(args=sys.argv[1:], prog_name="dockscope")
"""


def dockscope_as_nobody(root: Path, *args: str | Path, timeout: float = 60) -> Result:
    """``dockscope ARGS`` as an unprivileged user (uid 65534), ``root`` as the state root."""
    proc = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env=env_for(root),
        stdin=subprocess.DEVNULL,
        cwd="/",
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(result: Result) -> str:
    """The output of a command that must succeed."""
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result.out


def ok_bytes(result: Result) -> bytes:
    """The output, as bytes (a tar, say), of a command that must succeed."""
    assert result.code == 0, f"exit {result.code}\nstderr: {result.err}"
    return result.out_bytes


def popen(root: Path, *args: str | Path) -> subprocess.Popen[str]:
    """``dockscope ARGS`` in the background, stdout and stderr piped."""
    return subprocess.Popen(
        [*DOCKSCOPE, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env_for(root),
    )


def invoke(
    *args: str | Path,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    color: bool = False,
    catch_exceptions: bool = True,
) -> Result:
    """``dockscope ARGS`` in this process (typer's runner), this environment plus ``env``;
    ``color`` keeps styling as a terminal would get it; ``catch_exceptions=False`` lets an
    exception other than SystemExit through."""
    result = _runner.invoke(
        app,
        [str(a) for a in args],
        input=input,
        env=env,
        color=color,
        catch_exceptions=catch_exceptions,
    )
    return Result(result.exit_code, result.stdout_bytes, result.stderr_bytes)
