"""A container's writable layer read from engine storage: a userspace union view, and the
A/C/D changes exactly as ``docker diff`` and ``podman diff`` compute them.

Nothing is mounted. The layer directories are read through ``LayerDir`` (descriptors,
``O_NOFOLLOW``, lookups confined to each layer) and merged here with the rules of the union
filesystem that wrote them:

- overlay: a whiteout is a character device 0/0; a directory whose lower contents are
  hidden carries ``trusted.overlay.opaque=y`` (``user.overlay.opaque=y`` when the mount used
  ``userxattr``, as rootless engines do);
- AUFS: a whiteout is a file ``.wh.NAME``; an opaque directory holds ``.wh..wh..opq``;
  ``.wh..wh.*`` entries are AUFS's own metadata (hard-link and orphan directories);
- vfs: every layer is a full copy of the tree; nothing is a whiteout.

Two ways of computing changes, the engines' own:

- ``walk_changes`` is moby's and containers/storage's ``changes()`` (``OverlayChanges`` for
  overlay, ``Changes`` for AUFS): walk the upper directory; a whiteout (or an opaque
  directory) is D; an entry some lower layer also has is C, unless it is a directory with the
  same size, mode and mtime (then nothing); anything else is A; the parent directory of an A
  or D is added as C (moby: the parent only; containers/storage: every ancestor not already
  listed). ``Rules`` holds what differs between the engines; dockscope's runtime is one more
  (``runtime_lab/storage/driver.py``), which looks the lower layers up as their union shows
  them instead of one by one (``Rules.lower_union``: no symlink followed, their whiteouts and
  opaque directories honoured).
- ``naive_changes`` is ``ChangesDirs``, used for vfs (and Docker's overlay v1): compare two
  full trees entry by entry (mode, owner, device, and for non-directories mtime and size;
  the ``security.capability`` xattr); a directory with changes inside is C.

Lookups into lower layers follow symlinks where the engines' ``os.Stat`` does, but only
inside each layer directory. Where an engine fails (moby and containers/storage stop with
"not a directory" when a lower layer holds a file where the upper has a directory), the
entry is taken as added instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from inspect_tool.layers.whiteout import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    OPAQUE_VALUE,
    OPAQUE_XATTRS,
    OVERLAY_XATTR_PREFIXES,
    UNFOLLOWED_XATTRS,
    WHITEOUT_PREFIX,
    is_overlay_whiteout,
)
from inspect_tool.storage.evidence import LayerDir

CAPABILITY_XATTR = "security.capability"
_CHUNK = 1 << 20


class Whiteouts(StrEnum):
    OVERLAY = "overlay"
    AUFS = "aufs"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Rules:
    """What the engines' ``changes()`` do differently (dockscope's own runtime is one more
    engine: ``runtime_lab/storage/driver.py``)."""

    whiteouts: Whiteouts
    # an opaque directory is D: moby always; containers/storage only when a lower layer has it
    opaque_needs_lower: bool
    # containers/storage: a lower layer's whiteout of the path (or a parent) makes it new
    lower_whiteouts: bool
    # containers/storage: every ancestor not yet listed becomes C; moby: the parent only
    all_ancestors: bool
    # containers/storage accepts a one-second rounding up of either mtime
    rounded_times: bool
    # the lower layers as their union shows them (UnionView, as the kernel mounts them: their
    # whiteouts and opaque directories honoured, no symlink followed), not layer by layer: a
    # whiteout is D only over something shown, an opaque directory is A or C like any other
    # and each name it hides is D (dockscope's runtime)
    lower_union: bool = False
    # a directory with the same size, mode and mtime below is no change by itself (the
    # engines); dockscope's runtime lists every directory overlay copied up
    compare_dirs: bool = True
    # the prefixes of overlay's own xattrs: without ``userxattr`` (dockscope's runtime)
    # ``user.overlay.*`` is content
    xattr_prefixes: tuple[str, ...] = OVERLAY_XATTR_PREFIXES
    # listed sorted by path (dockscope's runtime), not in walk order
    by_path: bool = False

    @property
    def opaque_xattrs(self) -> tuple[str, ...]:
        return tuple(prefix + "opaque" for prefix in self.xattr_prefixes)

    @property
    def unfollowed_xattrs(self) -> tuple[str, ...]:
        return tuple(p + f for p in self.xattr_prefixes for f in ("redirect", "metacopy"))


MOBY_OVERLAY = Rules(Whiteouts.OVERLAY, False, False, False, False)
MOBY_AUFS = Rules(Whiteouts.AUFS, False, False, False, False)
CSTORAGE_OVERLAY = Rules(Whiteouts.OVERLAY, True, True, True, True)


class DiffKind(StrEnum):
    ADDED = "A"
    CHANGED = "C"
    DELETED = "D"


@dataclass(frozen=True, slots=True)
class LayerNode:
    """One entry of a tree: where it lies in the evidence and its metadata."""

    parts: tuple[str, ...]
    st: os.stat_result
    layer: LayerDir
    below: tuple[LayerDir, ...] = ()  # for a directory of a union: every layer merging here

    @property
    def path(self) -> str:
        return "/" + "/".join(self.parts)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


@dataclass(frozen=True, slots=True)
class RawChange:
    """One change in a writable layer before it is reported: its kind, its path and the entry or
    whiteout behind it."""

    kind: DiffKind
    path: str
    node: LayerNode | None  # the upper entry (A, C) or the whiteout (D), when there is one


class LayerTree(Protocol):
    """A directory tree: a plain layer directory or a union of several."""

    prune_same_inode: bool

    def root(self) -> LayerNode: ...

    def children(self, node: LayerNode) -> list[LayerNode]: ...


def is_opaque(
    layer: LayerDir,
    parts: tuple[str, ...],
    whiteouts: Whiteouts,
    xattrs: tuple[str, ...] = OPAQUE_XATTRS,
) -> bool:
    if whiteouts is Whiteouts.OVERLAY:
        return any(layer.getxattr(parts, name) == OPAQUE_VALUE for name in xattrs)
    if whiteouts is Whiteouts.AUFS:
        return layer.lstat((*parts, OPAQUE_MARKER)) is not None
    return False


# -- trees ---------------------------------------------------------------------------------------


class CopyTree:
    """One directory as a tree (a vfs layer: a full copy)."""

    prune_same_inode = True

    def __init__(self, layer: LayerDir) -> None:
        self.layer = layer

    def root(self) -> LayerNode:
        return LayerNode((), os.fstat(self.layer.fd), self.layer, (self.layer,))

    def children(self, node: LayerNode) -> list[LayerNode]:
        found = []
        for name in self.layer.listdir(node.parts):
            parts = (*node.parts, name)
            st = self.layer.lstat(parts)
            if st is not None:
                below = (self.layer,) if stat.S_ISDIR(st.st_mode) else ()
                found.append(LayerNode(parts, st, self.layer, below))
        return found


class UnionView:
    """What a union mount of ``layers`` (topmost first) shows, computed from the layer
    directories: the topmost layer holding a name decides; a whiteout hides the name in the
    layers below it; a non-directory hides everything below it; a directory merges with the
    directories below it down to the first opaque one. An entry is never hidden by a whiteout
    of its own layer.

    ``opaque_xattrs``: the attributes that mark an opaque directory (a runtime that mounts
    without ``userxattr`` honours ``trusted.overlay.opaque`` only); ``opaque_root``: whether
    an opaque mark on a layer's root hides the layers below it."""

    prune_same_inode = False

    def __init__(
        self,
        layers: list[LayerDir],
        whiteouts: Whiteouts,
        *,
        opaque_xattrs: tuple[str, ...] = OPAQUE_XATTRS,
        opaque_root: bool = True,
    ) -> None:
        self.layers = layers
        self.whiteouts = whiteouts
        self.opaque_xattrs = opaque_xattrs
        self.opaque_root = opaque_root

    def root(self) -> LayerNode:
        top = self.layers[0]
        below: list[LayerDir] = []
        for layer in self.layers:
            below.append(layer)
            if self.opaque_root and is_opaque(layer, (), self.whiteouts, self.opaque_xattrs):
                break
        return LayerNode((), os.fstat(top.fd), top, tuple(below))

    def _hidden_name(self, name: str) -> bool:
        return self.whiteouts is Whiteouts.AUFS and name.startswith(WHITEOUT_PREFIX)

    def children(self, node: LayerNode) -> list[LayerNode]:
        names: set[str] = set()
        for layer in node.below:
            names.update(n for n in layer.listdir(node.parts) if not self._hidden_name(n))
        found = []
        for name in sorted(names):
            child = self.child(node, name)
            if child is not None:
                found.append(child)
        return found

    def child(self, node: LayerNode, name: str) -> LayerNode | None:
        parts = (*node.parts, name)
        shown: tuple[LayerDir, os.stat_result] | None = None
        below: list[LayerDir] = []
        for layer in node.below:
            st = layer.lstat(parts)
            if st is not None and self.whiteouts is Whiteouts.OVERLAY and is_overlay_whiteout(st):
                break
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    if shown is None:
                        shown = (layer, st)
                    break  # a non-directory hides what lies below; below a directory, it is hidden
                shown = shown or (layer, st)
                below.append(layer)
                if is_opaque(layer, parts, self.whiteouts, self.opaque_xattrs):
                    break
            if self.whiteouts is Whiteouts.AUFS and (
                layer.lstat((*node.parts, WHITEOUT_PREFIX + name)) is not None
            ):
                break
        if shown is None:
            return None
        return LayerNode(parts, shown[1], shown[0], tuple(below))

    def lookup(self, parts: tuple[str, ...]) -> LayerNode | None:
        node: LayerNode | None = self.root()
        for part in parts:
            if node is None or not node.is_dir:
                return None
            node = self.child(node, part)
        return node


def walk_tree(tree: LayerTree) -> Iterator[LayerNode]:
    """Every entry below the root, parents first, names sorted."""
    stack: list[Iterator[LayerNode]] = [iter(tree.children(tree.root()))]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        yield node
        if node.is_dir:
            stack.append(iter(tree.children(node)))


# -- moby / containers/storage changes() ---------------------------------------------------------


def _same_time(a_ns: int, b_ns: int, rounded: bool) -> bool:
    a_sec, a_nsec = divmod(a_ns, 1_000_000_000)
    b_sec, b_nsec = divmod(b_ns, 1_000_000_000)
    if a_sec == b_sec and a_nsec == b_nsec:
        return True
    if not rounded:
        return a_sec == b_sec and (a_nsec == 0 or b_nsec == 0)
    if a_nsec != 0 and b_nsec != 0:
        return False
    if a_sec == b_sec:
        return True
    return (b_nsec == 0 and a_sec == b_sec - 1) or (a_nsec == 0 and a_sec - 1 == b_sec)


def _ancestors(parts: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Parent, grandparent, … up to (not including) the root."""
    for end in range(len(parts) - 1, 0, -1):
        yield parts[:end]


def _lower_whiteout(layer: LayerDir, parts: tuple[str, ...]) -> bool:
    st = layer.stat(parts)
    return st is not None and is_overlay_whiteout(st)


def _deleted(
    upper: LayerDir,
    parts: tuple[str, ...],
    st: os.stat_result,
    lowers: list[LayerDir],
    rules: Rules,
) -> tuple[str, ...] | None:
    """The path a whiteout (or an opaque directory) deletes, or None."""
    if rules.whiteouts is Whiteouts.AUFS:
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX):
            return (*parts[:-1], name[len(WHITEOUT_PREFIX) :])
        return None
    if is_overlay_whiteout(st):
        return parts
    if not stat.S_ISDIR(st.st_mode) or not is_opaque(
        upper, parts, Whiteouts.OVERLAY, rules.opaque_xattrs
    ):
        return None
    if not rules.opaque_needs_lower:
        return parts
    for layer in lowers:
        below = layer.stat(parts)
        if below is not None:
            return None if is_overlay_whiteout(below) else parts
        if any(_lower_whiteout(layer, d) for d in _ancestors(parts)):
            return None
    return None


def walk_changes(
    upper: LayerDir, lowers: list[LayerDir], rules: Rules, *, exclude: Collection[str] = ()
) -> list[RawChange]:
    """The engines' ``changes(layers, rw)``: ``lowers`` topmost first. Walk order (parents
    first, names sorted), with added parent directories placed before the entry, or sorted
    by path (``rules.by_path``). Paths in ``exclude`` ("/proc") are left out with everything
    below them."""
    view = _lower_view(lowers, rules) if rules.lower_union else None
    changes: list[RawChange] = []
    changed_dirs: set[tuple[str, ...]] = set()
    for parts, st in upper.walk(prune=_pruned(exclude)):
        if rules.whiteouts is Whiteouts.AUFS:
            if len(parts) == 1 and parts[0].startswith(AUFS_META_PREFIX):
                continue  # moby's aufsMetadataSkip: "/.wh..wh.*"
            if parts[-1] == OPAQUE_MARKER:
                continue  # the opaque marker deletes nothing by itself
        node = LayerNode(parts, st, upper)
        if rules.lower_union:
            found = _against_view(upper, node, view, rules)
        else:
            found = _against_layers(upper, node, lowers, rules)
        if not found:
            continue
        change = found[0]
        if stat.S_ISDIR(st.st_mode):
            changed_dirs.add(parts)
        if change.kind is not DiffKind.CHANGED:
            tail: list[RawChange] = []
            for parent in _ancestors(parts):
                if parent not in changed_dirs:
                    tail.insert(0, _parent_change(upper, parent))
                    changed_dirs.add(parent)
                if not rules.all_ancestors:
                    break
            changes += tail
        changes += found
    if rules.by_path:
        changes.sort(key=lambda c: c.path)
    return changes


def _pruned(exclude: Collection[str]) -> Callable[[tuple[str, ...]], bool] | None:
    if not exclude:
        return None
    return lambda parts: "/" + "/".join(parts) in exclude


def _against_layers(
    upper: LayerDir, node: LayerNode, lowers: list[LayerDir], rules: Rules
) -> list[RawChange]:
    """The engines' way: the lower layers looked at one by one, topmost first."""
    parts, st = node.parts, node.st
    deleted = _deleted(upper, parts, st, lowers, rules)
    if deleted is not None:
        return [RawChange(DiffKind.DELETED, "/" + "/".join(deleted), node)]
    kind = DiffKind.ADDED
    for layer in lowers:
        if rules.lower_whiteouts and (
            _lower_whiteout(layer, parts)
            or any(_lower_whiteout(layer, d) for d in _ancestors(parts))
        ):
            break
        below = layer.stat(parts)
        if below is None:
            continue
        if (
            rules.compare_dirs
            and stat.S_ISDIR(below.st_mode)
            and stat.S_ISDIR(st.st_mode)
            and below.st_size == st.st_size
            and below.st_mode == st.st_mode
            and _same_time(st.st_mtime_ns, below.st_mtime_ns, rules.rounded_times)
        ):
            return []  # the same directory: not a change by itself
        kind = DiffKind.CHANGED
        break
    return [RawChange(kind, node.path, node)]


def _lower_view(lowers: list[LayerDir], rules: Rules) -> UnionView | None:
    if not lowers:
        return None
    return UnionView(lowers, rules.whiteouts, opaque_xattrs=rules.opaque_xattrs, opaque_root=False)


def _against_view(
    upper: LayerDir, node: LayerNode, view: UnionView | None, rules: Rules
) -> list[RawChange]:
    """The lower layers as their union shows them: a whiteout deletes what is shown, an
    opaque directory deletes each name shown below it that it does not hold itself (the
    deletions carry the directory: its time, its place)."""
    below = view.lookup(node.parts) if view is not None else None
    if rules.whiteouts is Whiteouts.OVERLAY and is_overlay_whiteout(node.st):
        return [RawChange(DiffKind.DELETED, node.path, node)] if below is not None else []
    found = [RawChange(DiffKind.CHANGED if below is not None else DiffKind.ADDED, node.path, node)]
    if (
        view is not None
        and below is not None
        and below.is_dir
        and node.is_dir
        and is_opaque(upper, node.parts, rules.whiteouts, rules.opaque_xattrs)
    ):
        present = set(upper.listdir(node.parts))
        hidden = sorted({child.parts[-1] for child in view.children(below)} - present)
        found += [RawChange(DiffKind.DELETED, f"{node.path}/{name}", node) for name in hidden]
    return found


def _parent_change(upper: LayerDir, parts: tuple[str, ...]) -> RawChange:
    st = upper.lstat(parts)
    return RawChange(
        DiffKind.CHANGED, "/" + "/".join(parts), LayerNode(parts, st, upper) if st else None
    )


# -- ChangesDirs (naive diff) --------------------------------------------------------------------


def _stat_different(old: os.stat_result, new: os.stat_result, rounded: bool) -> bool:
    if (
        old.st_mode != new.st_mode
        or old.st_uid != new.st_uid
        or old.st_gid != new.st_gid
        or old.st_rdev != new.st_rdev
    ):
        return True
    # the engines' test: "mode & S_IFDIR != S_IFDIR" (block devices and sockets pass it too)
    if old.st_mode & stat.S_IFDIR != stat.S_IFDIR:
        same = _same_time(old.st_mtime_ns, new.st_mtime_ns, rounded)
        return not same or old.st_size != new.st_size
    return False


@dataclass(slots=True)
class _Frame:
    """A directory being compared by ``naive_changes``: its new and old entries, where its changes
    start, the children still to compare and the old ones gone."""

    new: LayerNode
    old: LayerNode | None
    start: int
    added: bool
    pending: list[tuple[LayerNode, LayerNode | None]] = field(default_factory=list)
    deleted: list[LayerNode] = field(default_factory=list)


def naive_changes(
    new: LayerTree, old: LayerTree | None, *, rounded_times: bool = True
) -> list[RawChange]:
    """``ChangesDirs(new, old)``: both trees compared entry by entry (``old`` None: an empty
    tree). Within a directory the entries come in name order and deletions after the rest
    (the engines use Go's map order, which is random)."""
    changes: list[RawChange] = []
    stack = [_frame(new, old, new.root(), old.root() if old else None, changes, root=True)]
    while stack:
        frame = stack[-1]
        if frame.pending:
            child_new, child_old = frame.pending.pop(0)
            if child_old is not None and (
                _stat_different(child_old.st, child_new.st, rounded_times)
                or _capability(child_old) != _capability(child_new)
            ):
                changes.append(RawChange(DiffKind.CHANGED, child_new.path, child_new))
                stack.append(_frame(new, old, child_new, child_old, changes, added=True))
            else:
                stack.append(_frame(new, old, child_new, child_old, changes))
            continue
        stack.pop()
        changes += [RawChange(DiffKind.DELETED, d.path, None) for d in frame.deleted]
        if len(changes) > frame.start and frame.new.is_dir and not frame.added and frame.new.parts:
            changes.insert(frame.start, RawChange(DiffKind.CHANGED, frame.new.path, frame.new))
    return changes


def _frame(
    new: LayerTree,
    old: LayerTree | None,
    node: LayerNode,
    old_node: LayerNode | None,
    changes: list[RawChange],
    *,
    added: bool = False,
    root: bool = False,
) -> _Frame:
    start = len(changes)
    if old_node is None and not root:
        changes.append(RawChange(DiffKind.ADDED, node.path, node))
        added = True
    frame = _Frame(node, old_node, start, added)
    if not node.is_dir:
        return frame
    old_children: dict[str, LayerNode] = {}
    if old is not None and old_node is not None and old_node.is_dir:
        old_children = {c.parts[-1]: c for c in old.children(old_node)}
    for child in new.children(node):
        name = child.parts[-1]
        previous = old_children.pop(name, None)
        if (
            previous is not None
            and old is not None
            and new.prune_same_inode
            and old.prune_same_inode
            and (previous.st.st_dev, previous.st.st_ino) == (child.st.st_dev, child.st.st_ino)
        ):
            continue  # the same inode on the same device: unchanged (the engines prune it)
        frame.pending.append((child, previous))
    frame.deleted = [old_children[n] for n in sorted(old_children)]
    return frame


def _capability(node: LayerNode) -> bytes | None:
    return node.layer.getxattr(node.parts, CAPABILITY_XATTR)


# -- helpers for reports -------------------------------------------------------------------------


def file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "other"


def sha256_of(node: LayerNode) -> str:
    digest = hashlib.sha256()
    fd = node.layer.open_file(node.parts)
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def unfollowed_features(
    nodes: Iterable[LayerNode], names: tuple[str, ...] = UNFOLLOWED_XATTRS
) -> list[str]:
    """Paths carrying overlay redirect or metacopy xattrs (their data lies elsewhere)."""
    found = []
    for node in nodes:
        for name in names:
            if node.layer.getxattr(node.parts, name) is not None:
                found.append(f"{node.path} ({name})")
    return found
