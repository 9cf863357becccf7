"""Tampered copies: one defect each, for ``dockscope verify``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from samples.basics import OCI_LAYER_GZIP, REPOSITORY, hex_of, sha256_digest
from samples.docker_archive import SavedImage, docker_save_legacy
from samples.expected import Expected
from samples.filesystem import MOTD
from samples.oci import Blob, OciImage, OciLayout, oci_expected, oci_image, single_image_layout
from samples.recipes import Recipe


def flip_byte(data: bytes, marker: bytes) -> bytes:
    """Change one byte of ``data`` (the first byte of the only occurrence of ``marker``)."""
    if data.count(marker) != 1:
        raise ValueError(f"marker {marker!r} must occur exactly once")
    offset = data.index(marker)
    return data[:offset] + bytes([data[offset] ^ 0x20]) + data[offset + 1 :]


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    if data.count(old) != 1:
        raise ValueError(f"{old!r} must occur exactly once")
    return data.replace(old, new)


def tampered_legacy(recipe: Recipe, config: bytes) -> list[tuple[str, bytes, list[Expected]]]:
    """The two docker-archive variants: a flipped byte in a layer, an edited config."""
    tag = (f"{REPOSITORY}:legacy",)
    layers = tuple(layer.tar for layer in recipe.layers)
    results = []

    # 1. One byte of L1's /etc/motd changes ("Welcome" -> "welcome"): same size, the tar
    #    stays valid, only the layer's sha256 no longer matches its DiffID.
    flipped = list(layers)
    flipped[1] = flip_byte(flipped[1], MOTD)
    path = "tampered/layer-byte-flipped.tar"
    data, expected = docker_save_legacy([SavedImage(config, tuple(flipped), tag)], path)
    expected[0].defects = [
        defect("diff-id", 1, recipe.diff_ids[1], sha256_digest(flipped[1])),
    ]
    expected[0].description = "one byte of layer 1's /etc/motd flipped; size unchanged"
    results.append((path, data, expected))

    # 2. The config is edited after the fact (a history line rewritten), but keeps the file
    #    name, so its sha256 no longer matches the image ID the archive names it by. History
    #    is not copied into the v1 JSON, so nothing else disagrees.
    edited = replace_once(config, b"rm -f /usr/share/doc/dockscope/README", b"true")
    path = "tampered/config-edited.tar"
    original_name = hex_of(sha256_digest(config))
    image = SavedImage(edited, layers, tag, config_name=original_name, v1_source=config)
    data, expected = docker_save_legacy([image], path)
    expected[0].defects = [
        defect("image-id", None, f"sha256:{original_name}", sha256_digest(edited)),
    ]
    expected[
        0
    ].description = (
        "config edited (a history entry rewritten) but still stored as <original-id>.json"
    )
    results.append((path, data, expected))
    return results


def defect(
    check: str, layer: int | None, expected: str | None, actual: str | None
) -> dict[str, Any]:
    """A defect as dockscope verify reports it: check name, layer index, expected, actual."""
    return {"check": check, "layer": layer, "expected": expected, "actual": actual}


OciVariant = tuple[str, OciLayout | bytes, list[Expected]]


def tampered_oci(recipe: Recipe) -> list[OciVariant]:
    """OCI variants of the gzip ``oci-layout`` image, each with one planted defect."""
    return [*tampered_oci_records(recipe), *tampered_oci_blobs(recipe)]


def oci_variant(
    path: str,
    image: OciImage,
    defects: list[dict[str, Any]],
    description: str,
    *,
    as_tar: bool = False,
    mutate: Callable[[OciLayout], object] | None = None,
) -> OciVariant:
    """The layout of ``image`` (changed by ``mutate``), as a directory or a tar, with the
    defects a reader must find in it."""
    layout = single_image_layout(image, f"{REPOSITORY}:latest")
    if mutate is not None:
        mutate(layout)
    expected = oci_expected(image, path, "oci-archive" if as_tar else "oci-layout", "latest")
    expected.defects = defects
    expected.description = description
    expected.based_on = "oci-layout"
    return (path, layout.tar() if as_tar else layout, [expected])


def tampered_oci_records(recipe: Recipe) -> list[OciVariant]:
    """Defects in what names the blobs: a wrong DiffID, a blob missing, a size short."""
    gzip_all = ["gzip"] * len(recipe.layers)
    # diff-id-mismatch.tar: rootfs.diff_ids[1] holds the *compressed* digest of layer 1 (a
    # classic tool bug). The config digest, manifest and index are recomputed around it, so
    # every blob checks out and only the DiffID comparison fails.
    intact = oci_image(recipe, gzip_all)
    wrong = list(recipe.diff_ids)
    wrong[1] = intact.layers[1].digest
    mismatch = oci_variant(
        "tampered/diff-id-mismatch.tar",
        oci_image(recipe, gzip_all, diff_ids=wrong),
        [defect("diff-id", 1, wrong[1], recipe.diff_ids[1])],
        "config's rootfs.diff_ids[1] is the gzip blob's digest instead of the tar's",
        as_tar=True,
    )

    # missing-blob/: layer 2's blob file deleted; everything that names it is intact.
    image = oci_image(recipe, gzip_all)
    missing = image.layers[2]
    missing_blob = oci_variant(
        "tampered/missing-blob",
        image,
        [defect("blob-exists", 2, missing.digest, None)],
        "layer 2's blob is missing from blobs/sha256",
        mutate=lambda layout: layout.files.pop(missing.path),
    )

    # wrong-size/: the manifest declares layer 1 one byte shorter than it is. The manifest's
    # digest (and index.json) are recomputed, so only the size check fails.
    intact_size = intact.layers[1].size
    wrong_size = oci_variant(
        "tampered/wrong-size",
        oci_image(recipe, gzip_all, declared={1: {"size": intact_size - 1}}),
        [defect("blob-size", 1, str(intact_size - 1), str(intact_size))],
        "manifest declares layer 1's size one byte short",
    )
    return [mismatch, missing_blob, wrong_size]


def tampered_oci_blobs(recipe: Recipe) -> list[OciVariant]:
    """Defects in the blobs themselves: a media type that lies, bytes after the stream."""
    gzip_all = ["gzip"] * len(recipe.layers)
    intact = oci_image(recipe, gzip_all)
    # mediatype-mismatch/: layer 3 is stored uncompressed but declared +gzip. Its digest and
    # size describe the stored (uncompressed) bytes, so only the media type disagrees.
    stored = [*intact.layers[:3], Blob(OCI_LAYER_GZIP, recipe.layers[3].tar)]
    mediatype = oci_variant(
        "tampered/mediatype-mismatch",
        oci_image(recipe, gzip_all, stored_layers=stored),
        [defect("media-type", 3, "gzip", "none")],
        "layer 3 is an uncompressed tar declared as tar+gzip",
    )

    # trailing-bytes/: 512 zero bytes appended after layer 1's gzip stream. Decompression still
    # yields the right tar (so the DiffID matches), but the blob is no longer what its
    # descriptor names: size and digest checks both fail, and only a reader that hashes the
    # blob to EOF notices.
    image = oci_image(recipe, gzip_all)
    padded = image.layers[1].data + b"\0" * 512

    def append_padding(layout: OciLayout) -> None:
        layout.files[image.layers[1].path] = padded

    trailing = oci_variant(
        "tampered/trailing-bytes",
        image,
        [
            defect("blob-size", 1, str(image.layers[1].size), str(len(padded))),
            defect("blob-digest", 1, image.layers[1].digest, sha256_digest(padded)),
        ],
        "512 zero bytes appended to layer 1's gzip blob after the end of the gzip stream",
        mutate=append_padding,
    )
    return [mediatype, trailing]
