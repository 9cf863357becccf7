"""``dockscope tree``: an image's layers, each with the files it changed as a directory tree.

The changes are ``UnionFS``'s (``analyze.filesystem.changes_by_layer``): added, modified and
deleted entries of each layer against the layers below it. ``change_tree`` arranges one
layer's changes by path, cut at a depth (what lies deeper is counted on the directory where
the cut falls); the rich tree and the JSON document both show that structure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.union import ChangeKind, FileInfo, LayerChanges
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size
from inspect_tool.render.dot import excerpt
from inspect_tool.render.json import document_head
from inspect_tool.render.text import plural, visible

MIN_NEST = 8  # levels indented however narrow the terminal
MAX_NEST = 64  # and however wide (a file or a pipe is PIPE_WIDTH): each line draws them all
LABEL_ROOM = 40  # cells kept for a label beside the guides

STYLES = {
    ChangeKind.ADDED: ("+", "green"),
    ChangeKind.MODIFIED: ("~", "yellow"),
    ChangeKind.DELETED: ("-", "red"),
}


@dataclass(slots=True)
class ChangeNode:
    """A path in one layer's change tree. ``change`` is None for a directory shown only
    because changes lie below it; ``info`` is the entry as the layer leaves it (for a
    deletion: what was deleted)."""

    name: str
    path: str
    change: ChangeKind | None = None
    info: FileInfo | None = None
    children: dict[str, ChangeNode] = field(default_factory=dict)
    hidden: dict[ChangeKind, int] = field(default_factory=dict)  # changes below the cut

    def child(self, name: str) -> ChangeNode:
        node = self.children.get(name)
        if node is None:
            base = self.path.rstrip("/")
            node = self.children[name] = ChangeNode(name, f"{base}/{name}")
        return node

    def sorted_children(self) -> list[ChangeNode]:
        return [self.children[name] for name in sorted(self.children)]


def change_tree(changes: LayerChanges, depth: int | None = None) -> ChangeNode:
    """One layer's changes as a tree below ``/``; with ``depth``, only the first ``depth``
    path components are shown and deeper changes are counted where the cut falls."""
    root = ChangeNode("/", "/")
    for change in changes.changes:
        parts = [p for p in change.path.split("/") if p]
        if not parts:
            continue
        node = root
        cut = depth is not None and len(parts) > depth
        for part in parts[: depth if cut else None]:
            node = node.child(part)
        if cut:
            node.hidden[change.kind] = node.hidden.get(change.kind, 0) + 1
            continue
        node.change = change.kind
        node.info = change.info if change.info is not None else change.previous
    return root


# -- rich ---------------------------------------------------------------------------------------
def _counts(added: int, modified: int, deleted: int) -> Text:
    text = Text()
    for count, (mark, style) in zip((added, modified, deleted), STYLES.values(), strict=True):
        # STYLES is ordered added, modified, deleted, as ChangeKind is
        if text:
            text.append(" ")
        text.append(f"{mark}{count}", style=style if count else "dim")
    return text


def _node_text(node: ChangeNode) -> Text:
    info = node.info
    is_dir = info.type is EntryType.DIR if info is not None else node.change is None
    name = visible(node.name) + ("/" if is_dir else "")
    if node.change is None:
        text = Text(name, style="dim")
    else:
        mark, style = STYLES[node.change]
        strike = " strike" if node.change is ChangeKind.DELETED else ""
        text = Text(f"{mark} ", style=style)
        text.append(name, style=f"{style}{strike}")
    if info is not None:
        if info.type is EntryType.SYMLINK:
            text.append(f" -> {visible(info.linkname)}", style="cyan")
        elif info.type is EntryType.HARDLINK:
            text.append(f" => {visible(info.linkname)}", style="cyan")
        elif info.type is EntryType.FILE:
            text.append(f"  {human_size(info.size)}", style="dim")
        elif info.type is not EntryType.DIR:
            text.append(f"  ({info.type.value})", style="dim")
    if node.hidden:
        text.append("  ")
        text.append_text(_hidden_text(node.hidden))
    return text


def _hidden_text(hidden: dict[ChangeKind, int]) -> Text:
    text = Text(f"… {sum(hidden.values())} more below ", style="dim")
    text.append_text(_counts(*(hidden.get(kind, 0) for kind in ChangeKind)))
    return text


def _add_nodes(tree: Tree, node: ChangeNode, nest: int, continued: deque[ChangeNode]) -> None:
    """``node``'s children under ``tree``, depth first without recursion (paths can be
    thousands of levels deep), indented ``nest`` levels at most: a directory at that depth
    with entries below says so, and joins ``continued``, to be drawn as a tree of its own
    (rich draws every level's guides on every line and wraps each label to the width left
    beside them: 2,045 levels took it 13 minutes)."""
    stack = [(tree, node, 0)]
    while stack:
        branch, current, depth = stack.pop()
        if depth >= nest and current.children:
            branch.add(Text("… continued below", style="dim"))
            continued.append(current)
            continue
        for child in current.sorted_children():
            stack.append((branch.add(_node_text(child)), child, depth + 1))


def layer_title(image: Image, changes: LayerChanges) -> Text:
    layer = image.layers[changes.layer]
    text = Text(f"layer {layer.index}", style="bold")
    if layer.diff_id is not None:
        text.append(f"  {layer.diff_id.algorithm}:{layer.diff_id.short}", style="cyan")
    text.append(f"  {human_size(layer.size)}  ")
    text.append_text(_counts(changes.added, changes.modified, changes.deleted))
    created_by = visible(excerpt(layer.created_by, 72))
    if created_by:
        text.append(f"  {created_by}", style="dim")
    return text


def render_tree(
    console: Console,
    image: Image,
    layers: Sequence[LayerChanges],
    *,
    depth: int | None = None,
) -> None:
    title = Text(visible(image.display_name), style="bold")
    title.append(f"  {image.image_id.algorithm}:{image.image_id.short}", style="cyan")
    title.append(f"  {plural(len(image.layers), 'layer')}")
    tree = Tree(title, guide_style="dim")
    # each level's guide is 4 cells: deeper than the width indents, a tree of its own
    nest = min(MAX_NEST, max(MIN_NEST, (console.width - LABEL_ROOM) // 4 - 1))
    continued: list[tuple[int, deque[ChangeNode]]] = []
    for changes in layers:
        branch = tree.add(layer_title(image, changes))
        root = change_tree(changes, depth)
        continued.append((image.layers[changes.layer].index, deque()))
        _add_nodes(branch, root, nest, continued[-1][1])
        if root.hidden:
            branch.add(_hidden_text(root.hidden))
    console.print(tree)
    for index, nodes in continued:
        while nodes:
            node = nodes.popleft()
            title = Text(f"layer {index}", style="bold")
            title.append(f"  {visible(node.path)}/  (continued)")
            part = Tree(title, guide_style="dim")
            _add_nodes(part, node, nest, nodes)
            console.print(part)


# -- JSON ---------------------------------------------------------------------------------------
def _node_json(node: ChangeNode) -> dict[str, Any]:
    """The node and everything below it, built without recursion."""
    document = _node_fields(node)
    stack = [(node, document)]
    while stack:
        current, doc = stack.pop()
        for child in current.sorted_children():
            child_doc = _node_fields(child)
            doc["children"].append(child_doc)
            stack.append((child, child_doc))
    return document


def _node_fields(node: ChangeNode) -> dict[str, Any]:
    info = node.info
    return {
        "name": node.name,
        "path": node.path,
        "change": None if node.change is None else node.change.value,
        "type": info.type.value if info is not None else "dir",
        "size": info.size if info is not None and info.type is EntryType.FILE else None,
        "link": (info.linkname or None) if info is not None else None,
        "layer": info.layer if info is not None else None,
        "hidden": {k.value: node.hidden.get(k, 0) for k in ChangeKind} if node.hidden else None,
        "children": [],
    }


def tree_document(
    image: Image, layers: Sequence[LayerChanges], *, depth: int | None = None
) -> dict[str, Any]:
    out = []
    for changes in layers:
        layer = image.layers[changes.layer]
        root = change_tree(changes, depth)
        out.append(
            {
                "index": layer.index,
                "diff_id": str(layer.diff_id) if layer.diff_id else None,
                "chain_id": str(layer.chain_id) if layer.chain_id else None,
                "digest": str(layer.digest) if layer.digest else None,
                "size": layer.size,
                "created_by": layer.created_by,
                "added": changes.added,
                "modified": changes.modified,
                "deleted": changes.deleted,
                "wasted_bytes": changes.wasted,
                "hidden": (
                    {k.value: root.hidden.get(k, 0) for k in ChangeKind} if root.hidden else None
                ),
                "changes": [_node_json(c) for c in root.sorted_children()],
            }
        )
    return {
        **document_head("tree", image),
        "depth": depth,
        "layers": out,
    }
