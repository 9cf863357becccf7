"""Hash a blob while decompressing it: one read gives the blob digest, the diff_id and a scan of
the tar inside (see decompress.LayerStream). ``stream_hash`` is the same without the scan, for
a copy that hashes its layers on their way through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from inspect_tool.layers.decompress import CHUNK, MAX_OUTPUT, LayerStream
from inspect_tool.layers.estargz import EStargz, footer_offset, recognise
from inspect_tool.layers.tarstream import TarScan, TarScanner
from inspect_tool.layers.zstdchunked import ZstdChunked
from inspect_tool.layers.zstdchunked import recognise as recognise_zstd_chunked
from inspect_tool.model.mediatypes import Compression, sniff_compression

__all__ = ["MAX_OUTPUT", "BlobHash", "hash_blob", "hash_layer", "stream_hash"]


@dataclass(frozen=True, slots=True)
class BlobHash:
    """What one read of a blob found: its size, digest and compression and, for a layer, what it
    decompresses to (diff_id, tar scan, damage, an estargz or zstd:chunked footer)."""

    size: int
    digest_hex: str
    compression: Compression
    diff_id_hex: str | None = None  # sha256 of the decompressed stream (layers only)
    uncompressed_size: int | None = None
    scan: TarScan | None = None
    stream_error: str | None = None  # the compressed stream is corrupt or truncated
    trailing_bytes: int = 0  # bytes after the end of the compressed stream
    estargz: EStargz | None = None  # the blob ends in an estargz footer
    zstd_chunked: ZstdChunked | None = None  # the blob ends in a zstd:chunked footer


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
    layer = LayerStream(stream, algorithm=algorithm, progress=progress)
    scanner = TarScanner()
    while chunk := layer.read(CHUNK):
        scanner.feed(chunk)
    layer.finish()  # every byte of the blob is hashed, whatever the decompressor left
    scan = scanner.finish()
    return BlobHash(
        size=layer.raw_size,
        digest_hex=layer.digest_hex,
        compression=layer.compression,
        diff_id_hex=layer.diff_id_hex,
        uncompressed_size=layer.uncompressed_size,
        scan=scan,
        stream_error=layer.error,
        trailing_bytes=layer.trailing,
        estargz=recognise(layer, scan),
        zstd_chunked=recognise_zstd_chunked(layer),
    )


def stream_hash(layer: LayerStream, *, size: int, digest_hex: str) -> BlobHash | None:
    """What a layer read to its end (``layer.finish()`` done) tells without a tar scan: its
    digest (``digest_hex``, hashed by the caller as it wrote the bytes), its compression, its
    diff_id, a corrupt or truncated stream, trailing bytes, a zstd:chunked footer. None when
    the blob ends in an estargz footer: checking its TOC takes ``hash_layer``'s scan."""
    if layer.compression is Compression.GZIP and footer_offset(layer.tail) is not None:
        return None
    return BlobHash(
        size=size,
        digest_hex=digest_hex,
        compression=layer.compression,
        diff_id_hex=layer.diff_id_hex,
        uncompressed_size=layer.uncompressed_size,
        stream_error=layer.error,
        trailing_bytes=layer.trailing,
        zstd_chunked=recognise_zstd_chunked(layer),
    )
