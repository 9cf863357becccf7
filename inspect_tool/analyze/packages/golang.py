"""Go binaries' embedded build information (``runtime/debug.BuildInfo``), read from ELF
executables while their bytes stream past, in both formats the Go linker writes after the
magic ``\\xff Go buildinf:`` at a 16-byte boundary (a 32-byte header: byte 14 the pointer
size, byte 15 the flags):

- Go ≥ 1.18 (flag bit 2): the Go version and the module information follow inline, each a
  varint length and its bytes.
- Go 1.13 to 1.17 (flags 0 or 1: the pointers' byte order, little or big endian): two
  pointers follow at offsets 16 and 16 + pointer size, the virtual addresses of two Go
  string headers (data pointer, length), for the version and the module information. Each
  address is resolved to a file offset through the ELF program headers (the first segment
  whose ``[p_vaddr, p_vaddr + p_filesz)`` holds it, as Go's ``debug/buildinfo`` does; a
  string must lie within one segment), then read.

The module information lies between two 16-byte sentinels (``path``, ``mod``, ``dep`` and
``=>`` replacement lines, tab separated).

``BuildInfoFinder`` is fed a file's bytes in chunks (the tar stream's) and never seeks: it
keeps the file's first ``HEAD`` bytes (the ELF and program headers), a short tail between
chunks and, once the magic is found, at most ``MAX_INFO`` bytes after it. A Go < 1.18
linker puts the string headers after the build information (in ``.noptrdata``/``.data``)
and the strings' bytes before it (in ``.rodata``): bytes ahead are captured as they stream
past; for bytes behind, the finder keeps what it saw of the candidates, the first
``MAX_VERSION_CANDIDATES`` places where ``go1.`` or ``devel`` begins (``MAX_VERSION`` bytes
each) and the first ``MAX_MODINFO_CANDIDATES`` where the start sentinel begins (up to the
end sentinel, at most ``MAX_INFO`` bytes), and a string is read only where its address lands
exactly on one. Every address, length and offset is checked; nothing is read unbounded.
Mach-O and PE executables are not read (the package scan looks at ELF files only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAGIC = b"\xff Go buildinf:"
ALIGN = 16
HEADER = 32
MAX_INFO = 1024 * 1024  # the version and module strings, together
HEAD = 64 * 1024  # the file's first bytes kept: the ELF header and its program headers
MAX_VERSION = 256  # bytes of a Go < 1.18 version string ("go1.16.15", "devel +abc…")
MAX_VERSION_CANDIDATES = 64
MAX_MODINFO_CANDIDATES = 4
_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
_END = bytes.fromhex("f932433186182072008242104116d8f2")
_VERSION_STARTS = (b"go1.", b"devel")
_KEEP = max(len(MAGIC), len(_START), *map(len, _VERSION_STARTS)) - 1  # the tail between chunks


@dataclass(slots=True)
class _Segment:
    """One ELF program header with bytes in the file: the virtual addresses it loads and the file
    offset their bytes come from."""

    vaddr: int
    offset: int
    size: int  # p_filesz


def elf_segments(head: bytes) -> list[_Segment] | None:
    """The program headers of the ELF file starting with ``head`` (None: not ELF, or its
    program headers lie beyond ``head``), in their order, those with file bytes only."""
    if len(head) < 52 or not head.startswith(b"\x7fELF") or head[6] != 1:
        return None
    wide = {1: False, 2: True}.get(head[4])
    order = {1: "<", 2: ">"}.get(head[5])
    if wide is None or order is None:
        return None
    if wide:
        if len(head) < 64:
            return None
        phoff, entsize, count = struct.unpack_from(order + "Q14xHH", head, 32)
        layout, need = order + "8xQQ8xQ", 56
    else:
        phoff, entsize, count = struct.unpack_from(order + "I10xHH", head, 28)
        layout, need = order + "4xII4xI", 32
    if entsize < need or phoff + count * entsize > len(head):
        return None
    segments = []
    for i in range(count):
        offset, vaddr, size = struct.unpack_from(layout, head, phoff + i * entsize)
        if size:
            segments.append(_Segment(vaddr, offset, size))
    return segments


@dataclass(slots=True)
class _Capture:
    """``size`` bytes of the file from ``offset``, collected as they stream past."""

    offset: int
    size: int
    data: bytearray = field(default_factory=bytearray)

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.size

    def take(self, start: int, chunk: bytes | bytearray) -> None:
        """Take what it lacks from ``chunk``, the file's bytes from offset ``start``."""
        at = self.offset + len(self.data) - start
        if 0 <= at < len(chunk) and not self.complete:
            self.data += chunk[at : at + self.size - len(self.data)]


@dataclass(slots=True)
class _Legacy:
    """Go < 1.18: the pointers being followed."""

    segments: list[_Segment]
    pointer: str  # struct format of one pointer
    waiting: dict[str, _Capture] = field(default_factory=dict)
    strings: dict[str, bytes | None] = field(default_factory=dict)  # None: unreadable


class BuildInfoFinder:
    """Feed a file's bytes in order, then call ``end``; ``found`` holds the build information
    (``version\\0modinfo``; empty: the magic, but no readable version) once complete."""

    def __init__(self) -> None:
        self._offset = 0  # file offset of the next byte fed
        self._tail = b""  # the last _KEEP bytes fed, while looking for the magic
        self._head = bytearray()
        self._candidates: list[_Capture] = []  # Go < 1.18 strings the pointers may land on
        self._versions = 0
        self._modinfos = 0
        self._info: bytearray | None = None  # the bytes from the magic on
        self._info_offset = 0
        self._recent: tuple[int, bytes] = (0, b"")  # the last chunk fed, from its offset
        self._legacy: _Legacy | None = None
        self.found: bytes | None = None

    @property
    def done(self) -> bool:
        return self.found is not None or (
            self._legacy is None and self._info is not None and len(self._info) >= HEADER + MAX_INFO
        )

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        start = self._offset
        self._offset += len(chunk)
        self._recent = (start, chunk)
        if len(self._head) < HEAD:
            self._head += chunk[: HEAD - len(self._head)]
        for candidate in self._candidates:
            if not candidate.complete:
                candidate.take(start, chunk)
                if candidate.size > MAX_VERSION:  # module information: it ends at the sentinel
                    _cut_at_end(candidate)
        if self._legacy is not None:
            for capture in self._legacy.waiting.values():
                capture.take(start, chunk)
            self._settle()
            return
        if self._info is not None:
            self._info += chunk[: HEADER + MAX_INFO - len(self._info)]
            self._complete()
            return
        data = self._tail + chunk
        base = start - len(self._tail)
        self._remember_candidates(data, base)
        at = data.find(MAGIC)
        while at >= 0:
            if (base + at) % ALIGN == 0:
                self._info = bytearray(data[at : at + HEADER + MAX_INFO])
                self._info_offset = base + at
                self._complete()
                return
            at = data.find(MAGIC, at + 1)
        self._tail = data[-_KEEP:]

    def end(self) -> None:
        """The file ended: Go < 1.18 strings not reached are unreadable."""
        if self.found is None and self._legacy is not None:
            for key in list(self._legacy.waiting):
                self._legacy.strings[key.removesuffix(" header")] = None
            self._legacy.waiting.clear()
            self._settle()

    def _remember_candidates(self, data: bytes, base: int) -> None:
        """Where Go < 1.18 strings may begin in ``data`` (the file's bytes from ``base``);
        those lying wholly in the tail were seen with the previous chunk."""
        for marker in (b"go1.", b"devel", _START):
            modinfo = marker is _START
            at = data.find(marker)
            while at >= 0:
                if modinfo and self._modinfos >= MAX_MODINFO_CANDIDATES:
                    break
                if not modinfo and self._versions >= MAX_VERSION_CANDIDATES:
                    break
                if at + len(marker) > len(self._tail):
                    candidate = _Capture(base + at, MAX_INFO if modinfo else MAX_VERSION)
                    candidate.take(base, data)
                    if modinfo:
                        _cut_at_end(candidate)
                        self._modinfos += 1
                    else:
                        self._versions += 1
                    self._candidates.append(candidate)
                at = data.find(marker, at + 1)

    def _complete(self) -> None:
        assert self._info is not None
        info = bytes(self._info)
        if len(info) < HEADER:
            return
        if not info[15] & 2:
            self._begin_legacy(info)
            return
        strings, position = [], HEADER
        for _ in range(2):
            length, position = _varint(info, position)
            if length is None or position + length > len(info):
                return  # wait for more bytes (or give up at MAX_INFO)
            strings.append(info[position : position + length])
            position += length
        self.found = b"\0".join(strings)

    # -- Go < 1.18: pointers --------------------------------------------------------------------
    def _begin_legacy(self, info: bytes) -> None:
        size = info[14]
        segments = elf_segments(bytes(self._head))
        if size not in (4, 8) or segments is None:
            self.found = b""
            return
        pointer = (">" if info[15] else "<") + ("I" if size == 4 else "Q")
        self._legacy = _Legacy(segments, pointer)
        for key, at in (("version", 16), ("modinfo", 16 + size)):
            (address,) = struct.unpack_from(pointer, info, at)
            self._want(f"{key} header", address, 2 * size)
        self._settle()

    def _want(self, key: str, address: int, size: int) -> None:
        """Read ``size`` bytes at virtual ``address``: from what was kept if they streamed past
        already, else as they come."""
        legacy = self._legacy
        assert legacy is not None and self._info is not None
        offset = _locate(legacy.segments, address, size)
        if offset is None:
            legacy.strings[key.removesuffix(" header")] = None
            return
        capture = _Capture(offset, size)
        kept: list[tuple[int, bytes | bytearray]] = [
            (0, self._head),
            (self._info_offset, self._info),
            self._recent,
        ]
        kept += [(c.offset, c.data) for c in self._candidates]
        for start, data in kept:
            if start <= offset and offset + size <= start + len(data):
                capture.take(start, data)
                self._got(key, bytes(capture.data))
                return
        if offset < self._offset:
            for start, data in kept[1:3]:  # they begin in bytes that end where the stream is
                if start <= offset < start + len(data) == self._offset:
                    capture.take(start, data)
                    break
            else:
                legacy.strings[key.removesuffix(" header")] = None  # passed, and not kept
                return
        legacy.waiting[key] = capture

    def _got(self, key: str, data: bytes) -> None:
        legacy = self._legacy
        assert legacy is not None
        if not key.endswith(" header"):
            legacy.strings[key] = data
            return
        name = key.removesuffix(" header")
        address, length = struct.unpack(legacy.pointer + legacy.pointer[1], data)
        if length > (MAX_VERSION if name == "version" else MAX_INFO):
            legacy.strings[name] = None
        elif length == 0:
            legacy.strings[name] = b""
        else:
            self._want(name, address, length)

    def _settle(self) -> None:
        legacy = self._legacy
        assert legacy is not None
        for key, capture in list(legacy.waiting.items()):
            if capture.complete:
                del legacy.waiting[key]
                self._got(key, bytes(capture.data))
        if legacy.waiting or len(legacy.strings) < 2:
            return
        version, modinfo = legacy.strings["version"], legacy.strings["modinfo"]
        self.found = version + b"\0" + (modinfo or b"") if version else b""


def _locate(segments: list[_Segment], address: int, size: int) -> int | None:
    """The file offset of ``size`` bytes at virtual ``address``: the first segment holding
    ``address`` must hold them all."""
    for segment in segments:
        if segment.vaddr <= address < segment.vaddr + segment.size:
            if address + size > segment.vaddr + segment.size:
                return None
            return segment.offset + address - segment.vaddr
    return None


def _cut_at_end(candidate: _Capture) -> None:
    """Module information ends with the end sentinel: keep no more."""
    end = candidate.data.find(_END, len(_START))
    if end >= 0:
        del candidate.data[end + len(_END) :]
        candidate.size = len(candidate.data)


def _varint(data: bytes, position: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, position


def parse_buildinfo(found: bytes, *, database: str) -> list[Package]:
    """The main module and dependencies of ``BuildInfoFinder.found`` (``version\\0modinfo``)."""
    if not found:
        return []
    raw_version, _, modinfo = found.partition(b"\0")
    if len(modinfo) >= 33 and modinfo.startswith(_START) and modinfo[-16:] == _END:
        modinfo = modinfo[16:-16]
    elif modinfo:
        raise PackageDataError("Go module information without its sentinels", subject=database)
    toolchain = text(raw_version)
    main = ""
    packages: list[Package] = []
    for line in text(modinfo).split("\n"):
        fields = line.split("\t")
        if fields[0] == "mod" and len(fields) >= 3:
            main = fields[1]
            packages.append(_module(fields[1], fields[2], database, main, toolchain))
        elif fields[0] == "dep" and len(fields) >= 3:
            packages.append(_module(fields[1], fields[2], database, main, toolchain))
        elif fields[0] == "=>" and len(fields) >= 3 and packages:
            # the module above was replaced: built from another path (a local directory has
            # no version); the module keeps its name, the replacement's version when it has one
            replaced = packages.pop()
            version = fields[2] or replaced.version
            packages.append(_module(replaced.name, version, database, main, toolchain))
    if not packages and toolchain:
        packages.append(_module("stdlib", toolchain, database, main, toolchain))
    return packages


def _module(path: str, version: str, database: str, main: str, toolchain: str) -> Package:
    return Package(Ecosystem.GO, path, version, database, database, source=main or toolchain)
