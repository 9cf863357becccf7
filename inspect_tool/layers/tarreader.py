"""A pull reader for a layer's tar stream: iterate members, read the current one's data.

Unlike ``tarfile`` it never seeks, never extracts, keeps each header's raw fields (names are
not cleaned: that is the consumer's job, and a hostile name must reach it intact to be
reported), and reads the stream exactly once, so the caller's hashes cover every byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from inspect_tool.layers.tarformat import (
    BLOCK,
    MAX_META,
    META_TYPES,
    NO_DATA,
    ZERO_BLOCK,
    EntryType,
    RawHeader,
    TarFormatError,
    apply_pax,
    cstr,
    entry_type,
    normalize_member,
    padded,
    parse_header,
    parse_pax,
)

_SKIP_CHUNK = 1024 * 1024


@dataclass(slots=True)
class TarMember:
    name: str  # as stored, after long-name extensions
    type: EntryType
    typeflag: str
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: float
    size: int  # bytes of data that follow (regular files only)
    linkname: str
    devmajor: int
    devminor: int
    offset: int  # of the header in the tar stream
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The name as a relative path (``./a/`` → ``a``); not checked for safety."""
        return normalize_member(self.name)


class TarReader:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pos = 0
        self._left = 0  # data bytes of the current member not read yet
        self._pad = 0
        self.ended = False  # the end-of-archive marker was seen

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        while len(data) < size:
            more = self._stream.read(size - len(data))
            if not more:
                break
            data += more
        self._pos += len(data)
        return data

    def _skip(self, size: int) -> None:
        while size > 0:
            chunk = self._stream.read(min(size, _SKIP_CHUNK))
            if not chunk:
                raise TarFormatError(f"tar stream ends inside a member's data at byte {self._pos}")
            self._pos += len(chunk)
            size -= len(chunk)

    def read(self, size: int = -1) -> bytes:
        """Data of the current member (at most ``size`` bytes; all that is left for -1)."""
        if size < 0 or size > self._left:
            size = self._left
        if size == 0:
            return b""
        data = self._stream.read(size)
        if not data:
            raise TarFormatError(f"tar stream ends inside a member's data at byte {self._pos}")
        self._pos += len(data)
        self._left -= len(data)
        return data

    def iter_data(self, chunk: int = _SKIP_CHUNK) -> Iterator[bytes]:
        while data := self.read(chunk):
            yield data

    def __iter__(self) -> Iterator[TarMember]:
        pax_global: dict[str, bytes] = {}
        pax: dict[str, bytes] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            self._skip(self._left + self._pad)
            self._left = self._pad = 0
            offset = self._pos
            block = self._read(BLOCK)
            if not block:
                return  # no end-of-archive marker: tar accepts it, so do we
            if len(block) < BLOCK:
                raise TarFormatError(f"tar stream ends inside a header at byte {offset}")
            if block == ZERO_BLOCK:
                second = self._read(BLOCK)
                if second == ZERO_BLOCK or not second:
                    self.ended = True
                    return
                raise TarFormatError(f"a lone zero block at byte {offset}")
            header = parse_header(block, offset)
            if header.typeflag in META_TYPES:
                if header.size > MAX_META:
                    raise TarFormatError(f"extended header of {header.size} bytes at {offset}")
                payload = self._read(header.size)
                if len(payload) < header.size:
                    raise TarFormatError(f"tar stream ends inside an extended header at {offset}")
                self._skip(padded(header.size) - header.size)
                if header.typeflag == "x":
                    pax.update(parse_pax(payload))
                elif header.typeflag == "g":
                    pax_global.update(parse_pax(payload))
                elif header.typeflag == "L":
                    long_name = cstr(payload)
                else:
                    long_link = cstr(payload)
                continue
            if long_name is not None:
                header.name, long_name = long_name, None
            if long_link is not None:
                header.linkname, long_link = long_link, None
            if pax_global or pax:
                apply_pax(header, {**pax_global, **pax}, offset)
                pax = {}
            member = _member(header, offset)
            self._left = member.size
            self._pad = padded(member.size) - member.size
            yield member


def _member(header: RawHeader, offset: int) -> TarMember:
    kind = entry_type(header.typeflag)
    size = 0 if header.typeflag in NO_DATA else header.size
    return TarMember(
        name=header.name,
        type=kind,
        typeflag=header.typeflag,
        mode=header.mode & 0o7777,
        uid=header.uid,
        gid=header.gid,
        uname=header.uname,
        gname=header.gname,
        mtime=header.mtime,
        size=size,
        linkname=header.linkname,
        devmajor=header.devmajor,
        devminor=header.devminor,
        offset=offset,
        xattrs=header.xattrs,
    )
