"""Read-only access to the files of an image source: a tar (plain or compressed) or a directory.

A tar is indexed once (member name → offset and size); a member's bytes are then streamed from
its offset, never extracted. A directory is read in place. Every path asked for is normalised
first and refused if it would leave the tree, and symlinks (in a tar or on disk) are resolved
as if the tree's root were ``/``, refusing any that point outside it.
"""

from __future__ import annotations

import bisect
import io
import os
import stat
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from inspect_tool.errors import (
    BlobNotFoundError,
    InvalidImageError,
    TruncatedError,
    UnsafePathError,
)
from inspect_tool.model.mediatypes import Compression, sniff_compression
from inspect_tool.model.resolve import (
    DIRECTORY,
    MAX_SYMLINKS,
    NOT_DIRECTORY,
    Escape,
    Node,
    Reason,
    Refusal,
    resolve,
    symlink,
)

HEAD_SIZE = 512
# Members up to this size are kept in memory when a compressed archive is indexed,
# so that manifests and configs can be read without a second pass.
SMALL_MEMBER = 4 * 1024 * 1024
SMALL_BUDGET = 64 * 1024 * 1024
CHUNK = 1024 * 1024
# Members of one archive: an image of 10,000 layers (the layer bound) stores a few files for
# each; Python's tarfile keeps every member it has read, so millions of empty members in a
# small compressed archive took 1.5 GB and minutes.
MAX_ARCHIVE_MEMBERS = 100_000
# An extended header or GNU long name in the archive (not a layer): Go's 1 MiB, as in layers.
# Python's tarfile reads any size into memory.
MAX_ARCHIVE_META = 1 << 20
_META_TYPES = frozenset(
    {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME}
    | {tarfile.GNUTYPE_LONGLINK}
)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member, refusing an extended header or long name over MAX_ARCHIVE_META
    before tarfile reads it whole, and counting the members read."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _META_TYPES and self.size > MAX_ARCHIVE_META:
            raise InvalidImageError(
                f"an archive member's extended header or long name of {self.size} bytes "
                f"exceeds the bound of {MAX_ARCHIVE_META} bytes"
            )
        return super()._proc_member(tarfile)  # type: ignore[misc,no-any-return]


def clean_path(path: str) -> str:
    """Normalise a relative path inside a tree; refuse one that climbs out of it."""
    if "\x00" in path:
        raise UnsafePathError(f"path contains a NUL byte: {path!r}")
    if path.startswith("/"):
        raise UnsafePathError(f"absolute path where a path inside the image is expected: {path}")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafePathError(f"path points outside the image: {path}")
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Entry:
    """One regular file of a tree after links are resolved."""

    path: str  # the path asked for, cleaned
    target: str  # the path of the file that holds the bytes
    size: int
    order: int  # read position; reading files in this order streams the source once


class Tree(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def compression(self) -> Compression | None:
        """How the whole archive is compressed (None: not compressed, or a directory)."""

    @property
    def parallel_reads(self) -> bool:
        """Whether several files can be read at once (False when reads must go forward)."""

    @property
    def forked_reads(self) -> bool:
        """Whether a forked child process may read files through this tree as it stands: each
        open makes its own descriptor (no shared cursor, connection or lock)."""

    def entry(self, path: str) -> Entry | None: ...

    def open(self, path: str) -> BinaryIO: ...

    def head(self, path: str, size: int = HEAD_SIZE) -> bytes: ...

    def read(self, path: str, limit: int) -> bytes: ...

    def names(self) -> list[str]: ...

    def close(self) -> None: ...


def read_limited(tree: Tree, path: str, limit: int) -> bytes:
    """Read a whole small file, refusing one larger than ``limit``."""
    entry = tree.entry(path)
    if entry is None:
        raise BlobNotFoundError("file is missing", subject=f"{tree.label}:{path}")
    if entry.size > limit:
        raise InvalidImageError(
            f"file is {entry.size} bytes, more than the {limit}-byte limit for metadata",
            subject=f"{tree.label}:{path}",
        )
    with tree.open(path) as stream:
        data = stream.read(limit + 1)
    if len(data) != entry.size:
        raise TruncatedError(
            f"read {len(data)} bytes where {entry.size} were expected",
            subject=f"{tree.label}:{path}",
        )
    return data


class OpenReads:
    """``head`` and ``read`` for a Tree whose ``open`` serves them as well as any (the
    first bytes of a stream; a whole small file through ``read_limited``)."""

    def head(self: Tree, path: str, size: int = HEAD_SIZE) -> bytes:
        with self.open(path) as stream:
            return stream.read(size)

    def read(self: Tree, path: str, limit: int) -> bytes:
        return read_limited(self, path, limit)


# ---------------------------------------------------------------------------------------------
# Tar archives


@dataclass(slots=True)
class _Member:
    """One member of a tar archive, where its data starts."""

    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    offset: int  # of the data in the (uncompressed) tar stream
    size: int
    linkname: str
    head: bytes
    data: bytes | None  # kept for small members of compressed archives


class _MemberReader(io.RawIOBase):
    """A bounded reader over one member of an uncompressed tar file, with its own handle."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._file.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        count = self._file.readinto(view)
        if not count:
            raise TruncatedError("archive ends inside a member")
        self._left -= count
        return count

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        if size == 0:
            return b""
        data = self._file.read(size)
        if len(data) < size:
            raise TruncatedError("archive ends inside a member")
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()
        super().close()


def _refuse(found: Refusal, path: str, *, member: str, where: str, subject: str) -> None:
    """Raise for a link that leaves the tree or loops; return for a path that is missing or
    passes through something that is not a directory (nothing stands there)."""
    link = found.via
    if found.reason is Reason.LOOP:
        raise UnsafePathError(f"too many levels of links resolving {path!r}", subject=subject)
    if found.reason is Reason.ABSOLUTE and link is not None:
        raise UnsafePathError(
            f"{member}{'/'.join(link.at)!r} is a symlink to an absolute path ({link.target}) "
            f"outside {where}",
            subject=subject,
        )
    if found.reason is Reason.ESCAPES:
        at, target = ("/".join(link.at), link.target) if link else (path, path)
        raise UnsafePathError(
            f"{member}{at!r} is a symlink that points outside {where} ({target})",
            subject=subject,
        )


class TarTree:
    """An indexed tar archive, optionally compressed as a whole with gzip or zstd."""

    def __init__(self, path: Path, compression: Compression) -> None:
        self.path = path
        self.label = str(path)
        self.compression: Compression | None = (
            None if compression is Compression.NONE else compression
        )
        self.parallel_reads = self.compression is None
        self.forked_reads = self.compression is None  # each open is a file of its own
        self._members: dict[str, _Member] = {}
        self._read = 0
        self._sorted: list[str] | None = None  # the members' names, for implicit directories
        # Members no lookup reaches (names that climb out) and names stored twice (the last
        # one wins, as when tar extracts): reported by verify as suspicious.
        self.anomalies: list[str] = []
        self._cursor: _ForwardStream | None = None
        self._lock = threading.Lock()
        try:
            self._index()
        except InvalidImageError as exc:
            raise exc.with_subject(self.label) from None
        except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
            raise _tar_error(exc, self.label) from exc

    # -- indexing ------------------------------------------------------------------------------
    def _index(self) -> None:
        if self.compression is None:
            file_size = self.path.stat().st_size
            with tarfile.open(
                self.path,
                mode="r:",
                encoding="utf-8",
                errors="surrogateescape",
                tarinfo=_BoundedTarInfo,
            ) as tf:
                for info in tf:
                    self._count()
                    if info.isfile() and info.offset_data + info.size > file_size:
                        raise TruncatedError(
                            f"archive ends inside member {info.name!r}", subject=self.label
                        )
                    self._add(info, None)
            with open(self.path, "rb") as f:
                for member in self._members.values():
                    if member.kind == "file" and member.size:
                        f.seek(member.offset)
                        member.head = f.read(min(HEAD_SIZE, member.size))
            return
        budget = SMALL_BUDGET
        with (
            self._decompressed() as raw,
            tarfile.open(
                fileobj=raw,
                mode="r|",
                encoding="utf-8",
                errors="surrogateescape",
                tarinfo=_BoundedTarInfo,
            ) as tf,
        ):
            for info in tf:
                self._count()
                data: bytes | None = None
                head = b""
                if info.isfile() and info.size:
                    extracted = tf.extractfile(info)
                    assert extracted is not None
                    if info.size <= SMALL_MEMBER and info.size <= budget:
                        data = extracted.read()
                        budget -= len(data)
                        head = data[:HEAD_SIZE]
                    else:
                        head = extracted.read(HEAD_SIZE)
                    if len(head) < min(HEAD_SIZE, info.size):
                        raise TruncatedError(
                            f"archive ends inside member {info.name!r}", subject=self.label
                        )
                self._add(info, data, head)

    def _count(self) -> None:
        self._read += 1
        if self._read > MAX_ARCHIVE_MEMBERS:
            raise InvalidImageError(
                f"the archive holds more than {MAX_ARCHIVE_MEMBERS} members "
                "(the bound of members read)",
                subject=self.label,
            )

    def _add(self, info: tarfile.TarInfo, data: bytes | None, head: bytes = b"") -> None:
        if info.isfile():
            kind = "file"
        elif info.isdir():
            kind = "dir"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        else:
            kind = "other"
        try:
            name = clean_path(info.name)
        except UnsafePathError:
            # a member that climbs out can never be reached by a clean lookup
            self.anomalies.append(f"member {info.name!r} has a name outside the archive")
            return
        if not name:
            return
        if name in self._members and kind != "dir":
            self.anomalies.append(f"member {name!r} is stored more than once (the last is used)")
        self._members[name] = _Member(
            name, kind, info.offset_data, info.size, info.linkname, head, data
        )

    def _decompressed(self) -> BinaryIO:
        """The archive's tar stream, decompressed; closing it closes the file."""
        if self.compression is Compression.GZIP:
            import gzip

            return gzip.open(self.path, "rb")  # type: ignore[return-value]
        import zstandard

        raw = open(self.path, "rb")  # noqa: SIM115 - closed with the reader (closefd)
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)

    # -- lookups -------------------------------------------------------------------------------
    def _resolve(self, path: str) -> _Member | None:
        """The member ``path`` names, symlinks resolved inside the archive (refused when they
        point out of it) and hard links followed to the member they name."""
        name = clean_path(path)
        for _ in range(MAX_SYMLINKS):
            found = resolve(name, self._lookup, escape=Escape.REFUSE)
            if isinstance(found, Refusal):
                _refuse(found, path, member="member ", where="the archive", subject=self.label)
                return None
            member = self._members.get("/".join(found.parts))
            if member is None or member.kind != "hardlink":
                return member
            try:
                name = clean_path(member.linkname)
            except UnsafePathError as exc:
                raise UnsafePathError(
                    f"member {member.name!r} is a hard link outside the archive "
                    f"({member.linkname})",
                    subject=self.label,
                ) from exc
        raise UnsafePathError(f"too many levels of links resolving {path!r}", subject=self.label)

    def _lookup(self, parts: tuple[str, ...]) -> Node | None:
        name = "/".join(parts)
        member = self._members.get(name)
        if member is None:
            # a directory the archive holds no entry for, only entries below it
            if self._sorted is None:
                self._sorted = sorted(self._members)
            below = name + "/"
            at = bisect.bisect_left(self._sorted, below)
            if at < len(self._sorted) and self._sorted[at].startswith(below):
                return DIRECTORY
            return None
        if member.kind == "symlink":
            return symlink(member.linkname)
        return DIRECTORY if member.kind == "dir" else NOT_DIRECTORY

    def entry(self, path: str) -> Entry | None:
        member = self._resolve(path)
        if member is None or member.kind != "file":
            return None
        return Entry(clean_path(path), member.name, member.size, member.offset)

    def names(self) -> list[str]:
        return sorted(name for name, m in self._members.items() if m.kind in ("file", "symlink"))

    def head(self, path: str, size: int = HEAD_SIZE) -> bytes:
        member = self._resolve(path)
        if member is None or member.kind != "file":
            raise BlobNotFoundError("file is missing", subject=f"{self.label}:{path}")
        if size <= len(member.head) or len(member.head) == member.size:
            return member.head[:size]
        with self.open(path) as stream:
            return stream.read(size)

    def read(self, path: str, limit: int) -> bytes:
        return read_limited(self, path, limit)

    def open(self, path: str) -> BinaryIO:
        member = self._resolve(path)
        if member is None or member.kind != "file":
            raise BlobNotFoundError("file is missing", subject=f"{self.label}:{path}")
        if member.data is not None:
            return io.BytesIO(member.data)
        if self.compression is None:
            return io.BufferedReader(_MemberReader(self.path, member.offset, member.size), CHUNK)
        return self._open_forward(member)

    def _open_forward(self, member: _Member) -> BinaryIO:
        # A compressed archive can only be read forwards: keep one decompressing cursor and
        # move it to the member; reading members in offset order reads the archive once.
        with self._lock:
            cursor = self._cursor
            if cursor is None or cursor.position > member.offset or cursor.busy:
                if cursor is not None and not cursor.busy:
                    cursor.close()
                cursor = _ForwardStream(self._decompressed())
                self._cursor = cursor
            cursor.skip_to(member.offset)
            return cursor.member(member.size)

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


class _ForwardStream:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.position = 0
        self.busy = False

    def skip_to(self, offset: int) -> None:
        while self.position < offset:
            chunk = self._stream.read(min(CHUNK, offset - self.position))
            if not chunk:
                raise TruncatedError("archive ends before a member's data")
            self.position += len(chunk)

    def member(self, size: int) -> BinaryIO:
        self.busy = True
        return _ForwardMember(self, size)  # type: ignore[return-value]

    def read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self.position += len(data)
        return data

    def close(self) -> None:
        self._stream.close()


class _ForwardMember(io.RawIOBase):
    def __init__(self, cursor: _ForwardStream, size: int) -> None:
        self._cursor = cursor
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        if size == 0:
            return b""
        out = bytearray()
        while len(out) < size:
            chunk = self._cursor.read(min(CHUNK, size - len(out)))
            if not chunk:
                raise TruncatedError("archive ends inside a member")
            out += chunk
        self._left -= len(out)
        return bytes(out)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._cursor.busy = False
        super().close()


def _tar_error(exc: BaseException, label: str) -> InvalidImageError:
    if isinstance(exc, InvalidImageError):
        return exc
    if isinstance(exc, EOFError | tarfile.ReadError) and "unexpected end" in str(exc).lower():
        return TruncatedError("archive is truncated", subject=label)
    if isinstance(exc, EOFError):
        return TruncatedError("archive is truncated", subject=label)
    return InvalidImageError(f"not a readable tar archive ({exc})", subject=label)


# ---------------------------------------------------------------------------------------------
# Directories


class DirTree(OpenReads):
    """A directory read in place; symlinks inside it resolve as if it were the root."""

    compression: Compression | None = None
    parallel_reads = True
    forked_reads = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _real(self, path: str) -> tuple[str, os.stat_result] | None:
        name = clean_path(path)

        def lookup(parts: tuple[str, ...]) -> Node | None:
            candidate = self.root / "/".join(parts)
            try:
                st = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(st.st_mode):
                return symlink(os.readlink(candidate))
            return DIRECTORY if stat.S_ISDIR(st.st_mode) else NOT_DIRECTORY

        found = resolve(name, lookup, escape=Escape.REFUSE)
        if isinstance(found, Refusal):
            _refuse(found, path, member="", where="the image directory", subject=self.label)
            return None
        final = "/".join(found.parts)
        return final, os.stat(self.root / final) if final else os.stat(self.root)

    def entry(self, path: str) -> Entry | None:
        found = self._real(path)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            return None
        return Entry(clean_path(path), found[0], found[1].st_size, 0)

    def open(self, path: str) -> BinaryIO:
        found = self._real(path)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            raise BlobNotFoundError("file is missing", subject=f"{self.label}:{path}")
        fd = os.open(self.root / found[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb", buffering=CHUNK)

    def names(self) -> list[str]:
        """Every file below the root, as os.walk lists them (a directory's files, sorted, then
        its subdirectories; symlinks to directories are not followed), without recursion:
        a hostile directory may be deeper than Python's stack."""
        out: list[str] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, rel) if rel else self.root) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError:
                continue
            subdirectories = []
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    subdirectories.append(path)
                else:
                    out.append(path)
            stack.extend(reversed(subdirectories))
        return out

    def close(self) -> None:
        pass


def open_tree(path: Path) -> Tree:
    """Open a directory, a tar, or a gzip- or zstd-compressed tar as a tree."""
    label = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidImageError("no such file or directory", subject=label) from None
    except OSError as exc:
        raise InvalidImageError(f"cannot read: {exc.strerror}", subject=label) from None
    if stat.S_ISDIR(st.st_mode):
        return DirTree(path)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidImageError("not a regular file or directory", subject=label)
    if st.st_size == 0:
        raise InvalidImageError("file is empty, not an image archive", subject=label)
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_SIZE)
    except OSError as exc:
        raise InvalidImageError(f"cannot read: {exc.strerror}", subject=label) from None
    kind = sniff_compression(head)
    if kind is Compression.UNKNOWN:
        raise InvalidImageError(
            f"not an image archive or layout ({describe_bytes(head)})", subject=label
        )
    return TarTree(path, kind)


def describe_bytes(head: bytes) -> str:
    """What libmagic says the bytes are, for messages about files that are not images."""
    try:
        import magic

        description = str(magic.from_buffer(head))
    except Exception:  # libmagic missing or failing: the message can do without it
        description = ""
    return description or "unrecognised content"
