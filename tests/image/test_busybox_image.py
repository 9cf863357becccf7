"""The runnable busybox image (``make_samples.py --busybox``): reproducible, complete, valid.

Read with the standard library only, as tests/image/test_samples.py reads the committed samples.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUSYBOX_BINARY
from tests.support.cli import invoke
from tests.support.paths import SAMPLES

GENERATOR = SAMPLES / "make_samples.py"
T_ADD = 1704153600  # 2024-01-02T00:00:00Z


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tf:
        found = {}
        for member in tf.getmembers():
            if member.isfile():
                extracted = tf.extractfile(member)
                assert extracted is not None
                found[member.name] = extracted.read()
        return found


def image_parts(archive: Path) -> tuple[dict[str, Any], list[tarfile.TarInfo], dict[str, bytes]]:
    """The config, and the one layer's members (headers and file contents)."""
    files = members(archive)
    manifest = json.loads(files["manifest.json"])
    assert len(manifest) == 1
    config = json.loads(files[manifest[0]["Config"]])
    (layer_path,) = manifest[0]["Layers"]
    layer = files[layer_path]
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == config["rootfs"]["diff_ids"][0]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        headers = tf.getmembers()
        contents = {}
        for header in headers:
            if header.isfile():
                extracted = tf.extractfile(header)
                assert extracted is not None
                contents[header.name] = extracted.read()
    return config, headers, contents


def test_same_bytes_every_run(busybox_image: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tar"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--busybox", str(again)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert again.read_bytes() == busybox_image.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_config_runs_sh(busybox_image: Path) -> None:
    config, _, _ = image_parts(busybox_image)
    assert config["config"]["Cmd"] == ["sh"]
    assert config["config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert "Entrypoint" not in config["config"]
    assert config["os"] == "linux"
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
    assert config["architecture"] == (machine or config["architecture"])
    assert [h["created_by"].split(" ", 4)[3] for h in config["history"]] == ["ADD", ""]
    assert config["history"][1]["empty_layer"] is True


def test_filesystem(busybox_image: Path) -> None:
    _, headers, contents = image_parts(busybox_image)
    by_name = {h.name: h for h in headers}
    assert contents["bin/busybox"] == BUSYBOX_BINARY.read_bytes()
    assert stat.S_IMODE(by_name["bin/busybox"].mode) == 0o755
    for applet in ("bin/sh", "bin/ls", "bin/hostname", "bin/ps", "bin/sleep"):
        assert by_name[applet].issym(), applet
        assert by_name[applet].linkname == "/bin/busybox"
    listed = subprocess.run(
        [str(BUSYBOX_BINARY), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {name for name in listed if name != "bin/busybox"} <= set(by_name)
    for directory, mode in (
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ):
        assert by_name[directory].isdir(), directory
        assert stat.S_IMODE(by_name[directory].mode) == mode, directory
    home = by_name["home/user"]
    assert (home.uid, home.gid) == (1000, 1000)
    assert {h.mtime for h in headers} == {T_ADD}
    assert {(h.uname, h.gname) for h in headers} == {("", "")}


def test_users_and_groups(busybox_image: Path) -> None:
    _, _, contents = image_parts(busybox_image)
    passwd = [line.split(":") for line in contents["etc/passwd"].decode().splitlines()]
    assert [(u[0], u[2], u[3], u[5]) for u in passwd] == [
        ("root", "0", "0", "/root"),
        ("nobody", "65534", "65534", "/home"),
        ("user", "1000", "1000", "/home/user"),
    ]
    groups = [line.split(":")[:3] for line in contents["etc/group"].decode().splitlines()]
    assert groups == [["root", "x", "0"], ["nobody", "x", "65534"], ["user", "x", "1000"]]


def test_dockscope_verifies_it(busybox_image: Path) -> None:
    result = invoke("verify", "--json", str(busybox_image))
    assert result.code == 0, result.output
    document = json.loads(result.out)
    assert document["ok"] is True
    assert document["format"] == "docker-archive-oci"


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(GENERATOR),
            "--busybox",
            str(tmp_path / "x.tar"),
            "--busybox-binary",
            str(tmp_path / "nothing"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "busybox-static" in result.stderr
    assert not (tmp_path / "x.tar").exists()


def load_generator(part: str) -> Any:
    """One module of the generator's package (``sample_images/samples/``), imported as
    make_samples.py imports it when run as a script: with its folder on ``sys.path``."""
    sys.path.insert(0, str(SAMPLES))
    try:
        return importlib.import_module(f"samples.{part}")
    finally:
        sys.path.remove(str(SAMPLES))


ELF64_LE = b"\x7fELF\x02\x01\x01" + b"\0" * 11  # e_machine follows at offset 18


@pytest.mark.parametrize(
    ("machine", "architecture"),
    [(b"\x3e\x00", "amd64"), (b"\xb7\x00", "arm64"), (b"\xf3\x00", "riscv64")],
)
def test_architecture_from_the_elf_header(machine: bytes, architecture: str) -> None:
    assert load_generator("busybox").elf_architecture(ELF64_LE + machine) == architecture
