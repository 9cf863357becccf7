"""Every real image in ../shared/corpus reads and verifies, with values checked by hand."""

from __future__ import annotations

import gzip
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import zstandard

from inspect_tool.analyze.verify import verify
from inspect_tool.model.image import ImageFormat, Platform
from inspect_tool.model.mediatypes import Compression
from inspect_tool.render.json import image_document
from inspect_tool.sources import open_source
from tests.support.trees import extract_trusted

CORPUS_IMAGES = [
    "docker-save-legacy-dive.tar",
    "docker-save-v25-hello-world.tar",
    "docker-save-whiteouts-ggcr.tar",
    "oci-archive-gzip-dive.tar",
    "oci-archive-uncompressed-dive.tar",
    "oci-archive-zstd-dive.tar",
    "oci-layout-index-ggcr",
]


@pytest.mark.parametrize("name", CORPUS_IMAGES)
def test_every_corpus_image_reads_and_verifies(corpus: Path, name: str) -> None:
    source = open_source(corpus / name)
    assert source.candidates
    for candidate in source.candidates:
        image = candidate.image()
        assert image.layers
        assert len(image.diff_ids) == len(image.layers)
    report = verify(source)
    assert report.ok, [f for f in report.findings if not f.ok]
    checks = {f.check for f in report.findings}
    assert {"diff-id", "chain-id", "image-id", "layer-tar", "duplicate-path"} <= checks


def test_legacy_dive_values(corpus: Path) -> None:
    source = open_source(corpus / "docker-save-legacy-dive.tar")
    assert source.format is ImageFormat.DOCKER_ARCHIVE
    image = source.candidates[0].image()
    assert image.repo_tags == ("dive-test:latest",)
    assert str(image.image_id) == (
        "sha256:75ae28b8ebf89b203319069ddcbecdf5c3838503bbebc0d0d85e4b8589c5de3a"
    )
    assert image.manifest is None
    assert len(image.layers) == 14
    # history has an empty CMD step after the first layer: alignment must skip it
    assert image.layers[0].created_by is not None and "ADD file:" in image.layers[0].created_by
    assert image.layers[1].created_by is not None and "somefile.txt" in image.layers[1].created_by
    assert image.layers[13].created_by is not None and "chmod +x" in image.layers[13].created_by
    assert all(layer.compression is Compression.NONE for layer in image.layers)
    # an uncompressed layer's digest is its diff_id
    assert all(layer.digest == layer.diff_id for layer in image.layers)
    assert image.layers[0].size == 1369600
    assert image.config.config["Cmd"] == ["sh"]


def test_chain_ids_follow_the_spec(corpus: Path) -> None:
    import hashlib

    image = open_source(corpus / "docker-save-legacy-dive.tar").candidates[0].image()
    layers = image.layers
    assert layers[0].chain_id == layers[0].diff_id
    expected = hashlib.sha256(f"{layers[0].chain_id} {layers[1].diff_id}".encode()).hexdigest()
    assert layers[1].chain_id is not None and layers[1].chain_id.hex == expected


def test_v25_reads_both_views(corpus: Path) -> None:
    source = open_source(corpus / "docker-save-v25-hello-world.tar")
    assert source.format is ImageFormat.DOCKER_ARCHIVE_OCI
    image = source.candidates[0].image()
    # index.json lists nothing here; the manifest is found among the blobs by its config
    assert image.manifest is not None
    assert str(image.manifest.digest).startswith("sha256:411caf340c82")
    assert image.platform == Platform("linux", "arm64")
    assert image.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar"
    assert [lyr.created_by for lyr in image.layers] == ["COPY hello / # buildkit"]
    agreement = [f for f in source.findings if f.check == "docker25-agreement"]
    assert agreement and all(f.ok for f in agreement)


@pytest.mark.parametrize(
    ("name", "compression"),
    [
        ("oci-archive-gzip-dive.tar", Compression.GZIP),
        ("oci-archive-zstd-dive.tar", Compression.ZSTD),
        ("oci-archive-uncompressed-dive.tar", Compression.NONE),
    ],
)
def test_layer_compression_is_detected_from_bytes(
    corpus: Path, name: str, compression: Compression
) -> None:
    image = open_source(corpus / name).candidates[0].image()
    assert [layer.compression for layer in image.layers] == [compression]
    # all three carry the same config, so the same image ID and diff_id
    assert image.image_id.short == "3eaccc100f86"
    assert image.layers[0].diff_id is not None
    assert image.layers[0].diff_id.short == "356d5e7f4012"


def test_index_with_nested_indexes_and_docker_list(corpus: Path) -> None:
    source = open_source(corpus / "oci-layout-index-ggcr")
    assert source.format is ImageFormat.OCI_LAYOUT
    refs = [c.ref_name for c in source.candidates]
    assert refs == ["1", "2", "3", "4"]
    # "2" is listed under a generic descriptor media type but is a Docker v2 manifest
    second = source.select(ref="2")[0].image()
    assert second.manifest is not None
    assert second.manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    # "3" is an OCI index, "4" a Docker manifest list; both lead to manifest eebff607…
    for ref in ("3", "4"):
        (chosen,) = source.select(ref=ref)
        assert len(chosen.index_path) == 2
        assert str(chosen.manifest_digest).startswith("sha256:eebff607b162")


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".tar.zst"])
def test_whole_archive_compressed(tmp_path: Path, corpus: Path, suffix: str) -> None:
    raw = (corpus / "docker-save-legacy-dive.tar").read_bytes()
    target = tmp_path / f"dive{suffix}"
    if suffix == ".tar.zst":
        target.write_bytes(zstandard.ZstdCompressor().compress(raw))
    else:
        target.write_bytes(gzip.compress(raw))
    with (
        open_source(target) as source,
        open_source(corpus / "docker-save-legacy-dive.tar") as plain,
    ):
        assert source.archive_compression is not None
        image = source.candidates[0].image()
        assert (
            image_document(image)["layers"] == image_document(plain.candidates[0].image())["layers"]
        )
        report = verify(source)
        assert report.ok
        assert len(report.findings) == len(verify(plain).findings)


def test_extracted_docker_save_directory(tmp_path: Path, corpus: Path) -> None:
    with tarfile.open(corpus / "docker-save-legacy-dive.tar") as tf:
        extract_trusted(tf, tmp_path / "x")
    source = open_source(tmp_path / "x")
    assert source.format is ImageFormat.DOCKER_DIR
    assert verify(source).ok


def test_inspect_json_layers_align_with_config(corpus: Path) -> None:
    image = open_source(corpus / "oci-archive-gzip-dive.tar").candidates[0].image()
    doc = image_document(image)
    assert doc["schema_version"] == 1
    assert doc["manifest_digest"].startswith("sha256:7d255e9e3d21")
    config = json.loads(image.config.raw)
    assert doc["config"] == config["config"]
    assert doc["history"] == config["history"]
    assert [lyr["diff_id"] for lyr in doc["layers"]] == config["rootfs"]["diff_ids"]


def test_inspect_reads_no_layer_bytes(tmp_path: Path, corpus: Path) -> None:
    """Inspect looks at a layer's first bytes only: corrupting the rest changes nothing."""
    target = tmp_path / "x"
    shutil.copytree(corpus / "oci-layout-index-ggcr", target)
    blob = target / "blobs/sha256/dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b"
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-10:] = b"\xff" * 10
    blob.write_bytes(bytes(data))
    with open_source(target) as source:
        chosen = source.select(ref="1")
        image = chosen[0].image()
        assert image.layers[0].compression is Compression.GZIP
        assert image.layers[0].size == len(data)
        # verify, which reads every byte, does notice
        report = verify(source, chosen)
        assert not report.ok
        assert {f.check for f in report.failed} >= {"blob-digest"}
