"""``dockscope container export``: the merged filesystem (docker export) and the writable layer
as an OCI layer, from real containers (root), checked against what the container itself saw
and against the kernel's own overlay view of crafted layers."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.layers.whiteout import OPAQUE_XATTR
from inspect_tool.storage.diff import diff_layer
from inspect_tool.storage.export import WritableLayerError, export_layer
from inspect_tool.storage.writable import walk_tree
from runtime_lab.storage.driver import writable_layer
from tests.support.cli import dockscope, ok_bytes
from tests.support.containers import (
    CHANGES,
    DIVE_LEGACY,
    LISTING,
    MOUNT_POINTS,
    Seen,
    age_access_times,
    mountinfo,
    need_root,
    parse_listing,
    tar_members,
    tar_names,
    tar_view,
)
from tests.support.snapshots import snapshot

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Seen]]:
    """A stopped container that made every kind of change, and what it saw afterwards."""
    need_root()
    root = tmp_path_factory.mktemp("state")
    out = ok_bytes(
        # --net none: no hosts and resolv.conf mounted in from the container's directory
        dockscope(
            root, "run", "--name", "c1", "--net", "none", DIVE_LEGACY, "sh", "-c", CHANGES + LISTING
        )
    )
    cid = json.loads(ok_bytes(dockscope(root, "container", "inspect", "c1")))["id"]
    yield root, cid, parse_listing(out.decode("utf-8", "surrogateescape"))
    dockscope(root, "rm", "-f", "c1")


def _export(root: Path, *args: str) -> bytes:
    return ok_bytes(dockscope(root, "container", "export", *args, "c1", "-o", "-"))


# -- the merged filesystem ----------------------------------------------------------------------


def test_merged_export_is_what_the_container_saw(
    changed: tuple[Path, str, Seen], tmp_path: Path
) -> None:
    root, _, seen = changed
    target = tmp_path / "fs.tar"
    ok_bytes(dockscope(root, "container", "export", "c1", "-o", target))
    exported = tar_view(target)

    assert set(exported.mode) == set(seen.mode)
    # mount points show the mounted file system inside: only their type is comparable
    for top in MOUNT_POINTS:
        assert stat.S_ISDIR(exported.mode[top])
    below = [p for p in seen.mode if p.split("/")[0] not in MOUNT_POINTS]
    assert {p: exported.mode[p] for p in below} == {p: seen.mode[p] for p in below}
    assert {p: exported.owner[p] for p in below} == {p: seen.owner[p] for p in below}
    assert exported.size == {p: s for p, s in seen.size.items() if p in below}
    assert exported.sha256 == seen.sha256
    assert exported.symlinks == seen.symlinks
    assert exported.device == {p: d for p, d in seen.device.items() if p in below}
    assert exported.links == seen.links

    # the changes themselves, spelled out
    assert "etc/group" not in exported.mode and "var/www" not in exported.mode
    assert sorted(p for p in exported.mode if p.startswith("root/")) == ["root/f"]
    assert exported.owner["root/f"] == (1234, 5678)
    assert exported.mode["somefile.txt"] == stat.S_IFREG | 0o4755
    assert exported.symlinks["tmp/sl"] == "../etc/new"
    assert exported.symlinks["tmp/abs"] == "/etc/passwd"
    assert exported.owner["tmp/sl"] == (42, 43)
    assert exported.device["tmp/null"] == (1, 3)
    assert stat.S_ISFIFO(exported.mode["tmp/fifo"])
    assert frozenset({"etc/new", "etc/new2"}) in exported.links
    assert "tmp/ünï" in exported.mode
    assert any(len(group) > 100 for group in exported.links)  # busybox's applets, lower


def test_merged_export_has_parents_first_and_sorted_names(changed: tuple[Path, str, Seen]) -> None:
    root, _, _ = changed
    names = [n.rstrip("/") for n in tar_names(_export(root))]
    expected: list[str] = []

    def walk(prefix: str) -> None:
        children = sorted({n[len(prefix) :].split("/")[0] for n in names if n.startswith(prefix)})
        for child in children:
            expected.append(prefix + child)
            walk(prefix + child + "/")

    walk("")
    assert names == expected


# -- the writable layer ------------------------------------------------------------------------


def test_layer_export_holds_exactly_the_changes_as_oci_whiteouts(
    changed: tuple[Path, str, Seen],
) -> None:
    root, _, _ = changed
    data = _export(root, "--writable-layer")
    names = tar_names(data)
    assert names == [
        "etc",
        "etc/.wh.group",
        "etc/new",
        "etc/new2",
        "opt",
        "opt/new",
        "opt/new/deep",
        "opt/new/deep/z",
        "root",
        "root/.wh..wh..opq",
        "root/f",
        "somefile.txt",
        "tmp",
        "tmp/abs",
        "tmp/fifo",
        "tmp/null",
        "tmp/saved.again1.txt",
        "tmp/sl",
        "tmp/ünï",
        "var",
        "var/.wh.www",
    ]
    members = tar_members(data)
    whiteouts = {n for n in members if os.path.basename(n).startswith(".wh.")}
    assert whiteouts == {"etc/.wh.group", "var/.wh.www", "root/.wh..wh..opq"}
    for name in whiteouts:
        assert members[name].isreg() and members[name].size == 0
    assert members["etc/new2"].islnk() and members["etc/new2"].linkname == "etc/new"
    assert members["tmp/null"].ischr()
    assert (members["tmp/null"].devmajor, members["tmp/null"].devminor) == (1, 3)
    assert members["tmp/sl"].issym() and members["tmp/sl"].linkname == "../etc/new"
    # overlay's bookkeeping (origin, opaque) is not content
    for member in members.values():
        assert not any("overlay" in key for key in member.pax_headers), member.name
    # the runtime's mount points (proc, sys) are the runtime's, not the container's change
    assert not {"proc", "sys"} & set(members)


# -- properties of both tars -------------------------------------------------------------------


@pytest.mark.parametrize("layer", [False, True], ids=["merged", "layer"])
def test_exports_are_deterministic_files_or_stdout(
    changed: tuple[Path, str, Seen], tmp_path: Path, layer: bool
) -> None:
    root, _, _ = changed
    flags = ["--writable-layer"] if layer else []
    first = tmp_path / "1.tar"
    ok_bytes(dockscope(root, "container", "export", *flags, "c1", "-o", first))
    time.sleep(0.01)
    second = tmp_path / "2.tar"
    ok_bytes(dockscope(root, "container", "export", *flags, "c1", "--output", second))
    streamed = _export(root, *flags)
    assert first.read_bytes() == second.read_bytes() == streamed
    assert len(streamed) % tarfile.RECORDSIZE == 0
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_export_json_summary(changed: tuple[Path, str, Seen], tmp_path: Path) -> None:
    root, cid, _ = changed
    proc = dockscope(
        root, "container", "export", "--json", "--writable-layer", "c1", "-o", tmp_path / "l"
    )
    document = json.loads(ok_bytes(proc))
    assert document["kind"] == "container-export"
    assert (document["id"], document["name"], document["layer"]) == (cid, "c1", True)
    assert document["summary"] == {
        "directories": 7,
        "files": 6,
        "hardlinks": 1,
        "symlinks": 2,
        "devices": 1,
        "fifos": 1,
        "whiteouts": 2,
        "opaque": 1,
        "bytes": len("hi\nx\nz\nu\n") + 6405 + len("more\n") + 6405,
    }
    assert document["skipped"] == []


def test_export_commit_and_diff_leave_the_container_untouched_and_mount_nothing(
    changed: tuple[Path, str, Seen], tmp_path: Path
) -> None:
    root, cid, _ = changed
    evidence = [root / "containers" / cid / d for d in ("upper", "work", "merged")]
    evidence.append(root / "layers")
    age_access_times(evidence)
    before, mounts = snapshot(*evidence, access_times=True), mountinfo()
    _export(root)
    _export(root, "--writable-layer")
    ok_bytes(dockscope(root, "container", "commit", "c1", "-o", tmp_path / "image"))
    ok_bytes(dockscope(root, "container", "diff", "--json", "c1"))
    assert mountinfo() == mounts
    after = snapshot(*evidence, access_times=True)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if before[k] != v} == {}


def test_stdout_and_json_and_terminal_rules(changed: tuple[Path, str, Seen]) -> None:
    root, _, _ = changed
    proc = dockscope(root, "container", "export", "--json", "c1", "-o", "-")
    assert proc.code == 2 and b"--json needs -o FILE" in proc.err_bytes
    proc = dockscope(root, "container", "export", "nosuch", "-o", "-")
    assert proc.code == 2 and b"no such container: nosuch" in proc.err_bytes


def test_running_container_is_refused(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "state"
    ok_bytes(dockscope(root, "run", "-d", "--name", "busy", DIVE_LEGACY, "sleep", "60"))
    try:
        for args in (
            ("export", "busy", "-o", tmp_path / "x.tar"),
            ("commit", "busy", "-o", tmp_path / "img"),
        ):
            proc = dockscope(root, "container", *args)
            assert proc.code == 2, proc.err_bytes
            assert b"is running: stop it first" in proc.err_bytes
        assert not (tmp_path / "x.tar").exists() and not (tmp_path / "img").exists()
    finally:
        dockscope(root, "rm", "-f", "busy")


def test_copy_mode_exports_the_merged_tree_but_has_no_layer(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "state"
    script = "echo copied > /etc/new && rm /etc/group"
    ok_bytes(
        dockscope(
            root,
            "run",
            "--name",
            "cp",
            DIVE_LEGACY,
            "sh",
            "-c",
            script,
            env={"DOCKSCOPE_ROOTFS": "copy"},
        )
    )
    state = json.loads(ok_bytes(dockscope(root, "container", "inspect", "cp")))["state"]
    assert state["rootfs_mode"] == "copy"
    data = ok_bytes(dockscope(root, "container", "export", "cp", "-o", "-"))
    members = tar_members(data)
    assert "etc/group" not in members and "etc/passwd" in members
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        handle = tf.extractfile("etc/new")
        assert handle is not None and handle.read() == b"copied\n"
    proc = dockscope(root, "container", "export", "--writable-layer", "cp", "-o", "-")
    assert proc.code == 3 and b"no separate writable layer" in proc.err_bytes


# -- the merge rules, against the kernel's overlay ------------------------------------------------


def _whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _layers(base: Path) -> tuple[Path, list[Path]]:
    """Crafted overlay layers with every lookup rule in play (lowers bottom first)."""
    need_root()
    l0, l1, upper = base / "l0", base / "l1", base / "upper"
    for directory in (
        l0 / "a",
        l0 / "b",
        l0 / "d",
        l0 / "e",
        l0 / "h",
        l0 / "o" / "keep",
        l1 / "a",
        l1 / "b",
        l1 / "c",
        l1 / "o",
        upper / "a",
        upper / "b",
        upper / "f" / "g",
        upper / "o",
    ):
        directory.mkdir(parents=True, exist_ok=True)
    for path, text in {
        l0 / "a" / "x": "x0",
        l0 / "a" / "y": "y0",
        l0 / "b" / "1": "b1",
        l0 / "c": "c is a file below",
        l0 / "d" / "1": "d1",
        l0 / "e" / "1": "e1",
        l0 / "h" / "one": "linked",
        l0 / "o" / "keep" / "k": "k",
        l1 / "b" / "2": "b2",
        l1 / "b" / "3": "b3",
        l1 / "c" / "3": "c3",
        l1 / "d": "d is a file above",
        l1 / "a" / "x": "x1",
        upper / "a" / "z": "z",
        upper / "f" / "g" / "new": "new",
    }.items():
        path.write_text(text)
    os.link(l0 / "h" / "one", l0 / "h" / "two")
    _whiteout(l1 / "a" / "y")
    os.setxattr(l1 / "b", OPAQUE_XATTR, b"y")  # hides b/1 of l0
    _whiteout(upper / "b" / "3")
    _whiteout(upper / "e")
    os.symlink("/etc/shadow", upper / "abs")
    os.setxattr(upper / "o", OPAQUE_XATTR, b"y")  # o/keep of l0 is hidden above l1's o
    os.setxattr(upper / "a", "trusted.overlay.origin", b"\x00fake")
    os.setxattr(upper / "a" / "z", "user.note", b"kept")
    return upper, [l0, l1]


_KERNEL_VIEW = textwrap.dedent(
    """
    import json, os, subprocess, sys
    layers, target = sys.argv[1], sys.argv[2]
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir=" + layers,
                    target], check=True)
    seen = {}
    for d, dirs, files in os.walk(target):
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            st = os.lstat(p)
            entry = {"mode": st.st_mode}
            if os.path.isfile(p) and not os.path.islink(p):
                entry["data"] = open(p).read()
            if os.path.islink(p):
                entry["link"] = os.readlink(p)
            seen[os.path.relpath(p, target)] = entry
    print(json.dumps(seen))
    """
)


def _kernel_view(upper: Path, lowers: list[Path], target: Path) -> dict[str, Any]:
    """The overlay the kernel mounts over the same layers (read-only, the upper as the top
    lower), walked in a private mount namespace that vanishes with the process."""
    target.mkdir()
    stack = ":".join(str(p) for p in [upper, *reversed(lowers)])
    unshare = ["unshare", "--mount", "--propagation", "private"]
    proc = subprocess.run(
        [*unshare, sys.executable, "-c", _KERNEL_VIEW, stack, str(target)],
        capture_output=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_merged_entries_follow_the_kernels_overlay_rules(tmp_path: Path) -> None:
    upper, lowers = _layers(tmp_path)
    mounts = mountinfo()
    kernel = _kernel_view(upper, lowers, tmp_path / "mnt")
    assert mountinfo() == mounts  # the kernel's view left no mount behind
    ours: dict[str, Any] = {}
    with writable_layer(upper, lowers) as layer:
        assert layer.merged is not None
        for node in walk_tree(layer.merged):
            host = node.layer.display(node.parts)
            item: dict[str, Any] = {"mode": node.st.st_mode}
            if stat.S_ISREG(node.st.st_mode):
                item["data"] = Path(host).read_text()
            if stat.S_ISLNK(node.st.st_mode):
                item["link"] = os.readlink(host)
            ours["/".join(node.parts)] = item
    assert ours == kernel
    # and the cases spelled out, so a kernel that changed its mind is noticed too
    assert ours["a/x"]["data"] == "x1" and "a/y" not in ours and "a/z" in ours
    assert sorted(p for p in ours if p.startswith("b/")) == ["b/2"]
    assert ours["c/3"]["data"] == "c3" and stat.S_ISDIR(ours["c"]["mode"])
    assert ours["d"]["data"] == "d is a file above"
    assert "e" not in ours and "o/keep" not in ours


def test_changes_of_crafted_layers_follow_the_merged_lower_view(tmp_path: Path) -> None:
    """docker diff of a crafted upper over two lowers: an opaque directory deletes what the
    merged lowers show below it (not what a lower whiteout or an opaque lower hides, nothing
    below a lower file), a whiteout deletes only what a lower shows."""
    upper, lowers = _layers(tmp_path)
    for name in ("c", "d"):
        (upper / name).mkdir()
        os.setxattr(upper / name, OPAQUE_XATTR, b"y")
    os.setxattr(upper / "b", OPAQUE_XATTR, b"y")
    (upper / "a" / "q").mkdir()
    _whiteout(upper / "nothing-below")
    with writable_layer(upper, lowers) as layer:
        found, _ = diff_layer(layer)
    assert [(c.kind, c.path) for c in found] == [
        ("C", "/a"),
        ("A", "/a/q"),
        ("A", "/a/z"),
        ("A", "/abs"),
        ("C", "/b"),
        ("D", "/b/2"),
        ("D", "/b/3"),
        ("C", "/c"),
        ("D", "/c/3"),
        ("C", "/d"),
        ("D", "/e"),
        ("A", "/f"),
        ("A", "/f/g"),
        ("A", "/f/g/new"),
        ("C", "/o"),
        ("D", "/o/keep"),
    ]


def test_layer_entries_of_crafted_upper(tmp_path: Path) -> None:
    upper, _ = _layers(tmp_path)
    os.link(upper / "b" / "3", upper / "b" / "shared-whiteout")  # overlay shares whiteouts
    out = io.BytesIO()
    with writable_layer(upper, [], excluded={"/f"}) as layer:
        stats = export_layer(layer, out, only_layer=True)
    members = tar_members(out.getvalue())
    assert list(members) == [
        ".wh.e",
        "a",
        "a/z",
        "abs",
        "b",
        "b/.wh.3",
        "b/.wh.shared-whiteout",
        "o",
        "o/.wh..wh..opq",
    ]
    assert (stats.whiteouts, stats.opaque, stats.hardlinks) == (3, 1, 0)
    assert members["b/.wh.shared-whiteout"].isreg()  # a whiteout is never a hard link
    assert members["a"].pax_headers.get("SCHILY.xattr.trusted.overlay.origin") is None
    assert members["a/z"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert members["abs"].linkname == "/etc/shadow"


def test_redirected_directories_are_refused(tmp_path: Path) -> None:
    upper, _ = _layers(tmp_path)
    os.setxattr(upper / "f", "trusted.overlay.redirect", b"/a")
    with (
        writable_layer(upper, []) as layer,
        pytest.raises(WritableLayerError, match="redirect_dir or metacopy"),
    ):
        export_layer(layer, io.BytesIO(), only_layer=True)


# -- commit: names, destinations, and an image that changed under the container ---------------


def test_commit_tag_defaults_to_latest_and_bad_tags_are_refused(
    changed: tuple[Path, str, Seen], tmp_path: Path
) -> None:
    root, _, _ = changed
    empty = tmp_path / "empty"
    empty.mkdir()
    out = ok_bytes(dockscope(root, "container", "commit", "c1", "-o", empty, "-t", "example.org/x"))
    index = json.loads((empty / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": "example.org/x:latest",
        "org.opencontainers.image.ref.name": "latest",
    }
    config = json.loads((empty / "blobs" / "sha256" / out.decode().strip()[7:]).read_text())
    assert config["history"][-1]["comment"].startswith("container c1 (")
    for bad in ("Upper/case:1", "x:bad tag", "x@sha256:00", "x:"):
        proc = dockscope(root, "container", "commit", "c1", "-o", tmp_path / "b", "-t", bad)
        assert proc.code == 2 and b"expected NAME[:TAG]" in proc.err_bytes, bad
    proc = dockscope(root, "container", "commit", "c1", "-o", empty)  # not empty any more
    assert proc.code == 2 and b"exists and is not empty" in proc.err_bytes
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no temporary left behind


def test_commit_message_and_author(changed: tuple[Path, str, Seen], tmp_path: Path) -> None:
    root, _, _ = changed
    args = ("-m", "added a file", "-a", "Ada <ada@example.org>", "--json")
    result = json.loads(
        ok_bytes(dockscope(root, "container", "commit", "c1", "-o", tmp_path / "i", *args))
    )
    blob = tmp_path / "i" / "blobs" / "sha256" / result["image_id"][7:]
    config = json.loads(blob.read_text())
    assert config["author"] == "Ada <ada@example.org>"
    assert config["history"][-1] == {
        "created": config["created"],
        "created_by": "dockscope commit",
        "author": "Ada <ada@example.org>",
        "comment": "added a file",
    }


def test_commit_refuses_an_image_that_changed_since_the_run(tmp_path: Path) -> None:
    need_root()
    root = tmp_path / "state"
    image = tmp_path / "image.tar"
    image.write_bytes(DIVE_LEGACY.read_bytes())
    ok_bytes(dockscope(root, "run", "--name", "cc", image, "true"))
    image.write_bytes((DIVE_LEGACY.parent / "docker-save-whiteouts-ggcr.tar").read_bytes())
    proc = dockscope(root, "container", "commit", "cc", "-o", tmp_path / "out")
    assert proc.code == 3 and b"the image there is now" in proc.err_bytes
    assert not (tmp_path / "out").exists()
