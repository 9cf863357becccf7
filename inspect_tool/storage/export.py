"""A container's filesystem from engine storage as one tar, reading only.

- merged (``docker export``): the root filesystem the container saw, computed by the union
  view of its layers (``UnionView``), parents before children, names sorted;
- layer (``--writable-layer``): the writable layer alone as an OCI layer: an overlay whiteout
  becomes ``.wh.NAME``, an opaque directory is followed by ``.wh..wh..opq``; an AUFS branch is
  already in that form (its own ``.wh..wh.*`` metadata is left out); a vfs copy (a full tree)
  becomes the engine's change set against its parent (``ChangesDirs``), deletions as ``.wh.``
  files.

Every entry is read through descriptors of the evidence (``O_NOFOLLOW``): symlinks are stored
as symlinks, never followed; hard links within the tar point at the first name written;
owners are numeric; mtimes keep their nanoseconds (PAX); xattrs are kept except the union
filesystems' own (``trusted.overlay.*``, ``user.overlay.*``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inspect_tool.errors import UsageError
from inspect_tool.layers.tarwrite import Sink, TarStats, TarWriter
from inspect_tool.layers.whiteout import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    OPAQUE_XATTRS,
    WHITEOUT_PREFIX,
    is_overlay_whiteout,
)
from inspect_tool.storage.detect import open_storage
from inspect_tool.storage.evidence import LayerDir, StorageError
from inspect_tool.storage.model import ContainerRecord, WritableLayer
from inspect_tool.storage.writable import (
    DiffKind,
    LayerNode,
    LayerTree,
    Whiteouts,
    is_opaque,
    naive_changes,
    walk_tree,
)


@dataclass(frozen=True, slots=True)
class TarItem:
    """One entry to write: ``node`` holds its metadata and bytes; a marker is an empty
    ``.wh.`` file standing for a whiteout or an opaque directory."""

    name: str  # relative, no leading slash
    node: LayerNode
    marker: bool = False


class WritableLayerError(StorageError):
    """A writable layer cannot be written as a tar as asked (exit 3)."""


def write_tar(items: Iterable[TarItem], out: Sink, *, refused: Collection[str] = ()) -> TarStats:
    """``items`` as one tar (``layers/tarwrite.py``). An entry carrying an xattr named in
    ``refused`` (an overlay feature that leaves its data in another layer: redirect,
    metacopy) stops the export."""
    writer = TarWriter(out, error=StorageError)
    for item in items:
        _add(writer, item, refused)
    return writer.close()


def _add(writer: TarWriter, item: TarItem, refused: Collection[str]) -> None:
    node = item.node
    layer, parts = node.layer, node.parts

    def xattrs() -> dict[str, bytes]:
        found = layer.xattrs(parts)
        for name in found:
            if name in refused:
                raise WritableLayerError(
                    f"{name} is set: the layer was written with an overlay feature dockscope "
                    "does not read (redirect_dir or metacopy)",
                    subject=layer.display(parts),
                )
        return found

    writer.add_stat(
        item.name,
        node.st,
        marker=item.marker,
        readlink=lambda: layer.readlink(parts),
        xattrs=xattrs,
        data=lambda: (layer.open_file(parts), layer.display(parts)),
    )


# -- what to write -------------------------------------------------------------------------------


def merged_items(tree: LayerTree) -> Iterator[TarItem]:
    for node in walk_tree(tree):
        yield TarItem("/".join(node.parts), node)


def layer_items(
    upper: LayerDir,
    whiteouts: Whiteouts,
    *,
    new: LayerTree | None = None,
    old: LayerTree | None = None,
    ignore: Collection[str] = (),
    opaque_xattrs: tuple[str, ...] = OPAQUE_XATTRS,
) -> Iterator[TarItem]:
    """A layer directory as OCI layer entries (parents first, names sorted as written, an
    opaque marker right after its directory). ``new``/``old`` given (full trees): the
    changes between them instead. Paths in ``ignore`` (absolute: "/proc") are left out with
    everything below them; ``opaque_xattrs``: what marks an overlay directory opaque."""
    if new is not None:
        yield from _change_items(new, old)
        return
    stack: list[Iterator[tuple[str, ...]]] = [iter(_sorted_children(upper, (), whiteouts, ignore))]
    while stack:
        parts = next(stack[-1], None)
        if parts is None:
            stack.pop()
            continue
        st = upper.lstat(parts)
        if st is None:
            continue
        node = LayerNode(parts, st, upper)
        name = "/".join(parts)
        if whiteouts is Whiteouts.OVERLAY and is_overlay_whiteout(st):
            yield TarItem("/".join((*parts[:-1], WHITEOUT_PREFIX + parts[-1])), node, True)
            continue
        if whiteouts is Whiteouts.AUFS and parts[-1].startswith(WHITEOUT_PREFIX):
            yield TarItem(name, node, True)
            continue
        yield TarItem(name, node)
        if stat.S_ISDIR(st.st_mode):
            if whiteouts is Whiteouts.OVERLAY and is_opaque(upper, parts, whiteouts, opaque_xattrs):
                yield TarItem(f"{name}/{OPAQUE_MARKER}", node, True)
            stack.append(iter(_sorted_children(upper, parts, whiteouts, ignore)))


def _sorted_children(
    upper: LayerDir, parts: tuple[str, ...], whiteouts: Whiteouts, ignore: Collection[str]
) -> list[tuple[str, ...]]:
    """Children sorted by the name they are written under (a whiteout as ``.wh.NAME``),
    without AUFS's own metadata directories and the paths ignored."""
    names = upper.listdir(parts)
    if ignore:
        names = [n for n in names if "/" + "/".join((*parts, n)) not in ignore]
    if whiteouts is Whiteouts.AUFS:
        names = [n for n in names if not n.startswith(AUFS_META_PREFIX) or n == OPAQUE_MARKER]

    def written(name: str) -> str:
        if whiteouts is Whiteouts.OVERLAY:
            st = upper.lstat((*parts, name))
            if st is not None and is_overlay_whiteout(st):
                return WHITEOUT_PREFIX + name
        return name

    return [(*parts, n) for n in sorted(names, key=written)]


def _change_items(new: LayerTree, old: LayerTree | None) -> Iterator[TarItem]:
    """ExportChanges: the changed entries sorted by path, deletions as ``.wh.`` markers."""
    changes = sorted(naive_changes(new, old), key=lambda c: c.path)
    root = new.root()
    for change in changes:
        parts = tuple(change.path.strip("/").split("/"))
        if change.kind is DiffKind.DELETED:
            marker = "/".join((*parts[:-1], WHITEOUT_PREFIX + parts[-1]))
            yield TarItem(marker, LayerNode(parts, root.st, root.layer), True)
        elif change.node is not None:
            yield TarItem("/".join(parts), change.node)


# -- the command ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ContainerExport:
    """What ``container export`` wrote: for which container, the merged filesystem or the writable
    layer alone, and what the tar holds."""

    container: ContainerRecord
    layer: bool
    stats: TarStats


def check_outside(root: Path, output: Path) -> None:
    """Refuse to write anything inside the evidence."""
    evidence = os.path.realpath(root)
    target = os.path.realpath(output)
    if target == evidence or target.startswith(evidence.rstrip("/") + "/"):
        raise UsageError(f"{output} lies inside the evidence {root}: write elsewhere")


def export_items(layer: WritableLayer, *, only_layer: bool) -> Iterator[TarItem]:
    if not only_layer:
        assert layer.merged is not None
        return merged_items(layer.merged)
    if layer.method == "naive":
        return layer_items(layer.upper, layer.whiteouts, new=layer.new_tree, old=layer.old_tree)
    opaque = layer.rules.opaque_xattrs if layer.rules is not None else OPAQUE_XATTRS
    return layer_items(
        layer.upper, layer.whiteouts, ignore=layer.excluded_paths, opaque_xattrs=opaque
    )


def export_layer(layer: WritableLayer, out: Sink, *, only_layer: bool) -> TarStats:
    """The container's merged filesystem (``only_layer``: its writable layer as an OCI layer)
    as one tar, whichever engine wrote it."""
    return write_tar(export_items(layer, only_layer=only_layer), out, refused=layer.refused_xattrs)


def container_export(
    root: Path, ident: str, out: BinaryIO, *, layer: bool = False
) -> ContainerExport:
    """Write container ``ident``'s merged filesystem (or, with ``layer``, its writable layer
    as an OCI layer tar) to ``out``, reading the evidence only."""
    storage = open_storage(root)
    try:
        container = storage.resolve_container(ident)
        writable = storage.writable(container)
        try:
            stats = export_layer(writable, out, only_layer=layer)
        finally:
            writable.close()
        return ContainerExport(container, layer, stats)
    finally:
        storage.evidence.close()
