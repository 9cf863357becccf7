"""A push parser for tar streams: feed it chunks, it finds the headers.

It sees every byte once and never holds more than one header's worth, so a layer of any size
streams through in bounded memory while a hash is computed over the same chunks. It knows the
ustar, GNU (long names, base-256 sizes) and PAX (path, linkpath, size) extensions that real
image layers use, and reports what a verifier needs: malformed headers, truncation, duplicate
paths and bytes after the end-of-archive marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BLOCK = 512

_META_TYPES = frozenset(b"xgLK")


@dataclass(slots=True)
class TarEntry:
    name: str
    typeflag: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    offset: int  # of the header in the stream


@dataclass(slots=True)
class TarScan:
    """What a scan found. ``error`` is set when the stream is not a valid tar."""

    entries: int = 0
    content_bytes: int = 0
    duplicates: list[str] = field(default_factory=list)
    error: str | None = None
    ended: bool = False  # saw the end-of-archive marker
    trailing_nonzero: int = 0  # non-zero bytes after the end-of-archive marker
    total: int = 0


class TarScanner:
    """Feed chunks with :meth:`feed`, then call :meth:`finish`."""

    def __init__(self, *, keep_entries: bool = False, track_duplicates: bool = True) -> None:
        self.scan = TarScan()
        self.entries: list[TarEntry] = []
        self._keep = keep_entries
        self._track = track_duplicates
        self._seen: set[str] = set()
        self._pending = bytearray()  # partial header or meta-entry payload
        self._skip = 0  # data (plus padding) bytes still to pass over
        self._collect = 0  # bytes of a meta payload still to collect
        self._meta_type = b""
        self._meta_padding = 0
        self._pax: dict[str, str] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._zero_blocks = 0
        self._pos = 0  # stream position of _pending's start

    def feed(self, chunk: bytes | memoryview) -> None:
        scan = self.scan
        n = len(chunk)
        scan.total += n
        if scan.error is not None:
            return
        view = memoryview(chunk)
        i = 0
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                self._pos += step
                continue
            if scan.ended:
                rest = bytes(view[i:])
                scan.trailing_nonzero += len(rest) - rest.count(0)
                self._pos += n - i
                return
            if self._collect:
                step = min(self._collect, n - i)
                self._pending += view[i : i + step]
                self._collect -= step
                i += step
                self._pos += step
                if not self._collect:
                    self._finish_meta()
                continue
            need = BLOCK - len(self._pending)
            step = min(need, n - i)
            self._pending += view[i : i + step]
            i += step
            self._pos += step
            if len(self._pending) == BLOCK:
                header = bytes(self._pending)
                self._pending.clear()
                self._header(header, self._pos - BLOCK)
                if scan.error is not None:
                    return

    def _header(self, block: bytes, offset: int) -> None:
        scan = self.scan
        if block == bytes(BLOCK):
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                scan.ended = True
            return
        if self._zero_blocks:
            # One zero block followed by a header: tolerated by GNU tar, not by us silently.
            self._zero_blocks = 0
        try:
            checksum = _octal(block[148:156])
        except ValueError:
            scan.error = f"invalid header checksum field at byte {offset}"
            return
        computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if checksum != computed:
            scan.error = f"invalid tar header at byte {offset} (checksum mismatch)"
            return
        typeflag = block[156:157]
        try:
            size = _number(block[124:136])
        except ValueError:
            scan.error = f"invalid size field in tar header at byte {offset}"
            return
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        if typeflag and typeflag[0] in _META_TYPES:
            if size > 16 * 1024 * 1024:
                scan.error = f"extended header of {size} bytes at byte {offset}"
                return
            self._meta_type = typeflag
            self._collect = size
            self._meta_padding = padded - size
            if size == 0:
                self._finish_meta()
            return
        name = _cstr(block[0:100])
        if block[257:262] == b"ustar" and block[257:263] != b"ustar ":
            prefix = _cstr(block[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        linkname = _cstr(block[157:257])
        if self._long_name is not None:
            name, self._long_name = self._long_name, None
        if self._long_link is not None:
            linkname, self._long_link = self._long_link, None
        pax, self._pax = self._pax, {}
        if "path" in pax:
            name = pax["path"]
        if "linkpath" in pax:
            linkname = pax["linkpath"]
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                scan.error = f"invalid PAX size at byte {offset}"
                return
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
        flag = typeflag.decode("latin-1") or "0"
        # Links, devices, directories and FIFOs carry no data, whatever their size field says.
        if flag in "123456":
            padded = 0
            size = 0
        scan.entries += 1
        if flag in ("0", "\x00", "7"):
            scan.content_bytes += size
        if self._track:
            key = normalize_member(name)
            if key in self._seen:
                scan.duplicates.append(key)
            else:
                self._seen.add(key)
        if self._keep:
            try:
                mode = _number(block[100:108])
                uid = _number(block[108:116])
                gid = _number(block[116:124])
                mtime = float(pax["mtime"]) if "mtime" in pax else float(_number(block[136:148]))
            except ValueError:
                mode = uid = gid = 0
                mtime = 0.0
            if "uid" in pax:
                uid = int(pax["uid"])
            if "gid" in pax:
                gid = int(pax["gid"])
            self.entries.append(TarEntry(name, flag, size, mode, uid, gid, mtime, linkname, offset))
        self._skip = padded

    def _finish_meta(self) -> None:
        payload = bytes(self._pending)
        self._pending.clear()
        kind = self._meta_type
        if kind == b"x":
            self._pax = _parse_pax(payload)
        elif kind == b"L":
            self._long_name = _cstr(payload)
        elif kind == b"K":
            self._long_link = _cstr(payload)
        # global headers ("g") apply to all later entries; the fields we read never come
        # from them in practice, so they are passed over.
        self._skip = self._meta_padding
        self._meta_padding = 0

    def finish(self) -> TarScan:
        scan = self.scan
        if scan.error is None:
            if self._pending and not scan.ended:
                scan.error = "stream ends inside a tar header"
            elif self._skip or self._collect:
                scan.error = "stream ends inside a tar member's data"
            elif not scan.ended and scan.entries:
                # Some writers omit the end-of-archive marker; tar accepts it, so do we.
                pass
        return scan


def normalize_member(name: str) -> str:
    """A member name as a path: ``./a/b/`` and ``a/b`` are the same entry."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _cstr(field: bytes) -> str:
    end = field.find(b"\x00")
    if end >= 0:
        field = field[:end]
    return field.decode("utf-8", "surrogateescape")


def _octal(field: bytes) -> int:
    text = field.replace(b"\x00", b" ").strip()
    return int(text, 8) if text else 0


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field, "big", signed=False)
        return value & ~(0x80 << (8 * (len(field) - 1)))
    return _octal(field)


def _parse_pax(payload: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(payload[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = payload[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records
