"""The writable layer ("container layer"): what a container changed, read from its upperdir.

overlayfs records a deletion as a character device 0/0 (a whiteout) and a directory whose
lower contents are hidden as ``trusted.overlay.opaque=y``. ``changes`` turns that into docker
diff's A/C/D: A for an entry no lower layer has, C for one it replaced (a changed parent
directory included: overlay copies it up), D for a deletion. Paths the runtime itself made
(mount points the image lacked) are left out, as docker keeps them in its init layer.

The same directories become tars: ``merged_entries`` walks the merged filesystem (overlay's
lookup rules applied to the layer directories, nothing mounted), ``layer_entries`` the upperdir
as an OCI layer (a whiteout device becomes ``.wh.NAME``, an opaque directory is followed by
``.wh..wh..opq``), and ``write_tar`` writes either one deterministically. Everything is only
read (``changes`` too), with ``O_NOATIME`` where it opens files and directories, so even
access times stay. Every walk is iterative and goes through directory descriptors that never
follow a symlink (``inspect_tool.storage.evidence.LayerDir``): a container may nest
directories deeper than Python's stack and than PATH_MAX.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inspect_tool.layers.tarwrite import TarStats
from inspect_tool.layers.whiteout import (
    METACOPY_XATTR,
    OPAQUE_VALUE,
    OPAQUE_XATTR,
    REDIRECT_XATTR,
    is_overlay_whiteout,
)
from inspect_tool.storage.evidence import Evidence, LayerDir
from inspect_tool.storage.export import TarItem, layer_items
from inspect_tool.storage.export import WritableLayerError as WritableLayerError
from inspect_tool.storage.export import write_tar as storage_write_tar
from inspect_tool.storage.writable import Node, UnionView, Whiteouts, file_type, walk_tree


@dataclass(frozen=True, slots=True)
class WritableChange:
    """One entry of docker diff's view, with what engine storage's ``container diff`` gives
    each entry (inspect_tool/storage/diff.py ``DiffEntry``): the same JSON for both."""

    kind: str  # "A", "C" or "D"
    path: str  # absolute in the container: "/etc/motd"
    type: str | None = None  # file, dir, symlink, … (None for deletions)
    size: int | None = None  # regular files
    mode: int | None = None  # permission bits
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None  # a deletion: its whiteout's (or opaque directory's) mtime
    link: str | None = None  # a symlink's target
    sha256: str | None = None
    evidence: str | None = None  # where the entry (or its whiteout) lies on the host


class LowerView:
    """Lookups in the image's layers (overlay lowerdirs, bottom first) as the merged lower
    view shows them, by engine storage's union view (``UnionView``: whiteouts, opaque
    directories, a non-directory hiding what lies below it), never following a symlink: a
    path below a symlink does not exist as such. Paths are tuples of names, walked through
    directory descriptors, so depth is no limit (a host path would stop at PATH_MAX)."""

    def __init__(self, lowers: list[LayerDir]) -> None:
        self.view = _overlay_view(list(reversed(lowers))) if lowers else None

    def _node(self, parts: tuple[str, ...]) -> Node | None:
        return self.view.lookup(parts) if self.view is not None else None

    def lookup(self, parts: tuple[str, ...]) -> os.stat_result | None:
        """What the merged lower layers hold at ``parts``."""
        node = self._node(parts)
        return None if node is None else node.st

    def listdir(self, parts: tuple[str, ...]) -> set[str]:
        """Names a lower directory holds (as the merged lower view shows them)."""
        node = self._node(parts)
        if self.view is None or node is None or not node.is_dir:
            return set()
        return {child.parts[-1] for child in self.view.children(node)}


def _overlay_view(layers: list[LayerDir]) -> UnionView:
    """The union of ``layers`` (topmost first) as the runtime's overlay mount shows it: it
    mounts without ``userxattr``, so only ``trusted.overlay.opaque`` marks an opaque
    directory, and a layer root's mark hides nothing."""
    return UnionView(layers, Whiteouts.OVERLAY, opaque_xattrs=(OPAQUE_XATTR,), opaque_root=False)


@contextlib.contextmanager
def layer_dirs(paths: list[Path]) -> Iterator[list[LayerDir]]:
    """Each directory opened once; everything below is reached from its descriptor."""
    with contextlib.ExitStack() as stack:
        opened = []
        for path in paths:
            evidence = stack.enter_context(Evidence(path))
            opened.append(stack.enter_context(LayerDir(evidence, "")))
        yield opened


def _sha256(layer: LayerDir, parts: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    with os.fdopen(layer.open_file(parts), "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def changes(
    upper: Path, lowers: list[Path], *, ignore: set[str] | None = None, hashes: bool = False
) -> list[WritableChange]:
    """docker diff's view of a writable layer, sorted by path. Walked without recursion and
    through directory descriptors: a container may nest directories far below PATH_MAX."""
    ignore = ignore or set()
    found: list[WritableChange] = []
    with layer_dirs([upper, *lowers]) as (upper_dir, *lower_dirs):
        lower = LowerView(lower_dirs)
        stack: list[tuple[tuple[str, ...], Iterator[str]]] = [((), iter(upper_dir.listdir(())))]
        while stack:
            base, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            parts = (*base, name)
            path = "/" + "/".join(parts)
            st = upper_dir.lstat(parts)
            if st is None or path in ignore:
                continue
            existed = lower.lookup(parts)
            where = str(upper.joinpath(*parts))
            if is_overlay_whiteout(st):
                if existed is not None:  # deleted when the whiteout was made
                    found.append(WritableChange("D", path, mtime_ns=st.st_mtime_ns, evidence=where))
                continue
            kind = "C" if existed is not None else "A"
            if stat.S_ISDIR(st.st_mode):
                if existed is not None and upper_dir.getxattr(parts, OPAQUE_XATTR) == OPAQUE_VALUE:
                    present = set(upper_dir.listdir(parts))
                    found += [  # hidden by the opaque directory: its time, its place
                        WritableChange(
                            "D", f"{path}/{gone}", mtime_ns=st.st_mtime_ns, evidence=where
                        )
                        for gone in sorted(lower.listdir(parts) - present)
                    ]
                stack.append((parts, iter(upper_dir.listdir(parts))))
            regular = stat.S_ISREG(st.st_mode)
            found.append(
                WritableChange(
                    kind,
                    path,
                    type=file_type(st.st_mode),
                    size=st.st_size if regular else None,
                    mode=stat.S_IMODE(st.st_mode),
                    uid=st.st_uid,
                    gid=st.st_gid,
                    mtime_ns=st.st_mtime_ns,
                    link=upper_dir.readlink(parts) if stat.S_ISLNK(st.st_mode) else None,
                    sha256=_sha256(upper_dir, parts) if hashes and regular else None,
                    evidence=where,
                )
            )
    return sorted(found, key=lambda c: c.path)


# -- tars: the writable layer as an OCI layer, the merged filesystem as docker export ----------

# features that keep part of an entry in a lower layer: this reader does not follow them (the
# runtime mounts overlayfs without userxattr: only trusted.* are overlay's)
_UNFOLLOWED = (REDIRECT_XATTR, METACOPY_XATTR)


@dataclass(frozen=True, slots=True)
class FsEntry:
    """One entry of a tar to write: ``parts`` in ``layer`` holds it (its metadata, its
    bytes), reached through directory descriptors whatever the depth."""

    path: str  # relative, no leading or trailing slash: "etc/motd"
    host: str  # the host path, for messages (never opened by this string)
    st: os.stat_result
    layer: LayerDir
    parts: tuple[str, ...]
    marker: bool = False  # a ".wh." file standing for it (a whiteout or opaque dir)


def merged_entries(upper: Path, lowers: list[Path]) -> Iterator[FsEntry]:
    """The merged filesystem (what the container's root showed), computed from the layer
    directories with overlay's lookup rules, by engine storage's union view (``UnionView``):
    the topmost layer holding a name decides, a whiteout hides the name below it, a
    non-directory hides everything below it, a directory merges with the directories below it
    down to the first opaque one. Parents come before children, names sorted; the root itself
    is not an entry. ``lowers`` is bottom first."""
    with layer_dirs([upper, *reversed(lowers)]) as roots:
        view = UnionView(roots, Whiteouts.OVERLAY, opaque_xattrs=(OPAQUE_XATTR,), opaque_root=False)
        for node in walk_tree(view):
            path = "/".join(node.parts)
            yield FsEntry(path, node.layer.display(node.parts), node.st, node.layer, node.parts)


def layer_entries(upper: Path, *, ignore: set[str] | None = None) -> Iterator[FsEntry]:
    """The writable layer as OCI layer entries, as engine storage writes an overlay upper
    (``storage.export.layer_items``): a whiteout device becomes ``.wh.NAME``, an opaque
    directory is followed by its ``.wh..wh..opq``. Paths in ``ignore`` (absolute: "/proc")
    are left out with everything below them. Parents before children, names sorted by the
    name written, the opaque marker right after its directory."""
    with layer_dirs([upper]) as (layer,):
        for item in layer_items(
            layer, Whiteouts.OVERLAY, ignore=ignore or (), opaque_xattrs=(OPAQUE_XATTR,)
        ):
            node = item.node
            host = layer.display(node.parts)
            yield FsEntry(item.name, host, node.st, layer, node.parts, item.marker)


def write_tar(entries: Iterable[FsEntry], out: BinaryIO) -> TarStats:
    """Entries as one tar, by the one tar writer (``inspect_tool.storage.export.write_tar``);
    an entry with overlay's redirect or metacopy set is refused (``WritableLayerError``)."""
    items = (TarItem(e.path, Node(e.parts, e.st, e.layer), e.marker) for e in entries)
    return storage_write_tar(items, out, refused=_UNFOLLOWED)
