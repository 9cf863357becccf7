"""The tar header format as image layers use it: ustar, GNU (long names, base-256 numbers) and
PAX (path, linkpath, size, mtime, uid, gid, xattrs). Shared by the push scanner (verify) and
the pull reader (everything that looks at a layer's files)."""

from __future__ import annotations

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


def parse_header(block: bytes, offset: int) -> RawHeader:
    """One 512-byte header block; raise TarFormatError when it is not a valid header."""
    try:
        checksum = octal(block[148:156])
    except ValueError:
        raise TarFormatError(f"invalid tar header at byte {offset}") from None
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if checksum != computed:
        raise TarFormatError(f"invalid tar header at byte {offset} (checksum mismatch)")
    try:
        size = number(block[124:136])
        mode = number(block[100:108])
        uid = number(block[108:116])
        gid = number(block[116:124])
        mtime = float(number(block[136:148]))
        devmajor = number(block[329:337]) if block[257:262] == b"ustar" else 0
        devminor = number(block[337:345]) if block[257:262] == b"ustar" else 0
    except ValueError:
        raise TarFormatError(f"invalid numeric field in tar header at byte {offset}") from None
    name = cstr(block[0:100])
    if block[257:263] == b"ustar\x00":  # POSIX ustar: a prefix field extends the name
        prefix = cstr(block[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    typeflag = block[156:157].decode("latin-1") or "\x00"
    return RawHeader(
        name=name,
        typeflag=typeflag,
        size=size,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime=mtime,
        linkname=cstr(block[157:257]),
        uname=cstr(block[265:297]),
        gname=cstr(block[297:329]),
        devmajor=devmajor,
        devminor=devminor,
    )


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
    text = raw.replace(b"\x00", b" ").strip()
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
