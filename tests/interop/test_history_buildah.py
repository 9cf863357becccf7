"""history --dockerfile on images that buildah itself built: `buildah bud` with and without
--layers on a local base, and `buildah from`/`run`/`commit`, each pushed as an OCI archive
and as a docker-archive."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.interop_peers import MAKE_HINT, Peers, missing_commands
from tests.support.cli import invoke

pytestmark = pytest.mark.interop

BASE = "localhost/ds-hist-base:1"
BASE_DOCKERFILE = 'FROM scratch\nCOPY stage/ /\nCMD ["/bin/busybox", "sh"]\n'
APP_DOCKERFILE = (
    f"FROM {BASE}\n"
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo hi > /x"]\n'
    "ENV A=b\n"
    'RUN ["/bin/busybox", "touch", "/y"]\n'
)
APP_STEPS = [
    f"FROM {BASE}",
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo hi > /x"]',
    "ENV A=b",
    'RUN ["/bin/busybox", "touch", "/y"]',
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """name → archive: the app squashed and layered, and a committed container, each as an
    OCI archive and a docker-archive."""
    missing = missing_commands()
    if missing:
        pytest.fail(f"interop tests need {', '.join(missing)}: {MAKE_HINT}", pytrace=False)
    peers = Peers(tmp_path_factory.mktemp("hist-store"))
    out = tmp_path_factory.mktemp("hist-images")
    context = out / "context"
    (context / "stage" / "bin").mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy2(Path(busybox).resolve(), context / "stage" / "bin" / "busybox")
    (context / "Dockerfile.base").write_text(BASE_DOCKERFILE)
    (context / "Dockerfile.app").write_text(APP_DOCKERFILE)
    buildah = peers.buildah
    try:
        bud = ("bud", "--pull=never", "--isolation", "chroot")
        buildah(*bud, "-f", context / "Dockerfile.base", "-t", BASE, context)
        buildah(*bud, "-f", context / "Dockerfile.app", "-t", "localhost/ds-hist:squashed", context)
        buildah(
            *bud,
            "--layers",
            "-f",
            context / "Dockerfile.app",
            "-t",
            "localhost/ds-hist:layers",
            context,
        )
        ctr = buildah("from", "--pull=never", BASE)
        buildah("run", "--isolation", "chroot", ctr, "--", "/bin/busybox", "touch", "/z")
        buildah("commit", "--quiet", "--rm", ctr, "localhost/ds-hist:commit")
        archives = {}
        for tag in ("squashed", "layers", "commit"):
            oci = out / f"{tag}-oci.tar"
            docker = out / f"{tag}-docker.tar"
            buildah("push", f"localhost/ds-hist:{tag}", f"oci-archive:{oci}:{tag}")
            buildah("push", f"localhost/ds-hist:{tag}", f"docker-archive:{docker}:ds-hist:{tag}")
            archives[f"{tag}-oci"] = oci
            archives[f"{tag}-docker"] = docker
        yield archives
    finally:
        peers.cleanup()


def history_doc(path: Path) -> dict[str, object]:
    result = invoke("history", "--json", str(path))
    assert result.code == 0, result.output
    doc: dict[str, object] = json.loads(result.out)
    return doc


def base_digest(doc: dict[str, object]) -> str:
    base = doc["base"]
    assert isinstance(base, dict)
    return str(base["name"]).partition("@")[2] or "none"


def steps(doc: dict[str, object]) -> list[str]:
    text = doc["dockerfile"]
    assert isinstance(text, str)
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("layout", ["oci", "docker"])
@pytest.mark.parametrize("tag", ["squashed", "layers"])
def test_buildah_bud_on_a_local_base(built: dict[str, Path], tag: str, layout: str) -> None:
    # squashed: the FROM comment is on the last entry, the build's steps are the empty
    # entries before it; --layers: every step carries FROM <parent>
    doc = history_doc(built[f"{tag}-{layout}"])
    written = steps(doc)
    # the OCI archive also carries buildah's base.name/base.digest annotations
    assert written[0] in (f"FROM {BASE}", f"FROM {BASE}@{base_digest(doc)}")
    assert written[1:] == APP_STEPS[1:]
    base = doc["base"]
    assert isinstance(base, dict)
    assert base["recorded"] is True
    assert base["history_entries"] == 2  # the base's COPY and CMD


@pytest.mark.parametrize("layout", ["oci", "docker"])
def test_buildah_commit_marker(built: dict[str, Path], layout: str) -> None:
    doc = history_doc(built[f"commit-{layout}"])
    entries = doc["entries"]
    assert isinstance(entries, list)
    last = entries[-1]
    assert last["created_by"] == "/bin/sh"  # what buildah commit records
    assert last["instruction"] is None and last["builder"] == "buildah"
    assert last["notes"][0].startswith("buildah commit")
    assert steps(doc) in ([f"FROM {BASE}"], [f"FROM {BASE}@{base_digest(doc)}"])
    text = doc["dockerfile"]
    assert isinstance(text, str)
    assert "RUN /bin/sh" not in text and "# buildah commit" in text
