"""A file or a directory of an image, as it stands after layer N, written to disk by the
safe unpack code: ``dockscope unpack`` itself (every path resolved inside the
destination, symlinks never followed out of it, refusals audited), fed only the members at or
below the path (and the whiteouts of the directories above it).

This module is the explorer's one import of the unpack package (``layers/unpack/``)."""

from __future__ import annotations

from pathlib import Path

from inspect_tool.layers.union import clean_member_path
from inspect_tool.layers.unpack import UnpackOptions, UnpackResult, unpack
from inspect_tool.layers.whiteout import WHITEOUT_PREFIX
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source


def _wanted(path: str, target: str, ancestors: frozenset[str]) -> bool:
    """``path`` (cleaned, relative) is ``target``, below it, or a whiteout in a directory
    above it (which can remove what a lower layer put on the way)."""
    if not target or path == target or path.startswith(target + "/"):
        return True
    parent, _, name = path.rpartition("/")
    return name.startswith(WHITEOUT_PREFIX) and parent in ancestors


def extract_path(
    source: Source, image: Image, path: str, layer: int, destination: Path
) -> UnpackResult:
    """Write ``path`` (a file or a directory, with its parents) as the filesystem after
    ``layer`` holds it into ``destination`` (missing or empty). Owners are not kept, device
    nodes are not made, as an unprivileged ``unpack`` does."""
    target = (clean_member_path(path) or "").strip("/")
    parts = target.split("/") if target else []
    ancestors = frozenset("/".join(parts[:i]) for i in range(len(parts)))
    options = UnpackOptions(
        same_owner=False,
        devices=False,
        xattrs=False,
        layers=layer + 1,
        wanted=lambda name: _wanted(name, target, ancestors),
    )
    return unpack(source, image, destination, options=options)
