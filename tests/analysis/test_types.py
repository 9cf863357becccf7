"""dockscope types: file kinds per layer from each file's first bytes, and the findings."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.analyze.filetypes import (
    HEAD_BYTES,
    Category,
    Classifier,
    analyze_types,
    category_of_mime,
    elf_category,
)
from inspect_tool.sources import open_image
from tests.support.cli import invoke
from tests.support.images import write_image
from tests.support.paths import CORPUS, SAMPLES
from tests.support.tar_entries import Entry, build_layer, dir_entry, file_entry, symlink_entry


def elf(e_type: int, *, interp: bool = False, wide: bool = True, big: bool = False) -> bytes:
    """A minimal ELF header followed by two program headers (PT_LOAD, then maybe PT_INTERP)."""
    endian = ">" if big else "<"
    phentsize, phoff = (56, 64) if wide else (32, 52)
    head = bytearray(b"\x7fELF" + bytes([2 if wide else 1, 2 if big else 1, 1]) + b"\0" * 9)
    head += struct.pack(endian + "HHI", e_type, 62, 1)
    if wide:
        head += struct.pack(endian + "QQQIHHHHHH", 0, phoff, 0, 0, 64, phentsize, 2, 64, 0, 0)
    else:
        head += struct.pack(endian + "IIIIHHHHHH", 0, phoff, 0, 0, 52, phentsize, 2, 40, 0, 0)
    for p_type in (1, 3 if interp else 1):
        head += struct.pack(endian + "I", p_type) + b"\0" * (phentsize - 4)
    return bytes(head) + b"\0" * 64


PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + struct.pack(">II", 1, 1) + b"\x08\x02\0\0\0"


@pytest.fixture
def forensic_image(tmp_path: Path) -> Path:
    base = [
        dir_entry("bin"),
        file_entry("bin/ls", elf(3, interp=True), 0o755),
        dir_entry("lib"),
        file_entry("lib/libc.so.6", elf(3), 0o644),
        dir_entry("tmp", 0o1777),
        dir_entry("etc"),
        file_entry("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
    ]
    build = [
        dir_entry("usr"),
        dir_entry("usr/bin"),
        file_entry("usr/bin/sudo", elf(2), 0o4755),
        file_entry("usr/bin/wall", elf(3, interp=True), 0o2755),
        dir_entry("srv"),
        file_entry("srv/public.txt", b"anyone may write me\n", 0o666),
        dir_entry("srv/drop", 0o777),
        symlink_entry("srv/link", "public.txt", mode=0o777),
        dir_entry("dev"),
        Entry("dev/sda", "block", mode=0o660, devmajor=1, devminor=3),
        Entry("dev/pipe", "fifo", mode=0o600),
        dir_entry("app"),
        file_entry("app/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
        file_entry("app/data.gz", gzip.compress(b"x" * 100, mtime=0)),
        file_entry("app/logo.png", PNG),
        file_entry("app/config.json", b'{"a": 1}'),
        file_entry("app/empty"),
        file_entry("app/big.bin", b"\0\1\2\3" * 300_000),  # 1.2 MB: only the first bytes are read
        dir_entry("tmp", 0o1777),  # restated unchanged: not reported again
    ]
    top = [
        dir_entry("bin"),
        file_entry("bin/ls", elf(3, interp=True), 0o755),  # a base executable replaced late
        dir_entry("usr"),
        dir_entry("usr/bin"),
        file_entry("usr/bin/.wh.wall"),
    ]
    return write_image(
        tmp_path / "forensic.tar", [build_layer(base), build_layer(build), build_layer(top)]
    )


def findings(doc: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {(x["kind"], x["layer"], x["path"], x["visible"]) for x in doc["findings"]}


def test_elf_header_decides_executable_or_library() -> None:
    assert elf_category(elf(2), 0o644) == (Category.ELF_EXECUTABLE, "application/x-executable")
    assert elf_category(elf(3, interp=True), 0o644)[0] is Category.ELF_EXECUTABLE
    assert elf_category(elf(3), 0o755)[0] is Category.SHARED_LIBRARY
    assert elf_category(elf(1), 0o644)[0] is Category.ELF_OTHER
    assert elf_category(elf(3, interp=True, wide=False, big=True), 0)[0] is (
        Category.ELF_EXECUTABLE
    )
    assert elf_category(b"#!/bin/sh\n" * 10, 0o755) is None
    # program headers beyond the bytes read: the execute bit decides, as file(1) does
    cut = elf(3, interp=True)[:64]
    assert elf_category(cut, 0o755)[0] is Category.ELF_EXECUTABLE
    assert elf_category(cut, 0o644)[0] is Category.SHARED_LIBRARY


@pytest.mark.parametrize(
    ("mime", "category"),
    [
        ("text/plain", Category.TEXT),
        ("application/json", Category.TEXT),
        ("text/x-shellscript", Category.SCRIPT),
        ("text/x-script.python", Category.SCRIPT),
        ("application/gzip", Category.ARCHIVE),
        ("application/zstd", Category.ARCHIVE),
        ("application/x-bytecode.python", Category.BYTECODE),
        ("image/png", Category.MEDIA),
        ("inode/x-empty", Category.EMPTY),
        ("application/octet-stream", Category.DATA),
        ("text/plain; charset=us-ascii", Category.TEXT),
    ],
)
def test_mime_categories(mime: str, category: Category) -> None:
    assert category_of_mime(mime) is category


def test_libmagic_classifies_what_is_not_elf_or_a_script() -> None:
    classify = Classifier().classify
    assert classify(gzip.compress(b"abc", mtime=0), 0o644) == (Category.ARCHIVE, "application/gzip")
    assert classify(PNG, 0o644) == (Category.MEDIA, "image/png")
    assert classify(b"hello world\n", 0o644) == (Category.TEXT, "text/plain")
    assert classify(b"", 0o644) == (Category.EMPTY, "inode/x-empty")
    assert classify(b"#!/usr/bin/env python3\nprint(1)\n", 0o755)[0] is Category.SCRIPT


def test_breakdown_per_layer_and_totals(forensic_image: Path) -> None:
    code, out, err = invoke("types", "--json", str(forensic_image))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "types" and doc["head_bytes"] == HEAD_BYTES
    layers = {layer["index"]: layer for layer in doc["layers"]}
    assert set(layers) == {0, 1, 2}
    base = layers[0]["categories"]
    assert base["elf-executable"]["count"] == 1 and base["shared-library"]["count"] == 1
    assert base["text"] == {"count": 1, "bytes": 30}
    build = layers[1]["categories"]
    assert build["elf-executable"]["count"] == 2
    assert build["script"]["count"] == 1
    assert build["archive"]["count"] == 1
    assert build["media"]["count"] == 1
    assert build["text"]["count"] == 2  # public.txt, config.json
    assert build["empty"] == {"count": 1, "bytes": 0}
    assert build["data"] == {"count": 1, "bytes": 1_200_000}
    assert layers[1]["files"]["count"] == 9
    assert layers[1]["entries"]["block"] == 1 and layers[1]["entries"]["symlink"] == 1
    assert layers[1]["mime_types"]["image/png"]["count"] == 1
    total = doc["totals"]["files"]
    assert total["count"] == 3 + 9 + 1
    assert total["bytes"] == sum(layer["files"]["bytes"] for layer in doc["layers"])


def test_findings(forensic_image: Path) -> None:
    code, out, _ = invoke("types", "--json", str(forensic_image))
    assert code == 0
    doc = json.loads(out)
    assert findings(doc) == {
        ("world-writable", 0, "/tmp", True),
        ("setuid", 1, "/usr/bin/sudo", True),
        ("setgid", 1, "/usr/bin/wall", False),  # deleted by layer 2
        ("world-writable", 1, "/srv/public.txt", True),
        ("world-writable", 1, "/srv/drop", True),
        ("device", 1, "/dev/sda", True),
        ("fifo", 1, "/dev/pipe", True),
        ("late-executable", 1, "/usr/bin/sudo", True),
        ("late-executable", 1, "/usr/bin/wall", False),
        ("late-executable", 1, "/app/run.sh", True),
        ("late-executable", 2, "/bin/ls", True),
    }
    by_key = {(x["kind"], x["path"]): x for x in doc["findings"]}
    assert by_key[("world-writable", "/tmp")]["detail"] == "sticky"
    assert by_key[("late-executable", "/bin/ls")]["change"] == "modified"
    assert by_key[("late-executable", "/app/run.sh")]["change"] == "added"
    assert by_key[("late-executable", "/app/run.sh")]["category"] == "script"
    assert by_key[("setuid", "/usr/bin/sudo")]["mode"] == "4755"
    assert by_key[("device", "/dev/sda")]["detail"] == "block 1:3"
    assert doc["base_layers"] == 1


def test_one_layer(forensic_image: Path) -> None:
    code, out, _ = invoke("types", "--json", "--layer", "2", str(forensic_image))
    assert code == 0
    doc = json.loads(out)
    assert [layer["index"] for layer in doc["layers"]] == [2]
    assert findings(doc) == {("late-executable", 2, "/bin/ls", True)}
    assert doc["totals"]["files"]["count"] == 1


def test_base_layers_option(forensic_image: Path) -> None:
    code, out, _ = invoke("types", "--json", "--base-layers", "0", str(forensic_image))
    assert code == 0
    late = {(x["layer"], x["path"]) for x in json.loads(out)["findings"] if "late" in x["kind"]}
    assert (0, "/bin/ls") in late and (0, "/lib/libc.so.6") not in late
    code, out, _ = invoke("types", "--json", "--base-layers", "2", str(forensic_image))
    late = {(x["layer"], x["path"]) for x in json.loads(out)["findings"] if "late" in x["kind"]}
    assert late == {(2, "/bin/ls")}


def test_bad_layer_and_base_are_usage_errors(forensic_image: Path) -> None:
    assert invoke("types", "--layer", "3", str(forensic_image))[0] == 2
    assert invoke("types", "--base-layers", "-1", str(forensic_image))[0] == 2


def test_only_the_first_bytes_are_read(forensic_image: Path) -> None:
    seen: list[int] = []
    real = Classifier()

    class Recording(Classifier):
        def classify(self, head: bytes, mode: int) -> tuple[Category, str]:
            seen.append(len(head))
            return real.classify(head, mode)

    source, image = open_image(forensic_image)
    with source:
        report = analyze_types(source, image, classifier=Recording())
    assert len(seen) == report.totals.files.count == 13
    assert max(seen) == HEAD_BYTES  # big.bin: 1.2 MB, 2 KiB read


def test_console_output(forensic_image: Path) -> None:
    code, out, _ = invoke("types", str(forensic_image))
    assert code == 0
    assert "setuid: 1" in out and "/usr/bin/sudo" in out
    assert "late-executable: 4" in out
    assert "hidden by a later layer" in out


def test_sample_image() -> None:
    code, out, _ = invoke("types", "--json", str(SAMPLES / "docker-archive-legacy.tar"))
    assert code == 0
    doc = json.loads(out)
    late = {(x["layer"], x["path"], x["change"]) for x in doc["findings"] if "late" in x["kind"]}
    assert late == {
        (1, "/opt/app/bin/server", "added"),
        (3, "/usr/local/bin/docker-entrypoint.sh", "added"),
    }
    assert ("world-writable", 0, "/tmp", True) in findings(doc)


def test_dive_image_busybox_and_chmod() -> None:
    code, out, _ = invoke("types", "--json", str(CORPUS / "docker-save-legacy-dive.tar"))
    assert code == 0
    doc = json.loads(out)
    assert doc["layers"][0]["categories"]["elf-executable"]["count"] == 2  # busybox, getconf
    assert doc["layers"][0]["entries"]["hardlink"] == 392
    late = {(x["layer"], x["path"], x["change"]) for x in doc["findings"] if "late" in x["kind"]}
    assert (13, "/root/saved.txt", "modified") in late  # RUN chmod +x /root/saved.txt


def test_a_corrupted_layer_is_refused() -> None:
    code, _, err = invoke("types", str(SAMPLES / "tampered" / "layer-byte-flipped.tar"))
    assert code == 3 and "diff_id mismatch" in err


def test_overlay_marks_in_a_layer_are_a_finding(tmp_path: Path) -> None:
    """A layer that carries overlayfs's own xattrs (made to make a runtime that applied them
    show another tree than the one inspected) is reported, even on a directory restated
    with the same mode."""
    from tests.support.images import oci_layout
    from tests.support.tar_entries import build_layer, dir_entry, file_entry

    image = tmp_path / "layout"
    oci_layout(
        image,
        [
            build_layer([dir_entry("d/"), file_entry("d/lower", b"1")]),
            build_layer(
                [
                    dir_entry("d/", xattrs=(("trusted.overlay.opaque", "y"),)),
                    dir_entry("b/", xattrs=(("trusted.overlay.redirect", "/d"), ("user.x", "1"))),
                ]
            ),
        ],
    )
    code, out, _ = invoke("types", "--json", str(image))
    assert code == 0
    doc = json.loads(out)
    marks = {(x["path"], x["detail"]) for x in doc["findings"] if x["kind"] == "union-xattr"}
    assert marks == {("/d", "trusted.overlay.opaque"), ("/b", "trusted.overlay.redirect")}
