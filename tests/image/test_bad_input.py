"""Broken and hostile inputs: one line naming the file and the problem, exit 2 or 3."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspect_tool.cli import app
from tests.support.cli import invoke
from tests.support.images import docker_archive_members, layer_tar, oci_layout, write_tar

runner = CliRunner()


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dockscope: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_not_an_image(tmp_path: Path, command: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n" * 20)
    code, _, err = invoke(command, str(path))
    assert code == 3
    assert_one_line_error(err, str(path), "not an image archive")


def test_other_file_types_are_described_by_libmagic(tmp_path: Path) -> None:
    path = tmp_path / "report.tar"
    path.write_bytes(b"%PDF-1.4\n" + b"x" * 100)
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, "PDF document")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar"
    path.write_bytes(b"")
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, str(path), "empty")


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = invoke("inspect", str(tmp_path / "nope.tar"))
    assert code == 3
    assert_one_line_error(err, "nope.tar", "no such file")


@pytest.mark.parametrize("cut", [0.5, 0.9])
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_truncated_archive(tmp_path: Path, corpus: Path, cut: float, command: str) -> None:
    data = (corpus / "docker-save-legacy-dive.tar").read_bytes()
    path = tmp_path / "cut.tar"
    path.write_bytes(data[: int(len(data) * cut)])
    code, _, err = invoke(command, str(path))
    assert code == 3
    assert_one_line_error(err, str(path), "truncated")


def test_truncated_gzip_archive(tmp_path: Path, corpus: Path) -> None:
    data = gzip.compress((corpus / "docker-save-legacy-dive.tar").read_bytes())
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, str(path))


def test_invalid_json_manifest(tmp_path: Path) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    members["manifest.json"] = b'[{"Config": "x.json", '
    path = write_tar(tmp_path / "bad.tar", members)
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, "manifest.json", "invalid JSON", "line 1")


def test_manifest_path_outside_archive(tmp_path: Path) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    manifest = json.loads(members["manifest.json"])  # type: ignore[arg-type]
    manifest[0]["Layers"][0] = "../../etc/passwd"
    members["manifest.json"] = json.dumps(manifest).encode()
    path = write_tar(tmp_path / "escape.tar", members)
    for command in ("inspect", "verify"):
        code, out, err = invoke(command, str(path))
        assert code == 3
        assert_one_line_error(err, "manifest.json", "../../etc/passwd", "outside the archive")
        assert "root:" not in out


def test_config_path_absolute(tmp_path: Path) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    manifest = json.loads(members["manifest.json"])  # type: ignore[arg-type]
    manifest[0]["Config"] = "/etc/passwd"
    members["manifest.json"] = json.dumps(manifest).encode()
    path = write_tar(tmp_path / "abs.tar", members)
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, "/etc/passwd")


def test_invalid_digest_in_index_is_never_a_path(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [layer_tar({"a": b"1"})])
    index = json.loads((tmp_path / "img/index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (tmp_path / "img/index.json").write_text(json.dumps(index))
    code, _, err = invoke("inspect", str(tmp_path / "img"))
    assert code == 3
    assert_one_line_error(err, "index.json", "digest")


@pytest.mark.parametrize(
    "digest", ["sha256:ABC", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256", 42, None]
)
def test_malformed_digests_rejected(tmp_path: Path, digest: object) -> None:
    oci_layout(tmp_path / "img", [layer_tar({"a": b"1"})])
    index = json.loads((tmp_path / "img/index.json").read_text())
    index["manifests"][0]["digest"] = digest
    (tmp_path / "img/index.json").write_text(json.dumps(index))
    code, _, err = invoke("verify", str(tmp_path / "img"))
    assert code == 3
    assert_one_line_error(err, "index.json")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../etc/passwd", "../../outside.tar"])
def test_symlink_member_pointing_outside(tmp_path: Path, target: str) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    layer_name = next(k for k in members if k.endswith("layer.tar"))
    members[layer_name] = ("symlink", target)
    path = write_tar(tmp_path / "link.tar", members)
    for command in ("inspect", "verify"):
        code, out, err = invoke(command, str(path))
        assert code == 3, (command, out, err)
        assert_one_line_error(err, "symlink")


def test_symlinked_layout_file_outside_directory(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [layer_tar({"a": b"1"})])
    (tmp_path / "secret.json").write_text('{"schemaVersion": 2, "manifests": []}')
    (tmp_path / "img/index.json").unlink()
    (tmp_path / "img/index.json").symlink_to(tmp_path / "secret.json")
    code, _, err = invoke("inspect", str(tmp_path / "img"))
    assert code == 3
    assert_one_line_error(err, "symlink", "outside")


def test_layer_tar_as_symlink_member_inside_archive_is_fine(tmp_path: Path) -> None:
    """skopeo writes layer.tar as a symlink to an identical layer stored elsewhere."""
    layer = layer_tar({"a": b"1"})
    members = docker_archive_members([layer, layer])
    first, second = (k for k in members if k.endswith("layer.tar"))
    members[second] = ("symlink", f"../{first}")
    path = write_tar(tmp_path / "dup.tar", members)
    code, out, err = invoke("verify", "--json", str(path))
    assert code == 0, err
    assert json.loads(out)["ok"] is True


def test_huge_json(tmp_path: Path) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    members["manifest.json"] = b"[" + b" " * (17 * 1024 * 1024) + b"]"
    path = write_tar(tmp_path / "huge.tar", members)
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, "manifest.json", "limit")


def test_deeply_nested_json(tmp_path: Path) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    members["manifest.json"] = b"[" * 200_000 + b"]" * 200_000
    path = write_tar(tmp_path / "deep.tar", members)
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, "manifest.json", "nested")


def test_missing_config_blob(tmp_path: Path) -> None:
    digests = oci_layout(tmp_path / "img", [layer_tar({"a": b"1"})])
    (tmp_path / "img/blobs/sha256" / digests["config"].split(":")[1]).unlink()
    code, _, err = invoke("inspect", str(tmp_path / "img"))
    assert code == 3
    assert_one_line_error(err, "config", "missing")
    code, out, _ = invoke("verify", "--json", str(tmp_path / "img"))
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    assert [f["check"] for f in failed] == ["blob-exists"]


def test_missing_layer_blob(tmp_path: Path) -> None:
    oci_layout(tmp_path / "img", [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})])
    layer_digest = json.loads(
        next(
            p.read_text()
            for p in (tmp_path / "img/blobs/sha256").iterdir()
            if b'"layers"' in p.read_bytes()
        )
    )["layers"][1]["digest"]
    (tmp_path / "img/blobs/sha256" / layer_digest.split(":")[1]).unlink()
    code, out, err = invoke("inspect", str(tmp_path / "img"))
    assert code == 3
    assert "Layers" in out  # what could be read is shown
    assert_one_line_error(err, "layer 1", "missing")
    code, out, _ = invoke("verify", "--json", str(tmp_path / "img"))
    assert code == 1
    failed = {(f["check"], f["ok"]) for f in json.loads(out)["findings"] if not f["ok"]}
    assert ("blob-exists", False) in failed


def test_not_an_image_tar(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "plain.tar", {"hello.txt": b"hi"})
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, "neither manifest.json", "index.json")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("text")
    result = runner.invoke(app, ["--debug", "inspect", str(path)])
    assert result.exception is not None
    assert type(result.exception).__name__ == "InvalidImageError"


def test_nothing_written_next_to_input(tmp_path: Path, corpus: Path) -> None:
    target = tmp_path / "dive.tar"
    target.write_bytes((corpus / "docker-save-legacy-dive.tar").read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    assert invoke("verify", str(target))[0] == 0
    assert invoke("inspect", "--explain-ids", str(target))[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_tar_with_corrupt_header_checksum(tmp_path: Path, corpus: Path) -> None:
    data = bytearray((corpus / "docker-save-whiteouts-ggcr.tar").read_bytes())
    data[148:156] = b"0000000\x00"  # first header's checksum field
    path = tmp_path / "corrupt.tar"
    path.write_bytes(bytes(data))
    code, _, err = invoke("inspect", str(path))
    assert code == 3
    assert_one_line_error(err, str(path))


def test_tarfile_still_valid_for_sanity(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "x.tar", docker_archive_members([layer_tar({"a": b"1"})]))
    with tarfile.open(path) as tf:
        assert "manifest.json" in tf.getnames()
    assert invoke("verify", str(path))[0] == 0


def test_archive_members_that_escape_or_repeat_are_verify_findings(tmp_path: Path) -> None:
    members = docker_archive_members([layer_tar({"a": b"1"})])
    members["../../evil.sh"] = b"#!/bin/sh\n"
    path = write_tar(tmp_path / "odd.tar", members)
    with tarfile.open(path, "a") as tf:  # a second, different manifest.json after the first
        info = tarfile.TarInfo("manifest.json")
        data = members["manifest.json"]
        assert isinstance(data, bytes)
        info.size = len(data)
        tf.addfile(info, __import__("io").BytesIO(data))
    code, out, _ = invoke("verify", "--json", str(path))
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    assert [f["check"] for f in failed] == ["archive-members"]
    assert "../../evil.sh" in failed[0]["actual"] and "manifest.json" in failed[0]["actual"]
