"""`copy` and `pull` with a registry on either side, against the real registries: every
digest kept, the result read by skopeo, and `pull` then `verify` equal to the pushed layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.registry.servers import Pki, Registry, run_skopeo
from tests.support.cli import invoke, ok

pytestmark = pytest.mark.interop


def _index_digests(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    return [m["digest"] for m in index["manifests"]]


@pytest.mark.parametrize("registry", ["plain", "token"], indirect=True)
def test_copy_to_the_registry_then_pull_back(
    registry: Registry, layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    args = registry.access_args(pki, tmp_path / "certs")
    layout = Path(layouts["dive-zstd"].removeprefix("oci:"))
    [source_digest] = _index_digests(layout)
    destination = registry.ref("copied/dive-zstd:v1")

    pushed = json.loads(ok(invoke("copy", "--json", *args, f"oci:{layout}", destination)))
    assert pushed["manifest_digest"] == source_digest
    assert pushed["manifest_preserved"] is True
    assert pushed["transport"] == "docker"
    raw = run_skopeo("inspect", "--raw", *registry.skopeo_read_args(), destination)
    assert raw.encode() == (layout / "blobs/sha256" / source_digest.split(":")[1]).read_bytes()

    pulled = tmp_path / "pulled"
    result = json.loads(
        ok(invoke("pull", "--json", *args, destination.removeprefix("docker://"), str(pulled)))
    )
    assert result["manifest_digest"] == source_digest
    assert _index_digests(pulled) == [source_digest]
    for blob in (layout / "blobs/sha256").iterdir():
        copy = pulled / "blobs/sha256" / blob.name
        if copy.exists():
            assert copy.read_bytes() == blob.read_bytes()
    report = json.loads(ok(invoke("verify", "--json", str(pulled))))
    assert report["ok"] is True


def test_pull_of_a_missing_tag_leaves_nothing(
    registry_set: dict[str, Registry], tmp_path: Path
) -> None:
    registry = registry_set["plain"]
    reference = registry.ref("nothing/here:v1")
    code, _, err = invoke("pull", reference.removeprefix("docker://"), str(tmp_path / "out"))
    assert code == 3
    assert err.startswith(f"dockscope: {reference}:"), err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []
