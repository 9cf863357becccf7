"""The in-place reading of plain headers gives exactly what the decoder gives: the scanner's
scan (verify), the pull reader's members (unpack, export, every command reading files) and the
header reader's (the plan of unpack's and export's first read).

Every tar input the tests know (Go's table and its mutations, the hostile unpack layers, the
corpus images' layers, the sample image) and archives made to sit at the edges of the plain
form are scanned twice, once with ``plain_headers=False`` (every header through
``TarDecoder``, as before) and once as verify scans, in chunks of many sizes; the two scans must
be equal field by field, the estargz TOC captures included.
"""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_tool.layers import tarformat
from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.tarformat import TarFormatError, plain_header, plain_member
from inspect_tool.layers.tarreader import HeaderReader, TarReader
from inspect_tool.layers.tarstream import TarScan, TarScanner
from inspect_tool.sources import open_source
from tests.image.test_corpus import CORPUS_IMAGES
from tests.image.test_tar_go import CASES as GO_CASES
from tests.image.test_tar_go import _mutations
from tests.layers.test_unpack_hostile import CASES as HOSTILE_CASES
from tests.layers.test_unpack_hostile import Env
from tests.support.paths import SAMPLES
from tests.support.tar_entries import build_layer

CHUNKS = (1, 100, 511, 512, 513, 1536, 4096, 65536, 1 << 22)


def _view(scan: TarScan) -> dict[str, object]:
    fields = {name: getattr(scan, name) for name in TarScan.__slots__ if name != "tocs"}
    fields["tocs"] = [(t.offset, t.size, t.after_end, t.digest, t.data, t.read) for t in scan.tocs]
    return fields


def _scan(archive: bytes, chunk: int, *, plain: bool) -> dict[str, object]:
    scanner = TarScanner(plain_headers=plain)
    for at in range(0, len(archive), chunk):
        scanner.feed(archive[at : at + chunk])
    return _view(scanner.finish())


def assert_same_scan(archive: bytes, chunks: tuple[int, ...] = CHUNKS) -> dict[str, object]:
    reference = _scan(archive, len(archive) or 1, plain=False)
    for chunk in chunks:
        assert _scan(archive, chunk, plain=True) == reference, chunk
        assert _scan(archive, chunk, plain=False) == reference, chunk
    return reference


def _members(archive: bytes, *, plain: bool) -> tuple[object, ...]:
    """Every member (all fields), the data of every other one, how the reading ended."""
    reader = TarReader(io.BytesIO(archive), plain_headers=plain)
    members: list[tuple[object, bytes]] = []
    error = None
    try:
        for index, member in enumerate(reader):
            data = reader.read() if index % 2 else b""
            members.append((tuple(getattr(member, f) for f in member.__slots__), data))
    except TarFormatError as exc:
        error = exc.message
    return members, error, reader.ended, reader.ambiguities


def assert_same_members(archive: bytes) -> None:
    assert _members(archive, plain=True) == _members(archive, plain=False)


def _headers(archive: bytes, chunk: int | None, *, plain: bool) -> tuple[object, ...]:
    """Every member (all fields) and how the reading ended: ``HeaderReader`` over the archive
    in chunks of ``chunk`` bytes, or ``TarReader`` (every header through the decoder, no data
    read) for None."""
    reader: HeaderReader | TarReader
    if chunk is None:
        reader = TarReader(io.BytesIO(archive), plain_headers=False)
    else:
        pieces = iter([archive[at : at + chunk] for at in range(0, len(archive), chunk)])
        reader = HeaderReader(lambda: next(pieces, b""), plain_headers=plain)
    members: list[object] = []
    error = None
    try:
        for member in reader:
            members.append(tuple(getattr(member, f) for f in member.__slots__))
    except TarFormatError as exc:
        error = exc.message
    return members, error, reader.ended, reader.ambiguities


def assert_same_headers(archive: bytes, chunks: tuple[int, ...]) -> None:
    """``HeaderReader`` gives ``TarReader``'s members, in every chunking."""
    reference = _headers(archive, None, plain=False)
    for chunk in chunks:
        assert _headers(archive, chunk, plain=True) == reference, chunk
        assert _headers(archive, chunk, plain=False) == reference, chunk


def assert_same(archive: bytes, chunks: tuple[int, ...] = CHUNKS) -> dict[str, object]:
    assert_same_members(archive)
    assert_same_headers(archive, chunks)
    return assert_same_scan(archive, chunks)


# --- inputs -------------------------------------------------------------------------------------


def _tarfile(fmt: int, members: list[tuple[str, str, bytes, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, kind, payload, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind.encode()
            info.linkname = link
            info.mtime = 1_700_000_000
            if kind == "0":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buffer.getvalue()


_MEMBERS: list[tuple[str, str, bytes, str]] = [
    ("./", "5", b"", ""),
    ("usr/", "5", b"", ""),
    ("usr/bin/", "5", b"", ""),
    ("usr/bin/tool", "0", b"#!/bin/sh\n" * 70, ""),
    ("usr/bin/empty", "0", b"", ""),
    ("usr/bin/exactly-a-block", "0", b"b" * 512, ""),
    ("usr/bin/link", "2", b"", "tool"),
    ("usr/bin/hard", "1", b"", "usr/bin/tool"),
    ("./usr//bin/./tool", "0", b"again", ""),  # a duplicate, under another spelling
    ("/abs/x", "0", b"x", ""),
    (".hidden", "0", b"h", ""),
    ("a/.b/", "5", b"", ""),
    ("d" * 99, "0", b"", ""),
    ("e" * 100, "0", b"e", ""),  # no NUL in the name field
    ("p" * 80 + "/" + "q" * 90, "0", b"prefixed", ""),  # USTAR prefix
    ("x/" * 60 + "long", "0", b"gnu or pax long name", ""),
    ("caf\u00e9/\udcff", "0", b"", ""),  # not UTF-8
    ("usr/bin/fifo", "6", b"", ""),
    ("stargz.index.json", "0", b'{"version":1,"entries":[]}', ""),
]


def _edge_archives() -> Iterator[tuple[str, bytes]]:
    for fmt, label in ((tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu")):
        members = [m for m in _MEMBERS if fmt != tarfile.USTAR_FORMAT or len(m[0]) <= 170]
        if fmt == tarfile.USTAR_FORMAT:
            members = [m for m in members if "\udcff" not in m[0] and len(m[0]) < 256]
        yield label, _tarfile(fmt, members)
    pax = _tarfile(tarfile.PAX_FORMAT, _MEMBERS)
    yield "pax", pax
    # the TOC in a second tar after the end-of-archive marker, then garbage
    second = _tarfile(tarfile.USTAR_FORMAT, [_MEMBERS[-1]])
    yield "toc-after-end", pax + second + b"garbage"
    yield "trailing-zeros", pax + bytes(4096)
    yield "cut-in-data", pax[: 512 * 5 + 100]
    yield "cut-in-padding", pax[: 512 * 5 + 700]
    yield "cut-in-header", pax[: 512 * 5 + 10]
    big = _tarfile(
        tarfile.GNU_FORMAT,
        [(f"f/{i:05}", "0", b"z" * (i % 1300), "") for i in range(2000)]
        + [(f"f/{i:05}", "5" if i % 2 else "2", b"", "t") for i in range(0, 2000, 7)],
    )
    yield "many", big


def _recheck(block: bytearray, *, signed: bool = False) -> None:
    block[148:156] = b" " * 8
    total = sum(block) - (256 * sum(1 for b in block if b > 127) if signed else 0)
    block[148:156] = f"{total:06o}".encode() + b"\x00 "


def _header_mutations(count: int, seed: int) -> list[bytes]:
    """Archives of plain headers with one field changed to a form at the plain form's edge,
    checksums fixed (unsigned or, for high bytes, signed) so the change reaches the fields."""
    rng = random.Random(seed)
    base = _tarfile(
        tarfile.GNU_FORMAT if seed % 2 else tarfile.USTAR_FORMAT,
        [m for m in _MEMBERS if len(m[0]) < 100 and "\udcff" not in m[0]],
    )
    headers = [at for at in range(0, len(base), 512) if base[at + 257 : at + 262] == b"ustar"]
    edits = [
        (100, b"000755 \x00"),
        (100, b"  00755\x00"),
        (108, b"\x80\x00\x00\x00\x00\x00\x00\x01"),
        (124, b"00000000001 "),
        (124, b"0000000001\x00\x00"),
        (124, b"\x80" + bytes(10) + b"\x05"),
        (124, b"7777777777\x00\x00"),
        (136, b"0000000000\x00 "),
        (156, b"\x00"),
        (156, b"7"),
        (156, b"3"),
        (156, b"g"),
        (156, b"S"),
        (257, b"ustar\x00"),
        (257, b"ustar\x0000"),
        (263, b"01"),
        (257, b"ustar  \x00"),
        (257, b"\x00" * 8),
        (329, b"0000000 "),
        (329, b"\x00" * 7 + b"1"),
        (337, b"0000001\x00"),
        (345, b"pre"),
        (345, b"01234567012\x00"),
        (357, b"\xff"),
        (508, b"tar\x00"),
        (0, b"\xe9\xff/./x"),
        (0, b"a" * 100),
        (99, b"\x00"),
        (40, b"\x00zz"),
    ]
    archives = []
    for _ in range(count):
        archive = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.choice(headers)
            offset, value = rng.choice(edits)
            block = archive[at : at + 512]
            block[offset : offset + len(value)] = value
            roll = rng.random()
            if roll < 0.7:
                _recheck(block)
            elif roll < 0.85:
                _recheck(block, signed=True)
            archive[at : at + 512] = block
        archives.append(bytes(archive))
    return archives


def _image_layers(images: list[Path]) -> Iterator[tuple[str, bytes]]:
    for image_path in images:
        with open_source(image_path) as source:
            seen: set[str] = set()
            for candidate in source.candidates:
                for layer in candidate.image().layers:
                    path = layer.blob.path
                    if path in seen:
                        continue
                    seen.add(path)
                    with source.tree.open(path) as stream:
                        yield f"{image_path.name}:{path}", LayerStream(stream).read()


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", GO_CASES, ids=[c.id for c in GO_CASES])
def test_go_table(case: object) -> None:
    assert_same(case.archive)  # type: ignore[attr-defined]


def test_go_table_mutations() -> None:
    for archive in _mutations(300, seed=18) + _mutations(300, seed=19):
        assert_same(archive, (1, 512, 777, 1 << 22))


def test_plain_edge_mutations() -> None:
    plain = 0
    for seed in (1, 2):
        for archive in _header_mutations(250, seed):
            scan = assert_same(archive, (512, 1000, 1 << 22))
            plain += scan["error"] is None
    assert plain > 20  # not every mutation breaks the archive


@pytest.mark.parametrize("label", [label for label, _ in _edge_archives()])
def test_edge_archives(label: str) -> None:
    archive = dict(_edge_archives())[label]
    scan = assert_same(archive)
    if label in ("pax", "gnu", "toc-after-end"):
        assert scan["duplicates"] == ["usr/bin/tool"] and scan["tocs"], scan


def test_hostile_layers(tmp_path: Path) -> None:
    env = Env(tmp_path, tmp_path / "dest", tmp_path / "victim", "marker")
    layers = [build_layer(layer) for case in HOSTILE_CASES for layer in case.layers(env)]
    assert len(layers) >= 40
    for archive in layers:
        assert_same(archive, (512, 4096, 1 << 22))


def test_corpus_and_sample_layers(corpus: Path) -> None:
    images = [corpus / name for name in CORPUS_IMAGES] + [SAMPLES / "busybox.tar"]
    layers = list(_image_layers(images))
    assert len(layers) >= 10
    entries = 0
    for _, archive in layers:
        scan = assert_same(archive, (4096, 1 << 20))
        assert scan["error"] is None
        entries += scan["entries"]  # type: ignore[operator]
    assert entries > 500


def test_plain_header_agrees_with_the_decoder() -> None:
    """Wherever plain_header reads a block, parse_header reads the same name, type and size."""
    blocks = [
        archive[at : at + 512]
        for archive in _header_mutations(200, 3) + _header_mutations(200, 4)
        for at in range(0, len(archive) - 511, 512)
    ]
    read = 0
    for block in blocks:
        got = plain_header(block)
        if got is None:
            continue
        read += 1
        header = tarformat.parse_header(block, 0)
        assert got == (header.name, header.typeflag, header.size)
        assert plain_member(block) == header
    assert read > 1000
    assert sum(plain_member(b) is not None for b in blocks) == read


def test_plain_header_leaves_the_rest_to_the_decoder() -> None:
    block = bytearray(_tarfile(tarfile.USTAR_FORMAT, [("a", "0", b"", "")])[:512])
    assert plain_header(bytes(block)) == ("a", "0", 0)
    for offset, value in ((156, b"x"), (124, b"\x80"), (263, b"\x00\x00"), (508, b"tar\x00")):
        edited = bytearray(block)
        edited[offset : offset + len(value)] = value
        _recheck(edited)
        assert plain_header(bytes(edited)) is None, (offset, value)
    high = bytearray(block)
    high[0:2] = b"\xe9a"
    _recheck(high, signed=True)  # an old writer's signed sum: the decoder's to accept
    assert plain_header(bytes(high)) is None
    assert tarformat.parse_header(bytes(high), 0).name == "\udce9a"
    with pytest.raises(TarFormatError):
        tarformat.parse_header(bytes(block[:148]) + b"0000000\x00" + bytes(block[156:]), 0)


def _stored_bytes(archive: bytes) -> list[tuple[str, int, int, bytes]]:
    """(name, data_offset, size, the bytes the reader gives) of every member until an error."""
    found = []
    reader = TarReader(io.BytesIO(archive))
    try:
        for member in reader:
            found.append((member.name, member.data_offset, member.size, reader.read()))
    except TarFormatError:
        pass
    return found


@pytest.mark.parametrize("case", GO_CASES, ids=[c.id for c in GO_CASES])
def test_data_offset_is_where_the_members_bytes_are(case: object) -> None:
    archive: bytes = case.archive  # type: ignore[attr-defined]
    for name, offset, size, content in _stored_bytes(archive):
        if "sparse" in case.id or name.startswith("GNUSparseFile"):  # type: ignore[attr-defined]
            continue
        assert offset >= 0, name
        assert archive[offset : offset + size] == content, name


def test_a_sparse_member_has_no_data_offset() -> None:
    sparse = [c for c in GO_CASES if "sparse" in c.id and c.error is None]
    assert sparse
    for case in sparse:
        members = _stored_bytes(case.archive)
        assert any(offset == -1 for _, offset, _, _ in members), case.id


def test_data_offset_in_the_samples_layers() -> None:
    for name in ("docker-archive-legacy.tar", "oci-layout", "oci-archive-zstd.tar"):
        source = open_source(SAMPLES / name)
        try:
            for layer in source.candidates[0].image().layers:
                assert layer.blob is not None
                with source.tree.open(layer.blob.path) as raw:
                    tar = LayerStream(raw).read()
                members = _stored_bytes(tar)
                assert members
                for member, offset, size, content in members:
                    assert tar[offset : offset + size] == content, (name, member)
        finally:
            source.close()
