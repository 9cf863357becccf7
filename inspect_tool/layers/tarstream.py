"""A push parser for tar streams: feed it chunks, it finds the headers.

It sees every byte once and never holds more than one header's worth (or one extended
header's, at most 1 MiB), so a layer of any size streams through in bounded memory while a hash
is computed over the same chunks. It drives the same decoder as the pull reader (tarformat:
Go's archive/tar rules) and reports what a verifier needs: the header Go refuses, truncation,
duplicate paths, what engines read differently among themselves, and bytes after the
end-of-archive marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inspect_tool.layers.tarformat import (
    NO_DATA,
    EntryType,
    RawHeader,
    TarDecoder,
    TarFormatError,
    Want,
    entry_type,
    normalize_member,
)
from inspect_tool.layers.union import MAX_PATH_BYTES


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
    ambiguities: list[str] = field(default_factory=list)  # engines read these differently
    ambiguous: int = 0  # how many (ambiguities keeps the first few)
    long_paths: int = 0  # entries whose path exceeds MAX_PATH_BYTES (no engine extracts them)


class TarScanner:
    """Feed chunks with :meth:`feed`, then call :meth:`finish`."""

    def __init__(self, *, keep_entries: bool = False, track_duplicates: bool = True) -> None:
        self.scan = TarScan()
        self.entries: list[RawHeader] = []
        self._keep = keep_entries
        self._track = track_duplicates
        self._seen: set[str] = set()
        self._decoder = TarDecoder()
        self._pending = bytearray()  # a partial header block or extended header payload

    def feed(self, chunk: bytes | memoryview) -> None:
        scan = self.scan
        n = len(chunk)
        scan.total += n
        if scan.error is not None:
            return
        decoder = self._decoder
        view = memoryview(chunk)
        i = 0
        try:
            while i < n:
                want = decoder.want
                if want is Want.END:
                    rest = bytes(view[i:])
                    scan.trailing_nonzero += len(rest) - rest.count(0)
                    return
                if want in (Want.DATA, Want.PAD):
                    step = min(decoder.need, n - i)
                    decoder.skip(step)
                    i += step
                    continue
                step = min(decoder.need - len(self._pending), n - i)
                self._pending += view[i : i + step]
                i += step
                if len(self._pending) == decoder.need:
                    data = bytes(self._pending)
                    self._pending.clear()
                    entry = decoder.feed(data)
                    if entry is not None:
                        self._entry(entry.header)
        except TarFormatError as exc:
            scan.error = exc.message

    def _entry(self, header: RawHeader) -> None:
        scan = self.scan
        scan.entries += 1
        if entry_type(header.typeflag) is EntryType.FILE and header.typeflag not in NO_DATA:
            scan.content_bytes += header.size
        key = normalize_member(header.name)
        if len(key) >= MAX_PATH_BYTES // 4 and (
            len(key.encode("utf-8", "surrogateescape")) + 1 > MAX_PATH_BYTES
        ):
            scan.long_paths += 1
        if self._track:
            if key in self._seen:
                scan.duplicates.append(key)
            else:
                self._seen.add(key)
        if self._keep:
            self.entries.append(header)

    def finish(self) -> TarScan:
        scan = self.scan
        decoder = self._decoder
        if scan.error is None and decoder.want is not Want.END:
            # the stream ended: Go accepts it at a header or in padding, not elsewhere
            try:
                decoder.eof(len(self._pending))
            except TarFormatError as exc:
                scan.error = exc.message
        scan.ended = decoder.ended
        scan.ambiguities = list(decoder.ambiguities)
        scan.ambiguous = decoder.ambiguous
        return scan
