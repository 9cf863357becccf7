"""Which engine wrote ROOT, and with which storage drivers."""

from __future__ import annotations

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
