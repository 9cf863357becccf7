"""``docker save`` archives: Docker's legacy v1 layer JSON and IDs (image/v1 CreateID and
tarexport/save.go), the legacy layout of Docker 24 and before, and Docker 25+'s (an OCI
layout plus ``manifest.json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from samples.basics import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    EPOCH_TEXT,
    OCI_CONFIG,
    OCI_MANIFEST,
    chain_ids,
    go_json,
    hex_of,
    sha256_digest,
    sorted_map,
)
from samples.configs import buildkit_config, docker_container_config
from samples.expected import Expected, config_diff_ids, layer_record, platform_text
from samples.filesystem import T_SAVE, directory
from samples.oci import Blob, compress_layer, oci_index, oci_manifest
from samples.recipes import Recipe
from samples.tarbuild import TarEntry, build_tar


def v1_image(config: dict[str, Any] | None) -> dict[str, Any]:
    """Docker's V1Image for a layer, in struct order, without id/parent.

    ``config`` is the image config for the top layer, None for the others (Docker gives those
    an empty V1Image created at the Unix epoch).
    """
    if config is None:
        return {"created": EPOCH_TEXT, "container_config": docker_container_config(None)}
    v1: dict[str, Any] = {}
    if config.get("comment"):
        v1["comment"] = config["comment"]
    v1["created"] = config["created"]
    if config.get("container"):
        v1["container"] = config["container"]
    v1["container_config"] = docker_container_config(config.get("container_config"))
    for key in ("docker_version", "author"):
        if config.get(key):
            v1[key] = config[key]
    if config.get("config") is not None:
        v1["config"] = docker_container_config(config["config"])
    for key in ("architecture", "variant", "os"):
        if config.get(key):
            v1[key] = config[key]
    return v1


def v1_create_id(v1: dict[str, Any], chain_id: str, parent: str | None) -> str:
    """image/v1.CreateID: sha256 of the V1Image JSON with layer_id and parent added, keys sorted."""
    with_ids = dict(v1, layer_id=chain_id)
    if parent:
        with_ids["parent"] = parent
    return sha256_digest(go_json(sorted_map(with_ids)))


@dataclass(frozen=True)
class V1Layer:
    """One layer as ``docker save`` names it: v1 ID and its ``json`` file."""

    v1_id: str  # hex
    json: bytes


def v1_layers(config_bytes: bytes) -> list[V1Layer]:
    """Compute each layer's v1 ID and legacy JSON from the config, as tarexport/save.go does.

    The v1 JSON gets ``id`` and ``parent`` (hex) in front and ``os`` from the image; only the
    top layer carries the image's V1Image fields.
    """
    config = json.loads(config_bytes)
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    chains = chain_ids(diff_ids)
    parent: str | None = None
    result: list[V1Layer] = []
    for index, chain in enumerate(chains):
        is_top = index == len(chains) - 1
        v1 = v1_image(config if is_top else None)
        v1_id = v1_create_id(v1, chain, parent)
        ordered: dict[str, Any] = {"id": hex_of(v1_id)}
        if parent:
            ordered["parent"] = hex_of(parent)
        ordered.update(v1)
        # Docker sets OS after CreateID; it is the struct's last field, so it goes at the end
        # (for the top layer it is already there and keeps its place).
        ordered["os"] = config["os"]
        result.append(V1Layer(hex_of(v1_id), go_json(ordered)))
        parent = v1_id
    return result


# --------------------------------------------------------------------------------------------
# docker save, Docker <= 24 (legacy layout)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    """One image as ``docker save`` stores it.

    ``config_bytes`` is stored as ``<config_name>.json``; normally the name is the config's own
    sha256, ``config_name`` overrides it. ``layer_tars`` are stored as given (bottom to top).
    """

    config_bytes: bytes
    layer_tars: tuple[bytes, ...]
    repo_tags: tuple[str, ...]
    config_name: str | None = None
    v1_source: bytes | None = None  # config the v1 JSON is derived from, if not config_bytes

    @property
    def stored_name(self) -> str:
        return self.config_name or hex_of(sha256_digest(self.config_bytes))

    @property
    def created_seconds(self) -> int:
        moment = json.loads(self.config_bytes)["created"]
        return int(datetime.fromisoformat(moment[:19] + "+00:00").timestamp())


def docker_save_legacy(images: Sequence[SavedImage], path: str) -> tuple[bytes, list[Expected]]:
    """``docker save`` as Docker 1.10 to 24 wrote it.

    Per layer a directory named by its v1 ID with ``VERSION`` ("1.0"), ``json`` and
    ``layer.tar``; layers shared between images are stored once. ``manifest.json`` and
    ``repositories`` are written with json.Encoder (so end in a line feed) at mtime 0; the rest
    carries the image's creation time.
    """
    entries: list[TarEntry] = []
    saved: set[str] = set()
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    expected: list[Expected] = []
    for number, image in enumerate(images, start=1):
        created = image.created_seconds
        v1 = v1_layers(image.v1_source or image.config_bytes)
        if len(v1) != len(image.layer_tars):
            raise ValueError("config diff_ids and layer count differ")
        entries.append(
            TarEntry(f"{image.stored_name}.json", data=image.config_bytes, mtime=created)
        )
        for layer, tar in zip(v1, image.layer_tars, strict=True):
            if layer.v1_id in saved:
                continue
            saved.add(layer.v1_id)
            entries += [
                directory(layer.v1_id, created),
                TarEntry(f"{layer.v1_id}/VERSION", data=b"1.0", mtime=created),
                TarEntry(f"{layer.v1_id}/json", data=layer.json, mtime=created),
                TarEntry(f"{layer.v1_id}/layer.tar", data=tar, mtime=created),
            ]
        layer_paths = [f"{layer.v1_id}/layer.tar" for layer in v1]
        manifest.append(
            {
                "Config": f"{image.stored_name}.json",
                "RepoTags": list(image.repo_tags),
                "Layers": layer_paths,
            }
        )
        for tag in image.repo_tags:
            repository, _, name = tag.rpartition(":")
            repositories.setdefault(repository, {})[name] = v1[-1].v1_id
        expected.append(legacy_expected(image, path, str(number), layer_paths))
    repositories = {repo: sorted_map(tags) for repo, tags in sorted(repositories.items())}
    entries.append(TarEntry("manifest.json", data=go_json(manifest, newline=True)))
    entries.append(TarEntry("repositories", data=go_json(repositories, newline=True)))
    return build_tar(entries), expected


def legacy_expected(
    image: SavedImage, path: str, selector: str, layer_paths: Sequence[str]
) -> Expected:
    """What a reader must report for one image of a legacy archive: no manifest, each layer
    an uncompressed tar whose digest is its DiffID."""
    diff_ids = config_diff_ids(image.config_bytes)
    return Expected(
        path=path,
        format="docker-archive",
        selector=selector,
        repo_tags=list(image.repo_tags),
        ref_name=None,
        platform=platform_of_config(image.config_bytes),
        config_path=f"{image.stored_name}.json",
        config_bytes=image.config_bytes,
        config_media_type=DOCKER_CONFIG,
        manifest_digest=None,
        manifest_path=None,
        manifest_media_type=None,
        layers=[
            layer_record(
                index,
                layer_path,
                DOCKER_LAYER,
                tar,
                digest=diff_id,
                size=len(tar),
                diff_id=diff_id,
            )
            for index, (layer_path, tar, diff_id) in enumerate(
                zip(layer_paths, image.layer_tars, diff_ids, strict=True)
            )
        ],
    )


def platform_of_config(config_bytes: bytes) -> str:
    config = json.loads(config_bytes)
    text = f"{config['os']}/{config['architecture']}"
    return f"{text}/{config['variant']}" if config.get("variant") else text


# --------------------------------------------------------------------------------------------
# docker save, Docker 25+ (OCI layout + manifest.json)
# --------------------------------------------------------------------------------------------


def docker_save_v25(recipe: Recipe, tag: str, path: str) -> tuple[bytes, list[Expected]]:
    """``docker save`` as Docker 25 writes it.

    Uncompressed layers stored as OCI blobs under their DiffID, the config blob, the OCI
    manifest (compact JSON, platform on the config descriptor), each layer's legacy v1 JSON as
    an otherwise unreferenced blob, ``index.json`` with one descriptor per tag, and the
    Docker views: ``manifest.json`` (with ``LayerSources``) and ``repositories``, which since
    Docker 25 maps the tag to the top layer's DiffID hex, no longer a v1 ID.
    """
    config = Blob(OCI_CONFIG, buildkit_config(recipe))
    layers = [compress_layer(layer, "none") for layer in recipe.layers]
    manifest = oci_manifest(config, layers, indent=False, config_platform=recipe.platform)
    repository, _, name = tag.rpartition(":")
    created = recipe.created.seconds

    entries = [
        directory("blobs", created),
        directory("blobs/sha256", T_SAVE),
        TarEntry(config.path, data=config.data, mtime=created),
        TarEntry(manifest.path, data=manifest.data, mtime=0),
    ]
    for layer in layers:
        entries.append(TarEntry(layer.path, data=layer.data, mtime=created))
    for v1 in v1_layers(config.data):
        v1_path = f"blobs/sha256/{hex_of(sha256_digest(v1.json))}"
        entries.append(TarEntry(v1_path, data=v1.json, mtime=created))

    index = oci_index(
        [
            manifest.descriptor(
                annotations=sorted_map(
                    {ANNOTATION_IMAGE_NAME: f"docker.io/{tag}", ANNOTATION_REF_NAME: name}
                )
            )
        ]
    )
    repositories = {repository: {name: hex_of(recipe.diff_ids[-1])}}
    entries += [
        TarEntry("index.json", data=index, mtime=T_SAVE),
        TarEntry("manifest.json", data=go_json(docker_manifest(config, layers, tag), newline=True)),
        TarEntry("oci-layout", data=b'{"imageLayoutVersion": "1.0.0"}'),
        TarEntry("repositories", data=go_json(repositories, newline=True)),
    ]
    expected = Expected(
        path=path,
        format="docker-archive-oci",
        selector="1",
        repo_tags=[tag],
        ref_name=name,
        platform=platform_text(recipe),
        config_path=config.path,
        config_bytes=config.data,
        config_media_type=OCI_CONFIG,
        manifest_digest=manifest.digest,
        manifest_path=manifest.path,
        manifest_media_type=OCI_MANIFEST,
        layers=oci_layer_records(layers, recipe.diff_ids),
    )
    return build_tar(entries), [expected]


def docker_manifest(config: Blob, layers: Sequence[Blob], tag: str) -> list[dict[str, Any]]:
    """Docker 25's ``manifest.json``: the legacy view, pointing into ``blobs/``, with
    ``LayerSources``."""
    layer_sources = sorted_map(
        {
            layer.digest: {
                "mediaType": layer.media_type,
                "size": layer.size,
                "digest": layer.digest,
            }
            for layer in layers
        }
    )
    return [
        {
            "Config": config.path,
            "RepoTags": [tag],
            "Layers": [layer.path for layer in layers],
            "LayerSources": layer_sources,
        }
    ]


def oci_layer_records(layers: Sequence[Blob], diff_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [
        layer_record(
            index,
            blob.path,
            blob.media_type,
            blob.data,
            digest=blob.digest,
            size=blob.size,
            diff_id=diff_id,
        )
        for index, (blob, diff_id) in enumerate(zip(layers, diff_ids, strict=True))
    ]
