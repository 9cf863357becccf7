"""A pull reader for a layer's tar stream: iterate members, read the current one's data.

It drives the decoder of tarformat (Go's archive/tar rules, so a layer reads here as it reads
in Docker and containerd). Unlike ``tarfile`` it never seeks, never extracts, keeps each
header's raw fields (names are not cleaned: that is the consumer's job, and a hostile name must
reach it intact to be reported), and reads the stream exactly once, so the caller's hashes
cover every byte. A sparse file reads as its logical content, holes as zeros.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO

from inspect_tool.layers.tarformat import (
    BLOCK,
    MAX_ENTRIES,
    MAX_META,
    NO_DATA,
    EntryType,
    PlainFields,
    RawHeader,
    TarDecoder,
    TarFormatError,
    Want,
    entry_type,
    mtime_of,
    normalize_member,
    plain_fields,
)

__all__ = ["MAX_META", "HeaderReader", "TarFormatError", "TarMember", "TarReader"]

_SKIP_CHUNK = 1024 * 1024
_MTIMES = 1024  # distinct mtimes a reader keeps parsed


@dataclass(slots=True)
class TarMember:
    """One entry of a layer's tar as the reader yields it: its name as stored, its type and
    metadata, and where its header and bytes lie in the stream."""

    name: str  # as stored, after long-name extensions
    type: EntryType
    typeflag: str  # after Go's rules: NUL is "0", or "5" for a name ending in "/"
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: float
    size: int  # bytes of content (a sparse file's logical size; 0 for header-only types)
    linkname: str
    devmajor: int
    devminor: int
    offset: int  # of the header in the tar stream
    xattrs: dict[str, bytes] = field(default_factory=dict)
    mtime_ns: int = 0
    # where its stored bytes start in the tar stream; -1 for a sparse file (its bytes are
    # fragments with holes between) and for a member made by hand
    data_offset: int = -1

    @property
    def path(self) -> str:
        """The name as a relative path (``./a/`` → ``a``); not checked for safety."""
        return normalize_member(self.name)

    def __reduce__(self) -> tuple[Callable[..., TarMember], tuple[Any, ...]]:
        """Pickled as its fields in order: members cross from the workers that read layers
        by the hundred thousand, and this halves the time dataclasses' own state takes."""
        return TarMember, _FIELDS(self)


_FIELDS = operator.attrgetter(*(f.name for f in fields(TarMember)))


class _Decoding:
    """What a reader's decoder tells of the stream read so far."""

    _decoder: TarDecoder

    @property
    def ended(self) -> bool:
        """The end-of-archive marker was seen."""
        return self._decoder.ended

    @property
    def ambiguities(self) -> list[str]:
        return self._decoder.ambiguities


class TarReader(_Decoding):
    """Headers of the common kind (``tarformat.plain_fields``) are read without the decoder's
    state machine, the others through it; both give the same members (``plain_headers=False``
    reads every header with the decoder, for comparison)."""

    def __init__(self, stream: BinaryIO, *, plain_headers: bool = True) -> None:
        self._stream = stream
        self._plain_ok = plain_headers
        self._decoder = TarDecoder()
        self._left = 0  # logical bytes of the current member not read yet
        self._logical = 0  # position in the current member's logical content
        self._fragments: list[tuple[int, int]] | None = None

    def _read_stream(self, size: int) -> bytes:
        data = self._stream.read(size)
        while len(data) < size:
            more = self._stream.read(size - len(data))
            if not more:
                break
            data += more
        return data

    def _stored(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current member's stored data."""
        decoder = self._decoder
        assert decoder.want is Want.DATA
        size = min(size, decoder.need)
        data = self._stream.read(size) if size else b""
        if not data:
            if size:
                decoder.eof(0)
            return b""
        decoder.skip(len(data))
        return data

    def read(self, size: int = -1) -> bytes:
        """Data of the current member (at most ``size`` bytes; all that is left for -1)."""
        if size < 0 or size > self._left:
            size = self._left
        if size == 0:
            return b""
        data = self._stored(size) if self._fragments is None else self._sparse(size)
        self._left -= len(data)
        self._logical += len(data)
        return data

    def _sparse(self, size: int) -> bytes:
        assert self._fragments is not None
        pos = self._logical
        while self._fragments and self._fragments[0][0] + self._fragments[0][1] <= pos:
            self._fragments.pop(0)
        if not self._fragments or pos < self._fragments[0][0]:  # in a hole
            hole_end = self._fragments[0][0] if self._fragments else pos + self._left
            return bytes(min(size, hole_end - pos))
        start, length = self._fragments[0]
        return self._stored(min(size, start + length - pos))

    def iter_data(self, chunk: int = _SKIP_CHUNK) -> Iterator[bytes]:
        while data := self.read(chunk):
            yield data

    def __iter__(self) -> Iterator[TarMember]:
        decoder = self._decoder
        mtimes: dict[bytes, tuple[float, int]] = {}  # a layer's files share a few mtimes
        while True:
            want = decoder.want
            if want is Want.END:
                return
            if want in (Want.DATA, Want.PAD):  # what the consumer left unread
                chunk = self._stream.read(min(decoder.need, _SKIP_CHUNK))
                if chunk:
                    decoder.skip(len(chunk))
                else:
                    decoder.eof(0)
                continue
            need = decoder.need
            data = self._read_stream(need)
            if len(data) < need:
                decoder.eof(len(data))
                continue
            if (
                self._plain_ok
                and decoder.idle
                and decoder.entries < MAX_ENTRIES
                and (values := plain_fields(data)) is not None
            ):
                member = _plain(values, decoder.pos, mtimes)
                decoder.took_plain(member.data_offset, decoder.entries + 1, member.size)
                self._left = member.size
                self._logical = 0
                yield member
                self._left = 0
                continue
            entry = decoder.feed(data)
            if entry is not None:
                data_offset = decoder.pos if entry.fragments is None else -1
                member = _member(entry.header, entry.offset, data_offset)
                self._left = member.size
                self._logical = 0
                self._fragments = list(entry.fragments) if entry.fragments is not None else None
                yield member
                self._left = 0
                self._fragments = None


class HeaderReader(_Decoding):
    """Every member of a tar stream handed over in chunks, none of their bytes read: for a
    reader that wants the members alone (a plan of the final tree). The members are
    ``TarReader``'s, read by the same rules; headers of the common kind are read in place in
    the chunk and the data after them skipped by offset (no copy, no call per piece), the
    others go through the decoder block by block. ``next_chunk`` gives the stream's next
    piece, b"" at its end (``Prefetcher.chunk``)."""

    def __init__(self, next_chunk: Callable[[], bytes], *, plain_headers: bool = True) -> None:
        self._next = next_chunk
        self._plain_ok = plain_headers
        self._decoder = TarDecoder()
        self._buf = b""  # the current chunk
        self._at = 0  # the next unread byte in it

    def _take(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer where the stream ends)."""
        buf, at = self._buf, self._at
        if len(buf) - at >= size:
            self._at = at + size
            return buf[at : at + size]
        parts = [buf[at:]]
        got = len(buf) - at
        self._buf, self._at = b"", 0
        while got < size:
            chunk = self._next()
            if not chunk:
                break
            step = min(size - got, len(chunk))
            parts.append(chunk[:step])
            got += step
            self._buf, self._at = chunk, step
        return b"".join(parts)

    def _skip(self, size: int) -> int:
        """Pass over the next ``size`` bytes; how many there were."""
        left = size
        while True:
            have = len(self._buf) - self._at
            if left <= have:
                self._at += left
                return size
            left -= have
            self._buf, self._at = self._next(), 0
            if not self._buf:
                return size - left

    def __iter__(self) -> Iterator[TarMember]:
        decoder = self._decoder
        plain_ok = self._plain_ok
        mtimes: dict[bytes, tuple[float, int]] = {}  # a layer's files share a few mtimes
        while True:
            want = decoder.want
            if want is Want.END:
                return
            if want is Want.DATA or want is Want.PAD:
                need = decoder.need
                got = self._skip(need)
                if got:
                    decoder.skip(got)
                if got < need:
                    decoder.eof(0)
                continue
            if plain_ok and decoder.idle:
                # plain headers one after another in this chunk, the data between skipped;
                # the decoder is told where they stopped
                buf, at = self._buf, self._at
                end = len(buf)
                base = decoder.pos - at  # the stream offset of buf[0]
                entries = first = decoder.entries
                stored = 0  # the last one's data that lies beyond this chunk
                while end - at >= BLOCK and entries < MAX_ENTRIES:
                    values = plain_fields(buf[at : at + BLOCK])
                    if values is None:
                        break
                    entries += 1
                    member = _plain(values, base + at, mtimes)
                    at += BLOCK
                    size = member.size
                    span = (size + BLOCK - 1) & -BLOCK
                    if end - at >= span:
                        at += span
                        yield member
                        continue
                    stored = size
                    yield member
                    break
                if entries != first:
                    self._at = at
                    decoder.took_plain(base + at, entries, stored)
                    continue
                # a header of another kind, or one across chunks: the decoder reads it
            need = decoder.need
            data = self._take(need)
            if len(data) < need:
                decoder.eof(len(data))
                continue
            entry = decoder.feed(data)
            if entry is not None:
                data_offset = decoder.pos if entry.fragments is None else -1
                yield _member(entry.header, entry.offset, data_offset)


def _plain(values: PlainFields, offset: int, mtimes: dict[bytes, tuple[float, int]]) -> TarMember:
    """The member of a plain header (``tarformat.plain_fields``) at ``offset``, its mtime
    taken from ``mtimes`` (parsed values by field, kept up to ``_MTIMES``)."""
    name, flag, size, mode, uid, gid, digits, link, uname, gname, major, minor = values
    times = mtimes.get(digits)
    if times is None:
        times = mtime_of(digits)
        if len(mtimes) < _MTIMES:
            mtimes[digits] = times
    return TarMember(
        name, entry_type(flag), flag, mode & 0o7777, uid, gid, uname, gname, times[0],
        0 if flag in NO_DATA else size, link, major, minor, offset, {}, times[1], offset + BLOCK,
    )  # fmt: skip


def _member(header: RawHeader, offset: int, data_offset: int) -> TarMember:
    size = 0 if header.typeflag in NO_DATA else header.size
    return TarMember(
        name=header.name,
        type=entry_type(header.typeflag),
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
        mtime_ns=header.mtime_ns,
        data_offset=data_offset,
    )
