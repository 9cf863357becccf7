from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.servers import Pki, Registry, registries
from tests.support.paths import CORPUS, SAMPLES
from tests.support.trees import extract_trusted


@pytest.fixture(autouse=True)
def _fresh_blob_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own blob cache: a blob another test fetched (from another registry, in
    another auth mode) must not spare this one its requests."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("DOCKSCOPE_CACHE", str(directory))
    return directory


@pytest.fixture(scope="session")
def registry_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Registry]]:
    with registries(tmp_path_factory.mktemp("registries")) as started:
        yield started


@pytest.fixture
def registry(request: pytest.FixtureRequest, registry_set: dict[str, Registry]) -> Registry:
    """The running registry of the kind a test is parametrized with (``indirect=True``)."""
    return registry_set[request.param]


@pytest.fixture(scope="session")
def pki(registry_set: dict[str, Registry]) -> Pki:
    return registry_set["plain"].pki  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="session")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """skopeo sources (oci:DIR[:REF]) of corpus and sample images, copied out of the read-only
    trees first."""
    base = tmp_path_factory.mktemp("layouts")
    found: dict[str, str] = {}
    archives = {
        "dive-gzip": (CORPUS / "oci-archive-gzip-dive.tar", ""),
        "dive-zstd": (CORPUS / "oci-archive-zstd-dive.tar", ""),
        "dive-plain": (CORPUS / "oci-archive-uncompressed-dive.tar", ""),
        "sample-zstd": (SAMPLES / "oci-archive-zstd.tar", ":zstd"),
    }
    for name, (archive, ref) in archives.items():
        target = base / name
        target.mkdir()
        with tarfile.open(archive) as tar:
            extract_trusted(tar, target)
        found[name] = f"oci:{target}{ref}"
    multi = base / "multiplatform"
    shutil.copytree(SAMPLES / "oci-multiplatform", multi)
    found["multiplatform"] = f"oci:{multi}:multi"
    return found
