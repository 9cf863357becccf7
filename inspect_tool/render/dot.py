"""Layer graphs in Graphviz's DOT language: index → manifests per platform → config and layers.

``to_dot`` is pure text generation from the model, deterministic to the byte: nodes are
sorted by their IDs, edges by their ends, and IDs come from content (digests and chain IDs)
or from the position of a source among the arguments. Layers are keyed by chain ID, so a
layer that several images share (same content *and* same layers below it) is one node and the
images fork where they start to differ. Each layer points at the layer below it; each image
(manifest, or ``manifest.json`` entry for legacy ``docker save``) points at its config and its
top layer. History steps that made no layer (``ENV``, ``CMD``, …) label the edge they sit on.

Every string from the image is hostile: labels are escaped for DOT (quotes, backslashes and
Graphviz's own ``\\N``-style escapes), for the entities Graphviz decodes (``&``), and control
characters are shown escaped by render/text.py's ``visible`` (``\\x1b``, ``\\u202e``).
``render`` is the only part that needs the ``dot`` binary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from inspect_tool.errors import DockscopeError, UsageError
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import Image, Platform
from inspect_tool.model.mediatypes import Compression
from inspect_tool.render.console import human_size, short_created_by
from inspect_tool.render.text import plural, visible
from inspect_tool.sources.source import Candidate, Source

FORMATS = ("svg", "png", "pdf", "dot")
EXCERPT = 44  # characters of created_by shown in a node or edge label
MAX_STEPS = 4  # empty history steps listed on one edge
# Layer fill by blob size: ColorBrewer "oranges9", one step per factor of ten from 1 kB.
FILLS = (
    "#fff5eb",
    "#fee6ce",
    "#fdd0a2",
    "#fdae6b",
    "#fd8d3c",
    "#f16913",
    "#d94801",
    "#a63603",
    "#7f2704",
)
_NAMES = {"index.json", "manifest.json"}


class RenderError(UsageError):
    """The graph cannot be drawn as asked: an unknown format, or Graphviz's ``dot`` missing."""


@dataclass(frozen=True, slots=True)
class GraphImage:
    """One image to draw, with where it was found; ``image`` is None when it cannot be read."""

    source: int  # 1-based position of its source among the sources drawn
    source_name: str
    source_format: str
    selector: str
    index_path: tuple[str, ...]
    manifest_digest: Digest | None
    platform: Platform | None
    ref_name: str | None
    repo_tags: tuple[str, ...]
    image: Image | None
    error: str | None = None


def graph_images(sources: Sequence[tuple[Source, Sequence[Candidate]]]) -> list[GraphImage]:
    """The candidates of each source, loaded (metadata only); unreadable ones keep their error."""
    found: list[GraphImage] = []
    for number, (source, candidates) in enumerate(sources, 1):
        name = source.path.name or str(source.path)
        for candidate in candidates:
            image: Image | None = None
            error: str | None = None
            try:
                image = candidate.image()
            except DockscopeError as exc:
                error = exc.message
            platform = candidate.platform or (image.platform if image else None)
            found.append(
                GraphImage(
                    number,
                    name,
                    source.format.value,
                    candidate.selector,
                    candidate.index_path,
                    candidate.manifest_digest,
                    platform,
                    candidate.ref_name,
                    candidate.repo_tags,
                    image,
                    error,
                )
            )
    return found


# -- text ---------------------------------------------------------------------------------------
def excerpt(text: str | None, width: int = EXCERPT) -> str:
    """The start of a history step, ``width`` characters at most; not escaped yet (``label``
    and the tree escape what they show)."""
    line = short_created_by(text)
    return line if len(line) <= width else line[: width - 1] + "…"


def quote(text: str) -> str:
    """A DOT double-quoted string holding ``text`` literally (no Graphviz escapes apply)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label(lines: Iterable[str]) -> str:
    """Lines of a node or edge label: each cleaned, ``&`` kept from being read as an entity,
    joined with DOT's ``\\n``."""
    parts = [visible(line).replace("&", "&amp;") for line in lines]
    escaped = [p.replace("\\", "\\\\").replace('"', '\\"') for p in parts]
    return '"' + "\\n".join(escaped) + '"'


def size_fill(size: int | None) -> tuple[str, str]:
    """(fill colour, font colour) for a layer of ``size`` bytes."""
    step = 0
    limit = 1000
    while size is not None and size >= limit and step < len(FILLS) - 1:
        step += 1
        limit *= 10
    return FILLS[step], "white" if step >= 6 else "black"


# -- the graph ----------------------------------------------------------------------------------
# Several images can reach one node (a shared layer, a manifest listed twice, an edge between
# two shared layers). What each contributes is kept as a set and shown sorted, so the text
# does not depend on the order in which images are visited.
Steps = tuple[str, ...]


@dataclass(slots=True)
class _Node:
    """One DOT node as written: its attributes and the lines of its label."""

    attrs: dict[str, str]
    lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _ImageNode:
    """The label of one image's node (a manifest or a ``manifest.json`` entry), gathered from every
    image that reaches it."""

    head: str
    platforms: set[str] = field(default_factory=set)
    refs: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    summaries: set[str] = field(default_factory=set)  # "4 layers, 35.8 kB"
    errors: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        lines = [self.head]
        if self.platforms:
            lines.append(", ".join(sorted(self.platforms)))
        if self.refs:
            lines.append("ref " + ", ".join(sorted(self.refs)))
        tags = sorted(self.tags)
        lines += tags[:3]
        if len(tags) > 3:
            lines.append(f"+{len(tags) - 3} more tags")
        lines += sorted(self.summaries)
        lines += [f"unreadable: {error}" for error in sorted(self.errors)]
        return lines


@dataclass(slots=True)
class _LayerNode:
    """The label of one layer's node (keyed by chain ID), gathered from every image sharing it."""

    index: int
    diff_id: Digest | None
    chain_id: Digest | None
    blobs: set[tuple[int | None, Compression]] = field(default_factory=set)
    created_by: set[str] = field(default_factory=set)
    before: set[Steps] = field(default_factory=set)  # layer 0: empty steps below it

    def lines(self) -> list[str]:
        diff = f"{self.diff_id.algorithm}:{self.diff_id.short}" if self.diff_id else "none"
        lines = [f"layer {self.index}  diff_id {diff}"]
        if self.chain_id is not None and self.chain_id != self.diff_id:
            lines.append(f"chain {self.chain_id.algorithm}:{self.chain_id.short}")
        sizes = []
        for size, compression in sorted(
            self.blobs, key=lambda b: (b[0] is None, b[0] or 0, b[1].value)
        ):
            kind = "" if compression is Compression.NONE else f" {compression.value}"
            sizes.append(f"{human_size(size)}{kind}" if size is not None else "blob missing")
        lines.append(" / ".join(sizes))
        texts = sorted(self.created_by)
        lines.append(texts[0])
        if len(texts) > 1:
            lines.append(f"(+{len(texts) - 1} other history text)")
        before = _steps_lines(self.before)
        if before:
            lines.append("below it: " + "; ".join(before))
        return lines


@dataclass(slots=True)
class _Graph:
    """The graph being built: its nodes by ID (image and layer nodes gathered apart until their
    labels are final) and its edges with the history steps on them."""

    nodes: dict[str, _Node] = field(default_factory=dict)
    images: dict[str, _ImageNode] = field(default_factory=dict)
    layers: dict[str, _LayerNode] = field(default_factory=dict)
    edges: dict[tuple[str, str], tuple[dict[str, str], set[Steps]]] = field(default_factory=dict)

    def node(self, node_id: str, lines: list[str], **attrs: str) -> None:
        if node_id not in self.nodes:
            self.nodes[node_id] = _Node(dict(attrs), lines)

    def edge(self, tail: str, head: str, steps: Steps = (), **attrs: str) -> None:
        _, known = self.edges.setdefault((tail, head), (dict(attrs), set()))
        if steps:
            known.add(steps)


def _steps_lines(variants: set[Steps]) -> list[str]:
    """The steps on an edge: the first of the (sorted) sequences seen, cut to MAX_STEPS."""
    if not variants:
        return []
    ordered = sorted(variants)
    steps = list(ordered[0])
    shown = steps[:MAX_STEPS]
    if len(steps) > MAX_STEPS:
        shown.append(f"+{len(steps) - MAX_STEPS} more")
    if len(ordered) > 1:
        shown.append(f"(+{len(ordered) - 1} other sequence)")
    return shown


def _empty_steps(image: Image) -> tuple[list[Steps], Steps]:
    """Empty history steps below each layer (between it and the layer under it), and those
    above the top layer, as label excerpts."""
    below: list[Steps] = [() for _ in image.layers]
    made = {
        layer.history_index: layer.index
        for layer in image.layers
        if layer.history_index is not None
    }
    pending: list[str] = []
    for i, entry in enumerate(image.history):
        if i in made:
            below[made[i]] = tuple(pending)
            pending = []
        elif entry.empty_layer:
            pending.append(excerpt(entry.created_by) or "(empty step)")
    above = tuple(pending) if image.layers and image.layers[-1].history_index is not None else ()
    return below, above


def _index_id(item: GraphImage, step: str) -> str:
    text = step.split(" ", 1)[0]
    try:
        return f"index:{Digest.parse(text)}"
    except DockscopeError:
        return f"index:{item.source}:{visible(step)}"


def _image_id(item: GraphImage) -> str:
    if item.manifest_digest is not None:
        return f"manifest:{item.manifest_digest}"
    return f"entry:{item.source}:{item.selector}"


def _add_image(graph: _Graph, item: GraphImage) -> None:
    root = f"source:{item.source}"
    graph.node(root, [item.source_name, item.source_format], shape="folder", fillcolor="#e8eef7")
    parent = root
    for step in item.index_path:
        if step in _NAMES:
            continue  # the source's own index.json: the root node
        node_id = _index_id(item, step)
        short = node_id.split(":", 1)[1]
        if node_id.startswith("index:sha256:"):
            short = "sha256:" + node_id.rsplit(":", 1)[1][:12]
        graph.node(node_id, ["image index", short], shape="component", fillcolor="#e8eef7")
        graph.edge(parent, node_id)
        parent = node_id
    image_node = _image_id(item)
    if item.manifest_digest is not None:
        head = f"manifest {item.manifest_digest.algorithm}:{item.manifest_digest.short}"
    else:
        head = f"image {item.selector} (manifest.json)"
    known = graph.images.setdefault(image_node, _ImageNode(head))
    if item.platform is not None:
        known.platforms.add(str(item.platform))
    if item.ref_name:
        known.refs.add(item.ref_name)
    known.tags.update(item.repo_tags)
    graph.edge(parent, image_node)
    image = item.image
    if image is None:
        known.errors.add(item.error or "unknown error")
        return
    total = sum(layer.size or 0 for layer in image.layers)
    known.summaries.add(f"{plural(len(image.layers), 'layer')}, {human_size(total)}")
    config_id = f"config:{image.image_id}"
    config_lines = [f"config {image.image_id.algorithm}:{image.image_id.short}", "(image ID)"]
    created = image.config.text("created")
    if created:
        config_lines.append(created[:19].replace("T", " "))
    if image.platform is not None:
        config_lines.append(str(image.platform))
    graph.node(config_id, config_lines, shape="note", fillcolor="#f4f4f4")
    graph.edge(image_node, config_id, style="dashed", arrowhead="empty")
    below, above = _empty_steps(image)
    upper, upper_steps = image_node, above
    for layer in reversed(image.layers):
        node_id = (
            f"layer:{layer.chain_id}"
            if layer.chain_id is not None
            else f"layer:{image_node}:{layer.index}"
        )
        node = graph.layers.setdefault(
            node_id, _LayerNode(layer.index, layer.diff_id, layer.chain_id)
        )
        node.blobs.add((layer.size, layer.compression))
        node.created_by.add(excerpt(layer.created_by) or "(no history entry)")
        if layer.index == 0 and below[0]:
            node.before.add(below[0])
        graph.edge(upper, node_id, upper_steps)
        upper, upper_steps = node_id, below[layer.index]


def to_dot(images: Sequence[GraphImage], *, name: str = "layers") -> str:
    """The DOT text of the graph of ``images`` (deterministic: sorted nodes and edges)."""
    graph = _Graph()
    for item in images:
        _add_image(graph, item)
    for node_id, image in graph.images.items():
        if image.errors:
            attrs = {"color": "#c0392b", "fillcolor": "#fdecea", "penwidth": "2"}
        else:
            attrs = {"fillcolor": "#eaf5ea"}
        graph.nodes[node_id] = _Node(attrs, image.lines())
    for node_id, layer in graph.layers.items():
        sizes = [size for size, _ in layer.blobs if size is not None]
        fill, font = size_fill(max(sizes) if sizes else None)
        graph.nodes[node_id] = _Node({"fillcolor": fill, "fontcolor": font}, layer.lines())
    out = [
        f"digraph {quote(name)} {{",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=10, nodesep=0.3, ranksep=0.35, '
        'labelloc=b, label="layers point at the layer below them; fill: blob size, '
        "light < 1 kB, one step darker per factor of 10; edge labels: history steps that "
        'made no layer"];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
        'fillcolor=white, color="#555555"];',
        '  edge [fontname="Helvetica", fontsize=9, color="#555555", fontcolor="#333333"];',
    ]
    for node_id in sorted(graph.nodes):
        node = graph.nodes[node_id]
        node_attrs = [f"label={label(node.lines)}"]
        node_attrs += [f"{key}={quote(value)}" for key, value in sorted(node.attrs.items())]
        out.append(f"  {quote(node_id)} [{', '.join(node_attrs)}];")
    for tail, head in sorted(graph.edges):
        edge_attrs, steps = graph.edges[(tail, head)]
        pairs = [f"{key}={quote(value)}" for key, value in sorted(edge_attrs.items())]
        if steps:
            pairs.insert(0, f"label={label(_steps_lines(steps))}")
        suffix = f" [{', '.join(pairs)}]" if pairs else ""
        out.append(f"  {quote(tail)} -> {quote(head)}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"


def render(dot: str, fmt: str) -> bytes:
    """Draw DOT text as ``svg``, ``png`` or ``pdf`` with Graphviz's ``dot`` program."""
    if fmt == "dot":
        return dot.encode("utf-8")
    if fmt not in FORMATS:
        raise RenderError(f"cannot draw {fmt!r}: choose one of {', '.join(FORMATS)}")
    import graphviz

    try:
        data = graphviz.Source(dot, engine="dot").pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RenderError(
            f"drawing .{fmt} needs Graphviz's dot program (Debian: apt-get install graphviz); "
            ".dot output works without it"
        ) from None
    except graphviz.CalledProcessError as exc:
        # the DOT text is ours: dot refusing it is a bug (an internal error)
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip()
        raise RuntimeError(f"dot failed on dockscope's graph: {detail or exc}") from None
    return bytes(data)
