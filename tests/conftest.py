from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import CORPUS, SAMPLES

BUSYBOX_BINARY = Path("/bin/busybox")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """diff's base-view cache goes to a scratch directory, never the user's ~/.cache."""
    os.environ["DOCKSCOPE_CACHE"] = str(tmp_path_factory.mktemp("dockscope-cache"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing at {CORPUS}")
    return CORPUS


@pytest.fixture
def corpus_copy(tmp_path: Path, corpus: Path):  # type: ignore[no-untyped-def]
    """Copy one corpus item into tmp_path so a test may change it."""

    def copy(name: str) -> Path:
        source = corpus / name
        target = tmp_path / name
        if source.is_dir():
            shutil.copytree(source, target)
            for path in target.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            target.chmod(0o755)
        else:
            shutil.copyfile(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runnable image of the host's static busybox, built as `make` builds
    sample_images/busybox.tar (``make_samples.py --busybox``), in a fresh folder."""
    if not BUSYBOX_BINARY.is_file():
        pytest.fail(f"{BUSYBOX_BINARY} is missing: apt-get install busybox-static (make debs-test)")
    out = tmp_path_factory.mktemp("busybox") / "busybox.tar"
    subprocess.run(
        [sys.executable, str(SAMPLES / "make_samples.py"), "--busybox", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out
