"""Images docker runs that are not the usual busybox: one without /etc/passwd (its default
user is uid 0), one of another platform (a warning, and an exec failure that says why)."""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import pytest

from runtime_lab.spec import host_platform, platform_text
from tests.image.test_busybox_image import load_generator
from tests.support.cli import dockscope, ok
from tests.support.runtime import events, needs_root, step

pytestmark = needs_root

FOREIGN = "arm64" if host_platform()[1] != "arm64" else "amd64"
WARNING = (
    f"dockscope: WARNING: The requested image's platform (linux/{FOREIGN}) does not match the "
    f"detected host platform ({platform_text(*host_platform())}) and no specific platform was "
    "requested"
)


def busybox_variant(out: Path, *, drop: tuple[str, ...] = (), architecture: str = "") -> Path:
    """The busybox sample without the files ``drop`` names, or claiming another
    ``architecture`` in its config (its binary stays the host's)."""
    busybox = load_generator("busybox")
    binary_path = busybox.BUSYBOX_BINARY
    binary = binary_path.read_bytes()
    recipe = busybox.busybox_recipe(binary, busybox.busybox_applets(binary_path))
    if drop:
        entries = busybox.busybox_layer(binary, busybox.busybox_applets(binary_path))
        layer = load_generator("filesystem").make_layer([e for e in entries if e.name not in drop])
        first = dataclasses.replace(recipe.steps[0], layer=layer)
        recipe = dataclasses.replace(recipe, steps=(first, *recipe.steps[1:]))
    if architecture:
        recipe = dataclasses.replace(recipe, architecture=architecture)
    data, _ = load_generator("docker_archive").docker_save_v25(
        recipe, "dockscope/variant:latest", out.name
    )
    out.write_bytes(data)
    return out


@pytest.fixture(scope="module")
def no_passwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nopasswd") / "nopasswd.tar"
    return busybox_variant(out, drop=("etc/passwd", "etc/group"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("foreign") / "foreign.tar"
    return busybox_variant(out, architecture=FOREIGN)


# -- no /etc/passwd ---------------------------------------------------------------------------


def test_image_without_passwd_runs_as_uid_0(root: Path, no_passwd: Path) -> None:
    """docker: no User and no /etc/passwd is uid 0, gid 0."""
    result = dockscope(root, "run", "--rm", no_passwd, "sh", "-c", "id -u; id -g; ls /etc")
    assert ok(result).split()[:2] == ["0", "0"]
    assert "passwd" not in result.out


def test_image_without_passwd_takes_numeric_users(root: Path, no_passwd: Path) -> None:
    out = ok(dockscope(root, "run", "--rm", "-u", "1234", no_passwd, "sh", "-c", "id -u; id -g"))
    assert out.split() == ["1234", "0"]  # docker: no entry, so gid 0
    out = ok(dockscope(root, "run", "--rm", "-u", "1234:77", no_passwd, "sh", "-c", "id -u; id -G"))
    assert out.split() == ["1234", "77"]


def test_image_without_passwd_refuses_a_name(root: Path, no_passwd: Path) -> None:
    """As docker: a name needs an entry, root's too."""
    result = dockscope(root, "run", "--rm", "-u", "root", no_passwd, "id")
    assert result.code == 126
    assert "unable to find user root: no matching entries in passwd file" in result.err
    assert len(result.err.splitlines()) == 1


# -- another platform -------------------------------------------------------------------------


def test_another_platform_is_warned_about(root: Path, foreign: Path) -> None:
    trace = root.parent / "foreign.jsonl"
    result = dockscope(root, "run", "--rm", "--trace-json", trace, foreign, "true")
    ok(result)  # the binary is the host's: only the config claims another platform
    assert result.err.splitlines() == [WARNING]
    assert step(events(trace), "image")["evidence"]["warning"] == WARNING.split(": ", 2)[2]
    narrated = dockscope(root, "run", "--rm", "--trace", foreign, "true")
    assert f"warning: {WARNING.split(': ', 2)[2]}" in narrated.err
    assert narrated.err.count("does not match the detected host platform") == 2
    # asked for: no warning (docker's "no specific platform was requested")
    chosen = dockscope(root, "run", "--rm", "--platform", f"linux/{FOREIGN}", foreign, "true")
    assert ok(chosen) == "" and chosen.err == ""


def test_explain_names_another_platform(foreign: Path) -> None:
    explained = ok(dockscope(Path("/nonexistent"), "run", "--explain", foreign, "true"))
    assert f"platform: linux/{FOREIGN}, not this host's" in explained


def test_the_hosts_platform_is_not_warned_about(root: Path, tmp_path: Path) -> None:
    image = busybox_variant(tmp_path / "native.tar")
    result = dockscope(root, "run", "--rm", image, "true")
    assert ok(result) == "" and result.err == ""


def foreign_elf() -> bytes:
    """The header of an ELF executable for the other architecture: execve says ENOEXEC."""
    machine = 183 if FOREIGN == "arm64" else 62  # EM_AARCH64, EM_X86_64
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x400000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    return header + struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 120, 120, 0x1000)


@pytest.mark.skipif(
    any(Path("/proc/sys/fs/binfmt_misc").glob("qemu-*")),
    reason="an emulator is registered: the foreign program would run",
)
def test_exec_format_error_says_why(root: Path, foreign: Path, tmp_path: Path) -> None:
    program = tmp_path / "bin" / "hello"
    program.parent.mkdir()
    program.write_bytes(foreign_elf())
    os.chmod(program, 0o755)
    result = dockscope(
        root, "run", "--rm", "-v", f"{program.parent}:/foreign:ro", foreign, "/foreign/hello"
    )
    assert result.code == 126
    lines = result.err.splitlines()
    assert lines[0] == WARNING
    assert lines[1:] == [
        f"dockscope: exec /foreign/hello: Exec format error: the image is built for "
        f"linux/{FOREIGN} and this host is {platform_text(*host_platform())}: its programs "
        "cannot run here unless an emulator for them is registered (binfmt_misc, "
        "qemu-user-static)"
    ]
