"""zstd:chunked layers (containers/storage, podman and buildah's ``--compression-format
zstd:chunked``): recognised and checked.

The tar is compressed as zstd frames (one per regular file's content); after them three
skippable frames, which a zstd decompressor skips, so the layer's tar and diff_id are those of
any zstd layer: the manifest (a CRFS-style TOC, itself zstd-compressed), the tar-split record
and a 64-byte footer: the manifest's offset, compressed and uncompressed sizes and type (1),
the tar-split's offset and sizes, and the magic ``GNUlInUx``, little-endian 64-bit numbers. The
layer's descriptor repeats them as annotations, with the manifest's sha256 (of its compressed
bytes). dockscope finds the footer in the last skippable frame, the manifest where it points,
and checks its digest against the annotation and its JSON (bounds, version 1).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.estargz import check_toc_json
from inspect_tool.layers.tarstream import MAX_TOC_BYTES
from inspect_tool.model.mediatypes import Compression

MANIFEST_CHECKSUM = "io.github.containers.zstd-chunked.manifest-checksum"
MANIFEST_POSITION = "io.github.containers.zstd-chunked.manifest-position"
_MAGIC = b"GNUlInUx"


@dataclass(frozen=True, slots=True)
class ZstdChunked:
    """A layer's zstd:chunked footer as found: where it puts the manifest, the manifest's digest and
    entry count, and the problems checking them found."""

    position: str  # offset:compressed:uncompressed:type, as the footer gives it
    manifest_digest: str | None  # sha256 of the manifest's compressed bytes
    entries: int
    problems: tuple[str, ...]


def recognise(stream: LayerStream) -> ZstdChunked | None:
    """The layer as zstd:chunked, when its last skippable frame is the footer."""
    if stream.compression is not Compression.ZSTD or stream.error is not None:
        return None
    frames = stream.skippable
    if not frames:
        return None
    footer = frames[-1]
    if footer.size != 64 or footer.data is None or bytes(footer.data[56:]) != _MAGIC:
        return None
    offset, compressed, uncompressed, kind, *_ = struct.unpack("<7Q", bytes(footer.data[:56]))
    position = f"{offset}:{compressed}:{uncompressed}:{kind}"
    problems: list[str] = []
    if footer.offset + footer.size != stream.raw_size:
        problems.append("the footer is not the blob's last frame")
    manifest = next((f for f in frames[:-1] if f.offset == offset), None)
    if manifest is None or manifest.size != compressed:
        problems.append(
            f"no skippable frame of {compressed} bytes at byte {offset}, where the footer "
            "puts the manifest"
        )
        return ZstdChunked(position, None, 0, tuple(problems))
    if kind != 1:
        problems.append(f"manifest type {kind}, not 1")
    entries = 0
    if uncompressed > MAX_TOC_BYTES or manifest.data is None:
        problems.append(
            f"the manifest of {uncompressed} bytes exceeds the bound of {MAX_TOC_BYTES} bytes"
        )
    else:
        data = _decompress(bytes(manifest.data), uncompressed)
        if data is None or len(data) != uncompressed:
            problems.append(f"the manifest does not decompress to its {uncompressed} bytes")
        else:
            entries = check_toc_json(data, None, problems)
    return ZstdChunked(position, manifest.digest, entries, tuple(problems))


def _decompress(data: bytes, size: int) -> bytes | None:
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        out: bytes = reader.read(size + 1)
    except zstandard.ZstdError:
        return None
    return out


def check(
    found: ZstdChunked | None, annotations: Mapping[str, str]
) -> tuple[str, str, bool] | None:
    """(expected, actual, ok) for verify, or None when neither blob nor descriptor says
    zstd:chunked."""
    checksum = annotations.get(MANIFEST_CHECKSUM)
    position = annotations.get(MANIFEST_POSITION)
    if found is None and checksum is None:
        return None
    expected = (
        f"a manifest with digest {checksum}"
        if checksum is not None
        else "a well-formed manifest (no manifest-checksum annotation)"
    )
    if found is None:
        return expected, "no zstd:chunked footer in the blob", False
    problems = list(found.problems)
    if checksum is not None and found.manifest_digest not in (None, checksum):
        problems.insert(0, f"the manifest's digest is {found.manifest_digest}")
    if position is not None and position != found.position:
        problems.append(f"the footer gives position {found.position}, the annotation {position}")
    actual = (
        f"{found.manifest_digest} ({found.entries} entries)"
        if found.manifest_digest is not None
        else "no manifest found"
    )
    return expected, "; ".join([actual, *problems]) if problems else actual, not problems
