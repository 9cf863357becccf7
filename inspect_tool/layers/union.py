"""Layers applied in order: whiteouts, opaque directories and the merged filesystem.

The rules are the OCI image spec's (layer.md, "Whiteouts"), which is what overlayfs-based
engines do:

- ``.wh.NAME`` removes NAME (and everything under it) coming from *lower* layers; an entry of
  the same layer is never hidden by a whiteout of that layer, whatever the order in the tar.
- ``.wh..wh..opq`` in a directory hides every lower-layer entry below that directory; entries
  of the same layer stay.
- AUFS metadata (``.wh..wh.plnk``, ``.wh..wh.aufs``, ``.wh..wh.orph`` and anything under them)
  is recognised and hidden.
- An entry replaces what a lower layer had at the same path; a directory replacing a directory
  keeps the lower children. Missing parent directories are implied.
- Paths are taken as written: a symlink in a lower layer is not followed when an upper layer
  names a path below it (overlay semantics: the upper layer's directory hides the symlink).

Names that climb out of the root (``../x``), empty or malformed whiteouts are never applied;
each becomes an anomaly. The merged tree stores one packed record per entry so that a layer
set of a million entries stays within a few hundred MB.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from inspect_tool.errors import InvalidImageError
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.whiteout import AUFS_META_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX

_TYPE_CODES = {t: i for i, t in enumerate(EntryType)}
_CODE_TYPES = list(EntryType)
# type, layer, mode, uid, gid, size, mtime, devmajor, devminor, offset of the member's header
# in its layer's tar stream; the link target follows
_META = struct.Struct("<BHHIIqdIIq")


class ChangeKind(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One entry of the merged filesystem: its absolute path, its metadata and its layer."""

    path: str  # absolute: "/etc/passwd"
    type: EntryType
    mode: int
    uid: int
    gid: int
    size: int  # a hard link's: the size of the content it shares with the file it names
    mtime: float
    linkname: str
    layer: int  # the layer this entry comes from
    devmajor: int = 0
    devminor: int = 0
    implicit: bool = False  # a parent directory no layer lists
    offset: int = -1  # of the member's header in the layer's tar stream (-1: implicit)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] or "/"


@dataclass(frozen=True, slots=True)
class Change:
    """One path a layer added, modified or deleted, with the entry as it was before and as the layer
    leaves it."""

    path: str
    kind: ChangeKind
    info: FileInfo | None  # the entry as this layer leaves it (None for deletions)
    previous: FileInfo | None  # what the lower layers had (None for additions)


@dataclass(slots=True)
class Anomaly:
    """A layer member that breaks the rules (a name climbing out of the root, an invalid whiteout,
    a path stored twice in one layer) and what is wrong with it."""

    layer: int
    name: str  # the member name as stored
    problem: str


@dataclass(slots=True)
class LayerChanges:
    """What applying one layer did to the merged filesystem: the paths it changed and how many of
    each kind, its anomalies, its content size and the lower-layer bytes it hid."""

    layer: int
    changes: list[Change] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    added: int = 0
    modified: int = 0
    deleted: int = 0
    # bytes of lower-layer files this layer replaced or deleted: still stored, never visible
    wasted: int = 0
    size: int = 0  # bytes of regular-file content in this layer


def pack(info_type: EntryType, layer: int, member: TarMember, *, size: int | None = None) -> bytes:
    """One entry's record; ``size`` replaces the member's (a hard link's: its content's)."""
    return _META.pack(
        _TYPE_CODES[info_type],
        layer,
        member.mode & 0xFFFF,
        member.uid & 0xFFFFFFFF,
        member.gid & 0xFFFFFFFF,
        member.size if size is None else size,
        member.mtime,
        member.devmajor & 0xFFFFFFFF,
        member.devminor & 0xFFFFFFFF,
        member.offset,
    ) + member.linkname.encode("utf-8", "surrogateescape")


_IMPLICIT_MODE = 0o755


def _implicit_dir(layer: int) -> bytes:
    # an implied parent: marked by devmajor 0xFFFFFFFF, which no real directory carries
    return _META.pack(
        _TYPE_CODES[EntryType.DIR], layer, _IMPLICIT_MODE, 0, 0, 0, 0.0, 0xFFFFFFFF, 0, -1
    )


def unpack_info(path: str, meta: bytes) -> FileInfo:
    code, layer, mode, uid, gid, size, mtime, major, minor, offset = _META.unpack_from(meta)
    link = meta[_META.size :].decode("utf-8", "surrogateescape")
    implicit = major == 0xFFFFFFFF
    return FileInfo(
        path,
        _CODE_TYPES[code],
        mode,
        uid,
        gid,
        size,
        mtime,
        link,
        layer,
        0 if implicit else major,
        minor,
        implicit,
        offset,
    )


def _layer_of(meta: bytes) -> int:
    return int.from_bytes(meta[1:3], "little")


def _size_of(meta: bytes) -> int:
    return int.from_bytes(meta[13:21], "little", signed=True)


_FILE_CODE = _TYPE_CODES[EntryType.FILE]
_CONTENT_CODES = frozenset({_FILE_CODE, _TYPE_CODES[EntryType.HARDLINK]})


def _stored_size(meta: bytes) -> int:
    """Bytes of content this entry stores in its layer: a regular file's size; a hard link
    stores none (its size is the linked content's, stored with the file it names)."""
    return max(_size_of(meta), 0) if meta[0] == _FILE_CODE else 0


class _Dir:
    __slots__ = ("children", "meta")

    def __init__(self, meta: bytes) -> None:
        self.meta = meta
        self.children: dict[str, bytes | _Dir] = {}


Node = bytes | _Dir


# The longest path an entry may have below the root ("/a/b" counts 4 bytes): PATH_MAX - 1.
# A tar carries any length (a PAX path of 160 KB is 80,000 levels), but Docker and containerd
# extract each entry by its full path and the kernel refuses longer ones (ENAMETOOLONG), so no
# engine runs such a layer; past it, every tree dockscope builds would cost depth squared.
MAX_PATH_BYTES = 4095


class PathTooLongError(InvalidImageError):
    """An entry's path (or a hard link's target) is longer than ``MAX_PATH_BYTES``."""


def clean_member_path(name: str) -> str | None:
    """A member name as a path below the root; None when it climbs out (``../x``). Raises
    PathTooLongError beyond ``MAX_PATH_BYTES``."""
    path = name[:-1] if name[-1:] == "/" else name
    if path and path[0] not in "/." and path[-1] != "/" and "//" not in path and "/." not in path:
        # already clean (most names): no empty part, none that starts with "."
        check_path_length(path, name)
        return path
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    path = "/".join(parts)
    check_path_length(path, name)
    return path


def check_path_length(path: str, name: str) -> None:
    """Raise PathTooLongError when ``path`` (cleaned, relative to the root) is longer than
    ``MAX_PATH_BYTES`` as "/path"; ``name`` is the member name as stored, for the message."""
    if len(path) < MAX_PATH_BYTES // 4:  # shorter ones cannot exceed it, whatever they hold
        return
    size = len(path.lstrip("/").encode("utf-8", "surrogateescape")) + 1
    if size > MAX_PATH_BYTES:
        raise PathTooLongError(
            f"an entry's path of {size} bytes ({path.strip('/').count('/') + 1} levels) exceeds "
            f"the bound of {MAX_PATH_BYTES} bytes (PATH_MAX - 1): {name[:40]!r}…"
        )


class UnionFS:
    """The merged filesystem of the layers applied so far."""

    def __init__(self, *, on_remove: Callable[[FileInfo, int, str], None] | None = None) -> None:
        self.root = _Dir(_implicit_dir(0))
        # (removed entry, layer that removed it, "deleted" or "replaced")
        self._on_remove = on_remove
        self.layers_applied = 0

    def fork(self) -> UnionFS:
        """An independent copy (directories copied, entry records shared: they are bytes)."""
        twin = UnionFS(on_remove=self._on_remove)
        twin.layers_applied = self.layers_applied
        twin.root = _Dir(self.root.meta)
        stack = [(self.root, twin.root)]
        while stack:
            original, copy = stack.pop()
            for name, child in original.children.items():
                if isinstance(child, _Dir):
                    new = _Dir(child.meta)
                    copy.children[name] = new
                    stack.append((child, new))
                else:
                    copy.children[name] = child
        return twin

    # -- queries -------------------------------------------------------------------------------
    def _node(self, path: str) -> Node | None:
        node: Node = self.root
        for part in _parts(path):
            if not isinstance(node, _Dir):
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def get(self, path: str) -> FileInfo | None:
        node = self._node(path)
        if node is None:
            return None
        return unpack_info(_abs(path), node.meta if isinstance(node, _Dir) else node)

    def linked_size(self, linkname: str) -> int:
        """The size of the content a hard link to ``linkname`` shares: the file it names as
        the layers applied so far have it (a hard link to a hard link: the same content); 0
        when it names no file."""
        node = self._node("/" + (clean_member_path(linkname) or ""))
        if node is None or isinstance(node, _Dir) or node[0] not in _CONTENT_CODES:
            return 0
        return max(_size_of(node), 0)

    def listdir(self, path: str) -> list[FileInfo] | None:
        node = self._node(path)
        if not isinstance(node, _Dir):
            return None
        base = _abs(path).rstrip("/")
        return [
            unpack_info(f"{base}/{name}", child.meta if isinstance(child, _Dir) else child)
            for name, child in sorted(node.children.items())
        ]

    def walk(self, path: str = "/") -> Iterator[FileInfo]:
        """Every entry below ``path`` (not itself), depth first in sorted order."""
        node = self._node(path)
        if not isinstance(node, _Dir):
            return
        iterators = [iter(sorted(node.children.items()))]
        bases = [_abs(path).rstrip("/")]
        while iterators:
            item = next(iterators[-1], None)
            if item is None:
                iterators.pop()
                bases.pop()
                continue
            name, child = item
            child_path = f"{bases[-1]}/{name}"
            if isinstance(child, _Dir):
                yield unpack_info(child_path, child.meta)
                iterators.append(iter(sorted(child.children.items())))
                bases.append(child_path)
            else:
                yield unpack_info(child_path, child)

    def records(self) -> Iterator[tuple[str, bytes]]:
        """Every entry as (absolute path, packed record), parents before children: what
        ``insert`` takes back (the base-view cache stores them)."""
        iterators = [iter(sorted(self.root.children.items()))]
        bases = [""]
        while iterators:
            item = next(iterators[-1], None)
            if item is None:
                iterators.pop()
                bases.pop()
                continue
            name, child = item
            path = f"{bases[-1]}/{name}"
            if isinstance(child, _Dir):
                yield path, child.meta
                iterators.append(iter(sorted(child.children.items())))
                bases.append(path)
            else:
                yield path, child

    def insert(self, path: str, meta: bytes) -> None:
        """Put a packed record at ``path``; its parents must be inserted first."""
        parent_path, _, name = path.rpartition("/")
        parent = self._node(parent_path or "/")
        if not isinstance(parent, _Dir):
            raise ValueError(f"no parent directory for {path}")
        is_dir = _CODE_TYPES[meta[0]] is EntryType.DIR
        existing = parent.children.get(name)
        if is_dir and isinstance(existing, _Dir):
            existing.meta = meta
        else:
            parent.children[name] = _Dir(meta) if is_dir else meta

    def count(self) -> int:
        total = 0
        stack = [self.root]
        while stack:
            directory = stack.pop()
            total += len(directory.children)
            stack.extend(c for c in directory.children.values() if isinstance(c, _Dir))
        return total

    # -- applying a layer ----------------------------------------------------------------------
    def apply(
        self,
        layer: int,
        members: Iterable[TarMember],
        *,
        record: bool = True,
        on_entry: Callable[[TarMember, str], None] | None = None,
    ) -> LayerChanges:
        """Apply one layer's entries on top of the layers applied so far.

        ``on_entry(member, path)`` sees every entry that is applied (not whiteouts, opaque
        markers or AUFS metadata) while its data can still be read from the tar reader.
        """
        result = LayerChanges(layer)
        for member in members:
            self._apply_member(layer, member, result, record, on_entry)
        self.layers_applied = layer + 1
        return result

    def _apply_member(
        self,
        layer: int,
        member: TarMember,
        result: LayerChanges,
        record: bool,
        on_entry: Callable[[TarMember, str], None] | None,
    ) -> None:
        path = clean_member_path(member.name)
        if path is None:
            result.anomalies.append(Anomaly(layer, member.name, "name climbs out of the root"))
            return
        if member.type is EntryType.HARDLINK:
            clean_member_path(member.linkname)  # the same bound as unpack's (raises)
        if not path:
            if member.type is EntryType.DIR:  # the root itself ("./"): keep its metadata
                self.root.meta = pack(EntryType.DIR, layer, member)
            else:
                result.anomalies.append(
                    Anomaly(layer, member.name, f"the root is stored as a {member.type.value}")
                )
            return
        parent_path, _, base = path.rpartition("/")
        if AUFS_META_PREFIX in parent_path and any(
            p.startswith(AUFS_META_PREFIX) for p in parent_path.split("/")
        ):
            return  # inside AUFS metadata directories (.wh..wh.plnk/...)
        if base == OPAQUE_MARKER:
            parent = self._ensure_dir(parent_path, layer, result, record)
            self._opaque(parent, parent_path, layer, result, record)
            return
        if base.startswith(AUFS_META_PREFIX):
            return  # AUFS metadata: hidden
        if base.startswith(WHITEOUT_PREFIX):
            target = base[len(WHITEOUT_PREFIX) :]
            if target in ("", ".", "..") or "/" in target:
                result.anomalies.append(
                    Anomaly(layer, member.name, f"whiteout of an invalid name {target!r}")
                )
                return
            parent_node = self._node(parent_path)
            if not isinstance(parent_node, _Dir):
                return  # nothing to remove
            self._whiteout(parent_node, parent_path, target, layer, result, record)
            return
        parent = self._ensure_dir(parent_path, layer, result, record)
        existing = parent.children.get(base)
        full = "/" + path
        if on_entry is not None:
            on_entry(member, full)
        if member.type is EntryType.FILE:
            result.size += member.size
        linked = self.linked_size(member.linkname) if member.type is EntryType.HARDLINK else None
        new_meta = pack(member.type, layer, member, size=linked)
        if existing is None:
            parent.children[base] = _Dir(new_meta) if member.type is EntryType.DIR else new_meta
            result.added += 1
            if record:
                result.changes.append(
                    Change(full, ChangeKind.ADDED, unpack_info(full, new_meta), None)
                )
            return
        old_meta = existing.meta if isinstance(existing, _Dir) else existing
        old_layer = _layer_of(old_meta)
        previous = unpack_info(full, old_meta)
        if isinstance(existing, _Dir) and member.type is EntryType.DIR:
            existing.meta = new_meta  # a directory restated: children stay
            if old_layer < layer and _dir_meta_changed(old_meta, new_meta):
                result.modified += 1
                if record:
                    result.changes.append(
                        Change(full, ChangeKind.MODIFIED, unpack_info(full, new_meta), previous)
                    )
            return
        # a different entry replaces the old one (a whole subtree when it was a directory)
        if old_layer < layer:
            result.wasted += self._removed(existing, full, layer)
        parent.children[base] = _Dir(new_meta) if member.type is EntryType.DIR else new_meta
        if old_layer < layer:
            result.modified += 1
            if record:
                result.changes.append(
                    Change(full, ChangeKind.MODIFIED, unpack_info(full, new_meta), previous)
                )
        else:
            result.anomalies.append(Anomaly(layer, member.name, "stored twice in the layer"))

    def _ensure_dir(self, path: str, layer: int, result: LayerChanges, record: bool) -> _Dir:
        node = self.root
        walked = ""
        for part in _parts(path):
            walked = f"{walked}/{part}"
            child = node.children.get(part)
            if isinstance(child, _Dir):
                node = child
                continue
            if child is not None:
                # a lower non-directory stands where this layer has a directory: replaced
                result.wasted += self._removed(child, walked, layer)
                result.modified += 1
            else:
                result.added += 1
            new = _Dir(_implicit_dir(layer))
            node.children[part] = new
            if record:
                info = unpack_info(walked, new.meta)
                kind = ChangeKind.ADDED if child is None else ChangeKind.MODIFIED
                previous = None if child is None else unpack_info(walked, child)
                result.changes.append(Change(walked, kind, info, previous))
            node = new
        return node

    def _whiteout(
        self,
        parent: _Dir,
        parent_path: str,
        name: str,
        layer: int,
        result: LayerChanges,
        record: bool,
    ) -> None:
        existing = parent.children.get(name)
        if existing is None:
            return
        full = f"/{parent_path}/{name}" if parent_path else f"/{name}"
        previous = unpack_info(full, existing.meta if isinstance(existing, _Dir) else existing)
        removed_bytes, keep = self._remove_lower(existing, full, layer)
        if not keep:
            del parent.children[name]
        if removed_bytes or not keep or previous.layer < layer:
            result.wasted += removed_bytes
            result.deleted += 1
            if record:
                result.changes.append(Change(full, ChangeKind.DELETED, None, previous))

    def _opaque(
        self, directory: _Dir, path: str, layer: int, result: LayerChanges, record: bool
    ) -> None:
        base = f"/{path}" if path else ""
        for name in list(directory.children):
            child = directory.children[name]
            full = f"{base}/{name}"
            previous = unpack_info(full, child.meta if isinstance(child, _Dir) else child)
            removed_bytes, keep = self._remove_lower(child, full, layer)
            if not keep:
                del directory.children[name]
            if previous.layer < layer:
                result.wasted += removed_bytes
                result.deleted += 1
                if record:
                    result.changes.append(Change(full, ChangeKind.DELETED, None, previous))

    def _remove_lower(self, node: Node, path: str, layer: int) -> tuple[int, bool]:
        """Remove what lower layers put at ``path``; returns (bytes removed, whether anything
        of ``layer`` itself remains there). Iterative: image trees can be deeper than
        Python's recursion limit."""
        if not isinstance(node, _Dir):
            if _layer_of(node) < layer:
                self._notify(path, node, layer, "deleted")
                return _stored_size(node), False
            return 0, True
        removed = 0
        stack: list[tuple[_Dir, str, Iterator[str]]] = [(node, path, iter(list(node.children)))]
        while stack:
            directory, dir_path, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if stack and _layer_of(directory.meta) < layer and not directory.children:
                    self._notify(dir_path, directory.meta, layer, "deleted")
                    del stack[-1][0].children[dir_path.rsplit("/", 1)[1]]
                continue
            child = directory.children[name]
            if isinstance(child, _Dir):
                stack.append((child, f"{dir_path}/{name}", iter(list(child.children))))
            elif _layer_of(child) < layer:
                self._notify(f"{dir_path}/{name}", child, layer, "deleted")
                removed += _stored_size(child)
                del directory.children[name]
        if _layer_of(node.meta) < layer and not node.children:
            self._notify(path, node.meta, layer, "deleted")
            return removed, False
        return removed, True

    def _removed(self, node: Node, path: str, layer: int) -> int:
        """A whole node replaced by another entry: bytes of regular files it held."""
        total = 0
        stack: list[tuple[Node, str]] = [(node, path)]
        while stack:
            current, current_path = stack.pop()
            reason = "replaced" if current is node else "deleted"
            if isinstance(current, _Dir):
                self._notify(current_path, current.meta, layer, reason)
                stack.extend((c, f"{current_path}/{n}") for n, c in current.children.items())
            else:
                self._notify(current_path, current, layer, reason)
                total += _stored_size(current)
        return total

    def _notify(self, path: str, meta: bytes, layer: int, reason: str) -> None:
        if self._on_remove is not None:
            self._on_remove(unpack_info(path, meta), layer, reason)


def _dir_meta_changed(old: bytes, new: bytes) -> bool:
    """Mode, owner: what makes a restated directory a change (its mtime moves with content)."""
    return old[3:13] != new[3:13]


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _abs(path: str) -> str:
    return "/" + "/".join(_parts(path))
