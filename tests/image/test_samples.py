"""The committed sample images: reproducible, small, well-formed, and described by expected.json.

These tests read the samples with the standard library only (plus ``zstandard``), independently
of dockscope's readers, so that a reader test failing against a sample can be told apart from a
broken sample. The small reader below doubles as a reference for how each layout is walked.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.support.paths import SAMPLES

GENERATOR = SAMPLES / "make_samples.py"
HAND_WRITTEN = {"make_samples.py", "samples", "README.md"}  # the generator and its package
# built by `make` from the host's busybox (make_samples.py --busybox), ignored by git: not a
# committed sample (see tests/image/test_busybox_image.py)
BUILT = {"busybox.tar", ".busybox.tar.tmp"}
EXPECTED: dict[str, Any] = json.loads((SAMPLES / "expected.json").read_text())
IMAGES: list[dict[str, Any]] = EXPECTED["images"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
GZIP_HEADER = bytes.fromhex("1f8b08000000000000ff")  # deflate, no flags, mtime 0, OS unknown
ZSTD_MAGIC = bytes.fromhex("28b52ffd")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_id_label(image: dict[str, Any]) -> str:
    return f"{image['path']}#{image['selector']}"


# --------------------------------------------------------------------------------------------
# Reading samples: a tar archive or a directory, accessed by member path
# --------------------------------------------------------------------------------------------


class Source:
    """Files of one sample, whether it is a tar archive or a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, bytes] = {}
        if path.is_dir():
            for item in sorted(path.rglob("*")):
                if item.is_file():
                    self.files[item.relative_to(path).as_posix()] = item.read_bytes()
        else:
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        extracted = archive.extractfile(member)
                        assert extracted is not None
                        self.files[member.name] = extracted.read()

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def json(self, name: str) -> Any:
        data = self.read(name)
        assert data is not None, f"{self.path}: {name} is missing"
        return json.loads(data)


def blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def sniff(blob: bytes) -> str:
    if blob.startswith(b"\x1f\x8b"):
        return "gzip"
    if blob.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def declared_compression(media_type: str) -> str:
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "none"


def decompress(blob: bytes) -> bytes:
    """Decompress by what the bytes are; data after the end of a gzip stream is ignored."""
    kind = sniff(blob)
    if kind == "gzip":
        return zlib.decompressobj(wbits=31).decompress(blob)
    if kind == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


def manifests_in(source: Source, index: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Manifest descriptors reachable from an index, depth first, nested indexes followed."""
    for descriptor in index["manifests"] or []:
        if descriptor["mediaType"] in (OCI_INDEX, DOCKER_MANIFEST_LIST):
            nested = source.json(blob_path(descriptor["digest"]))
            for inner in manifests_in(source, nested):
                yield {**inner, "parent_annotations": descriptor.get("annotations", {})}
        else:
            yield descriptor


def chain_ids(diff_ids: list[str]) -> list[str]:
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else sha256(f"{chains[-1]} {diff_id}".encode()))
    return chains


def declared(image: dict[str, Any], source: Source) -> dict[str, Any]:
    """What the sample's own metadata declares for the image that expected.json describes."""
    number = int(image["selector"])
    if image["format"] == "docker-archive":
        item = source.json("manifest.json")[number - 1]
        config = source.read(item["Config"])
        assert config is not None
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        return {
            "config_path": item["Config"],
            "config_digest": "sha256:" + item["Config"].removesuffix(".json"),
            "repo_tags": item["RepoTags"],
            "manifest": None,
            # A legacy archive declares nothing about layer.tar but its DiffID.
            "layers": [
                {"path": path, "digest": diff_id, "size": None, "media_type": None}
                for path, diff_id in zip(item["Layers"], diff_ids, strict=True)
            ],
        }
    descriptor = list(manifests_in(source, source.json("index.json")))[number - 1]
    manifest = source.json(blob_path(descriptor["digest"]))
    annotations = descriptor.get("annotations") or descriptor.get("parent_annotations") or {}
    result = {
        "config_path": blob_path(manifest["config"]["digest"]),
        "config_digest": manifest["config"]["digest"],
        "repo_tags": [],
        "manifest": descriptor,
        "ref_name": annotations.get("org.opencontainers.image.ref.name"),
        "layers": [
            {
                "path": blob_path(layer["digest"]),
                "digest": layer["digest"],
                "size": layer["size"],
                "media_type": layer["mediaType"],
            }
            for layer in manifest["layers"]
        ],
    }
    if image["format"] == "docker-archive-oci":
        # Docker 25 writes the same image twice: the OCI view and manifest.json must agree.
        item = source.json("manifest.json")[number - 1]
        assert item["Config"] == result["config_path"]
        assert item["Layers"] == [layer["path"] for layer in result["layers"]]
        result["repo_tags"] = item["RepoTags"]
    return result


def findings(image: dict[str, Any], source: Source) -> list[dict[str, Any]]:
    """Run every integrity check; return the failed ones in expected.json's defect shape."""
    view = declared(image, source)
    failed: list[dict[str, Any]] = []

    def fail(check: str, layer: int | None, expected: Any, actual: Any) -> None:
        failed.append({"check": check, "layer": layer, "expected": expected, "actual": actual})

    if view["manifest"] is not None:
        manifest = source.read(blob_path(view["manifest"]["digest"]))
        assert manifest is not None
        if sha256(manifest) != view["manifest"]["digest"]:
            fail("manifest-digest", None, view["manifest"]["digest"], sha256(manifest))
    config = source.read(view["config_path"])
    assert config is not None
    if sha256(config) != view["config_digest"]:
        fail("image-id", None, view["config_digest"], sha256(config))
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    if len(diff_ids) != len(view["layers"]):
        fail("diff-id-count", None, str(len(view["layers"])), str(len(diff_ids)))
    for index, (layer, diff_id) in enumerate(zip(view["layers"], diff_ids, strict=False)):
        blob = source.read(layer["path"])
        if blob is None:
            fail("blob-exists", index, layer["digest"], None)
            continue
        if layer["size"] is not None:
            if len(blob) != layer["size"]:
                fail("blob-size", index, str(layer["size"]), str(len(blob)))
            if sha256(blob) != layer["digest"]:
                fail("blob-digest", index, layer["digest"], sha256(blob))
        media_type = layer["media_type"]
        if media_type is not None and declared_compression(media_type) != sniff(blob):
            fail("media-type", index, declared_compression(media_type), sniff(blob))
        actual_diff_id = sha256(decompress(blob))
        if actual_diff_id != diff_id:
            fail("diff-id", index, diff_id, actual_diff_id)
    return failed


def generated_files(root: Path) -> dict[str, str]:
    """sha256 of every generated file under root (hand-written files and caches left out)."""
    result = {}
    for item in sorted(root.rglob("*")):
        relative = item.relative_to(root).as_posix()
        if (
            item.is_file()
            and relative not in BUILT
            and relative.split("/")[0] not in HAND_WRITTEN
            and "__pycache__" not in relative
        ):
            result[relative] = sha256(item.read_bytes())
    return result


def run_generator(out: Path) -> None:
    subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )


# --------------------------------------------------------------------------------------------
# Reproducibility and size
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    run_generator(out)
    return out


def test_regeneration_matches_committed_files(regenerated: Path) -> None:
    committed = generated_files(SAMPLES)
    fresh = generated_files(regenerated)
    assert sorted(committed) == sorted(fresh), "the set of generated files changed"
    differing = sorted(name for name in committed if committed[name] != fresh[name])
    assert not differing, (
        f"regenerated files differ from the committed ones: {differing}. If make_samples.py "
        f"changed on purpose, run `make samples` and commit; if only compressed blobs differ, "
        f"zlib ({zlib.ZLIB_RUNTIME_VERSION}) or libzstd ({zstandard.ZSTD_VERSION}) changed."
    )


def test_regenerating_over_old_output_removes_stale_files(
    tmp_path: Path, regenerated: Path
) -> None:
    stale = tmp_path / "tampered" / "missing-blob" / "blobs" / "sha256" / ("0" * 64)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from an older run")
    keep = tmp_path / "README.md"
    keep.write_text("hand-written")
    run_generator(tmp_path)
    assert not stale.exists()
    assert keep.read_text() == "hand-written"
    assert generated_files(tmp_path) == generated_files(regenerated)


def test_samples_stay_small() -> None:
    total = sum(
        item.stat().st_size
        for item in SAMPLES.rglob("*")
        if item.is_file() and "__pycache__" not in item.parts and item.name not in BUILT
    )
    assert total < 1_000_000, f"sample_images/ holds {total} bytes"


# --------------------------------------------------------------------------------------------
# Tar archives: valid, deterministic headers, the members each layout needs
# --------------------------------------------------------------------------------------------

TARS = sorted(
    path.relative_to(SAMPLES).as_posix()
    for path in SAMPLES.rglob("*.tar")
    if path.relative_to(SAMPLES).as_posix() not in BUILT
)
DOCKER_LEGACY_TARS = [
    "docker-archive-legacy.tar",
    "docker-archive-multi.tar",
    "docker-archive-packages.tar",
    "tampered/layer-byte-flipped.tar",
    "tampered/config-edited.tar",
]
OCI_TARS = ["docker-archive-v25.tar", "oci-archive-zstd.tar", "tampered/diff-id-mismatch.tar"]


def walk_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: name.rstrip("/").split("/"))


def test_every_tar_is_covered() -> None:
    assert sorted(DOCKER_LEGACY_TARS + OCI_TARS) == TARS


@pytest.mark.parametrize("name", TARS)
def test_tar_headers_are_deterministic(name: str) -> None:
    with tarfile.open(SAMPLES / name) as archive:
        members = archive.getmembers()
    names = [member.name for member in members]
    assert names, f"{name} is empty"
    assert len(set(names)) == len(names), "duplicate member names"
    assert names == walk_order(names), "members are not in filepath.Walk order"
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.pax_headers == {}, f"{member.name} needs PAX records"
        assert member.isfile() or member.isdir()
        assert not member.name.startswith(("/", "./"))
    # Go's tar writer ends with two zero blocks and pads no further.
    data = (SAMPLES / name).read_bytes()
    assert data.endswith(b"\0" * 1024)
    assert len(data) % 512 == 0


@pytest.mark.parametrize("name", DOCKER_LEGACY_TARS)
def test_legacy_docker_archive_members(name: str) -> None:
    source = Source(SAMPLES / name)
    manifest = source.json("manifest.json")
    repositories = source.json("repositories")
    raw_manifest = source.read("manifest.json")
    assert raw_manifest is not None and raw_manifest.endswith(b"]\n")  # json.Encoder output
    layer_dirs = {path.split("/")[0] for path in source.files if path.endswith("/layer.tar")}
    referenced: set[str] = set()
    for item in manifest:
        assert set(item) == {"Config", "RepoTags", "Layers"}
        assert item["Config"].endswith(".json") and "/" not in item["Config"]
        previous: str | None = None
        for path in item["Layers"]:
            v1_id, _, file_name = path.partition("/")
            assert file_name == "layer.tar"
            assert source.read(f"{v1_id}/VERSION") == b"1.0"
            legacy = source.json(f"{v1_id}/json")
            assert legacy["id"] == v1_id
            assert legacy.get("parent") == previous
            previous = v1_id
            referenced.add(v1_id)
        for tag in item["RepoTags"]:
            repository, _, tag_name = tag.rpartition(":")
            assert repositories[repository][tag_name] == previous
    assert layer_dirs == referenced, "every layer directory is used, and stored once"


def test_multi_archive_shares_base_layers() -> None:
    manifest = Source(SAMPLES / "docker-archive-multi.tar").json("manifest.json")
    first, second = (item["Layers"] for item in manifest)
    assert first[:3] == second[:3]
    assert first[3] != second[3]
    assert manifest[0]["RepoTags"] == ["dockscope/sample:legacy", "dockscope/sample:latest"]
    assert manifest[1]["RepoTags"] == ["dockscope/sample:other"]


@pytest.mark.parametrize("name", OCI_TARS)
def test_oci_archive_members(name: str) -> None:
    source = Source(SAMPLES / name)
    layout = source.json("oci-layout")
    assert layout == {"imageLayoutVersion": "1.0.0"}
    index = source.json("index.json")
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    blobs = [path for path in source.files if path.startswith("blobs/")]
    assert blobs and all(path.startswith("blobs/sha256/") for path in blobs)


def test_docker25_archive_has_both_views() -> None:
    source = Source(SAMPLES / "docker-archive-v25.tar")
    assert set(source.files) >= {"index.json", "manifest.json", "oci-layout", "repositories"}
    (item,) = source.json("manifest.json")
    assert set(item) == {"Config", "RepoTags", "Layers", "LayerSources"}
    assert item["RepoTags"] == ["dockscope/sample:v25"]
    (descriptor,) = source.json("index.json")["manifests"]
    assert descriptor["annotations"] == {
        "io.containerd.image.name": "docker.io/dockscope/sample:v25",
        "org.opencontainers.image.ref.name": "v25",
    }
    manifest = source.json(blob_path(descriptor["digest"]))
    assert manifest["config"]["platform"] == {"architecture": "amd64", "os": "linux"}
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
        assert item["LayerSources"][layer["digest"]] == {
            "mediaType": layer["mediaType"],
            "size": layer["size"],
            "digest": layer["digest"],
        }
    # Since Docker 25, repositories names the top layer's DiffID, not a v1 ID.
    top = manifest["layers"][-1]["digest"].removeprefix("sha256:")
    assert source.json("repositories") == {"dockscope/sample": {"v25": top}}
    # Each layer's legacy v1 JSON is kept as an otherwise unreferenced blob.
    referenced = {blob_path(manifest["config"]["digest"]), blob_path(descriptor["digest"])}
    referenced |= set(item["Layers"])
    unreferenced = sorted(set(source.files) - referenced - {"index.json", "manifest.json"})
    unreferenced = [path for path in unreferenced if path.startswith("blobs/")]
    v1_ids = [source.json(path)["id"] for path in unreferenced]
    assert len(v1_ids) == len(manifest["layers"])
    assert all(len(v1_id) == 64 for v1_id in v1_ids)


# --------------------------------------------------------------------------------------------
# Layer contents: the file-system features the samples promise
# --------------------------------------------------------------------------------------------


def layer_members(image: dict[str, Any], index: int) -> dict[str, tarfile.TarInfo]:
    source = Source(SAMPLES / image["path"])
    blob = source.read(image["layers"][index]["path"])
    assert blob is not None
    with tarfile.open(fileobj=io.BytesIO(decompress(blob))) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_layers_show_links_whiteouts_and_opaque_directories() -> None:
    (legacy,) = [image for image in IMAGES if image["path"] == "docker-archive-legacy.tar"]
    base = layer_members(legacy, 0)
    assert base["bin/hello"].isfile() and base["bin/hello"].mode == 0o755
    assert base["bin/sh-link"].issym() and base["bin/sh-link"].linkname == "hello"
    assert base["bin/hi"].islnk() and base["bin/hi"].linkname == "bin/hello"
    assert base["tmp"].mode == 0o1777
    assert (base["home/app"].uid, base["home/app"].gid) == (1000, 1000)
    setup = layer_members(legacy, 1)
    assert {"etc/os-release", "etc/motd", "opt/app/bin/server"} <= set(setup)
    cleanup = layer_members(legacy, 2)
    assert cleanup["usr/share/doc/dockscope/.wh.README"].size == 0
    assert "var/cache/app/.wh..wh..opq" in cleanup
    assert "var/cache/app/stamp" in cleanup
    assert "var/cache/app/index.db" in base and "var/cache/app/index.db" not in cleanup


def test_every_config_aligns_history_with_layers() -> None:
    for image in IMAGES:
        config = Source(SAMPLES / image["path"]).json(image["config_path"])
        non_empty = [entry for entry in config["history"] if not entry.get("empty_layer")]
        assert len(non_empty) == len(config["rootfs"]["diff_ids"]), image_id_label(image)
        assert len(non_empty) < len(config["history"]), "samples interleave empty_layer entries"


def test_compressed_blobs_are_deterministic_frames() -> None:
    seen = {"gzip": 0, "zstd": 0}
    for image in IMAGES:
        source = Source(SAMPLES / image["path"])
        for layer in image["layers"]:
            blob = source.read(layer["path"])
            if blob is None:
                continue
            if layer["compression"] == "gzip":
                assert blob.startswith(GZIP_HEADER), "gzip header must carry mtime 0, no name"
                seen["gzip"] += 1
            elif layer["compression"] == "zstd":
                params = zstandard.get_frame_parameters(blob)
                assert params.has_checksum
                assert params.content_size == len(decompress(blob))
                seen["zstd"] += 1
    assert seen["gzip"] and seen["zstd"]


def test_same_image_has_same_id_in_every_oci_format() -> None:
    ids = {image["path"]: image["image_id"] for image in IMAGES if image["selector"] == "1"}
    assert ids["docker-archive-v25.tar"] == ids["oci-layout"] == ids["oci-archive-zstd.tar"]
    assert ids["docker-archive-legacy.tar"] != ids["oci-layout"]  # classic vs BuildKit config


def test_multiplatform_index() -> None:
    platforms = [image["platform"] for image in IMAGES if image["path"] == "oci-multiplatform"]
    assert platforms == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    source = Source(SAMPLES / "oci-multiplatform")
    (top,) = source.json("index.json")["manifests"]
    assert top["mediaType"] == OCI_INDEX
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "multi"
    nested = source.json(blob_path(top["digest"]))
    assert [d["platform"] for d in nested["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
    ]
    bases = {image["layer_digests"][0] for image in IMAGES if image["path"] == "oci-multiplatform"}
    assert len(bases) == 1, "the platforms share one base layer blob"


# --------------------------------------------------------------------------------------------
# expected.json against the files
# --------------------------------------------------------------------------------------------


def test_chain_id_definition() -> None:
    first, second = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    combined = hashlib.sha256(f"{first} {second}".encode()).hexdigest()
    assert chain_ids([first, second]) == [first, "sha256:" + combined]


def test_expected_covers_every_sample() -> None:
    described = {image["path"] for image in IMAGES}
    top_level = {
        item.relative_to(SAMPLES).as_posix()
        for item in SAMPLES.iterdir()
        if item.name not in HAND_WRITTEN | BUILT | {"expected.json", "tampered", "__pycache__"}
    }
    tampered = {f"tampered/{item.name}" for item in (SAMPLES / "tampered").iterdir()}
    assert described == top_level | tampered


@pytest.mark.parametrize("image", IMAGES, ids=image_id_label)
def test_expected_matches_declared_metadata(image: dict[str, Any]) -> None:
    source = Source(SAMPLES / image["path"])
    view = declared(image, source)
    config = source.read(image["config_path"])
    assert config is not None
    parsed = json.loads(config)
    assert image["config_path"] == view["config_path"]
    assert image["image_id"] == sha256(config)
    assert image["diff_ids"] == parsed["rootfs"]["diff_ids"]
    assert image["chain_ids"] == chain_ids(image["diff_ids"])
    assert image["repo_tags"] == view["repo_tags"]
    platform = f"{parsed['os']}/{parsed['architecture']}"
    platform += f"/{parsed['variant']}" if parsed.get("variant") else ""
    assert image["platform"] == platform
    assert image["layer_digests"] == [layer["digest"] for layer in view["layers"]]
    assert [layer["path"] for layer in image["layers"]] == [
        layer["path"] for layer in view["layers"]
    ]
    if view["manifest"] is None:
        assert image["manifest_digest"] is None
    else:
        assert image["manifest_digest"] == view["manifest"]["digest"]
        assert image["manifest_path"] == blob_path(view["manifest"]["digest"])
        assert image["ref_name"] == view["ref_name"]
        for layer, seen in zip(image["layers"], view["layers"], strict=True):
            assert (layer["size"], layer["media_type"]) == (seen["size"], seen["media_type"])
    for layer in image["layers"]:
        blob = source.read(layer["path"])
        assert blob is None or layer["compression"] == sniff(blob)


@pytest.mark.parametrize("image", IMAGES, ids=image_id_label)
def test_integrity_checks_find_exactly_the_planted_defects(image: dict[str, Any]) -> None:
    found = findings(image, Source(SAMPLES / image["path"]))
    assert found == image["defects"]
    if image["path"].startswith("tampered/"):
        assert image["defects"], "a tampered sample must carry a defect"
        assert len({defect["check"] for defect in image["defects"]}) == len(image["defects"])
    else:
        assert not image["defects"]
