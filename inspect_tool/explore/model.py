"""The explorer's file tree: every path of every layer with its versions, and the views
(the filesystem after layer N, or only what layer N changed) the tree pane shows.

One pass over the layers (``build_tree``) through ``UnionFS`` records, per path, each layer
that added, modified or deleted it (``Version``). The view at layer N is then a lookup per
path: the last version at or below N. Nothing is built per layer, so memory stays that of one
merged tree plus the versions a later layer overwrote or deleted; the tree pane asks for one
directory's children at a time (``children``), when it is expanded.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from inspect_tool.analyze.diff import ImageDiff
from inspect_tool.analyze.efficiency import EfficiencyCalculator
from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.union import ChangeKind, FileInfo, UnionFS
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source


class Kind(StrEnum):
    """What layer N did to an entry, as the tree colours it."""

    ADDED = "added"
    MODIFIED = "modified"
    REMOVED = "removed"
    UNCHANGED = "unchanged"


# one-character markers, so the tree reads without colour (NO_COLOR) too
MARKERS = {Kind.ADDED: "+", Kind.MODIFIED: "~", Kind.REMOVED: "-", Kind.UNCHANGED: " "}


# one version of an entry, packed: type code (0x80: a parent no layer lists), mode, uid, gid,
# layer, size, mtime; the link target follows. A node of one version (most of them) holds it
# bare, not in lists: a tree of 100,000 paths stays a few tens of MB.
_RECORD = struct.Struct("<BHIIHqd")
_TYPES = list(EntryType)
_CODES = {kind: code for code, kind in enumerate(_TYPES)}
_IMPLICIT = 0x80
_FILE_CODES = frozenset({_CODES[EntryType.FILE], _CODES[EntryType.HARDLINK]})


def _pack(info: FileInfo) -> bytes:
    return _RECORD.pack(
        _CODES[info.type] | (_IMPLICIT if info.implicit else 0),
        info.mode & 0xFFFF,
        info.uid & 0xFFFFFFFF,
        info.gid & 0xFFFFFFFF,
        info.layer,
        info.size,
        info.mtime,
    ) + info.linkname.encode("utf-8", "surrogateescape")


def _unpack(path: str, record: bytes) -> FileInfo:
    code, mode, uid, gid, layer, size, mtime = _RECORD.unpack_from(record)
    link = record[_RECORD.size :].decode("utf-8", "surrogateescape")
    kind = _TYPES[code & ~_IMPLICIT]
    return FileInfo(
        path, kind, mode, uid, gid, size, mtime, link, layer, implicit=bool(code & _IMPLICIT)
    )


def _file_size(record: bytes) -> int:
    """Bytes of a regular file's (or a hard link's) content; 0 for anything else."""
    if record[0] not in _FILE_CODES:
        return 0
    size: int = _RECORD.unpack_from(record)[5]
    return max(size, 0)


def _is_dir(record: bytes) -> bool:
    return record[0] & ~_IMPLICIT == _CODES[EntryType.DIR]


Record = bytes | None  # a version: the entry packed, or None where the layer deleted it


class Node:
    """One path: its versions (the layers that added, modified or deleted it, in order) and
    ``touched``, a bit per layer that changed this path or one below it."""

    __slots__ = ("_layers", "_records", "children", "name", "parent", "touched")

    def __init__(self, name: str, parent: Node | None) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, Node] | None = None
        # one version bare (an int and a record), several in two lists
        self._layers: int | list[int] | None = None
        self._records: Record | list[Record] = None
        self.touched = 0

    @property
    def path(self) -> str:
        parts = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def add(self, layer: int, info: FileInfo | None) -> None:
        record = None if info is None else _pack(info)
        layers, records = self._layers, self._records
        if layers is None:
            self._layers, self._records = layer, record
        elif isinstance(layers, int):
            if layers == layer:  # the same layer again: its last word counts
                self._records = record
            else:
                assert not isinstance(records, list)
                self._layers, self._records = [layers, layer], [records, record]
        else:
            assert isinstance(records, list)
            if layers[-1] == layer:
                records[-1] = record
            else:
                layers.append(layer)
                records.append(record)

    def record_at(self, layer: int) -> tuple[int, Record] | None:
        """The last version at or below ``layer``: (its layer, record; None if deleted)."""
        layers, records = self._layers, self._records
        if layers is None:
            return None
        if isinstance(layers, int):
            assert not isinstance(records, list)
            return (layers, records) if layers <= layer else None
        assert isinstance(records, list)
        index = bisect.bisect_right(layers, layer) - 1
        return (layers[index], records[index]) if index >= 0 else None

    def at(self, layer: int) -> tuple[int, FileInfo | None] | None:
        """The last version at or below ``layer``: (its layer, entry; None if deleted)."""
        found = self.record_at(layer)
        if found is None:
            return None
        at, record = found
        return at, None if record is None else _unpack(self.path, record)

    def history(self) -> list[tuple[int, FileInfo | None]]:
        layers, records = self._layers, self._records
        if layers is None:
            return []
        if isinstance(layers, int):
            assert not isinstance(records, list)
            pairs = [(layers, records)]
        else:
            assert isinstance(records, list)
            pairs = list(zip(layers, records, strict=True))
        path = self.path
        return [(layer, None if r is None else _unpack(path, r)) for layer, r in pairs]


@dataclass(frozen=True, slots=True)
class Row:
    """One entry of the tree pane as layer N shows it."""

    node: Node
    kind: Kind
    info: FileInfo  # the entry (for a removed one: the version it removed)
    size: int | None = None  # a directory's: its files' bytes when known

    @property
    def is_dir(self) -> bool:
        return self.info.type is EntryType.DIR

    @property
    def path(self) -> str:
        return self.node.path


class SortOrder(StrEnum):
    NAME = "name"
    SIZE = "size"


@dataclass(slots=True)
class ViewOptions:
    """What the tree pane shows (dive's view options)."""

    layer: int = 0
    aggregated: bool = True  # the filesystem after layer N; False: only layer N's changes
    hidden: set[Kind] = field(default_factory=set)
    pattern: re.Pattern[str] | None = None  # paths shown must match (a directory: one below)
    sort: SortOrder = SortOrder.NAME
    # only these paths (a package's files), named ``only_label`` in the status line
    only: frozenset[str] | None = None
    only_label: str = ""


class FileTree:
    """Every path of an image's layers and its versions."""

    def __init__(self, layer_count: int) -> None:
        self.root = Node("", None)
        self.root.children = {}
        self.layer_count = layer_count
        self.entries = 0  # nodes, the root aside

    # -- building ------------------------------------------------------------------------------
    def node(self, path: str, *, create: bool = False) -> Node | None:
        node = self.root
        for part in path.split("/"):
            if not part:
                continue
            children = node.children
            child = children.get(part) if children is not None else None
            if child is None:
                if not create:
                    return None
                if node.children is None:
                    node.children = {}
                child = node.children[part] = Node(part, node)
                self.entries += 1
            node = child
        return node

    def record(self, layer: int, path: str, info: FileInfo | None) -> None:
        node = self.node(path, create=True)
        assert node is not None
        node.add(layer, info)
        if info is not None and info.type is EntryType.DIR and node.children is None:
            node.children = {}
        bit = 1 << layer
        current: Node | None = node
        while current is not None and not current.touched & bit:
            current.touched |= bit
            current = current.parent

    # -- views ---------------------------------------------------------------------------------
    def state(self, node: Node, options: ViewOptions) -> tuple[Kind, Record] | None:
        """How layer N shows ``node``: its kind and record (a removed entry: the version it
        removed; a parent only named by others: None), or None when it is not shown."""
        layer = options.layer
        found = node.record_at(layer)
        if found is None:
            # a directory only named as the parent of others (a comparison's tree)
            touched = node.touched >> layer & 1 or (
                options.aggregated and node.touched & ((2 << layer) - 1)
            )
            return (Kind.UNCHANGED, None) if node.children and touched else None
        at, record = found
        if record is None:
            if at != layer:
                return None
            previous = node.record_at(layer - 1)
            if previous is None or previous[1] is None:
                return None
            return Kind.REMOVED, previous[1]
        if at != layer:
            if not options.aggregated and not node.touched >> layer & 1:
                return None
            return Kind.UNCHANGED, record
        previous = node.record_at(layer - 1)
        existed = previous is not None and previous[1] is not None
        return (Kind.MODIFIED if existed else Kind.ADDED), record

    def row(self, node: Node, options: ViewOptions, *, path: str | None = None) -> Row | None:
        """How layer N shows ``node`` (at ``path``, computed when not given), or None when it
        is not there."""
        found = self.state(node, options)
        if found is None:
            return None
        kind, record = found
        path = node.path if path is None else path
        info = _directory(path, options.layer) if record is None else _unpack(path, record)
        return Row(node, kind, info)

    def children(
        self, node: Node, options: ViewOptions, *, sizes: SizeCache | None = None
    ) -> list[Row]:
        """The rows below ``node`` that the view shows, sorted."""
        rows = []
        base = node.path.rstrip("/")
        for name, child in (node.children or {}).items():
            row = self.row(child, options, path=f"{base}/{name}")
            if row is None or not self._shown(row, options):
                continue
            rows.append(row)
        if sizes is not None:
            rows = [
                Row(r.node, r.kind, r.info, sizes.size(r.node)) if r.is_dir else r for r in rows
            ]
        if options.sort is SortOrder.SIZE:
            rows.sort(key=lambda r: (-_size(r), r.node.name))
        else:
            rows.sort(key=lambda r: r.node.name)
        return rows

    def _shown(self, row: Row, options: ViewOptions) -> bool:
        if not options.hidden and options.pattern is None and options.only is None:
            return True
        if self._matches(row, options):
            return True
        if not row.is_dir:
            return False
        return any(self._matches(r, options) for r in self._below(row.node, options))

    @staticmethod
    def _matches(row: Row, options: ViewOptions) -> bool:
        if row.kind in options.hidden:
            return False
        if options.only is not None and row.node.path not in options.only:
            return False
        return options.pattern is None or options.pattern.search(row.node.path) is not None

    def _below(self, node: Node, options: ViewOptions) -> Iterator[Row]:
        stack = [node]
        while stack:
            for child in (stack.pop().children or {}).values():
                row = self.row(child, options)
                if row is None:
                    continue
                yield row
                if child.children:
                    stack.append(child)

    def walk(self, options: ViewOptions) -> Iterator[Row]:
        """Every row the view shows, depth first (tests, find)."""
        stack = [iter(self.children(self.root, options))]
        while stack:
            row = next(stack[-1], None)
            if row is None:
                stack.pop()
                continue
            yield row
            if row.is_dir and row.node.children:
                stack.append(iter(self.children(row.node, options)))


def _directory(path: str, layer: int) -> FileInfo:
    return FileInfo(path, EntryType.DIR, 0o755, 0, 0, 0, 0.0, "", layer, implicit=True)


def _size(row: Row) -> int:
    if row.is_dir:
        return row.size or 0
    return max(row.info.size, 0)


class SizeCache:
    """Directories' sizes in one view (the bytes of the files below them it shows), each
    computed once, on demand."""

    def __init__(self, tree: FileTree, options: ViewOptions) -> None:
        self.tree = tree
        self.options = options
        self._sizes: dict[int, int] = {}

    def size(self, node: Node) -> int:
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        # post-order without recursion: image trees can be deeper than Python's limit
        pending: list[tuple[Node, bool]] = [(node, False)]
        while pending:
            current, done = pending.pop()
            if id(current) in self._sizes:
                continue
            if done:
                total = 0
                for child in (current.children or {}).values():
                    found = self.tree.state(child, self.options)
                    if found is None or found[0] is Kind.REMOVED:
                        continue
                    record = found[1]
                    if record is None or _is_dir(record):
                        total += self._sizes.get(id(child), 0)
                    else:
                        total += _file_size(record)
                self._sizes[id(current)] = total
                continue
            pending.append((current, True))
            for child in (current.children or {}).values():
                if child.children:
                    pending.append((child, False))
        return self._sizes[id(node)]


class BuildCancelled(Exception):
    """``build_tree`` stopped because its caller asked (the explorer is closing)."""


def build_tree(
    source: Source,
    image: Image,
    *,
    calculator: EfficiencyCalculator | None = None,
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FileTree:
    """Read every layer once (each verified against its diff_id) into a ``FileTree``; with
    ``calculator``, feed it each layer's members too (``dockscope efficiency``'s analysis, in
    the same pass). ``cancelled`` is asked every 256 entries; True stops the reading
    (``BuildCancelled``)."""
    tree = FileTree(len(image.layers))

    def removed(info: FileInfo, layer: int, reason: str) -> None:
        if reason == "deleted":
            tree.record(layer, info.path, None)

    union = UnionFS(on_remove=removed)
    for layer in image.layers:
        seen: list[TarMember] | None = [] if calculator is not None else None
        with open_layer(source, layer, progress=progress) as opened:
            members = _watched(opened.reader, seen, cancelled)
            changes = union.apply(layer.index, members, record=True)
            opened.finish(layer, label=source.label)
        if calculator is not None and seen is not None:
            calculator.add_layer(seen)
        for change in changes.changes:
            if change.kind is ChangeKind.DELETED:
                tree.record(layer.index, change.path, None)
            else:
                tree.record(layer.index, change.path, change.info)
    return tree


def _watched(
    members: Iterable[TarMember],
    into: list[TarMember] | None,
    cancelled: Callable[[], bool] | None,
) -> Iterator[TarMember]:
    for count, member in enumerate(members):
        if cancelled is not None and not count & 255 and cancelled():
            raise BuildCancelled
        if into is not None:
            into.append(member)
        yield member


def compare_tree(diff: ImageDiff) -> FileTree:
    """Two images' differences as a two-layer tree: layer 0 holds what A has at each path
    that differs, layer 1 what B has there; the view of layer 1's own changes is the diff
    (added: only in B, removed: only in A, modified: both, different)."""
    tree = FileTree(2)
    for change in diff.files:
        if change.a is not None:
            tree.record(0, change.path, change.a)
        tree.record(1, change.path, change.b)
    return tree


def compile_pattern(text: str) -> re.Pattern[str] | None:
    """The path filter: a regular expression searched in each path; empty: no filter.
    Raises ValueError with re's message when it does not compile."""
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


def exact_pattern(path: str) -> str:
    """A path as a ``find`` pattern (shell) that matches only that path."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)
