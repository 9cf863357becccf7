"""dockscope against Debian's docker-registry (distribution 2.8): every view compared with
skopeo's on the same reference, in each auth and TLS set-up."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.registry.servers import Pki, Registry, run_skopeo
from tests.support.cli import invoke, ok

pytestmark = pytest.mark.interop

KINDS = ("plain", "tls", "basic", "token")


def skopeo_views(registry: Registry, ref: str, *extra: str) -> tuple[bytes, bytes, dict]:
    args = registry.skopeo_read_args()
    raw = run_skopeo("inspect", "--raw", *args, *extra, ref).encode()
    config = run_skopeo("inspect", "--config", "--raw", *args, *extra, ref).encode()
    summary = json.loads(run_skopeo("inspect", *args, *extra, ref))
    return raw, config, summary


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("registry", KINDS, indirect=True)
@pytest.mark.parametrize("image", ["dive-gzip", "dive-zstd", "sample-zstd"])
def test_views_match_skopeo(
    registry: Registry, image: str, layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    ref = registry.push(layouts[image], f"dockscope/{image}:v1")
    access = registry.access_args(pki, tmp_path / "certs")
    raw, config, summary = skopeo_views(registry, ref)

    document = invoke("inspect", "--json", *access, ref).json()
    assert document["source"] == ref
    assert document["format"] == "registry"
    assert document["manifest_digest"] == sha256(raw) == summary["Digest"]
    assert document["image_id"] == sha256(config)
    assert [layer["digest"] for layer in document["layers"]] == summary["Layers"]
    assert document["repo_tags"] == [f"{registry.host}/dockscope/{image}:v1"]

    verified = invoke("verify", "--json", *access, ref)
    report = verified.json()
    failed = [f for f in report["findings"] if not f["ok"]]
    assert verified.code == 0 and not failed, failed
    assert registry.creds is None or registry.creds.split(":")[1] not in verified.output


def test_multiplatform_index_with_platform(
    registry_set: dict[str, Registry], layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    registry = registry_set["plain"]
    ref = registry.push(layouts["multiplatform"], "dockscope/multi:v1")
    listing = invoke("inspect", "--json", ref).json()
    platforms = sorted(image["platform"] for image in listing["images"])
    assert len(platforms) >= 2
    chosen = platforms[-1]
    os_name, arch, *variant = chosen.split("/")
    override = ["--override-os", os_name, "--override-arch", arch]
    if variant:
        override += ["--override-variant", variant[0]]
    raw, config, summary = skopeo_views(registry, ref, *override)
    document = invoke("inspect", "--json", "--platform", chosen, ref).json()
    index = json.loads(raw)  # --raw is the index itself; the platform's entry names the image
    [entry] = [
        m
        for m in index["manifests"]
        if "/".join(
            filter(
                None,
                [m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")],
            )
        )
        == chosen
    ]
    assert document["manifest_digest"] == entry["digest"]
    assert document["image_id"] == sha256(config)
    assert [layer["digest"] for layer in document["layers"]] == summary["Layers"]
    ok(invoke("verify", "--platform", chosen, ref))


def test_layer_commands_read_through_the_registry(
    registry_set: dict[str, Registry], layouts: dict[str, str]
) -> None:
    registry = registry_set["plain"]
    ref = registry.push(layouts["dive-gzip"], "dockscope/dive-gzip:v1")
    local = layouts["dive-gzip"].removeprefix("oci:")
    for command in (["ls", "--json"], ["efficiency", "--json"], ["layers", "--json"]):
        remote_out = ok(invoke(*command, ref)).replace(ref, "SOURCE")
        local_out = ok(invoke(*command, local)).replace(local, "SOURCE")
        remote_doc, local_doc = json.loads(remote_out), json.loads(local_out)
        for document in (remote_doc, local_doc):
            document.pop("format", None)
        assert remote_doc == local_doc, command


@pytest.mark.parametrize("registry", KINDS, indirect=True)
def test_blobs_come_once_then_from_the_cache(
    registry: Registry, layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    from inspect_tool.analyze.verify import verify
    from inspect_tool.sources import ImageSelection, open_candidates

    ref = registry.push(layouts["dive-gzip"], "dockscope/dive-gzip:v1")
    access = registry.access(pki, tmp_path / "certs")

    def blob_requests() -> list[str]:
        source, chosen = open_candidates(ref, ImageSelection(access=access))
        with source:
            report = verify(source, chosen)
            assert report.ok, report.failed
            client = source.tree.client  # type: ignore[attr-defined]
            return [
                (path, byte_range) for _, path, byte_range in client.requests if "/blobs/" in path
            ]

    first = blob_requests()
    whole = [path for path, byte_range in first if byte_range is None]
    assert len(whole) == len(set(whole)) == 2  # the config and the one layer, once each
    assert [r for _, r in first if r is not None] == ["bytes=0-511"]  # the layer's head
    assert blob_requests() == []


def test_docker_manifest_list_with_platform(
    registry_set: dict[str, Registry], layouts: dict[str, str]
) -> None:
    registry = registry_set["plain"]
    ref = registry.ref("dockscope/multi-docker:v1")
    run_skopeo(
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        layouts["multiplatform"],
        ref,
    )
    raw = run_skopeo("inspect", "--raw", "--tls-verify=false", ref)
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    listing = invoke("inspect", "--json", ref).json()
    assert {i["media_type"] for i in listing["images"]} == {
        "application/vnd.docker.distribution.manifest.v2+json"
    }
    wanted = index["manifests"][-1]
    platform = "/".join(
        filter(
            None,
            [
                wanted["platform"]["os"],
                wanted["platform"]["architecture"],
                wanted["platform"].get("variant"),
            ],
        )
    )
    document = invoke("inspect", "--json", "--platform", platform, ref).json()
    assert document["manifest_digest"] == wanted["digest"]
    ok(invoke("verify", "--platform", platform, ref))
