"""Offline forensics of a real Docker root (``../shared/corpus/docker-root-overlay2.tgz``: five
busybox containers, one running when it was copied): listing, diff, export, inspect, logs and
save, with the whole tree fingerprinted (bytes, modes, owners, times, xattrs) before and after
every command. The same root is also rewritten into Docker's other layouts (aufs, vfs,
overlay) and given whiteouts and opaque directories, to check each driver's rules."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_tool.storage import is_engine_root
from inspect_tool.storage.times import format_ns
from tests.support.snapshots import snapshot
from tests.support.storage import diff_lines, export_writable_layer, read_evidence

IMAGE_ID = "sha256:8ac48589692a53a9b8c2d1ceaa6b402665aa7fe667ba51ccc03002300856d8c7"
DIFF_ID = "sha256:0314be9edf00a925d59f9b88c9d8ccb34447ab677078874d8c14e7a6816e21e1"
CACHE = "583c602e6bded61f85a9deb504a724d5cc7cce3902c8385a7620fe1c78ad3176"
RUNNING = "8e8b7f23eb7cbd4dfe7e91646ddd0e0f524218e25d50113559f078dfb2690206"
EXITED = "9949fa153b778e39d6cab0a4e0ba60fa34a13fedb1f256d613a2f88c0c98408a"
# container ID -> (name, status, command, what docker diff prints)
CONTAINERS = {
    "10acac0b3466813c9e1f85e2aa7d06298e51fbfe86bbcb6b7a19dd33d3798f6a": (
        "/reverent_wing",
        "created",
        ["/bin/sh echo test"],
        [],
    ),
    "61ba4e6c012c782186c649466157e05adfd7caa5b551432de51043893cae5353": (
        "/zealous_lalande",
        "created",
        ["echo test"],
        [],
    ),
    RUNNING: ("/festive_perlman", "running", ["sh"], ["A /tets"]),
    EXITED: ("/mystifying_murdock", "exited", ["sh"], []),
    "f83f963c67cbd36055f690fc988c1e42be06c1253e80113d1d516778c06b2841": (
        "/objective_franklin",
        "exited",
        ["sh"],
        [],
    ),
}


@pytest.fixture(scope="module")
def unpacked(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus Docker root, unpacked once (tests that alter it work on a copy)."""
    target = tmp_path_factory.mktemp("docker-root")
    subprocess.run(
        ["tar", "xzf", str(corpus / "docker-root-overlay2.tgz"), "-C", str(target)], check=True
    )
    return target / "docker"


def _copy(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    return target


@pytest.fixture
def docker_copy(unpacked: Path, tmp_path: Path) -> Path:
    return _copy(unpacked, tmp_path / "docker")


def _mount_id(root: Path, cid: str, driver: str = "overlay2") -> str:
    return (root / "image" / driver / "layerdb" / "mounts" / cid / "mount-id").read_text()


# -- detection and listing -----------------------------------------------------------------------


def test_detects_a_docker_root_and_nothing_else(unpacked: Path, tmp_path: Path) -> None:
    assert is_engine_root(unpacked)
    assert not is_engine_root(unpacked.parent)  # the folder holding it is not one
    assert not is_engine_root(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    assert not is_engine_root(tmp_path / "file")
    # dockscope's own runtime root: containers/<id>/config.json and state.json, no image/
    runtime = tmp_path / "runtime" / "containers" / "c1"
    runtime.mkdir(parents=True)
    (runtime / "config.json").write_text("{}")
    (runtime / "state.json").write_text("{}")
    assert not is_engine_root(tmp_path / "runtime")
    # a symlink standing for image/ is not followed
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "image").symlink_to(unpacked / "image")
    assert not is_engine_root(fake)


def test_ls_json_lists_the_image_and_five_containers(unpacked: Path) -> None:
    run = read_evidence(unpacked, "storage", "ls", "--json", unpacked)
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["kind"] == "storage-ls" and doc["schema_version"] == 1
    assert doc["engine"] == "docker" and doc["drivers"] == ["overlay2"]
    [image] = doc["images"]
    assert image["id"] == IMAGE_ID
    assert image["tags"] == ["busybox:latest"]
    assert image["created"] == "2018-04-05T10:41:28.876407948Z"
    assert image["layers"] == 1 and image["diff_ids"] == [DIFF_ID]
    containers = {c["id"]: c for c in doc["containers"]}
    assert set(containers) == set(CONTAINERS)
    for cid, (name, status, command, _) in CONTAINERS.items():
        entry = containers[cid]
        assert entry["name"] == name
        assert entry["status"] == status
        assert entry["running"] is (status == "running")
        assert entry["command"] == command
        assert entry["image_id"] == IMAGE_ID
        mount = _mount_id(unpacked, cid)
        assert entry["upper_dir"] == str(unpacked / "overlay2" / mount / "diff")
        assert entry["log_path"] == str(unpacked / "containers" / cid / f"{cid}-json.log")
        assert Path(entry["log_path"]).is_file()
        assert {"id", "name", "image", "created", "running", "upper_dir"} <= set(entry)
    assert containers[RUNNING]["pid"] == 71799
    assert containers[RUNNING]["started"] == "2018-05-16T10:51:39.62598903Z"
    assert containers[EXITED]["exit_code"] == 0
    assert containers[EXITED]["finished"] == "2018-05-16T10:50:57.346107125Z"
    by_name = {c["name"]: c for c in doc["containers"]}
    assert by_name["/objective_franklin"]["image"] == "gcr.io/google-containers/busybox:latest"
    assert doc["warnings"] == []


def test_ls_text_reads_like_docker_ps(unpacked: Path) -> None:
    run = read_evidence(unpacked, "storage", "ls", "--long", unpacked)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == f"{unpacked}: docker storage (overlay2)"
    assert any(line.startswith("8ac48589692a   busybox:latest") for line in lines)
    running = next(line for line in lines if line.startswith(RUNNING[:12]))
    assert "/festive_perlman" in running and "Running (pid 71799)" in running
    assert str(unpacked / "overlay2" / _mount_id(unpacked, RUNNING) / "diff") in running
    exited = next(line for line in lines if line.startswith(EXITED[:12]))
    assert "Exited (0) 2018-05-16 10:50:57" in exited


def test_a_folder_holding_the_root_is_refused_with_a_hint(unpacked: Path) -> None:
    run = read_evidence(unpacked.parent, "storage", "ls", unpacked.parent)
    assert run.code == 3
    assert f"engine storage lies in {unpacked}" in run.err


# -- diff ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cid", sorted(CONTAINERS))
def test_diff_of_each_container_as_docker_prints_it(unpacked: Path, cid: str) -> None:
    name, _, _, expected = CONTAINERS[cid]
    for ident in (cid, cid[:12], name, name.lstrip("/")):
        run = read_evidence(unpacked, "container", "diff", "--storage", unpacked, ident)
        assert diff_lines(run) == expected, ident
        assert run.err == ""


def test_engine_storage_given_with_root_still_reads_it_for_one_release(unpacked: Path) -> None:
    """In 0.1 --root named engine storage too: it still works, with a line naming --storage,
    and so does container export's old --layer flag."""
    _, _, _, expected = CONTAINERS[RUNNING]
    run = read_evidence(unpacked, "container", "diff", "--root", unpacked, RUNNING)
    assert diff_lines(run) == expected
    assert run.err == (
        "dockscope: container diff --root ENGINE_ROOT is now --storage ENGINE_ROOT; the old "
        "form goes in the next release\n"
    )
    old = read_evidence(
        unpacked, "container", "export", "--layer", "--root", unpacked, RUNNING, "-o", "-"
    )
    new = export_writable_layer(unpacked, RUNNING, "-")
    assert old.code == new.code == 0, old.err
    assert old.out_bytes == new.out_bytes
    assert "container export --layer is now --writable-layer" in old.err


def test_diff_json_adds_metadata_and_content_hash(unpacked: Path) -> None:
    run = read_evidence(
        unpacked, "container", "diff", "--json", "--storage", unpacked, "festive_perlman"
    )
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["kind"] == "container-diff"
    assert (doc["engine"], doc["driver"], doc["method"]) == ("docker", "overlay2", "overlay")
    assert doc["container"]["id"] == RUNNING
    tets = unpacked / "overlay2" / _mount_id(unpacked, RUNNING) / "diff" / "tets"
    st = tets.lstat()
    [change] = doc["changes"]
    assert change == {
        "kind": "A",
        "change": "added",
        "path": "/tets",
        "type": "file",
        "size": 5,
        "mode": "0644",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": format_ns(st.st_mtime_ns),
        "link": None,
        "sha256": "sha256:" + hashlib.sha256(tets.read_bytes()).hexdigest(),
        "evidence": str(tets),
        "engine": None,
        "hidden": False,
    }
    assert doc["summary"] == {"added": 1, "changed": 0, "deleted": 0, "engine": 0, "hidden": 0}


def test_diff_since_gives_a_timeline(unpacked: Path) -> None:
    tets = unpacked / "overlay2" / _mount_id(unpacked, RUNNING) / "diff" / "tets"
    mtime = format_ns(tets.lstat().st_mtime_ns, fixed=True)
    assert mtime == "2018-05-16T10:51:44.000000000Z"
    args = ("container", "diff", "--storage", unpacked, RUNNING[:6])
    run = read_evidence(unpacked, *args, "--since", "2018-05-16")
    assert diff_lines(run) == [f"{mtime} A /tets"]
    assert diff_lines(read_evidence(unpacked, *args, "--since", "2018-05-17T00:00:00Z")) == []
    assert diff_lines(read_evidence(unpacked, *args, "--since", "1526428800")) == [
        f"{mtime} A /tets"
    ]
    doc = read_evidence(unpacked, *args, "--json", "--since", "2030-01-01").json()
    assert doc["changes"] == [] and doc["since"] == "2030-01-01T00:00:00Z"
    bad = read_evidence(unpacked, *args, "--since", "yesterday")
    assert bad.code == 2 and "--since 'yesterday'" in bad.err


def test_ambiguous_prefix_lists_candidates(docker_copy: Path) -> None:
    twin = "8e8b7f" + "0" * 58
    source = docker_copy / "containers" / RUNNING
    target = docker_copy / "containers" / twin
    shutil.copytree(source, target)
    config = json.loads((target / "config.v2.json").read_text())
    config["ID"], config["Name"] = twin, "/twin"
    (target / "config.v2.json").write_text(json.dumps(config))
    shutil.copytree(
        docker_copy / "image/overlay2/layerdb/mounts" / RUNNING,
        docker_copy / "image/overlay2/layerdb/mounts" / twin,
    )
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, "8e8b7f")
    assert run.code == 2
    assert "'8e8b7f' is ambiguous" in run.err
    assert "8e8b7f23eb7c (/festive_perlman)" in run.err and "8e8b7f000000 (/twin)" in run.err
    assert diff_lines(
        read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, "twin")
    )
    missing = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, "nope")
    assert missing.code == 2 and "no container named" in missing.err


# -- export --------------------------------------------------------------------------------------


def _tar_members(data: bytes) -> dict[str, tuple[str, int, bytes | str | None]]:
    found: dict[str, tuple[str, int, bytes | str | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        first_names: dict[str, bytes | None] = {}
        for member in tar:
            name = member.name.rstrip("/")
            if member.isreg():
                extracted = tar.extractfile(member)
                content: bytes | str | None = extracted.read() if extracted else None
                first_names[name] = content  # type: ignore[assignment]
                found[name] = ("file", member.mode, content)
            elif member.islnk():
                found[name] = ("file", member.mode, first_names[member.linkname.rstrip("/")])
            elif member.issym():
                found[name] = ("symlink", member.mode, member.linkname)
            elif member.isdir():
                found[name] = ("dir", member.mode, None)
            else:
                found[name] = ("other", member.mode, None)
    return found


def _tree(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    found: dict[str, tuple[str, int, bytes | str | None]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", mode, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", mode, None)
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", mode, path.read_bytes())
            else:
                found[rel] = ("other", mode, None)
    return found


def test_export_equals_the_kernels_merged_view(unpacked: Path, tmp_path: Path) -> None:
    """The running container's overlay mount was captured in the copy (overlay2/<id>/merged):
    the union computed from the layer directories must show exactly what the kernel showed."""
    out = tmp_path / "festive.tar"
    run = read_evidence(unpacked, "container", "export", "--storage", unpacked, RUNNING, "-o", out)
    assert run.code == 0, run.err
    merged = unpacked / "overlay2" / _mount_id(unpacked, RUNNING) / "merged"
    exported = _tar_members(out.read_bytes())
    assert exported == _tree(merged)
    assert exported["tets"] == ("file", 0o644, b"test\n")
    assert "etc/hostname" in exported and "bin/busybox" in exported


def test_export_layer_and_json_summary(unpacked: Path, tmp_path: Path) -> None:
    out = tmp_path / "layer.tar"
    args = (
        "container",
        "export",
        "--storage",
        unpacked,
        RUNNING,
        "--writable-layer",
        "--json",
        "-o",
        out,
    )
    run = read_evidence(unpacked, *args)
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["kind"] == "container-export" and doc["layer"] is True
    assert doc["summary"]["files"] == 1 and doc["summary"]["bytes"] == 5
    members = _tar_members(out.read_bytes())
    tets = unpacked / "overlay2" / _mount_id(unpacked, RUNNING) / "diff" / "tets"
    assert members == {"tets": ("file", 0o644, tets.read_bytes())}


def test_export_to_stdout_and_refusals(unpacked: Path) -> None:
    run = read_evidence(unpacked, "container", "export", "--storage", unpacked, RUNNING, "-o", "-")
    assert run.code == 0, run.err
    assert "tets" in _tar_members(run.out_bytes)
    inside = unpacked / "stolen.tar"
    run = read_evidence(
        unpacked, "container", "export", "--storage", unpacked, RUNNING, "-o", inside
    )
    assert run.code == 2 and "inside the evidence" in run.err
    assert not inside.exists()
    run = read_evidence(
        unpacked, "container", "export", "--storage", unpacked, RUNNING, "--json", "-o", "-"
    )
    assert run.code == 2


# -- inspect and logs ----------------------------------------------------------------------------


def test_inspect_decodes_the_engines_files(unpacked: Path) -> None:
    run = read_evidence(unpacked, "container", "inspect", "--storage", unpacked, "festive_perlman")
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["kind"] == "container-inspect" and doc["engine"] == "docker"
    files = doc["files"]
    config = files[f"containers/{RUNNING}/config.v2.json"]
    assert config["State"]["Running"] is True and config["State"]["Pid"] == 71799
    assert files[f"containers/{RUNNING}/hostconfig.json"]["LogConfig"]["Type"] == "json-file"
    mount_id = files[f"image/overlay2/layerdb/mounts/{RUNNING}/mount-id"]
    assert mount_id == _mount_id(unpacked, RUNNING)
    assert doc["container"]["running"] is True


def test_logs_split_streams_and_filter(unpacked: Path) -> None:
    run = read_evidence(unpacked, "container", "logs", "--storage", unpacked, "objective_franklin")
    assert (run.code, run.out, run.err) == (0, "ohai\n", "")
    run = read_evidence(unpacked, "container", "logs", "--storage", unpacked, "reverent_wing")
    assert run.code == 0 and run.out == ""
    assert "stat /bin/sh echo test: no such file or directory" in run.err
    run = read_evidence(
        unpacked, "container", "logs", "-t", "--storage", unpacked, "objective_franklin"
    )
    assert run.out == "2018-05-16T10:51:11.853151438Z ohai\n"
    args = ("container", "logs", "--storage", unpacked, "objective_franklin")
    assert read_evidence(unpacked, *args, "--since", "2018-05-16T10:51:12Z").out == ""
    assert read_evidence(unpacked, *args, "--tail", "0").out == ""
    doc = read_evidence(unpacked, *args, "--json").json()
    assert doc["entries"] == [
        {"time": "2018-05-16T10:51:11.853151438Z", "stream": "stdout", "text": "ohai\n"}
    ]
    assert read_evidence(unpacked, "container", "logs", "--storage", unpacked, RUNNING).out == ""


# -- save ----------------------------------------------------------------------------------------


def test_save_writes_a_verified_oci_layout(unpacked: Path, tmp_path: Path) -> None:
    out = tmp_path / "busybox-oci"
    run = read_evidence(unpacked, "storage", "save", "--json", unpacked, "busybox", "-o", out)
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["ok"] is True and doc["image"]["id"] == IMAGE_ID
    [layer] = doc["layers"]
    assert layer["computed"] == layer["diff_id"] == layer["recorded"] == DIFF_ID
    assert layer["source"] == "tar-split"
    blob = out / "blobs" / "sha256" / DIFF_ID.removeprefix("sha256:")
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == DIFF_ID
    assert (out / "blobs/sha256" / IMAGE_ID.removeprefix("sha256:")).is_file()
    index = json.loads((out / "index.json").read_text())
    [descriptor] = index["manifests"]
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    verify = read_evidence(unpacked, "verify", "--json", out)
    assert verify.code == 0, verify.out
    assert verify.json()["ok"] is True
    inspect = read_evidence(unpacked, "inspect", "--json", out).json()
    assert inspect["image_id"] == IMAGE_ID
    assert [lyr["diff_id"] for lyr in inspect["layers"]] == [DIFF_ID]
    # the same image named by ID prefix and by digest reference, into an empty directory
    again = tmp_path / "again"
    again.mkdir()
    run = read_evidence(unpacked, "storage", "save", unpacked, IMAGE_ID[7:19], "-o", again)
    assert run.code == 0 and "ok" in run.out
    assert (
        again / "blobs/sha256" / DIFF_ID.removeprefix("sha256:")
    ).read_bytes() == blob.read_bytes()


def test_save_names_the_layer_and_files_that_changed(docker_copy: Path, tmp_path: Path) -> None:
    diff = docker_copy / "overlay2" / CACHE / "diff"
    passwd = diff / "etc" / "passwd"
    passwd.write_bytes(passwd.read_bytes().replace(b"root", b"evil"))
    (diff / "etc" / "group").unlink()
    out = tmp_path / "out"
    run = read_evidence(
        docker_copy, "storage", "save", "--json", docker_copy, "busybox:latest", "-o", out
    )
    assert run.code == 1
    assert f"layer 0 (cache-id {CACHE})" in run.err
    assert "cannot be rebuilt from tar-split" in run.err
    assert "/etc/group (not found), /etc/passwd (content differs)" in run.err
    doc = run.json()
    assert doc["ok"] is False and doc["layers"][0]["ok"] is False
    assert not out.exists()
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())


def test_save_catches_a_file_changed_in_place(docker_copy: Path, tmp_path: Path) -> None:
    passwd = docker_copy / "overlay2" / CACHE / "diff" / "etc" / "passwd"
    passwd.write_bytes(passwd.read_bytes().replace(b"root", b"evil"))  # same size
    run = read_evidence(
        docker_copy, "storage", "save", docker_copy, "busybox", "-o", tmp_path / "o"
    )
    assert run.code == 1
    assert "/etc/passwd (content differs)" in run.err
    assert "rebuilt from tar-split it hashes to sha256:" in run.err
    assert f"rootfs.diff_ids says {DIFF_ID}" in run.err


def test_save_refusals(unpacked: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    run = read_evidence(unpacked, "storage", "save", unpacked, "busybox", "-o", full)
    assert run.code == 2 and "not an empty directory" in run.err
    run = read_evidence(unpacked, "storage", "save", unpacked, "busybox", "-o", unpacked / "oci")
    assert run.code == 2 and "inside the evidence" in run.err
    run = read_evidence(unpacked, "storage", "save", unpacked, "alpine", "-o", tmp_path / "n")
    assert run.code == 2 and "no image named" in run.err


# -- hostile evidence ----------------------------------------------------------------------------


def test_symlinks_in_the_evidence_are_never_followed(docker_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    upper = docker_copy / "overlay2" / _mount_id(docker_copy, EXITED) / "diff"
    shutil.rmtree(upper)
    upper.symlink_to(outside)  # the writable layer itself points out of ROOT
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, EXITED)
    assert run.code == 3 and "symlink (not followed)" in run.err
    run = read_evidence(
        docker_copy, "container", "export", "--storage", docker_copy, EXITED, "-o", "-"
    )
    assert run.code == 3 and b"host secret" not in run.out_bytes
    # a config that is a symlink is skipped with a warning, never read
    config = docker_copy / "containers" / RUNNING / "config.v2.json"
    config.unlink()
    config.symlink_to(outside / "secret")
    run = read_evidence(docker_copy, "storage", "ls", "--json", docker_copy)
    assert run.code == 0
    assert any("no config.v2.json" in w for w in run.json()["warnings"])
    assert "host secret" not in run.out


def test_symlinks_inside_a_layer_are_data(docker_copy: Path, tmp_path: Path) -> None:
    upper = docker_copy / "overlay2" / _mount_id(docker_copy, EXITED) / "diff"
    (upper / "escape").symlink_to("/etc/shadow")
    (upper / "up").symlink_to("../../../../../../../../")
    run = read_evidence(
        docker_copy, "container", "diff", "--json", "--storage", docker_copy, EXITED
    )
    changes = {c["path"]: c for c in run.json()["changes"]}
    assert changes["/escape"]["type"] == "symlink" and changes["/escape"]["link"] == "/etc/shadow"
    assert changes["/escape"]["sha256"] is None
    out = tmp_path / "l.tar"
    run = export_writable_layer(docker_copy, EXITED, out)
    members = _tar_members(out.read_bytes())
    assert members["escape"] == ("symlink", 0o777, "/etc/shadow")
    assert members["up"][0] == "symlink"


def test_a_bad_cache_id_is_refused(docker_copy: Path) -> None:
    record = docker_copy / "image/overlay2/layerdb/sha256" / DIFF_ID[7:] / "cache-id"
    record.write_text("../../../../etc")
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, EXITED)
    assert run.code == 3 and "not a plain name" in run.err


# -- Docker's rules on whiteouts and opaque directories ------------------------------------------


def _same_meta(target: Path, like: Path) -> None:
    st = like.lstat()
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_overlay2_whiteouts_and_opaque_directories(docker_copy: Path, tmp_path: Path) -> None:
    """What moby's OverlayChanges reports: a whiteout is D; an opaque directory is D (its new
    content A); a directory with the lower one's size, mode and mtime is no change by itself,
    but the parent of an A or D is C."""
    image = docker_copy / "overlay2" / CACHE / "diff"
    upper = docker_copy / "overlay2" / _mount_id(docker_copy, EXITED) / "diff"
    (upper / "etc").mkdir()
    os.mknod(upper / "etc" / "passwd", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "home" / "user").mkdir(parents=True)
    (upper / "home" / "user" / "notes").write_text("notes\n")
    _same_meta(upper / "home", image / "home")
    (upper / "var" / "spool").mkdir(parents=True)
    (upper / "var" / "spool" / "fresh").write_text("fresh\n")
    os.setxattr(upper / "var" / "spool", "trusted.overlay.opaque", b"y")
    _same_meta(upper / "var", image / "var")
    (upper / "usr" / "sbin").mkdir(parents=True)
    os.setxattr(upper / "usr" / "sbin", "user.overlay.opaque", b"y")  # rootless form
    (upper / "fresh").mkdir()  # opaque, though no lower layer has it: moby still says D
    (upper / "fresh" / "f").write_text("f\n")
    os.setxattr(upper / "fresh", "trusted.overlay.opaque", b"y")
    _same_meta(upper / "usr", image / "usr")
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, EXITED)
    assert diff_lines(run) == [
        "C /etc",
        "D /etc/passwd",
        "D /fresh",
        "A /fresh/f",
        "C /home",
        "A /home/user",
        "A /home/user/notes",
        "C /usr",
        "D /usr/sbin",
        "C /var",
        "D /var/spool",
        "A /var/spool/fresh",
    ]
    out = tmp_path / "merged.tar"
    read_evidence(docker_copy, "container", "export", "--storage", docker_copy, EXITED, "-o", out)
    merged = _tar_members(out.read_bytes())
    assert "etc/passwd" not in merged and "etc/group" in merged
    assert "var/spool/mail" not in merged and "var/spool/fresh" in merged
    assert not [n for n in merged if n.startswith("usr/sbin/")]
    assert merged["home/user/notes"] == ("file", 0o644, b"notes\n")
    layer = tmp_path / "layer.tar"
    export_writable_layer(docker_copy, EXITED, layer)
    with tarfile.open(layer) as tar:
        names = tar.getnames()
    assert names == [
        "etc",
        "etc/.wh.passwd",
        "fresh",
        "fresh/.wh..wh..opq",
        "fresh/f",
        "home",
        "home/user",
        "home/user/notes",
        "usr",
        "usr/sbin",
        "usr/sbin/.wh..wh..opq",
        "var",
        "var/spool",
        "var/spool/.wh..wh..opq",
        "var/spool/fresh",
    ]


# -- Docker's other storage drivers --------------------------------------------------------------


def _driver_layout(root: Path, driver: str) -> None:
    """Rewrite a copy of the corpus root into ``driver``'s layout, as Docker lays it out."""
    overlay2 = root / "overlay2"
    mounts = [_mount_id(root, cid) for cid in CONTAINERS]
    shutil.rmtree(root / "image" / driver, ignore_errors=True)
    (root / "image" / "overlay2").rename(root / "image" / driver)
    for cid in CONTAINERS:
        config_path = root / "containers" / cid / "config.v2.json"
        config = json.loads(config_path.read_text())
        config["Driver"] = driver
        config_path.write_text(json.dumps(config))
    base = root / driver
    if driver == "aufs":
        (base / "diff").mkdir(parents=True)
        (base / "layers").mkdir()
        _copy(overlay2 / CACHE / "diff", base / "diff" / CACHE)
        (base / "layers" / CACHE).write_text("")
        for mount in mounts:
            for layer in (f"{mount}-init", mount):
                _copy(overlay2 / layer / "diff", base / "diff" / layer)
                (base / "diff" / layer / ".wh..wh.plnk").mkdir()
                (base / "diff" / layer / ".wh..wh.aufs").write_text("")
            (base / "layers" / f"{mount}-init").write_text(f"{CACHE}\n")
            (base / "layers" / mount).write_text(f"{mount}-init\n{CACHE}\n")
    elif driver == "vfs":
        (base / "dir").mkdir(parents=True)
        _copy(overlay2 / CACHE / "diff", base / "dir" / CACHE)
        for mount in mounts:
            init, rw = base / "dir" / f"{mount}-init", base / "dir" / mount
            _copy(base / "dir" / CACHE, init)
            subprocess.run(["cp", "-a", f"{overlay2}/{mount}-init/diff/.", str(init)], check=True)
            _copy(init, rw)
            subprocess.run(["cp", "-a", f"{overlay2}/{mount}/diff/.", str(rw)], check=True)
    else:  # overlay (v1)
        (base / CACHE).mkdir(parents=True)
        _copy(overlay2 / CACHE / "diff", base / CACHE / "root")
        for mount in mounts:
            for layer in (f"{mount}-init", mount):
                (base / layer).mkdir()
                (base / layer / "work").mkdir()
                (base / layer / "lower-id").write_text(CACHE)
            _copy(overlay2 / f"{mount}-init" / "diff", base / f"{mount}-init" / "upper")
            _copy(overlay2 / f"{mount}-init" / "diff", base / mount / "upper")
            subprocess.run(
                ["cp", "-a", f"{overlay2}/{mount}/diff/.", str(base / mount / "upper")], check=True
            )
    shutil.rmtree(overlay2)


@pytest.fixture(params=["aufs", "vfs", "overlay"])
def other_driver(
    request: pytest.FixtureRequest, unpacked: Path, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    root = _copy(unpacked, tmp_path / "docker")
    _driver_layout(root, request.param)
    yield request.param, root


def test_other_drivers_list_diff_and_export(
    other_driver: tuple[str, Path], unpacked: Path, tmp_path: Path
) -> None:
    driver, root = other_driver
    doc = read_evidence(root, "storage", "ls", "--json", root).json()
    assert doc["drivers"] == [driver]
    assert {c["id"] for c in doc["containers"]} == set(CONTAINERS)
    assert [i["id"] for i in doc["images"]] == [IMAGE_ID]
    for cid, (_, _, _, expected) in CONTAINERS.items():
        run = read_evidence(root, "container", "diff", "--storage", root, cid)
        assert diff_lines(run) == expected, (driver, cid)
    out = tmp_path / "merged.tar"
    run = read_evidence(root, "container", "export", "--storage", root, RUNNING, "-o", out)
    assert run.code == 0, run.err
    kernel = unpacked / "overlay2" / _mount_id(unpacked, RUNNING) / "merged"
    assert _tar_members(out.read_bytes()) == _tree(kernel)
    layer = tmp_path / "layer.tar"
    export_writable_layer(root, RUNNING, layer)
    with tarfile.open(layer) as tar:
        assert tar.getnames() == ["tets"]
    saved = read_evidence(root, "storage", "save", root, "busybox", "-o", tmp_path / "oci")
    assert saved.code == 0, saved.err


def test_aufs_whiteouts_and_opaque_markers(unpacked: Path, tmp_path: Path) -> None:
    root = _copy(unpacked, tmp_path / "docker")
    _driver_layout(root, "aufs")
    upper = root / "aufs" / "diff" / _mount_id(root, EXITED, "aufs")
    (upper / "etc").mkdir()
    (upper / "etc" / ".wh.passwd").write_text("")
    (upper / "var" / "spool").mkdir(parents=True)
    (upper / "var" / "spool" / ".wh..wh..opq").write_text("")
    (upper / "var" / "spool" / "fresh").write_text("fresh\n")
    image = root / "aufs" / "diff" / CACHE
    _same_meta(upper / "var", image / "var")
    run = read_evidence(root, "container", "diff", "--storage", root, EXITED)
    # moby's changes() compares a directory's size too: equal on disk filesystems that give
    # every directory one block, not on tmpfs (where it counts the entries)
    var = ["C /var"] if (upper / "var").stat().st_size != (image / "var").stat().st_size else []
    assert diff_lines(run) == [
        "C /etc",
        "D /etc/passwd",
        *var,
        "C /var/spool",
        "A /var/spool/fresh",
    ]
    out = tmp_path / "merged.tar"
    read_evidence(root, "container", "export", "--storage", root, EXITED, "-o", out)
    merged = _tar_members(out.read_bytes())
    assert "etc/passwd" not in merged and "var/spool/mail" not in merged
    assert not [n for n in merged if ".wh." in n]
    layer = tmp_path / "layer.tar"
    export_writable_layer(root, EXITED, layer)
    with tarfile.open(layer) as tar:
        names = tar.getnames()
    assert "etc/.wh.passwd" in names and "var/spool/.wh..wh..opq" in names
    assert not [n for n in names if n.startswith(".wh..wh.")]


def test_vfs_and_overlay_v1_compare_full_trees(unpacked: Path, tmp_path: Path) -> None:
    """vfs and overlay v1 diff with ChangesDirs: two trees compared entry by entry."""
    for driver in ("vfs", "overlay"):
        root = _copy(unpacked, tmp_path / driver)
        _driver_layout(root, driver)
        mount = _mount_id(root, EXITED, driver)
        rw = root / "vfs" / "dir" / mount if driver == "vfs" else root / "overlay" / mount / "upper"
        if driver == "vfs":
            (rw / "etc" / "passwd").unlink()
            with open(rw / "etc" / "group", "a") as group:
                group.write("intruder:x:1000:\n")
        else:
            (rw / "etc").mkdir(exist_ok=True)
            os.mknod(rw / "etc" / "passwd", stat.S_IFCHR, os.makedev(0, 0))
            shutil.copy2(root / "overlay" / CACHE / "root" / "etc" / "group", rw / "etc" / "group")
            with open(rw / "etc" / "group", "a") as group:
                group.write("intruder:x:1000:\n")
        (rw / "new").write_text("new\n")
        run = read_evidence(root, "container", "diff", "--storage", root, EXITED)
        assert diff_lines(run) == ["C /etc", "C /etc/group", "D /etc/passwd", "A /new"], driver
        doc = read_evidence(root, "container", "diff", "--json", "--storage", root, EXITED).json()
        assert doc["method"] == "naive"


def test_the_whole_tree_fingerprint_sees_a_change(unpacked: Path, tmp_path: Path) -> None:
    """The guard itself: a chmod back to the same mode, or an xattr, is a change."""
    root = _copy(unpacked, tmp_path / "docker")
    before = snapshot(root)
    target = root / "containers" / RUNNING / "hostname"
    os.chmod(target, stat.S_IMODE(target.lstat().st_mode))
    assert snapshot(root) != before
    before = snapshot(root)
    os.setxattr(target, "user.mark", b"1")
    assert snapshot(root) != before


def test_damaged_records_are_warnings_in_ls_and_errors_where_needed(docker_copy: Path) -> None:
    mounts = docker_copy / "image/overlay2/layerdb/mounts" / EXITED
    (mounts / "mount-id").write_text("../../../../tmp")
    config = docker_copy / "image/overlay2/imagedb/content/sha256" / IMAGE_ID[7:]
    config.write_text('{"rootfs": ')
    run = read_evidence(docker_copy, "storage", "ls", "--json", docker_copy)
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["images"] == []
    assert any("invalid JSON" in w and "image skipped" in w for w in doc["warnings"])
    assert any("mount-id is not a plain name" in w for w in doc["warnings"])
    exited = next(c for c in doc["containers"] if c["id"] == EXITED)
    assert exited["upper_dir"] is None
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, EXITED)
    assert run.code == 3 and "mount-id is not a plain name" in run.err
    assert diff_lines(
        read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, RUNNING)
    )


def test_overlay2_lower_links_when_the_layerdb_has_no_parent(docker_copy: Path) -> None:
    """Without layerdb's parent, overlay2's own ``lower`` file names the layers through the
    ``l/`` short links; a link that leads anywhere but ``../<id>/diff`` is refused."""
    (docker_copy / "image/overlay2/layerdb/mounts" / RUNNING / "parent").unlink()
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, RUNNING)
    assert diff_lines(run) == ["A /tets"]
    out = docker_copy.parent / "merged.tar"
    run = read_evidence(
        docker_copy, "container", "export", "--storage", docker_copy, RUNNING, "-o", out
    )
    assert run.code == 0 and "bin/busybox" in _tar_members(out.read_bytes())
    mount = _mount_id(docker_copy, RUNNING)
    short = (docker_copy / "overlay2" / mount / "lower").read_text().split(":")[-1]
    link = docker_copy / "overlay2" / short
    link.unlink()
    link.symlink_to("/etc")
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, RUNNING)
    assert run.code == 3 and "not ../<id>/diff" in run.err


def test_a_fifo_where_a_file_should_be_is_never_opened(docker_copy: Path, tmp_path: Path) -> None:
    """Opening a FIFO would block (and a device node could act): only regular files are."""
    passwd = docker_copy / "overlay2" / CACHE / "diff" / "etc" / "passwd"
    passwd.unlink()
    os.mkfifo(passwd)
    run = read_evidence(
        docker_copy, "storage", "save", docker_copy, "busybox", "-o", tmp_path / "o"
    )
    assert run.code == 1
    assert "/etc/passwd (not a regular file)" in run.err


def test_a_symlink_in_containers_is_skipped_and_refused_only_when_named(
    docker_copy: Path,
) -> None:
    """A symlink where a container's directory should be (named like a container ID) is
    never followed: listing warns and goes on, the other containers' commands work, and
    naming it is the one error."""
    evil = "b" * 64
    (docker_copy / "containers" / evil).symlink_to(RUNNING)
    run = read_evidence(docker_copy, "storage", "ls", "--json", docker_copy)
    assert run.code == 0, run.err
    doc = run.json()
    assert sorted(c["id"] for c in doc["containers"]) == sorted(CONTAINERS)
    assert any(evil in w and "symlink (not followed)" in w for w in doc["warnings"])
    run = read_evidence(docker_copy, "container", "diff", "--storage", docker_copy, RUNNING)
    assert diff_lines(run) == ["A /tets"]
    for command in ("diff", "inspect"):
        run = read_evidence(docker_copy, "container", command, "--storage", docker_copy, evil[:8])
        assert run.code == 3
        assert "symlink (not followed)" in run.err and len(run.err.splitlines()) == 1


def test_numbers_json_cannot_hold_in_engine_files(docker_copy: Path) -> None:
    """An integer of 5,000 digits in config.v2.json (Python cannot convert it) or in a
    layer's size file: the container is skipped with the reason, never an internal error."""
    config = docker_copy / "containers" / EXITED / "config.v2.json"
    config.write_bytes(config.read_bytes().rstrip()[:-1] + b', "X": ' + b"9" * 5000 + b"}")
    run = read_evidence(docker_copy, "storage", "ls", "--json", docker_copy)
    assert run.code == 0, run.err
    doc = run.json()
    assert EXITED not in [c["id"] for c in doc["containers"]]
    assert any("5000 digits" in w and "4300-digit bound" in w for w in doc["warnings"])
    run = read_evidence(docker_copy, "container", "inspect", "--storage", docker_copy, EXITED)
    assert run.code == 3 and "4300-digit bound" in run.err
    size = docker_copy / "image/overlay2/layerdb/sha256" / DIFF_ID[7:] / "size"
    for digits in (40, 4000, 5000):  # beyond any int64; within, then beyond read_text's limit
        size.write_text("9" * digits)
        run = read_evidence(docker_copy, "storage", "ls", "--json", docker_copy)
        assert run.code == 0, run.err
        assert [i["size"] for i in run.json()["images"]] == [None]


def test_a_tar_split_name_past_the_path_bound_is_one_line(
    docker_copy: Path, tmp_path: Path
) -> None:
    """The same 4,095-byte bound as for image layers: the engine could never have unpacked
    such an entry; save names the layer that cannot be rebuilt, as for any mismatch."""
    import gzip

    split = docker_copy / "image/overlay2/layerdb/sha256" / DIFF_ID[7:] / "tar-split.json.gz"
    lines = gzip.decompress(split.read_bytes()).splitlines()
    first = next(
        i
        for i, line in enumerate(lines)
        if json.loads(line)["type"] == 1 and json.loads(line).get("size")
    )
    item = json.loads(lines[first])
    item["name"] = "a/" * 2100 + "x"
    item.pop("name_raw", None)
    lines[first] = json.dumps(item).encode()
    split.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    run = read_evidence(
        docker_copy, "storage", "save", docker_copy, "busybox", "-o", tmp_path / "o"
    )
    assert run.code == 1, run.err
    (line,) = run.err.splitlines()
    assert f"{CACHE}): cannot be rebuilt from tar-split" in line
    assert "bound of 4095 bytes" in line
