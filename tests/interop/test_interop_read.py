"""dockscope reads what the real peers write, and agrees with what the peers say about it.

Ground truth comes from the peers (skopeo's raw manifest and raw config, the archives'
manifest.json); nothing here re-implements dockscope's reader.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.interop.interop_peers import (
    CATALOG,
    DOCKER_CONFIG,
    DOCKER_LAYER_TAR,
    Artifact,
    ImageSpec,
    Peers,
    Truth,
    TruthLookup,
    chain_ids,
    compression_of,
    decompress,
    docker_manifest_entry,
    layer_blob,
    layer_member,
    sha256_digest,
)
from tests.support.paths import REPO

pytestmark = pytest.mark.interop

SUPPORTED = [name for name, count in CATALOG.items() if count]
UNSUPPORTED = [name for name, count in CATALOG.items() if not count]
IMAGES = [(name, i) for name, count in CATALOG.items() for i in range(count)]
MULTI = [name for name, count in CATALOG.items() if count > 1]
# (artifact, image index, index into that image's alt_selects)
ALT_SELECTS = [
    ("buildah-multiarch-oci-layout", 0, 0),
    ("buildah-multiarch-oci-layout", 1, 0),
    ("buildah-multiarch-oci-archive", 0, 0),
    ("buildah-multiarch-oci-archive", 1, 0),
    ("umoci-layout", 0, 0),
    ("umoci-layout", 1, 0),
    ("podman-multi-docker-archive", 0, 0),
    ("podman-multi-docker-archive", 1, 0),
]
TAMPER = [
    "buildah-oci-layout",
    "buildah-oci-archive",
    "skopeo-oci-zstd",
    "skopeo-oci-uncompressed",
    "buildah-docker-archive",
    "extracted-docker-save",
]
MEDIA_TYPE_COMPRESSION = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
}


def _image_id(case: tuple[str, int]) -> str:
    name, index = case
    return name if CATALOG[name] == 1 else f"{name}#{index + 1}"


# -- running dockscope -------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "inspect_tool", *[str(a) for a in args]]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env
    )


def cli_json(proc: subprocess.CompletedProcess[str], expect_rc: int = 0) -> dict[str, Any]:
    where = f"{' '.join(proc.args[2:])}\nstderr: {proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, f"dockscope crashed: {where}"
    if proc.returncode != expect_rc:
        try:
            failed = [f for f in json.loads(proc.stdout).get("findings", []) if not f.get("ok")]
        except (json.JSONDecodeError, AttributeError):
            failed = []
        detail = "".join(f"\n  failed: {f}" for f in failed)
        pytest.fail(f"exit {proc.returncode}, wanted {expect_rc}: {where}{detail}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"stdout is not one JSON document ({exc}): {where}\n{proc.stdout[:2000]}")
    assert isinstance(doc, dict)
    assert doc.get("schema_version") == 1, doc.get("schema_version")
    return doc


def inspect_doc(path: Path, *select: str) -> dict[str, Any]:
    return cli_json(run_cli("inspect", "--json", *select, path))


# -- comparing ---------------------------------------------------------------------------------


class Mismatches:
    """Collects every discrepancy of one document, so one run reports them all."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: list[str] = []

    def eq(self, key: str, actual: object, expected: object) -> None:
        if actual != expected:
            self.items.append(f"{key}: dockscope says {actual!r}, peer says {expected!r}")

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.items.append(message)

    def assert_none(self) -> None:
        assert not self.items, f"{self.what}:\n  " + "\n  ".join(self.items)


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)")


def parse_time(value: object) -> datetime | object:
    """RFC 3339 to an aware UTC datetime (digits past microseconds dropped); else as is."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return value
    base, frac, zone = match.groups()
    zone = "+00:00" if zone in {"Z", "z"} else zone
    micro = (frac or "")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(UTC)


def expected_layers(art: Artifact, spec: ImageSpec, truth: Truth) -> list[dict[str, Any]]:
    diff_ids = truth.diff_ids
    chains = chain_ids(diff_ids)
    history = truth.config.get("history") or []
    non_empty = [(i, h) for i, h in enumerate(history) if not h.get("empty_layer")]
    layers = []
    for k, (desc, diff_id) in enumerate(zip(truth.manifest["layers"], diff_ids, strict=True)):
        hist = non_empty[k] if k < len(non_empty) else None
        layers.append(
            {
                "index": k,
                "digest": desc["digest"],
                "diff_id": diff_id,
                "chain_id": chains[k],
                "media_type": desc["mediaType"] if art.is_oci else DOCKER_LAYER_TAR,
                "compression": spec.compression,
                "size": desc["size"],
                "uncompressed_size": desc["size"] if spec.compression == "none" else None,
                "created_by": hist[1].get("created_by") if hist else None,
                "history_index": hist[0] if hist else None,
            }
        )
    return layers


def compare_image(
    doc: dict[str, Any], art: Artifact, spec: ImageSpec, truth: Truth, selected: tuple[str, ...]
) -> None:
    mismatches = Mismatches(f"{art.name} ({art.tool}), inspect {' '.join(selected)}")
    cfg = truth.config
    mismatches.eq("kind", doc.get("kind"), "image")
    mismatches.eq("format", doc.get("format"), art.format)
    mismatches.eq("archive_compression", doc.get("archive_compression"), art.archive_compression)
    mismatches.check(
        Path(str(doc.get("source"))).resolve() == art.path.resolve(),
        f"source: {doc.get('source')!r} is not {art.path}",
    )
    mismatches.eq("image_id", doc.get("image_id"), truth.image_id)
    if art.is_oci:
        mismatches.eq("manifest_digest", doc.get("manifest_digest"), truth.manifest_digest)
        descriptor_type = (truth.manifest_descriptor or {}).get("mediaType")
        mismatches.eq(
            "manifest_media_type",
            doc.get("manifest_media_type"),
            truth.manifest.get("mediaType", descriptor_type),
        )
        mismatches.eq(
            "config_media_type", doc.get("config_media_type"), truth.manifest["config"]["mediaType"]
        )
    else:
        mismatches.eq("manifest_digest", doc.get("manifest_digest"), None)
        mismatches.eq("config_media_type", doc.get("config_media_type"), DOCKER_CONFIG)
    if spec.repo_tags is not None:
        mismatches.eq("repo_tags", doc.get("repo_tags"), list(spec.repo_tags))
    if spec.ref_name is not None:
        mismatches.eq("ref_name", doc.get("ref_name"), spec.ref_name)
    mismatches.eq("architecture", doc.get("architecture"), cfg.get("architecture"))
    mismatches.eq("os", doc.get("os"), cfg.get("os"))
    mismatches.eq("variant", doc.get("variant"), cfg.get("variant"))
    mismatches.eq("author", doc.get("author"), cfg.get("author"))
    mismatches.eq(
        "created (instant)", parse_time(doc.get("created")), parse_time(cfg.get("created"))
    )
    mismatches.eq("config", doc.get("config"), cfg.get("config") or {})
    mismatches.eq("history", doc.get("history"), cfg.get("history"))
    mismatches.eq("warnings", doc.get("warnings"), [])

    # What the builder set must come through (checked against dockscope's copy).
    got = doc.get("config") or {}
    for entry in spec.env:
        mismatches.check(
            entry in (got.get("Env") or []), f"config.Env lacks {entry!r}: {got.get('Env')}"
        )
    for key, value in spec.labels.items():
        mismatches.eq(f"config.Labels[{key}]", (got.get("Labels") or {}).get(key), value)
    if spec.cmd is not None:
        mismatches.eq("config.Cmd", got.get("Cmd"), spec.cmd)
    if spec.entrypoint is not None:
        mismatches.eq("config.Entrypoint", got.get("Entrypoint"), spec.entrypoint)

    layers = doc.get("layers") or []
    want = expected_layers(art, spec, truth)
    mismatches.eq("number of layers", len(layers), len(want))
    for got_layer, want_layer in zip(layers, want, strict=False):
        for key, value in want_layer.items():
            mismatches.eq(f"layers[{want_layer['index']}].{key}", got_layer.get(key), value)
    mismatches.assert_none()


# -- the fixture itself (needs only the peers) -------------------------------------------------


def test_fixture_built_every_artifact(artifacts: dict[str, Artifact]) -> None:
    assert sorted(artifacts) == sorted(CATALOG)
    for art in artifacts.values():
        assert art.path.exists(), art
        assert len(art.images) == CATALOG[art.name], art.name
    alternatives = {
        (art.name, i, j)
        for art in artifacts.values()
        for i, spec in enumerate(art.images)
        for j in range(len(spec.alt_selects))
    }
    assert alternatives == set(ALT_SELECTS)


@pytest.mark.parametrize("case", IMAGES, ids=_image_id)
def test_fixture_peer_ground_truth(
    artifacts: dict[str, Artifact], truth_of: TruthLookup, case: tuple[str, int]
) -> None:
    """The peers wrote what the builder asked for (so failures elsewhere are dockscope's)."""
    art = artifacts[case[0]]
    spec = art.images[case[1]]
    truth = truth_of(art, spec)
    cfg = truth.config.get("config") or {}
    for entry in spec.env:
        assert entry in cfg.get("Env", []), cfg
    for key, value in spec.labels.items():
        assert cfg.get("Labels", {}).get(key) == value, cfg
    if spec.cmd is not None:
        assert cfg.get("Cmd") == spec.cmd, cfg
    if spec.entrypoint is not None:
        assert cfg.get("Entrypoint") == spec.entrypoint, cfg
    platform = "/".join(
        p
        for p in (truth.config["os"], truth.config["architecture"], truth.config.get("variant"))
        if p
    )
    assert platform == spec.platform
    assert len(truth.manifest["layers"]) == len(truth.diff_ids)
    for i, desc in enumerate(truth.manifest["layers"]):
        blob = layer_blob(art, truth, i)
        assert compression_of(blob[:4]) == spec.compression, (i, desc)
        assert len(blob) == desc["size"]
        assert sha256_digest(blob) == desc["digest"]
        if art.is_oci and "media-type" not in art.verify_failures:
            assert MEDIA_TYPE_COMPRESSION[desc["mediaType"]] == spec.compression, desc
    if not art.is_oci:
        saved = docker_manifest_entry(art.blob_source, truth.manifest["config"]["digest"])
        assert tuple(saved.get("RepoTags") or ()) == spec.repo_tags
    if spec.whiteout:
        top = decompress(layer_blob(art, truth, len(truth.diff_ids) - 1))
        assert sha256_digest(top) == truth.diff_ids[-1]
        with tarfile.open(fileobj=io.BytesIO(top)) as tar:
            names = [n.removeprefix("./") for n in tar.getnames()]
        assert spec.whiteout in names, names


# -- dockscope against the peers ---------------------------------------------------------------


@pytest.mark.parametrize("case", IMAGES, ids=_image_id)
def test_inspect_matches_peers(
    artifacts: dict[str, Artifact], truth_of: TruthLookup, case: tuple[str, int]
) -> None:
    art = artifacts[case[0]]
    spec = art.images[case[1]]
    doc = inspect_doc(art.path, *spec.select)
    compare_image(doc, art, spec, truth_of(art, spec), spec.select)


@pytest.mark.parametrize("case", ALT_SELECTS, ids=lambda c: f"{c[0]}#{c[1] + 1}")
def test_other_selectors_pick_the_same_image(
    artifacts: dict[str, Artifact], truth_of: TruthLookup, case: tuple[str, int, int]
) -> None:
    art = artifacts[case[0]]
    spec = art.images[case[1]]
    selected = spec.alt_selects[case[2]]
    compare_image(inspect_doc(art.path, *selected), art, spec, truth_of(art, spec), selected)


@pytest.mark.parametrize("name", MULTI)
def test_listing_without_selection(
    artifacts: dict[str, Artifact], truth_of: TruthLookup, name: str
) -> None:
    art = artifacts[name]
    doc = inspect_doc(art.path)
    mismatches = Mismatches(f"{art.name} ({art.tool}) listing")
    mismatches.eq("kind", doc.get("kind"), "listing")
    mismatches.eq("format", doc.get("format"), art.format)
    mismatches.eq("archive_compression", doc.get("archive_compression"), art.archive_compression)
    entries = doc.get("images") or []
    mismatches.eq("number of images", len(entries), len(art.images))
    for n, (entry, spec) in enumerate(zip(entries, art.images, strict=False), start=1):
        truth = truth_of(art, spec)
        mismatches.eq(f"images[{n}].selector", entry.get("selector"), str(n))
        mismatches.eq(f"images[{n}].image_id", entry.get("image_id"), truth.image_id)
        mismatches.eq(f"images[{n}].platform", entry.get("platform"), spec.platform)
        if art.is_oci:
            mismatches.eq(
                f"images[{n}].manifest_digest", entry.get("manifest_digest"), truth.manifest_digest
            )
            path = ["index.json"]
            if truth.parent_index_digest:
                path.append(f"{truth.parent_index_digest} (index)")
            mismatches.eq(f"images[{n}].path", entry.get("path"), path)
        else:
            mismatches.eq(f"images[{n}].manifest_digest", entry.get("manifest_digest"), None)
        if spec.repo_tags is not None:
            mismatches.eq(f"images[{n}].repo_tags", entry.get("repo_tags"), list(spec.repo_tags))
        if spec.ref_name is not None:
            mismatches.eq(f"images[{n}].ref_name", entry.get("ref_name"), spec.ref_name)
    mismatches.assert_none()


@pytest.mark.parametrize("name", SUPPORTED)
def test_verify(artifacts: dict[str, Artifact], name: str) -> None:
    """Every check passes, except those the artifact is known to break (and those must fail)."""
    art = artifacts[name]
    bad = art.verify_failures
    doc = cli_json(run_cli("verify", "--json", art.path), expect_rc=1 if bad else 0)
    mismatches = Mismatches(f"{art.name} ({art.tool}) verify")
    mismatches.eq("format", doc.get("format"), art.format)
    mismatches.eq("ok", doc.get("ok"), not bad)
    findings = doc.get("findings") or []
    failed = [f for f in findings if not f.get("ok")]
    mismatches.eq("failed findings", [f for f in failed if f.get("check") not in bad], [])
    mismatches.eq("checks that failed", {f.get("check") for f in failed}, set(bad))
    mismatches.eq(
        "summary",
        doc.get("summary"),
        {"passed": len(findings) - len(failed), "failed": len(failed)},
    )
    checks = {f.get("check") for f in findings}
    wanted = {"diff-id", "blob-digest"} if art.is_oci else {"diff-id"}
    mismatches.check(
        wanted <= checks, f"checks {sorted(wanted - checks)} did not run: {sorted(checks)}"
    )
    mismatches.assert_none()


def _flip_byte_in_file(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("name", TAMPER)
def test_verify_catches_a_flipped_layer_byte(
    artifacts: dict[str, Artifact], truth_of: TruthLookup, name: str, tmp_path: Path
) -> None:
    art = artifacts[name]
    spec = art.images[0]
    truth = truth_of(art, spec)
    member = layer_member(art, truth, 0)
    copy = tmp_path / art.path.name
    if art.path.is_dir():
        shutil.copytree(art.path, copy, symlinks=True)
        target = copy / member
        _flip_byte_in_file(target, target.stat().st_size // 2)
    else:
        shutil.copyfile(art.path, copy)
        with tarfile.open(copy) as tar:
            info = tar.getmember(member)
        _flip_byte_in_file(copy, info.offset_data + info.size // 2)
    doc = cli_json(run_cli("verify", "--json", copy), expect_rc=1)
    assert doc.get("ok") is False, doc
    layer = truth.manifest["layers"][0]["digest"]
    failing = [
        f
        for f in doc.get("findings") or []
        if not f.get("ok")
        and f.get("check") in {"blob-digest", "diff-id"}
        and f.get("expected") in {layer, truth.diff_ids[0]}
    ]
    assert failing, f"no failed blob-digest/diff-id finding for {member}: {doc.get('findings')}"
    assert (doc.get("summary") or {}).get("failed", 0) >= 1, doc.get("summary")


@pytest.mark.parametrize("name", UNSUPPORTED)
@pytest.mark.parametrize("written", ["dir:{path}", "{path}"])
def test_containers_image_dir_layout_is_read(
    artifacts: dict[str, Artifact], peers: Peers, name: str, written: str
) -> None:
    """`dir:` layouts (buildah push dir:, podman save --format docker-dir, skopeo copy
    dir:) are skopeo's directory transport: read with or without the dir: prefix, the
    manifest and config the ones skopeo reads, every blob verified against its file name."""
    art = artifacts[name]
    where = written.format(path=art.path)
    proc = run_cli("inspect", "--json", where)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == "dir"
    raw = peers.skopeo("inspect", "--raw", f"dir:{art.path}")
    config = peers.skopeo("inspect", "--config", "--raw", f"dir:{art.path}")
    assert doc["manifest_digest"] == sha256_digest(raw)
    assert doc["image_id"] == sha256_digest(config)
    proc = run_cli("verify", "--json", where)
    assert proc.returncode == 0, proc.stdout[-2000:]
    checks = {f["check"] for f in json.loads(proc.stdout)["findings"]}
    assert {"dir-version", "blob-digest", "diff-id"} <= checks
