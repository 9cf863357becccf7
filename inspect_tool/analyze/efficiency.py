"""Image efficiency and wasted bytes, computed exactly as dive computes them.

dive (github.com/wagoodman/dive, ``dive/filetree/efficiency.go`` and ``dive/image/image.go``)
builds one file tree per layer from the tar headers and then, layer by layer, visits every
*leaf* of that layer's tree (files, links, empty directories, whiteouts), children before
parents in name order:

- each visit of a path adds a size to that path's record: a leaf's tar header size, or for a
  whiteout ``.wh.NAME`` the bytes it removes: the sum of the header sizes of everything under
  NAME in the layers below, stacked, when NAME was a directory there, and 0 when it was not
  (dive counts a deleted *file* as 0 bytes);
- efficiency = sum over paths of the smallest size seen for the path / sum over paths of all
  sizes seen (1.0 when nothing has a size);
- a path seen twice or more is "inefficient"; wasted bytes = the sum of the cumulative sizes of
  those paths (the first copy included, as dive reports it);
- size = the sum of every tar header size of every layer; user size the same without layer 0;
  user wasted percent = wasted bytes / user size (a ratio, as dive's CI rule takes it).

dive's trees have quirks that change the numbers, reproduced here on purpose so the figures
match dive's to the last digit: opaque markers (``.wh..wh..opq``) are ignored; a parent
directory that a layer does not list is a node with no metadata, and stacking that layer
replaces the lower directory's metadata with it (so a later whiteout of that directory counts
0 bytes); the base of the stack for whiteouts is layer 0 copied and then stacked again, layer 0
included. A whiteout whose target does not exist below makes dive stop visiting the rest of
that layer, leaving a record with size -1 behind; that is reproduced too and reported in
``notes``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.union import check_path_length
from inspect_tool.layers.whiteout import AUFS_META_PREFIX, WHITEOUT_PREFIX
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

DOUBLE_WHITEOUT_PREFIX = AUFS_META_PREFIX + "."  # dive's ".wh..wh..": never added


@dataclass(frozen=True, slots=True)
class PathEfficiency:
    """One path that occurs in more than one layer (dive's ``EfficiencyData``)."""

    path: str
    count: int  # how many layers show the path (dive's "count" / references)
    cumulative_size: int  # bytes over all occurrences, whiteouts counting what they remove
    min_size: int
    layers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EfficiencyReport:
    """dive's figures for one image: its efficiency score, total, user and wasted bytes, and the
    paths that waste them, worst first."""

    efficiency: float
    size_bytes: int  # sum of every tar header size in every layer
    user_size_bytes: int  # the same without layer 0
    wasted_bytes: int
    user_wasted_percent: float  # wasted_bytes / user_size_bytes: inf or nan when the latter is 0
    inefficient_paths: tuple[PathEfficiency, ...]  # worst first
    layer_sizes: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def user_wasted_ratio(self) -> float | None:
        """``user_wasted_percent`` when finite, else None (no user bytes)."""
        value = self.user_wasted_percent
        return value if math.isfinite(value) else None


class _Node:
    """A node of a dive file tree: ``size`` and ``is_dir`` come from the tar header; a node
    created only as a parent has neither (dive's empty ``FileInfo{}``)."""

    __slots__ = ("children", "is_dir", "name", "size")

    def __init__(self, name: str, size: int = 0, is_dir: bool = False) -> None:
        self.name = name
        self.size = size
        self.is_dir = is_dir
        self.children: dict[str, _Node] = {}

    def copy(self) -> _Node:
        root = _Node(self.name, self.size, self.is_dir)
        stack = [(self, root)]
        while stack:
            original, clone = stack.pop()
            for name, child in original.children.items():
                new = _Node(child.name, child.size, child.is_dir)
                clone.children[name] = new
                stack.append((child, new))
        return root


def go_clean(name: str) -> str:
    """Go's ``path.Clean``: what dive applies to every member name."""
    if not name:
        return "."
    rooted = name.startswith("/")
    out: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _split(path: str) -> list[str]:
    return [p for p in path.strip("/").split("/") if p]


def _add_path(root: _Node, parts: list[str], size: int, is_dir: bool) -> None:
    """dive's ``FileTree.AddPath``: missing parents get no metadata; names starting with
    ``.wh..wh..`` are never added."""
    node = root
    last = len(parts) - 1
    for idx, name in enumerate(parts):
        child = node.children.get(name)
        if child is None:
            if name.startswith(DOUBLE_WHITEOUT_PREFIX):
                return
            child = _Node(name)
            node.children[name] = child
        node = child
        if idx == last:
            node.size, node.is_dir = size, is_dir


def _get(root: _Node, path: str) -> _Node | None:
    node = root
    for name in _split(path):
        child = node.children.get(name)
        if child is None:
            return None
        node = child
    return node


def _remove(root: _Node, path: str) -> None:
    parts = _split(path)
    if not parts:
        return
    parent = _get(root, "/".join(parts[:-1]))
    if parent is not None:
        parent.children.pop(parts[-1], None)


def _child_first(root: _Node) -> Iterator[tuple[_Node, str]]:
    """(node, dive path) children before parents, names sorted, root excluded. A node's own
    ``.wh.`` prefix is dropped from its path, as dive's ``FileNode.Path`` does."""
    stack: list[tuple[_Node, str, Iterator[str]]] = [(root, "", iter(sorted(root.children)))]
    while stack:
        node, base, names = stack[-1]
        name = next(names, None)
        if name is not None:
            child = node.children[name]
            stack.append((child, f"{base}/{name}", iter(sorted(child.children))))
            continue
        stack.pop()
        if stack:
            own = node.name.removeprefix(WHITEOUT_PREFIX)
            parent_base = base.rsplit("/", 1)[0]
            yield node, f"{parent_base}/{own}"


def _subtree_size(node: _Node) -> int:
    total = 0
    stack = [node]
    while stack:
        current = stack.pop()
        total += current.size
        stack.extend(current.children.values())
    return total


@dataclass(slots=True)
class _Record:
    """What the layers visited so far add up to for one path: the sizes seen, the layers that show
    it and when it became inefficient."""

    cumulative: int = 0
    minimum: int = -1
    count: int = 0
    layers: list[int] = field(default_factory=list)
    order: int = -1  # when it became inefficient (its second occurrence)


class EfficiencyCalculator:
    """Feed layers bottom to top (``add_layer``), then read ``report()``."""

    def __init__(self) -> None:
        self._stacked: _Node | None = None  # layers 0..k-1 stacked as dive stacks them
        self._layer0: _Node | None = None
        self._records: dict[str, _Record] = {}
        self._inefficient: list[tuple[int, str]] = []
        self._layer_sizes: list[int] = []
        self._notes: list[str] = []

    def add_layer(self, members: Iterable[TarMember]) -> None:
        index = len(self._layer_sizes)
        tree = _Node("")
        size = 0
        for member in members:
            name = go_clean(member.name)
            if name == ".":
                continue
            check_path_length(name, member.name)
            size += member.size
            parts = _split(name)
            if parts:
                _add_path(tree, parts, member.size, member.type is EntryType.DIR)
        self._layer_sizes.append(size)
        if index == 0:
            self._layer0 = tree
            self._stacked = tree.copy()
        assert self._stacked is not None
        self._visit(index, tree, self._stacked)
        if index == 0:
            assert self._layer0 is not None
            self._stack(self._stacked, self._layer0)  # dive stacks layer 0 onto its own copy
            self._layer0 = None
        else:
            self._stack(self._stacked, tree)

    def _visit(self, index: int, tree: _Node, stacked: _Node) -> None:
        for node, path in _child_first(tree):
            if node.children:
                continue  # only leaves are visited
            record = self._records.get(path)
            if record is None:
                record = self._records[path] = _Record()
            if node.name.startswith(WHITEOUT_PREFIX):
                previous = _get(stacked, path)
                if previous is None:
                    self._notes.append(
                        f"layer {index}: whiteout of {path}, which no lower layer has; as dive "
                        "does, the rest of this layer is not counted"
                    )
                    return
                size = _subtree_size(previous) if previous.is_dir else 0
            else:
                size = node.size
            record.cumulative += size
            if record.minimum < 0 or size < record.minimum:
                record.minimum = size
            record.count += 1
            record.layers.append(index)
            if record.count == 2:
                record.order = len(self._inefficient)
                self._inefficient.append((record.order, path))

    @staticmethod
    def _stack(lower: _Node, upper: _Node) -> None:
        """dive's ``FileTree.Stack``: every node of ``upper``, children first; a whiteout
        removes its target, anything else is added (metadata replaced, children kept)."""
        for node, path in _child_first(upper):
            if node.name.startswith(WHITEOUT_PREFIX):
                _remove(lower, path)
            else:
                _add_path(lower, _split(path), node.size, node.is_dir)

    def report(self) -> EfficiencyReport:
        minimum = sum(r.minimum for r in self._records.values())
        discovered = sum(r.cumulative for r in self._records.values())
        score = 1.0 if discovered == 0 else minimum / discovered
        paths = [
            PathEfficiency(p, r.count, r.cumulative, r.minimum, tuple(r.layers))
            for p, r in ((p, self._records[p]) for _, p in self._inefficient)
        ]
        # dive sorts ascending by cumulative size (insertion sort: stable for the small lists
        # its tests use) and lists from the end: worst first, ties latest-found first.
        ordered = sorted(enumerate(paths), key=lambda item: (item[1].cumulative_size, item[0]))
        worst_first = tuple(p for _, p in reversed(ordered))
        wasted = sum(p.cumulative_size for p in paths)
        total = sum(self._layer_sizes)
        user = total - (self._layer_sizes[0] if self._layer_sizes else 0)
        # Go divides floats: x/0 is +Inf, 0/0 NaN
        percent = wasted / user if user else (math.inf if wasted else math.nan)
        return EfficiencyReport(
            efficiency=score,
            size_bytes=total,
            user_size_bytes=user,
            wasted_bytes=wasted,
            user_wasted_percent=percent,
            inefficient_paths=worst_first,
            layer_sizes=tuple(self._layer_sizes),
            notes=tuple(self._notes),
        )


def efficiency(
    source: Source, image: Image, *, progress: Callable[[int], None] | None = None
) -> EfficiencyReport:
    """Read every layer once (verified against its diff_id) and compute dive's figures: the
    layers read by forked workers while this process adds the ones already read."""
    from inspect_tool.layers.image_fs import naming_layer, read_layers

    calculator = EfficiencyCalculator()
    with contextlib.closing(read_layers(source, image.layers, progress)) as layers:
        for layer, members, _digest in layers:
            with naming_layer(source, layer):
                calculator.add_layer(members)
    return calculator.report()


@dataclass(frozen=True, slots=True)
class GateResult:
    """The outcome of one of dive's CI rules: the threshold given, the image's actual figure,
    whether it passed and, if not, dive's message."""

    rule: str  # dive's rule name: lowestEfficiency, highestWastedBytes, highestUserWastedPercent
    threshold: str  # as given
    actual: str
    ok: bool
    message: str


def evaluate_gates(
    report: EfficiencyReport,
    *,
    lowest_efficiency: float | None = None,
    highest_wasted_bytes: int | None = None,
    highest_user_wasted_percent: float | None = None,
) -> list[GateResult]:
    """dive's CI rules (runtime/ci/rules.go), each only when its threshold is given."""
    results: list[GateResult] = []
    if lowest_efficiency is not None:
        ok = not lowest_efficiency > report.efficiency
        results.append(
            GateResult(
                "lowestEfficiency",
                repr(lowest_efficiency),
                repr(report.efficiency),
                ok,
                ""
                if ok
                else f"image efficiency is too low (efficiency={report.efficiency!r} < "
                f"threshold={lowest_efficiency!r})",
            )
        )
    if highest_wasted_bytes is not None:
        ok = not report.wasted_bytes > highest_wasted_bytes
        results.append(
            GateResult(
                "highestWastedBytes",
                str(highest_wasted_bytes),
                str(report.wasted_bytes),
                ok,
                ""
                if ok
                else f"too many bytes wasted (wasted-bytes={report.wasted_bytes} > "
                f"threshold={highest_wasted_bytes})",
            )
        )
    if highest_user_wasted_percent is not None:
        percent = report.user_wasted_percent
        ok = not highest_user_wasted_percent < percent  # NaN passes, as in Go
        results.append(
            GateResult(
                "highestUserWastedPercent",
                repr(highest_user_wasted_percent),
                repr(percent),
                ok,
                ""
                if ok
                else "too many bytes wasted, relative to the user bytes added "
                f"(%-user-wasted-bytes={percent!r} > threshold={highest_user_wasted_percent!r})",
            )
        )
    return results


_UNITS = {"b": 1, "": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _UNITS[_letter] = _UNITS[_letter + "b"] = 1000**_power
    _UNITS[_letter + "i"] = _UNITS[_letter + "ib"] = 1024**_power


def parse_bytes(text: str) -> int:
    """A size as go-humanize's ``ParseBytes`` reads it (what dive's CI rule accepts):
    digits (``,`` and ``.`` allowed) then an optional unit, case-insensitive: ``1B``, ``1000``,
    ``50kB`` = 50000, ``2MiB`` = 2097152; SI units are powers of 1000, IEC (``Ki``, ``KiB``…)
    powers of 1024. Raises ValueError for anything else (``1BB``, ``-1B``)."""
    digits = 0
    for char in text:
        if not (char.isdigit() or char in ".,"):
            break
        digits += 1
    number = text[:digits].replace(",", "")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r}") from None
    unit = text[digits:].strip().lower()
    factor = _UNITS.get(unit)
    if factor is None:
        raise ValueError(f"unhandled size name {unit!r} in {text!r}")
    value *= factor
    if value >= 2.0**64:
        raise ValueError(f"too large: {text!r}")
    return int(value)
