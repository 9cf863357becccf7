"""Apply layer entries onto a ``Backend`` with the whiteout rules, every path inside its root.

Layers are applied one after another, as umoci and containerd apply them: each entry replaces
what lower layers left at its path, whiteouts delete what lower layers wrote (``union.py``
documents the rules: entries of the same layer are never hidden by that layer's whiteouts).
In ``OnDiskFormat.OVERLAY`` whiteouts are kept instead, as overlayfs's lowerdir form has
them (a character device 0/0, the opaque xattr on a directory).

Parents are resolved inside the root (``parents.py``); the last component of an entry is
never followed: whatever stood there is removed first (a directory with all it holds).
Symlinks are reproduced exactly as written (absolute ones too), hard links as links to the
target resolved inside the root. What cannot be reproduced safely is refused or neutralised
and reported as ``AuditEntry``s (``audit.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Generic

from inspect_tool.errors import InvalidImageError
from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.tarformat import EntryType, TarFormatError
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.union import clean_member_path
from inspect_tool.layers.unpack.audit import Action, AuditEntry, ExtractStats, Reason, Refusal
from inspect_tool.layers.unpack.backend import (
    FATAL_ERRNOS,
    Backend,
    DestinationError,
    H,
    Kind,
    join,
)
from inspect_tool.layers.unpack.parents import Parents
from inspect_tool.layers.whiteout import (
    AUFS_META_PREFIX,
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    OnDiskFormat,
)
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

MAX_LINK_TARGET = 4095  # bytes: PATH_MAX - 1, the longest target symlink(2) accepts
_PRUNE_HANDLES = 64  # directories kept open while a whiteout walks down a tree
_MAX_DEVICE_PART = 0xFFFF_FFFF  # os.makedev takes 32-bit major and minor numbers


_KINDS = {
    EntryType.FILE: Kind.FILE,
    EntryType.DIR: Kind.DIR,
    EntryType.SYMLINK: Kind.SYMLINK,
    EntryType.FIFO: Kind.OTHER,
    EntryType.CHAR: Kind.OTHER,
    EntryType.BLOCK: Kind.OTHER,
}  # hard links take the kind of what they link to


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
        self._upper: set[str] = set()  # resolved paths this layer wrote, and their ancestors
        self._entries: set[str] = set()  # resolved paths of this layer's own entries
        self._parents = Parents(fs, self._note, self._entries)
        fs.note = self._note

    # -- bookkeeping ---------------------------------------------------------------------------
    def start_layer(self, index: int) -> None:
        self.layer = index
        self.fs.start_layer(index)
        self._upper.clear()
        self._entries.clear()

    def close(self) -> None:
        self._parents.invalidate()
        self._parents.bury()

    def finishing(self) -> None:
        """Notes from here on (metadata set at the end) are not about one entry."""
        self._name = ""
        self._offset = None

    def _note(self, action: Action, reason: Reason, message: str) -> None:
        self.audit.append(AuditEntry(self.layer, self._name, action, reason, message, self._offset))

    def _mark(self, path: str, *, entry: bool = True) -> None:
        if entry:
            self._entries.add(path)
        while path and path not in self._upper:
            self._upper.add(path)
            path = path.rpartition("/")[0]

    # -- applying ------------------------------------------------------------------------------
    def apply(self, member: TarMember, reader: TarReader) -> None:
        """Apply one entry of the current layer."""
        self._name = member.name
        self._offset = member.offset
        try:
            self._apply(member, reader)
        except Refusal as refusal:
            self._note(Action.REFUSED, refusal.reason, refusal.message)
        except OSError as exc:
            if exc.errno in FATAL_ERRNOS:
                raise DestinationError(f"cannot write: {exc.strerror}") from exc
            self._note(Action.REFUSED, Reason.WRITE_FAILED, exc.strerror or str(exc))
        except (ValueError, OverflowError) as exc:  # a NUL in a name, a device number too big
            self._note(Action.REFUSED, Reason.WRITE_FAILED, str(exc))
        finally:
            self._parents.bury()

    def _apply(self, member: TarMember, reader: TarReader) -> None:
        path = clean_member_path(member.name)
        if path is None:
            raise Refusal(Reason.NAME_ESCAPES, "the name climbs out of the root")
        if not path:
            if member.type is not EntryType.DIR:
                raise Refusal(
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
            self._whiteout_entry(parent, base)
            return
        if not self._admitted(member):
            return
        found = self._parents.resolve(parent, create=True)
        assert found is not None
        handle, resolved_parent, clamped = found
        if clamped:
            self._clamped()
        resolved = join(resolved_parent, base)
        if member.type is EntryType.HARDLINK:
            if self._hardlink(member, handle, base, resolved):
                self._mark(resolved)
                self.stats.hardlinks += 1
            return
        self._create(member, reader, handle, base, resolved)
        self._mark(resolved)

    def _whiteout_entry(self, parent: str, base: str) -> None:
        """A ``.wh.`` name: the opaque marker, a whiteout, or AUFS metadata (ignored)."""
        if base == OPAQUE_MARKER:
            self.stats.whiteouts += 1
            self._whiteout(parent, None)
        elif not base.startswith(AUFS_META_PREFIX):
            target = base[len(WHITEOUT_PREFIX) :]
            if target in ("", ".", ".."):
                raise Refusal(Reason.WHITEOUT_INVALID, f"whiteout of {target!r}")
            self.stats.whiteouts += 1
            self._whiteout(parent, target)

    def _admitted(self, member: TarMember) -> bool:
        """Whether an entry of this type can be made here: unsupported types and devices
        that cannot be created are skipped (False), symlink targets too long refused."""
        kind = member.type
        if kind is EntryType.OTHER:
            self._note(
                Action.SKIPPED,
                Reason.UNSUPPORTED,
                f"tar type {member.typeflag!r} (sparse file, socket or unknown) is not supported",
            )
            return False
        if kind in (EntryType.CHAR, EntryType.BLOCK) and not (
            0 <= member.devmajor <= _MAX_DEVICE_PART and 0 <= member.devminor <= _MAX_DEVICE_PART
        ):
            self._note(
                Action.SKIPPED,
                Reason.DEVICE,
                f"{kind.value} device {member.devmajor}:{member.devminor} not created "
                "(a device number outside 0 to 2^32-1)",
            )
            return False
        if kind in (EntryType.CHAR, EntryType.BLOCK) and not self.fs.devices:
            self._note(
                Action.SKIPPED,
                Reason.DEVICE,
                f"{kind.value} device {member.devmajor}:{member.devminor} not created "
                f"{self.device_hint}",
            )
            return False
        if kind is EntryType.SYMLINK:
            length = len(member.linkname.encode("utf-8", "surrogateescape"))
            if length > MAX_LINK_TARGET:
                # symlink(2) refuses it (ENAMETOOLONG); checked here so that unpack and
                # export (which writes no symlink) refuse the same entries
                raise Refusal(
                    Reason.SYMLINK_TARGET_LONG,
                    f"a symlink target of {length} bytes exceeds the bound of "
                    f"{MAX_LINK_TARGET} (PATH_MAX - 1)",
                )
        return True

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
            self._parents.invalidate()

    def _hardlink(self, member: TarMember, handle: H, base: str, resolved: str) -> bool:
        fs = self.fs
        target = clean_member_path(member.linkname)
        if target is None:
            raise Refusal(Reason.LINK_ESCAPES, f"links to {member.linkname!r}, outside the root")
        if not target:
            raise Refusal(Reason.LINK_DIRECTORY, "links to the root directory")
        target_parent, _, target_base = target.rpartition("/")
        try:
            found = self._parents.resolve(target_parent, create=False)
        except Refusal as refusal:
            raise Refusal(
                refusal.reason, f"link target {member.linkname!r}: {refusal.message}"
            ) from None
        missing = Refusal(Reason.LINK_MISSING, f"link target {member.linkname!r} does not exist")
        if found is None:
            raise missing
        target_handle, target_resolved_parent, clamped = found
        target_kind = fs.kind(target_handle, target_base)
        if target_kind is None:
            raise missing
        if target_kind is Kind.DIR:
            raise Refusal(Reason.LINK_DIRECTORY, f"link target {member.linkname!r} is a directory")
        if join(target_resolved_parent, target_base) == resolved:
            raise Refusal(Reason.LINK_ITSELF, "a hard link to itself")
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
        found = self._parents.resolve(parent, create=False)
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
            self._remove_lower(handle, target, kind, join(resolved_parent, target))

    def _overlay_whiteout(self, parent: str, target: str | None) -> None:
        """overlayfs's lowerdir form: a whiteout becomes a character device 0/0 (unless this
        layer wrote the name itself: a whiteout never hides its own layer's entry), an opaque
        marker the opaque xattr on its directory."""
        found = self._parents.resolve(parent, create=True)
        if found is None:
            return
        handle, resolved_parent, _ = found
        if target is None:
            self.fs.mark_opaque(handle)
            return
        if join(resolved_parent, target) in self._upper:
            return
        with contextlib.suppress(FileExistsError):
            self.fs.whiteout_device(handle, target)

    def _remove_lower(self, handle: H, name: str, kind: Kind, path: str) -> None:
        if path not in self._upper:
            self.fs.remove(handle, name, kind, path)
            if kind in (Kind.DIR, Kind.SYMLINK):
                self._parents.invalidate()
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
                    handle, owned = self._parents.reopen(here.split("/") if here else []), True
                    stack[-1] = (handle, here, names, owned)
                name = names.pop()
                child_path = join(here, name)
                kind = fs.kind(handle, name)
                if kind is None:
                    continue
                if child_path not in self._upper:
                    fs.remove(handle, name, kind, child_path)
                    if kind in (Kind.DIR, Kind.SYMLINK):
                        self._parents.invalidate()
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


def apply_layers(
    source: Source,
    image: Image,
    applier: LayerApplier[H],
    *,
    progress: Callable[[int], None] | None = None,
    layers: int | None = None,
    wanted: Callable[[str], bool] | None = None,
) -> None:
    """Stream each layer through ``applier``, verifying its diff_id once it is read.
    ``layers``: only the first N (the filesystem after layer N-1); ``wanted``: only the
    members whose cleaned name it accepts (the others, and unsafe names, are read past)."""
    for layer in image.layers[:layers]:
        applier.start_layer(layer.index)
        with open_layer(source, layer, progress=progress) as opened:
            reader = opened.reader
            try:
                for member in reader:
                    if wanted is not None:
                        name = clean_member_path(member.name)
                        if name is None or not wanted(name):
                            continue
                    applier.apply(member, reader)
            except TarFormatError as exc:
                if opened.stream.error:  # the decompressor's message says more
                    raise InvalidImageError(
                        opened.stream.error, subject=f"{source.label}: layer {layer.index}"
                    ) from exc
                raise exc.with_subject(f"{source.label}: layer {layer.index}") from None
            opened.finish(layer, label=source.label)
