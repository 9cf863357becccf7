"""Apply an image's layers onto a directory without ever touching anything outside it.

This is the only module that writes extracted files. Layers are applied one after another
onto DEST, as umoci and containerd apply them: each entry replaces what lower layers left at
its path, whiteouts delete what lower layers wrote (``union.py`` documents the rules: entries
of the same layer are never hidden by that layer's whiteouts).

Every path is resolved as if DEST were ``/`` (the semantics of filepath-securejoin), one
component at a time from a directory file descriptor of DEST: ``openat(O_NOFOLLOW |
O_DIRECTORY)`` for each component, symlinks read with ``readlinkat`` and expanded by hand
(an absolute target restarts at DEST, ``..`` never climbs above it, more than 40 links is a
loop). The kernel never follows a symlink for us, and nothing is ever opened by a string
path joined onto DEST. The last component of an entry is never followed either: files are
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and whatever stood there is removed first
(directories by a descriptor-based walk that does not follow symlinks).

What the image holds is reproduced faithfully: symlinks exactly as written (absolute ones
too), hard links as links to the target resolved inside DEST, modes (setuid included),
owners when running as root (unless ``same_owner=False``), mtimes (directories' last, once
every layer is applied), xattrs where permitted. What cannot be reproduced safely is refused
and reported in the audit list, never silently dropped: names that climb out of the root, an
entry that would change the root's type, parents that loop or are not directories, hard links
whose target is missing, a directory or outside the root, invalid whiteouts, device nodes
(created only as root with ``devices=True``), unsupported entry types. Writing through a
symlink whose target climbs above the root is done inside DEST and reported as neutralised.

The same rules drive ``export`` (see ``export.py``) over an in-memory tree, through the
``Backend`` protocol: the flattened tar is exactly the tree ``unpack`` writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from inspect_tool.errors import DockscopeError, InvalidImageError, UsageError
from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.tarformat import EntryType, TarFormatError
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.union import clean_member_path
from inspect_tool.layers.whiteout import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    OPAQUE_VALUE,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIXES,
    WHITEOUT_DEVICE,
    WHITEOUT_PREFIX,
    OnDiskFormat,
)
from inspect_tool.model.image import Image
from inspect_tool.model.resolve import (
    DIRECTORY,
    MAX_SYMLINKS,
    NOT_DIRECTORY,
    Missing,
    Node,
    Resolved,
    symlink,
)
from inspect_tool.model.resolve import Reason as ResolveReason
from inspect_tool.model.resolve import resolve as resolve_path
from inspect_tool.sources.source import Source

MAX_LINK_TARGET = 4095  # bytes: PATH_MAX - 1, the longest target symlink(2) accepts
CHUNK = 1024 * 1024
_CACHE_LIMIT = 512  # resolved parent directories kept open
_PRUNE_HANDLES = 64  # directories kept open while a whiteout walks down a tree


class Action(StrEnum):
    REFUSED = "refused"  # the entry was not applied
    SKIPPED = "skipped"  # the entry, or part of its metadata, was left out
    NEUTRALISED = "neutralised"  # applied, but not as the archive asked


_MAX_DEVICE_PART = 0xFFFF_FFFF  # os.makedev takes 32-bit major and minor numbers


class Reason(StrEnum):
    NAME_ESCAPES = "name-escapes"
    ROOT_TYPE = "root-type"
    SYMLINK_LOOP = "symlink-loop"
    PARENT_NOT_DIRECTORY = "parent-not-directory"
    SYMLINK_CLAMPED = "symlink-clamped"
    LINK_ESCAPES = "link-escapes"
    LINK_MISSING = "link-target-missing"
    LINK_DIRECTORY = "link-to-directory"
    LINK_ITSELF = "link-to-itself"
    WHITEOUT_INVALID = "whiteout-invalid"
    DUPLICATE = "duplicate"
    DEVICE = "device"
    UNSUPPORTED = "unsupported-type"
    OWNER = "owner"
    XATTR = "xattr"
    UNION_XATTR = "union-xattr"
    WRITE_FAILED = "write-failed"
    SYMLINK_TARGET_LONG = "symlink-target-too-long"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    layer: int
    name: str  # the member name as stored in the layer
    action: Action
    reason: Reason
    message: str
    offset: int | None = None  # of the member's header in the layer tar; None: not one entry


@dataclass(slots=True)
class ExtractStats:
    """Counts of entries: applied from the layers (summed over all layers: an entry a later
    layer replaces or deletes counts each time), or found in DEST (``tree_stats``)."""

    directories: int = 0
    files: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    fifos: int = 0
    devices: int = 0
    whiteouts: int = 0
    bytes: int = 0  # regular-file content written


@dataclass(frozen=True, slots=True)
class UnpackOptions:
    same_owner: bool | None = None  # None: keep owners when running as root
    devices: bool = False  # create device nodes (only as root)
    xattrs: bool = True
    force: bool = False  # unpack into a directory that is not empty


@dataclass(slots=True)
class UnpackResult:
    destination: Path
    layers: int
    same_owner: bool
    devices: bool
    stats: ExtractStats = field(default_factory=ExtractStats)  # layer entries applied
    audit: list[AuditEntry] = field(default_factory=list)
    written: ExtractStats = field(default_factory=ExtractStats)  # what DEST holds at the end

    @property
    def ok(self) -> bool:
        return not self.audit


class DestinationError(UsageError):
    """DEST cannot be used (not empty, not a directory) or cannot be written (exit 2)."""


class Kind(Enum):
    DIR = "directory"
    FILE = "file"
    SYMLINK = "symlink"
    OTHER = "special file"


H = TypeVar("H")
Note = Callable[[Action, Reason, str], None]


class Backend(Protocol[H]):
    """Where entries land: a directory on disk, or an in-memory tree (export).

    ``write_file``, ``mkdir``, ``symlink``, ``link`` and ``special`` raise FileExistsError
    when the name is taken, before reading any data. Handles name directories.
    """

    root: H
    devices: bool  # device nodes can be created
    note: Note  # set by the applier: reports a problem with the current entry

    def start_layer(self, index: int) -> None: ...
    def step(self, parent: H, name: str) -> tuple[Kind | None, H | None, str | None]: ...
    def kind(self, parent: H, name: str) -> Kind | None: ...
    def mkdir(self, parent: H, name: str, path: str, member: TarMember | None) -> None: ...
    def dir_meta(self, parent: H, name: str, path: str, member: TarMember) -> None: ...
    def root_meta(self, member: TarMember) -> None: ...
    def write_file(self, parent: H, name: str, member: TarMember, reader: TarReader) -> None: ...
    def symlink(self, parent: H, name: str, member: TarMember) -> None: ...
    def special(self, parent: H, name: str, member: TarMember) -> None: ...
    def whiteout_device(self, parent: H, name: str) -> None: ...
    def mark_opaque(self, directory: H) -> None: ...
    def link(self, src: H, src_name: str, parent: H, name: str) -> None: ...
    def remove(self, parent: H, name: str, kind: Kind, path: str) -> None: ...
    def listdir(self, parent: H) -> list[str]: ...
    def open_child(self, parent: H, name: str) -> H | None: ...
    def close(self, handle: H) -> None: ...


class _Refusal(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# errnos that mean the destination itself cannot take more: stop, do not report per entry
_FATAL_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE}
)


_KINDS = {
    EntryType.FILE: Kind.FILE,
    EntryType.DIR: Kind.DIR,
    EntryType.SYMLINK: Kind.SYMLINK,
    EntryType.FIFO: Kind.OTHER,
    EntryType.CHAR: Kind.OTHER,
    EntryType.BLOCK: Kind.OTHER,
}  # hard links take the kind of what they link to


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class LayerApplier(Generic[H]):
    """Applies layer entries onto a Backend, resolving every path inside its root."""

    DEVICE_HINT = "(only as root, with --devices)"  # why a device node was not made

    def __init__(
        self,
        fs: Backend[H],
        stats: ExtractStats,
        audit: list[AuditEntry],
        *,
        on_disk: OnDiskFormat = OnDiskFormat.OCI,
        device_hint: str = DEVICE_HINT,
    ) -> None:
        self.fs = fs
        self.stats = stats
        self.audit = audit
        self.on_disk = on_disk
        self.device_hint = device_hint
        self.layer = 0
        self._name = ""  # the member being applied
        self._offset: int | None = None
        self._cache: dict[str, tuple[H, str, bool]] = {}
        self._graveyard: list[H] = []  # dropped handles, closed once the entry is done
        self._upper: set[str] = set()  # resolved paths this layer wrote, and their ancestors
        self._entries: set[str] = set()  # resolved paths of this layer's own entries
        fs.note = self._note

    # -- bookkeeping ---------------------------------------------------------------------------
    def start_layer(self, index: int) -> None:
        self.layer = index
        self.fs.start_layer(index)
        self._upper.clear()
        self._entries.clear()

    def close(self) -> None:
        self._invalidate()
        self._bury()

    def finishing(self) -> None:
        """Notes from here on (metadata set at the end) are not about one entry."""
        self._name = ""
        self._offset = None

    def _note(self, action: Action, reason: Reason, message: str) -> None:
        self.audit.append(AuditEntry(self.layer, self._name, action, reason, message, self._offset))

    def _invalidate(self) -> None:
        """Forget resolved directories (something along their paths may have changed)."""
        self._graveyard.extend(handle for handle, _, _ in self._cache.values())
        self._cache.clear()

    def _bury(self) -> None:
        for handle in self._graveyard:
            self.fs.close(handle)
        self._graveyard.clear()

    def _mark(self, path: str, *, entry: bool = True) -> None:
        if entry:
            self._entries.add(path)
        while path and path not in self._upper:
            self._upper.add(path)
            path = path.rpartition("/")[0]

    # -- resolution ----------------------------------------------------------------------------
    def _resolve(self, path: str, *, create: bool) -> tuple[H, str, bool] | None:
        """The directory ``path`` names, resolved inside the root: (handle, resolved path,
        whether a symlink's ``..`` was clamped at the root). None when it does not exist (or
        is not a directory) and ``create`` is False. Raises _Refusal."""
        hit = self._cache.get(path)
        if hit is not None:
            return hit
        # start from the nearest ancestor resolved before (a real directory: resolving the
        # rest from there is resolving the whole path)
        start: tuple[H, str, bool] | None = None
        rest = path
        prefix = path
        while "/" in prefix:
            prefix = prefix.rpartition("/")[0]
            start = self._cache.get(prefix)
            if start is not None:
                rest = path[len(prefix) + 1 :]
                break
        found = self._walk(rest, create=create, start=start)
        if found is not None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._invalidate()
            self._cache[path] = found
        return found

    def _walk(
        self, path: str, *, create: bool, start: tuple[H, str, bool] | None = None
    ) -> tuple[H, str, bool] | None:
        """filepath-securejoin's walk (``model/resolve.py``) over descriptors: components
        that do not exist are taken lexically (a later ``..`` cancels them) and created at
        the end when asked; a lower layer's non-directory where this layer needs a directory
        is replaced. ``start``: a directory resolved before (its handle is borrowed, never
        closed)."""
        fs = self.fs
        base: tuple[str, ...] = ()
        borrowed = fs.root
        start_clamped = False
        if start is not None:
            borrowed, here, start_clamped = start
            base = tuple(here.split("/")) if here else ()
        # the one directory kept open while walking: (its resolved path, its handle)
        current: list[tuple[tuple[str, ...], H]] = [(base, borrowed)]
        kinds: dict[tuple[str, ...], Kind] = {}

        def release(old: H) -> None:
            if old is not borrowed:
                fs.close(old)

        def handle_of(parts: tuple[str, ...]) -> H:
            at, handle = current[0]
            if at == parts:
                return handle
            fresh = fs.root if not parts else self._reopen(list(parts))
            release(handle)
            current[0] = (parts, fresh)
            return fresh

        def lookup(parts: tuple[str, ...]) -> Node | None:
            kind, child, target = fs.step(handle_of(parts[:-1]), parts[-1])
            if kind is None:
                return None
            if kind is Kind.SYMLINK:
                assert target is not None
                return symlink(target)
            if kind is Kind.DIR:
                assert child is not None
                release(current[0][1])
                current[0] = (parts, child)
                return DIRECTORY
            kinds[parts] = kind
            return NOT_DIRECTORY

        try:
            replaced: set[tuple[str, ...]] = set()
            while True:
                found = resolve_path(
                    path, lookup, directory=True, missing=Missing.LEXICAL, start=base
                )
                if isinstance(found, Resolved):
                    break
                if found.reason is ResolveReason.LOOP:
                    raise _Refusal(
                        Reason.SYMLINK_LOOP,
                        f"more than {MAX_SYMLINKS} symlinks while resolving {path!r}",
                    )
                assert found.reason is ResolveReason.NOT_DIRECTORY
                if not create:
                    return None
                kind = kinds[found.at]
                here = "/".join(found.at)
                if found.via is not None or found.at in replaced:
                    raise _Refusal(
                        Reason.PARENT_NOT_DIRECTORY,
                        f"{here!r} is a {kind.value}, not a directory",
                    )
                # a lower layer's non-directory where this layer has a directory:
                # replaced, as overlayfs does
                if here in self._entries:
                    self._note(
                        Action.NEUTRALISED,
                        Reason.DUPLICATE,
                        f"{here!r} is stored in this layer as a {kind.value} and as a "
                        "directory; the directory replaces it",
                    )
                fs.remove(handle_of(found.at[:-1]), found.at[-1], kind, here)
                self._invalidate()
                replaced.add(found.at)
            resolved = list(found.parts)
            if found.missing and not create:
                return None
            handle = handle_of(found.parts)
            for part in found.missing:
                here = "/".join([*resolved, part])
                fs.mkdir(handle, part, here, None)
                made, child, _ = fs.step(handle, part)
                if made is not Kind.DIR or child is None:
                    raise _Refusal(Reason.PARENT_NOT_DIRECTORY, f"cannot create {here!r}")
                release(handle)
                handle = child
                resolved.append(part)
                current[0] = (tuple(resolved), handle)
            if handle is borrowed and handle is not fs.root:
                handle = self._reopen(resolved)  # each cache entry owns its handle
            else:
                current[0] = ((), fs.root)  # now owned by the caller
            return (handle, "/".join(resolved), start_clamped or found.clamped)
        finally:
            release(current[0][1])

    def _reopen(self, parts: list[str]) -> H:
        """A fresh handle on a path resolved before (all real directories)."""
        fs = self.fs
        handle = fs.root
        for part in parts:
            kind, child, _ = fs.step(handle, part)
            fs.close(handle)
            if kind is not Kind.DIR or child is None:
                raise _Refusal(Reason.PARENT_NOT_DIRECTORY, f"{part!r} changed while resolving")
            handle = child
        return handle

    # -- applying ------------------------------------------------------------------------------
    def apply(self, member: TarMember, reader: TarReader) -> None:
        """Apply one entry of the current layer."""
        self._name = member.name
        self._offset = member.offset
        try:
            self._apply(member, reader)
        except _Refusal as refusal:
            self._note(Action.REFUSED, refusal.reason, refusal.message)
        except OSError as exc:
            if exc.errno in _FATAL_ERRNOS:
                raise DestinationError(f"cannot write: {exc.strerror}") from exc
            self._note(Action.REFUSED, Reason.WRITE_FAILED, exc.strerror or str(exc))
        except (ValueError, OverflowError) as exc:  # a NUL in a name, a device number too big
            self._note(Action.REFUSED, Reason.WRITE_FAILED, str(exc))
        finally:
            self._bury()

    def _apply(self, member: TarMember, reader: TarReader) -> None:
        path = clean_member_path(member.name)
        if path is None:
            raise _Refusal(Reason.NAME_ESCAPES, "the name climbs out of the root")
        if not path:
            if member.type is not EntryType.DIR:
                raise _Refusal(
                    Reason.ROOT_TYPE, f"a {member.type.value} entry would replace the root"
                )
            self.fs.root_meta(member)
            return
        parent, _, base = path.rpartition("/")
        if AUFS_META_PREFIX in parent and any(
            p.startswith(AUFS_META_PREFIX) for p in parent.split("/")
        ):
            return  # inside AUFS metadata directories: hidden, as union.py hides them
        if base.startswith(WHITEOUT_PREFIX):
            if base == OPAQUE_MARKER:
                self.stats.whiteouts += 1
                self._whiteout(parent, None)
            elif not base.startswith(AUFS_META_PREFIX):
                target = base[len(WHITEOUT_PREFIX) :]
                if target in ("", ".", ".."):
                    raise _Refusal(Reason.WHITEOUT_INVALID, f"whiteout of {target!r}")
                self.stats.whiteouts += 1
                self._whiteout(parent, target)
            return
        kind = member.type
        if kind is EntryType.OTHER:
            self._note(
                Action.SKIPPED,
                Reason.UNSUPPORTED,
                f"tar type {member.typeflag!r} (sparse file, socket or unknown) is not supported",
            )
            return
        if kind in (EntryType.CHAR, EntryType.BLOCK) and not (
            0 <= member.devmajor <= _MAX_DEVICE_PART and 0 <= member.devminor <= _MAX_DEVICE_PART
        ):
            self._note(
                Action.SKIPPED,
                Reason.DEVICE,
                f"{kind.value} device {member.devmajor}:{member.devminor} not created "
                "(a device number outside 0 to 2^32-1)",
            )
            return
        if kind in (EntryType.CHAR, EntryType.BLOCK) and not self.fs.devices:
            self._note(
                Action.SKIPPED,
                Reason.DEVICE,
                f"{kind.value} device {member.devmajor}:{member.devminor} not created "
                f"{self.device_hint}",
            )
            return
        if kind is EntryType.SYMLINK:
            length = len(member.linkname.encode("utf-8", "surrogateescape"))
            if length > MAX_LINK_TARGET:
                # symlink(2) refuses it (ENAMETOOLONG); checked here so that unpack and
                # export (which writes no symlink) refuse the same entries
                raise _Refusal(
                    Reason.SYMLINK_TARGET_LONG,
                    f"a symlink target of {length} bytes exceeds the bound of "
                    f"{MAX_LINK_TARGET} (PATH_MAX - 1)",
                )
        found = self._resolve(parent, create=True)
        assert found is not None
        handle, resolved_parent, clamped = found
        if clamped:
            self._clamped()
        resolved = _join(resolved_parent, base)
        if kind is EntryType.HARDLINK:
            if self._hardlink(member, handle, base, resolved):
                self._mark(resolved)
                self.stats.hardlinks += 1
            return
        self._create(member, reader, handle, base, resolved)
        self._mark(resolved)

    def _clamped(self) -> None:
        self._note(
            Action.NEUTRALISED,
            Reason.SYMLINK_CLAMPED,
            "resolved through a symlink whose target climbs above the root: kept inside it",
        )

    def _create(
        self, member: TarMember, reader: TarReader, handle: H, base: str, resolved: str
    ) -> None:
        fs = self.fs
        kind = member.type
        for attempt in range(2):
            try:
                if kind is EntryType.DIR:
                    fs.mkdir(handle, base, resolved, member)
                    self.stats.directories += 1
                elif kind is EntryType.FILE:
                    fs.write_file(handle, base, member, reader)
                    self.stats.files += 1
                    self.stats.bytes += member.size
                elif kind is EntryType.SYMLINK:
                    fs.symlink(handle, base, member)
                    self.stats.symlinks += 1
                else:
                    fs.special(handle, base, member)
                    if kind is EntryType.FIFO:
                        self.stats.fifos += 1
                    else:
                        self.stats.devices += 1
                return
            except FileExistsError:
                if attempt:
                    raise
                self._clear(handle, base, resolved, member)
                if kind is EntryType.DIR and fs.kind(handle, base) is Kind.DIR:
                    fs.dir_meta(handle, base, resolved, member)
                    self.stats.directories += 1
                    return

    def _clear(self, handle: H, base: str, resolved: str, member: TarMember) -> None:
        """Make room for ``member`` at ``base``: a directory stays for a directory entry,
        anything else is removed (a directory with all it holds)."""
        existing = self.fs.kind(handle, base)
        if existing is None or (existing is Kind.DIR and member.type is EntryType.DIR):
            return
        if resolved in self._entries and _KINDS.get(member.type, existing) is not existing:
            # one path with two types in one layer (the same type twice is plain tar: the
            # later entry wins)
            self._note(
                Action.NEUTRALISED,
                Reason.DUPLICATE,
                f"stored twice in the layer (a {existing.value}, then a {member.type.value}): "
                "the later entry replaces the earlier",
            )
        self.fs.remove(handle, base, existing, resolved)
        if existing in (Kind.DIR, Kind.SYMLINK):
            self._invalidate()

    def _hardlink(self, member: TarMember, handle: H, base: str, resolved: str) -> bool:
        fs = self.fs
        target = clean_member_path(member.linkname)
        if target is None:
            raise _Refusal(Reason.LINK_ESCAPES, f"links to {member.linkname!r}, outside the root")
        if not target:
            raise _Refusal(Reason.LINK_DIRECTORY, "links to the root directory")
        target_parent, _, target_base = target.rpartition("/")
        try:
            found = self._resolve(target_parent, create=False)
        except _Refusal as refusal:
            raise _Refusal(
                refusal.reason, f"link target {member.linkname!r}: {refusal.message}"
            ) from None
        missing = _Refusal(Reason.LINK_MISSING, f"link target {member.linkname!r} does not exist")
        if found is None:
            raise missing
        target_handle, target_resolved_parent, clamped = found
        target_kind = fs.kind(target_handle, target_base)
        if target_kind is None:
            raise missing
        if target_kind is Kind.DIR:
            raise _Refusal(Reason.LINK_DIRECTORY, f"link target {member.linkname!r} is a directory")
        if _join(target_resolved_parent, target_base) == resolved:
            raise _Refusal(Reason.LINK_ITSELF, "a hard link to itself")
        if clamped:
            self._clamped()
        for attempt in range(2):
            try:
                fs.link(target_handle, target_base, handle, base)
                return True
            except FileExistsError:
                if attempt:
                    raise
                self._clear(handle, base, resolved, member)
            except FileNotFoundError:  # the target was inside what the entry replaced
                raise missing from None
        return False

    def _whiteout(self, parent: str, target: str | None) -> None:
        """Delete what lower layers left at parent/target (every lower entry below parent
        for an opaque whiteout, target None); in the overlay format, keep it as overlay's."""
        if self.on_disk is OnDiskFormat.OVERLAY:
            self._overlay_whiteout(parent, target)
            return
        found = self._resolve(parent, create=False)
        if found is None:
            return
        handle, resolved_parent, clamped = found
        if clamped:
            self._clamped()
        if target is None:
            self._prune(handle, resolved_parent)
            return
        kind = self.fs.kind(handle, target)
        if kind is not None:
            self._remove_lower(handle, target, kind, _join(resolved_parent, target))

    def _overlay_whiteout(self, parent: str, target: str | None) -> None:
        """overlayfs's lowerdir form: a whiteout becomes a character device 0/0 (unless this
        layer wrote the name itself: a whiteout never hides its own layer's entry), an opaque
        marker the opaque xattr on its directory."""
        found = self._resolve(parent, create=True)
        if found is None:
            return
        handle, resolved_parent, _ = found
        if target is None:
            self.fs.mark_opaque(handle)
            return
        if _join(resolved_parent, target) in self._upper:
            return
        with contextlib.suppress(FileExistsError):
            self.fs.whiteout_device(handle, target)

    def _remove_lower(self, handle: H, name: str, kind: Kind, path: str) -> None:
        if path not in self._upper:
            self.fs.remove(handle, name, kind, path)
            if kind in (Kind.DIR, Kind.SYMLINK):
                self._invalidate()
        elif kind is Kind.DIR:
            child = self.fs.open_child(handle, name)
            if child is not None:
                try:
                    self._prune(child, path)
                finally:
                    self.fs.close(child)

    def _prune(self, directory: H, path: str) -> None:
        """Remove every entry below ``directory`` that this layer did not write. Iterative
        (trees can be deeper than Python's recursion limit), and past ``_PRUNE_HANDLES``
        levels a directory's handle is let go and opened again when its turn comes back."""
        fs = self.fs
        # (handle or None, resolved path, names left, whether the handle is ours to close)
        stack: list[tuple[H | None, str, list[str], bool]] = [
            (directory, path, fs.listdir(directory), False)
        ]
        try:
            while stack:
                handle, here, names, owned = stack[-1]
                if not names:
                    stack.pop()
                    if owned and handle is not None:
                        fs.close(handle)
                    continue
                if handle is None:
                    handle, owned = self._reopen(here.split("/") if here else []), True
                    stack[-1] = (handle, here, names, owned)
                name = names.pop()
                child_path = _join(here, name)
                kind = fs.kind(handle, name)
                if kind is None:
                    continue
                if child_path not in self._upper:
                    fs.remove(handle, name, kind, child_path)
                    if kind in (Kind.DIR, Kind.SYMLINK):
                        self._invalidate()
                elif kind is Kind.DIR:
                    child = fs.open_child(handle, name)
                    if child is not None:
                        if len(stack) >= _PRUNE_HANDLES and owned:
                            fs.close(handle)
                            stack[-1] = (None, here, names, owned)
                        stack.append((child, child_path, fs.listdir(child), True))
        finally:
            for handle, _, _, owned in stack:
                if owned and handle is not None:
                    fs.close(handle)


# -- the disk backend ----------------------------------------------------------------------------

_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WORK_DIR_MODE = 0o700  # while layers are applied; the final modes are set at the end
_OPEN_ANCESTORS = 64  # descriptors kept open while directories' metadata is set
_IMPLICIT_DIR_MODE = 0o755


def _kind_of(mode: int) -> Kind:
    if stat.S_ISDIR(mode):
        return Kind.DIR
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    return Kind.OTHER


def _ns(mtime: float) -> int:
    return round(mtime * 1_000_000_000)


@dataclass(slots=True)
class _DirMeta:
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None  # None: leave the time of creation
    xattrs: dict[str, bytes]


class DiskBackend:
    """A directory on disk, reached only through descriptors opened below its own."""

    def __init__(
        self,
        root_fd: int,
        audit: list[AuditEntry] | None = None,
        *,
        same_owner: bool,
        devices: bool,
        xattrs: bool,
    ) -> None:
        """``audit`` is accepted for callers that pass it; problems are reported through
        ``note``, which the applier sets."""
        self.root = root_fd
        self.same_owner = same_owner
        self.devices = devices
        self.xattrs = xattrs
        self.note: Note = _no_note
        self._dirs: dict[str, _DirMeta] = {}  # final metadata of directories, by path
        self._ids = (os.geteuid(), os.getegid())
        self._umask = _current_umask()

    def start_layer(self, index: int) -> None:
        return None

    # -- lookups -------------------------------------------------------------------------------
    def step(self, parent: int, name: str) -> tuple[Kind | None, int | None, str | None]:
        try:
            return Kind.DIR, os.open(name, _DIR_PATH, dir_fd=parent), None
        except FileNotFoundError:
            return None, None, None
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        kind = _kind_of(st.st_mode)
        if kind is Kind.SYMLINK:
            return kind, None, os.readlink(name, dir_fd=parent)
        return kind, None, None

    def kind(self, parent: int, name: str) -> Kind | None:
        try:
            return _kind_of(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return None

    def open_child(self, parent: int, name: str) -> int | None:
        try:
            return os.open(name, _DIR_PATH, dir_fd=parent)
        except OSError:
            return None

    def listdir(self, parent: int) -> list[str]:
        fd = os.open(".", _DIR_READ, dir_fd=parent)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def close(self, handle: int) -> None:
        if handle != self.root:
            os.close(handle)

    # -- creating ------------------------------------------------------------------------------
    def mkdir(self, parent: int, name: str, path: str, member: TarMember | None) -> None:
        os.mkdir(name, _WORK_DIR_MODE, dir_fd=parent)
        if member is None:
            self._dirs[path] = _DirMeta(_IMPLICIT_DIR_MODE, 0, 0, None, {})
        else:
            self.dir_meta(parent, name, path, member)

    def dir_meta(self, parent: int, name: str, path: str, member: TarMember) -> None:
        self._dirs[path] = _DirMeta(
            member.mode, member.uid, member.gid, _ns(member.mtime), member.xattrs
        )

    def root_meta(self, member: TarMember) -> None:
        self._dirs[""] = _DirMeta(
            member.mode, member.uid, member.gid, _ns(member.mtime), member.xattrs
        )

    def write_file(self, parent: int, name: str, member: TarMember, reader: TarReader) -> None:
        fd = os.open(name, _NEW_FILE, member.mode & 0o777, dir_fd=parent)
        try:
            left = member.size
            while left > 0:
                data = reader.read(min(left, CHUNK))
                left -= len(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            self._file_meta(fd, member)
        finally:
            os.close(fd)

    def _file_meta(self, fd: int, member: TarMember) -> None:
        # created with mode & 0o777 and owned by this process: a syscall only when it differs
        if self.same_owner and (member.uid, member.gid) != self._ids:
            try:
                os.fchown(fd, member.uid, member.gid)
            except (OSError, OverflowError) as exc:
                self.note(
                    Action.SKIPPED, Reason.OWNER, f"owner {member.uid}:{member.gid} not set: {exc}"
                )
        if member.mode != member.mode & 0o777 & ~self._umask:
            os.fchmod(fd, member.mode)  # setuid, setgid, sticky, or bits the umask removed
        if member.xattrs:
            self._xattrs(fd, member.xattrs, self.note)
        t = _ns(member.mtime)
        os.utime(fd, ns=(t, t))

    def symlink(self, parent: int, name: str, member: TarMember) -> None:
        os.symlink(member.linkname, name, dir_fd=parent)
        if self.same_owner:
            try:
                os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            except (OSError, OverflowError) as exc:
                self._owner_failed(member, exc)
        if member.xattrs and self.xattrs:
            # lsetxattr has no *at form: name the entry through the parent's descriptor
            self._xattrs(f"/proc/self/fd/{parent}/{name}", member.xattrs, self.note)
        t = _ns(member.mtime)
        os.utime(name, ns=(t, t), dir_fd=parent, follow_symlinks=False)

    def special(self, parent: int, name: str, member: TarMember) -> None:
        kinds = {EntryType.FIFO: stat.S_IFIFO, EntryType.CHAR: stat.S_IFCHR}
        file_type = kinds.get(member.type, stat.S_IFBLK)
        device = (
            0 if member.type is EntryType.FIFO else os.makedev(member.devmajor, member.devminor)
        )
        os.mknod(name, file_type | 0o600, device, dir_fd=parent)
        if self.same_owner:
            try:
                os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
            except (OSError, OverflowError) as exc:
                self._owner_failed(member, exc)
        # no lchmod on Linux: the node was created just now by mknodat (O_EXCL semantics)
        os.chmod(name, member.mode, dir_fd=parent)
        t = _ns(member.mtime)
        os.utime(name, ns=(t, t), dir_fd=parent, follow_symlinks=False)

    def whiteout_device(self, parent: int, name: str) -> None:
        os.mknod(name, stat.S_IFCHR, WHITEOUT_DEVICE, dir_fd=parent)

    def mark_opaque(self, directory: int) -> None:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        try:
            os.setxattr(fd, OPAQUE_XATTR, OPAQUE_VALUE)
        finally:
            os.close(fd)

    def link(self, src: int, src_name: str, parent: int, name: str) -> None:
        os.link(src_name, name, src_dir_fd=src, dst_dir_fd=parent, follow_symlinks=False)

    def remove(self, parent: int, name: str, kind: Kind, path: str) -> None:
        if kind is Kind.DIR:
            remove_tree(parent, name)
            prefix = path + "/"
            for key in [k for k in self._dirs if k == path or k.startswith(prefix)]:
                del self._dirs[key]
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)

    # -- metadata ------------------------------------------------------------------------------
    def _owner_failed(self, member: TarMember, exc: BaseException) -> None:
        self.note(Action.SKIPPED, Reason.OWNER, f"owner {member.uid}:{member.gid} not set: {exc}")

    def _xattrs(self, target: int | str, xattrs: dict[str, bytes], note: Note) -> None:
        if not xattrs:
            return
        if not self.xattrs:
            note(Action.SKIPPED, Reason.XATTR, f"xattrs {sorted(xattrs)} not set (--no-xattrs)")
            return
        for key, value in sorted(xattrs.items()):
            if key.startswith(OVERLAY_XATTR_PREFIXES):
                note(
                    Action.REFUSED,
                    Reason.UNION_XATTR,
                    f"xattr {key!r} not set: overlayfs's own mark is never taken from image "
                    "content (docker and containerd drop it; the kernel would follow it)",
                )
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:  # a path through /proc/self/fd: the entry itself, never followed
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as exc:
                note(Action.SKIPPED, Reason.XATTR, f"xattr {key!r} not set: {exc.strerror}")

    def finish(self) -> None:
        """Set the directories' metadata, children before parents (their mtimes moved as
        entries were added, and a read-only parent would stop the work below it): paths in
        reverse order, the open ancestors kept on a stack."""
        ancestors: list[tuple[str, int]] = []  # (path, descriptor) from the root down
        try:
            for path in sorted(self._dirs, reverse=True):
                while ancestors and not path.startswith(ancestors[-1][0] + "/"):
                    os.close(ancestors.pop()[1])
                fd = self._open_dir(path, ancestors)
                if fd is None:
                    continue
                try:
                    self._dir_meta(fd, path, self._dirs[path])
                finally:
                    if fd != self.root:
                        os.close(fd)
        finally:
            for _, fd in ancestors:
                os.close(fd)
        self._dirs.clear()

    def _dir_meta(self, fd: int, path: str, meta: _DirMeta) -> None:
        if self.same_owner:
            try:
                os.fchown(fd, meta.uid, meta.gid)
            except (OSError, OverflowError) as exc:
                self.note(Action.SKIPPED, Reason.OWNER, f"{path or '/'}: owner not set: {exc}")
        os.fchmod(fd, meta.mode)
        self._xattrs(fd, meta.xattrs, self.note)
        if meta.mtime_ns is not None:
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))

    def _open_dir(self, path: str, ancestors: list[tuple[str, int]]) -> int | None:
        """A readable descriptor of a directory, every component a real directory (opened
        without following symlinks); its ancestors are pushed on ``ancestors``."""
        if not path:
            return self.root
        parent, _, name = path.rpartition("/")
        base, fd = ancestors[-1] if ancestors else ("", self.root)
        rest = parent[len(base) + 1 :] if base else parent
        try:
            for part in rest.split("/") if rest else ():
                fd = os.open(part, _DIR_PATH, dir_fd=fd)
                base = f"{base}/{part}" if base else part
                ancestors.append((base, fd))
                if len(ancestors) > _OPEN_ANCESTORS:
                    # only the nearest ancestors stay open: a tree thousands of levels deep
                    # would otherwise exhaust the descriptor limit (the directories past it
                    # silently kept their work mode); the others are reopened when needed
                    os.close(ancestors.pop(0)[1])
            return os.open(name, _DIR_READ, dir_fd=fd)
        except OSError as exc:  # removed, or no longer a directory: nothing to set
            if exc.errno in _FATAL_ERRNOS:
                raise DestinationError(f"cannot set directories' metadata: {exc.strerror}") from exc
            return None


def _no_note(action: Action, reason: Reason, message: str) -> None:
    return None


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_tree(parent: int, name: str) -> None:
    """Remove ``name`` below ``parent`` and all it holds, never following a symlink.

    Iterative with one descriptor at a time (climbing back through ``..`` of a directory it
    descended into), so any depth works within the descriptor limit."""
    try:
        os.unlink(name, dir_fd=parent)
        return
    except IsADirectoryError:
        pass
    except FileNotFoundError:
        return
    names = [name]
    fd = os.open(name, _DIR_READ, dir_fd=parent)
    try:
        while True:
            descended = False
            for child in os.listdir(fd):
                try:
                    os.unlink(child, dir_fd=fd)
                except IsADirectoryError:
                    inner = os.open(child, _DIR_READ, dir_fd=fd)
                    os.close(fd)
                    fd = inner
                    names.append(child)
                    descended = True
                    break
            if descended:
                continue
            done = names.pop()
            if not names:
                os.close(fd)
                fd = -1
                os.rmdir(done, dir_fd=parent)
                return
            up = os.open("..", _DIR_READ, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(done, dir_fd=fd)
    finally:
        if fd >= 0:
            os.close(fd)


# -- unpack --------------------------------------------------------------------------------------


def prepare_destination(destination: Path, *, force: bool) -> int:
    """Create DEST (and its parents) or check that it is an empty directory; open it."""
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DestinationError("exists and is not a directory", subject=str(destination)) from None
    except OSError as exc:
        raise DestinationError(f"cannot create: {exc.strerror}", subject=str(destination)) from None
    try:
        fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DestinationError(f"cannot open: {exc.strerror}", subject=str(destination)) from None
    if not force and os.listdir(fd):
        os.close(fd)
        raise DestinationError(
            "is not empty (use --force to apply the layers on top of what it holds)",
            subject=str(destination),
        )
    return fd


def apply_layers(
    source: Source,
    image: Image,
    applier: LayerApplier[H],
    *,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream each layer through ``applier``, verifying its diff_id once it is read."""
    for layer in image.layers:
        applier.start_layer(layer.index)
        with open_layer(source, layer, progress=progress) as opened:
            reader = opened.reader
            try:
                for member in reader:
                    applier.apply(member, reader)
            except TarFormatError as exc:
                if opened.stream.error:  # the decompressor's message says more
                    raise InvalidImageError(
                        opened.stream.error, subject=f"{source.label}: layer {layer.index}"
                    ) from exc
                raise exc.with_subject(f"{source.label}: layer {layer.index}") from None
            opened.finish(layer, label=source.label)


def unpack(
    source: Source,
    image: Image,
    destination: Path,
    *,
    options: UnpackOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> UnpackResult:
    """Write the image's merged root filesystem into ``destination``.

    Raises DestinationError (DEST not empty, not writable) and the readers' InvalidImageError
    (a layer unreadable, its diff_id wrong: DEST is then partly written, nothing outside it).
    """
    options = options or UnpackOptions()
    root = os.geteuid() == 0
    same_owner = root if options.same_owner is None else options.same_owner and root
    result = UnpackResult(destination, len(image.layers), same_owner, options.devices and root)
    root_fd = prepare_destination(destination, force=options.force)
    backend = DiskBackend(
        root_fd,
        same_owner=same_owner,
        devices=result.devices,
        xattrs=options.xattrs,
    )
    applier = LayerApplier(backend, result.stats, result.audit)
    try:
        apply_layers(source, image, applier, progress=progress)
        applier.close()
        applier.finishing()
        try:
            backend.finish()
        except OSError as exc:
            raise DestinationError(f"cannot set metadata: {exc.strerror}") from exc
        try:
            result.written = tree_stats(root_fd)
        except OSError as exc:
            raise DestinationError(f"cannot read back what was written: {exc.strerror}") from exc
    except DestinationError as exc:
        raise exc.with_subject(str(destination)) from exc.__cause__
    except DockscopeError as exc:
        raise exc.with_subject(source.label) from exc.__cause__
    finally:
        applier.close()
        os.close(root_fd)
    return result


def tree_stats(root_fd: int) -> ExtractStats:
    """What the tree under the directory descriptor ``root_fd`` holds (the root itself not
    counted): every directory opened with ``O_NOFOLLOW`` from its parent's descriptor, nothing
    followed; a file with several names counts once as a file, its other names as hard
    links. Iterative: trees can be deeper than Python's recursion limit."""
    stats = ExtractStats()
    seen: set[tuple[int, int]] = set()
    stack = [os.open(".", _DIR_READ, dir_fd=root_fd)]
    try:
        while stack:
            fd = stack.pop()
            try:
                with os.scandir(fd) as entries:
                    names = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
                for name, st in names:
                    mode = st.st_mode
                    if stat.S_ISDIR(mode):
                        stats.directories += 1
                        stack.append(os.open(name, _DIR_READ, dir_fd=fd))
                    elif stat.S_ISREG(mode):
                        if st.st_nlink > 1 and (st.st_dev, st.st_ino) in seen:
                            stats.hardlinks += 1
                            continue
                        if st.st_nlink > 1:
                            seen.add((st.st_dev, st.st_ino))
                        stats.files += 1
                        stats.bytes += st.st_size
                    elif stat.S_ISLNK(mode):
                        stats.symlinks += 1
                    elif stat.S_ISFIFO(mode):
                        stats.fifos += 1
                    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                        stats.devices += 1
            finally:
                os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)
    return stats
