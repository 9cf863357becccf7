"""Hashing and tar scanning of layer streams: every byte counted, structure checked."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
import zstandard

from inspect_tool.layers.hashing import MAX_OUTPUT, hash_blob, hash_layer
from inspect_tool.layers.tarstream import TarScanner
from inspect_tool.model.mediatypes import Compression


def make_tar(entries: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


LONG = "very/" * 40 + "long-name.txt"  # > 100 bytes: needs GNU or PAX extensions
TAR = make_tar([("a.txt", b"a" * 1000), (LONG, b"long"), ("dir/b", b"")])


def scan(data: bytes, chunk: int = 7919):
    scanner = TarScanner(keep_entries=True)
    for i in range(0, len(data), chunk):
        scanner.feed(data[i : i + chunk])
    return scanner, scanner.finish()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 512, 7919, 1 << 20])
def test_scanner_reads_long_names_in_any_chunking(fmt: int, chunk: int) -> None:
    data = make_tar([("a.txt", b"a" * 1000), (LONG, b"long"), ("dir/b", b"")], fmt)
    scanner, result = scan(data, chunk)
    assert result.error is None
    assert result.ended
    assert [e.name for e in scanner.entries] == ["a.txt", LONG, "dir/b"]
    assert [e.size for e in scanner.entries] == [1000, 4, 0]
    assert result.total == len(data)


def test_scanner_finds_duplicates_with_dot_slash() -> None:
    _, result = scan(make_tar([("./etc/x", b"1"), ("etc/x", b"2"), ("etc/y", b"3")]))
    assert result.duplicates == ["etc/x"]


def test_scanner_detects_truncation_and_trailing_data() -> None:
    _, cut = scan(TAR[:700])
    assert cut.error is not None and "ends inside" in cut.error
    _, trailing = scan(TAR + b"hidden payload")
    assert trailing.error is None and trailing.trailing_nonzero == len(b"hidden payload")


def test_scanner_rejects_corrupt_header() -> None:
    data = bytearray(TAR)
    data[0] ^= 0x01  # the name changes, the checksum no longer matches
    _, result = scan(bytes(data))
    assert result.error is not None and "checksum" in result.error


def test_scanner_reads_base256_size() -> None:
    header = bytearray(make_tar([("big", b"x" * 10)])[:512])
    # rewrite the size field (10) in GNU base-256 and fix the checksum
    header[124:136] = b"\x80" + (10).to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\x00 ".encode()
    data = bytes(header) + b"x" * 10 + bytes(502) + bytes(1024)
    scanner, result = scan(data)
    assert result.error is None and scanner.entries[0].size == 10


def _check(blob: bytes, compression: Compression) -> None:
    result = hash_layer(io.BytesIO(blob))
    assert result.compression is compression
    assert result.size == len(blob)
    assert result.digest_hex == hashlib.sha256(blob).hexdigest()
    assert result.diff_id_hex == hashlib.sha256(TAR).hexdigest()
    assert result.uncompressed_size == len(TAR)
    assert result.stream_error is None and result.trailing_bytes == 0


def test_plain_gzip_zstd() -> None:
    _check(TAR, Compression.NONE)
    _check(gzip.compress(TAR), Compression.GZIP)
    _check(zstandard.ZstdCompressor().compress(TAR), Compression.ZSTD)


def test_multi_member_gzip_like_estargz() -> None:
    """estargz compresses each file as its own gzip member, then appends a footer member."""
    parts = [TAR[:512], TAR[512:2048], TAR[2048:]]
    blob = b"".join(gzip.compress(p) for p in parts) + gzip.compress(b"")
    _check(blob, Compression.GZIP)


def test_multi_frame_zstd() -> None:
    c = zstandard.ZstdCompressor()
    _check(c.compress(TAR[:1000]) + c.compress(TAR[1000:]), Compression.ZSTD)


def test_trailing_bytes_after_gzip_are_hashed_and_reported() -> None:
    blob = gzip.compress(TAR) + b"appended"
    result = hash_layer(io.BytesIO(blob))
    assert result.digest_hex == hashlib.sha256(blob).hexdigest()  # trailing bytes included
    assert result.diff_id_hex == hashlib.sha256(TAR).hexdigest()
    assert result.trailing_bytes == len(b"appended")


def test_corrupt_and_truncated_streams() -> None:
    blob = gzip.compress(TAR)
    truncated = hash_layer(io.BytesIO(blob[: len(blob) // 2]))
    assert truncated.stream_error == "gzip stream is truncated"
    zst = zstandard.ZstdCompressor().compress(TAR)
    cut = hash_layer(io.BytesIO(zst[:-5]))
    assert cut.stream_error == "zstd stream is truncated"
    assert cut.diff_id_hex != hashlib.sha256(TAR).hexdigest()
    junk = hash_layer(io.BytesIO(zst + b"junk"))
    assert junk.stream_error is not None and "zstd" in junk.stream_error


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decompression_bomb_streams_in_bounded_steps(kind: str) -> None:
    """64 MiB of zeros in a few kB: output arrives in bounded pieces."""
    size = 64 * 1024 * 1024
    if kind == "gzip":
        compressor = __import__("zlib").compressobj(9, wbits=31)
        blob = compressor.compress(bytes(size)) + compressor.flush()
    else:
        blob = zstandard.ZstdCompressor(level=19).compress(bytes(size))
    assert len(blob) < 100_000

    class Spy(io.BytesIO):
        pass

    largest = 0
    from inspect_tool.layers.decompress import LayerStream

    original = LayerStream._emit

    def spy(self, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
        nonlocal largest
        largest = max(largest, len(data))
        return original(self, data)

    LayerStream._emit = spy  # type: ignore[method-assign]
    try:
        result = hash_layer(Spy(blob))
    finally:
        LayerStream._emit = original  # type: ignore[method-assign]
    assert result.uncompressed_size == size
    assert largest <= MAX_OUTPUT


def test_hash_blob_reads_to_eof() -> None:
    data = b"{}" + b" " * 5000
    result = hash_blob(io.BytesIO(data))
    assert result.size == len(data) and result.digest_hex == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("size", [0, 3000, 64 * 1024 - 1, 64 * 1024, 200_000])
def test_hex_digest_is_hashlib_s_on_either_side_of_the_small_bound(
    algorithm: str, size: int
) -> None:
    from inspect_tool.model.digest import Digest, _own_hash, hex_digest

    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert hex_digest(algorithm, data) == hashlib.new(algorithm, data).hexdigest()
    assert Digest.of_bytes(data, algorithm).hex == hashlib.new(algorithm, data).hexdigest()
    assert _own_hash(algorithm) is not None  # this interpreter has its own: the small path ran


def test_hex_digest_falls_back_to_hashlib_without_the_interpreter_s_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inspect_tool.model import digest

    monkeypatch.setattr(digest, "_OWN", {"sha256": None})
    assert digest.hex_digest("sha256", b"abc") == hashlib.sha256(b"abc").hexdigest()
