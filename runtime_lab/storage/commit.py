"""A container's filesystem as tars, and as a new image: ``container export`` and ``commit``.

``export`` writes the merged filesystem (what ``docker export`` writes: the image's layers with
the writable layer on top, computed from the layer directories by overlay's rules, mount
points included) or, with ``layer=True``, the writable layer alone as an OCI layer tar
(overlay's whiteout devices become ``.wh.`` files, opaque directories ``.wh..wh..opq``; the
mount points the runtime made are left out, as docker keeps them in its init layer): the
container read as engine storage's containers are (``driver.py``), written by engine
storage's export and the one tar writer.

``commit`` writes an OCI image layout: the original image's layer blobs copied byte for byte
(each one hashed as it is copied, its digest and diff_id checked), the writable layer as one
more gzip layer, the config with that diff_id appended, a history entry and a new ``created``,
the manifest, ``index.json`` (tagged when asked) and ``oci-layout``. The layout is built under
a temporary name beside the destination and renamed into place once complete.

Nothing is written into the container's directories or the layer store, and file and directory
access times are left as they were: the container stays evidence. A running container is
refused: its writable layer would change while it is read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from inspect_tool.errors import DockscopeError, InvalidImageError, UsageError
from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.tarwrite import TarStats
from inspect_tool.layout.writer import (
    BlobDigestError,
    BlobWriter,
    LayoutWriter,
    create_layout,
    descriptor_json,
    index_entry,
)
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import Descriptor, Image, Layer, Platform
from inspect_tool.model.mediatypes import Compression, MediaType
from inspect_tool.model.reference import Reference as Reference  # commit's --tag value
from inspect_tool.sources.source import Source
from inspect_tool.storage.export import export_layer
from runtime_lab.storage.driver import container_layer
from runtime_lab.storage.store import ContainerConfig, ContainerState, Store, now

CREATED_BY = "dockscope commit"
LAYER_TYPES = {
    Compression.NONE: MediaType.OCI_LAYER,
    Compression.GZIP: MediaType.OCI_LAYER_GZIP,
    Compression.ZSTD: MediaType.OCI_LAYER_ZSTD,
}


class ContainerImageError(DockscopeError):
    """The container cannot be exported or committed as it stands (exit 3)."""


@dataclass(frozen=True, slots=True)
class CommitOptions:
    """What ``commit`` was asked to put into the new image beyond the layer: a tag, and the
    history entry's comment, author and creation time."""

    tag: Reference | None = None
    message: str | None = None  # the history entry's comment
    author: str | None = None
    created: str | None = None  # default: now


@dataclass(frozen=True, slots=True)
class NewLayer:
    """The container's writable layer as written into the new image: a gzip blob, its digests
    and sizes, and counts of what its tar holds."""

    diff_id: Digest
    digest: Digest
    size: int  # of the compressed blob
    uncompressed_size: int
    media_type: str
    stats: TarStats


@dataclass(frozen=True, slots=True)
class CommitResult:
    """The image ``commit`` wrote, for its report: where the layout is, the image it was made
    from, the new image's IDs and its new layer."""

    output: Path
    base_image_id: Digest
    image_id: Digest
    manifest_digest: Digest
    manifest_size: int
    layers: int  # all of them, the new one included
    layer: NewLayer
    tag: Reference | None


@dataclass(frozen=True, slots=True)
class _Container:
    """A container found by name or ID and checked to be readable: not running, its image's
    layers all in the layer store."""

    id: str
    config: ContainerConfig
    state: ContainerState


def _container(store: Store, name_or_id: str) -> _Container:
    from runtime_lab.lifecycle.state import refresh

    cid = store.resolve(name_or_id)
    config = store.load_config(cid)
    state = refresh(store, cid)
    if state.status == "running":
        raise UsageError(
            f"container {config.name} is running: stop it first (its writable layer would "
            "change while it is read)"
        )
    for lower in (store.layer_dir(d) for d in config.diff_ids):
        if not lower.is_dir():
            raise ContainerImageError(
                "a layer of the container's image is missing from the layer store",
                subject=str(lower),
            )
    return _Container(cid, config, state)


def _check_writable_layer(container: _Container) -> None:
    if container.state.rootfs_mode != "overlay":
        raise ContainerImageError(
            f"container {container.config.name} ran on a copy of the image (no overlayfs), "
            "so it has no separate writable layer",
        )


def export(store: Store, name_or_id: str, out: BinaryIO, *, layer: bool = False) -> TarStats:
    """Write the container's merged filesystem (or, with ``layer``, its writable layer as an
    OCI layer) to ``out`` as one tar, as engine storage's containers are written (one
    code path: ``inspect_tool.storage.export``). Same container, same bytes."""
    container = _container(store, name_or_id)
    if layer:
        _check_writable_layer(container)
    with container_layer(store, container.config, container.state) as writable:
        return export_layer(writable, out, only_layer=layer)


# -- commit -------------------------------------------------------------------------------------


class _Counter:
    """A file object that hashes and counts what goes through to ``out`` (the tar inside
    the gzip stream: its diff_id)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


class _Tee:
    """Reads from ``raw`` and copies every byte read to ``out`` (a blob copied as it is
    verified)."""

    def __init__(self, raw: BinaryIO, out: BlobWriter) -> None:
        self.raw = raw
        self.out = out

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.out.write(data)
        return data


def _copy_layer(source: Source, layer: Layer, layout: LayoutWriter) -> Descriptor:
    """Copy one layer blob byte for byte, checking its digest and diff_id as it streams."""
    subject = f"{source.label}: layer {layer.index}"
    if layer.blob is None or source.tree.entry(layer.blob.path) is None:
        raise InvalidImageError(f"layer {layer.index} blob is missing", subject=source.label)
    algorithm = layer.digest.algorithm if layer.digest is not None else "sha256"
    with layout.blob(algorithm) as blob:
        with source.tree.open(layer.blob.path) as raw:
            stream = LayerStream(cast(BinaryIO, _Tee(raw, blob)), algorithm=algorithm)
            stream.finish()
        if stream.error:
            raise InvalidImageError(stream.error, subject=subject)
        if layer.digest is not None:
            try:
                blob.verify(layer.digest)
            except BlobDigestError as exc:
                raise exc.with_subject(subject) from None
        if layer.diff_id is None or layer.diff_id.hex != stream.diff_id_hex:
            raise InvalidImageError(
                f"diff_id mismatch: got sha256:{stream.diff_id_hex}, expected {layer.diff_id}",
                subject=subject,
            )
        media_type = LAYER_TYPES.get(stream.compression)
        if media_type is None:
            raise InvalidImageError("the blob is neither a tar nor gzip or zstd", subject=subject)
        return blob.commit(str(media_type))  # a layer listed twice: the same bytes again


def _new_layer(store: Store, container: _Container, layout: LayoutWriter) -> NewLayer:
    """The writable layer as a gzip blob: the tar hashed for the diff_id, the gzip stream for
    the digest (no file name, mtime 0: the same layer gives the same blob)."""
    _check_writable_layer(container)
    with (
        container_layer(store, container.config, container.state) as writable,
        layout.blob() as blob,
    ):
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0) as zipped:
            uncompressed = _Counter(cast(BinaryIO, zipped))
            stats = export_layer(writable, uncompressed, only_layer=True)
        descriptor = blob.commit(str(MediaType.OCI_LAYER_GZIP))
    return NewLayer(
        diff_id=Digest("sha256", uncompressed.hash.hexdigest()),
        digest=descriptor.digest,
        size=descriptor.size,
        uncompressed_size=uncompressed.size,
        media_type=descriptor.media_type,
        stats=stats,
    )


def _new_config(
    image: Image, container: _Container, layer: NewLayer, options: CommitOptions
) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(image.config.raw)
    created = options.created or now()
    config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), str(layer.diff_id)]
    entry: dict[str, Any] = {"created": created, "created_by": CREATED_BY}
    if options.author:
        entry["author"] = options.author
        config["author"] = options.author
    entry["comment"] = options.message or (
        f"container {container.config.name} ({container.id[:12]})"
    )
    history = config.get("history")
    config["history"] = [*(history if isinstance(history, list) else []), entry]
    return config


def commit(
    store: Store, name_or_id: str, output: Path, options: CommitOptions | None = None
) -> CommitResult:
    """Write the container as a new image: an OCI image layout at ``output``."""
    from inspect_tool.sources import ImageSelection, open_image

    options = options or CommitOptions()
    container = _container(store, name_or_id)
    _check_writable_layer(container)
    recorded = container.config
    selector = recorded.image_selector
    source, image = open_image(
        recorded.image_source,  # as run was given it: a path, or a location (oci:DIR:REF, …)
        ImageSelection(selector.get("image"), selector.get("ref"), selector.get("platform")),
    )
    with source:
        if str(image.image_id) != recorded.image_id:
            raise ContainerImageError(
                f"the image there is now {image.image_id}, not the container's {recorded.image_id}",
                subject=recorded.image_source,
            )
        if [d.hex for d in image.diff_ids] != recorded.diff_ids:
            raise ContainerImageError(
                "the image's layers are not the container's", subject=recorded.image_source
            )
        with create_layout(output) as layout:
            descriptors = [_copy_layer(source, layer, layout) for layer in image.layers]
            layer = _new_layer(store, container, layout)
            descriptors.append(Descriptor(layer.media_type, layer.digest, layer.size))
            config = _new_config(image, container, layer, options)
            config_descriptor = layout.add_json(config, str(MediaType.OCI_CONFIG))
            manifest = {
                "schemaVersion": 2,
                "mediaType": str(MediaType.OCI_MANIFEST),
                "config": descriptor_json(config_descriptor),
                "layers": [descriptor_json(d) for d in descriptors],
            }
            manifest_descriptor = layout.add_json(manifest, str(MediaType.OCI_MANIFEST))
            name = str(options.tag) if options.tag is not None else None
            layout.finish([index_entry(manifest_descriptor, name=name, platform=_platform(config))])
    return CommitResult(
        output=output,
        base_image_id=image.image_id,
        image_id=config_descriptor.digest,
        manifest_digest=manifest_descriptor.digest,
        manifest_size=manifest_descriptor.size,
        layers=len(descriptors),
        layer=layer,
        tag=options.tag,
    )


def _platform(config: dict[str, Any]) -> Platform | None:
    """The index entry's platform, from the config's os, architecture and variant."""
    os_name, arch, variant = config.get("os"), config.get("architecture"), config.get("variant")
    if not (isinstance(os_name, str) and isinstance(arch, str) and os_name and arch):
        return None
    return Platform(os_name, arch, variant if isinstance(variant, str) and variant else None)
