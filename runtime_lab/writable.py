"""The writable layer ("container layer"): what a container changed, read from its upperdir.

overlayfs records a deletion as a character device 0/0 (a whiteout) and a directory whose
lower contents are hidden as ``trusted.overlay.opaque=y``. ``changes`` turns that into docker
diff's A/C/D: A for an entry no lower layer has, C for one it replaced (a changed parent
directory included: overlay copies it up), D for a deletion. Paths the runtime itself made
(mount points the image lacked) are left out, as docker keeps them in its init layer.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "A", "C" or "D"
    path: str  # absolute in the container: "/etc/motd"
    type: str | None = None  # file, dir, symlink, … (None for deletions)
    size: int | None = None
    mode: int | None = None
    mtime: float | None = None
    sha256: str | None = None


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class LowerView:
    """Lookups in the image's layers (overlay lowerdirs, bottom first), never following a
    symlink: a path below a symlink does not exist as such."""

    def __init__(self, lowers: list[Path]) -> None:
        self.top_first = list(reversed(lowers))

    def lookup(self, path: str) -> os.stat_result | None:
        """What the merged lower layers hold at ``path`` (overlay's lookup, layer by layer)."""
        parts = [p for p in path.split("/") if p]
        for lower in self.top_first:
            current = lower
            opaque_above = False
            for i, part in enumerate(parts):
                current = current / part
                try:
                    st = os.lstat(current)
                except FileNotFoundError:
                    break  # this layer has nothing there
                if is_whiteout(st):
                    return None  # deleted in this layer
                if i == len(parts) - 1:
                    return st
                if not stat.S_ISDIR(st.st_mode):
                    return None  # a non-directory hides everything below it
                if is_opaque(current):
                    opaque_above = True
            if opaque_above:
                return None  # layers below cannot supply anything under an opaque directory
        return None

    def listdir(self, path: str) -> set[str]:
        """Names a lower directory holds (as the merged lower view shows them)."""
        names: set[str] = set()
        hidden: set[str] = set()
        parts = [p for p in path.split("/") if p]
        for lower in self.top_first:
            directory = lower.joinpath(*parts)
            try:
                st = os.lstat(directory)
            except FileNotFoundError:
                continue
            if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                break
            for name in os.listdir(directory):
                child = os.lstat(directory / name)
                if is_whiteout(child):
                    hidden.add(name)
                elif name not in hidden:
                    names.add(name)
            if is_opaque(directory):
                break
        return names


def _type(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
    ):
        if test(mode):
            return name
    return "other"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def changes(
    upper: Path, lowers: list[Path], *, ignore: set[str] | None = None, hashes: bool = False
) -> list[Change]:
    """docker diff's view of a writable layer, sorted by path."""
    ignore = ignore or set()
    lower = LowerView(lowers)
    found: list[Change] = []

    def walk(directory: Path, base: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        for name in sorted(os.listdir(directory)):
            path = directory / name
            yield f"{base}/{name}", path, os.lstat(path)

    stack = [(upper, "")]
    while stack:
        directory, base = stack.pop()
        for path, host_path, st in walk(directory, base):
            if path in ignore:
                continue
            if is_whiteout(st):
                if lower.lookup(path) is not None:
                    found.append(Change("D", path))
                continue
            existed = lower.lookup(path)
            kind = "C" if existed is not None else "A"
            if stat.S_ISDIR(st.st_mode):
                if existed is not None and is_opaque(host_path):
                    present = set(os.listdir(host_path))
                    found += [
                        Change("D", f"{path}/{name}")
                        for name in sorted(lower.listdir(path) - present)
                    ]
                stack.append((host_path, path))
            found.append(
                Change(
                    kind,
                    path,
                    _type(st.st_mode),
                    st.st_size if stat.S_ISREG(st.st_mode) else None,
                    stat.S_IMODE(st.st_mode),
                    st.st_mtime,
                    _sha256(host_path) if hashes and stat.S_ISREG(st.st_mode) else None,
                )
            )
    return sorted(found, key=lambda c: c.path)
