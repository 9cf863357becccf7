"""skopeo's ``dir:`` transport: a directory holding ``version`` ("Directory Transport Version:
1.1"), ``manifest.json`` (the manifest's exact bytes, or an index with ``--all``, its
instances then in ``<hex>.manifest.json``), every other blob in a file named by its sha256
hex digest (``<algorithm>-<hex>`` for another algorithm) and ``signature-N``.

The directory is read through a view that lays it out as an OCI layout (an ``index.json``
listing ``manifest.json``'s digest, ``blobs/<algorithm>/<hex>`` mapped to the files), so the
OCI reader walks it and verify hashes each file against the digest its name claims.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO

from inspect_tool.errors import InvalidImageError
from inspect_tool.model.digest import Digest
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import ImageFormat
from inspect_tool.model.jsondoc import parse_json
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.sources.build import METADATA_LIMIT
from inspect_tool.sources.oci_layout import add_candidate, walk_index
from inspect_tool.sources.source import Source
from inspect_tool.sources.tree import DirTree, Entry, OpenReads, clean_path, read_limited

VERSION_FILE = "version"
MANIFEST_FILE = "manifest.json"
VERSIONS = ("Directory Transport Version: 1.0\n", "Directory Transport Version: 1.1\n")
_INDEX = "index.json"


def is_dir_transport(tree: DirTree) -> bool:
    return tree.entry(VERSION_FILE) is not None and tree.entry(MANIFEST_FILE) is not None


def blob_file(digest: Digest) -> str:
    """The file a blob has in a dir: directory (skopeo's ``layerPath``)."""
    if digest.algorithm == "sha256":
        return digest.hex
    return f"{digest.algorithm}-{digest.hex}"


class DirTransportTree(OpenReads):
    """A dir: directory seen as an OCI layout; reads go to the directory's own files."""

    compression = None
    parallel_reads = True
    forked_reads = True

    def __init__(self, tree: DirTree, manifest: bytes) -> None:
        self._tree = tree
        self.label = tree.label
        self.root = tree.root
        self.manifest_digest = Digest.of_bytes(manifest)
        try:
            document = json.loads(manifest)
        except ValueError:
            document = {}
        media_type = document.get("mediaType") if isinstance(document, dict) else None
        if not isinstance(media_type, str):
            is_index = isinstance(document, dict) and "manifests" in document
            media_type = str(MediaType.OCI_INDEX if is_index else MediaType.OCI_MANIFEST)
        self._index = json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": media_type,
                        "digest": str(self.manifest_digest),
                        "size": len(manifest),
                    }
                ],
            }
        ).encode()

    def _real(self, path: str) -> str | None:
        """The directory's file for a layout path (None: the synthesized index.json)."""
        name = clean_path(path)
        if name == _INDEX:
            return None
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs":
            try:
                digest = Digest.parse(f"{parts[1]}:{parts[2]}")
            except InvalidImageError:
                return name
            if digest == self.manifest_digest:
                return MANIFEST_FILE
            instance = f"{digest.hex}.manifest.json"
            if self._tree.entry(instance) is not None:
                return instance
            return blob_file(digest)
        return name

    def entry(self, path: str) -> Entry | None:
        real = self._real(path)
        if real is None:
            return Entry(_INDEX, _INDEX, len(self._index), 0)
        return self._tree.entry(real)

    def open(self, path: str) -> BinaryIO:
        real = self._real(path)
        if real is None:
            return io.BytesIO(self._index)
        return self._tree.open(real)

    def names(self) -> list[str]:
        return self._tree.names()

    def close(self) -> None:
        self._tree.close()


def read_dir_transport(path: Path, tree: DirTree) -> Source:
    """A dir: directory as a Source (format ``dir``)."""
    label = tree.label
    if tree.entry(MANIFEST_FILE) is None:
        raise InvalidImageError(
            "holds no manifest.json: not a skopeo dir: directory", subject=label
        )
    manifest = read_limited(tree, MANIFEST_FILE, METADATA_LIMIT)
    parse_json(manifest, subject=f"{label}:{MANIFEST_FILE}")
    view = DirTransportTree(tree, manifest)
    source = Source(path, view, ImageFormat.DIR)
    source.findings.append(_version_finding(tree))
    for descriptor, ref, trail in walk_index(source):
        add_candidate(source, descriptor, ref, trail)
    if not source.candidates:
        source.notes.append("manifest.json is an index listing no image manifests")
    return source


def _version_finding(tree: DirTree) -> Finding:
    subject = f"{tree.label}:{VERSION_FILE}"
    expected = VERSIONS[-1].strip()
    if tree.entry(VERSION_FILE) is None:
        return Finding("dir-version", subject, expected, "missing", False)
    raw = tree.head(VERSION_FILE, 256)
    text = raw.decode("utf-8", "replace")
    return Finding(
        "dir-version",
        subject,
        expected,
        text.strip() or "empty",
        text in VERSIONS,
        "skopeo's dir: transport version file",
    )
