"""Session fixtures: real images written by the real peers, offline, once per session."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.interop.interop_peers import (
    MAKE_HINT,
    Artifact,
    PeerError,
    Peers,
    TruthLookup,
    build_all,
    missing_commands,
)

BUILD_BUDGET_SECONDS = 120


@pytest.fixture(scope="session")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """The peers, each pointed at one isolated, throw-away store."""
    missing = missing_commands()
    if missing:
        pytest.fail(
            f"interop tests need the Debian packages {', '.join(missing)}: {MAKE_HINT}",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail(
            "interop tests build images with `buildah mount` on a vfs store, which needs root "
            "(as `make test` in CI runs); run them as root",
            pytrace=False,
        )
    tool = Peers(tmp_path_factory.mktemp("peer-store"))
    try:
        yield tool
    finally:
        tool.cleanup()


@pytest.fixture(scope="session")
def artifacts(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """Every archive and layout the peers wrote, by name (see interop_peers.build_all)."""
    out = tmp_path_factory.mktemp("peer-images")
    started = time.monotonic()
    try:
        built = build_all(peers, out)
    except PeerError as exc:
        log = "\n".join(peers.log[-15:])
        pytest.fail(f"building the interop images failed:\n{exc}\nlast commands:\n{log}")
    elapsed = time.monotonic() - started
    assert elapsed < BUILD_BUDGET_SECONDS, f"building took {elapsed:.0f}s:\n" + "\n".join(peers.log)
    return built


@pytest.fixture(scope="session")
def truth_of(peers: Peers) -> TruthLookup:
    """Ground truth of one image from skopeo, cached per (artifact, peer reference)."""
    return TruthLookup(peers)
