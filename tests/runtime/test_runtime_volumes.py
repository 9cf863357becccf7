"""``--env-file``, ``--label``, ``-v`` (bind mounts, named and anonymous volumes), ``--read-only``
and what ``container diff`` says about volumes. The container tests need root; the mount
point resolution and the option parsing are checked in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from runtime_lab.process.mounts import resolve_in_root
from runtime_lab.spec import parse_volume, read_env_file
from tests.support.cli import dockscope, invoke, ok
from tests.support.runtime import events, needs_root, ps, step

# -- in process ---------------------------------------------------------------------------------


def test_mount_points_resolve_inside_the_root(tmp_path: Path) -> None:
    """An image's symlinks cannot lead a mount out of the container: they resolve as if the
    container's root were /."""
    root = tmp_path / "merged"
    (root / "etc").mkdir(parents=True)
    (root / "up").symlink_to("../../../../..")
    (root / "abs").symlink_to("/etc")
    (root / "loop").symlink_to("loop")
    (root / "file").write_text("x")
    created: list[str] = []

    def resolve(path: str, directory: bool = True) -> str:
        return resolve_in_root(str(root), path, directory=directory, created=created)

    assert resolve("/abs/data") == str(root / "etc" / "data")
    assert resolve("/up/tmp/x") == str(root / "tmp" / "x")
    assert resolve("/../../new/deeper") == str(root / "new" / "deeper")
    assert resolve("/one/file", directory=False) == str(root / "one" / "file")
    assert (root / "one" / "file").is_file()
    assert created == ["/etc/data", "/tmp", "/new", "/one"]  # topmost made, for diff
    with pytest.raises(OSError, match="too many levels"):
        resolve("/loop/x")
    with pytest.raises(OSError, match="not a directory"):
        resolve("/file/x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # nothing outside


def test_volume_options_are_parsed_as_docker_does(tmp_path: Path) -> None:
    assert parse_volume("data:/data", str(tmp_path)).kind == "volume"
    anonymous = parse_volume("/cache", str(tmp_path))
    assert (anonymous.kind, anonymous.source, anonymous.destination) == ("volume", "", "/cache")
    (tmp_path / "src").mkdir()
    bind = parse_volume("./src:/src/:ro", str(tmp_path))
    assert (bind.kind, bind.source, bind.destination, bind.read_only) == (
        "bind",
        str(tmp_path / "src"),
        "/src",
        True,
    )
    assert parse_volume("data:/d:nocopy", str(tmp_path)).copy is False
    for bad, message in [
        ("data:relative", "must be absolute"),
        ("data:/", "cannot be /"),
        ("/nowhere/at/all:/x", "does not exist"),
        ("bad name!:/x", "not a volume name"),
        ("data:/x:rw,ro", "options are"),
        ("a:b:c:d", "expected"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_volume(bad, str(tmp_path))


def test_env_file_is_read_as_docker_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSED", "from-caller")
    monkeypatch.delenv("UNSET", raising=False)
    text = '\ufeff# comment\n\nA=1\n  B="quoted" value \nPASSED\nUNSET\nC=a=b\n'
    assert read_env_file("f", text) == ["A=1", 'B="quoted" value ', "PASSED=from-caller", "C=a=b"]
    with pytest.raises(UsageError, match="white space"):
        read_env_file("f", "BAD NAME=1\n")


def test_explain_plans_the_steps_of_these_options(busybox_image: Path) -> None:
    """No root, no terminal: --explain shows where -it, -v, --read-only and a joined network
    add steps, and setns before unshare."""
    result = invoke(
        *("run", "--explain", "-it", "-v", "/cache", "-v", "data:/data", "--read-only"),
        *("--net", "container:pod", str(busybox_image), "sh"),
    )
    assert result.code == 0, result.output
    titles = [
        line.split(". ", 1)[1].split("  ")[0]
        for line in result.out.splitlines()
        if line[:3].strip().rstrip(".").isdigit()
    ]
    assert titles.count("Mount a volume") == 2
    assert titles.index("Join a namespace") == titles.index("Unshare the namespaces") - 1
    assert titles.index("Allocate the terminal") < titles.index("Switch to the container's root")
    # after pivot_root and the read-only and masked paths (runc's order)
    assert titles.index("Make the root filesystem read-only") == (
        titles.index("Switch to the container's root") + 3
    )
    assert "Bring up the loopback interface" not in titles


# -- containers ---------------------------------------------------------------------------------


class TestContainers:
    pytestmark = needs_root

    def test_env_file_then_env_and_labels(
        self, root: Path, busybox_image: Path, tmp_path: Path
    ) -> None:
        env_file = tmp_path / "env"
        env_file.write_text("FROM_FILE=1\nBOTH=file\n")
        result = dockscope(
            root,
            *("run", "--name", "labelled", "--env-file", env_file, "-e", "BOTH=flag"),
            *("--label", "course=containers", "-l", "lab=3", busybox_image),
            *("sh", "-c", "echo $FROM_FILE $BOTH"),
        )
        assert ok(result) == "1 flag\n"
        inspected = json.loads(ok(dockscope(root, "container", "inspect", "labelled")))
        assert inspected["config"]["labels"] == {"course": "containers", "lab": "3"}
        ok(dockscope(root, "rm", "labelled"))

    def test_bind_mounts(self, root: Path, busybox_image: Path, tmp_path: Path) -> None:
        shared = tmp_path / "shared"
        shared.mkdir()
        (shared / "in").write_text("from the host\n")
        script = "cat /mnt/in; echo out > /mnt/out; echo ro > /ro/x; echo $?"
        result = dockscope(
            root,
            *("run", "--rm", "-v", f"{shared}:/mnt", "-v", f"{shared}:/ro:ro"),
            *(busybox_image, "sh", "-c", script),
        )
        assert result.code == 0, result.err
        assert result.out == "from the host\n1\n"
        assert "Read-only file system" in result.err
        assert (shared / "out").read_text() == "out\n"
        assert not (shared / "x").exists()

    def test_named_volume_outlives_containers_and_is_shared(
        self, root: Path, busybox_image: Path
    ) -> None:
        trace = root.parent / "volume.jsonl"
        # a new volume gets the image's files at its place (docker's copy), then the writes
        first = dockscope(
            root,
            *("run", "--name", "writer", "-v", "notes:/etc", "--trace-json", trace),
            *(busybox_image, "sh", "-c", "echo kept > /etc/note; ls /etc"),
        )
        # hosts and resolv.conf: the init layer's mount points (the default network,
        # bridge), part of the root the volume is filled from, as with docker
        assert set(ok(first).split()) == {"group", "passwd", "note", "hosts", "resolv.conf"}
        event = step(events(trace), "mount-volume")
        assert event["args"]["volume"] == "notes" and event["args"]["target"] == "/etc"
        assert event["evidence"]["copied_from_image"] == 4  # with hosts and resolv.conf
        # before pivot_root: the mount point as the host path below merged/
        (line,) = event["evidence"]["mountinfo"]
        assert line.split()[4].endswith("/merged/etc")

        diff = dockscope(root, "container", "diff", "writer")
        assert diff.out == ""  # /etc/note is in the volume, not in the writable layer
        assert "dockscope: note: /etc is volume notes" in diff.err
        assert "not in the writable layer" in diff.err
        document = json.loads(ok(dockscope(root, "container", "diff", "--json", "writer")))
        assert document["changes"] == []
        assert [v["name"] for v in document["volumes"]] == ["notes"]
        assert len(document["notes"]) == 1

        ok(dockscope(root, "rm", "writer"))
        again = dockscope(
            root, "run", "--rm", "-v", "notes:/data:ro", busybox_image, "cat", "/data/note"
        )
        assert ok(again) == "kept\n"  # survived rm, seen by another container
        listed = json.loads(ok(dockscope(root, "volume", "ls", "--json")))["volumes"]
        assert [(v["name"], v["containers"]) for v in listed] == [("notes", [])]
        assert ok(dockscope(root, "volume", "rm", "notes")) == "notes\n"
        assert not (root / "volumes" / "notes").exists()

    def test_volume_in_use_and_anonymous_volumes(self, root: Path, busybox_image: Path) -> None:
        ok(
            dockscope(
                root, "run", "--name", "user", "-v", "busy:/b", "-v", "/anon", busybox_image, "true"
            )
        )
        refused = dockscope(root, "volume", "rm", "busy")
        assert refused.code == 2 and "in use by container: user" in refused.err
        listed = json.loads(ok(dockscope(root, "volume", "ls", "--json")))["volumes"]
        anonymous = [v["name"] for v in listed if v["anonymous"]]
        assert len(anonymous) == 1 and len(anonymous[0]) == 64
        ok(dockscope(root, "rm", "-v", "user"))  # the anonymous volume goes, the named one stays
        listed = json.loads(ok(dockscope(root, "volume", "ls", "--json")))["volumes"]
        assert [v["name"] for v in listed] == ["busy"]
        ok(
            dockscope(root, "run", "--rm", "-v", "/anon2", busybox_image, "true")
        )  # --rm removes it too
        assert len(json.loads(ok(dockscope(root, "volume", "ls", "--json")))["volumes"]) == 1
        ok(dockscope(root, "volume", "rm", "busy"))

    def test_read_only_root(self, root: Path, busybox_image: Path) -> None:
        trace = root.parent / "ro.jsonl"
        script = (
            "touch /x 2>&1; echo shm > /dev/shm/ok && cat /dev/shm/ok;"
            " echo vol > /v/ok && cat /v/ok; pwd"
        )
        result = dockscope(
            root,
            *("run", "--name", "ro", "--read-only", "-v", "/v", "-w", "/made/here"),
            *("--trace-json", trace, busybox_image, "sh", "-c", script),
        )
        assert ok(result).splitlines() == [
            "touch: /x: Read-only file system",
            "shm",
            "vol",
            "/made/here",  # made before the root became read-only, as docker does
        ]
        event = step(events(trace), "readonly-rootfs")
        assert event["args"]["flags"] == ["MS_REMOUNT", "MS_BIND", "MS_RDONLY"]
        assert " ro," in event["evidence"]["mountinfo"][0]
        # the working directory is in the writable layer; the volume's mount point is not shown
        assert ok(dockscope(root, "container", "diff", "ro")) == "A /made\nA /made/here\n"
        assert ps(root)["ro"]["exit_code"] == 0
        ok(dockscope(root, "rm", "-v", "ro"))
