"""``dockscope packages`` on an image buildah built: a dpkg root added from scratch, then dpkg
upgrading and removing packages inside buildah's own mount of the next layer; pushed as an
OCI archive with gzip layers. Each layer is compared with dpkg-query on the mount."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.interop.interop_peers import Peers
from tests.support.cli import invoke
from tests.support.rootfs import build_deb, dpkg

pytestmark = pytest.mark.interop


def dpkg_query(root: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f=${Package} ${Version}\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_buildah_layers_written_by_dpkg(peers: Peers, tmp_path: Path) -> None:
    buildah = peers.buildah
    debs = tmp_path / "debs"
    debs.mkdir()
    alpha1 = build_deb(debs, "alpha", "1.0-1", {"/usr/bin/alpha": b"1"})
    alpha2 = build_deb(debs, "alpha", "1.0-2", {"/usr/bin/alpha": b"2"})
    beta = build_deb(debs, "beta", "3:0.9", {"/usr/share/beta/b": b"b"})
    stage = tmp_path / "stage"
    dpkg(stage, "-i", str(alpha1), str(beta))
    seen = [dpkg_query(stage)]

    ctr = buildah("from", "--pull=never", "--name", "ds-packages", "scratch")
    buildah("copy", ctr, f"{stage}/", "/")
    buildah("commit", "--quiet", "--rm", "--format", "oci", ctr, "ds-packages:1")
    ctr = buildah("from", "--pull=never", "--name", "ds-packages-2", "ds-packages:1")
    mount = Path(buildah("mount", ctr))
    dpkg(mount, "-i", str(alpha2))
    dpkg(mount, "-r", "beta")
    seen.append(dpkg_query(mount))
    buildah("umount", ctr)
    buildah("commit", "--quiet", "--rm", "--format", "oci", ctr, "ds-packages:2")
    archive = tmp_path / "packages.tar"
    buildah("push", "--quiet", "ds-packages:2", f"oci-archive:{archive}:v2")

    for layer, expected in enumerate(seen):
        result = invoke("packages", "--json", "--at", str(layer), archive)
        assert result.code == 0, result.err
        found = {p["name"]: p["version"] for p in result.json()["packages"]}
        assert found == expected, layer
    document = invoke("packages", "--json", archive).json()
    (alpha,) = document["packages"]
    assert [(e["layer"], e["action"]) for e in alpha["events"]] == [
        (0, "installed"),
        (1, "upgraded"),
    ]
    (removed,) = document["removed"]
    assert removed["name"] == "beta" and removed["version"] == "3:0.9"
