"""Read-only access to a copy of engine storage: the evidence.

Nothing below ROOT is ever written, opened for writing, mounted, or reached through a
symlink. Every path is walked one component at a time from a directory descriptor of ROOT
with ``O_NOFOLLOW``: a symlink where a directory or file is expected is an
``UnsafePathError``, never followed (an engine's own ``l/`` links are read with ``readlink``
and checked, see ``docker.py``). Files and directories are opened with ``O_NOATIME`` where
the kernel permits it, so reading does not even move access times. Names that come from the
evidence (layer IDs, cache IDs) pass ``check_name`` before they become a path component.

``LayerDir`` is one layer directory (an overlay ``diff``, an AUFS branch, a vfs tree) with
lookups relative to it: ``lstat`` never follows a symlink; ``stat`` follows symlinks the way
an engine's ``os.Stat`` does, but resolved inside the layer directory (an absolute target
restarts at the layer's root, ``..`` stops there), so nothing outside ROOT is ever reached.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inspect_tool.errors import InvalidImageError, UnsafePathError
from inspect_tool.model.jsondoc import MAX_JSON_BYTES, parse_json
from inspect_tool.model.resolve import DIRECTORY, NOT_DIRECTORY, Node, Resolved, symlink
from inspect_tool.model.resolve import resolve as resolve_path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+-]*")
_DIR_CACHE = 64


class StorageError(InvalidImageError):
    """The engine storage is missing something it should hold, or holds it malformed."""


def check_name(value: object, *, what: str, subject: str) -> str:
    """A name read from the evidence (an ID, a cache ID) that will become one path
    component: letters, digits and ``_.:=+-``, not starting with a dot, at most 255 bytes."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > 255:
        raise UnsafePathError(f"{what} is not a plain name: {value!r:.80}", subject=subject)
    return value


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError("a path with '..' is never walked", subject=rel)
    return parts


def open_noatime(name: str, flags: int, dir_fd: int | None) -> int:
    """``openat`` with O_NOATIME where permitted (it needs ownership or CAP_FOWNER)."""
    try:
        return os.open(name, flags | os.O_NOATIME, dir_fd=dir_fd)
    except PermissionError:
        return os.open(name, flags, dir_fd=dir_fd)


def _at(dir_fd: int, name: str) -> str:
    """A path naming ``name`` inside an open directory without following ``name`` itself,
    for the calls that take no ``dir_fd`` (the xattr family)."""
    return f"/proc/self/fd/{dir_fd}/{name}"


class Evidence:
    """ROOT, opened once; every lookup below it goes through descriptors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            # ROOT itself is the user's own path: it may be a symlink they chose
            self._fd = open_noatime(str(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, None)
        except FileNotFoundError:
            raise StorageError("no such directory", subject=str(root)) from None
        except NotADirectoryError:
            raise StorageError("not a directory", subject=str(root)) from None
        except PermissionError:
            raise StorageError("permission denied", subject=str(root)) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Evidence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, rel: str) -> Path:
        """For messages and reports only: never opened by this string."""
        return self.root.joinpath(*_parts(rel)) if rel else self.root

    # -- descriptors ---------------------------------------------------------------------------

    def open_dir(self, rel: str) -> int:
        """A descriptor of the directory ``rel`` (the caller closes it)."""
        fd = os.dup(self._fd)
        try:
            for part in _parts(rel):
                new = self._step(fd, part, rel)
                os.close(fd)
                fd = new
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _step(self, fd: int, part: str, rel: str) -> int:
        try:
            return open_noatime(part, _DIR_FLAGS, fd)
        except FileNotFoundError:
            raise StorageError("not found", subject=str(self.path(rel))) from None
        except (NotADirectoryError, OSError) as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                what = "a symlink (not followed)" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise UnsafePathError(f"{part} is {what}", subject=str(self.path(rel))) from None
            raise StorageError(exc.strerror or str(exc), subject=str(self.path(rel))) from None

    def open_file(self, rel: str) -> int:
        """A read-only descriptor of the regular file ``rel``."""
        *parents, name = _parts(rel) or [""]
        dir_fd = self.open_dir("/".join(parents))
        try:
            return _open_regular(dir_fd, name, str(self.path(rel)))
        finally:
            os.close(dir_fd)

    # -- queries -------------------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        """The entry itself (never followed); None when it, or a parent, does not exist."""
        parts = _parts(rel)
        if not parts:
            return os.fstat(self._fd)
        try:
            dir_fd = self.open_dir("/".join(parts[:-1]))
        except StorageError:
            return None
        try:
            return os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(dir_fd)

    def is_dir(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def is_file(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISREG(st.st_mode)

    def listdir(self, rel: str) -> list[str]:
        fd = self.open_dir(rel)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def readlink(self, rel: str) -> str:
        parts = _parts(rel)
        dir_fd = self.open_dir("/".join(parts[:-1]))
        try:
            return os.readlink(parts[-1], dir_fd=dir_fd)
        except OSError as exc:
            raise StorageError(
                f"not a symlink: {exc.strerror}", subject=str(self.path(rel))
            ) from None
        finally:
            os.close(dir_fd)

    def read_bytes(self, rel: str, *, limit: int = MAX_JSON_BYTES) -> bytes:
        """The whole file, refused when it is larger than ``limit``."""
        fd = self.open_file(rel)
        with os.fdopen(fd, "rb", buffering=0) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StorageError(f"larger than the {limit}-byte limit", subject=str(self.path(rel)))
        return data

    def read_text(self, rel: str, *, limit: int = 4096) -> str:
        """A small text file (an ID, a link name), stripped."""
        data = self.read_bytes(rel, limit=limit)
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise StorageError("not UTF-8 text", subject=str(self.path(rel))) from None

    def read_json(self, rel: str) -> Any:
        return parse_json(self.read_bytes(rel), subject=str(self.path(rel)))

    def layer(self, rel: str) -> LayerDir:
        return LayerDir(self, rel)


def _open_regular(dir_fd: int, name: str, subject: str) -> int:
    # never open anything but a regular file: opening a device node or a FIFO can act
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise StorageError("not found", subject=subject) from None
    except OSError as exc:
        raise StorageError(exc.strerror or str(exc), subject=subject) from None
    if stat.S_ISLNK(before.st_mode):
        raise UnsafePathError("a symlink (not followed)", subject=subject)
    if not stat.S_ISREG(before.st_mode):
        raise StorageError("not a regular file", subject=subject)
    try:
        fd = open_noatime(name, _FILE_FLAGS, dir_fd)
    except FileNotFoundError:
        raise StorageError("not found", subject=subject) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError("a symlink (not followed)", subject=subject) from None
        raise StorageError(exc.strerror or str(exc), subject=subject) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StorageError("not a regular file", subject=subject)
    os.set_blocking(fd, True)
    return fd


class LayerDir:
    """One layer directory of the evidence; paths inside it are tuples of names."""

    def __init__(self, evidence: Evidence, rel: str) -> None:
        self.evidence = evidence
        self.rel = rel
        self.fd = evidence.open_dir(rel)
        self._dirs: OrderedDict[tuple[str, ...], int | None] = OrderedDict()

    @property
    def label(self) -> str:
        return str(self.evidence.path(self.rel))

    def close(self) -> None:
        for fd in self._dirs.values():
            if fd is not None:
                os.close(fd)
        self._dirs.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LayerDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dir_fd(self, parts: tuple[str, ...]) -> int | None:
        """A cached descriptor of the directory at ``parts`` (walked without following any
        symlink); None when it is missing or not a directory. Do not close it."""
        if not parts:
            return self.fd
        cached = self._dirs.get(parts, -1)
        if cached != -1:
            self._dirs.move_to_end(parts)
            return cached
        # the deepest ancestor already open, then one component at a time (no recursion:
        # evidence trees can be deeper than Python's stack)
        depth = len(parts) - 1
        while depth > 0 and parts[:depth] not in self._dirs:
            depth -= 1
        fd: int | None = self._dirs[parts[:depth]] if depth else self.fd
        for end in range(depth + 1, len(parts) + 1):
            new: int | None = None
            if fd is not None:
                try:
                    new = open_noatime(parts[end - 1], _DIR_FLAGS, fd)
                except OSError:
                    new = None
            self._remember(parts[:end], new)
            fd = new
        return fd

    def _remember(self, parts: tuple[str, ...], fd: int | None) -> None:
        self._dirs[parts] = fd
        while len(self._dirs) > _DIR_CACHE:
            _, old = self._dirs.popitem(last=False)
            if old is not None:
                os.close(old)

    def lstat(self, parts: tuple[str, ...]) -> os.stat_result | None:
        if not parts:
            return os.fstat(self.fd)
        parent = self.dir_fd(parts[:-1])
        if parent is None:
            return None
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except OSError:
            return None

    def stat(self, parts: tuple[str, ...]) -> os.stat_result | None:
        """Like the engine's ``os.Stat(layer + path)``: symlinks followed, but resolved inside
        this layer directory (never outside it); None when the result does not exist (or
        the links loop)."""
        resolved = self.resolve(parts)
        return None if resolved is None else self.lstat(resolved)

    def resolve(self, parts: tuple[str, ...]) -> tuple[str, ...] | None:
        def lookup(here: tuple[str, ...]) -> Node | None:
            st = self.lstat(here)
            if st is None:
                return None
            if stat.S_ISLNK(st.st_mode):
                return symlink(self.readlink(here))
            return DIRECTORY if stat.S_ISDIR(st.st_mode) else NOT_DIRECTORY

        found = resolve_path(parts, lookup)
        return found.parts if isinstance(found, Resolved) else None

    def listdir(self, parts: tuple[str, ...]) -> list[str]:
        fd = self.dir_fd(parts)
        if fd is None:
            return []
        return sorted(os.listdir(fd))

    def readlink(self, parts: tuple[str, ...]) -> str:
        parent = self.dir_fd(parts[:-1])
        if parent is None:
            raise StorageError("the parent is not a directory", subject=self.display(parts))
        return os.readlink(parts[-1], dir_fd=parent)

    def open_file(self, parts: tuple[str, ...]) -> int:
        parent = self.dir_fd(parts[:-1])
        if parent is None:
            raise StorageError("the parent is not a directory", subject=self.display(parts))
        return _open_regular(parent, parts[-1], self.display(parts))

    def _xattr_target(self, parts: tuple[str, ...]) -> int | str | None:
        if not parts:
            return self.fd
        parent = self.dir_fd(parts[:-1])
        return None if parent is None else _at(parent, parts[-1])

    def getxattr(self, parts: tuple[str, ...], name: str) -> bytes | None:
        target = self._xattr_target(parts)
        if target is None:
            return None
        try:
            if isinstance(target, int):
                return os.getxattr(target, name)
            return os.getxattr(target, name, follow_symlinks=False)
        except OSError:
            return None

    def xattrs(self, parts: tuple[str, ...]) -> dict[str, bytes]:
        target = self._xattr_target(parts)
        if target is None:
            return {}
        found: dict[str, bytes] = {}
        follow = {} if isinstance(target, int) else {"follow_symlinks": False}
        try:
            names = os.listxattr(target, **follow)
        except OSError:
            return found
        for name in sorted(names):
            with contextlib.suppress(OSError):
                found[name] = os.getxattr(target, name, **follow)
        return found

    def display(self, parts: tuple[str, ...]) -> str:
        return self.label + "/" + "/".join(parts) if parts else self.label

    def walk(
        self,
        parts: tuple[str, ...] = (),
        *,
        prune: Callable[[tuple[str, ...]], bool] | None = None,
    ) -> Iterator[tuple[tuple[str, ...], os.stat_result]]:
        """Every entry below ``parts`` (never following symlinks), depth first, names sorted
        at each level: the order of Go's ``filepath.Walk``. Entries ``prune`` accepts are
        left out with everything below them."""
        stack: list[Iterator[str]] = [iter(self.listdir(parts))]
        bases = [parts]
        while stack:
            name = next(stack[-1], None)
            if name is None:
                stack.pop()
                bases.pop()
                continue
            path = (*bases[-1], name)
            if prune is not None and prune(path):
                continue
            st = self.lstat(path)
            if st is None:
                continue
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(iter(self.listdir(path)))
                bases.append(path)
