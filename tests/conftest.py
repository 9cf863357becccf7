from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import CORPUS


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
