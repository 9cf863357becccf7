"""The tar header format as image layers use it: ustar, GNU (long names, base-256 numbers) and
PAX (path, linkpath, size, mtime, uid, gid, xattrs). Shared by the push scanner (verify) and
the pull reader (everything that looks at a layer's files)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum

from inspect_tool.errors import InvalidImageError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
META_TYPES = frozenset("xgLK")  # PAX local, PAX global, GNU long name, GNU long link
MAX_META = 16 * 1024 * 1024


class TarFormatError(InvalidImageError):
    """A layer's tar stream is malformed or truncated."""


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    OTHER = "other"  # sparse files, volume headers, unknown types


_TYPES = {
    "0": EntryType.FILE,
    "\x00": EntryType.FILE,
    "7": EntryType.FILE,  # contiguous file
    "1": EntryType.HARDLINK,
    "2": EntryType.SYMLINK,
    "3": EntryType.CHAR,
    "4": EntryType.BLOCK,
    "5": EntryType.DIR,
    "6": EntryType.FIFO,
}
# Types whose size field never announces data that follows.
NO_DATA = frozenset("123456")


def entry_type(typeflag: str) -> EntryType:
    return _TYPES.get(typeflag, EntryType.OTHER)


@dataclass(slots=True)
class RawHeader:
    name: str
    typeflag: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    uname: str
    gname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


# name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic, version, uname, gname,
# devmajor, devminor, prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")


def parse_header(block: bytes, offset: int) -> RawHeader:
    """One 512-byte header block; raise TarFormatError when it is not a valid header."""
    (
        name,
        mode,
        uid,
        gid,
        size,
        mtime,
        chksum,
        typeflag,
        linkname,
        magic,
        _version,
        uname,
        gname,
        devmajor,
        devminor,
        prefix,
    ) = _HEADER.unpack(block)
    try:
        checksum = octal(chksum)
    except ValueError:
        raise TarFormatError(f"invalid tar header at byte {offset}") from None
    unsigned = sum(block) - sum(chksum) + 256  # the field itself counts as 8 spaces
    if checksum != unsigned and checksum != unsigned - 256 * sum(1 for b in block if b > 127):
        # (some old writers summed signed chars; tar accepts both, so do we)
        raise TarFormatError(f"invalid tar header at byte {offset} (checksum mismatch)")
    ustar = magic[:5] == b"ustar"
    try:
        header = RawHeader(
            name=cstr(name),
            typeflag=typeflag.decode("latin-1") or "\x00",
            size=number(size),
            mode=number(mode),
            uid=number(uid),
            gid=number(gid),
            mtime=float(number(mtime)),
            linkname=cstr(linkname),
            uname=cstr(uname),
            gname=cstr(gname),
            devmajor=number(devmajor) if ustar else 0,
            devminor=number(devminor) if ustar else 0,
        )
    except ValueError:
        raise TarFormatError(f"invalid numeric field in tar header at byte {offset}") from None
    if magic == b"ustar\x00" and prefix[0]:  # POSIX ustar: a prefix extends the name
        header.name = f"{cstr(prefix)}/{header.name}"
    return header


def apply_pax(header: RawHeader, records: dict[str, bytes], offset: int) -> None:
    """Let PAX records override the header's fields, as POSIX says they do."""
    try:
        if "path" in records:
            header.name = records["path"].decode("utf-8", "surrogateescape")
        if "linkpath" in records:
            header.linkname = records["linkpath"].decode("utf-8", "surrogateescape")
        if "size" in records:
            header.size = int(records["size"])
        if "uid" in records:
            header.uid = int(records["uid"])
        if "gid" in records:
            header.gid = int(records["gid"])
        if "mtime" in records:
            header.mtime = float(records["mtime"])
        if "uname" in records:
            header.uname = records["uname"].decode("utf-8", "surrogateescape")
        if "gname" in records:
            header.gname = records["gname"].decode("utf-8", "surrogateescape")
    except ValueError:
        raise TarFormatError(f"invalid PAX record at byte {offset}") from None
    if header.size < 0:
        raise TarFormatError(f"negative size at byte {offset}")
    for key, value in records.items():
        if key.startswith("SCHILY.xattr."):
            header.xattrs[key[len("SCHILY.xattr.") :]] = value


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def cstr(raw: bytes) -> str:
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "surrogateescape")


def octal(raw: bytes) -> int:
    end = raw.find(b"\x00")
    text = (raw if end < 0 else raw[:end]).strip()
    return int(text, 8) if text else 0


def number(raw: bytes) -> int:
    """A numeric field: octal text, or GNU base-256 when the high bit is set."""
    if raw and raw[0] & 0x80:
        value = int.from_bytes(raw, "big", signed=False)
        return value & ~(0x80 << (8 * (len(raw) - 1)))
    return octal(raw)


def parse_pax(payload: bytes) -> dict[str, bytes]:
    """PAX extended header records: ``"<len> key=value\\n"`` each."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(payload[pos:space])
        except ValueError:
            break
        if length <= 0 or pos + length > len(payload):
            break
        record = payload[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return records


def normalize_member(name: str) -> str:
    """A member name as a relative path: ``./a/b/`` and ``a/b`` are the same entry."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))
