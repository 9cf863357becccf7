"""Hash a blob while decompressing it: one read gives the blob digest, the diff_id and a scan of
the tar inside. Decompression output is bounded per step, so a small blob that expands to
gigabytes (a decompression bomb) streams through in bounded memory."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from inspect_tool.layers.tarstream import TarScan, TarScanner
from inspect_tool.model.mediatypes import Compression, sniff_compression

CHUNK = 1024 * 1024
MAX_OUTPUT = 4 * 1024 * 1024  # decompressed bytes produced per step


@dataclass(frozen=True, slots=True)
class BlobHash:
    size: int
    digest_hex: str
    compression: Compression
    diff_id_hex: str | None = None  # sha256 of the decompressed stream (layers only)
    uncompressed_size: int | None = None
    scan: TarScan | None = None
    stream_error: str | None = None  # the compressed stream is corrupt or truncated
    trailing_bytes: int = 0  # bytes after the end of the compressed stream


def hash_blob(
    stream: BinaryIO, *, algorithm: str = "sha256", progress: Callable[[int], None] | None = None
) -> BlobHash:
    """Hash every byte of a blob (to EOF)."""
    h = hashlib.new(algorithm)
    size = 0
    head = b""
    while chunk := stream.read(CHUNK):
        if not head:
            head = chunk[:512]
        h.update(chunk)
        size += len(chunk)
        if progress:
            progress(len(chunk))
    return BlobHash(size, h.hexdigest(), sniff_compression(head))


def hash_layer(
    stream: BinaryIO,
    *,
    algorithm: str = "sha256",
    progress: Callable[[int], None] | None = None,
) -> BlobHash:
    """Hash a layer blob, decompress it as its bytes say, hash and scan the tar inside."""
    raw_hash = hashlib.new(algorithm)
    first = stream.read(CHUNK)
    compression = sniff_compression(first[:512])
    state = _Layer(raw_hash, progress)
    tee = _Tee(first, stream, state)
    error: str | None
    if compression is Compression.ZSTD:
        error, trailing = _pull_zstd(tee, state)
    else:
        sink: _GzipSink | _PlainSink = (
            _GzipSink(state) if compression is Compression.GZIP else _PlainSink(state)
        )
        while chunk := tee.read(CHUNK):
            sink.feed(chunk)
        sink.close()
        error, trailing = sink.error, sink.trailing
    tee.drain()  # every byte of the blob is hashed, whatever the decompressor left
    scan = state.scanner.finish()
    return BlobHash(
        size=state.size,
        digest_hex=raw_hash.hexdigest(),
        compression=compression,
        diff_id_hex=state.diff.hexdigest(),
        uncompressed_size=state.uncompressed,
        scan=scan,
        stream_error=error,
        trailing_bytes=trailing,
    )


class _Layer:
    def __init__(self, raw_hash: hashlib._Hash, progress: Callable[[int], None] | None) -> None:
        self.raw_hash = raw_hash
        self.diff = hashlib.sha256()
        self.scanner = TarScanner()
        self.size = 0
        self.uncompressed = 0
        self.progress = progress

    def raw(self, chunk: bytes) -> None:
        self.raw_hash.update(chunk)
        self.size += len(chunk)
        if self.progress:
            self.progress(len(chunk))

    def plain(self, data: bytes) -> None:
        if data:
            self.diff.update(data)
            self.uncompressed += len(data)
            self.scanner.feed(data)


class _PlainSink:
    def __init__(self, state: _Layer) -> None:
        self.state = state
        self.error: str | None = None
        self.trailing = 0

    def feed(self, chunk: bytes) -> None:
        self.state.plain(chunk)

    def close(self) -> None:
        pass


class _GzipSink:
    """gzip, including several concatenated members (estargz writes one per file)."""

    def __init__(self, state: _Layer) -> None:
        self.state = state
        self.error: str | None = None
        self.trailing = 0
        self._d: zlib._Decompress | None = zlib.decompressobj(wbits=31)
        self._done = False

    def feed(self, chunk: bytes) -> None:
        if self.error is not None:
            return
        if self._done:
            self.trailing += len(chunk)
            return
        data = chunk
        while data and self._d is not None:
            try:
                out = self._d.decompress(data, MAX_OUTPUT)
            except zlib.error as exc:
                self.error = f"gzip stream is corrupt: {exc}"
                return
            self.state.plain(out)
            data = self._d.unconsumed_tail
            while self._d.unconsumed_tail == b"" and not self._d.eof:
                more = self._d.decompress(b"", MAX_OUTPUT)
                if not more:
                    break
                self.state.plain(more)
            if self._d.eof:
                rest = self._d.unused_data + data
                if rest.startswith(b"\x1f\x8b"):
                    self._d = zlib.decompressobj(wbits=31)
                    data = rest
                elif rest:
                    self._done = True
                    self.trailing += len(rest)
                    return
                else:
                    self._done = True
                    return

    def close(self) -> None:
        if self.error is None and self._d is not None and not self._d.eof and not self._done:
            self.error = "gzip stream is truncated"


class _Tee:
    """Reads a blob for a decompressor, hashing and counting every byte that passes."""

    def __init__(self, first: bytes, stream: BinaryIO, state: _Layer) -> None:
        self._first: bytes | None = first
        self._stream = stream
        self._state = state

    def read(self, size: int = CHUNK) -> bytes:
        if self._first is not None:
            data, self._first = self._first, None
        else:
            data = self._stream.read(size if size and size > 0 else CHUNK)
        if data:
            self._state.raw(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _pull_zstd(tee: _Tee, state: _Layer) -> tuple[str | None, int]:
    """Decompress every zstd frame; output reaches the hashers in bounded pieces.

    The library's streaming writer keeps output bounded but says nothing when the input stops
    inside a frame, so the frame structure is walked alongside to tell a truncated stream.
    """
    import zstandard

    writer = zstandard.ZstdDecompressor().stream_writer(
        _PlainWriter(state),  # type: ignore[arg-type]  # any object with write() will do
        write_size=256 * 1024,
        closefd=False,
    )
    frames = ZstdFrames()
    try:
        while chunk := tee.read(CHUNK):
            frames.feed(chunk)
            writer.write(chunk)
        writer.flush()  # type: ignore[no-untyped-call]
    except zstandard.ZstdError as exc:
        return f"zstd stream is corrupt or has trailing bytes: {exc}", 0
    if not frames.complete:
        return "zstd stream is truncated", 0
    return None, 0


class _PlainWriter:
    def __init__(self, state: _Layer) -> None:
        self._state = state

    def write(self, data: bytes) -> int:
        self._state.plain(bytes(data))
        return len(data)


_ZSTD_MAGIC = 0xFD2FB528


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

    @property
    def complete(self) -> bool:
        return self.error is None and self._state == "magic" and not self._buf and not self._skip

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n and self.error is None:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            step = min(self._need - len(self._buf), n - i)
            self._buf += view[i : i + step]
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
        elif state == "descriptor":
            d = data[0]
            fcs_flag, single, checksum, did_flag = d >> 6, (d >> 5) & 1, (d >> 2) & 1, d & 3
            self._checksum = bool(checksum)
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            rest = (0 if single else 1) + (0, 1, 2, 4)[did_flag] + fcs
            self._skip = rest
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
