"""Questions about an image's files: what each layer changed, what a path holds after layer N,
a file's bytes, and every version of a path across layers (deleted and overwritten ones too)."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO, cast

from inspect_tool.diskio import write_to
from inspect_tool.errors import DockscopeError, UsageError
from inspect_tool.layers.image_fs import merged_view, open_layer
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.union import (
    Anomaly,
    FileInfo,
    LayerChanges,
    UnionFS,
    clean_member_path,
)
from inspect_tool.model.image import Image
from inspect_tool.model.resolve import (
    DIRECTORY,
    MAX_SYMLINKS,
    NOT_DIRECTORY,
    Node,
    Reason,
    Refusal,
    symlink,
)
from inspect_tool.model.resolve import resolve as resolve_path
from inspect_tool.sources.source import Source

Progress = Callable[[int], None] | None


class PathNotFoundError(UsageError):
    """The path does not exist in the image (at the layer asked for). ``missing`` is the
    first component found missing (the path itself, or one of its parents)."""

    def __init__(
        self, message: str, *, missing: str | None = None, subject: str | None = None
    ) -> None:
        super().__init__(message, subject=subject)
        self.missing = missing


@dataclass(frozen=True, slots=True)
class LayerRow:
    """What one layer did to the filesystem, as the layers table shows it: how many entries it
    added, modified and deleted, its sizes, and the lower-layer bytes it made invisible."""

    index: int
    created_by: str | None
    diff_id: str | None
    blob_size: int | None
    content_size: int  # bytes of regular-file content in the layer
    added: int
    modified: int
    deleted: int
    wasted: int  # bytes of lower-layer files this layer replaced or deleted
    anomalies: tuple[Anomaly, ...]


def layer_rows(source: Source, image: Image, *, progress: Progress = None) -> list[LayerRow]:
    """One row per layer: what it added, modified and deleted, and what it made invisible."""
    changes: list[LayerChanges] = []
    merged_view(source, image, on_layer=changes.append, progress=progress)
    return rows_of(image, changes)


def changes_by_layer(
    source: Source,
    image: Image,
    *,
    upto: int | None = None,
    on_remove: Callable[[FileInfo, int, str], None] | None = None,
    progress: Progress = None,
) -> list[LayerChanges]:
    """The changes of every layer up to ``upto`` (default: all), each change recorded, in
    one pass over the layers, bottom up. ``on_remove`` sees every entry a layer deletes or
    replaces (those below a deleted directory too), as ``UnionFS`` reports them."""
    changes: list[LayerChanges] = []
    merged_view(
        source,
        image,
        upto=upto,
        record=True,
        on_remove=on_remove,
        on_layer=changes.append,
        progress=progress,
    )
    return changes


def rows_of(image: Image, changes: list[LayerChanges]) -> list[LayerRow]:
    """``layer_rows`` from changes already computed (``changes_by_layer``)."""
    rows = []
    for layer, result in zip(image.layers, changes, strict=True):
        rows.append(
            LayerRow(
                index=layer.index,
                created_by=layer.created_by,
                diff_id=str(layer.diff_id) if layer.diff_id else None,
                blob_size=layer.size,
                content_size=result.size,
                added=result.added,
                modified=result.modified,
                deleted=result.deleted,
                wasted=result.wasted,
                anomalies=tuple(result.anomalies),
            )
        )
    return rows


def check_layer(image: Image, layer: int | None, *, label: str, option: str = "--layer") -> int:
    """``layer`` (default: the top one), refused unless the image has it; ``option`` names
    it in the error (``--at`` where it means the filesystem after that layer)."""
    last = len(image.layers) - 1
    if layer is None:
        return last
    if not 0 <= layer <= last:
        raise UsageError(f"{option} {layer}: the image has layers 0 to {last}", subject=label)
    return layer


@dataclass(slots=True)
class LayerDiff:
    """What one layer changed relative to the layers below it, with the sha256 of each regular
    file's content it stores (when hashing was asked for)."""

    layer: int
    changes: LayerChanges
    hashes: dict[str, str] = field(default_factory=dict)  # path → sha256 of content


def layer_changes(
    source: Source, image: Image, index: int, *, hashes: bool = True, progress: Progress = None
) -> LayerDiff:
    """What layer ``index`` changed relative to the layers below it."""
    check_layer(image, index, label=source.label)
    union = merged_view(source, image, upto=index - 1, progress=progress) if index else UnionFS()
    layer = image.layers[index]
    content: dict[str, str] = {}
    with open_layer(source, layer, progress=progress) as opened:
        hook = content_hasher(opened.reader.iter_data, content) if hashes else None
        result = union.apply(index, opened.reader, record=True, on_entry=hook)
        opened.finish(layer, label=source.label)
    return LayerDiff(index, result, content)


def content_hasher(
    data: Callable[[], Iterator[bytes]], into: dict[str, str], *, only: set[str] | None = None
) -> Callable[[TarMember, str], None]:
    """An ``on_entry`` hook that records the sha256 of each regular file's content (of the
    paths in ``only``, when given). A hard link's content is that of the file it names (hashed
    before it, in the same pass or already in ``into``): recorded under the link's path too."""

    def hook(member: TarMember, path: str) -> None:
        if member.type is EntryType.HARDLINK and (only is None or path in only):
            target = into.get("/" + (clean_member_path(member.linkname) or ""))
            if target is not None:
                into[path] = target
            else:
                into.pop(path, None)
        if member.type is EntryType.FILE and (only is None or path in only):
            digest = hashlib.sha256()
            for chunk in data():
                digest.update(chunk)
            into[path] = "sha256:" + digest.hexdigest()

    return hook


def resolve(union: UnionFS, path: str, *, follow_last: bool = True) -> FileInfo:
    """Look a path up as the kernel would inside the image: symlinks (absolute ones too)
    resolve as if the image root were ``/``, ``..`` never climbs above it."""

    def lookup(parts: tuple[str, ...]) -> Node | None:
        info = union.get("/" + "/".join(parts))
        if info is None:
            return None
        linkname = _symlink_target(union, info)
        if linkname is not None:
            return symlink(linkname)
        return DIRECTORY if info.type is EntryType.DIR else NOT_DIRECTORY

    found = resolve_path(path, lookup, follow_last=follow_last)
    if isinstance(found, Refusal):
        candidate = "/" + "/".join(found.at)
        if found.reason is Reason.MISSING:
            raise PathNotFoundError(
                f"no such file or directory in the image: {candidate}", missing=candidate
            )
        if found.reason is Reason.LOOP:
            raise PathNotFoundError(f"too many levels of symbolic links resolving {path}")
        raise PathNotFoundError(f"not a directory in the image: {candidate}")
    final = union.get("/" + "/".join(found.parts))
    assert final is not None
    return final


def _symlink_target(union: UnionFS, info: FileInfo) -> str | None:
    """What ``info`` points at as a symlink, or None when it is not one. A hard link to a
    symlink is a symlink too: Docker, containerd and tar extract it with link(2), which does
    not follow the symlink, so the name becomes a second symlink with the same target (relative
    targets then resolve from the hard link's own directory)."""
    for _ in range(MAX_SYMLINKS):
        if info.type is EntryType.SYMLINK:
            return info.linkname
        if info.type is not EntryType.HARDLINK:
            return None
        target = union.get("/" + (clean_member_path(info.linkname) or ""))
        if target is None:
            return None
        info = target
    return None


def view_at(
    source: Source, image: Image, layer: int | None, *, progress: Progress = None
) -> UnionFS:
    """The filesystem as it stands after ``layer`` (``ls --at``, ``cat --at``)."""
    upto = check_layer(image, layer, label=source.label, option="--at")
    return merged_view(source, image, upto=upto, progress=progress)


def read_file(
    source: Source,
    image: Image,
    path: str,
    out: BinaryIO,
    *,
    layer: int | None = None,
    progress: Progress = None,
) -> FileInfo:
    """Write the bytes of ``path`` (symlinks followed inside the image) as of ``layer``.

    When the path is missing because a layer deleted it (or a parent directory), the error
    says which layer did and which ``--layer`` still has it."""
    removed: dict[str, tuple[int, int]] = {}  # path -> (the layer that removed it, its own)

    def note(info: FileInfo, by_layer: int, reason: str) -> None:
        if reason == "deleted":
            removed[info.path] = (by_layer, info.layer)

    union = merged_view(
        source,
        image,
        upto=check_layer(image, layer, label=source.label),
        on_remove=note,
        progress=progress,
    )
    try:
        info = resolve(union, path)
    except PathNotFoundError as exc:
        gone = removed.get(exc.missing or "")
        if gone is None or union.get(exc.missing or "") is not None:
            raise
        by_layer, added = gone
        if exc.missing == "/" + "/".join(p for p in path.split("/") if p):
            what = f"deleted by layer {by_layer}"
        else:
            what = f"its directory {exc.missing} was deleted by layer {by_layer}"
        raise PathNotFoundError(
            f"no such file in the image: {path}: {what} (added by layer {added}); "
            f"recover it with --at {by_layer - 1} (the image as it stood before)",
            missing=exc.missing,
        ) from exc
    if info.type is EntryType.HARDLINK:
        return _read_hardlink(source, image, union, info, out)
    if info.type is not EntryType.FILE:
        kind = "directory" if info.type is EntryType.DIR else info.type.value
        raise UsageError(f"{info.path} is a {kind}, not a regular file")
    _copy_member(source, image, info.layer, lambda m: m.offset == info.offset, out)
    return info


def _read_hardlink(
    source: Source, image: Image, union: UnionFS, info: FileInfo, out: BinaryIO
) -> FileInfo:
    """A hard link's bytes are those of the file it names, as written before it in its layer
    (or, when that layer does not hold the target, the target in the merged view)."""
    target = "/" + (clean_member_path(info.linkname) or "")
    best = -1
    with open_layer(source, image.layers[info.layer]) as opened:
        for member in opened.members():
            if member.offset >= info.offset:
                break
            if "/" + (clean_member_path(member.name) or "") == target and (
                member.type is EntryType.FILE
            ):
                best = member.offset
    if best >= 0:
        _copy_member(source, image, info.layer, lambda m: m.offset == best, out)
        return info
    linked = union.get(target)
    for _ in range(MAX_SYMLINKS):  # a hard link to a hard link: the same inode
        if linked is None or linked.type is not EntryType.HARDLINK:
            break
        linked = union.get("/" + (clean_member_path(linked.linkname) or ""))
    if linked is None or linked.type is not EntryType.FILE:
        raise PathNotFoundError(f"hard link {info.path} names {info.linkname}, which is missing")
    _copy_member(source, image, linked.layer, lambda m: m.offset == linked.offset, out)
    return info


class _HashSink:
    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        return len(data)


def hardlink_hash(source: Source, image: Image, union: UnionFS, info: FileInfo) -> str | None:
    """The sha256 of the content the hard link ``info`` shares (re-reading the layer that
    holds it); None when it names no file."""
    sink = _HashSink()
    try:
        _read_hardlink(source, image, union, info, cast(BinaryIO, sink))
    except PathNotFoundError:
        return None
    return "sha256:" + sink.digest.hexdigest()


def _copy_member(
    source: Source, image: Image, layer: int, match: Callable[[TarMember], bool], out: BinaryIO
) -> None:
    with open_layer(source, image.layers[layer]) as opened:
        for member in opened.reader:
            if match(member):
                for chunk in opened.reader.iter_data():
                    write_to(out, chunk)
                return
    raise DockscopeError(f"layer {layer} no longer holds the entry", subject=source.label)


@dataclass(slots=True)
class Occurrence:
    """One version of a path, in one layer."""

    info: FileInfo
    fate: str = "present"  # "present", "replaced" or "deleted"
    by_layer: int | None = None  # the layer that replaced or deleted it

    @property
    def visible(self) -> bool:
        return self.fate == "present"


def find(
    source: Source,
    image: Image,
    pattern: str,
    *,
    deleted_only: bool = False,
    progress: Progress = None,
) -> list[Occurrence]:
    """Every entry whose path (when the pattern has a ``/``) or name matches, in every layer,
    with what became of it. ``fnmatch`` patterns; ``/`` is not special to ``*``."""
    by_path = "/" in pattern
    pattern = pattern if not by_path or pattern.startswith("/") else "/" + pattern

    def matches(path: str) -> bool:
        subject = path if by_path else path.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(subject, pattern)

    found: dict[tuple[str, int], Occurrence] = {}

    def removed(info: FileInfo, layer: int, reason: str) -> None:
        occurrence = found.get((info.path, info.layer))
        if occurrence is not None and occurrence.fate == "present":
            occurrence.fate = reason
            occurrence.by_layer = layer

    union = UnionFS(on_remove=removed)
    for layer in image.layers:
        with open_layer(source, layer, progress=progress) as opened:

            def seen(member: TarMember, path: str, index: int = layer.index) -> None:
                if matches(path):
                    info = _info(member, path, index)
                    if member.type is EntryType.HARDLINK:  # the content it shares
                        info = replace(info, size=union.linked_size(member.linkname))
                    found[(path, index)] = Occurrence(info)

            union.apply(layer.index, opened.members(), record=False, on_entry=seen)
            opened.finish(layer, label=source.label)
    result = sorted(found.values(), key=lambda o: (o.info.path, o.info.layer))
    if deleted_only:
        result = [o for o in result if not o.visible]
    return result


def _info(member: TarMember, path: str, layer: int) -> FileInfo:
    return FileInfo(
        path=path,
        type=member.type,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        size=member.size,
        mtime=member.mtime,
        linkname=member.linkname,
        layer=layer,
        devmajor=member.devmajor,
        devminor=member.devminor,
        offset=member.offset,
    )
