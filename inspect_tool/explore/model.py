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


class Node:
    """One path. ``versions``: (layer, entry) in layer order, entry None where the layer
    deleted it; ``touched``: a bit per layer that changed this path or one below it."""

    __slots__ = ("children", "layers", "name", "parent", "touched", "versions")

    def __init__(self, name: str, parent: Node | None) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, Node] | None = None
        self.layers: list[int] = []
        self.versions: list[FileInfo | None] = []
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
        if self.layers and self.layers[-1] == layer:
            self.versions[-1] = info  # the same layer again: its last word counts
            return
        self.layers.append(layer)
        self.versions.append(info)

    def at(self, layer: int) -> tuple[int, FileInfo | None] | None:
        """The last version at or below ``layer``: (its layer, entry or None if deleted)."""
        index = bisect.bisect_right(self.layers, layer) - 1
        if index < 0:
            return None
        return self.layers[index], self.versions[index]

    def history(self) -> list[tuple[int, FileInfo | None]]:
        return list(zip(self.layers, self.versions, strict=True))


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
    def row(self, node: Node, options: ViewOptions) -> Row | None:
        """How layer N shows ``node``, or None when it is not there."""
        layer = options.layer
        found = node.at(layer)
        if found is None:
            # a directory only named as the parent of others (a comparison's tree)
            touched = node.touched >> layer & 1 or (
                options.aggregated and node.touched & ((2 << layer) - 1)
            )
            if node.children and touched:
                return Row(node, Kind.UNCHANGED, _directory(node.path, layer))
            return None
        at, info = found
        if info is None:
            if at != layer:
                return None
            previous = self._before(node, layer)
            if previous is None:
                return None
            return Row(node, Kind.REMOVED, previous)
        if at != layer:
            if not options.aggregated:
                return Row(node, Kind.UNCHANGED, info) if node.touched >> layer & 1 else None
            return Row(node, Kind.UNCHANGED, info)
        kind = Kind.MODIFIED if self._before(node, layer) is not None else Kind.ADDED
        return Row(node, kind, info)

    @staticmethod
    def _before(node: Node, layer: int) -> FileInfo | None:
        found = node.at(layer - 1)
        return found[1] if found is not None else None

    def children(
        self, node: Node, options: ViewOptions, *, sizes: SizeCache | None = None
    ) -> list[Row]:
        """The rows below ``node`` that the view shows, sorted."""
        rows = []
        for child in (node.children or {}).values():
            row = self.row(child, options)
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
        if not options.hidden and options.pattern is None:
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
                    row = self.tree.row(child, self.options)
                    if row is None or row.kind is Kind.REMOVED:
                        continue
                    total += self._sizes.get(id(child), 0) if row.is_dir else max(row.info.size, 0)
                self._sizes[id(current)] = total
                continue
            pending.append((current, True))
            for child in (current.children or {}).values():
                if child.children:
                    pending.append((child, False))
        return self._sizes[id(node)]


def build_tree(
    source: Source,
    image: Image,
    *,
    calculator: EfficiencyCalculator | None = None,
    progress: Callable[[int], None] | None = None,
) -> FileTree:
    """Read every layer once (each verified against its diff_id) into a ``FileTree``; with
    ``calculator``, feed it each layer's members too (``dockscope efficiency``'s analysis, in
    the same pass)."""
    tree = FileTree(len(image.layers))

    def removed(info: FileInfo, layer: int, reason: str) -> None:
        if reason == "deleted":
            tree.record(layer, info.path, None)

    union = UnionFS(on_remove=removed)
    for layer in image.layers:
        seen: list[TarMember] = []
        with open_layer(source, layer, progress=progress) as opened:
            members: Iterable[TarMember] = opened.reader
            if calculator is not None:
                members = _kept(opened.reader, seen)
            changes = union.apply(layer.index, members, record=True)
            opened.finish(layer, label=source.label)
        if calculator is not None:
            calculator.add_layer(seen)
        for change in changes.changes:
            if change.kind is ChangeKind.DELETED:
                tree.record(layer.index, change.path, None)
            else:
                tree.record(layer.index, change.path, change.info)
    return tree


def _kept(members: Iterable[TarMember], into: list[TarMember]) -> Iterator[TarMember]:
    for member in members:
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
