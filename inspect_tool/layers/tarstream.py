"""A push parser for tar streams: feed it chunks, it finds the headers.

It sees every byte once and never holds more than one header's worth, so a layer of any size
streams through in bounded memory while a hash is computed over the same chunks. It knows the
ustar, GNU (long names, base-256 sizes) and PAX (path, linkpath, size) extensions that real
image layers use, and reports what a verifier needs: malformed headers, truncation, duplicate
paths and bytes after the end-of-archive marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        self.entries: list[RawHeader] = []
        self._keep = keep_entries
        self._track = track_duplicates
        self._seen: set[str] = set()
        self._pending = bytearray()  # partial header or meta-entry payload
        self._skip = 0  # data (plus padding) bytes still to pass over
        self._collect = 0  # bytes of a meta payload still to collect
        self._meta_type = ""
        self._meta_padding = 0
        self._pax: dict[str, bytes] = {}
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
        if block == ZERO_BLOCK:
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                scan.ended = True
            return
        self._zero_blocks = 0
        try:
            header = parse_header(block, offset)
            if header.typeflag in META_TYPES:
                if header.size > MAX_META:
                    raise TarFormatError(f"extended header of {header.size} bytes at {offset}")
                self._meta_type = header.typeflag
                self._collect = header.size
                self._meta_padding = padded(header.size) - header.size
                if header.size == 0:
                    self._finish_meta()
                return
            if self._long_name is not None:
                header.name, self._long_name = self._long_name, None
            if self._long_link is not None:
                header.linkname, self._long_link = self._long_link, None
            if self._pax:
                apply_pax(header, self._pax, offset)
                self._pax = {}
        except TarFormatError as exc:
            scan.error = exc.message
            return
        size = 0 if header.typeflag in NO_DATA else header.size
        scan.entries += 1
        if entry_type(header.typeflag) is EntryType.FILE:
            scan.content_bytes += size
        if self._track:
            key = normalize_member(header.name)
            if key in self._seen:
                scan.duplicates.append(key)
            else:
                self._seen.add(key)
        if self._keep:
            self.entries.append(header)
        self._skip = padded(size)

    def _finish_meta(self) -> None:
        payload = bytes(self._pending)
        self._pending.clear()
        kind = self._meta_type
        if kind == "x":
            self._pax.update(parse_pax(payload))
        elif kind == "L":
            self._long_name = cstr(payload)
        elif kind == "K":
            self._long_link = cstr(payload)
        # global headers ("g") would apply to all later entries; the fields read here (path,
        # linkpath, size) are never set globally by real writers, so they are passed over.
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
