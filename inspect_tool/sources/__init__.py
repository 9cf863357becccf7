"""Readers: one per on-disk format, all producing a Source of the same model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inspect_tool.errors import DockscopeError, InvalidImageError
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import ImageFormat
from inspect_tool.sources.source import Candidate, Source
from inspect_tool.sources.tree import DirTree, Tree, open_tree

if TYPE_CHECKING:
    from inspect_tool.registry.access import RegistryAccess

__all__ = [
    "Candidate",
    "ImageSelection",
    "Source",
    "open_candidates",
    "open_image",
    "open_source",
]


def open_source(path: str | Path, access: RegistryAccess | None = None) -> Source:
    """Open any image archive or layout dockscope reads, detecting its format from content;
    a ``docker://`` reference is read from its registry (``access``: how to reach it)."""
    if str(path).startswith("docker:/"):  # a Path folds docker:// to docker:/
        from inspect_tool.registry import open_registry_source

        return open_registry_source(str(path), access)
    path = Path(path)
    tree = open_tree(path)
    try:
        source = _read(path, tree)
    except DockscopeError:
        tree.close()
        raise
    source.findings.insert(0, _members_finding(source.label, getattr(tree, "anomalies", [])))
    return source


def _read(path: Path, tree: Tree) -> Source:
    from inspect_tool.sources.docker_archive import read_docker_archive
    from inspect_tool.sources.oci_layout import read_oci_layout

    is_dir = isinstance(tree, DirTree)
    has_manifest = tree.entry("manifest.json") is not None
    has_index = tree.entry("index.json") is not None
    if has_manifest:
        if is_dir:
            fmt = ImageFormat.DOCKER_DIR
        elif has_index:
            fmt = ImageFormat.DOCKER_ARCHIVE_OCI
        else:
            fmt = ImageFormat.DOCKER_ARCHIVE
        return read_docker_archive(path, tree, fmt)
    if has_index:
        fmt = ImageFormat.OCI_LAYOUT if is_dir else ImageFormat.OCI_ARCHIVE
        return read_oci_layout(path, tree, fmt)
    what = "directory" if is_dir else "archive"
    raise InvalidImageError(
        f"{what} holds neither manifest.json (docker save) nor index.json (OCI layout): "
        "not an image",
        subject=str(path),
    )


def _members_finding(label: str, anomalies: list[str]) -> Finding:
    expected = "every member inside the archive, each stored once"
    if not anomalies:
        return Finding("archive-members", label, expected, expected, True)
    more = f" (+{len(anomalies) - 5} more)" if len(anomalies) > 5 else ""
    return Finding("archive-members", label, expected, "; ".join(anomalies[:5]) + more, False)


# after open_source, which they call
from inspect_tool.sources.selection import (  # noqa: E402
    ImageSelection,
    open_candidates,
    open_image,
)
