"""Transports against skopeo itself: containers-storage written by Buildah read offline as
skopeo reads it, and ``dockscope copy`` compared with ``skopeo copy`` of the same image,
pair by pair (manifest, config and layer digests), each tool reading the other's output.
The store is the interop fixture's (vfs, Buildah's commits); it is only ever read."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.interop.interop_peers import APP, APP_DOCKER, BASE, Artifact, Peers, sha256_digest
from tests.support.cli import invoke, ok
from tests.support.storage import read_evidence

pytestmark = pytest.mark.interop

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


def _store(peers: Peers, name: str) -> str:
    return f"containers-storage:[vfs@{peers.graph}+{peers.run}]{name}"


def _document(where: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(invoke("inspect", "--json", where)))
    return document


def _manifest(peers: Peers, where: str) -> tuple[bytes, dict[str, Any]]:
    raw = peers.skopeo("inspect", "--raw", where)
    return raw, json.loads(raw)


@pytest.mark.parametrize("name", [BASE, APP, APP_DOCKER])
def test_containers_storage_reads_as_skopeo_reads_it(
    artifacts: dict[str, Artifact], peers: Peers, name: str
) -> None:
    where = _store(peers, name)
    result = read_evidence(peers.graph, "inspect", "--json", where)
    assert result.code == 0, result.err
    document = json.loads(result.out)
    config = peers.skopeo("inspect", "--config", "--raw", where)
    assert document["format"] == "containers-storage"
    assert document["source"] == where
    assert document["image_id"] == sha256_digest(config)
    assert [layer["diff_id"] for layer in document["layers"]] == json.loads(config)["rootfs"][
        "diff_ids"
    ]
    raw, manifest = _manifest(peers, where)
    # Buildah's commits record a manifest of uncompressed layers: served unchanged
    assert [d["digest"] for d in manifest["layers"]] == json.loads(config)["rootfs"]["diff_ids"]
    assert document["manifest_digest"] == sha256_digest(raw)
    verified = read_evidence(peers.graph, "verify", "--json", where)
    assert verified.code == 0, verified.out[-2000:]
    checks = {f["check"] for f in json.loads(verified.out)["findings"]}
    assert {"diff-id", "blob-digest", "manifest-digest"} <= checks
    listing = read_evidence(peers.graph, "ls", where, "/etc")
    assert listing.code == 0, listing.err


def test_containers_storage_names(artifacts: dict[str, Artifact], peers: Peers) -> None:
    by_name = _document(_store(peers, APP))
    short_id = by_name["image_id"].split(":")[1][:12]
    assert _document(_store(peers, short_id))["image_id"] == by_name["image_id"]
    code, _, err = invoke("inspect", _store(peers, "localhost/nothing:here"))
    assert code == 2
    assert f"{_store(peers, 'localhost/nothing:here')}: no image named" in err
    code, _, err = invoke("inspect", f"containers-storage:[overlay@{peers.graph}]{APP}")
    assert code == 2
    assert "no overlay images" in err


def test_containers_storage_to_oci_as_skopeo_copies_it(
    artifacts: dict[str, Artifact], peers: Peers, tmp_path: Path
) -> None:
    where = _store(peers, APP)
    theirs, ours = tmp_path / "skopeo", tmp_path / "dockscope"
    peers.skopeo(
        "copy", "--quiet", "--dest-oci-accept-uncompressed-layers", where, f"oci:{theirs}:app"
    )
    result = read_evidence(peers.graph, "copy", "--json", where, f"oci:{ours}:app")
    assert result.code == 0, result.err
    raw_theirs, manifest_theirs = _manifest(peers, f"oci:{theirs}:app")
    raw_ours, manifest_ours = _manifest(peers, f"oci:{ours}:app")
    assert manifest_ours["config"] == manifest_theirs["config"]
    assert [(d["digest"], d["size"]) for d in manifest_ours["layers"]] == [
        (d["digest"], d["size"]) for d in manifest_theirs["layers"]
    ]
    assert {d["mediaType"] for d in manifest_ours["layers"]} == {OCI_LAYER}
    assert raw_ours == raw_theirs or _uncompressed_types(manifest_theirs) == manifest_ours
    _cross_read(peers, f"oci:{theirs}:app", f"oci:{ours}:app", tmp_path)


def _uncompressed_types(manifest: dict[str, Any]) -> dict[str, Any]:
    """skopeo 1.9 keeps a layer's recorded media type (+gzip) on a blob it serves
    uncompressed; dockscope names the bytes it copies."""
    layers = [{**d, "mediaType": OCI_LAYER} for d in manifest["layers"]]
    return {**manifest, "layers": layers}


def _cross_read(peers: Peers, theirs: str, ours: str, tmp_path: Path) -> None:
    """dockscope verifies skopeo's output; skopeo reads every blob of dockscope's."""
    ok(invoke("verify", theirs))
    ok(invoke("verify", ours))
    again = tmp_path / f"again-{hashlib.sha256(ours.encode()).hexdigest()[:8]}"
    peers.skopeo("copy", "--quiet", "--preserve-digests", ours, f"dir:{again}")


SOURCES = {
    "oci-archive-zstd": "oci-archive:{corpus}/oci-archive-zstd-dive.tar",
    "oci-archive-gzip": "oci-archive:{corpus}/oci-archive-gzip-dive.tar",
}
# (skopeo 1.9's docker-archive: reader ignores Docker 25's OCI view and makes a v2s2
# manifest, and it cannot read a v2s2 manifest back from an OCI layout by ref name, as
# ggcr's layouts hold: those sources are compared in test_copy.py by their own digests)
DESTINATIONS = ("oci:{out}:copied", "oci-archive:{out}.tar:copied", "dir:{out}")


@pytest.mark.parametrize("dest", DESTINATIONS)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_copy_matches_skopeo_copy(
    peers: Peers, corpus: Path, tmp_path: Path, source: str, dest: str
) -> None:
    src = SOURCES[source].format(corpus=corpus)
    theirs = dest.format(out=tmp_path / "skopeo")
    ours = dest.format(out=tmp_path / "dockscope")
    peers.skopeo("copy", "--quiet", "--preserve-digests", src, theirs)
    ok(invoke("copy", src, ours))
    raw_theirs, manifest_theirs = _manifest(peers, theirs)
    raw_ours, _ = _manifest(peers, ours)
    assert sha256_digest(raw_ours) == sha256_digest(raw_theirs)
    assert _document(ours)["manifest_digest"] == _document(theirs)["manifest_digest"]
    config = peers.skopeo("inspect", "--config", "--raw", ours)
    assert sha256_digest(config) == manifest_theirs["config"]["digest"]
    _cross_read(peers, theirs, ours, tmp_path)


@pytest.mark.parametrize(
    ("src", "skopeo_src"),
    [
        ("oci-archive:{corpus}/oci-archive-gzip-dive.tar", None),
        ("docker-archive:{corpus}/docker-save-legacy-dive.tar", None),
        # skopeo refuses zstd for docker images; the gzip archive holds the same layer tars
        ("oci-archive:{corpus}/oci-archive-zstd-dive.tar", "oci-archive-gzip-dive.tar"),
    ],
)
def test_docker_archive_is_what_skopeo_writes(
    peers: Peers, corpus: Path, tmp_path: Path, src: str, skopeo_src: str | None
) -> None:
    src = src.format(corpus=corpus)
    theirs, ours = tmp_path / "skopeo.tar", tmp_path / "dockscope.tar"
    from_src = f"oci-archive:{corpus / skopeo_src}" if skopeo_src else src
    peers.skopeo("copy", "--quiet", from_src, f"docker-archive:{theirs}:example.org/app:1")
    ok(invoke("copy", src, f"docker-archive:{ours}:example.org/app:1"))
    assert _members(ours)["manifest.json"] == _members(theirs)["manifest.json"]
    with tarfile.open(ours) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        listed = json.loads(member.read())[0]
    assert listed["RepoTags"] == ["example.org/app:1"]
    for name in [listed["Config"], *listed["Layers"]]:
        assert _members(ours)[name] == _members(theirs)[name], name
    # each tool reads the other's
    assert _document(f"docker-archive:{theirs}")["image_id"] == _document(str(ours))["image_id"]
    peers.skopeo("copy", "--quiet", f"docker-archive:{ours}", f"oci:{tmp_path / 'back'}")


def _members(archive: Path) -> dict[str, str]:
    """Each regular member's sha256."""
    found = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member)
                assert data is not None
                found[member.name] = hashlib.sha256(data.read()).hexdigest()
    return found


def test_containers_storage_to_every_local_transport(
    artifacts: dict[str, Artifact], peers: Peers, tmp_path: Path
) -> None:
    where = _store(peers, APP_DOCKER)
    image_id = _document(where)["image_id"]
    for dest in (
        f"oci:{tmp_path / 'layout'}:app",
        f"oci-archive:{tmp_path / 'app.tar'}",
        f"docker-archive:{tmp_path / 'saved.tar'}:example.org/app:3",
        f"dir:{tmp_path / 'dir'}",
    ):
        result = read_evidence(peers.graph, "copy", "--json", where, dest)
        assert result.code == 0, result.err
        assert _document(dest)["image_id"] == image_id
        # skopeo 1.9 finds a Docker v2s2 manifest in an OCI layout only as its one image,
        # not by ref name (it looks for OCI media types there)
        peers.skopeo("inspect", dest.removesuffix(":app"))
    raw, manifest = _manifest(peers, f"dir:{tmp_path / 'dir'}")
    assert {d["mediaType"] for d in manifest["layers"]} == {DOCKER_LAYER}
    assert sha256_digest(raw) == _document(where)["manifest_digest"]
