"""One layer extracted into an empty directory in overlayfs's lowerdir form: the safe
extraction of inspect_tool in its overlay on-disk format (``OnDiskFormat.OVERLAY``: whiteouts
kept as overlay whiteouts instead of applied)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.unpack.applier import LayerApplier
from inspect_tool.layers.unpack.audit import AuditEntry, ExtractStats
from inspect_tool.layers.unpack.disk import DiskBackend
from inspect_tool.layers.whiteout import OPAQUE_VALUE, USER_OVERLAY, OnDiskFormat
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

# Device nodes an image ships are recorded, never made: a node in the layer store would be a
# host device file (a block node for the host's disk, readable by anyone the store's modes
# allow), and a container gets docker's default /dev only.
USER_OPAQUE_XATTR = USER_OVERLAY + "opaque"
DEVICE_HINT = "in the layer store (a container gets docker's default /dev only)"


class UserxattrBackend(DiskBackend):
    """Rootless: overlayfs mounted with ``userxattr`` in a user namespace reads
    ``user.overlay.opaque`` (``trusted.*`` needs the host's CAP_SYS_ADMIN)."""

    def mark_opaque(self, directory: int) -> None:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        try:
            os.setxattr(fd, USER_OPAQUE_XATTR, OPAQUE_VALUE)
        finally:
            os.close(fd)


def extract_layer(
    source: Source,
    image: Image,
    index: int,
    destination: Path,
    progress: Callable[[int], None] | None,
    *,
    userxattr: bool = False,
) -> tuple[ExtractStats, list[AuditEntry]]:
    destination.mkdir(mode=0o755)
    root_fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stats = ExtractStats()
    audit: list[AuditEntry] = []
    kind = UserxattrBackend if userxattr else DiskBackend
    backend = kind(root_fd, audit, same_owner=True, devices=False, xattrs=True)
    applier = LayerApplier(
        backend, stats, audit, on_disk=OnDiskFormat.OVERLAY, device_hint=DEVICE_HINT
    )
    try:
        layer = image.layers[index]
        applier.start_layer(index)
        with open_layer(source, layer, progress=progress) as opened:
            for member in opened.reader:
                applier.apply(member, opened.reader)
            opened.finish(layer, label=source.label)
        applier.close()
        applier.finishing()
        backend.finish()
    finally:
        applier.close()
        os.close(root_fd)
    return stats, audit
