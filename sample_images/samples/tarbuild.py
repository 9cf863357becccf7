"""Tar archives as Go's ``archive/tar`` writes them (Docker, BuildKit), and the compression
of layers (gzip as Go writes it, zstd as containerd and BuildKit do)."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

import zstandard

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
_TAR_TYPES = {
    FILE: tarfile.REGTYPE,
    DIR: tarfile.DIRTYPE,
    SYMLINK: tarfile.SYMTYPE,
    HARDLINK: tarfile.LNKTYPE,
}


@dataclass(frozen=True)
class TarEntry:
    """One tar member. ``name`` has no leading ``/`` and no trailing ``/``."""

    name: str
    kind: str = FILE
    data: bytes = b""
    mode: int = 0o644
    mtime: int = 0
    uid: int = 0
    gid: int = 0
    linkname: str = ""


def walk_key(name: str) -> tuple[str, ...]:
    """Order in which Go's filepath.Walk visits paths: a directory, then its sorted children.

    Comparing component tuples (not whole strings) keeps ``a/`` and ``a/b`` before ``a-b``.
    """
    return tuple(name.split("/"))


def build_tar(entries: Iterable[TarEntry]) -> bytes:
    """Serialise entries as Go's archive/tar writer does.

    Headers are ustar (PAX records only if a field needs them, which ours never do), data is
    padded to 512 bytes, and the archive ends with two zero blocks and no further record
    padding (Python's tarfile would pad to 10240 bytes; Docker and BuildKit do not).
    """
    ordered = sorted(entries, key=lambda entry: walk_key(entry.name))
    names = [entry.name for entry in ordered]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tar member names in {names}")
    out = bytearray()
    for entry in ordered:
        info = tarfile.TarInfo(entry.name)
        info.type = _TAR_TYPES[entry.kind]
        info.mode = entry.mode
        info.mtime = entry.mtime
        info.uid, info.gid = entry.uid, entry.gid
        info.uname = info.gname = ""
        info.linkname = entry.linkname
        info.size = len(entry.data) if entry.kind == FILE else 0
        out += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.size:
            out += entry.data
            out += b"\0" * (-len(entry.data) % tarfile.BLOCKSIZE)
    out += b"\0" * (2 * tarfile.BLOCKSIZE)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------

GZIP_LEVEL = 6  # Go's gzip.DefaultCompression; with it Python writes the same 10-byte header
ZSTD_LEVEL = 3  # zstd's default level, as containerd and BuildKit use


def gzip_compress(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name: header 1f8b 08 00 00000000 00 ff, as Go writes it."""
    buffer = io.BytesIO()
    with gzip.GzipFile(
        fileobj=buffer, mode="wb", mtime=0, filename="", compresslevel=GZIP_LEVEL
    ) as stream:
        stream.write(data)
    return buffer.getvalue()


def zstd_compress(data: bytes) -> bytes:
    """One zstd frame with content size and checksum, like BuildKit's zstd layers."""
    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=True
    )
    return compressor.compress(data)


def compression_of(media_type: str) -> str:
    """Compression a layer media type declares: ``none``, ``gzip`` or ``zstd``."""
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "none"


def sniff_compression(blob: bytes) -> str:
    """Compression the first bytes show, independently of any media type."""
    if blob.startswith(b"\x1f\x8b"):
        return "gzip"
    if blob.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"
