"""A container's filesystem as tars, and as a new image: ``container export`` and ``commit``.

``export`` writes the merged filesystem (what ``docker export`` writes: the image's layers with
the writable layer on top, computed from the layer directories by overlay's rules, mount
points included) or, with ``layer=True``, the writable layer alone as an OCI layer tar
(overlay's whiteout devices become ``.wh.`` files, opaque directories ``.wh..wh..opq``; the
mount points the runtime made are left out, as docker keeps them in its init layer).

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

import contextlib
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from inspect_tool.errors import DockscopeError, InvalidImageError, UsageError
from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.tarwrite import TarStats
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import CONTAINERD_NAME, REF_NAME, Image, Layer
from inspect_tool.model.mediatypes import Compression, MediaType
from inspect_tool.sources.source import Source
from runtime_lab.store import ContainerConfig, ContainerState, Store, now
from runtime_lab.writable import layer_entries, merged_entries, write_tar

CREATED_BY = "dockscope commit"
LAYER_TYPES = {
    Compression.NONE: MediaType.OCI_LAYER,
    Compression.GZIP: MediaType.OCI_LAYER_GZIP,
    Compression.ZSTD: MediaType.OCI_LAYER_ZSTD,
}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class ContainerImageError(DockscopeError):
    """The container cannot be exported or committed as it stands (exit 3)."""


@dataclass(frozen=True, slots=True)
class Reference:
    name: str  # "example.org/app"
    tag: str  # "v1"

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``NAME[:TAG]`` (the tag defaults to ``latest``); digests are not accepted."""
        name, tag = text, "latest"
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            name, tag = text[:colon], text[colon + 1 :]
        if "@" in text or not _valid_name(name) or not _TAG_RE.fullmatch(tag):
            raise UsageError(
                f"--tag {text!r}: expected NAME[:TAG], e.g. example.org/app:1 (a lowercase "
                "name, a tag of letters, digits, '_', '.' and '-')"
            )
        return cls(name, tag)

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


def _valid_name(name: str) -> bool:
    """docker's reference grammar: an optional domain (the first component, when it has a
    '.' or a port or is localhost), then lowercase path components."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return bool(_DOMAIN_RE.fullmatch(first) and _PATH_RE.fullmatch(rest))
    return bool(_PATH_RE.fullmatch(name))


@dataclass(frozen=True, slots=True)
class CommitOptions:
    tag: Reference | None = None
    message: str | None = None  # the history entry's comment
    author: str | None = None
    created: str | None = None  # default: now


@dataclass(frozen=True, slots=True)
class NewLayer:
    diff_id: Digest
    digest: Digest
    size: int  # of the compressed blob
    uncompressed_size: int
    media_type: str
    stats: TarStats


@dataclass(frozen=True, slots=True)
class CommitResult:
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
    id: str
    config: ContainerConfig
    state: ContainerState
    upper: Path
    lowers: list[Path]
    merged: Path


def _container(store: Store, name_or_id: str) -> _Container:
    from runtime_lab import container as rt

    cid = store.resolve(name_or_id)
    config = store.load_config(cid)
    state = rt.refresh(store, cid)
    if state.status == "running":
        raise UsageError(
            f"container {config.name} is running: stop it first (its writable layer would "
            "change while it is read)"
        )
    directory = store.container_dir(cid)
    lowers = [store.layer_dir(d) for d in config.diff_ids]
    for lower in lowers:
        if not lower.is_dir():
            raise ContainerImageError(
                "a layer of the container's image is missing from the layer store",
                subject=str(lower),
            )
    return _Container(cid, config, state, directory / "upper", lowers, directory / "merged")


def _writable_layer(container: _Container) -> Path:
    if container.state.rootfs_mode != "overlay":
        raise ContainerImageError(
            f"container {container.config.name} ran on a copy of the image (no overlayfs), "
            "so it has no separate writable layer",
        )
    return container.upper


def export(store: Store, name_or_id: str, out: BinaryIO, *, layer: bool = False) -> TarStats:
    """Write the container's merged filesystem (or, with ``layer``, its writable layer as an
    OCI layer) to ``out`` as one tar. Same container, same bytes."""
    container = _container(store, name_or_id)
    if layer:
        upper = _writable_layer(container)
        return write_tar(layer_entries(upper, ignore=set(container.state.runtime_paths)), out)
    if container.state.rootfs_mode != "overlay":
        return write_tar(merged_entries(container.merged, []), out)
    return write_tar(merged_entries(container.upper, container.lowers), out)


# -- commit -------------------------------------------------------------------------------------


class _Sink:
    """A file object that hashes and counts what goes through to ``out``."""

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

    def __init__(self, raw: BinaryIO, out: BinaryIO) -> None:
        self.raw = raw
        self.out = out

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.out.write(data)
        return data


class _Layout:
    """The layout being written: ``blobs/<algorithm>/<hex>`` under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def temporary(self) -> Path:
        directory = self.root / "blobs" / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".tmp-{secrets.token_hex(8)}"

    def add_json(self, document: dict[str, Any]) -> tuple[Digest, int]:
        data = json.dumps(document, separators=(",", ":")).encode()
        digest = Digest.of_bytes(data)
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest, len(data)


def _copy_layer(source: Source, layer: Layer, layout: _Layout) -> dict[str, Any]:
    """Copy one layer blob byte for byte, checking its digest and diff_id as it streams."""
    subject = f"{source.label}: layer {layer.index}"
    if layer.blob is None or source.tree.entry(layer.blob.path) is None:
        raise InvalidImageError(f"layer {layer.index} blob is missing", subject=source.label)
    algorithm = layer.digest.algorithm if layer.digest is not None else "sha256"
    temporary = layout.temporary()
    with source.tree.open(layer.blob.path) as raw, open(temporary, "wb") as out:
        stream = LayerStream(cast(BinaryIO, _Tee(raw, out)), algorithm=algorithm)
        stream.finish()
    if stream.error:
        raise InvalidImageError(stream.error, subject=subject)
    digest = Digest(algorithm, stream.digest_hex)
    if layer.digest is not None and digest != layer.digest:
        raise InvalidImageError(
            f"blob digest mismatch: got {digest}, expected {layer.digest}", subject=subject
        )
    if layer.diff_id is None or layer.diff_id.hex != stream.diff_id_hex:
        raise InvalidImageError(
            f"diff_id mismatch: got sha256:{stream.diff_id_hex}, expected {layer.diff_id}",
            subject=subject,
        )
    media_type = LAYER_TYPES.get(stream.compression)
    if media_type is None:
        raise InvalidImageError("the blob is neither a tar nor gzip or zstd", subject=subject)
    target = layout.blob_path(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, target)  # a layer listed twice: the same bytes again
    return {"mediaType": str(media_type), "digest": str(digest), "size": stream.raw_size}


def _new_layer(container: _Container, layout: _Layout) -> NewLayer:
    """The writable layer as a gzip blob: the tar hashed for the diff_id, the gzip stream for
    the digest (no file name, mtime 0: the same layer gives the same blob)."""
    upper = _writable_layer(container)
    temporary = layout.temporary()
    with open(temporary, "wb") as out:
        compressed = _Sink(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as zipped:
            uncompressed = _Sink(cast(BinaryIO, zipped))
            entries = layer_entries(upper, ignore=set(container.state.runtime_paths))
            stats = write_tar(entries, cast(BinaryIO, uncompressed))
    digest = Digest("sha256", compressed.hash.hexdigest())
    os.replace(temporary, layout.blob_path(digest))
    return NewLayer(
        diff_id=Digest("sha256", uncompressed.hash.hexdigest()),
        digest=digest,
        size=compressed.size,
        uncompressed_size=uncompressed.size,
        media_type=str(MediaType.OCI_LAYER_GZIP),
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


def _prepare_output(output: Path) -> Path:
    """A temporary directory beside ``output``, which must be missing or an empty directory."""
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise UsageError("exists and is not a directory", subject=str(output))
    if output.is_dir() and any(output.iterdir()):
        raise UsageError("exists and is not empty", subject=str(output))
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError("the parent directory does not exist", subject=str(output))
    temporary = parent / f".{output.name}.tmp-{secrets.token_hex(4)}"
    temporary.mkdir(mode=0o755)
    return temporary


def commit(
    store: Store, name_or_id: str, output: Path, options: CommitOptions | None = None
) -> CommitResult:
    """Write the container as a new image: an OCI image layout at ``output``."""
    from inspect_tool.cli._common import open_one_image

    options = options or CommitOptions()
    container = _container(store, name_or_id)
    _writable_layer(container)
    recorded = container.config
    selector = recorded.image_selector
    source, image = open_one_image(
        Path(recorded.image_source),
        selector.get("image"),
        selector.get("ref"),
        selector.get("platform"),
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
        temporary = _prepare_output(output)
        try:
            layout = _Layout(temporary)
            descriptors = [_copy_layer(source, layer, layout) for layer in image.layers]
            layer = _new_layer(container, layout)
            descriptors.append(
                {"mediaType": layer.media_type, "digest": str(layer.digest), "size": layer.size}
            )
            config = _new_config(image, container, layer, options)
            config_digest, config_size = layout.add_json(config)
            manifest = {
                "schemaVersion": 2,
                "mediaType": str(MediaType.OCI_MANIFEST),
                "config": {
                    "mediaType": str(MediaType.OCI_CONFIG),
                    "digest": str(config_digest),
                    "size": config_size,
                },
                "layers": descriptors,
            }
            manifest_digest, manifest_size = layout.add_json(manifest)
            _write_index(temporary, manifest_digest, manifest_size, config, options.tag)
            with contextlib.suppress(FileNotFoundError):
                output.rmdir()  # an empty directory given as the destination
            os.rename(temporary, output)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return CommitResult(
        output=output,
        base_image_id=image.image_id,
        image_id=config_digest,
        manifest_digest=manifest_digest,
        manifest_size=manifest_size,
        layers=len(descriptors),
        layer=layer,
        tag=options.tag,
    )


def _write_index(
    root: Path, digest: Digest, size: int, config: dict[str, Any], tag: Reference | None
) -> None:
    descriptor: dict[str, Any] = {
        "mediaType": str(MediaType.OCI_MANIFEST),
        "digest": str(digest),
        "size": size,
    }
    os_name, arch = config.get("os"), config.get("architecture")
    if isinstance(os_name, str) and isinstance(arch, str) and os_name and arch:
        platform = {"architecture": arch, "os": os_name}
        if isinstance(config.get("variant"), str) and config["variant"]:
            platform["variant"] = config["variant"]
        descriptor["platform"] = platform
    if tag is not None:
        descriptor["annotations"] = {CONTAINERD_NAME: str(tag), REF_NAME: tag.tag}
    index = {
        "schemaVersion": 2,
        "mediaType": str(MediaType.OCI_INDEX),
        "manifests": [descriptor],
    }
    (root / "index.json").write_text(json.dumps(index, separators=(",", ":")))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
