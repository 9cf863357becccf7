"""A runnable image: the host's static busybox (``make_samples.py --busybox OUT.tar``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samples.basics import DEFAULT_PATH_ENV, Instant
from samples.docker_archive import docker_save_v25
from samples.filesystem import content_hash, directory, make_layer, regular
from samples.recipes import Recipe, Step, nop
from samples.tarbuild import SYMLINK, TarEntry

# Not one of the committed samples: the binary alone is about 2 MB and belongs to the host's
# Debian package (busybox-static), so ``make`` builds ``sample_images/busybox.tar`` when it is
# missing. Same binary in, same bytes out: every timestamp is fixed, the applet list comes
# from the binary itself, and the layer is stored uncompressed (as ``docker save`` stores it),
# so not even zlib's version can change the result.

BUSYBOX_BINARY = Path("/bin/busybox")
BUSYBOX_TAG = "dockscope/busybox:latest"
T_BUSYBOX_ADD = Instant.at("2024-01-02T00:00:00", 120000000)
T_BUSYBOX_CMD = Instant.at("2024-01-02T00:00:00", 240000000)
UNPRIVILEGED_USER = "user"

BUSYBOX_PASSWD = b"""root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
user:x:1000:1000:Unprivileged user:/home/user:/bin/sh
"""

BUSYBOX_GROUP = b"""root:x:0:
nobody:x:65534:
user:x:1000:
"""

# e_machine of the ELF header → GOARCH, the names image configs use
_ELF_ARCHITECTURES = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64", 22: "s390x"}


def elf_architecture(binary: bytes) -> str:
    """The image architecture a static ELF executable runs on, from its header."""
    if binary[:4] != b"\x7fELF":
        raise ValueError("not an ELF executable")
    byteorder = "little" if binary[5] == 1 else "big"
    machine = int.from_bytes(binary[18:20], byteorder)
    if machine == 21 and binary[4] == 2:  # EM_PPC64
        return "ppc64le" if byteorder == "little" else "ppc64"
    if machine not in _ELF_ARCHITECTURES:
        raise ValueError(f"unknown ELF machine {machine}")
    return _ELF_ARCHITECTURES[machine]


def busybox_applets(binary: Path) -> list[str]:
    """Where each applet lives (``bin/sh``, ``usr/bin/awk``…), as the binary itself says."""
    import subprocess

    listed = subprocess.run(
        [str(binary), "--list-full"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    return sorted({line.strip().lstrip("/") for line in listed.splitlines() if line.strip()})


def busybox_layer(binary: bytes, applets: Sequence[str]) -> list[TarEntry]:
    """The whole root filesystem: busybox, a symlink per applet, users, mount points."""
    t = T_BUSYBOX_ADD.seconds
    entries = [
        regular("bin/busybox", binary, t, mode=0o755),
        directory("dev", t),
        directory("etc", t),
        regular("etc/group", BUSYBOX_GROUP, t),
        regular("etc/passwd", BUSYBOX_PASSWD, t),
        directory("home", t),
        directory(f"home/{UNPRIVILEGED_USER}", t, owner=1000),
        directory("proc", t, mode=0o555),
        directory("root", t, mode=0o700),
        directory("sys", t, mode=0o555),
        directory("tmp", t, mode=0o1777),
        directory("usr", t),
        directory("var", t),
        directory("var/spool", t),
        directory("var/www", t),
    ]
    names = {entry.name for entry in entries}
    for applet in applets:
        if applet in names or applet == "bin/busybox":
            continue
        parent = applet.rpartition("/")[0]
        while parent and parent not in names:
            entries.append(directory(parent, t))
            names.add(parent)
            parent = parent.rpartition("/")[0]
        entries.append(TarEntry(applet, SYMLINK, mode=0o777, mtime=t, linkname="/bin/busybox"))
        names.add(applet)
    return entries


def busybox_recipe(
    binary: bytes, applets: Sequence[str], runtime: dict[str, Any] | None = None
) -> Recipe:
    """Built like docker's official busybox image: ``ADD rootfs.tar /`` and ``CMD ["sh"]``.

    ``runtime`` replaces the config's Env/Cmd (tests derive images with an Entrypoint, a
    WorkingDir or a User from it)."""
    entries = busybox_layer(binary, applets)
    add = f"/bin/sh -c #(nop) ADD file:{content_hash(entries)} in / "
    cmd = nop('CMD ["sh"]')
    steps = (
        Step(T_BUSYBOX_ADD, add, add, make_layer(entries), from_base=True),
        Step(T_BUSYBOX_CMD, cmd, cmd, from_base=True),
    )
    runtime = runtime if runtime is not None else {"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]}
    return Recipe(steps, runtime, architecture=elf_architecture(binary))


def make_busybox(
    out: Path,
    binary_path: Path = BUSYBOX_BINARY,
    *,
    runtime: dict[str, Any] | None = None,
    tag: str = BUSYBOX_TAG,
) -> int:
    """Write the busybox image to ``out`` as ``docker save`` (Docker 25+) would; its size."""
    binary = binary_path.read_bytes()
    recipe = busybox_recipe(binary, busybox_applets(binary_path), runtime)
    data, _ = docker_save_v25(recipe, tag, out.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(out)  # never a half-written image where make looks for one
    return len(data)
