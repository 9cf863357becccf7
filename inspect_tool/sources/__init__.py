"""Readers: one per on-disk format, all producing a Source of the same model.

Importing the package (or ``selection`` and ``location`` in it) loads no reader: the trees,
``tarfile`` and the format readers are imported when something is opened, and ``Source`` and
``Candidate`` when first asked for, so that a warm ``dockscope run`` of an archive it has run
before (runtime_lab/storage/archives.py) pays for none of them."""

from __future__ import annotations

from pathlib import Path

from inspect_tool.errors import DockscopeError, InvalidImageError
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import ImageFormat
from inspect_tool.sources.location import Location, Transport, parse_location

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from inspect_tool.registry.access import RegistryAccess
    from inspect_tool.sources.source import Candidate, Source
    from inspect_tool.sources.tree import DirTree, Tree

__all__ = [
    "Candidate",
    "ImageSelection",
    "Location",
    "Source",
    "open_candidates",
    "open_image",
    "open_location",
    "open_source",
    "parse_location",
]


def open_source(path: str | Path, access: RegistryAccess | None = None) -> Source:
    """Open an image where it lives: a path (its format detected from content) or a location
    in skopeo's syntax (``oci:DIR[:REF]``, ``oci-archive:``, ``docker-archive:``, ``dir:``,
    ``containers-storage:``, ``docker://``; see sources/location.py). ``access`` carries a
    registry's credentials and TLS settings."""
    return open_location(parse_location(path), access)


def open_location(location: Location, access: RegistryAccess | None = None) -> Source:
    if location.transport is Transport.DOCKER:
        return _open_registry(location, access)
    if location.transport is Transport.CONTAINERS_STORAGE:
        # containers/storage is read by storage/ (evidence, tar-split), above this package
        from inspect_tool.storage.image_source import open_storage_source

        return open_storage_source(location)
    from inspect_tool.sources.tree import open_tree

    assert location.path is not None
    path = location.path
    try:
        tree = open_tree(path)
    except DockscopeError as exc:
        raise _named(exc, location) from None
    try:
        source = _read(path, tree, location.transport)
    except DockscopeError as exc:
        tree.close()
        raise _named(exc, location) from None
    if not location.is_path:
        source.location = location.text
    source.findings.insert(0, _members_finding(source.label, getattr(tree, "anomalies", [])))
    return source


def _open_registry(location: Location, access: RegistryAccess | None) -> Source:
    """docker:// is the registry package's: imported here only, so httpx loads for a
    registry reference and never for a local file."""
    from inspect_tool.registry import open_registry_source

    return open_registry_source(location.text, access)


def _named(exc: DockscopeError, location: Location) -> DockscopeError:
    """An error about the file a location names is about the location as written (a plain
    path too: pathlib folds ``./a:b`` into ``a:b``)."""
    if exc.subject == str(location.path):
        exc.subject = location.text
    return exc


# What each transport must find, and how it is read.
_EXPECTED = {
    Transport.OCI: (True, "an OCI layout directory (index.json)"),
    Transport.OCI_ARCHIVE: (False, "an OCI layout tar (index.json)"),
    Transport.DOCKER_ARCHIVE: (False, "a docker save tar (manifest.json)"),
    Transport.DIR: (True, "a skopeo dir: directory (version, manifest.json)"),
}


def _read(path: Path, tree: Tree, transport: Transport = Transport.PATH) -> Source:
    from inspect_tool.sources.docker_archive import read_docker_archive
    from inspect_tool.sources.oci_layout import read_oci_layout
    from inspect_tool.sources.tree import DirTree

    is_dir = isinstance(tree, DirTree)
    has_manifest = tree.entry("manifest.json") is not None
    has_index = tree.entry("index.json") is not None
    if transport is not Transport.PATH:
        wants_dir, what = _EXPECTED[transport]
        found = {
            Transport.OCI: has_index,
            Transport.OCI_ARCHIVE: has_index,
            Transport.DOCKER_ARCHIVE: has_manifest,
            Transport.DIR: isinstance(tree, DirTree) and _is_dir_transport(tree),
        }[transport]
        if wants_dir != is_dir:
            kind = "a directory" if is_dir else "a file"
            raise InvalidImageError(f"is {kind}, not {what}", subject=str(path))
        if not found:
            raise InvalidImageError(f"is not {what}", subject=str(path))
        if transport is Transport.DIR:
            assert isinstance(tree, DirTree)
            return _read_dir_transport(path, tree)
        if transport is Transport.DOCKER_ARCHIVE:
            fmt = ImageFormat.DOCKER_ARCHIVE_OCI if has_index else ImageFormat.DOCKER_ARCHIVE
            return read_docker_archive(path, tree, fmt)
        fmt = ImageFormat.OCI_LAYOUT if is_dir else ImageFormat.OCI_ARCHIVE
        return read_oci_layout(path, tree, fmt)
    if isinstance(tree, DirTree) and _is_dir_transport(tree):
        return _read_dir_transport(path, tree)
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


def _is_dir_transport(tree: DirTree) -> bool:
    """skopeo's dir: is read by dir_transport, imported for a directory only."""
    from inspect_tool.sources.dir_transport import is_dir_transport

    return is_dir_transport(tree)


def _read_dir_transport(path: Path, tree: DirTree) -> Source:
    from inspect_tool.sources.dir_transport import read_dir_transport

    return read_dir_transport(path, tree)


def _members_finding(label: str, anomalies: list[str]) -> Finding:
    expected = "every member inside the archive, each stored once"
    if not anomalies:
        return Finding("archive-members", label, expected, expected, True)
    more = f" (+{len(anomalies) - 5} more)" if len(anomalies) > 5 else ""
    return Finding("archive-members", label, expected, "; ".join(anomalies[:5]) + more, False)


def __getattr__(name: str) -> Any:
    """``Source`` and ``Candidate``, imported with the readers' model when first asked for."""
    if name in ("Source", "Candidate"):
        from inspect_tool.sources import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# after open_source, which they call
from inspect_tool.sources.selection import (  # noqa: E402
    ImageSelection,
    open_candidates,
    open_image,
)
