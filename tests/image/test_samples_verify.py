"""dockscope against the sample images: every value expected.json records, and for each
tampered copy exactly the planted defect (plus the checks that follow from it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import invoke
from tests.support.paths import SAMPLES
from tests.support.trees import extract_trusted

EXPECTED: list[dict[str, Any]] = json.loads((SAMPLES / "expected.json").read_text())["images"]
CLEAN = [e for e in EXPECTED if not e["path"].startswith("tampered/")]
TAMPERED = [e for e in EXPECTED if e["path"].startswith("tampered/")]


def _json(*args: str) -> tuple[int, Any]:
    result = invoke(*args)
    return result.code, json.loads(result.out) if result.out else None


def _selection(entry: dict[str, Any], path: Path) -> list[str]:
    count = sum(1 for e in EXPECTED if e["path"] == entry["path"])
    return ["--image", entry["selector"]] if count > 1 else []


@pytest.mark.parametrize("entry", CLEAN, ids=lambda e: f"{e['path']}#{e['selector']}")
def test_inspect_matches_expected(entry: dict[str, Any]) -> None:
    path = SAMPLES / entry["path"]
    code, doc = _json("inspect", "--json", *_selection(entry, path), str(path))
    assert code == 0
    assert doc["format"] == entry["format"]
    assert doc["image_id"] == entry["image_id"]
    assert doc["manifest_digest"] == entry["manifest_digest"]
    if entry["format"].startswith("oci-") and not entry["repo_tags"]:
        # an OCI layout has no tags; the io.containerd.image.name annotation (what docker
        # load names the image after) is reported in their place
        assert doc["repo_tags"] in ([], [f"docker.io/dockscope/sample:{entry['ref_name']}"])
    else:
        assert doc["repo_tags"] == entry["repo_tags"]
    assert doc["ref_name"] == entry["ref_name"]
    platform = "/".join(p for p in (doc["os"], doc["architecture"], doc["variant"]) if p)
    assert platform == entry["platform"]
    assert [lyr["diff_id"] for lyr in doc["layers"]] == entry["diff_ids"]
    assert [lyr["chain_id"] for lyr in doc["layers"]] == entry["chain_ids"]
    assert [lyr["digest"] for lyr in doc["layers"]] == entry["layer_digests"]
    assert doc["warnings"] == []


@pytest.mark.parametrize("path", sorted({e["path"] for e in CLEAN}))
def test_clean_samples_verify(path: str) -> None:
    code, doc = _json("verify", "--json", str(SAMPLES / path))
    assert code == 0
    assert doc["ok"] is True and doc["summary"]["failed"] == 0


def _consequences(defect: dict[str, Any], layer_count: int) -> set[tuple[str, int | None]]:
    """Checks that must fail as a consequence of a planted defect."""
    layer = defect["layer"]
    if defect["check"] in ("diff-id", "blob-exists") and layer is not None:
        # the chain IDs of that layer and every layer above it no longer verify
        return {("chain-id", i) for i in range(layer, layer_count)}
    return set()


def _layer_of(subject: str) -> int | None:
    if subject.startswith("layer "):
        return int(subject.split()[1])
    return None


@pytest.mark.parametrize("entry", TAMPERED, ids=lambda e: e["path"])
def test_tampered_sample_fails_exactly_its_defect(entry: dict[str, Any]) -> None:
    code, doc = _json("verify", "--json", str(SAMPLES / entry["path"]))
    assert code == 1
    failed = {(f["check"], _layer_of(f["subject"])) for f in doc["findings"] if not f["ok"]}
    planted = {(d["check"], d["layer"]) for d in entry["defects"]}
    expected = set(planted)
    for defect in entry["defects"]:
        expected |= _consequences(defect, len(entry["diff_ids"]))
    if entry["path"] == "tampered/trailing-bytes":
        # the bytes after the gzip stream are named as such too
        expected.add(("layer-tar", 1))
    assert failed == expected
    for defect in entry["defects"]:
        matching = [
            f
            for f in doc["findings"]
            if f["check"] == defect["check"] and _layer_of(f["subject"]) == defect["layer"]
        ]
        assert matching and not matching[0]["ok"]
        if defect["expected"] is not None and defect["check"] != "blob-exists":
            # media-type findings add the declared media type after the compression
            assert matching[0]["expected"].split(" ")[0] == defect["expected"]
            assert matching[0]["actual"] == defect["actual"]


def _retar(directory: Path, target: Path) -> Path:
    import tarfile

    with tarfile.open(target, "w") as tf:
        for path in sorted(directory.rglob("*")):
            tf.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return target


def test_docker25_views_that_disagree_are_reported(tmp_path: Path) -> None:
    import hashlib
    import tarfile

    root = tmp_path / "v25"
    with tarfile.open(SAMPLES / "docker-archive-v25.tar") as tf:
        extract_trusted(tf, root)
    manifest = json.loads((root / "manifest.json").read_text())
    # manifest.json now names another config (a rebuilt one) than the manifest in index.json
    config_path = root / manifest[0]["Config"]
    config = json.loads(config_path.read_text())
    config["author"] = "someone else"
    data = json.dumps(config).encode()
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs/sha256" / digest).write_bytes(data)
    manifest[0]["Config"] = f"blobs/sha256/{digest}"
    (root / "manifest.json").write_text(json.dumps(manifest))
    archive = _retar(root, tmp_path / "v25-disagree.tar")

    code, doc = _json("verify", "--json", str(archive))
    assert code == 1
    failed = [f for f in doc["findings"] if not f["ok"]]
    assert [f["check"] for f in failed] == ["docker25-agreement"]
    assert "only in index.json" in failed[0]["actual"]
    code, doc = _json("inspect", "--json", str(archive))
    assert code == 0
    assert any("docker25-agreement" in w for w in doc["warnings"])


def test_docker25_layer_lists_that_disagree(tmp_path: Path) -> None:
    import tarfile

    root = tmp_path / "v25"
    with tarfile.open(SAMPLES / "docker-archive-v25.tar") as tf:
        extract_trusted(tf, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest[0]["Layers"][-1] = manifest[0]["Layers"][0]  # top layer replaced by the base
    (root / "manifest.json").write_text(json.dumps(manifest))
    code, doc = _json("verify", "--json", str(_retar(root, tmp_path / "x.tar")))
    assert code == 1
    checks = {f["check"] for f in doc["findings"] if not f["ok"]}
    assert "docker25-agreement" in checks and "diff-id" in checks
