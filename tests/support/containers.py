"""Containers for the export and commit tests: run for real (root), one state root per test
module, and what the container itself saw, listed from inside it."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import CORPUS

DIVE_LEGACY = CORPUS / "docker-save-legacy-dive.tar"

# Every kind of change: added, replaced and deleted files, a deleted directory, a directory
# deleted and made again (opaque), hard links, relative and absolute symlinks, owners, a
# setuid mode, a FIFO, a device node, a non-ASCII name, a modified lower file.
CHANGES = r"""
set -e
echo hi > /etc/new
ln /etc/new /etc/new2
rm /etc/group
rm -rf /var/www
rm -rf /root
mkdir /root
echo x > /root/f
chown 1234:5678 /root/f
ln -s ../etc/new /tmp/sl
ln -s /etc/passwd /tmp/abs
chown -h 42:43 /tmp/sl
chmod 4755 /somefile.txt
echo more >> /tmp/saved.again1.txt
mkfifo /tmp/fifo
mknod /tmp/null c 1 3
mkdir -p /opt/new/deep
echo z > /opt/new/deep/z
echo u > /tmp/ünï
"""

# What the container sees, from inside: every entry of its root filesystem (mount points
# listed, not entered), the content hash of every file and the target of every symlink.
LISTING = r"""
find / -xdev -exec stat -c '%n|%f|%u|%g|%s|%t|%T|%i|%h' {} +
echo ---hashes
find / -xdev -type f -exec sha256sum {} +
echo ---links
find / -xdev -type l -exec sh -c 'for l; do echo "$l|$(readlink "$l")"; done' sh {} +
"""

MOUNT_POINTS = frozenset({"proc", "sys", "dev"})


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "container tests run containers for real (namespaces, overlayfs, cgroups): run "
            "them as root",
            pytrace=False,
        )


@dataclass(frozen=True)
class Seen:
    """A filesystem as a container saw it: path (no leading slash) -> attributes."""

    mode: dict[str, int] = field(default_factory=dict)  # st_mode, type bits included
    owner: dict[str, tuple[int, int]] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)  # regular files
    device: dict[str, tuple[int, int]] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    # names of one regular file with several names
    links: set[frozenset[str]] = field(default_factory=set)


def parse_listing(text: str) -> Seen:
    stats, rest = text.split("---hashes\n")
    hashes, links_text = rest.split("---links\n")
    seen = Seen()
    inodes: dict[int, set[str]] = {}
    for line in stats.splitlines():
        name, raw_mode, uid, gid, length, major, minor, inode, nlink = line.rsplit("|", 8)
        path = name.lstrip("/")
        if not path:
            continue
        mode = seen.mode[path] = int(raw_mode, 16)
        seen.owner[path] = (int(uid), int(gid))
        if mode & 0o170000 == 0o100000:
            seen.size[path] = int(length)
            if int(nlink) > 1:
                inodes.setdefault(int(inode), set()).add(path)
        if mode & 0o170000 in (0o020000, 0o060000):
            seen.device[path] = (int(major, 16), int(minor, 16))
    for line in hashes.splitlines():
        digest, name = line.split(None, 1)
        seen.sha256[name.lstrip("/")] = digest
    for line in links_text.splitlines():
        name, target = line.split("|", 1)
        seen.symlinks[name.lstrip("/")] = target
    seen.links.update(frozenset(names) for names in inodes.values() if len(names) > 1)
    return seen


def tar_view(path: Path) -> Seen:
    """The same view of an exported tar, hard link entries resolved to their first name."""
    import hashlib

    seen = Seen()
    groups: dict[str, set[str]] = {}
    kinds = {
        tarfile.DIRTYPE: 0o040000,
        tarfile.REGTYPE: 0o100000,
        tarfile.SYMTYPE: 0o120000,
        tarfile.CHRTYPE: 0o020000,
        tarfile.BLKTYPE: 0o060000,
        tarfile.FIFOTYPE: 0o010000,
    }
    with tarfile.open(path) as tf:
        for member in tf:
            name = member.name.rstrip("/")
            assert name not in seen.mode, f"{name} twice in the tar"
            if member.type == tarfile.LNKTYPE:
                first = member.linkname
                seen.mode[name], seen.owner[name] = seen.mode[first], seen.owner[first]
                seen.size[name], seen.sha256[name] = seen.size[first], seen.sha256[first]
                groups.setdefault(first, {first}).add(name)
                continue
            seen.mode[name] = kinds[member.type] | member.mode
            seen.owner[name] = (member.uid, member.gid)
            if member.isreg():
                seen.size[name] = member.size
                data = tf.extractfile(member)
                assert data is not None
                seen.sha256[name] = hashlib.sha256(data.read()).hexdigest()
            elif member.issym():
                seen.symlinks[name] = member.linkname
            elif member.ischr() or member.isblk():
                seen.device[name] = (member.devmajor, member.devminor)
    seen.links.update(frozenset(names) for names in groups.values())
    return seen


def tar_names(data: bytes) -> list[str]:
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name for m in tf]


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/"): m for m in tf}


def age_access_times(paths: Iterable[Path]) -> None:
    """Access times before modification times: under relatime, any read would now move them."""
    for top in paths:
        for directory, dirs, files in os.walk(top):
            for name in [".", *dirs, *files]:
                path = os.path.join(directory, name)
                st = os.lstat(path)
                os.utime(path, ns=(1, st.st_mtime_ns), follow_symlinks=False)


def mountinfo() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return sorted(f.read().splitlines())


def directory_view(top: Path) -> Seen:
    """The same view of a root filesystem on the host (a peer's mounted image)."""
    import hashlib

    seen = Seen()
    inodes: dict[int, set[str]] = {}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            host = os.path.join(directory, name)
            path = os.path.relpath(host, top)
            st = os.lstat(host)
            seen.mode[path], seen.owner[path] = st.st_mode, (st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                seen.size[path] = st.st_size
                with open(host, "rb") as f:
                    seen.sha256[path] = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, set()).add(path)
            elif stat.S_ISLNK(st.st_mode):
                seen.symlinks[path] = os.readlink(host)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                seen.device[path] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    seen.links.update(frozenset(names) for names in inodes.values() if len(names) > 1)
    return seen


def without_mount_points(seen: Seen) -> Seen:
    """What is comparable between two views: mount points show what is mounted on them."""

    def keep(attrs: dict[str, Any]) -> dict[str, Any]:
        return {p: v for p, v in attrs.items() if p.split("/")[0] not in MOUNT_POINTS}

    return Seen(
        keep(seen.mode),
        keep(seen.owner),
        keep(seen.size),
        keep(seen.device),
        keep(seen.sha256),
        keep(seen.symlinks),
        {g for g in seen.links if not any(p.split("/")[0] in MOUNT_POINTS for p in g)},
    )
