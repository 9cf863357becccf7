"""The one tar writer: every tar dockscope writes is written here. ``export`` (an image's
merged filesystem), ``container export`` and ``container commit``'s new layer (a runtime
container), ``container export --storage`` and ``storage save`` (engine storage).

``header`` is the only code that makes a tar header, whatever the entry came from (a layer's
tar member, a file on disk): POSIX pax; numeric owners (with the user and group names only
where an image recorded them); the mtime in whole seconds, its nanoseconds as a PAX record;
extended attributes as ``SCHILY.xattr.NAME`` records sorted by name, never overlayfs's own
(``trusted.overlay.*``, ``user.overlay.*``); a directory's name ending in "/"; a hard link
with its inode's metadata but no size and no device numbers.

``TarWriter`` writes entries in the order given: every name of an inode after the first
becomes a hard link to the first name, file bytes are streamed (or, on a seekable output,
their place reserved and filled later), sockets are left out and reported (a tar cannot hold
one), and everything written is counted (``TarStats``).
"""

from __future__ import annotations

import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast

from inspect_tool.diskio import pwrite_all, write_to
from inspect_tool.errors import DockscopeError
from inspect_tool.layers.whiteout import OPAQUE_MARKER, OVERLAY_XATTR_PREFIXES

_CHUNK = 1 << 20
SOCKET_REASON = "a socket cannot be stored in a tar"

# what a header may say an entry is (a hard link is written by the writer, never asked for)
ENTRY_TYPES = (
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
)


@dataclass(slots=True)
class TarStats:
    """Counts of what a tar written by ``TarWriter`` holds, by kind of entry, with the bytes of file
    content and the entries left out and why."""

    directories: int = 0
    files: int = 0
    hardlinks: int = 0
    symlinks: int = 0
    devices: int = 0
    fifos: int = 0
    whiteouts: int = 0  # ".wh.NAME" entries
    opaque: int = 0  # ".wh..wh..opq" entries
    bytes: int = 0  # regular-file content
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...

    def flush(self) -> None: ...


class SeekableSink(Sink, Protocol):
    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class TarHeader:
    """What one header says, whatever the entry came from."""

    name: str  # the path inside the tar, without a leading "/" (nor a trailing one)
    type: bytes  # one of ENTRY_TYPES
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0  # regular files
    linkname: str = ""  # symlinks
    devmajor: int = 0  # character and block devices
    devminor: int = 0
    uname: str = ""  # as an image recorded them; empty for a tree on disk
    gname: str = ""
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


def header(entry: TarHeader, *, link_to: str | None = None) -> tarfile.TarInfo:
    """The tar header of ``entry`` (``link_to``: as a hard link to that name, written first)."""
    if entry.type not in ENTRY_TYPES:
        raise ValueError(f"no tar header for entry type {entry.type!r}")
    info = tarfile.TarInfo(entry.name)  # tarfile ends a directory's name with "/"
    info.type = entry.type
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname, info.gname = entry.uname, entry.gname
    pax: dict[str, str] = {}
    seconds, nanos = divmod(entry.mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if nanos and seconds >= 0:
        pax["mtime"] = f"{seconds}.{nanos:09d}".rstrip("0")
    if entry.type == tarfile.REGTYPE:
        info.size = entry.size
    elif entry.type == tarfile.SYMTYPE:
        info.linkname = entry.linkname
    elif entry.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = entry.devmajor, entry.devminor
    if link_to is not None:
        info.type, info.linkname, info.size = tarfile.LNKTYPE, link_to, 0
        info.devmajor = info.devminor = 0
    for key in sorted(entry.xattrs):
        if not key.startswith(OVERLAY_XATTR_PREFIXES):  # the union filesystem's, not content
            pax[f"SCHILY.xattr.{key}"] = entry.xattrs[key].decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    return info


# -- entries of a tree on disk --------------------------------------------------------------------


def stat_header(
    name: str,
    st: os.stat_result,
    *,
    readlink: Callable[[], str],
    xattrs: Callable[[], Mapping[str, bytes]],
) -> TarHeader | None:
    """The entry of a file on disk (numeric owners only); None for a socket."""
    mode = st.st_mode
    devmajor = devminor = size = 0
    linkname = ""
    if stat.S_ISDIR(mode):
        kind = tarfile.DIRTYPE
    elif stat.S_ISREG(mode):
        kind, size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISLNK(mode):
        kind, linkname = tarfile.SYMTYPE, readlink()
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        devmajor, devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        kind = tarfile.FIFOTYPE
    else:
        return None
    return TarHeader(
        name,
        kind,
        stat.S_IMODE(mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        size=size,
        linkname=linkname,
        devmajor=devmajor,
        devminor=devminor,
        xattrs=xattrs(),
    )


def marker_header(name: str, st: os.stat_result) -> TarHeader:
    """A whiteout (``.wh.NAME``) or opaque marker in docker's form: an empty file with the
    permissions, owner and mtime of what it stands for."""
    return TarHeader(
        name,
        tarfile.REGTYPE,
        stat.S_IMODE(st.st_mode) & 0o777,
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
    )


# -- the writer -----------------------------------------------------------------------------------


class TarWriter:
    """Entries written in the order given, to ``out``. With ``seekable``, a regular file's
    content may be reserved (``add`` without ``data``) and written later (``fill``)."""

    def __init__(
        self,
        out: Sink,
        *,
        error: type[DockscopeError] = DockscopeError,
        seekable: bool = False,
    ) -> None:
        self._out = out
        self._error = error
        self._start = cast(SeekableSink, out).tell() if seekable else None
        self._written = 0
        self._links: dict[Hashable, str] = {}
        self.stats = TarStats()

    def _write(self, data: bytes) -> None:
        write_to(self._out, data)
        self._written += len(data)

    def skip(self, path: str, reason: str) -> None:
        """An entry a tar cannot hold, left out and reported."""
        self.stats.skipped.append((path, reason))

    def add(
        self,
        entry: TarHeader,
        *,
        inode: Hashable | None = None,
        marker: bool = False,
        data: Callable[[], tuple[int, str]] | None = None,
    ) -> int | None:
        """Write one entry. ``inode``: what identifies a hard-linked inode (every name of it
        but the first becomes a link to the first); ``marker``: a whiteout or opaque marker;
        ``data``: opens a regular file's bytes (a descriptor, and a name for errors), streamed
        now. A regular file without ``data`` has its content reserved: the offset to ``fill``
        is returned."""
        stats = self.stats
        if inode is not None:
            first = self._links.get(inode)
            if first is not None:
                self._write(encode(entry, link_to=first))
                stats.hardlinks += 1
                return None
            self._links[inode] = entry.name
        self._write(encode(entry))
        if marker:
            if entry.name.rsplit("/", 1)[-1] == OPAQUE_MARKER:
                stats.opaque += 1
            else:
                stats.whiteouts += 1
        elif entry.type == tarfile.DIRTYPE:
            stats.directories += 1
        elif entry.type == tarfile.SYMTYPE:
            stats.symlinks += 1
        elif entry.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            stats.devices += 1
        elif entry.type == tarfile.FIFOTYPE:
            stats.fifos += 1
        else:
            stats.files += 1
            stats.bytes += entry.size
            if data is None:
                return self._reserve(entry.size)
            self._stream(data, entry.size)
        return None

    def add_stat(
        self,
        name: str,
        st: os.stat_result,
        *,
        readlink: Callable[[], str],
        xattrs: Callable[[], Mapping[str, bytes]],
        data: Callable[[], tuple[int, str]],
        marker: bool = False,
    ) -> None:
        """One entry of a tree on disk: a socket left out (reported), hard links by
        device and inode number."""
        if marker:
            self.add(marker_header(name, st), marker=True)
            return
        entry = stat_header(name, st, readlink=readlink, xattrs=xattrs)
        if entry is None:
            self.skip("/" + name, SOCKET_REASON)
            return
        linked = entry.type != tarfile.DIRTYPE and st.st_nlink > 1
        self.add(entry, inode=(st.st_dev, st.st_ino) if linked else None, data=data)

    def _stream(self, data: Callable[[], tuple[int, str]], size: int) -> None:
        fd, subject = data()
        with os.fdopen(fd, "rb", buffering=0) as f:
            left = size
            while left > 0:
                chunk = f.read(min(left, _CHUNK))
                if not chunk:
                    break
                self._write(chunk)
                left -= len(chunk)
            if left or f.read(1):
                raise self._error(
                    f"the file changed size while it was read ({size} bytes expected)",
                    subject=subject,
                )
        self._pad(size)

    def _pad(self, size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def _seekable(self) -> tuple[SeekableSink, int]:
        if self._start is None:
            raise TypeError("content can be reserved only in a TarWriter made seekable")
        return cast(SeekableSink, self._out), self._start

    def _reserve(self, size: int) -> int:
        """Leave room for ``size`` bytes of content (padded to a block); their offset. Small
        room is written as zeros (the header and its room leave in one buffered write); large
        room is skipped with a seek."""
        out, _ = self._seekable()
        offset = self._written
        padded = size + (-size % tarfile.BLOCKSIZE)
        if padded <= ZERO_ROOM:
            self._write(bytes(padded))
            return offset
        out.seek(padded, os.SEEK_CUR)
        self._written += padded
        return offset

    @property
    def start(self) -> int:
        """Where the tar starts in a seekable output: reserved offsets count from here."""
        return self._seekable()[1]

    def fill(self, offset: int, reader: Readable, size: int, *, subject: str = "") -> None:
        """Write ``size`` bytes read from ``reader`` (and the padding) at ``offset``, a place
        ``add`` reserved (before or after ``close``, which leaves the output open)."""
        out, start = self._seekable()
        out.seek(start + offset)
        fill_content(out.write, reader, size, error=self._error, subject=subject)

    def close(self) -> TarStats:
        """The end-of-archive blocks, padded to a whole record (as tar writes it)."""
        if self._start is not None:
            cast(SeekableSink, self._out).seek(self._start + self._written)
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        if self._written % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - self._written % tarfile.RECORDSIZE))
        self._out.flush()
        return self.stats


ZERO_ROOM = 64 * 1024  # reserved room up to this is written as zeros, beyond it skipped


def fill_content(
    write: Callable[[bytes], object],
    reader: Readable,
    size: int,
    *,
    error: type[DockscopeError] = DockscopeError,
    subject: str = "",
) -> None:
    """``size`` bytes from ``reader``, then the padding to a block, each piece to ``write``."""
    left = size
    while left > 0:
        chunk = reader.read(min(left, _CHUNK))
        if not chunk:
            raise error(f"the content ended {left} bytes early", subject=subject)
        write(chunk)
        left -= len(chunk)
    if size % tarfile.BLOCKSIZE:
        write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))


class PositionalWriter:
    """Fills the places a seekable ``TarWriter`` reserved, with ``pwrite`` on the output's
    descriptor: the file's offset, which a forked process shares with its parent, is never
    moved, so processes can fill places side by side. ``start``: where the tar starts."""

    def __init__(
        self, fd: int, start: int, *, error: type[DockscopeError] = DockscopeError
    ) -> None:
        self.fd = fd
        self.start = start
        self._error = error

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        """``data`` at ``offset`` of the tar."""
        pwrite_all(self.fd, data, self.start + offset)

    def fill(self, offset: int, reader: Readable, size: int, *, subject: str = "") -> None:
        """As ``TarWriter.fill``."""
        written = 0

        def write(chunk: bytes) -> None:
            nonlocal written
            self.write_at(offset + written, chunk)
            written += len(chunk)

        fill_content(write, reader, size, error=self._error, subject=subject)


def encode(entry: TarHeader, *, link_to: str | None = None) -> bytes:
    """The header blocks of ``entry``: ``header`` encoded as POSIX pax by tarfile; the common
    entry (a file, directory, symlink or hard link whose every field fits a USTAR header:
    ASCII names that fit, whole-second mtime, no extended attributes) is laid out directly,
    the same bytes in ~a tenth of the time (tests/layers/test_tarwrite.py compares them)."""
    return _plain_ustar(entry, link_to) or _encode(header(entry, link_to=link_to))


def _device_filler() -> bytes:
    """The 16 bytes this Python's tarfile writes for a non-device's device numbers (NULs in
    recent versions, "0000000\0" twice in older ones)."""
    return tarfile.TarInfo("x").tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")[329:345]


_NO_DEVICE = _device_filler()
_USTAR = tarfile.POSIX_MAGIC
_PLAIN_TYPES = frozenset((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE))
_MAX_SMALL = 8**7  # 7 octal digits
_MAX_LARGE = 8**11  # 11 octal digits


def _plain_ustar(entry: TarHeader, link_to: str | None) -> bytes | None:
    kind = entry.type
    if kind not in _PLAIN_TYPES or entry.xattrs:
        return None
    seconds, nanos = divmod(entry.mtime_ns, 1_000_000_000)
    if nanos or not 0 <= seconds < _MAX_LARGE:
        return None
    uid, gid = entry.uid, entry.gid
    if not (0 <= uid < _MAX_SMALL and 0 <= gid < _MAX_SMALL):
        return None
    size, linkname = 0, ""
    if link_to is not None:
        kind, linkname = tarfile.LNKTYPE, link_to
    elif kind == tarfile.REGTYPE:
        size = entry.size
        if not 0 <= size < _MAX_LARGE:
            return None
    elif kind == tarfile.SYMTYPE:
        linkname = entry.linkname
    name = entry.name
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    if not (
        len(name) <= 100
        and len(linkname) <= 100
        and len(entry.uname) <= 32
        and len(entry.gname) <= 32
        and name.isascii()
        and linkname.isascii()
        and entry.uname.isascii()
        and entry.gname.isascii()
    ):
        return None
    block = b"".join(
        (
            name.encode("ascii").ljust(100, b"\0"),
            b"%07o\0%07o\0%07o\0%011o\0%011o\0        "
            % (entry.mode & 0o7777, uid, gid, size, seconds),
            kind,
            linkname.encode("ascii").ljust(100, b"\0"),
            _USTAR,
            entry.uname.encode("ascii").ljust(32, b"\0"),
            entry.gname.encode("ascii").ljust(32, b"\0"),
            _NO_DEVICE,
            bytes(167),  # the empty prefix and the block's padding
        )
    )
    # tarfile's checksum: the unsigned byte sum, the checksum field counted as spaces (as it
    # stands here); each half's sum is below adler32's modulus, so its low 16 bits are it
    total = (zlib.adler32(block[:256], 0) & 0xFFFF) + (zlib.adler32(block[256:], 0) & 0xFFFF)
    return b"%s%06o\0%s" % (block[:148], total, block[155:])


def _encode(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
