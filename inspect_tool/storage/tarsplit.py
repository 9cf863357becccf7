"""An image layer's original tar, rebuilt byte for byte from what the engine kept.

Docker (``layerdb/sha256/<chain>/tar-split.json.gz``) and containers/storage
(``<driver>-layers/<id>.tar-split.gz``) keep, for every layer they unpack, the tar-split
record of its tar stream (github.com/vbatts/tar-split): JSON lines, each either a raw
segment of the stream (headers, padding: ``"type": 2``, base64 ``payload``) or a file entry
(``"type": 1``, ``name``, ``size``, the CRC-64 of its content as ``payload``) whose bytes come
from the unpacked layer directory. Concatenated, they are the tar the engine received: its
sha256 is the layer's diff_id, which is how engines rebuild layers for ``save`` and ``push``.

Files are opened inside the layer directory without following any symlink. The CRC-64 of each
file is checked only on request (``altered_files``): the diff_id covers every byte, and the
CRC then names the files that changed.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.union import PathTooLongError, clean_member_path
from inspect_tool.model.jsondoc import MAX_JSON_BYTES, parse_json
from inspect_tool.storage.evidence import Evidence, LayerDir, StorageError

MAX_LINE = MAX_JSON_BYTES
_CHUNK = 1 << 20
_SEGMENT, _FILE = 2, 1


@dataclass(frozen=True, slots=True)
class _Entry:
    """One line of a tar-split record: a raw segment of the tar stream, or a file whose content is
    read from the layer directory."""

    kind: int
    payload: bytes
    name: str
    size: int


def _entries(evidence: Evidence, rel: str) -> Iterator[_Entry]:
    subject = str(evidence.path(rel))
    fd = evidence.open_file(rel)
    with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw) as lines:
        number = 0
        while True:
            try:
                line = lines.readline(MAX_LINE + 1)
            except (OSError, EOFError) as exc:
                raise StorageError(f"not a gzip stream: {exc}", subject=subject) from None
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE:
                raise StorageError(
                    f"line {number} is longer than {MAX_LINE} bytes", subject=subject
                )
            try:
                item = parse_json(line, subject=f"{subject}: line {number}")
                kind = item["type"]
                payload = base64.b64decode(item.get("payload") or "", validate=True)
                if item.get("name_raw"):
                    name = base64.b64decode(item["name_raw"]).decode("utf-8", "surrogateescape")
                else:
                    name = str(item.get("name") or "")
                size = int(item.get("size") or 0)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise StorageError(
                    f"line {number} is not a tar-split entry: {exc}", subject=subject
                ) from None
            if kind not in (_SEGMENT, _FILE) or size < 0:
                raise StorageError(f"line {number}: unknown entry type {kind!r}", subject=subject)
            yield _Entry(kind, payload, name, size)


def _parts(name: str, subject: str) -> tuple[str, ...]:
    try:
        clean = clean_member_path(name)
    except PathTooLongError as exc:
        raise exc.with_subject(subject) from None
    if clean is None or not clean:
        raise StorageError(
            f"tar-split names {name!r}, which is not inside the layer", subject=subject
        )
    return tuple(clean.split("/"))


def _file_chunks(layer: LayerDir, entry: _Entry) -> Iterator[bytes]:
    parts = _parts(entry.name, layer.label)
    fd = layer.open_file(parts)
    with os.fdopen(fd, "rb", buffering=0) as f:
        left = entry.size
        while left > 0:
            chunk = f.read(min(left, _CHUNK))
            if not chunk:
                raise StorageError(
                    f"{entry.size - left} bytes where the layer's tar had {entry.size}",
                    subject=layer.display(parts),
                )
            left -= len(chunk)
            yield chunk
        if f.read(1):
            raise StorageError(
                f"larger than the {entry.size} bytes the layer's tar had",
                subject=layer.display(parts),
            )


def chunks(evidence: Evidence, split_rel: str, layer: LayerDir) -> Iterator[bytes]:
    """The layer's original tar stream, in pieces (headers, then each file's content)."""
    for entry in _entries(evidence, split_rel):
        if entry.kind == _SEGMENT:
            yield entry.payload
        elif entry.size > 0:
            yield from _file_chunks(layer, entry)


def reassemble(
    evidence: Evidence, split_rel: str, layer: LayerDir, write: Callable[[bytes], object]
) -> None:
    """Write the layer's original tar stream through ``write``."""
    for chunk in chunks(evidence, split_rel, layer):
        write(chunk)


def altered_files(evidence: Evidence, split_rel: str, layer: LayerDir) -> list[str]:
    """Files whose content no longer matches the CRC-64 the tar-split recorded (or that are
    missing, or not regular files): what changed in the layer directory."""
    found = []
    for entry in _entries(evidence, split_rel):
        if entry.kind != _FILE or entry.size == 0:
            continue
        crc = 0
        try:
            for chunk in _file_chunks(layer, entry):
                crc = crc64_update(crc, chunk)
        except DockscopeError as exc:
            found.append(f"/{entry.name.strip('/')} ({exc.message})")
            continue
        if crc.to_bytes(8, "big") != entry.payload:
            found.append(f"/{entry.name.strip('/')} (content differs)")
    return found


def _table() -> list[int]:
    poly = 0xD800000000000000  # ISO 3309, reversed: Go's crc64.ISO
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc64_update(crc: int, data: bytes) -> int:
    """Go's ``crc64.Update(crc, crc64.MakeTable(crc64.ISO), data)``."""
    crc ^= 0xFFFFFFFFFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF
