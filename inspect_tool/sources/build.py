"""Turn what a reader found (config location, manifest, layer blobs) into an Image."""

from __future__ import annotations

from dataclasses import dataclass

from inspect_tool.errors import DockscopeError, InvalidImageError, InvalidJSONError
from inspect_tool.model.digest import Digest, chain_ids
from inspect_tool.model.image import (
    Blob,
    Descriptor,
    Image,
    ImageConfig,
    ImageFormat,
    Layer,
    Manifest,
    align_history,
)
from inspect_tool.model.jsondoc import expect_list, expect_object, parse_json
from inspect_tool.model.mediatypes import INDEX_TYPES, Compression, MediaType, sniff_compression
from inspect_tool.sources.tree import Tree

METADATA_LIMIT = 16 * 1024 * 1024
# Docker mounts at most 127 layers (overlay2); an image may hold more, but not without end:
# every command reads each layer, and the merged view records a layer's index in 16 bits.
MAX_LAYERS = 10_000


def blob_path(digest: Digest) -> str:
    """``blobs/<algorithm>/<hex>``: safe because a Digest is validated on parse."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


def read_json(tree: Tree, path: str) -> tuple[bytes, object]:
    subject = f"{tree.label}:{path}"
    try:
        raw = tree.read(path, METADATA_LIMIT)
    except DockscopeError as exc:
        raise exc.with_subject(subject) from None
    return raw, parse_json(raw, subject=subject)


def parse_manifest(raw: bytes, data: object, *, subject: str) -> Manifest:
    obj = expect_object(data, subject=subject, what="manifest")
    if "manifests" in obj and "config" not in obj:
        raise InvalidJSONError("expected an image manifest, found an index", subject=subject)
    media_type = obj.get("mediaType") or MediaType.OCI_MANIFEST
    if not isinstance(media_type, str):
        raise InvalidJSONError("manifest mediaType is not a string", subject=subject)
    if obj.get("schemaVersion") != 2:
        raise InvalidJSONError(
            f"unsupported manifest schemaVersion {obj.get('schemaVersion')!r} (expected 2)",
            subject=subject,
        )
    if "config" not in obj:
        raise InvalidJSONError("manifest has no config descriptor", subject=subject)
    config = Descriptor.from_json(obj["config"], subject=subject, what="config descriptor")
    layers = tuple(
        Descriptor.from_json(d, subject=subject, what=f"layers[{i}]")
        for i, d in enumerate(expect_list(obj.get("layers"), subject=subject, what="layers"))
    )
    return Manifest(raw, obj, Digest.of_bytes(raw), media_type, config, layers)


def looks_like_index(data: object) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("manifests"), list | None)
        and ("manifests" in data or data.get("mediaType") in INDEX_TYPES)
        and "config" not in data
    )


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One layer as a manifest names it: its blob where the source has it, the digest and
    media type claimed for it."""

    blob: Blob | None
    digest: Digest | None  # claimed blob digest
    media_type: str | None
    implied: bool = False  # the source declares no media type (legacy docker save)


# What docker load takes a legacy layer for, from its bytes.
_IMPLIED_MEDIA_TYPES = {
    Compression.GZIP: MediaType.DOCKER_LAYER_GZIP,
    Compression.ZSTD: MediaType.DOCKER_LAYER_ZSTD,
}


def build_image(
    tree: Tree,
    *,
    source: str,
    fmt: ImageFormat,
    selector: str,
    repo_tags: tuple[str, ...],
    ref_name: str | None,
    config_blob: Blob,
    manifest: Manifest | None,
    manifest_blob: Blob | None,
    layers: list[LayerSpec],
    index_path: tuple[str, ...] = (),
    warnings: list[str] | None = None,
) -> Image:
    warnings = list(warnings or [])
    if len(layers) > MAX_LAYERS:
        where = manifest_blob.path if manifest_blob is not None else "manifest.json"
        raise InvalidImageError(
            f"the image lists {len(layers)} layers, more than the bound of {MAX_LAYERS}",
            subject=f"{tree.label}:{where}",
        )
    raw, data = read_json(tree, config_blob.path)
    subject = f"{tree.label}:{config_blob.path}"
    config = ImageConfig.from_bytes(raw, data, subject=subject)
    diff_ids = config.diff_ids(subject=subject)
    if len(diff_ids) > MAX_LAYERS:
        raise InvalidImageError(
            f"rootfs.diff_ids lists {len(diff_ids)} layers, more than the bound of {MAX_LAYERS}",
            subject=subject,
        )
    history = config.history(subject=subject)
    if len(diff_ids) != len(layers):
        warnings.append(
            f"the config lists {len(diff_ids)} diff_ids but the "
            f"{'manifest' if manifest else 'archive'} lists {len(layers)} layers"
        )
    chains = chain_ids(diff_ids)
    count = max(len(diff_ids), len(layers))
    aligned = align_history(history, count)
    built: list[Layer] = []
    for i in range(count):
        spec = layers[i] if i < len(layers) else LayerSpec(None, None, None)
        diff_id = diff_ids[i] if i < len(diff_ids) else None
        size: int | None = None
        compression = Compression.UNKNOWN
        if spec.blob is not None:
            entry = tree.entry(spec.blob.path)
            if entry is None:
                warnings.append(f"layer {i} blob is missing: {spec.blob.path}")
            else:
                size = entry.size
                compression = sniff_compression(tree.head(spec.blob.path))
        digest = spec.digest
        media_type = spec.media_type
        if spec.implied:
            media_type = _IMPLIED_MEDIA_TYPES.get(compression, MediaType.DOCKER_LAYER)
        if digest is None and compression is Compression.NONE:
            digest = diff_id  # an uncompressed blob's digest is its diff_id
        built.append(
            Layer(
                index=i,
                blob=spec.blob,
                digest=digest,
                diff_id=diff_id,
                chain_id=chains[i] if i < len(chains) else None,
                media_type=media_type,
                media_type_implied=spec.implied,
                size=size,
                compression=compression,
                created_by=aligned[i][0],
                history_index=aligned[i][1],
            )
        )
    return Image(
        source=source,
        format=fmt,
        archive_compression=tree.compression,
        selector=selector,
        repo_tags=repo_tags,
        ref_name=ref_name,
        config=config,
        config_blob=config_blob,
        manifest=manifest,
        manifest_blob=manifest_blob,
        layers=tuple(built),
        history=tuple(history),
        index_path=index_path,
        warnings=tuple(warnings),
    )
