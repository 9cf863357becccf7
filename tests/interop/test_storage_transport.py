"""``containers-storage:`` on stores Podman wrote with the overlay and the vfs driver (the
store of test_storage_podman.py, built again for this module): the image read offline as
Podman reports it, verified, and copied out; the store is only ever read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop.test_storage_podman import APP, BASE, Store, store  # noqa: F401 (fixture)
from tests.support.storage import read_evidence

pytestmark = pytest.mark.interop


def _where(store: Store, name: str) -> str:  # noqa: F811 (the fixture's name)
    return f"containers-storage:[{store.driver}@{store.graph}]{name}"


@pytest.mark.parametrize("name", [BASE, APP])
def test_an_image_of_the_store_reads_as_podman_reports_it(
    store: Store,  # noqa: F811
    name: str,
) -> None:
    result = read_evidence(store.graph, "inspect", "--json", _where(store, name))
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["image_id"] == store.image_ids[name]
    assert [layer["diff_id"] for layer in document["layers"]] == store.image_layers[name]
    assert [layer["digest"] for layer in document["layers"]] == store.image_layers[name]
    verified = read_evidence(store.graph, "verify", _where(store, name))
    assert verified.code == 0, verified.out[-2000:]


def test_copy_out_of_the_store(store: Store, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "layout"
    result = read_evidence(store.graph, "copy", "--json", _where(store, APP), f"oci:{out}:app")
    assert result.code == 0, result.err
    assert json.loads(result.out)["verified"]["failed"] == []
    skopeo = json.loads(store.peers.skopeo("inspect", f"oci:{out}:app"))
    assert skopeo["Layers"] == store.image_layers[APP]
    config = json.loads(store.peers.skopeo("inspect", "--config", "--raw", f"oci:{out}:app"))
    assert config["rootfs"]["diff_ids"] == store.image_layers[APP]
