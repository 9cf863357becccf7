"""Shared by the engine-storage tests: a fingerprint of a whole tree (to prove the evidence is
never changed), and the CLI, with the container commands as `dockscope container … --root`
calls them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from inspect_tool.cli import app as dockscope_app
from inspect_tool.cli import storage as storage_cli

runner = CliRunner()


def fingerprint(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` (root included): type and mode, owner, size, mtime and ctime
    in nanoseconds, content hash, link target, device, and every xattr (trusted.* too).
    ctime moves with any change of metadata, so even a chmod back to the same mode shows."""
    found: dict[str, tuple[Any, ...]] = {}
    hashed: dict[tuple[int, ...], str] = {}  # hard links are read once
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in [".", *sorted(dirs), *sorted(files)]:
            path = os.path.join(directory, name) if name != "." else directory
            if name == "." and directory != str(root):
                continue
            st = os.lstat(path)
            content = None
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if stat.S_ISREG(st.st_mode) and key in hashed:
                content = hashed[key]
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
                with os.fdopen(fd, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                content = hashed[key] = digest.hexdigest()
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            try:
                xattrs = tuple(
                    (n, os.getxattr(path, n, follow_symlinks=False))
                    for n in sorted(os.listxattr(path, follow_symlinks=False))
                )
            except OSError:
                xattrs = ()
            found[os.path.relpath(path, root)] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size if not stat.S_ISDIR(st.st_mode) else None,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_rdev,
                st.st_nlink,
                content,
                link,
                xattrs,
            )
    return found


def assert_unchanged(before: dict[str, tuple[Any, ...]], root: Path) -> None:
    after = fingerprint(root)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), (
        f"the evidence changed: added {added[:5]}, removed {removed[:5]}, changed "
        f"{[(p, before[p], after[p]) for p in changed[:3]]}"
    )


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes

    def json(self) -> Any:
        return json.loads(self.stdout)


def _container_app() -> typer.Typer:
    """``dockscope container diff|export|inspect`` and ``dockscope logs`` with ``--root``
    on engine storage, as the runtime's commands dispatch to them."""
    container = typer.Typer()

    @container.command()
    def diff(
        name: str,
        root: Path = typer.Option(..., "--root"),
        json_output: bool = typer.Option(False, "--json"),
        since: str | None = typer.Option(None, "--since"),
        show_all: bool = typer.Option(False, "--all"),
    ) -> None:
        storage_cli.container_diff_command(
            root, name, json_output=json_output, since=since, show_all=show_all
        )

    @container.command()
    def export(
        name: str,
        root: Path = typer.Option(..., "--root"),
        output: str = typer.Option(..., "--output", "-o"),
        layer: bool = typer.Option(False, "--layer"),
        json_output: bool = typer.Option(False, "--json"),
    ) -> None:
        storage_cli.container_export_command(
            root, name, output, layer=layer, json_output=json_output
        )

    @container.command()
    def inspect(name: str, root: Path = typer.Option(..., "--root")) -> None:
        storage_cli.container_inspect_command(root, name)

    @container.command()
    def logs(
        name: str,
        root: Path = typer.Option(..., "--root"),
        timestamps: bool = typer.Option(False, "--timestamps", "-t"),
        since: str | None = typer.Option(None, "--since"),
        tail: int | None = typer.Option(None, "--tail"),
        json_output: bool = typer.Option(False, "--json"),
    ) -> None:
        storage_cli.container_logs_command(
            root, name, timestamps=timestamps, since=since, tail=tail, json_output=json_output
        )

    return container


CONTAINER_APP = _container_app()


def dockscope(evidence: Path, *args: str | Path) -> Run:
    """``dockscope ARGS`` (``container …`` through the dispatch functions), proving that the
    whole tree under ``evidence`` is the same before and after."""
    argv = [str(a) for a in args]
    before = fingerprint(evidence)
    if argv[0] == "container":
        result = runner.invoke(CONTAINER_APP, argv[1:])
    else:
        result = runner.invoke(dockscope_app, argv)
    assert_unchanged(before, evidence)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)


def diff_lines(run: Run) -> list[str]:
    assert run.exit_code == 0, run.stderr
    return [line for line in run.stdout.splitlines() if line]
