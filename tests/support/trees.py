"""The trees unpack and export produce, in one comparable form; and extracting archives the
tests trust."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

Tree = dict[str, tuple[str, int | None, str | None]]


def dest_tree(dest: Path) -> Tree:
    """path -> (type, mode, content digest / link target), hard links as groups of names."""
    tree: Tree = {}
    inodes: dict[int, list[str]] = {}
    for path in sorted(_walk(dest)):
        st = os.lstat(path)
        rel = str(path.relative_to(dest))
        if stat.S_ISDIR(st.st_mode):
            tree[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            continue
        if stat.S_ISLNK(st.st_mode):
            tree[rel] = ("symlink", None, os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[rel] = ("file", stat.S_IMODE(st.st_mode), digest)
        elif stat.S_ISFIFO(st.st_mode):
            tree[rel] = ("fifo", stat.S_IMODE(st.st_mode), None)
        elif stat.S_ISCHR(st.st_mode):
            tree[rel] = ("char", stat.S_IMODE(st.st_mode), f"{st.st_rdev}")
        elif stat.S_ISBLK(st.st_mode):
            tree[rel] = ("block", stat.S_IMODE(st.st_mode), f"{st.st_rdev}")
        inodes.setdefault(st.st_ino, []).append(rel)
    for names in inodes.values():
        for name in names[1:]:
            kind, mode, extra = tree[name]
            tree[name] = (kind, mode, f"{extra} =link {names[0]}")
    return tree


def _walk(root: Path) -> list[Path]:
    out = []
    stack = [root]
    while stack:
        path = stack.pop()
        for child in path.iterdir():
            out.append(child)
            if not child.is_symlink() and child.is_dir():  # never follow a symlink
                stack.append(child)
    return out


def tar_tree(data: bytes) -> Tree:
    tree: Tree = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
        names = [m.name.rstrip("/") for m in members]
        assert len(names) == len(set(names)), "a path appears twice in the exported tar"
        for member in members:
            name = member.name.rstrip("/")
            if member.isdir():
                tree[name] = ("dir", member.mode, None)
            elif member.issym():
                tree[name] = ("symlink", None, member.linkname)
            elif member.isfile():
                reader = tf.extractfile(member)
                assert reader is not None
                digest = hashlib.sha256(reader.read()).hexdigest()
                tree[name] = ("file", member.mode, digest)
            elif member.islnk():
                assert member.linkname in tree, "a hard link before its target"
                kind, mode, extra = tree[member.linkname]
                tree[name] = (kind, mode, f"{extra} =link {member.linkname}")
            elif member.isfifo():
                tree[name] = ("fifo", member.mode, None)
            elif member.ischr() or member.isblk():
                kind = "char" if member.ischr() else "block"
                tree[name] = (kind, member.mode, f"{os.makedev(member.devmajor, member.devminor)}")
    return tree


def extract_trusted(
    archive: tarfile.TarFile, destination: Path | str, filter: str = "data"
) -> None:
    """``extractall`` of an archive the tests made or ship (never image content under test):
    with tarfile's extraction filter where Python has one (3.11.4 and later; Debian
    bookworm's 3.11.2 has none, and then the archive is extracted as is)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(destination, filter=filter)
    else:  # pragma: no cover - Python before 3.11.4
        archive.extractall(destination)
