"""A file or a directory of an image, as it stands after layer N, written to disk by the
safe unpack code: the same applier ``dockscope unpack`` uses (every path resolved inside the
destination, symlinks never followed out of it, refusals audited), fed only the members at or
below the path (and the whiteouts of the directories above it).

This module is the explorer's one import of the unpack package (``layers/unpack/``)."""

from __future__ import annotations

import os
from pathlib import Path

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.union import clean_member_path
from inspect_tool.layers.unpack import UnpackResult, prepare_destination
from inspect_tool.layers.unpack.applier import LayerApplier
from inspect_tool.layers.unpack.backend import DestinationError
from inspect_tool.layers.unpack.disk import DiskBackend, tree_stats
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
    result = UnpackResult(destination, layer + 1, False, False)
    root_fd = prepare_destination(destination, force=False)
    backend = DiskBackend(root_fd, same_owner=False, devices=False, xattrs=False)
    applier = LayerApplier(backend, result.stats, result.audit)
    try:
        for entry in image.layers[: layer + 1]:
            applier.start_layer(entry.index)
            with open_layer(source, entry) as opened:
                reader = opened.reader
                for member in reader:
                    name = clean_member_path(member.name)
                    if name is not None and _wanted(name, target, ancestors):
                        applier.apply(member, reader)
                opened.finish(entry, label=source.label)
        applier.close()
        applier.finishing()
        try:
            backend.finish()
            result.written = tree_stats(root_fd)
        except OSError as exc:
            raise DestinationError(f"cannot write: {exc.strerror}") from exc
    except DestinationError as exc:
        raise exc.with_subject(str(destination)) from exc.__cause__
    except DockscopeError as exc:
        raise exc.with_subject(source.label) from exc.__cause__
    finally:
        applier.close()
        os.close(root_fd)
    return result
