"""Go binaries' embedded build information (``runtime/debug.BuildInfo``), as Go ≥ 1.18 writes
it in the ``.go.buildinfo`` section: the magic ``\\xff Go buildinf:`` at a 16-byte boundary,
a 32-byte header (pointer size, flags: bit 1 says the strings follow inline), then two
varint-length strings: the Go version and the module information between two 16-byte
sentinels (``path``, ``mod``, ``dep`` and ``=>`` replacement lines, tab separated).

``BuildInfoFinder`` is fed a file's bytes in chunks (the tar stream's) and keeps only a short
tail between chunks and, once the magic is found, at most ``MAX_INFO`` bytes after it.
Binaries of Go before 1.18 point at the strings instead (virtual addresses): not read.
"""

from __future__ import annotations

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAGIC = b"\xff Go buildinf:"
ALIGN = 16
HEADER = 32
MAX_INFO = 1024 * 1024  # the version and module strings, together
_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
_END = bytes.fromhex("f932433186182072008242104116d8f2")


class BuildInfoFinder:
    """Feed a file's bytes in order; ``found`` holds the build information once complete."""

    def __init__(self) -> None:
        self._position = 0  # file offset of the first byte of _tail
        self._tail = b""
        self._info: bytearray | None = None
        self.found: bytes | None = None

    @property
    def done(self) -> bool:
        return self.found is not None or (
            self._info is not None and len(self._info) >= HEADER + MAX_INFO
        )

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        if self._info is not None:
            self._info += chunk[: HEADER + MAX_INFO - len(self._info)]
            self._complete()
            return
        data = self._tail + chunk
        start = 0
        while True:
            at = data.find(MAGIC, start)
            if at < 0:
                break
            if (self._position + at) % ALIGN == 0:
                self._info = bytearray(data[at : at + HEADER + MAX_INFO])
                self._complete()
                return
            start = at + 1
        keep = len(MAGIC) - 1
        self._position += max(0, len(data) - keep)
        self._tail = data[-keep:]

    def _complete(self) -> None:
        assert self._info is not None
        info = bytes(self._info)
        if len(info) < HEADER:
            return
        if not info[15] & 2:
            self.found = b""  # Go < 1.18: pointers, not read
            return
        strings, position = [], HEADER
        for _ in range(2):
            length, position = _varint(info, position)
            if length is None or position + length > len(info):
                return  # wait for more bytes (or give up at MAX_INFO)
            strings.append(info[position : position + length])
            position += length
        self.found = b"\0".join(strings)


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
