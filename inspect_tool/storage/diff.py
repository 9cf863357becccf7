"""``container diff`` on engine storage: what a container changed, as its engine reports it,
with the metadata, content hash and origin of every entry."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from inspect_tool.model.words import agree, plural
from inspect_tool.storage.detect import open_storage
from inspect_tool.storage.model import ContainerRecord, WritableLayer
from inspect_tool.storage.writable import (
    DiffKind,
    RawChange,
    file_type,
    naive_changes,
    sha256_of,
    unfollowed_features,
    walk_changes,
)


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One path a container changed, as ``container diff`` reports it: what happened, the entry's
    metadata and hash, and where it lies in the evidence."""

    kind: DiffKind
    path: str
    type: str | None  # of the entry the container left (None for a deletion)
    size: int | None  # regular files only
    mode: int | None
    uid: int | None
    gid: int | None
    mtime_ns: int | None  # for a deletion: when the whiteout was written, where one exists
    link: str | None  # a symlink's target
    sha256: str | None  # regular files, when hashes were asked for
    evidence: str | None  # where the entry (or the whiteout) lies under ROOT
    engine: str | None  # why the engine itself made this entry, if it did
    hidden: bool  # the engine's own diff leaves it out


@dataclass(slots=True)
class ContainerDiff:
    """What ``container diff`` found for one container: where and how its writable layer was read,
    the changes in the engine's order and notes on them."""

    root: str
    engine: str
    driver: str
    method: str
    container: ContainerRecord
    entries: list[DiffEntry]
    since_ns: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def shown(self) -> list[DiffEntry]:
        """What the engine's own ``diff`` prints."""
        return [e for e in self.entries if not e.hidden]


def raw_changes(layer: WritableLayer) -> list[RawChange]:
    if layer.method == "naive":
        assert layer.new_tree is not None
        changes = naive_changes(layer.new_tree, layer.old_tree)
        if layer.excluded_paths:
            changes = [c for c in changes if not _below(c.path, layer.excluded_paths)]
        if layer.rules is not None and layer.rules.by_path:
            changes.sort(key=lambda c: c.path)
        return changes
    assert layer.rules is not None
    return walk_changes(layer.upper, layer.lowers, layer.rules, exclude=layer.excluded_paths)


def _below(path: str, excluded: frozenset[str]) -> bool:
    """``path`` is one of ``excluded`` ("/proc") or inside one."""
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in excluded)


def _entry(change: RawChange, layer: WritableLayer, hashes: bool) -> DiffEntry:
    node = change.node
    engine = layer.engine_paths.get(change.path)
    hidden = change.path in layer.hidden_paths
    if node is None:
        return DiffEntry(
            change.kind, change.path, None, None, None, None, None, None, None, None, None,
            engine, hidden,
        )  # fmt: skip
    st = node.st
    where = node.layer.display(node.parts)
    if change.kind is DiffKind.DELETED:
        return DiffEntry(
            change.kind, change.path, None, None, None, None, None, st.st_mtime_ns, None, None,
            where, engine, hidden,
        )  # fmt: skip
    regular = stat.S_ISREG(st.st_mode)
    return DiffEntry(
        kind=change.kind,
        path=change.path,
        type=file_type(st.st_mode),
        size=st.st_size if regular else None,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        link=node.layer.readlink(node.parts) if stat.S_ISLNK(st.st_mode) else None,
        sha256=sha256_of(node) if hashes and regular else None,
        evidence=where,
        engine=engine,
        hidden=hidden,
    )


def diff_layer(
    layer: WritableLayer, *, hashes: bool = False, since_ns: int | None = None
) -> tuple[list[DiffEntry], list[str]]:
    """The changes of one writable layer, in the engine's order, and notes on them."""
    changes = raw_changes(layer)
    notes = []
    nodes = (c.node for c in changes if c.node is not None)
    if layer.rules is not None:
        redirected = unfollowed_features(nodes, layer.rules.unfollowed_xattrs)
    else:
        redirected = unfollowed_features(nodes)
    if redirected:
        notes.append(
            "overlay redirect or metacopy attributes: these entries' data lies in another "
            "layer, which this reader does not follow: " + ", ".join(redirected[:10])
        )
    entries = [_entry(c, layer, hashes) for c in changes]
    if since_ns is not None:
        unknown = sum(1 for e in entries if e.mtime_ns is None)
        entries = [e for e in entries if e.mtime_ns is not None and e.mtime_ns >= since_ns]
        if unknown:
            notes.append(
                f"{plural(unknown, 'change')} {agree(unknown, 'carries', 'carry')} no time (a "
                f"deletion in a {layer.method} diff leaves no whiteout) and "
                f"{agree(unknown, 'is', 'are')} left out of the timeline"
            )
    return entries, notes


def container_diff(
    root: Path, ident: str, *, hashes: bool = False, since_ns: int | None = None
) -> ContainerDiff:
    """``docker diff`` / ``podman diff`` of container ``ident`` (ID, unique ID prefix or name)
    in the engine storage at ``root``, read without changing anything."""
    storage = open_storage(root)
    try:
        container = storage.resolve_container(ident)
        layer = storage.writable(container)
        try:
            entries, notes = diff_layer(layer, hashes=hashes, since_ns=since_ns)
        finally:
            layer.close()
        return ContainerDiff(
            root=str(root),
            engine=container.engine,
            driver=container.driver,
            method=layer.method,
            container=container,
            entries=entries,
            since_ns=since_ns,
            notes=notes,
        )
    finally:
        storage.evidence.close()
