"""The disk backend: a directory reached only through descriptors opened below its own.

Every component is opened with ``openat(O_NOFOLLOW | O_DIRECTORY)`` from its parent's
descriptor, symlinks read with ``readlinkat``: the kernel never follows a symlink for the
applier, and nothing is opened by a string path joined onto DEST. Files are created with
``O_CREAT | O_EXCL | O_NOFOLLOW``; directories are removed by a descriptor walk that never
follows a symlink (``remove_tree``). Modes (setuid included), owners when running as root
(unless ``same_owner=False``), mtimes and xattrs are reproduced where permitted; overlayfs's
own xattrs (``whiteout.OVERLAY_XATTR_PREFIXES``) are never written from image content.
Directories' metadata is set once every layer is applied (``finish``). ``tree_stats`` counts
what a tree holds, by the same kind of walk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass

from inspect_tool.diskio import write_all
from inspect_tool.layers.decompress import CHUNK
from inspect_tool.layers.removal import remove_tree
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.unpack.audit import Action, AuditEntry, ExtractStats, Note, Reason
from inspect_tool.layers.unpack.backend import FATAL_ERRNOS, DestinationError, Kind
from inspect_tool.layers.whiteout import (
    OPAQUE_VALUE,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIXES,
    WHITEOUT_DEVICE,
)

DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
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
    """A directory's final metadata, set by ``finish`` once every layer is applied (until then the
    directory stays writable, and writing into it would move its mtime)."""

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
            return Kind.DIR, os.open(name, DIR_PATH, dir_fd=parent), None
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
            return os.open(name, DIR_PATH, dir_fd=parent)
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
        fd = os.open(name, NEW_FILE, member.mode & 0o777, dir_fd=parent)
        try:
            left = member.size
            while left > 0:
                data = reader.read(min(left, CHUNK))
                left -= len(data)
                write_all(fd, data)
            self.file_meta(fd, member)
        finally:
            os.close(fd)

    def file_meta(self, fd: int, member: TarMember) -> None:
        """The metadata of a file just created by this backend with ``NEW_FILE``: owner,
        the mode bits creation left out, xattrs, mtime."""
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
                fd = os.open(part, DIR_PATH, dir_fd=fd)
                base = f"{base}/{part}" if base else part
                ancestors.append((base, fd))
                if len(ancestors) > _OPEN_ANCESTORS:
                    # only the nearest ancestors stay open: a tree thousands of levels deep
                    # would otherwise exhaust the descriptor limit (the directories past it
                    # silently kept their work mode); the others are reopened when needed
                    os.close(ancestors.pop(0)[1])
            return os.open(name, _DIR_READ, dir_fd=fd)
        except OSError as exc:  # removed, or no longer a directory: nothing to set
            if exc.errno in FATAL_ERRNOS:
                raise DestinationError(f"cannot set directories' metadata: {exc.strerror}") from exc
            return None


def _no_note(action: Action, reason: Reason, message: str) -> None:
    return None


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
