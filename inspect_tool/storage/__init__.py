"""Offline forensics of engine storage: a copy of ``/var/lib/docker`` or
``/var/lib/containers/storage`` read without an engine and without changing a byte.

Public entry points (each opens ROOT, works, closes it):

- ``is_engine_root(path)``: whether ``path`` is a Docker root or a containers/storage root;
- ``open_storage(root)``: the engine's images, containers and layers (``EngineStorage``);
- ``container_diff``, ``container_export``, ``container_inspect``, ``container_logs``;
- ``save_image``: an image as an OCI layout, every layer checked against its diff_id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_tool.storage.detect import is_engine_root, open_storage
from inspect_tool.storage.diff import ContainerDiff, DiffEntry, container_diff
from inspect_tool.storage.evidence import StorageError
from inspect_tool.storage.export import ContainerExport, container_export
from inspect_tool.storage.logs import LogEntry, container_logs
from inspect_tool.storage.model import ContainerRecord, EngineStorage, ImageRecord
from inspect_tool.storage.save import LayerMismatchError, SaveResult, save_image

__all__ = [
    "ContainerDiff",
    "ContainerExport",
    "ContainerRecord",
    "DiffEntry",
    "EngineStorage",
    "ImageRecord",
    "LayerMismatchError",
    "LogEntry",
    "SaveResult",
    "StorageError",
    "container_diff",
    "container_export",
    "container_inspect",
    "container_logs",
    "is_engine_root",
    "open_storage",
    "save_image",
]


def container_inspect(root: Path, ident: str) -> tuple[ContainerRecord, dict[str, Any]]:
    """Container ``ident``'s record and the engine's files about it, decoded (JSON files
    parsed, small text files as text), keyed by their path relative to ``root``."""
    storage = open_storage(root)
    try:
        container = storage.resolve_container(ident)
        return container, storage.inspect(container)
    finally:
        storage.evidence.close()
