"""``dockscope unpack`` against ``umoci unpack`` on real images: the same paths, types, modes,
owners, symlink targets, hard-link groups and content (sha256), and ``export`` holds that tree.

The images are the ones the peers wrote (buildah, skopeo, umoci; see interop_peers.py) plus
the shared corpus's docker-save images (dive's: 14 layers of copies, moves, chmods and
``rm -rf``; go-containerregistry's whiteout image), copied by skopeo into an OCI layout.

umoci 0.4.7 quirks, and how they are handled here:
- it refuses anything but OCI media types and compressions it knows (no zstd): only OCI
  layouts with gzip or uncompressed layers are compared;
- it writes ``config.json``, ``umoci.json`` and an mtree file beside ``rootfs/``: only
  ``rootfs/`` is compared;
- directories it creates for parents no layer lists get the time of unpacking: directory
  mtimes are not compared (files' and symlinks' are);
- its own ``insert`` leaves a layer without its final padding (umoci#436), which dockscope
  reads as truncated: that layout (``umoci-layout``) is not compared.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from inspect_tool.layers.export import export
from inspect_tool.layers.unpack import unpack
from inspect_tool.sources import open_source
from tests.interop.interop_peers import Artifact, Peers
from tests.support.paths import CORPUS
from tests.support.trees import dest_tree, tar_tree

pytestmark = pytest.mark.interop

# (artifact, ref name) pairs umoci 0.4.7 can unpack
PEER_IMAGES = [
    ("buildah-oci-layout", "v2"),
    ("skopeo-oci-uncompressed", "plain"),
    ("umoci-repack-layout", "latest"),
]
# docker-save images of the corpus, with a lower bound on the entries their merged tree holds
CORPUS_IMAGES = {"docker-save-legacy-dive.tar": 100, "docker-save-whiteouts-ggcr.tar": 0}


def umoci_unpack(layout: Path, ref: str, bundle: Path) -> Path:
    done = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{ref}", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return bundle / "rootfs"


def owners_and_times(root: Path) -> dict[str, tuple[int, int, int | None]]:
    """uid, gid and (for non-directories) mtime of every entry below ``root``."""
    out: dict[str, tuple[int, int, int | None]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = os.lstat(path)
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            out[str(path.relative_to(root))] = (st.st_uid, st.st_gid, mtime)
    return out


def compare(layout: Path, ref: str, tmp_path: Path, select: list[str]) -> int:
    theirs = umoci_unpack(layout, ref, tmp_path / "bundle")
    ours = tmp_path / "rootfs"
    with open_source(layout) as source:
        chosen = source.select(ref=ref) if "--ref" in select else source.candidates
        assert len(chosen) == 1
        image = chosen[0].image()
        result = unpack(source, image, ours)
        flat = io.BytesIO()
        exported = export(source, image, flat)
    assert result.audit == [] and exported.audit == []
    expected = dest_tree(theirs)
    assert dest_tree(ours) == expected
    assert owners_and_times(ours) == owners_and_times(theirs)
    assert tar_tree(flat.getvalue()) == expected
    return len(expected)


@pytest.mark.parametrize(("name", "ref"), PEER_IMAGES, ids=[n for n, _ in PEER_IMAGES])
def test_unpack_matches_umoci(
    artifacts: dict[str, Artifact], tmp_path: Path, name: str, ref: str
) -> None:
    if os.geteuid() != 0:
        pytest.fail("comparing owners with umoci needs root (as `make test` in CI runs)")
    artifact = artifacts[name]
    assert compare(artifact.path, ref, tmp_path, ["--ref", ref]) > 5


@pytest.mark.parametrize("name", CORPUS_IMAGES)
def test_unpack_matches_umoci_on_corpus_images(peers: Peers, tmp_path: Path, name: str) -> None:
    """The corpus's docker-save images, copied by skopeo into an OCI layout umoci reads."""
    if os.geteuid() != 0:
        pytest.fail("comparing owners with umoci needs root (as `make test` in CI runs)")
    layout = tmp_path / "layout"
    peers.skopeo("copy", "--quiet", f"docker-archive:{CORPUS / name}", f"oci:{layout}:corpus")
    assert compare(layout, "corpus", tmp_path, ["--ref", "corpus"]) > CORPUS_IMAGES[name]
