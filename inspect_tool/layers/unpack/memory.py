"""The applier's in-memory backend: the merged tree, metadata only, and how it is planned.

``MemoryBackend`` takes the applier's entries as ``DiskBackend`` does, with the same
refusals (a name the system calls would refuse is refused here too), but keeps only each
entry's ``TarMember`` and the layer it came from: a regular file's bytes stay in its layer.
``plan_layers`` applies every layer to it, each layer read whole first (decompressed, hashed,
diff_id checked, headers parsed): by forked workers, in order, while this process applies the
ones already read, where the source allows. ``export`` writes the planned tree as one tar;
``unpack``'s two passes (``twopass.py``) create it on disk. ``walk`` visits it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from inspect_tool.layers.image_fs import TooManyEntries, naming_layer, read_layers
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.unpack.applier import LayerApplier
from inspect_tool.layers.unpack.audit import Note
from inspect_tool.layers.unpack.backend import Kind
from inspect_tool.model.image import Layer
from inspect_tool.sources.source import Source

NAME_MAX = 255  # bytes in one path component, as Linux file systems allow


class TreeDir:
    """A directory of the planned tree."""

    __slots__ = ("children", "layer", "member")

    def __init__(self, member: TarMember | None, layer: int = 0) -> None:
        self.member = member  # None: a parent no layer lists
        self.layer = layer  # the layer of ``member``
        self.children: dict[str, TreeDir | TreeNode] = {}


class TreeNode:
    """A non-directory inode; every name hard-linked to it holds the same object."""

    __slots__ = ("layer", "member")

    def __init__(self, member: TarMember, layer: int) -> None:
        self.member = member
        self.layer = layer  # the layer whose tar holds its bytes


def _no_note(action: object, reason: object, message: str) -> None:
    return None


class MemoryBackend:
    """The applier's Backend over an in-memory tree: metadata only, no file content.

    ``devices``: whether device nodes are kept (a tar can carry them; unpack keeps them only
    where it may create them, so the applier skips and reports the same entries)."""

    def __init__(self, *, devices: bool = True) -> None:
        self.root = TreeDir(None)
        self.devices = devices
        self.note: Note = _no_note
        self._layer = 0

    def start_layer(self, index: int) -> None:
        self._layer = index

    def step(self, parent: TreeDir, name: str) -> tuple[Kind | None, TreeDir | None, str | None]:
        child = parent.children.get(name)
        if child is None:
            return None, None, None
        if isinstance(child, TreeDir):
            return Kind.DIR, child, None
        if child.member.type is EntryType.SYMLINK:
            return Kind.SYMLINK, None, child.member.linkname
        return node_kind(child), None, None

    def kind(self, parent: TreeDir, name: str) -> Kind | None:
        child = parent.children.get(name)
        if child is None:
            return None
        return Kind.DIR if isinstance(child, TreeDir) else node_kind(child)

    def mkdir(self, parent: TreeDir, name: str, path: str, member: TarMember | None) -> None:
        self._free(parent, name)
        parent.children[name] = TreeDir(member, self._layer)

    def dir_meta(self, parent: TreeDir, name: str, path: str, member: TarMember) -> None:
        child = parent.children[name]
        assert isinstance(child, TreeDir)
        child.member = member
        child.layer = self._layer

    def root_meta(self, member: TarMember) -> None:
        self.root.member = member

    def write_file(self, parent: TreeDir, name: str, member: TarMember, reader: TarReader) -> None:
        self._free(parent, name)
        parent.children[name] = TreeNode(member, self._layer)  # the reader skips the data

    def symlink(self, parent: TreeDir, name: str, member: TarMember) -> None:
        self._free(parent, name)
        if not member.linkname:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if "\x00" in member.linkname:
            raise ValueError("embedded null byte")
        parent.children[name] = TreeNode(member, self._layer)

    def special(self, parent: TreeDir, name: str, member: TarMember) -> None:
        self._free(parent, name)
        parent.children[name] = TreeNode(member, self._layer)

    # the planned tree is applied with OnDiskFormat.OCI (whiteouts applied), so overlay's
    # on-disk forms never reach it: asking for one is a programming error, not a gap
    def whiteout_device(self, parent: TreeDir, name: str) -> None:
        raise TypeError("the planned tree applies whiteouts: it keeps no overlay whiteouts")

    def mark_opaque(self, directory: TreeDir) -> None:
        raise TypeError("the planned tree applies whiteouts: it keeps no opaque marks")

    def link(self, src: TreeDir, src_name: str, parent: TreeDir, name: str) -> None:
        node = src.children.get(src_name)
        if node is None:
            raise FileNotFoundError(src_name)
        self._free(parent, name)
        parent.children[name] = node

    def remove(self, parent: TreeDir, name: str, kind: Kind, path: str) -> None:
        parent.children.pop(name, None)

    def listdir(self, parent: TreeDir) -> list[str]:
        return list(parent.children)

    def open_child(self, parent: TreeDir, name: str) -> TreeDir | None:
        child = parent.children.get(name)
        return child if isinstance(child, TreeDir) else None

    def close(self, handle: TreeDir) -> None:
        return None

    @staticmethod
    def _free(parent: TreeDir, name: str) -> None:
        """Refuse what ``unpack``'s system calls refuse, so both report the same entries."""
        if "\x00" in name:
            raise ValueError("embedded null byte")
        if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)
        if name in parent.children:
            raise FileExistsError(name)


def node_kind(node: TreeNode) -> Kind:
    kind = node.member.type
    if kind is EntryType.FILE:
        return Kind.FILE
    if kind is EntryType.SYMLINK:
        return Kind.SYMLINK
    return Kind.OTHER


def plan_layers(
    source: Source,
    layers: Sequence[Layer],
    applier: LayerApplier[TreeDir],
    progress: Callable[[int], None] | None,
    *,
    budget: int | None = None,
) -> dict[int, str]:
    """Apply ``layers`` to the in-memory tree behind ``applier``, each read whole before its
    members are applied: by forked workers, in order, while this process applies the ones
    already read, where the source allows. The same members in the same order reach the
    applier as ``apply_layers`` gives it. A layer that cannot be read stops it there, and
    so does ``TooManyEntries`` when the layers hold more than ``budget`` members in all.
    Returns each layer's raw digest, which a second read of the blob must give again."""
    digests: dict[int, str] = {}
    held = 0
    with contextlib.closing(read_layers(source, layers, progress, limit=budget)) as read:
        for layer, members, digest in read:
            held += len(members)
            if budget is not None and held > budget:
                raise TooManyEntries(
                    f"more than {budget} entries in {layer.index + 1} layers", subject=source.label
                )
            digests[layer.index] = digest
            applier.start_layer(layer.index)
            with naming_layer(source, layer):
                for member in members:
                    applier.apply(member, NO_CONTENT)
    return digests


NO_CONTENT = cast(TarReader, None)  # the in-memory tree never reads a file's bytes


def walk(root: TreeDir) -> Iterator[tuple[str, TreeDir | TreeNode]]:
    """Every entry below the root, parents before children, names sorted (iterative)."""
    stack: list[tuple[str, Iterator[tuple[str, TreeDir | TreeNode]]]] = [
        ("", iter(sorted(root.children.items())))
    ]
    while stack:
        base, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        name, node = item
        path = f"{base}/{name}" if base else name
        yield path, node
        if isinstance(node, TreeDir):
            stack.append((path, iter(sorted(node.children.items()))))
