"""The gzip inflater: ISA-L when it imports, zlib otherwise; both decode the same."""

from __future__ import annotations

import builtins
import gzip
import io
import os
import random
import zlib
from typing import Any

import pytest

from inspect_tool.layers import inflate
from inspect_tool.layers.decompress import MAX_OUTPUT, LayerStream


@pytest.fixture(autouse=True)
def _fresh_choice() -> Any:
    inflate.inflater.cache_clear()
    yield
    inflate.inflater.cache_clear()


def _blob() -> bytes:
    rng = random.Random(7)
    text = b" ".join(rng.choice([b"alpha", b"beta", b"gamma"]) for _ in range(200_000))
    # two members, then trailing bytes that are not gzip
    return gzip.compress(text) + gzip.compress(rng.randbytes(300_000) + bytes(2_000_000)) + b"xyz"


def _read(blob: bytes) -> tuple[LayerStream, bytes]:
    stream = LayerStream(io.BytesIO(blob))
    out = bytearray()
    while piece := stream.read(1 << 20):
        assert len(piece) <= MAX_OUTPUT
        out += piece
    stream.finish()
    return stream, bytes(out)


def _facts(blob: bytes) -> tuple[object, ...]:
    stream, out = _read(blob)
    return (out, stream.error, stream.trailing, stream.diff_id_hex, stream.digest_hex)


def test_isal_is_the_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("isal")
    monkeypatch.delenv(inflate.ENV, raising=False)
    assert inflate.inflater().name == "isal"


def test_zlib_when_isal_does_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inflate.ENV, raising=False)
    real_import = builtins.__import__

    def no_isal(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "isal" or name.startswith("isal."):
            raise ImportError("no isal here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    chosen = inflate.inflater()
    assert chosen.name == "zlib"
    assert chosen.module is zlib
    blob = _blob()
    stream, out = _read(blob)
    assert out == gzip.decompress(blob[:-3])
    assert stream.trailing == 3 and stream.error is None


@pytest.mark.parametrize("name", ["isal", "zlib-ng"])
@pytest.mark.parametrize(
    "cut",
    [
        None,  # whole: two members and trailing bytes
        -3,  # no trailing bytes
        -10,  # the second member's trailer cut
        100_000,  # truncated inside the first member
    ],
)
def test_same_decoding_as_zlib(name: str, cut: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(name.replace("-", "_"))
    blob = _blob()[:cut]
    monkeypatch.setenv(inflate.ENV, "zlib")
    expected = _facts(blob)
    inflate.inflater.cache_clear()
    monkeypatch.setenv(inflate.ENV, name)
    assert inflate.inflater().name == name
    assert _facts(blob) == expected


@pytest.mark.parametrize("name", ["isal", "zlib", "zlib-ng"])
def test_corrupt_stream_is_an_error_not_an_exception(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(inflate.ENV, name)
    blob = bytearray(gzip.compress(os.urandom(100_000)))
    blob[20:40] = b"\xff" * 20
    stream, _ = _read(bytes(blob))
    assert stream.error is not None and stream.error.startswith("gzip stream is corrupt")


def test_a_second_read_hashes_the_rest_without_decompressing_it() -> None:
    """``finish_raw``: the raw digest covers every byte of the blob, trailing ones too,
    while nothing past what was read is decompressed; without ``hash_diff`` there is no
    diff_id to ask for."""
    import hashlib

    data = random.Random(7).randbytes(3 * MAX_OUTPUT)
    blob = gzip.compress(data, compresslevel=1) + b"\0" * 100
    stream = LayerStream(io.BytesIO(blob), hash_diff=False)
    assert stream.read(4096) == data[:4096]
    stream.finish_raw()
    assert stream.digest_hex == hashlib.sha256(blob).hexdigest()
    assert stream.uncompressed_size <= MAX_OUTPUT  # the first piece alone
    assert stream.read(10) == b""
    with pytest.raises(ValueError, match="hash_diff=False"):
        _ = stream.diff_id_hex
    whole = LayerStream(io.BytesIO(blob))
    whole.finish()
    assert whole.uncompressed_size == len(data)
    assert whole.diff_id_hex == hashlib.sha256(data).hexdigest()
