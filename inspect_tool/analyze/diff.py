"""Differences between two images: files, config and history.

Layers the two images share (the same chain ID at the same position: identical content over
an identical base) are read once, for the metadata of the paths the other layers touch, and
their files are never compared: they cannot differ. Only paths that a non-shared layer of
either image touched can differ.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inspect_tool.analyze.baseview import BaseView, cache_dir
from inspect_tool.analyze.baseview import write as write_view
from inspect_tool.analyze.filesystem import content_hasher, hardlink_hash
from inspect_tool.layers.image_fs import naming_layer, open_layer, read_layers
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.union import (
    ChangeKind,
    FileInfo,
    UnionFS,
    clean_member_path,
)
from inspect_tool.layers.whiteout import OPAQUE_MARKER, WHITEOUT_PREFIX
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

Progress = Callable[[int], None] | None


@dataclass(frozen=True, slots=True)
class FileDiff:
    """One path that differs between image A and image B: added, removed or modified, with its entry
    and content hash on each side and, when modified, what about it changed."""

    path: str
    change: str  # "added" (only in B), "removed" (only in A), "modified"
    a: FileInfo | None
    b: FileInfo | None
    a_hash: str | None = None
    b_hash: str | None = None
    differences: tuple[str, ...] = ()  # for "modified": type, size, mode, owner, link, content…


@dataclass(frozen=True, slots=True)
class ValueDiff:
    """One config setting that differs between the two images, with its value in each (None where an
    image does not set it)."""

    key: str  # "Env PATH", "Cmd", "Labels org.example", "architecture", …
    a: Any
    b: Any


@dataclass(slots=True)
class ImageDiff:
    """Everything that differs between two images (files, config settings and history steps), and
    how many bottom layers they share."""

    shared_layers: int
    files: list[FileDiff] = field(default_factory=list)
    config: list[ValueDiff] = field(default_factory=list)
    history_removed: list[str] = field(default_factory=list)  # created_by only in A
    history_added: list[str] = field(default_factory=list)  # created_by only in B

    @property
    def equal(self) -> bool:
        return not (self.files or self.config or self.history_removed or self.history_added)


def shared_prefix(a: Image, b: Image) -> int:
    """How many bottom layers the two images share (same chain IDs, in order)."""
    count = 0
    for la, lb in zip(a.layers, b.layers, strict=False):
        if la.chain_id is None or la.chain_id != lb.chain_id:
            break
        count += 1
    return count


class _Side:
    """One image's layers above the shared base, applied to a copy of the base view."""

    def __init__(self, source: Source, image: Image, base: UnionFS, start: int) -> None:
        self.source = source
        self.image = image
        self.union = base.fork()
        self.hashes: dict[str, str] = {}
        self.touched: set[str] = set()
        self.removed_trees: list[str] = []  # directories removed or replaced: their subtrees
        self.start = start

    def apply(self, progress: Progress) -> None:
        for layer in self.image.layers[self.start :]:
            with open_layer(self.source, layer, progress=progress) as opened:
                hook = content_hasher(opened.reader.iter_data, self.hashes)
                result = self.union.apply(layer.index, opened.reader, record=True, on_entry=hook)
                opened.finish(layer, label=self.source.label)
            for change in result.changes:
                self.touched.add(change.path)
                previous = change.previous
                if (
                    previous is not None
                    and previous.type is EntryType.DIR
                    and (
                        change.kind is ChangeKind.DELETED
                        or change.info is None
                        or change.info.type is not EntryType.DIR
                    )
                ):
                    self.removed_trees.append(change.path)


def diff_images(
    source_a: Source,
    image_a: Image,
    source_b: Source,
    image_b: Image,
    *,
    progress: Progress = None,
) -> ImageDiff:
    shared = shared_prefix(image_a, image_b)
    result = ImageDiff(shared)
    result.config = diff_config(image_a.config.data, image_b.config.data)
    result.history_removed, result.history_added = diff_history(image_a, image_b)
    if shared == len(image_a.layers) == len(image_b.layers):
        return result  # the same layers: the same files
    # The small layers above the base first: the paths they touch are the only ones whose
    # base entries (and content) can matter.
    names_a, trees_a = _names(source_a, image_a, shared, progress)
    names_b, trees_b = _names(source_b, image_b, shared, progress)
    touched = names_a | names_b
    base, base_hashes = _base_view(source_a, image_a, shared, touched, trees_a | trees_b, progress)
    side_a = _Side(source_a, image_a, base, shared)
    side_b = _Side(source_b, image_b, base, shared)
    side_a.apply(progress)
    side_b.apply(progress)
    paths = side_a.touched | side_b.touched
    for root in side_a.removed_trees + side_b.removed_trees:
        paths.update(info.path for info in base.walk(root))
    pending: list[tuple[str, FileInfo, FileInfo]] = []
    for path in sorted(paths):
        a, b = side_a.union.get(path), side_b.union.get(path)
        if a is None and b is None:
            continue
        if a is None:
            result.files.append(FileDiff(path, "added", None, b, None, side_b.hashes.get(path)))
            continue
        if b is None:
            result.files.append(FileDiff(path, "removed", a, None, side_a.hashes.get(path)))
            continue
        if a.layer < shared and b.layer < shared:
            continue  # both still the shared base's entry
        pending.append((path, a, b))
    for path, a, b in pending:
        ha = side_a.hashes.get(path) if a.layer >= shared else base_hashes.get(path)
        hb = side_b.hashes.get(path) if b.layer >= shared else base_hashes.get(path)
        differences = _differences(a, b, ha, hb)
        if differences:
            result.files.append(FileDiff(path, "modified", a, b, ha, hb, differences))
    result.files.sort(key=lambda f: f.path)
    return result


def _base_view(
    source: Source,
    image: Image,
    shared: int,
    touched: set[str],
    trees: set[str],
    progress: Progress,
) -> tuple[UnionFS, dict[str, str]]:
    """The merged view of the shared base (or of the part the touched paths need) and the
    content hashes of its files: from the base-view cache when this base was read before,
    else by one verified pass over the base layers, which then fills the cache."""
    if not shared:
        return UnionFS(), {}
    chain_id = image.layers[shared - 1].chain_id
    view = BaseView.open(chain_id) if chain_id is not None else None
    if view is not None:
        try:
            return view.partial(touched, trees)
        finally:
            view.close()
    caching = chain_id is not None and cache_dir() is not None
    base = UnionFS()
    hashes: dict[str, str] = {}
    for layer in image.layers[:shared]:
        with open_layer(source, layer, progress=progress) as opened:
            hook = content_hasher(
                opened.reader.iter_data, hashes, only=None if caching else touched
            )
            base.apply(layer.index, opened.reader, record=False, on_entry=hook)
            opened.finish(layer, label=source.label)
    if not caching:
        # a touched hard link whose target was not hashed (not touched): its content's hash
        for path in sorted(touched):
            info = base.get(path)
            if info is not None and info.type is EntryType.HARDLINK and path not in hashes:
                digest = hardlink_hash(source, image, base, info)
                if digest is not None:
                    hashes[path] = digest
    if caching and chain_id is not None:
        content = (EntryType.FILE, EntryType.HARDLINK)
        live = {i.path for i in base.walk() if i.type in content and i.path in hashes}
        write_view(chain_id, base, {p: hashes[p] for p in live})
    return base, hashes


def _names(
    source: Source, image: Image, start: int, progress: Progress
) -> tuple[set[str], set[str]]:
    """Paths the layers from ``start`` up name, as "/a/b"; and the paths whose whole base
    subtree they may remove: whiteout targets, directories an opaque marker empties, and
    paths they give a non-directory entry."""
    names: set[str] = set()
    trees: set[str] = set()
    with contextlib.closing(read_layers(source, image.layers[start:], progress)) as layers:
        for layer, members, _digest in layers:
            with naming_layer(source, layer):
                _add_names(members, names, trees)
    return names, trees


def _add_names(members: list[TarMember], names: set[str], trees: set[str]) -> None:
    """One layer's part of ``_names``."""
    for member in members:
        path = clean_member_path(member.name)
        if not path:
            continue
        parent, _, base = path.rpartition("/")
        if base == OPAQUE_MARKER:
            trees.add(f"/{parent}")
            continue
        whiteout = base.startswith(WHITEOUT_PREFIX)
        if whiteout:
            base = base[len(WHITEOUT_PREFIX) :]
        full = f"/{parent}/{base}" if parent else f"/{base}"
        names.add(full)
        if whiteout or member.type is not EntryType.DIR:
            trees.add(full)


_CONTENT = (EntryType.FILE, EntryType.HARDLINK)
_LINKS = (EntryType.SYMLINK, EntryType.HARDLINK)


def _differences(a: FileInfo, b: FileInfo, ha: str | None, hb: str | None) -> tuple[str, ...]:
    found = []
    if a.type is not b.type:
        found.append("type")
    if a.size != b.size and a.type in _CONTENT and b.type in _CONTENT:
        found.append("size")  # a hard link's size is its content's
    if a.mode != b.mode:
        found.append("mode")
    if (a.uid, a.gid) != (b.uid, b.gid):
        found.append("owner")
    if a.linkname != b.linkname and a.type in _LINKS and b.type in _LINKS:
        found.append("link")
    if (a.devmajor, a.devminor) != (b.devmajor, b.devminor):
        found.append("device")
    if ha is not None and hb is not None and ha != hb and "size" not in found:
        found.append("content")
    if found and a.mtime != b.mtime:
        found.append("mtime")
    return tuple(found)


_LIST_KEYS = ("Cmd", "Entrypoint", "Shell", "OnBuild")
_TOP_KEYS = ("architecture", "os", "variant", "os.version", "author")


def diff_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[ValueDiff]:
    """Config differences that change what a container does, key by key."""
    found: list[ValueDiff] = []
    for key in _TOP_KEYS:
        if a.get(key) != b.get(key):
            found.append(ValueDiff(key, a.get(key), b.get(key)))
    ca: Mapping[str, Any] = a.get("config") or {}
    cb: Mapping[str, Any] = b.get("config") or {}
    env_a, env_b = _env(ca.get("Env")), _env(cb.get("Env"))
    for name in sorted(env_a.keys() | env_b.keys()):
        if env_a.get(name) != env_b.get(name):
            found.append(ValueDiff(f"Env {name}", env_a.get(name), env_b.get(name)))
    for key in ("Labels", "ExposedPorts", "Volumes"):
        ma, mb = ca.get(key) or {}, cb.get(key) or {}
        if not isinstance(ma, dict) or not isinstance(mb, dict):
            if ma != mb:
                found.append(ValueDiff(key, ma, mb))
            continue
        for name in sorted(ma.keys() | mb.keys()):
            va = ma.get(name) if name in ma else None
            vb = mb.get(name) if name in mb else None
            if (name in ma) != (name in mb) or va != vb:
                found.append(
                    ValueDiff(
                        f"{key} {name}", va if name in ma else None, vb if name in mb else None
                    )
                )
    seen = {"Env", "Labels", "ExposedPorts", "Volumes"}
    for key in sorted((ca.keys() | cb.keys()) - seen):
        if ca.get(key) != cb.get(key) and (ca.get(key) or cb.get(key)):
            found.append(ValueDiff(key, ca.get(key), cb.get(key)))
    return found


def _env(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in value or []:
        name, _, val = str(item).partition("=")
        out[name] = val
    return out


def diff_history(a: Image, b: Image) -> tuple[list[str], list[str]]:
    """History steps (created_by) only in A and only in B, in order."""
    steps_a = [h.created_by or "" for h in a.history]
    steps_b = [h.created_by or "" for h in b.history]
    removed: list[str] = []
    added: list[str] = []
    matcher = difflib.SequenceMatcher(a=steps_a, b=steps_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed.extend(steps_a[i1:i2])
        if tag in ("replace", "insert"):
            added.extend(steps_b[j1:j2])
    return removed, added
