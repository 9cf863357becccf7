"""Which engine wrote ROOT, and with which storage drivers."""

from __future__ import annotations

import os
from pathlib import Path

from inspect_tool.errors import DockscopeError
from inspect_tool.storage import containers, docker
from inspect_tool.storage.evidence import Evidence, StorageError
from inspect_tool.storage.model import EngineStorage

# where engine storage usually sits inside a copied host file system
_CANDIDATES = (
    "docker",
    "var/lib/docker",
    "storage",
    "containers/storage",
    "var/lib/containers/storage",
)


def detect(evidence: Evidence) -> tuple[str, list[str]] | None:
    """("docker" | "containers-storage", drivers), or None when ROOT is neither."""
    try:
        drivers = docker.detect(evidence)
        if drivers is not None:
            return "docker", drivers
        drivers = containers.detect(evidence)
        if drivers is not None:
            return "containers-storage", drivers
    except (DockscopeError, OSError):
        return None
    return None


def is_engine_root(path: Path) -> bool:
    """True when ``path`` itself is a Docker root (``/var/lib/docker``) or a containers/storage
    graph root (``/var/lib/containers/storage``). Only reads; never raises."""
    try:
        with Evidence(path) as evidence:
            return detect(evidence) is not None
    except (DockscopeError, OSError):
        return False


# names that only engine storage has at its top: Docker's, then containers/storage's
_MARKERS = (
    "image",
    "overlay2",
    "overlay-containers",
    "overlay-images",
    "overlay-layers",
    "vfs-containers",
    "vfs-images",
)


def unreadable_engine_root(path: Path) -> Path | None:
    """The directory that keeps ``path`` from being read when it looks like engine storage
    (an engine's own names at its top) that this user may not read, as a user other than
    root meets ``/var/lib/docker``; None otherwise. Only reads; never raises."""
    try:
        if not os.access(path, os.R_OK | os.X_OK):
            markers = [name for name in _MARKERS if os.path.exists(path / name)]
            return path if markers or path.name in ("docker", "storage") else None
        for name in _MARKERS:
            marker = path / name
            if marker.is_dir() and not os.access(marker, os.R_OK | os.X_OK):
                return marker
    except OSError:
        return None
    return None


def open_storage(root: Path) -> EngineStorage:
    """The engine storage at ``root`` (close ``.evidence`` when done)."""
    evidence = Evidence(root)
    try:
        found = detect(evidence)
        if found is None:
            hint = next(
                (c for c in _CANDIDATES if evidence.is_dir(c) and is_engine_root(root / c)),
                None,
            )
            message = "neither a Docker root nor a containers/storage graph root"
            if hint:
                message += f" (engine storage lies in {root / hint})"
            raise StorageError(message, subject=str(root))
        engine, drivers = found
        if engine == "docker":
            return docker.DockerStorage(evidence, drivers)
        return containers.ContainersStorage(evidence, drivers)
    except BaseException:
        evidence.close()
        raise
