"""``containers-storage:[STORE]NAME``: an image of a Podman/Buildah store as a Source, read
offline and only read.

The store is seen through a tree laid out as an OCI layout, built from the engine's own
records and nothing else: ``index.json`` names one manifest, the config is the engine's
big-data file, and each layer blob is the layer's original tar, streamed from its tar-split
record and the unpacked layer directory (``tarsplit.chunks``) as it is read: nothing is
written anywhere, so ``inspect`` reads metadata only and ``verify`` hashes each rebuilt tar
against its diff_id. (A temporary layout written by ``storage save`` would rebuild every
layer before the first question, and write beside evidence that is only to be read.)

The store keeps no compressed blobs. When the manifest it recorded names exactly these
uncompressed tars (Buildah's and Podman's own commits) its bytes are served unchanged;
otherwise (an image pulled with gzip or zstd layers) the manifest is the one
containers/image itself serves for a copy from the store: the same document with each
layer's descriptor replaced by the uncompressed tar's (its diff_id, its size), which changes
the manifest digest. A note says so.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from inspect_tool.errors import BlobNotFoundError, DockscopeError, SelectionError, UsageError
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import ImageFormat
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.sources.location import Location
from inspect_tool.sources.oci_layout import add_candidate, walk_index
from inspect_tool.sources.source import Source
from inspect_tool.sources.tree import Entry, OpenReads, clean_path
from inspect_tool.storage import tarsplit
from inspect_tool.storage.containers import ContainersStorage, _bigdata_name
from inspect_tool.storage.detect import open_storage
from inspect_tool.storage.model import ImageLayer, ImageRecord

_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_UNCOMPRESSED = {
    str(MediaType.OCI_MANIFEST): str(MediaType.OCI_LAYER),
    str(MediaType.DOCKER_MANIFEST): str(MediaType.DOCKER_LAYER),
}


def open_storage_source(location: Location) -> Source:
    """The image ``location.name`` of the store ``location.store`` (graph root, driver)."""
    assert location.store is not None and location.name is not None
    root = location.store.graph_root
    try:
        storage = open_storage(root)
    except DockscopeError as exc:
        raise _named(exc, location, root) from None
    try:
        if not isinstance(storage, ContainersStorage):
            raise UsageError(
                f"{root} is a Docker root, not a containers/storage graph root", subject=None
            )
        driver = location.store.driver
        if driver is not None and driver not in storage.drivers:
            raise UsageError(
                f"the store has no {driver} images (drivers here: {', '.join(storage.drivers)})"
            )
        image = storage.resolve_image(location.name)
        if driver is not None and image.driver != driver:
            raise SelectionError(f"{location.name} is a {image.driver} image, not {driver}")
        tree = StorageTree(storage, image, location.text)
    except DockscopeError as exc:
        storage.evidence.close()
        raise _named(exc, location, root) from None
    except BaseException:
        storage.evidence.close()
        raise
    source = Source(root, tree, ImageFormat.CONTAINERS_STORAGE, location=location.text)
    try:
        if tree.synthesized:
            source.notes.append(
                "the store keeps no compressed blobs: the manifest shown names each layer's "
                "uncompressed tar (as containers/image serves a copy from the store), not the "
                f"one the store recorded ({tree.recorded_digest})"
            )
        for descriptor, ref, trail in walk_index(source):
            add_candidate(source, descriptor, ref, trail, repo_tags=image.tags)
    except BaseException:
        source.close()
        raise
    return source


def _named(exc: DockscopeError, location: Location, root: Path) -> DockscopeError:
    if exc.subject is None or exc.subject == str(root):
        exc.subject = location.text
    return exc


@dataclass(frozen=True, slots=True)
class _Blob:
    """One blob of the store seen as an OCI layout: metadata kept in memory, or a layer rebuilt from
    its tar-split record as it is read."""

    data: bytes | None  # metadata, kept in memory
    layer: ImageLayer | None  # a layer, rebuilt as it is read
    size: int


class StorageTree(OpenReads):
    """One image of a store, laid out as an OCI layout (see the module's docstring)."""

    compression = None
    parallel_reads = False  # one reader at a time over the evidence's descriptors
    forked_reads = False

    def __init__(self, storage: ContainersStorage, image: ImageRecord, label: str) -> None:
        self.storage = storage
        self.image = image
        self.label = label
        config = storage.image_config(image)
        layers = storage.image_layers(image)
        self._blobs: dict[str, _Blob] = {}
        config_digest = Digest.of_bytes(config)
        self._add(config_digest, _Blob(config, None, len(config)))
        wanted = []
        for layer in layers:
            digest = Digest.parse(layer.diff_id)
            size = layer.size if layer.size is not None else self._measure(layer)
            self._add(digest, _Blob(None, layer, size))
            wanted.append((str(digest), size))
        recorded = self._recorded_manifest()
        manifest, media_type = _manifest(recorded, config, config_digest, wanted)
        self.synthesized = recorded is None or manifest != recorded
        self.recorded_digest = Digest.of_bytes(recorded) if recorded else None
        digest = Digest.of_bytes(manifest)
        self._add(digest, _Blob(manifest, None, len(manifest)))
        self.manifest_digest = digest
        index = {
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_INDEX),
            "manifests": [{"mediaType": media_type, "digest": str(digest), "size": len(manifest)}],
        }
        self._files = {
            "index.json": json.dumps(index, separators=(",", ":")).encode(),
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        }

    def _add(self, digest: Digest, blob: _Blob) -> None:
        self._blobs[f"blobs/{digest.algorithm}/{digest.hex}"] = blob

    def _recorded_manifest(self) -> bytes | None:
        rel = f"{self.image.driver}-images/{self.image.key}/{_bigdata_name('manifest')}"
        if not self.storage.evidence.is_file(rel):
            return None
        return self.storage.evidence.read_bytes(rel)

    def _measure(self, layer: ImageLayer) -> int:
        with self._stream(layer) as stream:
            total = 0
            while chunk := stream.read(1 << 20):
                total += len(chunk)
            return total

    def _stream(self, layer: ImageLayer) -> BinaryIO:
        if layer.tar_split is None:
            raise BlobNotFoundError(
                f"{layer.label}: the store kept no tar-split record, so the layer's original "
                "tar cannot be rebuilt",
                subject=self.label,
            )
        directory = self.storage.evidence.layer(layer.directory)
        pieces = tarsplit.chunks(self.storage.evidence, layer.tar_split, directory)
        return io.BufferedReader(_ChunkReader(pieces, directory.close), 1 << 20)

    # -- Tree ----------------------------------------------------------------------------------

    def entry(self, path: str) -> Entry | None:
        name = clean_path(path)
        if name in self._files:
            return Entry(name, name, len(self._files[name]), 0)
        blob = self._blobs.get(name)
        if blob is None:
            return None
        order = blob.layer.index + 1 if blob.layer is not None else 0
        return Entry(name, name, blob.size, order)

    def open(self, path: str) -> BinaryIO:
        name = clean_path(path)
        if name in self._files:
            return io.BytesIO(self._files[name])
        blob = self._blobs.get(name)
        if blob is None:
            raise BlobNotFoundError("not in the store", subject=f"{self.label}:{path}")
        if blob.data is not None:
            return io.BytesIO(blob.data)
        assert blob.layer is not None
        return self._stream(blob.layer)

    def names(self) -> list[str]:
        return sorted([*self._files, *self._blobs])

    def close(self) -> None:
        self.storage.evidence.close()


def _manifest(
    recorded: bytes | None, config: bytes, config_digest: Digest, wanted: list[tuple[str, int]]
) -> tuple[bytes, str]:
    """The recorded manifest when it names exactly what the store can serve (``wanted``:
    each layer's diff_id and size), else it with each layer replaced by its uncompressed
    tar (an OCI manifest when none was recorded), keys in containers/image's order."""
    document: dict[str, Any] = {}
    if recorded is not None:
        try:
            parsed = json.loads(recorded)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("config"), dict):
            document = parsed
    media_type = document.get("mediaType")
    if media_type not in _UNCOMPRESSED:
        media_type = str(MediaType.OCI_MANIFEST)
    layer_type = _UNCOMPRESSED[media_type]
    listed = document.get("layers")
    if (
        recorded is not None
        and document.get("config", {}).get("digest") == str(config_digest)
        and isinstance(listed, list)
        and all(isinstance(d, dict) and d.get("mediaType") == layer_type for d in listed)
        and [(d.get("digest"), d.get("size")) for d in listed] == wanted
    ):
        return recorded, media_type
    config_type = _DOCKER_CONFIG if media_type == str(MediaType.DOCKER_MANIFEST) else None
    out: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": document.get("config", {}).get("mediaType")
            or config_type
            or str(MediaType.OCI_CONFIG),
            "digest": str(config_digest),
            "size": len(config),
        },
        "layers": [
            {"mediaType": layer_type, "digest": digest, "size": size} for digest, size in wanted
        ],
    }
    for key, value in document.items():
        out.setdefault(key, value)
    return json.dumps(out, separators=(",", ":")).encode(), media_type


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte strings; ``on_close`` runs once."""

    def __init__(self, pieces: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._pieces = pieces
        self._pending = b""
        self._on_close: Callable[[], None] | None = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._pending = piece
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()
        super().close()
