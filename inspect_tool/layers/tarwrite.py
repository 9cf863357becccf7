"""One deterministic POSIX (pax) tar writer for every filesystem tree dockscope exports: a
container's writable layer or merged view (runtime_lab) and a container in engine storage
(inspect_tool.storage). The callers say what an item is called, its stat, its tar header and
how to open its bytes; the writer streams the bytes, writes hard links as links to the first
name of an inode, leaves sockets out (reported), and counts what it wrote."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.whiteout import OPAQUE_MARKER, OVERLAY_XATTR_PREFIXES

_CHUNK = 1 << 20

T = TypeVar("T")


@dataclass(slots=True)
class TarStats:
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
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Item:
    """What the writer needs to know about one entry."""

    name: str  # the path inside the tar, without a leading "/"
    st: os.stat_result
    marker: bool  # a whiteout or opaque marker made by the export, not a file of the tree


class TarWriter(Generic[T]):
    def __init__(
        self,
        out: Sink,
        *,
        describe: Callable[[T], Item],
        header: Callable[[T], tarfile.TarInfo],
        open_data: Callable[[T], tuple[int, str]],  # (descriptor, name for errors)
        error: type[DockscopeError] = DockscopeError,
    ) -> None:
        self._out = out
        self._describe = describe
        self._header = header
        self._open_data = open_data
        self._error = error
        self._written = 0
        self._links: dict[tuple[int, int], str] = {}
        self.stats = TarStats()

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._written += len(data)

    def add(self, entry: T) -> None:
        item, stats = self._describe(entry), self.stats
        st = item.st
        if not item.marker and stat.S_ISSOCK(st.st_mode):
            stats.skipped.append(("/" + item.name, "a socket cannot be stored in a tar"))
            return
        info = self._header(entry)
        if not item.marker and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:  # the inode's metadata, as tar writes a link
                info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
                self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                stats.hardlinks += 1
                return
            self._links[key] = item.name
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if item.marker:
            if item.name.rsplit("/", 1)[-1] == OPAQUE_MARKER:
                stats.opaque += 1
            else:
                stats.whiteouts += 1
        elif info.type == tarfile.DIRTYPE:
            stats.directories += 1
        elif info.type == tarfile.SYMTYPE:
            stats.symlinks += 1
        elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            stats.devices += 1
        elif info.type == tarfile.FIFOTYPE:
            stats.fifos += 1
        else:
            stats.files += 1
            self._data(entry, info.size)

    def _data(self, entry: T, size: int) -> None:
        fd, subject = self._open_data(entry)
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
        self.stats.bytes += size
        if size % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record (as tar writes it)."""
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        if self._written % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - self._written % tarfile.RECORDSIZE))
        self._out.flush()

    def write_all(self, entries: Iterable[T]) -> TarStats:
        for entry in entries:
            self.add(entry)
        self.close()
        return self.stats


def header(
    name: str,
    st: os.stat_result,
    *,
    marker: bool,
    readlink: Callable[[], str],
    xattrs: Callable[[], dict[str, bytes]],
) -> tarfile.TarInfo:
    """The tar header of one entry of a tree on disk (the same for a runtime container and
    one in engine storage): numeric owners only, nanosecond mtimes (PAX), xattrs but the union
    filesystem's own. A marker (a whiteout or opaque marker) is docker's form: an empty file
    with the permissions and owner of what it stands for."""
    info = tarfile.TarInfo(name)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    pax: dict[str, str] = {}
    seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if nanos and seconds >= 0:
        pax["mtime"] = f"{seconds}.{nanos:09d}".rstrip("0")
    if marker:
        info.type = tarfile.REGTYPE
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.pax_headers = pax
        return info
    mode = st.st_mode
    info.mode = stat.S_IMODE(mode)
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE  # written with a trailing "/", as tar writes directories
    elif stat.S_ISREG(mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = readlink()
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    for key, value in xattrs().items():
        if not key.startswith(OVERLAY_XATTR_PREFIXES):
            pax[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    return info
