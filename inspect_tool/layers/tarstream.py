"""A push parser for tar streams: feed it chunks, it finds the headers.

It sees every byte once and never holds more than one header's worth (or one extended
header's, at most 1 MiB), so a layer of any size streams through in bounded memory while a hash
is computed over the same chunks. It drives the same decoder as the pull reader (tarformat:
Go's archive/tar rules) and reports what a verifier needs: the header Go refuses, truncation,
duplicate paths, what engines read differently among themselves, and bytes after the
end-of-archive marker.

An estargz layer keeps its table of contents as a regular file ``stargz.index.json``: the last
entry of the tar, or (as recent writers do) a second tar of that one entry after the first
end-of-archive marker, which Go's reader, and so every engine, never reads. The scanner parses
what follows the end marker as a tar too and keeps the TOC's bytes (up to ``MAX_TOC_BYTES``) and
digest wherever it lies; whether it is the TOC the blob's footer names is decided with the
compressed side (``hashing.py``). Anything else after the marker is counted as garbage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from inspect_tool.layers.tarformat import (
    BLOCK,
    MAX_ENTRIES,
    NO_DATA,
    ZERO_BLOCK,
    EntryType,
    RawHeader,
    TarDecoder,
    TarFormatError,
    Want,
    entry_type,
    normalize_member,
    plain_header,
)
from inspect_tool.layers.union import MAX_PATH_BYTES
from inspect_tool.model.jsondoc import MAX_JSON_BYTES

TOC_NAME = "stargz.index.json"
MAX_TOC_BYTES = MAX_JSON_BYTES  # a TOC is JSON: kept (and parsed) up to the JSON bound


@dataclass(slots=True)
class TocCapture:
    """The content of a ``stargz.index.json`` entry: sha256 of all of it, the bytes if small."""

    offset: int  # of its header block in the uncompressed stream
    size: int
    after_end: bool  # in a second tar after the end-of-archive marker
    hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    data: bytearray | None = field(default_factory=bytearray)
    read: int = 0
    sealed: str | None = None  # the digest, once the capture has crossed a process boundary

    def __reduce__(self) -> tuple[object, ...]:
        # a hash object does not pickle: a capture sent from a worker process keeps its digest
        state = (self.offset, self.size, self.after_end, self.digest, self.data, self.read)
        return (_sealed_capture, state)

    def feed(self, chunk: bytes | memoryview) -> None:
        self.hash.update(chunk)
        self.read += len(chunk)
        if self.data is not None:
            if len(self.data) + len(chunk) > MAX_TOC_BYTES:
                self.data = None
            else:
                self.data += chunk

    @property
    def digest(self) -> str:
        if self.sealed is not None:
            return self.sealed
        return "sha256:" + self.hash.hexdigest()


def _sealed_capture(
    offset: int, size: int, after_end: bool, digest: str, data: bytearray | None, read: int
) -> TocCapture:
    return TocCapture(offset, size, after_end, data=data, read=read, sealed=digest)


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
    # stargz.index.json entries: in the tar, and in a tar after the end-of-archive marker
    tocs: list[TocCapture] = field(default_factory=list)
    # what follows the end marker, when it is read as a tar: its entries' names, whether it
    # parsed to its own end, and the non-zero bytes after that
    trailing_names: list[str] = field(default_factory=list)
    trailing_tar_ok: bool = False
    trailing_after_tar: int = 0
    # regular files' sizes by normalized name (estargz: the TOC is compared with them)
    files: dict[str, int] | None = None


class _Trailing:
    """What follows the end-of-archive marker, read as a tar of its own (zero blocks first are
    skipped); gives up at the first thing that is not a tar."""

    def __init__(self, scanner: TarScanner, start: int) -> None:
        self.scanner = scanner
        self.pos = start  # absolute offset in the uncompressed stream
        self.decoder: TarDecoder | None = None
        self.pending = bytearray()
        self.failed = False
        self.entries = 0

    def feed(self, view: memoryview) -> None:
        scan = self.scanner.scan
        i, n = 0, len(view)
        while i < n:
            if self.failed or (self.decoder is not None and self.decoder.want is Want.END):
                rest = bytes(view[i:])
                scan.trailing_after_tar += len(rest) - rest.count(0)
                return
            if self.decoder is None:  # zero blocks before the second tar
                step = min(BLOCK - len(self.pending), n - i)
                self.pending += view[i : i + step]
                i += step
                if len(self.pending) < BLOCK:
                    continue
                block = bytes(self.pending)
                self.pending.clear()
                if block == ZERO_BLOCK:
                    self.pos += BLOCK
                    continue
                self.decoder = TarDecoder()
                self.decoder.pos = self.pos
                try:
                    self._structural(block)
                except TarFormatError:
                    self._fail(block)
                continue
            decoder = self.decoder
            try:
                if decoder.want in (Want.DATA, Want.PAD):
                    step = min(decoder.need, n - i)
                    self.scanner._capture_feed(view[i : i + step], decoder.want)
                    decoder.skip(step)
                    i += step
                    continue
                step = min(decoder.need - len(self.pending), n - i)
                self.pending += view[i : i + step]
                i += step
                if len(self.pending) == decoder.need:
                    data = bytes(self.pending)
                    self.pending.clear()
                    self._structural(data)
            except TarFormatError:
                self._fail(b"")

    def _structural(self, data: bytes) -> None:
        assert self.decoder is not None
        entry = self.decoder.feed(data)
        if entry is not None:
            self.entries += 1
            name = normalize_member(entry.header.name)
            scan = self.scanner.scan
            if len(scan.trailing_names) < 8:
                scan.trailing_names.append(name)
            self.scanner._maybe_capture(entry.header, entry.offset, entry.stored, after_end=True)

    def _fail(self, block: bytes) -> None:
        self.failed = True
        scan = self.scanner.scan
        scan.trailing_after_tar += len(block) - block.count(0) + len(self.pending)
        self.pending.clear()
        self.scanner._capture = None

    def finish(self) -> None:
        scan = self.scanner.scan
        decoder = self.decoder
        if self.failed or decoder is None:
            scan.trailing_tar_ok = False
            return
        if decoder.want is not Want.END:
            try:
                decoder.eof(len(self.pending))
            except TarFormatError:
                scan.trailing_tar_ok = False
                return
        scan.trailing_tar_ok = self.entries > 0


class TarScanner:
    """Feed chunks with :meth:`feed`, then call :meth:`finish`.

    Headers of the common kind (``tarformat.plain_header``: a USTAR or GNU regular file,
    directory, symlink or hard link with canonical fields and no extended header pending) are
    read in place, one after another within a chunk, and the data between them skipped by
    offset; anything else goes through the decoder, one piece at a time. Both give the same
    scan (``plain_headers=False`` reads every header with the decoder, for comparison).
    """

    def __init__(
        self,
        *,
        keep_entries: bool = False,
        track_duplicates: bool = True,
        plain_headers: bool = True,
    ) -> None:
        self.scan = TarScan()
        self._plain_ok = plain_headers and not keep_entries
        self.entries: list[RawHeader] = []
        self._keep = keep_entries
        self._track = track_duplicates
        # every path seen (duplicates) and, for regular files, its size (an estargz TOC is
        # compared with them); -1 for other types
        self._files: dict[str, int] = {}
        self._decoder = TarDecoder()
        self._pending = bytearray()  # a partial header block or extended header payload
        self._capture: TocCapture | None = None
        self._trailing: _Trailing | None = None

    def feed(self, chunk: bytes | memoryview) -> None:
        scan = self.scan
        n = len(chunk)
        scan.total += n
        if scan.error is not None:
            return
        decoder = self._decoder
        view = memoryview(chunk)
        src = chunk if isinstance(chunk, bytes) else view.tobytes()
        i = 0
        try:
            while i < n:
                want = decoder.want
                if (
                    want is Want.HEADER
                    and self._plain_ok
                    and not self._pending
                    and n - i >= BLOCK
                    and decoder.idle
                ):
                    j = self._plain(src, i, n)
                    if j != i:
                        i = j
                        continue
                if want is Want.END:
                    rest = view[i:]
                    scan.trailing_nonzero += len(rest) - bytes(rest).count(0)
                    if self._trailing is None:
                        self._trailing = _Trailing(self, decoder.pos)
                    self._trailing.feed(rest)
                    return
                if want in (Want.DATA, Want.PAD):
                    step = min(decoder.need, n - i)
                    if self._capture is not None:
                        self._capture_feed(view[i : i + step], want)
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
                        self._maybe_capture(
                            entry.header, entry.offset, entry.stored, after_end=False
                        )
        except TarFormatError as exc:
            scan.error = exc.message

    def _plain(self, src: bytes, i: int, n: int) -> int:
        """Read plain headers at ``src[i:]`` while they come, skipping the data between them
        that lies in this chunk; the decoder is told where it stopped. Returns that offset."""
        scan = self.scan
        decoder = self._decoder
        files = self._files
        track = self._track
        pos, entries, stored = decoder.pos, decoder.entries, 0
        start = i
        while n - i >= BLOCK and entries < MAX_ENTRIES:
            got = plain_header(src[i : i + BLOCK])
            if got is None:
                break
            name, flag, size = got
            entries += 1
            scan.entries += 1
            i += BLOCK
            pos += BLOCK
            # normalize_member, when the name is not already clean
            key = name[:-1] if name[-1:] == "/" else name
            if not key or key[0] in "/." or key[-1] == "/" or "//" in key or "/." in key:
                key = normalize_member(name)
            if len(key) >= MAX_PATH_BYTES // 4 and (
                len(key.encode("utf-8", "surrogateescape")) + 1 > MAX_PATH_BYTES
            ):
                scan.long_paths += 1
            is_file = flag == "0"
            if track:
                if key in files:
                    scan.duplicates.append(key)
                files[key] = size if is_file else -1
            self._capture = None
            if not is_file:
                continue
            scan.content_bytes += size
            if key == TOC_NAME and len(scan.tocs) < 4:
                self._capture = TocCapture(pos - BLOCK, size, False)
                scan.tocs.append(self._capture)
                stored = size  # the decoder's DATA state feeds the capture
                break
            span = (size + BLOCK - 1) & -BLOCK
            if n - i < span:
                stored = size
                break
            i += span
            pos += span
        if i != start:
            decoder.took_plain(pos, entries, stored)
        return i

    def _maybe_capture(
        self, header: RawHeader, offset: int, stored: int, *, after_end: bool
    ) -> None:
        self._capture = None
        if (
            header.typeflag in ("0", "7")
            and normalize_member(header.name) == TOC_NAME
            and len(self.scan.tocs) < 4
        ):
            self._capture = TocCapture(offset, stored, after_end)
            self.scan.tocs.append(self._capture)

    def _capture_feed(self, piece: memoryview, want: Want) -> None:
        capture = self._capture
        if capture is None or want is not Want.DATA:
            return
        capture.feed(piece)

    def _entry(self, header: RawHeader) -> None:
        scan = self.scan
        scan.entries += 1
        is_file = entry_type(header.typeflag) is EntryType.FILE
        if is_file and header.typeflag not in NO_DATA:
            scan.content_bytes += header.size
        key = normalize_member(header.name)
        if len(key) >= MAX_PATH_BYTES // 4 and (
            len(key.encode("utf-8", "surrogateescape")) + 1 > MAX_PATH_BYTES
        ):
            scan.long_paths += 1
        if self._track:
            if key in self._files:
                scan.duplicates.append(key)
            self._files[key] = header.size if is_file else -1
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
        if self._trailing is not None:
            self._trailing.finish()
        scan.ended = decoder.ended
        scan.ambiguities = list(decoder.ambiguities)
        scan.ambiguous = decoder.ambiguous
        if scan.tocs and self._track:
            scan.files = self._files
        return scan
