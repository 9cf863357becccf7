"""``dockscope unpack`` and ``dockscope export``: the faithful cases produce exactly the expected
tree, export agrees with unpack, the CLI's exit codes and JSON, diff_ids, bounded memory."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.errors import InvalidImageError
from inspect_tool.layers.export import export
from inspect_tool.layers.unpack import UnpackOptions, UnpackResult, unpack
from inspect_tool.layers.unpack.audit import ExtractStats
from inspect_tool.sources import open_source
from tests.support.cli import invoke
from tests.support.images import Layout, config_bytes, oci_layout, sha256
from tests.support.paths import CORPUS, SAMPLES
from tests.support.snapshots import snapshot
from tests.support.tar_entries import (
    Entry,
    build_layer,
    dir_entry,
    file_entry,
    hardlink_entry,
    symlink_entry,
)
from tests.support.trees import dest_tree, tar_tree

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="owners and setuid bits are kept as root only")


def image_of(tmp_path: Path, layers: list[list[Entry]], name: str = "image") -> Path:
    path = tmp_path / name
    oci_layout(path, [build_layer(layer) for layer in layers])
    return path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- a faithful image: every kind of entry, modes, owners, whiteouts, links across layers -------
LOWER = [
    dir_entry("etc", mtime=1000),
    file_entry("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", mtime=1001),
    file_entry("etc/doomed", b"deleted above"),
    symlink_entry("etc/localtime", "/usr/share/zoneinfo/UTC"),
    dir_entry("usr/share/zoneinfo"),
    file_entry("usr/share/zoneinfo/UTC", b"TZif2"),
    dir_entry("tmp", mode=0o1777),
    dir_entry("home/app", mode=0o700, uid=1000, gid=1000, mtime=2000),
    file_entry("home/app/.profile", b"export A=1\n", mode=0o600, uid=1000, gid=1000),
    file_entry("bin/su", b"\x7fELF su", mode=0o4755),
    hardlink_entry("bin/su-link", "bin/su"),
    file_entry("bin/busybox", b"\x7fELF bb1", mode=0o755),
    symlink_entry("bin/sh", "busybox"),
    Entry("run/initctl", "fifo", mode=0o620),
    dir_entry("var/cache/app"),
    file_entry("var/cache/app/a", b"a"),
    dir_entry("var/cache/app/sub"),
    file_entry("var/cache/app/sub/b", b"b"),
    file_entry("var/lib/old", b"old"),
    dir_entry("lib64real"),
    symlink_entry("lib64", "lib64real"),
    dir_entry("opt/gone"),
    file_entry("opt/gone/file", b"g"),
    file_entry("empty", b""),
    hardlink_entry("empty-too", "empty"),
]
UPPER = [
    file_entry("etc/.wh.doomed"),
    file_entry("etc/passwd", b"root:x:0:0::/root:/bin/bash\n", mtime=3000),
    file_entry("var/cache/app/.wh..wh..opq"),
    file_entry("var/cache/app/new", b"n"),
    dir_entry("lib64"),  # a directory replaces the symlink
    file_entry("lib64/ld.so", b"ld"),
    hardlink_entry("usr/bin-su", "bin/su"),  # a hard link to a lower layer's file
    file_entry("var/lib/x", b"x"),
    file_entry("var/lib/.wh.x"),  # a whiteout never hides its own layer's entry
    file_entry(
        "bin/busybox", b"\x7fELF bb2", mode=0o755
    ),  # replaced: its hard links stay on the old
    file_entry("opt/gone", b"now a file"),  # a file replaces a directory and all it held
]


def file_(data: bytes, mode: int = 0o644, link: str | None = None) -> tuple[str, int, str]:
    return ("file", mode, digest(data) + (f" =link {link}" if link else ""))


def dir_(mode: int = 0o755) -> tuple[str, int, None]:
    return ("dir", mode, None)


EXPECTED = {
    "bin": dir_(),
    "bin/busybox": file_(b"\x7fELF bb2", 0o755),
    "bin/sh": ("symlink", None, "busybox"),
    "bin/su": file_(b"\x7fELF su", 0o4755),
    "bin/su-link": file_(b"\x7fELF su", 0o4755, link="bin/su"),
    "empty": file_(b""),
    "empty-too": file_(b"", link="empty"),
    "etc": dir_(),
    "etc/localtime": ("symlink", None, "/usr/share/zoneinfo/UTC"),
    "etc/passwd": file_(b"root:x:0:0::/root:/bin/bash\n"),
    "home": dir_(),
    "home/app": dir_(0o700),
    "home/app/.profile": file_(b"export A=1\n", 0o600),
    "lib64": dir_(),
    "lib64/ld.so": file_(b"ld"),
    "lib64real": dir_(),
    "opt": dir_(),
    "opt/gone": file_(b"now a file"),
    "run": dir_(),
    "run/initctl": ("fifo", 0o620, None),
    "tmp": dir_(0o1777),
    "usr": dir_(),
    "usr/bin-su": file_(b"\x7fELF su", 0o4755, link="bin/su"),
    "usr/share": dir_(),
    "usr/share/zoneinfo": dir_(),
    "usr/share/zoneinfo/UTC": file_(b"TZif2"),
    "var": dir_(),
    "var/cache": dir_(),
    "var/cache/app": dir_(),
    "var/cache/app/new": file_(b"n"),
    "var/lib": dir_(),
    "var/lib/old": file_(b"old"),
    "var/lib/x": file_(b"x"),
}


def test_faithful_tree(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER, UPPER])
    dest = tmp_path / "rootfs"
    with open_source(image) as source:
        result = unpack(source, source.candidates[0].image(), dest)
    assert result.audit == []
    assert dest_tree(dest) == EXPECTED
    assert (result.stats.files, result.stats.hardlinks, result.stats.whiteouts) == (17, 3, 3)
    # mtimes: files and directories as their entries say, the directories' set last
    assert os.lstat(dest / "etc").st_mtime_ns == 1000 * 10**9  # layer 1 changed it: kept
    assert os.lstat(dest / "etc/passwd").st_mtime_ns == 3000 * 10**9
    assert os.lstat(dest / "home/app").st_mtime_ns == 2000 * 10**9
    assert os.lstat(dest / "etc/localtime").st_mtime_ns == 1_700_000_000 * 10**9
    if ROOT:
        home = os.lstat(dest / "home/app")
        assert (home.st_uid, home.st_gid) == (1000, 1000)
        profile = os.lstat(dest / "home/app/.profile")
        assert (profile.st_uid, profile.st_gid) == (1000, 1000)


def test_export_is_the_unpacked_tree(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER, UPPER])
    out = io.BytesIO()
    with open_source(image) as source:
        result = export(source, source.candidates[0].image(), out)
    assert result.audit == []
    assert tar_tree(out.getvalue()) == EXPECTED
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = {m.name.rstrip("/"): m for m in tf.getmembers()}
    assert members["home/app"].uid == 1000 and members["home/app"].mtime == 2000
    assert members["etc/passwd"].mtime == 3000
    assert members["bin/su-link"].islnk() and members["usr/bin-su"].linkname == "bin/su"
    assert (result.stats.files, result.stats.hardlinks) == (11, 3)


def test_export_order_and_determinism(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER, UPPER])
    first, second = io.BytesIO(), io.BytesIO()
    with open_source(image) as source:
        export(source, source.candidates[0].image(), first)
    with open_source(image) as source:
        export(source, source.candidates[0].image(), second)
    assert first.getvalue() == second.getvalue()
    assert len(first.getvalue()) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tf:
        members = tf.getmembers()
    names = [m.name.rstrip("/") for m in members]
    # depth-first, names sorted: a directory, then everything below it, then its sibling
    assert names == sorted(names, key=lambda n: n.split("/"))
    for i, member in enumerate(members):
        if member.isdir():
            below = [j for j, n in enumerate(names) if n.startswith(names[i] + "/")]
            assert below == list(range(i + 1, i + 1 + len(below))), names[i]
    seen: set[str] = set()
    for member, name in zip(members, names, strict=True):
        if member.islnk():
            assert member.linkname in seen
        seen.add(name)


@needs_root
def test_no_same_owner(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER])
    dest = tmp_path / "rootfs"
    code, out, err = invoke("unpack", "--no-same-owner", str(image), str(dest))
    assert code == 0, err
    assert "owners not kept" in out
    for path in (dest / "home/app", dest / "home/app/.profile"):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert stat.S_IMODE(os.lstat(dest / "bin/su").st_mode) == 0o4755


def test_xattrs(tmp_path: Path) -> None:
    layer = [file_entry("with-xattr", b"x", xattrs=(("user.dockscope", "yes"),))]
    image = image_of(tmp_path, [layer])
    dest = tmp_path / "rootfs"
    with open_source(image) as source:
        result = unpack(source, source.candidates[0].image(), dest)
    try:
        value = os.getxattr(dest / "with-xattr", "user.dockscope")
    except OSError:  # a file system without user xattrs: reported, not fatal
        assert [a.reason.value for a in result.audit] == ["xattr"]
    else:
        assert value == b"yes" and result.audit == []
    other = tmp_path / "rootfs2"
    with open_source(image) as source:
        skipped = unpack(
            source, source.candidates[0].image(), other, options=UnpackOptions(xattrs=False)
        )
    assert [(a.action.value, a.reason.value, a.name) for a in skipped.audit] == [
        ("skipped", "xattr", "with-xattr")
    ]
    out = io.BytesIO()
    with open_source(image) as source:
        export(source, source.candidates[0].image(), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.getmember("with-xattr").pax_headers["SCHILY.xattr.user.dockscope"] == "yes"


# -- the CLI -------------------------------------------------------------------------------
UNPACK_KEYS = {
    "schema_version",
    "kind",
    "source",
    "image_id",
    "destination",
    "layers",
    "same_owner",
    "devices",
    "ok",
    "summary",
    "applied",
    "audit",
}
SUMMARY_KEYS = {
    "directories",
    "files",
    "symlinks",
    "hardlinks",
    "fifos",
    "devices",
    "whiteouts",
    "bytes",
    "refused",
    "neutralised",
    "skipped",
}
AUDIT_KEYS = {"layer", "name", "offset", "action", "reason", "message"}


def test_cli_unpack_json_and_exit_1_on_refusals(tmp_path: Path) -> None:
    image = image_of(
        tmp_path,
        [[file_entry("ok", b"ok"), file_entry("../escape", b"x"), symlink_entry("l", "/")]],
    )
    dest = tmp_path / "rootfs"
    code, out, err = invoke("unpack", "--json", str(image), str(dest))
    assert code == 1, err
    doc = json.loads(out)
    assert set(doc) == UNPACK_KEYS
    assert doc["kind"] == "unpack" and doc["ok"] is False and doc["destination"] == str(dest)
    assert set(doc["summary"]) == SUMMARY_KEYS
    assert doc["summary"]["files"] == 1 and doc["summary"]["refused"] == 1
    [entry] = doc["audit"]
    assert set(entry) == AUDIT_KEYS
    assert (entry["layer"], entry["name"], entry["action"], entry["reason"]) == (
        0,
        "../escape",
        "refused",
        "name-escapes",
    )
    assert isinstance(entry["offset"], int)
    assert (dest / "ok").read_bytes() == b"ok"


def dest_counts(dest: Path) -> tuple[int, int, int, int]:
    """(files, bytes, directories, extra names of multiply linked files) under ``dest``."""
    files = size = dirs = links = 0
    inodes: set[int] = set()
    for top, subdirs, names in os.walk(dest):
        dirs += len(subdirs)
        for name in names:
            st = os.lstat(os.path.join(top, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_ino in inodes:
                links += 1
                continue
            inodes.add(st.st_ino)
            files += 1
            size += st.st_size
    return files, size, dirs, links


def test_cli_unpack_ok_and_human_output(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER, UPPER])
    dest = tmp_path / "a" / "b" / "rootfs"
    code, out, err = invoke("unpack", str(image), str(dest))
    assert code == 0, err
    files, size, dirs, links = dest_counts(dest)
    assert files < 17  # the layers carry 17 file entries; whiteouts and replacements remove some
    assert f"which holds {files} files ({size} B), {dirs} directories" in out
    assert f"{links} hard links" in out
    assert "Layer entries applied: 17 files" in out
    assert (tmp_path / "a/b/rootfs/etc/passwd").is_file()


def test_cli_unpack_json_summary_is_what_dest_holds(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER, UPPER])
    dest = tmp_path / "rootfs"
    code, out, err = invoke("unpack", "--json", str(image), str(dest))
    assert code == 0, err
    doc = json.loads(out)
    files, size, dirs, links = dest_counts(dest)
    summary = doc["summary"]
    assert (summary["files"], summary["bytes"], summary["directories"]) == (files, size, dirs)
    assert summary["hardlinks"] == links
    applied = doc["applied"]
    assert applied["files"] == 17 and applied["bytes"] > summary["bytes"]
    assert applied["whiteouts"] == summary["whiteouts"] > 0


def test_cli_destination_rules(tmp_path: Path) -> None:
    image = image_of(tmp_path, [[file_entry("new", b"new")]])
    dest = tmp_path / "rootfs"
    dest.mkdir()
    (dest / "already").write_bytes(b"here")
    code, _, err = invoke("unpack", str(image), str(dest))
    assert code == 2 and "not empty" in err and "--force" in err
    assert sorted(p.name for p in dest.iterdir()) == ["already"]
    code, _, err = invoke("unpack", "--force", str(image), str(dest))
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == ["already", "new"]
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    code, _, err = invoke("unpack", str(image), str(a_file))
    assert code == 2 and "not a directory" in err


def test_cli_diff_id_mismatch_exits_3_and_writes_nothing_outside(tmp_path: Path) -> None:
    layer = build_layer([dir_entry("etc"), file_entry("etc/passwd", b"root")])
    image = tmp_path / "image"
    oci_layout(image, [layer], diff_ids=[sha256(b"something else")])
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hello").write_bytes(b"hello")
    (tmp_path / "rootfs").mkdir()
    before = snapshot(tmp_path, skip=tmp_path / "rootfs")
    code, _, err = invoke("unpack", str(image), str(tmp_path / "rootfs"))
    assert code == 3, err
    assert "diff_id mismatch" in err
    assert (tmp_path / "rootfs/etc/passwd").read_bytes() == b"root"  # partly written: yes
    assert snapshot(tmp_path, skip=tmp_path / "rootfs") == before
    code, _, err = invoke("export", str(image), "-o", str(tmp_path / "flat.tar"))
    assert code == 3 and "diff_id mismatch" in err
    assert not (tmp_path / "flat.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".flat.tar")] == []


def test_cli_export_file_stdout_and_json(tmp_path: Path) -> None:
    image = image_of(tmp_path, [LOWER, UPPER])
    target = tmp_path / "flat.tar"
    code, out, err = invoke("export", "--json", str(image), "-o", str(target))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "export" and doc["ok"] is True and doc["output"] == str(target)
    assert set(doc["summary"]) == SUMMARY_KEYS
    assert tar_tree(target.read_bytes()) == EXPECTED
    piped = subprocess.run(
        [sys.executable, "-m", "inspect_tool", "export", str(image), "-o", "-"],
        capture_output=True,
        check=True,
    )
    assert piped.stdout == target.read_bytes()
    assert b"Exported" in piped.stderr
    code, _, err = invoke("export", "--json", str(image), "-o", "-")
    assert code == 2 and "--json" in err


def test_cli_export_exit_1_on_refusals(tmp_path: Path) -> None:
    image = image_of(tmp_path, [[file_entry("ok", b"ok"), hardlink_entry("x", "../etc/passwd")]])
    code, out, err = invoke("export", str(image), "-o", str(tmp_path / "flat.tar"))
    assert code == 1, err
    assert "link-escapes" in out
    with tarfile.open(tmp_path / "flat.tar") as tf:
        assert tf.getnames() == ["ok"]


def test_cli_help_has_examples() -> None:
    for command in ("unpack", "export"):
        code, out, _ = invoke(command, "--help")
        assert code == 0 and "Examples:" in out and f"dockscope {command}" in out


# -- real images: samples and the shared corpus (gzip, zstd, uncompressed, docker save) --------
REAL = [
    SAMPLES / "docker-archive-legacy.tar",
    SAMPLES / "oci-archive-zstd.tar",
    SAMPLES / "oci-layout",
    CORPUS / "docker-save-whiteouts-ggcr.tar",
    CORPUS / "oci-archive-gzip-dive.tar",
    CORPUS / "oci-archive-zstd-dive.tar",
    CORPUS / "docker-save-legacy-dive.tar",
]


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_images_unpack_and_export_agree(tmp_path: Path, path: Path) -> None:
    if not path.exists():
        pytest.fail(f"missing test input {path}")
    with open_source(path) as source:
        selected = source.candidates[0].image()
        result = unpack(source, selected, tmp_path / "rootfs")
        out = io.BytesIO()
        exported = export(source, selected, out)
    assert result.audit == [] and exported.audit == []
    assert tar_tree(out.getvalue()) == dest_tree(tmp_path / "rootfs")
    assert result.stats.files > 0


def test_samples_content(tmp_path: Path) -> None:
    """The sample image's documented tree: whiteout and opaque applied, links kept."""
    dest = tmp_path / "rootfs"
    code, _, err = invoke("unpack", str(SAMPLES / "docker-archive-legacy.tar"), str(dest))
    assert code == 0, err
    assert not (dest / "usr/share/doc/dockscope/README").exists()
    assert os.readlink(dest / "bin/sh-link") == "hello"
    assert os.lstat(dest / "bin/hi").st_ino == os.lstat(dest / "bin/hello").st_ino
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert (dest / "usr/local/bin/docker-entrypoint.sh").is_file()


# -- memory stays bounded -----------------------------------------------------------------------
GIB = 1 << 30


def _zeros_layer(path: Path, size: int) -> tuple[str, str]:
    """A gzip layer holding one file of ``size`` zero bytes, written in pieces."""
    header = tarfile.TarInfo("zeros")
    header.size = size
    header.mtime = 0
    head = header.tobuf(tarfile.PAX_FORMAT)
    tail = bytes(-size % 512) + bytes(1024)
    diff = hashlib.sha256()
    blob = hashlib.sha256()
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    zero = bytes(8 << 20)
    with open(path, "wb") as out:

        def put(data: bytes) -> None:
            diff.update(data)
            packed = compressor.compress(data)
            blob.update(packed)
            out.write(packed)

        put(head)
        left = size
        while left:
            piece = zero[: min(left, len(zero))]
            put(piece)
            left -= len(piece)
        put(tail)
        packed = compressor.flush()
        blob.update(packed)
        out.write(packed)
    return "sha256:" + blob.hexdigest(), "sha256:" + diff.hexdigest()


def test_a_gib_of_zeros_streams_through(tmp_path: Path) -> None:
    """unpack and export of a layer holding a 1 GiB file run in well under 1 GiB of memory."""
    image = tmp_path / "image"
    layout = Layout(image)
    layer_path = layout.blobs / "layer"
    layer_digest, diff_id = _zeros_layer(layer_path, GIB)
    layer_path.rename(layout.blobs / layer_digest.split(":")[1])
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": (layout.blobs / layer_digest.split(":")[1]).stat().st_size,
    }
    layout.index([layout.manifest([layer], config=config_bytes([diff_id]))])
    dest = tmp_path / "rootfs"
    try:
        peak = _peak_rss([sys.executable, "-m", "inspect_tool", "unpack", str(image), str(dest)])
        assert (dest / "zeros").stat().st_size == GIB
        assert peak < 200 * 10**6, f"unpack peaked at {peak / 1e6:.0f} MB"
    finally:
        (dest / "zeros").unlink(missing_ok=True)
    peak = _peak_rss([sys.executable, "-m", "inspect_tool", "export", str(image), "-o", os.devnull])
    assert peak < 200 * 10**6, f"export peaked at {peak / 1e6:.0f} MB"


def _peak_rss(cmd: list[str]) -> int:
    """Peak resident memory of ``cmd``, which must exit 0.

    Read from /proc/PID/status VmHWM while it runs: unlike wait4's ru_maxrss, which keeps
    the peak of the forked copy of this (large) test process from before exec, VmHWM
    belongs to the program's own address space."""
    import time

    peak = 0
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=sink)
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.05)
    assert proc.returncode == 0, cmd
    assert peak, "the process ended before its memory could be read"
    return peak


def test_library_raises_on_truncated_layer(tmp_path: Path) -> None:
    layer = build_layer([file_entry("big", os.urandom(100_000))])
    image = tmp_path / "image"
    oci_layout(image, [gzip.compress(layer)[:-2000]], diff_ids=[sha256(layer)])
    with open_source(image) as source, pytest.raises(InvalidImageError):
        unpack(source, source.candidates[0].image(), tmp_path / "rootfs")


def test_export_round_trips_through_gnu_tar(tmp_path: Path) -> None:
    # GNU tar -xp sets a directory's metadata once it meets a member outside the directory:
    # the export must be depth-first for every directory mtime to survive extraction
    image = image_of(tmp_path, [LOWER, UPPER])
    flat = tmp_path / "flat.tar"
    code, _, err = invoke("export", str(image), "-o", str(flat))
    assert code == 0, err
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(
        ["tar", "--numeric-owner", "-xpf", str(flat), "-C", str(out)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(flat) as archive:
        members = archive.getmembers()
    assert members, "an empty export"
    root = os.geteuid() == 0
    by_name = {m.name.rstrip("/"): m for m in members}
    for member in members:
        name = member.name.rstrip("/")
        meta = by_name[member.linkname] if member.islnk() else member
        st = os.lstat(out / name)
        assert st.st_mtime == meta.mtime, f"{name}: mtime {st.st_mtime} != {meta.mtime}"
        if not member.issym():
            assert stat.S_IMODE(st.st_mode) == meta.mode, f"{name}: mode"
        if root:
            assert (st.st_uid, st.st_gid) == (meta.uid, meta.gid), f"{name}: owner"
        if member.isfile():
            assert (out / name).read_bytes() == archive_bytes(flat, member), name
    # the same tree as unpack writes
    unpacked = tmp_path / "u"
    code, _, err = invoke("unpack", str(image), str(unpacked))
    assert code == 0, err
    assert dest_tree(out) == dest_tree(unpacked)
    # parents no layer lists: unpack creates them now, export stamps them 0 (same bytes)
    listed = [p for p in dest_tree(unpacked) if by_name[p].mtime != 0]
    mtimes = {p: os.lstat(unpacked / p).st_mtime for p in listed}
    assert {p: os.lstat(out / p).st_mtime for p in listed} == mtimes
    assert mtimes["etc"] == 1000 and mtimes["home/app"] == 2000


def archive_bytes(path: Path, member: tarfile.TarInfo) -> bytes:
    with tarfile.open(path) as archive:
        handle = archive.extractfile(member)
        assert handle is not None
        return handle.read()


@needs_root
def test_overlay_on_disk_format_keeps_whiteouts_as_overlays(tmp_path: Path) -> None:
    """The applier's OnDiskFormat.OVERLAY (the runtime's layer store): one layer in overlayfs's
    lowerdir form, whiteouts kept as devices 0/0 and the opaque marker as the xattr, while an
    entry of the same layer is never hidden by that layer's whiteout; OCI applies them."""
    from runtime_lab.storage.overlay_extract import extract_layer

    layer = [
        dir_entry("etc/"),
        file_entry("etc/.wh.group"),
        file_entry("etc/kept"),
        file_entry("etc/.wh.kept"),
        dir_entry("var/"),
        file_entry("var/.wh..wh..opq"),
        file_entry("var/new", b"n"),
    ]
    image = image_of(tmp_path, [[file_entry("etc/group", b"g")], layer])
    with open_source(image) as source:
        _, audit = extract_layer(source, source.candidates[0].image(), 1, tmp_path / "l1", None)
    assert audit == []
    group = os.lstat(tmp_path / "l1/etc/group")
    assert stat.S_ISCHR(group.st_mode) and group.st_rdev == os.makedev(0, 0)
    assert (tmp_path / "l1/etc/kept").is_file()
    assert os.getxattr(tmp_path / "l1/var", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path / "l1")) == ["etc", "var"]
    assert sorted(os.listdir(tmp_path / "l1/var")) == ["new"]
    with open_source(image) as source:
        unpack(source, source.candidates[0].image(), tmp_path / "oci")
    assert sorted(os.listdir(tmp_path / "oci/etc")) == ["kept"]


# -- export's second read in worker processes ------------------------------------------------------
THIRD = [
    dir_entry("srv"),
    *[file_entry(f"srv/f{i:03}", bytes([i]) * (i * 700), mtime=3000 + i) for i in range(60)],
    file_entry("etc/passwd", b"root:x:0:0::/root:/bin/bash\n", mtime=4000),
]
# headers that are not one USTAR block, among plain ones, and rooms of every size
ODD = [
    dir_entry("odd/" + "d" * 120),
    file_entry("odd/" + "d" * 120 + "/long", b"below a long name"),
    file_entry("odd/caf\u00e9", b"not ascii"),
    file_entry("odd/attrs", b"with xattrs", xattrs=(("user.note", "v"),)),
    file_entry("odd/uid", b"big ids", uid=3_000_000, gid=3_000_000),
    file_entry("odd/big", os.urandom(200_003)),
    file_entry("odd/block", b"y" * 512),
    symlink_entry("odd/far", "/" + "t" * 150),
    hardlink_entry("odd/" + "h" * 110, "srv/f007"),
    Entry("odd/null", "char", mode=0o666, devmajor=1, devminor=3),
    file_entry("odd/empty", b""),
    file_entry("odd/pax", b"named by pax", pax_path=True),
]


def test_export_in_workers_writes_what_one_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inspect_tool.layers.export as export_module
    import inspect_tool.layers.image_fs as image_fs_module

    forked: list[tuple[str, int]] = []
    real_run, real_iter = export_module.run_forked, image_fs_module.iter_forked

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        forked.append(("second read", len(args[1])))
        return real_run(*args, **kwargs)

    def counting_iter(*args: Any, **kwargs: Any) -> Any:
        forked.append(("first read", len(args[1])))
        return real_iter(*args, **kwargs)

    monkeypatch.setattr(export_module, "run_forked", counting_run)
    monkeypatch.setattr(image_fs_module, "iter_forked", counting_iter)
    image = image_of(tmp_path, [LOWER, UPPER, THIRD, ODD])
    monkeypatch.setattr(export_module, "usable_workers", lambda asked: 1)
    monkeypatch.setattr(image_fs_module, "usable_workers", lambda asked: 1)
    alone = io.BytesIO()  # one process, and no descriptor: filled here, by seeking
    with open_source(image) as source:
        in_order = export(source, source.candidates[0].image(), alone)
    assert forked == []
    monkeypatch.setattr(export_module, "usable_workers", lambda asked: 2)
    monkeypatch.setattr(image_fs_module, "usable_workers", lambda asked: 2)
    with open_source(image) as source, open(tmp_path / "flat.tar", "wb") as out:
        out.write(b"lead")  # the tar need not start at offset 0
        result = export(source, source.candidates[0].image(), out)
    # every layer read by the workers, then the four with surviving content read again
    assert forked == [("first read", 4), ("second read", 4)]
    assert (tmp_path / "flat.tar").read_bytes() == b"lead" + alone.getvalue()
    assert result.stats == in_order.stats
    assert result.stats.files > 60 and result.stats.devices == 1
    with tarfile.open(fileobj=io.BytesIO(alone.getvalue())) as archive:
        names = archive.getnames()
    assert "odd/caf\u00e9" in names and "odd/" + "d" * 120 + "/long" in names


class RewrittenAfterFirstRead:
    """An ``on_pass`` callback: ``blob`` is rewritten with ``after`` once the first read of
    every layer is done, before the second begins."""

    def __init__(self, blob: Path, after: bytes) -> None:
        self.blob, self.after = blob, after
        self.passes: list[int] = []

    def __call__(self, total: int) -> None:
        self.passes.append(total)
        if len(self.passes) == 2:
            self.blob.chmod(0o644)
            self.blob.write_bytes(self.after)


def layer_blob(image: Path, index: int) -> Path:
    """The blob file of layer ``index`` of the one image of an OCI layout."""
    manifest = json.loads((image / "index.json").read_text())["manifests"][0]["digest"]
    blobs = image / "blobs" / "sha256"
    layers = json.loads((blobs / manifest.removeprefix("sha256:")).read_bytes())["layers"]
    return blobs / layers[index]["digest"].removeprefix("sha256:")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        # the second read proves the blob by the first read's raw digest (reading the tar
        # again, one process sees the member's size change first)
        ("rewritten", "changed between two reads"),
        # past the last file it wants, the second read hashes without decompressing
        ("grown", "the blob changed between two reads"),
        ("cut short", "the layer ended before the bytes of|tar stream ends inside"),
    ],
)
def test_export_reports_a_layer_changed_between_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, message: str, workers: int
) -> None:
    import inspect_tool.layers.export as export_module
    import inspect_tool.layers.image_fs as image_fs_module

    monkeypatch.setattr(export_module, "usable_workers", lambda asked: workers)
    monkeypatch.setattr(image_fs_module, "usable_workers", lambda asked: workers)
    image = image_of(tmp_path, [LOWER, UPPER, THIRD])
    third = layer_blob(image, 2)
    if change == "rewritten":
        after = build_layer([*THIRD[:-1], file_entry("etc/passwd", b"x" * 27)])
    elif change == "grown":
        after = third.read_bytes() + b"\0" * 1024
    else:
        after = third.read_bytes()[:4096]
    between = RewrittenAfterFirstRead(third, after)
    out = io.BytesIO() if workers == 1 else open(tmp_path / "flat.tar", "wb")  # noqa: SIM115
    with (
        open_source(image) as source,
        out,
        pytest.raises(InvalidImageError) as caught,
    ):
        export(source, source.candidates[0].image(), out, on_pass=between)
    assert caught.value.subject is not None and caught.value.subject.endswith("layer 2")
    assert re.search(message, caught.value.message)


@pytest.mark.parametrize("workers", [1, 2])
def test_export_names_the_layer_whose_path_is_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The tree is built from members a worker read: the layer is still named."""
    import inspect_tool.layers.image_fs as image_fs_module

    monkeypatch.setattr(image_fs_module, "usable_workers", lambda asked: workers)
    image = image_of(tmp_path, [LOWER, [file_entry("a/" * 2047 + "f", b"x")]])
    with (
        open_source(image) as source,
        open(tmp_path / "flat.tar", "wb") as out,
        pytest.raises(InvalidImageError) as caught,
    ):
        export(source, source.candidates[0].image(), out)
    assert caught.value.subject is not None and caught.value.subject.endswith("layer 1")
    assert "exceeds the bound of 4095 bytes" in caught.value.message


def test_export_to_a_file_opened_for_appending_is_a_whole_tar_after_what_was_there(
    tmp_path: Path,
) -> None:
    image = image_of(tmp_path, [LOWER, UPPER, THIRD])
    whole = io.BytesIO()
    with open_source(image) as source:
        export(source, source.candidates[0].image(), whole)
    target = tmp_path / "log.tar"
    target.write_bytes(b"earlier")
    with open_source(image) as source, open(target, "ab") as out:  # as a shell's >> opens it
        export(source, source.candidates[0].image(), out)
    assert target.read_bytes() == b"earlier" + whole.getvalue()


# -- two passes (layers/unpack/twopass.py): the tree planned, then made by workers --------------
def _unpack_into(image: Path, dest: Path, **options: Any) -> UnpackResult:
    with open_source(image) as source:
        return unpack(source, source.candidates[0].image(), dest, options=UnpackOptions(**options))


def _metadata(dest: Path) -> dict[str, tuple[int, int, int | None, int]]:
    """Every entry's owner, mtime and link count (``dest_tree`` has the rest); the mtime of
    a directory no layer lists is its time of creation, left out (None)."""
    recent = time.time_ns() - 3600 * 10**9
    out: dict[str, tuple[int, int, int | None, int]] = {}
    for path in [dest, *sorted(dest.rglob("*"))]:
        st = os.lstat(path)
        mtime = None if st.st_mtime_ns > recent else st.st_mtime_ns
        out[str(path.relative_to(dest))] = (st.st_uid, st.st_gid, mtime, st.st_nlink)
    return out


def _workers(monkeypatch: pytest.MonkeyPatch, workers: int) -> list[int]:
    """Both passes given ``workers`` processes; the second pass's forks recorded (jobs)."""
    import inspect_tool.layers.image_fs as image_fs_module
    import inspect_tool.layers.unpack.twopass as twopass_module

    for module in (image_fs_module, twopass_module):
        monkeypatch.setattr(module, "usable_workers", lambda asked: workers)
    forked: list[int] = []
    real = twopass_module.run_forked

    def counting(*args: Any, **kwargs: Any) -> Any:
        forked.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(twopass_module, "run_forked", counting)
    return forked


@pytest.mark.parametrize("workers", [1, 2])
def test_two_passes_make_the_tree_one_pass_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    forked = _workers(monkeypatch, workers)
    image = image_of(tmp_path, [LOWER, UPPER, THIRD, ODD])
    one = _unpack_into(image, tmp_path / "one", two_pass=False)
    two = _unpack_into(image, tmp_path / "two", two_pass=True)
    # the four layers hold surviving files: each is a job of the second pass
    assert forked == ([4] if workers == 2 else [])
    assert dest_tree(tmp_path / "two") == dest_tree(tmp_path / "one")
    assert _metadata(tmp_path / "two") == _metadata(tmp_path / "one")
    assert two.audit == one.audit and two.stats == one.stats
    # counted as made, not read back: the same as the walk of either tree
    assert two.written == one.written == tree_stats(tmp_path / "two")
    assert two.written.files > 60 and two.written.hardlinks >= 2


@pytest.mark.parametrize("budget", ["below one layer", "below the sum"])
def test_past_the_plan_budget_the_layers_are_applied_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: str
) -> None:
    import inspect_tool.layers.unpack.twopass as twopass_module

    forked = _workers(monkeypatch, 2)
    # ODD first: its hard link names a file no layer below holds, which the audit notes
    image = image_of(tmp_path, [ODD, LOWER, UPPER, THIRD])
    one = _unpack_into(image, tmp_path / "one", two_pass=False)
    assert one.audit
    # the first layer alone over it (a worker stops reading), or the first two together
    entries = 5 if budget == "below one layer" else len(ODD) + 1
    monkeypatch.setattr(twopass_module, "PLAN_ENTRIES", entries)
    passes: list[int] = []
    with open_source(image) as source:
        fell_back = unpack(
            source, source.candidates[0].image(), tmp_path / "back", on_pass=passes.append
        )
    assert forked == []  # no second pass: nothing planned was made
    assert dest_tree(tmp_path / "back") == dest_tree(tmp_path / "one")
    assert _metadata(tmp_path / "back") == _metadata(tmp_path / "one")
    # what the plan had counted and noted is gone: the one-pass figures alone
    assert fell_back.audit == one.audit and fell_back.stats == one.stats
    assert fell_back.written == one.written
    # the progress bar started again for the layers' second read
    assert len(passes) == 2 and passes[0] == passes[1] > 0
    monkeypatch.setattr(twopass_module, "PLAN_ENTRIES", 10_000)
    _unpack_into(image, tmp_path / "two")
    assert forked == [4]


def test_two_passes_are_the_default_where_they_pay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forked = _workers(monkeypatch, 2)
    image = image_of(tmp_path, [LOWER, UPPER])
    _unpack_into(image, tmp_path / "two")
    assert forked == [2]
    _unpack_into(image, tmp_path / "filtered", wanted=lambda name: name.startswith("etc"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "kept").write_text("")
    _unpack_into(image, tmp_path / "full", force=True)  # DEST not empty: one pass
    assert forked == [2]
    assert (tmp_path / "full" / "kept").exists() and (tmp_path / "full" / "etc").is_dir()


def test_two_passes_write_a_sparse_file_by_parsing_its_layer_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.image.test_tar_go import case

    _workers(monkeypatch, 2)
    path = tmp_path / "image"
    sparse = case("pax-sparse-1.0").archive  # real-name (200 bytes, two fragments), after
    oci_layout(path, [build_layer(LOWER), sparse])
    result = _unpack_into(path, tmp_path / "two", two_pass=True)
    assert result.ok
    real = tmp_path / "two" / "real-name"
    assert real.read_bytes() == b"hello" + bytes(95) + b"abc" + bytes(97)
    assert (tmp_path / "two" / "after").read_bytes() == b"z"
    _unpack_into(path, tmp_path / "one", two_pass=False)
    assert dest_tree(tmp_path / "two") == dest_tree(tmp_path / "one")


@pytest.mark.parametrize("workers", [1, 2])
def test_two_passes_leave_dest_empty_when_a_layer_fails_its_diff_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    _workers(monkeypatch, workers)
    image = image_of(tmp_path, [LOWER, UPPER, THIRD])
    third = layer_blob(image, 2)
    third.chmod(0o644)
    third.write_bytes(build_layer([*THIRD[:-1], file_entry("etc/passwd", b"x" * 27)]))
    with pytest.raises(InvalidImageError) as caught:
        _unpack_into(image, tmp_path / "dest", two_pass=True)
    assert caught.value.subject is not None and caught.value.subject.endswith("layer 2")
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("grown", "the blob changed between two reads"),
        ("cut short", "the layer ended before the bytes of|tar stream ends inside"),
    ],
)
def test_two_passes_report_a_layer_changed_between_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, message: str, workers: int
) -> None:
    _workers(monkeypatch, workers)
    image = image_of(tmp_path, [LOWER, UPPER, THIRD])
    third = layer_blob(image, 2)
    after = third.read_bytes() + b"\0" * 1024 if change == "grown" else third.read_bytes()[:600]
    between = RewrittenAfterFirstRead(third, after)
    with open_source(image) as source, pytest.raises(InvalidImageError) as caught:
        unpack(
            source,
            source.candidates[0].image(),
            tmp_path / "dest",
            options=UnpackOptions(two_pass=True),
            on_pass=between,
        )
    assert len(between.passes) == 2
    assert caught.value.subject is not None and caught.value.subject.endswith("layer 2")
    assert re.search(message, caught.value.message)


def test_two_passes_report_what_the_disk_refuses_as_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name the file system refuses (here: every write of one file fails) is reported
    with its layer, name and header offset, as one pass reports it."""
    import inspect_tool.layers.unpack.twopass as twopass_module

    _workers(monkeypatch, 1)
    real_write = twopass_module._write

    def failing(fd: int, data: Any) -> None:
        if bytes(data[:5]) == b"\x7fELF ":
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        real_write(fd, data)

    monkeypatch.setattr(twopass_module, "_write", failing)
    image = image_of(tmp_path, [LOWER, UPPER])
    result = _unpack_into(image, tmp_path / "dest", two_pass=True)
    failed = [(a.layer, a.name) for a in result.audit if a.reason.value == "write-failed"]
    # bin/busybox as the upper layer wrote it: the lower one's is never made
    assert failed == [(0, "bin/su"), (1, "bin/busybox")]
    assert all(a.offset is not None for a in result.audit if a.reason.value == "write-failed")
    assert not result.ok
    # the files are there in part (as one pass leaves them): DEST is walked to count them
    assert result.written == tree_stats(tmp_path / "dest")


def test_two_passes_count_a_directory_made_that_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory made whose descriptor the kernel then refuses is still counted as
    extracted (it exists); only what the walk would have made below it is lost."""
    from inspect_tool.layers.unpack.disk import DIR_PATH

    _workers(monkeypatch, 1)
    image = image_of(tmp_path, [LOWER, UPPER])
    one = _unpack_into(image, tmp_path / "one", two_pass=False)
    real_open = os.open
    refused: list[str] = []

    def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == "app" and flags == DIR_PATH and not refused:
            refused.append(path)
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    two = _unpack_into(image, tmp_path / "two", two_pass=True)
    monkeypatch.undo()
    assert refused == ["app"]
    failed = [(a.layer, a.name) for a in two.audit if a.reason.value == "write-failed"]
    assert failed == [(0, "home/app/")]
    assert two.stats == one.stats
    assert (tmp_path / "two" / "home" / "app").is_dir()
    assert two.written == tree_stats(tmp_path / "two")


def tree_stats(dest: Path) -> ExtractStats:
    from inspect_tool.layers.unpack.disk import tree_stats as walk

    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return walk(fd)
    finally:
        os.close(fd)


def test_two_passes_make_a_tree_deeper_than_the_descriptors_they_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 64 levels the walk closes its shallowest directories and reopens them through
    ".." on its way back: what follows a deep subtree still lands in the right directory."""
    _workers(monkeypatch, 2)
    deep = "/".join(f"d{i}" for i in range(200))
    lower = [
        file_entry(f"a/{deep}/leaf", b"deep"),
        file_entry(f"a/{'/'.join(deep.split('/')[:100])}/middle", b"middle"),
        symlink_entry("a/d0/d1/link", "../../after"),
        file_entry("a/d0/after", b"a/d0"),
        file_entry("a/after", b"a"),
        file_entry("z", b"z"),
    ]
    upper = [file_entry(f"a/{deep}/upper", b"upper"), hardlink_entry("a/d0/d1/d2/hard", "z")]
    image = image_of(tmp_path, [lower, upper])
    two = _unpack_into(image, tmp_path / "two", two_pass=True)
    one = _unpack_into(image, tmp_path / "one", two_pass=False)
    assert two.ok and two.audit == one.audit
    assert dest_tree(tmp_path / "two") == dest_tree(tmp_path / "one")
    assert (tmp_path / "two" / "a" / "after").read_bytes() == b"a"
    assert (tmp_path / "two" / "a" / "d0" / "after").read_bytes() == b"a/d0"
    assert (tmp_path / "two" / "a" / deep / "upper").read_bytes() == b"upper"
    assert os.readlink(tmp_path / "two" / "a" / "d0" / "d1" / "link") == "../../after"
    assert two.written == tree_stats(tmp_path / "two")
