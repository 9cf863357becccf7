"""Go build information as Go 1.13 to 1.17 wrote it (pointers to string headers, resolved
through the ELF program headers), on synthetic ELF files laid out as those linkers lay them
out: Debian's Go (1.19) cannot write the format, but ``go version -m`` still reads it, so
the peer confirms each fixture and what dockscope reports from it."""

from __future__ import annotations

import io
import struct
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspect_tool.analyze.packages import golang
from tests.packages.test_scan import packages_json
from tests.support.images import write_image

MODINFO = (
    b"path\texample.com/app\n"
    b"mod\texample.com/app\tv1.4.2\th1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    b"dep\tgithub.com/pkg/errors\tv0.9.1\th1:FEBLx1zS214owpjy7qsBeixbURkuhQAwrK5UwLGTwt4=\n"
    b"dep\tgolang.org/x/text\tv0.3.0\n"
    b"=>\tgolang.org/x/text\tv0.3.7\th1:olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=\n"
)
EXPECTED = {
    ("example.com/app", "v1.4.2"),
    ("github.com/pkg/errors", "v0.9.1"),
    ("golang.org/x/text", "v0.3.7"),
}


@dataclass(frozen=True)
class Layout:
    bits: int = 64
    big: bool = False
    strings_after: bool = False  # the strings after the build information, not in .rodata
    version: bytes = b"go1.16.15"
    modinfo: bytes = golang._START + MODINFO + golang._END


def legacy_elf(layout: Layout) -> bytes:
    """An ELF executable with two PT_LOAD segments, read-only data at file offset 0x1000 and
    writable data at 0x3000 beginning with the 32-byte build information header (no section
    headers: Go finds the header at the start of the first writable, non-executable segment)."""
    order = ">" if layout.big else "<"
    size = layout.bits // 8
    pointer = order + ("Q" if size == 8 else "I")
    base = 0x400000 if size == 8 else 0x8048000
    rodata_off, data_off = 0x1000, 0x3000
    rodata_addr, data_addr = base + rodata_off, base + data_off

    rodata = bytearray(b"runtime error: index out of range\0" * 8)
    header = bytearray(golang.MAGIC + bytes([size, 1 if layout.big else 0]))
    header += b"\0" * (golang.HEADER - len(header))
    data = bytearray(header)
    data += b"\0" * (2 * 2 * size)  # the two string headers, filled below
    headers_at = golang.HEADER

    def place(text: bytes) -> int:
        if layout.strings_after:
            data.extend(b"\0" * (-len(data) % 8))
            at = data_addr + len(data)
            data.extend(text)
        else:
            at = rodata_addr + len(rodata)
            rodata.extend(text)
        return at

    version_at = place(layout.version)
    modinfo_at = place(layout.modinfo)
    for i, (at, length) in enumerate(
        ((version_at, len(layout.version)), (modinfo_at, len(layout.modinfo)))
    ):
        struct.pack_into(pointer + pointer[1], data, headers_at + i * 2 * size, at, length)
        struct.pack_into(pointer, data, 16 + i * size, data_addr + headers_at + i * 2 * size)
    assert len(rodata) <= data_off - rodata_off

    if size == 8:
        ehdr = struct.pack(
            order + "16sHHIQQQIHHHHHH",
            b"\x7fELF\x02" + (b"\x02" if layout.big else b"\x01") + b"\x01" + b"\0" * 9,
            2,  # ET_EXEC
            21 if layout.big else 62,  # PPC64, x86-64
            1,
            base + rodata_off,
            64,  # program headers right after
            0,
            0,
            64,
            56,
            2,
            64,
            0,
            0,
        )
        phdr = order + "IIQQQQQQ"
        phdrs = struct.pack(
            phdr, 1, 4, rodata_off, rodata_addr, rodata_addr, len(rodata), len(rodata), 0x1000
        ) + struct.pack(phdr, 1, 6, data_off, data_addr, data_addr, len(data), len(data), 0x1000)
    else:
        ehdr = struct.pack(
            order + "16sHHIIIIIHHHHHH",
            b"\x7fELF\x01" + (b"\x02" if layout.big else b"\x01") + b"\x01" + b"\0" * 9,
            2,
            8 if layout.big else 3,  # MIPS, i386
            1,
            base + rodata_off,
            52,
            0,
            0,
            52,
            32,
            2,
            40,
            0,
            0,
        )
        phdr = order + "IIIIIIII"
        phdrs = struct.pack(
            phdr, 1, rodata_off, rodata_addr, rodata_addr, len(rodata), len(rodata), 4, 0x1000
        ) + struct.pack(phdr, 1, data_off, data_addr, data_addr, len(data), len(data), 6, 0x1000)
    image = bytearray(ehdr + phdrs)
    image += b"\0" * (rodata_off - len(image)) + rodata
    image += b"\0" * (data_off - len(image)) + data
    return bytes(image)


def streamed(binary: bytes, chunk: int) -> bytes | None:
    finder = golang.BuildInfoFinder()
    for start in range(0, len(binary), chunk):
        finder.feed(binary[start : start + chunk])
    finder.end()
    return finder.found


def modules(found: bytes | None) -> set[tuple[str, str]]:
    assert found is not None
    return {(p.name, p.version) for p in golang.parse_buildinfo(found, database="/b")}


def go_version_m(tmp_path: Path, binary: bytes) -> tuple[str, set[tuple[str, str]]]:
    """What the Go toolchain reads from ``binary``: its Go version and modules (a module
    replaced by ``=>`` takes the replacement's version, as dockscope reports it)."""
    path = tmp_path / "app"
    path.write_bytes(binary)
    path.chmod(0o755)
    out = subprocess.run(
        ["go", "version", "-m", str(path)], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert lines[0] == f"{path}: " + lines[0].split(": ", 1)[1]
    found: list[tuple[str, str]] = []
    for line in lines[1:]:
        fields = line.strip("\t").split("\t")
        if fields[0] in ("mod", "dep"):
            found.append((fields[1], fields[2]))
        elif fields[0] == "=>":
            found[-1] = (found[-1][0], fields[2] or found[-1][1])
    return lines[0].split(": ", 1)[1], set(found)


LAYOUTS = [
    Layout(bits=bits, big=big, strings_after=after)
    for bits in (64, 32)
    for big in (False, True)
    for after in (False, True)
]


@pytest.mark.parametrize(
    "layout",
    LAYOUTS,
    ids=lambda o: f"{o.bits}-{'be' if o.big else 'le'}-{'after' if o.strings_after else 'rodata'}",
)
def test_go_toolchain_and_dockscope_read_the_same_modules(tmp_path: Path, layout: Layout) -> None:
    binary = legacy_elf(layout)
    version, peer = go_version_m(tmp_path, binary)
    assert (version, peer) == ("go1.16.15", EXPECTED)  # Go accepts the fixture
    for chunk in (5, 16, 4096, 1 << 20):  # every pointer and string split across chunks
        found = streamed(binary, chunk)
        assert found is not None and found.startswith(b"go1.16.15\0")
        assert modules(found) == peer


def test_a_binary_without_module_information_is_its_toolchain(tmp_path: Path) -> None:
    binary = legacy_elf(Layout(modinfo=b""))
    assert go_version_m(tmp_path, binary) == ("go1.16.15", set())
    assert modules(streamed(binary, 4096)) == {("stdlib", "go1.16.15")}


def hostile(layout: Layout, patch: dict[int, bytes]) -> bytes:
    binary = bytearray(legacy_elf(layout))
    for at, value in patch.items():
        binary[at : at + len(value)] = value
    return bytes(binary)


DATA = 0x3000  # the build information header's file offset in legacy_elf
VADDR = 0x400000 + DATA


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        # the version's header pointer outside every segment: no version, nothing read
        ({DATA + 16: struct.pack("<Q", 0x10)}, b""),
        # a segment holds the address but not the whole header
        ({DATA + 16: struct.pack("<Q", VADDR + 0x1000 - 4)}, b""),
        # the module information's length past its segment, and huge
        ({DATA + golang.HEADER + 24: struct.pack("<Q", 1 << 62)}, b"go1.16.15\0"),
        # the module information's pointer one byte off: nothing kept begins there
        (
            {DATA + golang.HEADER + 16: struct.pack("<Q", 0x400000 + 0x1000 + 8 * 34 + 10)},
            b"go1.16.15\0",
        ),
        # a pointer size Go never wrote
        ({DATA + 14: b"\x03"}, b""),
        # program headers said to lie beyond the kept head
        ({32: struct.pack("<Q", golang.HEAD)}, b""),
        # 65,535 program headers
        ({56: struct.pack("<H", 0xFFFF)}, b""),
    ],
)
def test_hostile_pointers_and_lengths_read_nothing_unbounded(
    patch: dict[int, bytes], expected: bytes
) -> None:
    found = streamed(hostile(Layout(), patch), 4096)
    assert found == expected


def test_the_file_ending_before_a_string_reads_no_version() -> None:
    binary = legacy_elf(Layout(strings_after=True))
    finder = golang.BuildInfoFinder()
    finder.feed(binary[: DATA + golang.HEADER + 8])  # the header and half a string header
    assert finder.found is None and not finder.done
    finder.end()
    assert finder.found == b""


def test_candidates_kept_are_bounded() -> None:
    # a file full of "go1." and sentinels before its header keeps at most the bounded number
    noise = (b"go1." + b"x" * 12) * 10_000 + (golang._START + b"\0" * 100) * 100
    finder = golang.BuildInfoFinder()
    for start in range(0, len(noise), 4096):
        finder.feed(noise[start : start + 4096])
    kept = sum(len(c.data) for c in finder._candidates)
    limit = golang.MAX_VERSION_CANDIDATES * golang.MAX_VERSION
    assert kept <= limit + golang.MAX_MODINFO_CANDIDATES * golang.MAX_INFO
    assert len(finder._candidates) == golang.MAX_VERSION_CANDIDATES + golang.MAX_MODINFO_CANDIDATES


def test_legacy_go_binaries_in_an_image(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, layout in (("usr/bin/app64", Layout()), ("usr/bin/app32be", LAYOUTS[-1])):
            binary = legacy_elf(layout)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(binary), 0o755
            tf.addfile(info, io.BytesIO(binary))
    document = packages_json(write_image(tmp_path / "i.tar", [buffer.getvalue()]))
    found = {(p["ecosystem"], p["name"], p["version"], p["location"]) for p in document["packages"]}
    assert found == {
        ("go", name, version, location)
        for name, version in EXPECTED
        for location in ("/usr/bin/app64", "/usr/bin/app32be")
    }
