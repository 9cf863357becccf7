"""Shared by the engine-storage tests: a fingerprint of a whole tree (to prove the evidence is
never changed), and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from inspect_tool.cli import app as dockscope_app

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


def dockscope(evidence: Path, *args: str | Path) -> Run:
    """``dockscope ARGS``, proving that the whole tree under ``evidence`` is the same before
    and after (``container … --storage ENGINE_ROOT`` goes through the runtime's container
    commands, which dispatch to engine storage)."""
    argv = [str(a) for a in args]
    before = fingerprint(evidence)
    result = runner.invoke(dockscope_app, argv)
    assert_unchanged(before, evidence)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)


def diff_lines(run: Run) -> list[str]:
    assert run.exit_code == 0, run.stderr
    return [line for line in run.stdout.splitlines() if line]
