"""Pushing one image to a registry: its blobs (skipped when the registry has them, mounted
from another repository when asked, else one monolithic upload each), then its manifest with
its exact bytes and media type, so every digest stays as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from inspect_tool.errors import DockscopeError, InvalidImageError
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import Image
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.registry.access import RegistryAccess, current_access
from inspect_tool.sources.source import Source
from inspect_tool.sources.tree import Tree

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PushedBlob:
    """One blob of a push and what became of it: found on the registry, mounted from another
    repository or uploaded."""

    digest: Digest
    size: int
    action: str  # "exists", "mounted", "uploaded"


@dataclass(frozen=True)
class PushResult:
    """What a push did: the reference pushed to, the manifest's digest and media type, and what
    became of each blob."""

    reference: str  # docker://… as pushed
    manifest_digest: Digest
    media_type: str
    blobs: tuple[PushedBlob, ...]


@dataclass(frozen=True)
class _Upload:
    """A blob a push may send: its digest and size, and where the source's tree holds it."""

    digest: Digest
    size: int
    path: str  # in the source's tree


def push_image(
    source: Source,
    image: Image,
    destination: str,
    access: RegistryAccess | None = None,
    *,
    mount_from: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> PushResult:
    """Push ``image`` (read from ``source``) to ``docker://HOST/NAME[:TAG|@DIGEST]``.

    An image without a manifest (a legacy ``docker save``) gets a Docker v2 manifest made from
    its config and layer blobs (their digests hashed where the archive does not give them).
    ``mount_from`` names a repository on the same registry to mount blobs from.
    """
    from inspect_tool.registry.client import RegistryClient
    from inspect_tool.registry.reference import RegistryReference

    reference = RegistryReference.parse(destination)
    client = RegistryClient(reference, access or current_access(), push=True)
    try:
        manifest, media_type, uploads = _plan(source, image)
        digest = Digest.of_bytes(
            manifest, reference.digest.algorithm if reference.digest else "sha256"
        )
        if reference.digest is not None and digest != reference.digest:
            raise client.error(
                f"the image's manifest has digest {digest}, not the {reference.digest} named"
            )
        done: list[PushedBlob] = []
        seen: set[Digest] = set()
        for upload in uploads:
            if upload.digest in seen:
                continue
            seen.add(upload.digest)
            if client.blob_exists(upload.digest):
                done.append(PushedBlob(upload.digest, upload.size, "exists"))
            elif mount_from and client.mount_blob(upload.digest, mount_from):
                done.append(PushedBlob(upload.digest, upload.size, "mounted"))
            else:
                client.upload_blob(upload.digest, upload.size, _chunks(source, upload, progress))
                done.append(PushedBlob(upload.digest, upload.size, "uploaded"))
                continue
            if progress is not None:
                progress(upload.size)
        answered = client.put_manifest(reference.manifest_ref, manifest, media_type)
        if answered:
            try:
                claimed = Digest.parse(answered.strip())
            except DockscopeError:
                claimed = None
            if claimed is not None and claimed.algorithm == digest.algorithm and claimed != digest:
                raise client.error(f"the registry stored the manifest as {claimed}, not {digest}")
        return PushResult(reference.transport, digest, media_type, tuple(done))
    finally:
        client.close()


def total_size(source: Source, image: Image) -> int:
    """The bytes a push may send (for a progress bar)."""
    return sum(u.size for u in _plan(source, image)[2])


def _plan(source: Source, image: Image) -> tuple[bytes, str, list[_Upload]]:
    tree = source.tree
    config = _Upload(image.config.digest, len(image.config.raw), image.config_blob.path)
    layers: list[_Upload] = []
    for layer in image.layers:
        if layer.blob is None or layer.size is None:
            raise InvalidImageError(
                f"layer {layer.index} has no blob in the source: cannot push it",
                subject=source.label,
            )
        digest = layer.digest if layer.digest is not None else _hash(tree, layer.blob.path)
        layers.append(_Upload(digest, layer.size, layer.blob.path))
    if image.manifest is not None:
        manifest = image.manifest
        media_type = manifest.media_type or str(MediaType.OCI_MANIFEST)
        return manifest.raw, media_type, [config, *layers]
    # a legacy docker save: a Docker v2 manifest of the blobs as they are
    document = {
        "schemaVersion": 2,
        "mediaType": str(MediaType.DOCKER_MANIFEST),
        "config": {
            "mediaType": str(MediaType.DOCKER_CONFIG),
            "size": config.size,
            "digest": str(config.digest),
        },
        "layers": [
            {
                "mediaType": layer.media_type or str(MediaType.DOCKER_LAYER),
                "size": upload.size,
                "digest": str(upload.digest),
            }
            for layer, upload in zip(image.layers, layers, strict=True)
        ],
    }
    raw = json.dumps(document, indent=3).encode()
    return raw, str(MediaType.DOCKER_MANIFEST), [config, *layers]


def _hash(tree: Tree, path: str) -> Digest:
    h = hashlib.sha256()
    with tree.open(path) as stream:
        while chunk := stream.read(CHUNK):
            h.update(chunk)
    return Digest("sha256", h.hexdigest())


def _chunks(
    source: Source,
    upload: _Upload,
    progress: Callable[[int], None] | None,
) -> Callable[[], Iterator[bytes]]:
    """A fresh reader of the blob for each attempt; the registry checks the digest, and so do
    we: bytes that are not the blob's stop the upload."""

    def chunks() -> Iterator[bytes]:
        h = hashlib.new(upload.digest.algorithm)
        sent = 0
        with source.tree.open(upload.path) as stream:
            while chunk := stream.read(CHUNK):
                sent += len(chunk)
                if sent > upload.size:
                    break
                h.update(chunk)
                if progress is not None:
                    progress(len(chunk))
                yield chunk
        if sent != upload.size or h.hexdigest() != upload.digest.hex:
            raise InvalidImageError(
                f"blob {upload.digest} in the source is not the {upload.size} bytes its "
                "digest names: not pushed",
                subject=f"{source.label}:{upload.path}",
            )

    return chunks
