"""Blobs, descriptors, manifests and indexes, and OCI image layouts as BuildKit's OCI
exporter writes them (``docker buildx build --output type=oci``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from samples.basics import (
    ANNOTATION_CREATED,
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REPOSITORY,
    Instant,
    go_json,
    hex_of,
    sha256_digest,
    sorted_map,
)
from samples.configs import buildkit_config
from samples.expected import Expected, config_diff_ids, layer_record, platform_text
from samples.filesystem import Layer, directory
from samples.recipes import MULTI_PLATFORMS, Recipe, multiplatform_recipe
from samples.tarbuild import TarEntry, build_tar, gzip_compress, zstd_compress


@dataclass(frozen=True)
class Blob:
    """Bytes stored under ``blobs/sha256/<hex>`` and the descriptor that names them."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def path(self) -> str:
        return f"blobs/sha256/{hex_of(self.digest)}"

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """OCI descriptor in Go field order: mediaType, digest, size, annotations, platform."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def compress_layer(layer: Layer, compression: str) -> Blob:
    if compression == "gzip":
        return Blob(OCI_LAYER_GZIP, gzip_compress(layer.tar))
    if compression == "zstd":
        return Blob(OCI_LAYER_ZSTD, zstd_compress(layer.tar))
    return Blob(OCI_LAYER, layer.tar)


def oci_manifest(
    config: Blob,
    layers: Sequence[Blob],
    *,
    indent: bool,
    config_platform: dict[str, str] | None = None,
    declared: dict[int, dict[str, Any]] | None = None,
) -> Blob:
    """An OCI image manifest.

    ``config_platform`` imitates Docker 25, which puts the platform on the config descriptor.
    ``declared`` overrides fields of chosen layer descriptors (used to plant defects).
    """
    config_descriptor = config.descriptor()
    if config_platform:
        config_descriptor["platform"] = config_platform
    layer_descriptors = []
    for index, layer in enumerate(layers):
        descriptor = layer.descriptor()
        descriptor.update((declared or {}).get(index, {}))
        layer_descriptors.append(descriptor)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor,
        "layers": layer_descriptors,
    }
    return Blob(OCI_MANIFEST, go_json(manifest, indent=indent))


def oci_index(manifests: Sequence[dict[str, Any]], *, indent: bool = False) -> bytes:
    return go_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests)}, indent=indent
    )


# --------------------------------------------------------------------------------------------
# OCI image layouts (BuildKit's OCI exporter)
# --------------------------------------------------------------------------------------------

BUILDKIT_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass
class OciLayout:
    """The files of an OCI image layout, relative to its root."""

    files: dict[str, bytes] = field(default_factory=dict)

    def add(self, blob: Blob) -> None:
        self.files[blob.path] = blob.data

    def finish(self, index: bytes) -> None:
        self.files["index.json"] = index
        self.files["oci-layout"] = BUILDKIT_OCI_LAYOUT

    def tar(self) -> bytes:
        """The layout as BuildKit's ``type=oci`` tar: mtime 0, blobs and oci-layout read-only."""
        entries = [directory("blobs", 0), directory("blobs/sha256", 0)]
        for name, data in self.files.items():
            mode = 0o644 if name == "index.json" else 0o444
            entries.append(TarEntry(name, data=data, mode=mode))
        return build_tar(entries)


def buildkit_index_descriptor(manifest: Blob, tag: str, created: Instant) -> dict[str, Any]:
    """index.json's descriptor for an image exported with ``name=<tag>``."""
    _, _, name = tag.rpartition(":")
    annotations = sorted_map(
        {
            ANNOTATION_IMAGE_NAME: f"docker.io/{tag}",
            ANNOTATION_CREATED: Instant(created.seconds).rfc3339(),
            ANNOTATION_REF_NAME: name,
        }
    )
    return manifest.descriptor(annotations=annotations)


@dataclass
class OciImage:
    """Blobs of one single-platform OCI image."""

    recipe: Recipe
    config: Blob
    layers: list[Blob]
    manifest: Blob


def oci_image(
    recipe: Recipe,
    compressions: Sequence[str],
    *,
    diff_ids: Sequence[str] | None = None,
    declared: dict[int, dict[str, Any]] | None = None,
    stored_layers: Sequence[Blob] | None = None,
) -> OciImage:
    """Config, layer blobs and a BuildKit-style (indented) manifest for ``recipe``."""
    config = Blob(OCI_CONFIG, buildkit_config(recipe, diff_ids))
    layers = (
        list(stored_layers)
        if stored_layers
        else [
            compress_layer(layer, compression)
            for layer, compression in zip(recipe.layers, compressions, strict=True)
        ]
    )
    manifest = oci_manifest(config, layers, indent=True, declared=declared)
    return OciImage(recipe, config, layers, manifest)


def single_image_layout(image: OciImage, tag: str) -> OciLayout:
    layout = OciLayout()
    for blob in (image.manifest, image.config, *image.layers):
        layout.add(blob)
    descriptor = buildkit_index_descriptor(image.manifest, tag, image.recipe.created)
    descriptor["platform"] = image.recipe.platform
    layout.finish(oci_index([descriptor]))
    return layout


def oci_expected(
    image: OciImage,
    path: str,
    fmt: str,
    ref_name: str,
    *,
    selector: str = "1",
) -> Expected:
    """Expected values of one image of an OCI layout, from its manifest's declarations."""
    manifest = json.loads(image.manifest.data)
    diff_ids = config_diff_ids(image.config.data)
    layers = []
    for index, (descriptor, blob) in enumerate(zip(manifest["layers"], image.layers, strict=True)):
        path_in = f"blobs/sha256/{hex_of(descriptor['digest'])}"
        layers.append(
            layer_record(
                index,
                path_in,
                descriptor["mediaType"],
                blob.data,
                digest=descriptor["digest"],
                size=descriptor["size"],
                diff_id=diff_ids[index],
            )
        )
    return Expected(
        path=path,
        format=fmt,
        selector=selector,
        repo_tags=[],
        ref_name=ref_name,
        platform=platform_text(image.recipe),
        config_path=image.config.path,
        config_bytes=image.config.data,
        config_media_type=OCI_CONFIG,
        manifest_digest=image.manifest.digest,
        manifest_path=image.manifest.path,
        manifest_media_type=OCI_MANIFEST,
        layers=layers,
    )


def multiplatform_layout(path: str) -> tuple[OciLayout, list[Expected]]:
    """index.json -> one image index -> three platform manifests sharing the base layer blob."""
    layout = OciLayout()
    images = []
    for architecture, variant in MULTI_PLATFORMS:
        image = oci_image(multiplatform_recipe(architecture, variant), ["gzip", "gzip"])
        images.append(image)
        for blob in (image.manifest, image.config, *image.layers):
            layout.add(blob)
    nested = Blob(
        OCI_INDEX,
        oci_index(
            [image.manifest.descriptor(platform=image.recipe.platform) for image in images],
            indent=True,
        ),
    )
    layout.add(nested)
    tag = f"{REPOSITORY}:multi"
    layout.finish(oci_index([buildkit_index_descriptor(nested, tag, images[0].recipe.created)]))
    expected = [
        oci_expected(image, path, "oci-layout", "multi", selector=str(number))
        for number, image in enumerate(images, start=1)
    ]
    return layout, expected
