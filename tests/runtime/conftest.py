"""The runtime tests' state root: one per module unless the module asks for one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.runtime import checked_root


@pytest.fixture(scope="module")
def root(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The module's state root (checked_root): nothing of it may outlive the module, and what a
    failed test left is removed. A module with a ``root`` fixture of its own gets that one."""
    area = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    yield from checked_root(tmp_path_factory.mktemp(area) / "state")
