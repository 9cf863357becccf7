"""The one tar writer (``inspect_tool/layers/tarwrite.py``): the header it writes for each kind
of entry, from a tree on disk (container export, storage export, commit) and from a layer's
members (export): one row per kind, every field a reader sees."""

from __future__ import annotations

import io
import os
import random
import socket
import stat
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.layers.tarwrite import (
    SOCKET_REASON,
    TarHeader,
    TarStats,
    TarWriter,
    _encode,
    _plain_ustar,
    encode,
    header,
)

MTIME_NS = 1_700_000_000_123_456_789  # nanoseconds a float would lose
MTIME_PAX = "1700000000.123456789"


def _add_path(writer: TarWriter, path: Path, name: str, *, marker: bool) -> None:
    writer.add_stat(
        name,
        os.lstat(path),
        marker=marker,
        readlink=lambda: os.readlink(path),
        xattrs=lambda: {
            key: os.getxattr(path, key, follow_symlinks=False)
            for key in os.listxattr(path, follow_symlinks=False)
        },
        data=lambda: (os.open(path, os.O_RDONLY), str(path)),
    )


def _disk_tar(
    root: Path, names: list[str], *, markers: frozenset[str] = frozenset()
) -> tuple[bytes, TarStats]:
    out = io.BytesIO()
    writer = TarWriter(out)
    for name in names:
        _add_path(writer, root / name, name, marker=name in markers)
    return out.getvalue(), writer.close()


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: m for m in tf.getmembers()}


def _raw_names(data: bytes) -> list[bytes]:
    """The ustar name field of every header block (what a reader without PAX sees)."""
    names = []
    offset = 0
    while offset + 512 <= len(data):
        block = data[offset : offset + 512]
        if block == bytes(512):
            break
        size = int(block[124:136].strip(b"\0 ") or b"0", 8)
        if block[156:157] not in (b"x", b"g"):
            names.append(block[:100].rstrip(b"\0"))
        offset += 512 + (size + 511) // 512 * 512
    return names


def _make(root: Path) -> None:
    (root / "file").write_bytes(b"hello")
    os.link(root / "file", root / "file-link")
    (root / "dir").mkdir(mode=0o750)
    os.symlink("/etc/shadow", root / "symlink")
    os.mknod(root / "char", stat.S_IFCHR | 0o620, os.makedev(4, 64))
    os.mknod(root / "block", stat.S_IFBLK | 0o660, os.makedev(8, 1))
    os.mkfifo(root / "fifo", 0o600)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "socket"))
    os.mknod(root / "whiteout", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (root / "xattrs").write_bytes(b"")
    for key in ("user.zz", "trusted.overlay.opaque", "user.aa"):  # set out of order
        os.setxattr(root / "xattrs", key, b"y")
    for name in os.listdir(root):
        os.utime(root / name, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
        os.lchown(root / name, 1000, 100)
    modes = {"file": 0o4755, "dir": 0o750, "char": 0o620, "block": 0o660, "fifo": 0o600}
    for name, mode in modes.items():  # after chown (it clears setuid), whatever the umask
        os.chmod(root / name, mode)
    os.utime(root / "file", ns=(MTIME_NS, MTIME_NS))


# name in the tar -> (type, mode, size, linkname, (devmajor, devminor), pax records but mtime)
DISK_ROWS: list[tuple[str, bytes, int, int, str, tuple[int, int], dict[str, str]]] = [
    ("file", tarfile.REGTYPE, 0o4755, 5, "", (0, 0), {}),
    ("file-link", tarfile.LNKTYPE, 0o4755, 0, "file", (0, 0), {}),
    ("dir", tarfile.DIRTYPE, 0o750, 0, "", (0, 0), {}),
    ("symlink", tarfile.SYMTYPE, 0o777, 0, "/etc/shadow", (0, 0), {}),
    ("char", tarfile.CHRTYPE, 0o620, 0, "", (4, 64), {}),
    ("block", tarfile.BLKTYPE, 0o660, 0, "", (8, 1), {}),
    ("fifo", tarfile.FIFOTYPE, 0o600, 0, "", (0, 0), {}),
    (".wh.whiteout", tarfile.REGTYPE, 0o000, 0, "", (0, 0), {}),
    ("xattrs", tarfile.REGTYPE, 0o644, 0, "", (0, 0), {"user.aa": "y", "user.zz": "y"}),
]


@pytest.mark.root
def test_headers_of_each_kind_from_disk(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("device nodes, owners and trusted.* xattrs need root")
    _make(tmp_path)
    order = ["dir", "file", "file-link", "symlink", "char", "block", "fifo", "socket"]
    order += ["whiteout", "xattrs"]
    data, stats = _disk_tar(tmp_path, order, markers=frozenset({"whiteout"}))
    # the marker is written under its .wh. name by the caller; here under its own
    members = _members(data)
    members[".wh.whiteout"] = members.pop("whiteout")
    assert sorted(members) == sorted(row[0] for row in DISK_ROWS)  # the socket left out
    for name, kind, mode, size, link, device, xattrs in DISK_ROWS:
        member = members[name]
        assert member.type == kind, name
        assert stat.S_IMODE(member.mode) == mode, name
        assert (member.size, member.linkname) == (size, link), name
        assert (member.devmajor, member.devminor) == device, name
        assert (member.uid, member.gid, member.uname, member.gname) == (1000, 100, "", ""), name
        assert member.pax_headers.get("mtime") == MTIME_PAX, name
        records = {k: v for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        assert records == {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}, name
    assert b"dir/" in _raw_names(data)  # a directory's name ends in "/"
    assert data.index(b"SCHILY.xattr.user.aa") < data.index(b"SCHILY.xattr.user.zz")  # sorted
    assert stats.skipped == [("/socket", SOCKET_REASON)]
    assert (stats.files, stats.hardlinks, stats.directories, stats.symlinks) == (2, 1, 1, 1)
    assert (stats.devices, stats.fifos, stats.whiteouts, stats.bytes) == (2, 1, 1, 5)


MEMBER_ROWS: list[tuple[TarHeader, dict[str, Any]]] = [
    (
        TarHeader("etc/motd", tarfile.REGTYPE, 0o644, 1, 2, MTIME_NS, 3, uname="u", gname="g"),
        {"size": 3, "uname": "u", "gname": "g", "pax": MTIME_PAX},
    ),
    (TarHeader("etc", tarfile.DIRTYPE, 0o755), {"name": "etc", "size": 0, "mtime": 0}),
    (
        TarHeader("bin/sh", tarfile.SYMTYPE, 0o777, linkname="busybox", size=9),
        {"linkname": "busybox", "size": 0},  # a size asked of a symlink is not written
    ),
    (
        TarHeader("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
        {"devmajor": 1, "devminor": 3},
    ),
    (
        TarHeader("dev/sda", tarfile.BLKTYPE, 0o660, devmajor=8, devminor=0),
        {"devmajor": 8, "devminor": 0},
    ),
    (TarHeader("run/fifo", tarfile.FIFOTYPE, 0o600, devmajor=7), {"devmajor": 0}),
    (
        TarHeader("old", tarfile.REGTYPE, 0o644, mtime_ns=-5 * 10**9 + 1),
        {"mtime": -5, "pax": "-5"},  # before 1970: whole seconds, rounded down
    ),
]


@pytest.mark.parametrize(("entry", "expected"), MEMBER_ROWS, ids=lambda v: getattr(v, "name", ""))
def test_headers_of_each_kind_from_entries(entry: TarHeader, expected: dict[str, Any]) -> None:
    out = io.BytesIO()
    writer = TarWriter(out, seekable=True)
    offset = writer.add(entry)
    if offset is not None:
        writer.fill(offset, io.BytesIO(b"x" * entry.size), entry.size)
    writer.close()
    (member,) = _members(out.getvalue()).values()
    assert (member.type, member.mode) == (entry.type, entry.mode)
    expected = dict(expected)
    assert member.pax_headers.get("mtime") == expected.pop("pax", None)
    for key, value in expected.items():
        assert getattr(member, key) == value, key


def test_hard_links_carry_the_inode_but_no_size_or_device() -> None:
    out = io.BytesIO()
    writer = TarWriter(out)
    node = object()
    device = TarHeader("dev/a", tarfile.CHRTYPE, 0o600, devmajor=5, devminor=1)
    writer.add(device, inode=node)
    writer.add(TarHeader("dev/b", tarfile.CHRTYPE, 0o600, devmajor=5, devminor=1), inode=node)
    writer.close()
    members = _members(out.getvalue())
    link = members["dev/b"]
    assert (link.type, link.linkname, link.size) == (tarfile.LNKTYPE, "dev/a", 0)
    assert (link.devmajor, link.devminor) == (0, 0)
    assert writer.stats.devices == 1 and writer.stats.hardlinks == 1


def test_content_that_ends_early_is_an_error() -> None:
    writer = TarWriter(io.BytesIO(), seekable=True)
    offset = writer.add(TarHeader("f", tarfile.REGTYPE, 0o644, size=10))
    assert offset is not None
    with pytest.raises(Exception, match="ended 6 bytes early"):
        writer.fill(offset, io.BytesIO(b"1234"), 10, subject="layer 1")


def test_reserving_needs_a_seekable_writer() -> None:
    writer = TarWriter(io.BytesIO())
    with pytest.raises(TypeError):
        writer.add(TarHeader("f", tarfile.REGTYPE, 0o644, size=1))


def test_unknown_entry_types_have_no_header() -> None:
    with pytest.raises(ValueError, match="no tar header"):
        TarWriter(io.BytesIO()).add(TarHeader("l", tarfile.LNKTYPE, 0o644))


# -- the plain USTAR layout against tarfile's encoding --------------------------------------------


def _entries() -> list[tuple[TarHeader, str | None, bool]]:
    """(entry, link_to, whether the plain layout takes it): boundaries of every field, then a
    seeded spread of ordinary entries."""
    S = 1_000_000_000
    base = TarHeader("usr/bin/tool", tarfile.REGTYPE, 0o755, mtime_ns=1_700_000_000 * S)
    cases: list[tuple[TarHeader, str | None, bool]] = [
        (base, None, True),
        (replace(base, name="a" * 100), None, True),
        (replace(base, name="a" * 101), None, False),  # pax path
        (replace(base, name="d" * 99, type=tarfile.DIRTYPE, size=0), None, True),
        (replace(base, name="d" * 100, type=tarfile.DIRTYPE, size=0), None, False),  # + "/"
        (replace(base, name="caf\u00e9"), None, False),
        (replace(base, name="bad\udcff"), None, False),
        (replace(base, mode=0o4755 | 0o170000), None, True),  # only the permission bits
        (replace(base, uid=8**7 - 1, gid=8**7 - 1), None, True),
        (replace(base, uid=8**7), None, False),
        (replace(base, gid=-1), None, False),
        (replace(base, size=8**11 - 1), None, True),
        (replace(base, size=8**11), None, False),
        (replace(base, mtime_ns=0), None, True),
        (replace(base, mtime_ns=(8**11 - 1) * S), None, True),
        (replace(base, mtime_ns=8**11 * S), None, False),
        (replace(base, mtime_ns=-S), None, False),
        (replace(base, mtime_ns=1_700_000_000 * S + 5), None, False),  # pax mtime
        (replace(base, uname="u" * 32, gname="g" * 32), None, True),
        (replace(base, uname="u" * 33), None, False),
        (replace(base, gname="gr\u00fcn"), None, False),
        (replace(base, xattrs={"user.x": b"1"}), None, False),
        (replace(base, type=tarfile.SYMTYPE, size=0, linkname="l" * 100), None, True),
        (replace(base, type=tarfile.SYMTYPE, size=0, linkname="l" * 101), None, False),
        (replace(base, type=tarfile.SYMTYPE, size=0, linkname="\u00e9"), None, False),
        (replace(base, type=tarfile.CHRTYPE, devmajor=1, devminor=3), None, False),
        (replace(base, type=tarfile.FIFOTYPE), None, False),
        (base, "usr/bin/other", True),  # a hard link: no size
        (base, "h" * 101, False),
    ]
    rng = random.Random(20261207)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._-/"
    for _ in range(500):
        kind = rng.choice([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE])
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 100))).strip("/")
        name = name or "x"
        entry = TarHeader(
            name,
            kind,
            rng.randint(0, 0o7777),
            uid=rng.choice([0, 1000, rng.randint(0, 8**7 - 1)]),
            gid=rng.choice([0, 1000, rng.randint(0, 8**7 - 1)]),
            mtime_ns=rng.randint(0, 2_000_000_000) * S,
            size=rng.randint(0, 8**11 - 1) if kind == tarfile.REGTYPE else 0,
            linkname="target/" + name[:90] if kind == tarfile.SYMTYPE else "",
            uname=rng.choice(["", "root", "www-data"]),
            gname=rng.choice(["", "root", "staff"]),
        )
        plain = not (kind == tarfile.DIRTYPE and len(name) == 100)
        cases.append((entry, "link/" + name[:90] if rng.random() < 0.1 else None, plain))
    return cases


def test_the_plain_layout_is_byte_for_byte_tarfiles_encoding() -> None:
    for entry, link_to, plain in _entries():
        expected = _encode(header(entry, link_to=link_to))
        assert encode(entry, link_to=link_to) == expected, entry
        taken = _plain_ustar(entry, link_to)
        assert (taken is not None) == plain, entry
        if taken is not None:
            assert taken == expected and len(taken) == tarfile.BLOCKSIZE
            # and tarfile reads back what was written
            info = tarfile.TarInfo.frombuf(taken, "utf-8", "surrogateescape")
            assert info.name.rstrip("/") == entry.name.rstrip("/")
