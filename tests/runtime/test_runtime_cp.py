"""``dockscope cp`` both ways, with real containers (as root): docker's rules for SRC and DEST,
``-`` tar streams, running and stopped containers, and paths that try to leave the container
through its own symlinks or an archive's ``..``."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import DOCKSCOPE, dockscope, env_for, ok
from tests.support.runtime import mounts_naming, needs_root

pytestmark = needs_root

SETUP = (
    "mkdir -p /data/sub && echo hi > /data/a.txt && echo deep > /data/sub/b && "
    "ln -s /etc /data/etclink && ln -s ../../../../.. /data/up && "
    "touch /tmp/ready && sleep 600"
)


@pytest.fixture(scope="module")
def box(root: Path, busybox_image: Path) -> Iterator[str]:
    name = "cp-box"
    ok(dockscope(root, "run", "-d", "--name", name, busybox_image, "sh", "-c", SETUP))
    for _ in range(100):
        if dockscope(root, "exec", name, "test", "-e", "/tmp/ready").code == 0:
            break
    yield name
    dockscope(root, "rm", "-f", name)


def cat(root: Path, name: str, path: str) -> str:
    return ok(dockscope(root, "exec", name, "cat", path))


def run_bytes(
    root: Path, *args: str, data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*DOCKSCOPE, *args], input=data, capture_output=True, env=env_for(root), check=False,
        timeout=120,
    )  # fmt: skip


def test_file_out_to_a_directory_and_to_a_new_name(root: Path, box: str, tmp_path: Path) -> None:
    ok(dockscope(root, "cp", f"{box}:/data/a.txt", str(tmp_path)))
    assert (tmp_path / "a.txt").read_text() == "hi\n"
    ok(dockscope(root, "cp", f"{box}:/data/a.txt", str(tmp_path / "renamed")))
    assert (tmp_path / "renamed").read_text() == "hi\n"


def test_directory_out_new_existing_and_contents(root: Path, box: str, tmp_path: Path) -> None:
    ok(dockscope(root, "cp", f"{box}:/data", str(tmp_path / "copy")))
    assert (tmp_path / "copy/sub/b").read_text() == "deep\n"
    assert os.readlink(tmp_path / "copy/etclink") == "/etc"  # links copied as links
    (tmp_path / "into").mkdir()
    ok(dockscope(root, "cp", f"{box}:/data", str(tmp_path / "into")))
    assert (tmp_path / "into/data/a.txt").is_file()
    (tmp_path / "contents").mkdir()
    ok(dockscope(root, "cp", f"{box}:/data/.", str(tmp_path / "contents")))
    assert sorted(os.listdir(tmp_path / "contents")) == ["a.txt", "etclink", "sub", "up"]


def test_docker_errors(root: Path, box: str, tmp_path: Path) -> None:
    missing = dockscope(root, "cp", f"{box}:/nope", str(tmp_path))
    assert missing.code == 3 and f"could not find the file {box}:/nope" in missing.err
    (tmp_path / "file").write_text("x")
    onto_file = dockscope(root, "cp", f"{box}:/data", str(tmp_path / "file"))
    assert onto_file.code == 3 and "cannot copy a directory to a file" in onto_file.err
    no_dir = dockscope(root, "cp", str(tmp_path / "file"), f"{box}:/nodir/")
    assert no_dir.code == 3 and "the destination directory must exist" in no_dir.err
    both_host = dockscope(root, "cp", str(tmp_path / "file"), str(tmp_path / "other"))
    assert both_host.code == 2


def test_tar_to_stdout_and_from_stdin(root: Path, box: str) -> None:
    out = run_bytes(root, "cp", f"{box}:/data", "-")
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        names = sorted(tar.getnames())
        assert names == ["data", "data/a.txt", "data/etclink", "data/sub", "data/sub/b", "data/up"]
        member = tar.getmember("data/a.txt")
        assert (member.uid, member.gid, member.mode) == (0, 0, 0o644)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("from-stdin/note")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"ok\n"))
    result = run_bytes(root, "cp", "-", f"{box}:/tmp", data=buffer.getvalue())
    assert result.returncode == 0, result.stderr
    assert cat(root, box, "/tmp/from-stdin/note") == "ok\n"


def test_file_in_and_owners(root: Path, box: str, tmp_path: Path) -> None:
    source = tmp_path / "owned"
    source.write_text("mine\n")
    os.chown(source, 1234, 4321)
    ok(dockscope(root, "cp", str(source), f"{box}:/data/"))
    assert cat(root, box, "/data/owned") == "mine\n"
    assert ok(dockscope(root, "exec", box, "stat", "-c", "%u:%g", "/data/owned")) == "0:0\n"
    ok(dockscope(root, "cp", "-a", str(source), f"{box}:/data/kept"))
    assert ok(dockscope(root, "exec", box, "stat", "-c", "%u:%g", "/data/kept")) == "1234:4321\n"


def test_symlinks_never_lead_out(root: Path, box: str, tmp_path: Path) -> None:
    # reading through the container's /data/etclink -> /etc gives the container's /etc
    ok(dockscope(root, "cp", f"{box}:/data/etclink/passwd", str(tmp_path / "passwd")))
    assert (tmp_path / "passwd").read_text() == cat(root, box, "/etc/passwd")
    ok(dockscope(root, "cp", f"{box}:/data/up/etc/group", str(tmp_path / "group")))
    assert (tmp_path / "group").read_text() == cat(root, box, "/etc/group")
    # writing through /data/up -> ../../../../.. stops at the container's root
    marker = f"cp-escape-{os.getpid()}"
    (tmp_path / "x").write_text("inside\n")
    ok(dockscope(root, "cp", str(tmp_path / "x"), f"{box}:/data/up/{marker}"))
    assert not Path("/", marker).exists()
    assert cat(root, box, f"/{marker}") == "inside\n"
    # -L follows the source link itself (a copy of the container's /etc)
    ok(dockscope(root, "cp", f"{box}:/data/etclink", str(tmp_path / "link")))
    assert os.readlink(tmp_path / "link") == "/etc"
    ok(dockscope(root, "cp", "-L", f"{box}:/data/etclink", str(tmp_path / "followed")))
    assert sorted(os.listdir(tmp_path / "followed")) == sorted(
        ok(dockscope(root, "exec", box, "ls", "/etc")).split()
    )


def test_archive_entries_cannot_leave_the_destination(root: Path, box: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    result = run_bytes(root, "cp", "-", f"{box}:/data/sub", data=buffer.getvalue())
    assert result.returncode == 3
    assert b"is outside of" in result.stderr
    assert dockscope(root, "exec", box, "test", "-e", "/evil").code == 1
    assert dockscope(root, "exec", box, "test", "-e", "/data/evil").code == 1


def test_stopped_container_through_its_layers(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    name = "cp-stopped"
    ok(
        dockscope(
            root,
            "run",
            "--name",
            name,
            busybox_image,
            "sh",
            "-c",
            "mkdir /out && echo made > /out/f",
        )
    )
    try:
        before = mounts_naming(root)
        ok(dockscope(root, "cp", f"{name}:/out/f", str(tmp_path / "f")))
        assert (tmp_path / "f").read_text() == "made\n"
        ok(dockscope(root, "cp", f"{name}:/bin/busybox", str(tmp_path / "bb")))  # image layer
        assert (tmp_path / "bb").stat().st_size > 100_000
        (tmp_path / "new").write_text("later\n")
        ok(dockscope(root, "cp", str(tmp_path / "new"), f"{name}:/out/"))
        assert mounts_naming(root) == before  # the overlay was mounted in the child only
        assert "A /out/new" in ok(dockscope(root, "container", "diff", name)).splitlines()
        upper = Path(dockscope(root, "container", "inspect", name).json()["paths"]["upperdir"])
        assert (upper / "out/new").read_text() == "later\n"  # in the writable layer
    finally:
        dockscope(root, "rm", "-f", name)
