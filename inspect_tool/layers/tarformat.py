"""The tar format exactly as Go's ``archive/tar`` reads it, for that is how Docker, containerd,
buildkit and umoci read a layer: ustar, GNU (long names and links, base-256 numbers, old sparse
files) and PAX (records, sparse files). Where Go refuses a header, :class:`TarDecoder` raises
:class:`TarFormatError`; where image engines read the same bytes differently among themselves it
records an ambiguity. Shared by the push scanner (verify) and the pull reader (everything that
looks at a layer's files), which are both thin drivers of the one decoder.

Go's rules, as in its reader.go, strconv.go, format.go and common.go (Go 1.19 to 1.23):

- a header is valid when its checksum (octal, surrounding spaces and NULs ignored) equals the
  unsigned or the signed byte sum; the magic picks V7, USTAR, STAR or GNU; only USTAR and STAR
  headers have a name prefix, only non-V7 headers user/group names and device numbers; a GNU
  header whose atime/ctime do not parse takes the prefix (pre-Go 1.8 writers);
- numbers are octal (``strconv.ParseUint(…, 8, 64)`` once spaces and NULs around them are cut;
  wrapped to int64) or base-256 two's complement (more than 63 bits: invalid); any invalid
  numeric field makes the header invalid;
- a size below zero is invalid for every type that carries data (header-only types, ``1``-``6``,
  have no data whatever their size says);
- ``x`` records replace the pending ones (two ``x`` in a row: only the last counts); a record is
  ``"<len> key=value\\n"`` with strict lengths, no empty key, no NUL in a key nor in the values of
  path/linkpath/uname/gname; an extended header over 1 MiB is refused; empty values keep the
  header's field; uid/gid/size are decimal int64, times ``secs[.frac]``; ``SCHILY.xattr.*`` are
  the extended attributes; ``g`` is an entry of its own (Docker and containerd skip it, umoci
  refuses it) and drops whatever ``x``/``L``/``K`` were pending;
- GNU long names and links (``L``/``K``, cut at the first NUL) override the PAX path/linkpath;
- type NUL is a directory when the name ends in ``/``, a regular file otherwise;
- sparse files (``S`` and PAX ``GNU.sparse.*`` 0.0, 0.1, 1.0) have a logical size and data
  fragments; a map is held to 1 MiB (newer Go's errSparseTooLong for 1.0 maps; dockscope's
  bound for old GNU extension blocks, which Go reads without end); a map out of order,
  overlapping or past the size is invalid, and a map that does not account for exactly the
  stored data fails as Go fails when the data is read;
- the end is two zero blocks (or one, then the end of the stream, or the end of the stream at a
  header or in a member's padding); a zero block followed by anything else is invalid.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto

from inspect_tool.errors import InvalidImageError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
MAX_META = 1 << 20  # Go's maxSpecialFileSize: the largest extended header or long name
# A sparse map is held whole until its entry starts: bounded like an extended header (1 MiB of
# PAX 1.0 map text; as many old GNU extension blocks, 21 fragments in each 512 bytes). Go
# 1.19 reads either without end.
MAX_SPARSE_ENTRIES = MAX_META // BLOCK * 21
# Entries in one layer: the largest real layers hold a few hundred thousand files. Two million
# empty entries compress to 5 MB and took minutes and 360 MB in every command; Go has no bound.
MAX_ENTRIES = 1_000_000
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_AMBIGUITIES = 20


class TarFormatError(InvalidImageError):
    """A layer's tar stream is malformed or truncated (Go's archive/tar refuses it)."""


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    OTHER = "other"  # sparse files of type S, volume headers, unknown types


_TYPES = {
    "0": EntryType.FILE,
    "7": EntryType.FILE,  # contiguous file
    "1": EntryType.HARDLINK,
    "2": EntryType.SYMLINK,
    "3": EntryType.CHAR,
    "4": EntryType.BLOCK,
    "5": EntryType.DIR,
    "6": EntryType.FIFO,
}
# Types that never have data, whatever their size field says (Go's isHeaderOnlyType).
NO_DATA = frozenset("123456")


def entry_type(typeflag: str) -> EntryType:
    return _TYPES.get(typeflag, EntryType.OTHER)


@dataclass(slots=True)
class RawHeader:
    """The metadata of one tar header: the block's own fields, then whatever PAX records and GNU
    long names replace."""

    name: str
    typeflag: str
    size: int  # logical size (a sparse file's real size); 0 for header-only types is not implied
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
    mtime_ns: int = 0


@dataclass(slots=True)
class TarEntry:
    """One entry as Go's ``Reader.Next`` returns it, after every extension is applied."""

    header: RawHeader
    offset: int  # of the entry's own header block
    stored: int  # bytes of data that follow in the stream (after a PAX 1.0 sparse map)
    # sparse files: the data fragments (offset, length) in the logical file, in stream order
    fragments: list[tuple[int, int]] | None = None


class _Invalid(Exception):
    """A field does not parse (Go: ErrHeader)."""


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def cstr(raw: bytes) -> str:
    return _text(_cut(raw))


def _cut(raw: bytes) -> bytes:
    """Go's parseString: up to the first NUL."""
    end = raw.find(b"\x00")
    return raw if end < 0 else raw[:end]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


_DECIMAL = re.compile(rb"[+-]?[0-9]+\Z")
# a field Go's parseOctal accepts: digits, then nothing or a NUL and anything, spaces and NULs
# around
_OCTAL_FIELD = re.compile(rb"[ \x00]*([0-7]+)(?:\x00.*)?[ \x00]*\Z", re.DOTALL)
_HIGH_BYTES = bytes(1 if b > 127 else 0 for b in range(256))


def parse_int(raw: bytes) -> int:
    """Go's ``strconv.ParseInt(s, 10, 64)``."""
    if not _DECIMAL.match(raw):
        raise _Invalid(f"{_text(raw)!r} is not a decimal number")
    value = int(raw)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Invalid(f"{_text(raw)!r} does not fit in 64 bits")
    return value


def parse_octal(raw: bytes) -> int:
    """Go's parseOctal: spaces and NULs around the field are cut, then the digits up to a NUL
    (``strconv.ParseUint(…, 8, 64)``); the value wraps to int64."""
    match = _OCTAL_FIELD.match(raw)
    if match is None:
        trimmed = raw.strip(b" \x00")
        if not trimmed:
            return 0
        raise _Invalid(f"{_text(trimmed)!r} is not an octal number")
    value = int(match[1], 8)
    if value >> 64:
        raise _Invalid(f"{_text(match[1])!r} does not fit in 64 bits")
    return value - (1 << 64) if value > _INT64_MAX else value


def parse_numeric(raw: bytes) -> int:
    """Go's parseNumeric: base-256 two's complement when the high bit is set, else octal."""
    if raw and raw[0] & 0x80:
        negative = bool(raw[0] & 0x40)
        value = int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
        if negative:
            value ^= (1 << (8 * len(raw) - 1)) - 1  # invert the bits below the marker bit
        if value >> 63:
            raise _Invalid("a base-256 number over 63 bits")
        return ~value if negative else value
    return parse_octal(raw)


def number(raw: bytes) -> int:
    """A numeric header field; ValueError when Go would refuse it."""
    try:
        return parse_numeric(raw)
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def octal(raw: bytes) -> int:
    try:
        return parse_octal(raw)
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def parse_pax_time(raw: bytes) -> int:
    """Go's parsePAXTime, in nanoseconds: ``secs[.fraction]``, secs an int64."""
    secs_text, dot, frac = raw.partition(b".")
    secs = parse_int(secs_text)
    if not dot or not frac:
        return secs * 1_000_000_000
    if frac.strip(b"0123456789"):
        raise _Invalid(f"{_text(raw)!r} is not a time")
    nanos = int(frac[:9].ljust(9, b"0"))
    return secs * 1_000_000_000 + (-nanos if secs_text.startswith(b"-") else nanos)


# PAX keys
_PATH, _LINKPATH, _UNAME, _GNAME = b"path", b"linkpath", b"uname", b"gname"
_XATTR = b"SCHILY.xattr."
_SPARSE_OFFSET, _SPARSE_NUMBYTES = b"GNU.sparse.offset", b"GNU.sparse.numbytes"
_SPARSE_MAP = b"GNU.sparse.map"


def parse_pax(payload: bytes) -> dict[bytes, bytes]:
    """Go's parsePAX: every record well-formed, or _Invalid. GNU sparse 0.0 offset/numbytes
    pairs are gathered into ``GNU.sparse.map`` as Go does."""
    records: dict[bytes, bytes] = {}
    sparse: list[bytes] = []
    rest = payload
    while rest:
        space = rest.find(b" ")
        if space < 0:
            raise _Invalid("a PAX record without a length")
        length = parse_int(rest[:space]) if _DECIMAL.match(rest[:space]) else -1
        if length < 5 or length > len(rest):
            raise _Invalid(f"a PAX record length of {_text(rest[:space])!r}")
        body = length - (space + 1)
        if body <= 0:
            raise _Invalid("a PAX record length shorter than its own digits")
        tail = rest[space + 1 :]
        record, newline, rest = tail[: body - 1], tail[body - 1 : body], tail[body:]
        if newline != b"\n":
            raise _Invalid("a PAX record that does not end in a newline where its length says")
        key, equals, value = record.partition(b"=")
        if not equals:
            raise _Invalid(f"a PAX record without '=': {_text(record[:60])!r}")
        if not key:
            raise _Invalid("a PAX record with an empty key")
        if key in (_PATH, _LINKPATH, _UNAME, _GNAME):
            if b"\x00" in value:
                raise _Invalid(f"a NUL in the PAX {_text(key)} {_text(value)!r}")
        elif b"\x00" in key:
            raise _Invalid(f"a NUL in the PAX key {_text(key)!r}")
        if key in (_SPARSE_OFFSET, _SPARSE_NUMBYTES):
            if (len(sparse) % 2 == 0) != (key == _SPARSE_OFFSET) or b"," in value:
                raise _Invalid("GNU sparse 0.0 records out of order")
            sparse.append(value)
        else:
            records[key] = value
    if sparse:
        records[_SPARSE_MAP] = b",".join(sparse)
    return records


def _merge_pax(header: RawHeader, records: dict[bytes, bytes]) -> None:
    """Go's mergePAX."""
    for key, value in records.items():
        if not value:
            continue  # an empty value keeps the header's field
        if key == _PATH:
            header.name = _text(value)
        elif key == _LINKPATH:
            header.linkname = _text(value)
        elif key == _UNAME:
            header.uname = _text(value)
        elif key == _GNAME:
            header.gname = _text(value)
        elif key == b"uid":
            header.uid = parse_int(value)
        elif key == b"gid":
            header.gid = parse_int(value)
        elif key in (b"atime", b"ctime"):
            parse_pax_time(value)
        elif key == b"mtime":
            header.mtime_ns = parse_pax_time(value)
            header.mtime = header.mtime_ns / 1e9
        elif key == b"size":
            header.size = parse_int(value)
        elif key.startswith(_XATTR):
            header.xattrs[_text(key[len(_XATTR) :])] = value


class _Format(Enum):
    V7 = auto()
    USTAR = auto()  # also PAX
    STAR = auto()
    GNU = auto()


def _block_format(block: bytes) -> _Format:
    """Go's getFormat; _Invalid when the checksum is wrong."""
    try:
        claimed = parse_octal(block[148:156])
    except _Invalid:
        raise _Invalid("the checksum field is not octal") from None
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if claimed != unsigned:  # old writers summed signed bytes: Go accepts both
        high = sum((block[:148] + block[156:]).translate(_HIGH_BYTES))
        if claimed != unsigned - 256 * high:
            raise _Invalid("checksum mismatch")
    magic, version = block[257:263], block[263:265]
    if magic == b"ustar\x00":
        return _Format.STAR if block[508:512] == b"tar\x00" else _Format.USTAR
    if magic == b"ustar " and version == b" \x00":
        return _Format.GNU
    return _Format.V7


def parse_header(block: bytes, offset: int) -> RawHeader:
    """One 512-byte header block as Go's readHeader reads it; TarFormatError when invalid."""
    try:
        return _parse_header(block)
    except _Invalid as exc:
        raise _header_error(block, offset, str(exc)) from None


def _header_error(block: bytes, offset: int, reason: str) -> TarFormatError:
    name = _text(_cut(block[:100]))
    return TarFormatError(f"invalid tar header at byte {offset} (entry {name!r}): {reason}")


def _numeric(block: bytes, name: str, start: int, end: int) -> int:
    raw = block[start:end]
    if raw[0] < 0x80 and (match := _OCTAL_FIELD.match(raw)) is not None:
        value = int(match[1], 8)  # the common case: plain octal digits
        if value <= _INT64_MAX:
            return value
    try:
        return parse_numeric(raw)
    except _Invalid as exc:
        raise _Invalid(f"{name}: {exc}") from None


# mode, uid, gid, size and mtime as nearly every writer puts them (zero-padded octal digits, a
# NUL): one match instead of five; each group is what _numeric reads from its field
_CANONICAL_NUMBERS = re.compile(
    rb"([0-7]{7})\x00([0-7]{7})\x00([0-7]{7})\x00([0-7]{11})\x00([0-7]{11})\x00"
)


def _parse_header(block: bytes) -> RawHeader:
    fmt = _block_format(block)
    if (numbers := _CANONICAL_NUMBERS.match(block, 100, 148)) is not None:
        mode, uid, gid, size, mtime = (int(digits, 8) for digits in numbers.groups())
    else:
        size = _numeric(block, "size", 124, 136)
        mode = _numeric(block, "mode", 100, 108)
        uid = _numeric(block, "uid", 108, 116)
        gid = _numeric(block, "gid", 116, 124)
        mtime = _numeric(block, "mtime", 136, 148)
    header = RawHeader(
        name=_text(_cut(block[:100])),
        typeflag=chr(block[156]),
        size=size,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime=float(mtime),
        linkname=_text(_cut(block[157:257])),
        uname="",
        gname="",
        devmajor=0,
        devminor=0,
        mtime_ns=mtime * 1_000_000_000,
    )
    if fmt is _Format.V7:
        return header
    header.uname = _text(_cut(block[265:297]))
    header.gname = _text(_cut(block[297:329]))
    header.devmajor = _numeric(block, "devmajor", 329, 337)
    header.devminor = _numeric(block, "devminor", 337, 345)
    prefix = b""
    if fmt is _Format.USTAR:
        prefix = _cut(block[345:500])
    elif fmt is _Format.STAR:
        prefix = _cut(block[345:476])
        _numeric(block, "atime", 476, 488)
        _numeric(block, "ctime", 488, 500)
    else:  # GNU: atime and ctime, unless a pre-Go 1.8 writer put a prefix there
        try:
            for start in (345, 357):
                if block[start]:
                    parse_numeric(block[start : start + 12])
        except _Invalid:
            candidate = _cut(block[345:500])
            if all(b < 0x80 for b in candidate):
                prefix = candidate
    if prefix:
        header.name = f"{_text(prefix)}/{header.name}"
    return header


# --- the common header, read without the decoder ---------------------------------------------

# A header block of the common kind, in one match: the name (up to its first NUL, at most 100
# bytes); mode, uid, gid, size and mtime in canonical form (as _CANONICAL_NUMBERS); a checksum
# field of six or seven octal digits closed by NULs or spaces (forms parse_octal reads as those
# digits); the type of a regular file, hard link, symlink or directory; the USTAR or GNU magic;
# devmajor and devminor each all NULs or seven octal digits and a NUL; the first prefix byte.
_PLAIN = re.compile(
    rb"(?=([^\x00]{0,100})).{100}"
    rb"[0-7]{7}\x00[0-7]{7}\x00[0-7]{7}\x00([0-7]{11})\x00[0-7]{11}\x00"
    rb"(?:([0-7]{6})[ \x00][ \x00]|([0-7]{7})[ \x00])([0125]).{100}"
    rb"(?:ustar\x0000|(ustar  \x00)).{64}(?:\x00{8}|[0-7]{7}\x00){2}(.)",
    re.DOTALL,
)
_STAR_TRAILER = b"tar\x00"


# The same, with every field a member needs (mode, owners, mtime, link, user and group names,
# device numbers) captured.
_PLAIN_MEMBER = re.compile(
    rb"(?=([^\x00]{0,100})).{100}"
    rb"([0-7]{7})\x00([0-7]{7})\x00([0-7]{7})\x00([0-7]{11})\x00([0-7]{11})\x00"
    rb"(?:([0-7]{6})[ \x00][ \x00]|([0-7]{7})[ \x00])([0125])(?=([^\x00]{0,100})).{100}"
    rb"(?:ustar\x0000|(ustar  \x00))(?=([^\x00]{0,32})).{32}(?=([^\x00]{0,32})).{32}"
    rb"(\x00{8}|[0-7]{7}\x00)(\x00{8}|[0-7]{7}\x00)(.)",
    re.DOTALL,
)


def _plain_ok(block: bytes, gnu: bytes | None, six: bytes | None, seven: bytes) -> bool:
    """The checks a pattern cannot make: no GNU times (nor an old writer's prefix there), not
    STAR, and the checksum the unsigned byte sum."""
    if gnu:
        if block[345] or block[357]:
            return False
    elif block[508:512] == _STAR_TRAILER:
        return False
    # the unsigned byte sum, the checksum field counted as spaces: each half's sum is below
    # adler32's modulus (256 × 255 < 65521), so its low 16 bits are the exact sum
    total = (zlib.adler32(block[:256], 0) & 0xFFFF) + (zlib.adler32(block[256:], 0) & 0xFFFF)
    return int(six or seven, 8) == total - sum(block[148:156]) + 256


def plain_header(block: bytes) -> tuple[str, str, int] | None:
    """(name, typeflag, size) of a header block that :meth:`TarDecoder.feed` would read as a
    plain entry: USTAR or GNU, the checksum its unsigned byte sum, every number in canonical
    octal, a regular file, hard link, symlink or directory, no GNU times (so no prefix in
    them). None for anything else (V7, STAR, base-256 or odd numbers, a signed checksum, other
    types, extended headers, zero blocks), which the decoder reads instead. Whatever it
    returns, the decoder returns the same name, type and size for the block when no extended
    header is pending."""
    match = _PLAIN.match(block)
    if match is None:
        return None
    name, size, six, seven, flag, gnu, first = match.groups()
    if not _plain_ok(block, gnu, six, seven):
        return None
    text = name.decode("utf-8", "surrogateescape")
    if not gnu and first != b"\x00":
        text = f"{_text(_cut(block[345:500]))}/{text}"
    return text, chr(flag[0]), int(size, 8)


# The fields of a plain header as plain_fields gives them: name, typeflag, size, mode, uid, gid,
# mtime (the field's octal digits), linkname, uname, gname, devmajor, devminor.
PlainFields = tuple[str, str, int, int, int, int, bytes, str, str, str, int, int]


def plain_fields(block: bytes) -> PlainFields | None:
    """The fields of a block ``plain_header`` reads (None where it returns None), the mtime
    left as its octal digits (``mtime_of`` reads them): for a reader that makes its own
    member of them."""
    match = _PLAIN_MEMBER.match(block)
    if match is None:
        return None
    (name, mode, uid, gid, size, mtime, six, seven, flag, link, gnu, uname, gname, major, minor,
     first) = match.groups()  # fmt: skip
    if not _plain_ok(block, gnu, six, seven):
        return None
    text = name.decode("utf-8", "surrogateescape")
    if not gnu and first != b"\x00":
        text = f"{_text(_cut(block[345:500]))}/{text}"
    return (
        text,
        chr(flag[0]),
        int(size, 8),
        int(mode, 8),
        int(uid, 8),
        int(gid, 8),
        mtime,
        link.decode("utf-8", "surrogateescape"),
        uname.decode("utf-8", "surrogateescape"),
        gname.decode("utf-8", "surrogateescape"),
        int(major[:7], 8) if major[0] else 0,
        int(minor[:7], 8) if minor[0] else 0,
    )


def mtime_of(digits: bytes) -> tuple[float, int]:
    """A plain header's mtime field (``plain_fields``) as (seconds, nanoseconds)."""
    seconds = int(digits, 8)
    return float(seconds), seconds * 1_000_000_000


def plain_member(block: bytes) -> RawHeader | None:
    """The whole header of a block ``plain_header`` reads (None where it returns None): what
    :meth:`TarDecoder.feed` returns for it when no extended header is pending."""
    got = plain_fields(block)
    if got is None:
        return None
    name, flag, size, mode, uid, gid, digits, link, uname, gname, major, minor = got
    mtime, mtime_ns = mtime_of(digits)
    return RawHeader(
        name=name,
        typeflag=flag,
        size=size,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime=mtime,
        linkname=link,
        uname=uname,
        gname=gname,
        devmajor=major,
        devminor=minor,
        mtime_ns=mtime_ns,
    )


class Want(Enum):
    """What the decoder needs next from the stream."""

    HEADER = auto()  # a header block (the stream may end here)
    ZERO = auto()  # the block after a zero block (the stream may end here)
    META = auto()  # an extended header's payload
    SPARSE_EXT = auto()  # an old GNU sparse extension block
    SPARSE_MAP = auto()  # a block of a PAX 1.0 sparse map, at the start of the entry's data
    DATA = auto()  # the current entry's data: read or skipped by the caller
    PAD = auto()  # padding to the block (the stream may end here)
    END = auto()


_STRUCTURAL = frozenset({Want.HEADER, Want.ZERO, Want.META, Want.SPARSE_EXT, Want.SPARSE_MAP})


class TarDecoder:
    """Go's ``Reader.next()`` as a state machine over exact-size pieces of the stream.

    The caller reads ``need`` bytes when ``want`` is structural and passes them to
    :meth:`feed`, skips or reads ``need`` bytes of ``DATA``/``PAD`` and reports them with
    :meth:`skip`, and calls :meth:`eof` with the bytes it got when the stream ends early.
    Global headers are skipped, as Docker and containerd do; ``ambiguities`` lists what image
    engines read differently among themselves.
    """

    def __init__(self) -> None:
        self.want = Want.HEADER
        self.need = BLOCK
        self.pos = 0  # stream offset of the next byte wanted
        self.ended = False  # the end-of-archive marker was seen
        self.ambiguities: list[str] = []
        self.ambiguous = 0
        self.entries = 0  # entries returned so far
        self._reset()

    def _reset(self) -> None:
        self._pending = False  # extended headers or sparse state wait for the next entry
        self._pax: dict[bytes, bytes] | None = None
        self._pax_headers = 0
        self._merged: dict[bytes, bytes] = {}  # every pending x record, as mergers read them
        self._long_name: bytes = b""
        self._long_link: bytes = b""
        self._meta_type = ""
        self._meta_offset = 0
        self._meta_name = ""
        self._pad = 0
        self._entry: TarEntry | None = None
        self._sparse: list[tuple[int, int]] = []
        self._sparse_left = 0
        self._map_buffer = bytearray()
        self._map_lines = 0
        self._map_needed = 1
        self._map_count: int | None = None

    # --- driving -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> TarEntry | None:
        """Exactly ``need`` bytes for a structural ``want``; the entry when one is complete."""
        want = self.want
        assert want in _STRUCTURAL and len(data) == self.need, (want, len(data), self.need)
        offset = self.pos
        self.pos += len(data)
        if want is Want.HEADER:
            return self._header(data, offset)
        if want is Want.ZERO:
            if data == ZERO_BLOCK:
                self.ended = True
                self._set(Want.END, 0)
                return None
            raise TarFormatError(f"a zero block and then a non-zero block at byte {offset}")
        if want is Want.META:
            self._meta(data)
            return None
        if want is Want.SPARSE_EXT:
            return self._old_sparse_block(data, 0, 21, offset)
        return self._map_block(data, offset)

    @property
    def idle(self) -> bool:
        """At a header with nothing pending: the next block may be read by plain_header."""
        return self.want is Want.HEADER and not self._pending

    def took_plain(self, pos: int, entries: int, stored: int) -> None:
        """The caller read plain headers (``plain_header``) up to ``pos`` while :attr:`idle`,
        ``entries`` in all so far (at most MAX_ENTRIES), the last followed by ``stored`` bytes of
        data (0: its data and padding, if any, were skipped too). The state is then as
        :meth:`feed` and :meth:`skip` would have left it."""
        assert self.idle and entries <= MAX_ENTRIES
        self.pos, self.entries = pos, entries
        self._pad = padded(stored) - stored
        if stored:
            self._set(Want.DATA, stored)

    def skip(self, size: int) -> None:
        """``size`` bytes of DATA or PAD were read or skipped by the caller."""
        assert self.want in (Want.DATA, Want.PAD) and 0 < size <= self.need
        self.pos += size
        self.need -= size
        if not self.need:
            self._after_data() if self.want is Want.DATA else self._set(Want.HEADER, BLOCK)

    def eof(self, got: int) -> None:
        """The stream ended after ``got`` of the ``need`` bytes; raise unless Go accepts it."""
        self.pos += got
        if self.want is Want.END:
            return
        if self.want is Want.PAD:
            self._note(
                f"the stream ends inside a member's padding at byte {self.pos}: Go (Docker, "
                "containerd, umoci) reads the layer to that point, GNU tar and Python's tarfile "
                "refuse it"
            )
        if (got == 0 and self.want in (Want.HEADER, Want.ZERO)) or self.want is Want.PAD:
            self.ended = self.want is Want.ZERO  # one zero block, then the end: Go's EOF
            self._set(Want.END, 0)
            return
        where = {
            Want.HEADER: "a header",
            Want.ZERO: "the end-of-archive marker",
            Want.META: "an extended header",
            Want.SPARSE_EXT: "a sparse file's map",
            Want.SPARSE_MAP: "a sparse file's map",
            Want.DATA: "a member's data",
        }[self.want]
        raise TarFormatError(f"tar stream ends inside {where} at byte {self.pos}")

    def _set(self, want: Want, need: int) -> None:
        self.want, self.need = want, need

    def _after_data(self) -> None:
        if self._pad:
            self._set(Want.PAD, self._pad)
            self._pad = 0
        else:
            self._set(Want.HEADER, BLOCK)

    def _note(self, text: str) -> None:
        self.ambiguous += 1
        if len(self.ambiguities) < _MAX_AMBIGUITIES:
            self.ambiguities.append(text)

    # --- headers -----------------------------------------------------------------------------

    def _header(self, block: bytes, offset: int) -> TarEntry | None:
        if block == ZERO_BLOCK:
            self._set(Want.ZERO, BLOCK)
            return None
        header = parse_header(block, offset)
        flag = header.typeflag
        stored = 0 if flag in NO_DATA else header.size
        if stored < 0:
            raise _header_error(block, offset, f"negative size {header.size}")
        self._pad = padded(stored) - stored
        if flag in "xgLK":
            if stored > MAX_META:
                raise _header_error(block, offset, f"extended header of {stored} bytes (> 1 MiB)")
            self._meta_type, self._meta_offset, self._meta_name = flag, offset, header.name
            if stored:
                self._set(Want.META, stored)
            else:
                self._meta(b"")
            return None
        return self._entry_header(header, block, offset, stored)

    def _meta(self, payload: bytes) -> None:
        kind, offset = self._meta_type, self._meta_offset
        self._pending = True
        self._after_data()  # the payload's padding comes next
        if kind in "xg":
            try:
                records = parse_pax(payload)
            except _Invalid as exc:
                raise TarFormatError(
                    f"invalid PAX header {self._meta_name!r} at byte {offset}: {exc}"
                ) from None
            if kind == "g":
                self._global(records, offset)
            else:
                self._pax = records
                self._pax_headers += 1
                self._merged.update(records)
        elif kind == "L":
            self._long_name = _cut(payload)
        else:
            self._long_link = _cut(payload)

    def _global(self, records: dict[bytes, bytes], offset: int) -> None:
        applied = sorted(
            _text(k) for k in records if k in (_PATH, _LINKPATH, b"size", b"mtime", b"uid")
        )
        also = f"; readers that apply it set {', '.join(applied)} of later entries"
        self._note(
            f"PAX global header at byte {offset}: Docker and containerd skip it (and what was "
            "pending before it), umoci refuses the layer" + (also if applied else "")
        )
        self._reset()

    def _entry_header(
        self, header: RawHeader, block: bytes, offset: int, stored: int
    ) -> TarEntry | None:
        pax, long_name, long_link = self._pax, self._long_name, self._long_link
        pax_headers, merged = self._pax_headers, self._merged
        if self._pending:
            self._reset()
        try:
            if pax is not None:
                _merge_pax(header, pax)
        except _Invalid as exc:
            raise _header_error(block, offset, f"PAX record: {exc}") from None
        pax_name, pax_link = header.name, header.linkname
        if long_name:
            header.name = _text(long_name)
        if long_link:
            header.linkname = _text(long_link)
        if header.typeflag == "\x00":
            header.typeflag = "5" if header.name.endswith("/") else "0"
        if pax is not None:
            self._ambiguities(header, offset, pax, pax_name, pax_link, pax_headers, merged)
        stored = 0 if header.typeflag in NO_DATA else header.size
        if stored < 0:
            raise _header_error(block, offset, f"negative size {header.size}")
        self._pad = padded(stored) - stored
        entry = TarEntry(header, offset, stored)
        try:
            if header.typeflag == "S":
                return self._old_sparse(entry, block, offset)
            if pax:
                return self._pax_sparse(entry, pax, offset)
            return self._plain(entry)
        except _Invalid as exc:
            raise _header_error(block, offset, f"sparse file: {exc}") from None

    def _ambiguities(
        self,
        header: RawHeader,
        offset: int,
        pax: dict[bytes, bytes],
        pax_name: str,
        pax_link: str,
        pax_headers: int,
        merged: dict[bytes, bytes],
    ) -> None:
        name = header.name
        if pax.get(_PATH) and pax_name != name:
            self._note(
                f"entry at byte {offset}: Go (Docker, containerd) reads the GNU long name "
                f"{name!r}; readers that prefer the PAX path (GNU tar, Python's tarfile) read "
                f"{pax_name!r}"
            )
        if pax.get(_LINKPATH) and pax_link != header.linkname:
            self._note(
                f"entry {name!r} at byte {offset}: Go (Docker, containerd) reads the GNU long "
                f"link {header.linkname!r}; readers that prefer the PAX linkpath read {pax_link!r}"
            )
        if pax_headers > 1 and merged != pax:
            lost = sorted(_text(k) for k in merged if pax.get(k) != merged[k])
            self._note(
                f"entry {name!r} at byte {offset} follows {pax_headers} PAX headers: Go (Docker, "
                f"containerd) uses only the last; readers that merge them also apply "
                f"{', '.join(lost)}"
            )

    # --- sparse files ------------------------------------------------------------------------

    def _old_sparse(self, entry: TarEntry, block: bytes, offset: int) -> TarEntry | None:
        if _block_format(block) is not _Format.GNU:
            raise _Invalid("type S in a header that is not GNU")
        entry.header.size = _numeric(block, "realsize", 483, 495)
        self._entry = entry
        return self._old_sparse_block(block[386:483], 0, 4, offset)

    def _old_sparse_block(
        self, data: bytes, start: int, count: int, offset: int
    ) -> TarEntry | None:
        assert self._entry is not None
        try:
            for i in range(count):
                at = start + 24 * i
                if data[at] == 0:
                    break
                self._sparse.append(
                    (
                        _numeric(data, "offset", at, at + 12),
                        _numeric(data, "length", at + 12, at + 24),
                    )
                )
        except _Invalid as exc:
            raise TarFormatError(f"invalid sparse map at byte {offset}: {exc}") from None
        if data[start + 24 * count]:
            if len(self._sparse) > MAX_SPARSE_ENTRIES:
                raise TarFormatError(
                    f"sparse map at byte {offset} of more than {MAX_SPARSE_ENTRIES} fragments "
                    f"(dockscope's bound; {MAX_META} bytes of extension blocks)"
                )
            self._set(Want.SPARSE_EXT, BLOCK)
            return None
        return self._sparse_done()

    def _pax_sparse(
        self, entry: TarEntry, records: dict[bytes, bytes], offset: int
    ) -> TarEntry | None:
        major = records.get(b"GNU.sparse.major", b"")
        minor = records.get(b"GNU.sparse.minor", b"")
        if major == b"0" and minor in (b"0", b"1"):
            version_1 = False
        elif major == b"1" and minor == b"0":
            version_1 = True
        elif major or minor or not records.get(_SPARSE_MAP):
            return self._plain(entry)
        else:
            version_1 = False
        self._pending = True  # the map state is reset before the next entry
        header = entry.header
        if name := records.get(b"GNU.sparse.name"):
            header.name = _text(name)
        size = records.get(b"GNU.sparse.size") or records.get(b"GNU.sparse.realsize")
        if size:
            header.size = parse_int(size)
        self._entry = entry
        if version_1:
            self._sparse_left = entry.stored
            return self._want_map_block(offset)
        count = parse_int(records.get(b"GNU.sparse.numblocks", b""))
        if count < 0:
            raise _Invalid("a negative number of sparse blocks")
        values = records.get(_SPARSE_MAP, b"").split(b",")
        if values == [b""]:
            values = []
        if len(values) != 2 * count:
            raise _Invalid(f"GNU.sparse.map holds {len(values)} numbers for {count} blocks")
        self._sparse = [
            (parse_int(values[i]), parse_int(values[i + 1])) for i in range(0, len(values), 2)
        ]
        return self._sparse_done()

    def _want_map_block(self, offset: int) -> TarEntry | None:
        if self._sparse_left < BLOCK:
            raise TarFormatError(
                f"sparse map of the entry at byte {offset} runs past the entry's data"
            )
        self._set(Want.SPARSE_MAP, BLOCK)
        return None

    def _map_block(self, data: bytes, offset: int) -> TarEntry | None:
        assert self._entry is not None
        self._sparse_left -= BLOCK
        if len(self._map_buffer) + BLOCK > MAX_META:
            raise TarFormatError(
                f"sparse map of the entry at byte {offset} longer than {MAX_META} bytes "
                "(dockscope's bound, as newer Go's errSparseTooLong)"
            )
        self._map_buffer += data
        self._map_lines += data.count(b"\n")
        lines = self._map_lines
        if lines < self._map_needed:
            return self._want_map_block(offset)
        tokens = bytes(self._map_buffer).split(b"\n")
        try:
            if self._map_count is None:
                count = parse_int(tokens[0])
                if count < 0 or count > _INT64_MAX // 2:
                    raise _Invalid("a negative number of sparse blocks")
                self._map_count = count
                self._map_needed = 1 + 2 * count
                if lines < self._map_needed:
                    return self._want_map_block(offset)
            count = self._map_count
            self._sparse = [
                (parse_int(tokens[1 + 2 * i]), parse_int(tokens[2 + 2 * i])) for i in range(count)
            ]
        except _Invalid as exc:
            raise TarFormatError(f"invalid sparse map at byte {offset}: {exc}") from None
        self._map_buffer.clear()
        self._entry.stored = self._sparse_left
        return self._sparse_done()

    def _sparse_done(self) -> TarEntry:
        entry = self._entry
        assert entry is not None
        fragments, self._sparse, self._entry = self._sparse, [], None
        header = entry.header
        where = f"sparse file {header.name!r} at byte {entry.offset}"
        if header.typeflag in NO_DATA:
            raise TarFormatError(f"{where}: a sparse map on a {entry_type(header.typeflag)}")
        end = 0
        for start, length in fragments:
            if (
                start < 0
                or length < 0
                or start > _INT64_MAX - length
                or start + length > header.size
            ):
                raise TarFormatError(f"{where}: fragment {start}+{length} outside its size")
            if start < end:
                raise TarFormatError(f"{where}: fragments overlap or are out of order")
            end = start + length
        if header.size < 0:
            raise TarFormatError(f"{where}: negative size {header.size}")
        referenced = sum(length for _, length in fragments)
        if referenced != entry.stored:
            raise TarFormatError(
                f"{where}: its map references {referenced} bytes of data, {entry.stored} stored"
            )
        entry.fragments = [(s, n) for s, n in fragments if n]
        return self._plain(entry)

    def _plain(self, entry: TarEntry) -> TarEntry:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise TarFormatError(
                f"more than {MAX_ENTRIES} entries in one layer (dockscope's bound), the last "
                f"at byte {entry.offset}"
            )
        if entry.stored:
            self._set(Want.DATA, entry.stored)
        else:
            self._after_data()
        return entry


def normalize_member(name: str) -> str:
    """A member name as a relative path: ``./a/b/`` and ``a/b`` are the same entry."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))
