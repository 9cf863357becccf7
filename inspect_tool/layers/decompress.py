"""A layer blob as a stream of uncompressed tar bytes, hashing both sides as it goes.

``LayerStream`` reads a blob (uncompressed, gzip with any number of members, or zstd with any
number of frames; detected from the bytes), hands out the decompressed bytes in bounded pieces
(a small blob that expands to gigabytes streams through in bounded memory), and keeps the
sha256 of every raw byte (the blob digest, trailing bytes included once ``finish`` drains the
rest) and of every uncompressed byte (the diff_id). gzip is inflated by ``layers/inflate.py``'s
inflater (ISA-L when it imports, else zlib).
"""

from __future__ import annotations

import hashlib
import io
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

from inspect_tool.layers.inflate import Inflater, inflater
from inspect_tool.model.mediatypes import Compression, sniff_compression

CHUNK = 1024 * 1024
MAX_OUTPUT = 4 * 1024 * 1024  # decompressed bytes produced per step
TAIL = 51  # raw bytes kept from the end of a blob: an estargz footer


class LayerStream(io.RawIOBase):
    def __init__(
        self,
        raw: BinaryIO,
        *,
        algorithm: str = "sha256",
        progress: Callable[[int], None] | None = None,
        hash_raw: bool = True,
        hash_diff: bool = True,
    ) -> None:
        """``hash_raw=False``: a caller that hashes the raw bytes itself (copy, writing them
        as they go through) spares the second hash; ``digest_hex`` is then unavailable.
        ``hash_diff=False``: a caller that proves the bytes by the raw digest alone (a second
        read of a blob whose first read checked the diff_id) spares the uncompressed hash;
        ``diff_id_hex`` is then unavailable."""
        self._raw = raw
        self._progress = progress
        self.raw_hash = hashlib.new(algorithm) if hash_raw else None
        self.diff_hash = hashlib.sha256() if hash_diff else None
        self.raw_size = 0
        self.uncompressed_size = 0
        self.error: str | None = None  # the compressed stream is corrupt or truncated
        self.trailing = 0  # bytes after the end of the compressed stream
        self.tail = b""  # the blob's last TAIL raw bytes
        # where the last gzip members start: (raw offset, uncompressed offset); an estargz
        # footer names its TOC's member, the one before the footer's own
        self.members: deque[tuple[int, int]] = deque([(0, 0)], maxlen=3)
        first = self._read_raw()
        self.compression = sniff_compression(first[:512])
        self._pending = first
        self._out = b""
        self._out_pos = 0
        self._eof = False
        self._gzip: Any = None  # the inflater's decompressobj
        self._inflater: Inflater | None = None
        self._zstd: _Zstd | None = None
        if self.compression is Compression.GZIP:
            self._inflater = inflater()
            self._gzip = self._inflater.gzip()
        elif self.compression is Compression.ZSTD:
            self._zstd = _Zstd(self)

    # -- raw side ------------------------------------------------------------------------------
    def _read_raw(self, size: int = CHUNK) -> bytes:
        data = self._raw.read(size)
        if data:
            if self.raw_hash is not None:
                self.raw_hash.update(data)
            self.raw_size += len(data)
            self.tail = (self.tail + data[-TAIL:])[-TAIL:]
            if self._progress:
                self._progress(len(data))
        return data

    def _next_input(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._read_raw()

    # -- uncompressed side ---------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._out_pos >= len(self._out):
            if self._eof:
                return 0
            self._out = self._produce()
            self._out_pos = 0
        view = memoryview(self._out)[self._out_pos : self._out_pos + len(buffer)]
        n = len(view)
        buffer[:n] = view
        self._out_pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while self._out_pos >= len(self._out):
            if self._eof:
                return b""
            self._out = self._produce()
            self._out_pos = 0
        data = self._out[self._out_pos : self._out_pos + size]
        self._out_pos += len(data)
        return data

    def piece(self) -> bytes:
        """The next uncompressed bytes as they were produced (at most MAX_OUTPUT), not copied
        out piece by piece as ``read`` copies them; b"" at the end."""
        if self._out_pos < len(self._out):
            data = self._out[self._out_pos :] if self._out_pos else self._out
            self._out, self._out_pos = b"", 0
            return data
        while not self._eof:
            if out := self._produce():
                return out
        return b""

    def _emit(self, data: bytes) -> bytes:
        if data:
            if self.diff_hash is not None:
                self.diff_hash.update(data)
            self.uncompressed_size += len(data)
        return data

    def _produce(self) -> bytes:
        """The next piece of uncompressed bytes (possibly empty), at most MAX_OUTPUT."""
        if self._zstd is not None:
            out = self._zstd.read()
            if not out:
                self._eof = True
            return self._emit(out)
        if self._gzip is None:
            data = self._next_input()
            if not data:
                self._eof = True
            return self._emit(data)
        return self._emit(self._produce_gzip())

    def _produce_gzip(self) -> bytes:
        while True:
            d = self._gzip
            assert d is not None
            if d.eof:
                # A member ended: another member may follow (estargz writes one per file),
                # or trailing bytes that are not gzip at all.
                rest = d.unused_data + self._pending
                self._pending = b""
                while len(rest) < 2 and (more := self._read_raw()):
                    rest += more
                if not rest:
                    self._eof = True
                    return b""
                if rest.startswith(b"\x1f\x8b"):
                    self.members.append((self.raw_size - len(rest), self.uncompressed_size))
                    assert self._inflater is not None
                    self._gzip = self._inflater.gzip()
                    self._pending = rest
                    continue
                self.trailing += len(rest)
                self._eof = True
                return b""
            data = d.unconsumed_tail or self._next_input()
            if not data:
                # no input left: output the inflater still holds, else the stream is cut short
                assert self._inflater is not None
                try:
                    out: bytes = d.decompress(b"", MAX_OUTPUT)
                except self._inflater.errors:
                    out = b""
                if out:
                    return out
                if d.eof:
                    continue
                self.error = "gzip stream is truncated"
                self._eof = True
                return b""
            assert self._inflater is not None
            try:
                out = d.decompress(data, MAX_OUTPUT)
            except self._inflater.errors as exc:
                self.error = f"gzip stream is corrupt: {exc}"
                self._eof = True
                return b""
            if out:
                return out

    def finish(self) -> None:
        """Read the rest of the blob so the raw digest covers every byte, trailing ones too
        (what is decompressed and not read is hashed, not copied out)."""
        self._out, self._out_pos = b"", 0
        while not self._eof:
            self._produce()
        while data := self._next_input():
            if self.error is None and self.compression is not Compression.NONE:
                self.trailing += len(data)

    def finish_raw(self) -> None:
        """Read the rest of the blob for the raw digest alone, decompressing none of it: for
        a caller that has what it wanted and proves the blob by that digest (the bytes not
        decompressed are then the ones an earlier read decompressed and checked)."""
        if self.raw_hash is None:
            raise ValueError("the raw bytes are not hashed (hash_raw=False)")
        self._out, self._out_pos, self._pending, self._eof = b"", 0, b"", True
        while self._read_raw():
            pass

    @property
    def digest_hex(self) -> str:
        if self.raw_hash is None:
            raise ValueError("the raw bytes were not hashed (hash_raw=False)")
        return self.raw_hash.hexdigest()

    @property
    def skippable(self) -> list[SkippableFrame]:
        """The blob's last zstd skippable frames (zstd:chunked's manifest, tar-split, footer)."""
        return list(self._zstd.frames.skippable) if self._zstd is not None else []

    @property
    def diff_id_hex(self) -> str:
        if self.diff_hash is None:
            raise ValueError("the uncompressed bytes were not hashed (hash_diff=False)")
        return self.diff_hash.hexdigest()


class _Zstd:
    """zstd frames, pulled in bounded pieces; the frame walk tells a truncated stream."""

    def __init__(self, owner: LayerStream) -> None:
        import zstandard

        self._owner = owner
        self._frames = self.frames = ZstdFrames()
        self._error_type = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _RawFeed(owner, self._frames),  # type: ignore[arg-type]  # read() is enough
            read_size=CHUNK,
            read_across_frames=True,
        )

    def read(self) -> bytes:
        owner = self._owner
        try:
            out: bytes = self._reader.read(MAX_OUTPUT)
        except self._error_type as exc:
            owner.error = f"zstd stream is corrupt or has trailing bytes: {exc}"
            return b""
        if not out and not self._frames.complete and owner.error is None:
            owner.error = "zstd stream is truncated"
        return out


class _RawFeed:
    def __init__(self, owner: LayerStream, frames: ZstdFrames) -> None:
        self._owner = owner
        self._frames = frames

    def read(self, size: int = CHUNK) -> bytes:
        data = self._owner._next_input()
        if data:
            self._frames.feed(data)
        return data


_ZSTD_MAGIC = 0xFD2FB528


@dataclass(slots=True)
class SkippableFrame:
    """A zstd skippable frame's payload: where it lies in the blob, its sha256, its bytes when
    they are at most ``KEEP`` long."""

    KEEP: ClassVar[int] = 16 << 20  # a zstd:chunked manifest is JSON of 16 MiB at most

    offset: int
    size: int
    hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    data: bytearray | None = field(default_factory=bytearray)

    def feed(self, piece: memoryview) -> None:
        self.hash.update(piece)
        if self.data is not None:
            if self.size > self.KEEP:
                self.data = None
            else:
                self.data += piece

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class ZstdFrames:
    """Walks zstd frame and block headers (RFC 8878) to know whether the last frame ended."""

    def __init__(self) -> None:
        self._need = 4  # bytes to collect before the next decision
        self._buf = bytearray()
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self.frames = 0
        self.error: str | None = None
        self.pos = 0  # bytes fed
        # the last skippable frames (zstd:chunked keeps its manifest, tar-split and footer in
        # three at the end): their payloads' offsets, sizes, sha256 and, when small, bytes
        self.skippable: deque[SkippableFrame] = deque(maxlen=3)
        self._frame: SkippableFrame | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and self._state == "magic" and not self._buf and not self._skip

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n and self.error is None:
            if self._skip:
                step = min(self._skip, n - i)
                if self._frame is not None:
                    self._frame.feed(view[i : i + step])
                self._skip -= step
                self.pos += step
                i += step
                if not self._skip and self._frame is not None:
                    self.skippable.append(self._frame)
                    self._frame = None
                continue
            step = min(self._need - len(self._buf), n - i)
            self._buf += view[i : i + step]
            self.pos += step
            i += step
            if len(self._buf) == self._need:
                collected = bytes(self._buf)
                self._buf.clear()
                self._advance(collected)

    def _advance(self, data: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(data, "little")
            if magic == _ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
                self._state, self._need = "skippable", 4
            else:
                self.error = "not a zstd frame"
        elif state == "skippable":
            self._skip = int.from_bytes(data, "little")
            self._state, self._need = "magic", 4
            frame = SkippableFrame(self.pos, self._skip)
            if self._skip:
                self._frame = frame
            else:
                self.skippable.append(frame)
        elif state == "descriptor":
            d = data[0]
            fcs_flag, single, checksum, did_flag = d >> 6, (d >> 5) & 1, (d >> 2) & 1, d & 3
            self._checksum = bool(checksum)
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[did_flag] + fcs
            self._state, self._need = "block", 3
        elif state == "block":
            header = int.from_bytes(data, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                self.error = "reserved zstd block type"
                return
            self._skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if last:
                self.frames += 1
                if self._checksum:
                    self._skip += 4
                self._state, self._need = "magic", 4


class Prefetcher(io.RawIOBase):
    """Reads a layer's stream in a background thread, a bounded number of pieces ahead
    (``LayerStream.piece``: as the inflater made them, up to MAX_OUTPUT each, never copied).

    Decompression and hashing release the GIL, so while the caller parses tar headers in
    Python, the next megabytes are being inflated and hashed on the other core.
    """

    def __init__(self, stream: LayerStream, *, depth: int = 4) -> None:
        import queue
        import threading

        self._stream = stream
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buffer = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, name="dockscope-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._stream.piece()
                if not chunk:
                    break
                self._put(chunk)
            self._put(None)
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> None:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= len(self._buffer):
            if self._done:
                return 0
            item = self._queue.get()
            if item is None:
                self._done = True
                return 0
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._buffer, self._pos = item, 0
        n = min(len(buffer), len(self._buffer) - self._pos)
        buffer[:n] = self._buffer[self._pos : self._pos + n]
        self._pos += n
        return n

    def chunk(self) -> bytes:
        """The next piece as the stream produced it, not copied (b"" at the end); for a
        caller reading the stream directly, never mixed with ``readinto``."""
        if self._pos < len(self._buffer):
            rest, self._buffer, self._pos = self._buffer[self._pos :], b"", 0
            return rest
        if self._done:
            return b""
        item = self._queue.get()
        if item is None:
            self._done = True
            return b""
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def drain(self) -> None:
        """Read to the end, so the wrapped stream has seen every byte."""
        while not self._done:
            item = self._queue.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
        self._thread.join()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()
