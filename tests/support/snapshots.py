"""The state of whole trees, to prove that something left them unchanged (the evidence of
engine storage, what unpack must not touch outside its destination, a container's layers)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

Snapshot = dict[str, tuple[Any, ...]]


def _digest(path: str) -> str:
    """The content's sha256, read without moving its access time where the kernel allows."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
    except PermissionError:  # O_NOATIME is for the file's owner (or root) only
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot(*roots: Path, skip: Path | None = None, access_times: bool = False) -> Snapshot:
    """Every entry under ``roots`` (each root included), never following a symlink: type and
    mode, owner, size (not of directories), mtime and ctime in nanoseconds (ctime moves with any
    change of metadata, so even a chmod back to the same mode shows), device, link count,
    content hash, link target, and every xattr (trusted.* too); with ``access_times``, atime
    as well. ``skip`` and what it holds are left out. Keys are paths relative to the root when
    there is one root, absolute paths when there are several."""
    found: Snapshot = {}
    hashed: dict[tuple[int, ...], str] = {}  # hard links are read once
    for root in roots:
        for directory, dirs, files in os.walk(root):
            if skip is not None:
                dirs[:] = [d for d in dirs if Path(directory, d) != skip]
                files = [f for f in files if Path(directory, f) != skip]
            dirs.sort()
            # a directory is recorded when it is walked, after its listing (which may move its
            # atime); a symlink to one is listed among ``dirs`` but never walked
            links = [d for d in dirs if os.path.islink(os.path.join(directory, d))]
            for name in [".", *links, *sorted(files)]:
                path = os.path.join(directory, name) if name != "." else directory
                st = os.lstat(path)
                content = None
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if stat.S_ISREG(st.st_mode):
                    content = hashed.get(key) or hashed.setdefault(key, _digest(path))
                link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
                try:
                    xattrs = tuple(
                        (n, os.getxattr(path, n, follow_symlinks=False))
                        for n in sorted(os.listxattr(path, follow_symlinks=False))
                    )
                except OSError:
                    xattrs = ()
                record: tuple[Any, ...] = (
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
                if access_times:
                    record += (st.st_atime_ns,)
                keyed = os.path.relpath(path, root) if len(roots) == 1 else os.path.normpath(path)
                found[keyed] = record
    return found
