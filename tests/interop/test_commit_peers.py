"""``dockscope container commit``: the OCI layout it writes passes dockscope verify, runs again
under dockscope with the container's changes, and the real peers accept it: skopeo inspects it,
podman loads it and shows the same filesystem."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.interop_peers import Peers
from tests.support.cli import dockscope, ok_bytes
from tests.support.containers import (
    CHANGES,
    DIVE_LEGACY,
    LISTING,
    Seen,
    directory_view,
    need_root,
    parse_listing,
    without_mount_points,
)
from tests.support.paths import SAMPLES

pytestmark = [pytest.mark.interop, pytest.mark.root]

MEDIA_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


@dataclass(frozen=True)
class Case:
    image: Path
    command: tuple[str, ...]  # what the container runs
    changes: bool  # the container changed its filesystem (and listed what it saw)


CASES = {
    # busybox, uncompressed layers (legacy docker save): every kind of change
    "legacy-busybox": Case(DIVE_LEGACY, ("sh", "-c", CHANGES + LISTING), True),
    # gzip and zstd layers (no shell in there: the command fails, the writable layer is empty)
    "oci-gzip-zstd": Case(SAMPLES / "oci-archive-zstd.tar", ("/nonexistent",), False),
}


@dataclass(frozen=True)
class Committed:
    name: str
    case: Case
    root: Path  # the state root
    layout: Path
    tag: str
    result: dict[str, Any]  # commit --json
    original: dict[str, Any]  # inspect --json of the image the container ran
    seen: Seen | None  # what the container saw after its changes

    def blob(self, digest: str) -> bytes:
        algorithm, hex_digest = digest.split(":")
        return (self.layout / "blobs" / algorithm / hex_digest).read_bytes()

    def json_blob(self, digest: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.blob(digest))
        return document

    @property
    def manifest(self) -> dict[str, Any]:
        return self.json_blob(self.result["manifest_digest"])

    @property
    def config(self) -> dict[str, Any]:
        return self.json_blob(self.result["image_id"])


@pytest.fixture(scope="module", params=sorted(CASES))
def committed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Committed]:
    need_root()
    name: str = request.param
    case = CASES[name]
    root = tmp_path_factory.mktemp(f"state-{name}")
    # --net none: a bridge writes /etc/hosts and resolv.conf per container (the listings differ)
    proc = dockscope(root, "run", "--net", "none", "--name", "cc", case.image, *case.command)
    if case.changes:
        seen: Seen | None = parse_listing(ok_bytes(proc).decode("utf-8", "surrogateescape"))
    else:
        assert proc.code == 127, proc.err_bytes
        seen = None
    layout = tmp_path_factory.mktemp(f"layout-{name}") / "image"
    tag = f"example.org/dockscope/committed:{name}"
    result = json.loads(
        ok_bytes(dockscope(root, "container", "commit", "--json", "cc", "-o", layout, "--tag", tag))
    )
    original = json.loads(ok_bytes(dockscope(root, "inspect", "--json", case.image)))
    yield Committed(name, case, root, layout, tag, result, original, seen)
    dockscope(root, "rm", "-f", "cc")


def test_commit_json(committed: Committed) -> None:
    result = committed.result
    assert result["kind"] == "container-commit" and result["schema_version"] == 1
    assert result["output"] == str(committed.layout)
    assert result["tag"] == committed.tag and result["ref_name"] == committed.name
    assert result["base_image_id"] == committed.original["image_id"]
    assert result["layers"] == len(committed.original["layers"]) + 1
    layer = result["layer"]
    assert layer["media_type"] == MEDIA_TYPES["gzip"]
    blob = committed.blob(layer["digest"])
    assert len(blob) == layer["size"] and blob[:2] == b"\x1f\x8b"


def test_commit_passes_verify(committed: Committed) -> None:
    report = json.loads(ok_bytes(dockscope(committed.root, "verify", "--json", committed.layout)))
    assert report["ok"] is True and report["summary"]["failed"] == 0
    assert report["format"] == "oci-layout"


def test_original_layers_are_copied_byte_for_byte(committed: Committed) -> None:
    layers = committed.manifest["layers"]
    originals = committed.original["layers"]
    assert len(layers) == len(originals) + 1
    for descriptor, original in zip(layers, originals, strict=False):
        assert descriptor["digest"] == original["digest"]
        assert descriptor["size"] == original["size"]
        assert descriptor["mediaType"] == MEDIA_TYPES[original["compression"]]
        data = committed.blob(descriptor["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor["digest"]
    compressions = {o["compression"] for o in originals}
    expected = {"none"} if committed.name == "legacy-busybox" else {"gzip", "zstd"}
    assert compressions == expected


def test_new_layer_is_the_exported_writable_layer(committed: Committed) -> None:
    exported = ok_bytes(
        dockscope(committed.root, "container", "export", "--writable-layer", "cc", "-o", "-")
    )
    layer = committed.result["layer"]
    assert "sha256:" + hashlib.sha256(exported).hexdigest() == layer["diff_id"]
    assert len(exported) == layer["uncompressed_size"]
    assert gzip.decompress(committed.blob(layer["digest"])) == exported


def test_config_history_and_index(committed: Committed) -> None:
    config = committed.config
    base = committed.original
    diff_ids = [layer["diff_id"] for layer in base["layers"]]
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": [*diff_ids, committed.result["layer"]["diff_id"]],
    }
    last = config["history"][-1]
    assert last["created_by"] == "dockscope commit"
    assert last["created"] == config["created"] != base["created"]
    assert len(config["history"]) == len(base["history"]) + 1
    assert config["config"] == base["config"]  # Cmd, Env and the rest stay the image's
    manifest = committed.manifest
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["digest"] == committed.result["image_id"]
    index = json.loads((committed.layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == committed.result["manifest_digest"]
    assert entry["annotations"] == {
        "org.opencontainers.image.ref.name": committed.name,
        "io.containerd.image.name": committed.tag,
    }
    layout = json.loads((committed.layout / "oci-layout").read_text())
    assert layout == {"imageLayoutVersion": "1.0.0"}


def test_committed_image_runs_with_the_changes(committed: Committed) -> None:
    if committed.seen is None:
        # nothing runs in there: the committed image holds the original's files exactly,
        # all its layers shared, and one more step in its history
        proc = dockscope(committed.root, "diff", "--json", committed.case.image, committed.layout)
        assert proc.code == 1, proc.err_bytes
        diff = json.loads(proc.out_bytes)
        assert diff["files"] == [] and diff["config"] == []
        assert diff["shared_layers"] == len(committed.original["layers"])
        assert diff["history"] == {"removed": [], "added": ["dockscope commit"]}
        return
    listing = ok_bytes(
        dockscope(
            committed.root, "run", "--rm", "--net", "none", committed.layout, "sh", "-c", LISTING
        )
    )
    again = parse_listing(listing.decode("utf-8", "surrogateescape"))
    # the device node made in the container is in the committed layer, but a layer's device
    # nodes are never created in the layer store (the container gets docker's default /dev)
    expected = without_mount_points(committed.seen)
    devices = {p for p, mode in expected.mode.items() if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)}
    assert devices == {"tmp/null"}
    for table in (expected.mode, expected.owner, expected.device):
        for path in devices:
            table.pop(path, None)
    assert without_mount_points(again) == expected
    assert (
        "etc/group" not in again.mode
        and again.sha256["etc/new"] == hashlib.sha256(b"hi\n").hexdigest()
    )


def test_skopeo_inspects_the_layout(committed: Committed, peers: Peers) -> None:
    reference = f"oci:{committed.layout}:{committed.name}"
    inspected = json.loads(peers.skopeo("inspect", reference))
    assert inspected["Digest"] == committed.result["manifest_digest"]
    assert inspected["Layers"] == [d["digest"] for d in committed.manifest["layers"]]
    raw_config = peers.skopeo("inspect", "--config", "--raw", reference)
    assert "sha256:" + hashlib.sha256(raw_config).hexdigest() == committed.result["image_id"]
    raw_manifest = peers.skopeo("inspect", "--raw", reference)
    assert (
        "sha256:" + hashlib.sha256(raw_manifest).hexdigest()
        == (committed.result["manifest_digest"])
    )


def test_podman_loads_the_layout_and_sees_the_changes(committed: Committed, peers: Peers) -> None:
    loaded = peers.podman("load", "-i", committed.layout)
    assert "Loaded image" in loaded
    image_id = committed.result["image_id"].split(":")[1]
    try:
        inspected = json.loads(peers.podman("image", "inspect", image_id))[0]
        assert inspected["Id"] == image_id
        assert inspected["RootFS"]["Layers"] == committed.config["rootfs"]["diff_ids"]
        if committed.seen is None:
            return
        mounted = Path(peers.podman("image", "mount", image_id))
        try:
            view = directory_view(mounted)
        finally:
            peers.podman("image", "unmount", image_id)
        assert without_mount_points(view) == without_mount_points(committed.seen)
    finally:
        peers.podman("rmi", "--force", image_id)
