"""``cp``: files between a container and the host, both ways, as docker cp copies them: a tar
archive made on one side and extracted on the other (``-`` on either side is that tar).

Where the container's files are:

- a running container: its root as its mount namespace sees it, ``/proc/PID/root`` (volumes
  and all);
- a stopped one: its layers, mounted again as overlayfs (the image's layers under its
  writable layer) in a mount namespace of a child process made for the copy, so what is read
  is the merged view and what is written lands in the writable layer (``container diff``
  shows it); nothing of that mount is ever visible on the host. Its volumes are not mounted.

Every path inside the container is resolved by inspect_tool/model/resolve.py (the one
resolver) as if the container's root were ``/``: a symlink to ``/etc`` means the container's
``/etc``, ``..`` stops at its root. The resolved components are then opened one at a time from
the root's descriptor with ``O_NOFOLLOW``, so a link swapped in meanwhile fails the copy rather
than leading out. Archive entries are written the same way: below the destination, never out
of it (an entry whose ``..`` leaves the destination is refused, as docker refuses it).

docker's rules for SRC and DEST (``plan``): a file to a missing DEST makes that file, to a
directory goes into it under its own name; a directory to a missing DEST becomes DEST, to an
existing directory goes into it (``SRC/.``: its contents do); a directory onto a file, a DEST
ending in ``/`` that does not exist, or a missing DEST parent are errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from inspect_tool.diskio import write_to
from inspect_tool.errors import UsageError
from inspect_tool.model.resolve import (
    DIRECTORY,
    NOT_DIRECTORY,
    Missing,
    Node,
    Reason,
    Refusal,
    resolve,
    symlink,
)
from runtime_lab.lifecycle.state import ContainerError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CopyError(ContainerError):
    """A copy the files refuse (exit 3): a missing source, a directory onto a file."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a copy: a root (``/`` for the host) and a path in it."""

    root: str
    path: str
    container: str | None = None  # the container's name, for messages

    def where(self) -> str:
        return f"{self.container}:{self.path}" if self.container else self.path


# -- resolving inside a root --------------------------------------------------------------------


def _lookup(root: str) -> Callable[[tuple[str, ...]], Node | None]:
    def lookup(parts: tuple[str, ...]) -> Node | None:
        try:
            st = os.lstat(os.path.join(root, *parts))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            return symlink(os.readlink(os.path.join(root, *parts)))
        return DIRECTORY if stat.S_ISDIR(st.st_mode) else NOT_DIRECTORY

    return lookup


def locate(side: Endpoint, *, follow_last: bool = True) -> tuple[str, ...] | None:
    """The real components of ``side.path`` in its root (None: it does not exist)."""
    found = resolve(side.path, _lookup(side.root), follow_last=follow_last)
    if isinstance(found, Refusal):
        if found.reason is Reason.MISSING:
            return None
        if found.reason is Reason.LOOP:
            raise CopyError(f"{side.where()}: too many levels of symbolic links")
        raise CopyError(f"{side.where()}: /{'/'.join(found.at)} is not a directory")
    return found.parts


@contextlib.contextmanager
def open_dir(root: str, parts: tuple[str, ...]) -> Iterator[int]:
    """A descriptor of the directory at ``parts`` below ``root``, each component opened with
    O_NOFOLLOW from the one before."""
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # /proc/PID/root is a link, by design
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise CopyError(f"/{'/'.join(parts)}: changed while being copied") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def kind_of(side: Endpoint, parts: tuple[str, ...] | None) -> str | None:
    """ "dir", "file" (anything else) or None (missing)."""
    if parts is None:
        return None
    try:  # the root itself may be a link by design (/proc/PID/root): followed
        path = os.path.join(side.root, *parts)
        st = os.lstat(path) if parts else os.stat(path)
    except FileNotFoundError:
        return None
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


# -- docker's rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """Extract into ``directory`` (a path on the destination side); the archive's top entry is
    named ``name`` (None: the source directory's contents, unnamed)."""

    directory: str
    name: str | None


def plan(src: str, src_kind: str, dest: str, dest_kind: str | None) -> Plan:
    """docker cp's table (``docker cp --help``), for a source that exists."""
    contents_only = src_kind == "dir" and (src.endswith("/.") or src == ".")
    base = posixpath.basename(posixpath.normpath(src)) or "/"
    if dest_kind is None:
        if dest.endswith("/") and src_kind == "file":
            raise CopyError(f"{dest}: the destination directory must exist")
        parent, name = posixpath.split(dest.rstrip("/") or "/")
        return Plan(parent or ".", name)
    if dest_kind == "file":
        if src_kind == "dir":
            raise CopyError(f"cannot copy a directory to a file: {dest}")
        parent, name = posixpath.split(dest)
        return Plan(parent or ".", name)
    if contents_only:
        return Plan(dest, None)
    return Plan(dest, base if base not in ("/", ".") else None)


# -- making the archive -------------------------------------------------------------------------


def write_archive(
    side: Endpoint, out: IO[bytes], *, name: str | None, follow: bool, archive: bool
) -> int:
    """The source as a tar on ``out``: its top entry named ``name`` (None: a directory's
    contents only). Symlinks inside are kept as links; ``follow``: the source itself is
    followed when it is one. Returns the entries written."""
    parts = locate(side, follow_last=follow)
    if parts is None or kind_of(side, parts) is None:
        raise CopyError(f"could not find the file {side.where()}")
    count = 0
    with (
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        open_dir(side.root, parts[:-1]) as parent,
    ):
        top = parts[-1] if parts else None
        if top is None:  # the root itself
            with open_dir(side.root, ()) as fd:
                count += _add_tree(tar, fd, name or "", archive, root=True)
            return count
        st = os.stat(top, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(top, _DIR_FLAGS, dir_fd=parent)
            try:
                count += _add_tree(tar, fd, name or "", archive, root=name is None)
            finally:
                os.close(fd)
        else:
            count += _add_entry(tar, parent, top, st, name or top, archive)
    return count


def _info(name: str, st: os.stat_result, archive: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = (st.st_uid, st.st_gid) if archive else (0, 0)
    return info


def _add_entry(
    tar: tarfile.TarFile, parent: int, entry: str, st: os.stat_result, name: str, archive: bool
) -> int:
    info = _info(name, st, archive)
    if stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)
        return 1
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry, dir_fd=parent)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:  # a socket: tar has no such entry
        return 0
    tar.addfile(info)
    return 1


def _add_tree(tar: tarfile.TarFile, fd: int, name: str, archive: bool, *, root: bool) -> int:
    """A directory (open as ``fd``) and all below it; iterative, one descriptor a level."""
    count = 0
    if not root:
        info = _info(name, os.fstat(fd), archive)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        count += 1
    with os.scandir(fd) as entries:
        listed = sorted((e.name, e.stat(follow_symlinks=False)) for e in entries)
    for entry, st in listed:
        child_name = posixpath.join(name, entry) if name else entry
        if stat.S_ISDIR(st.st_mode):
            child = os.open(entry, _DIR_FLAGS, dir_fd=fd)
            try:
                count += _add_tree(tar, child, child_name, archive, root=False)
            finally:
                os.close(child)
        else:
            count += _add_entry(tar, fd, entry, st, child_name, archive)
    return count


# -- extracting it ------------------------------------------------------------------------------


def extract_archive(side: Endpoint, stream: IO[bytes], *, archive: bool) -> int:
    """Extract the tar on ``stream`` into the directory ``side.path`` (which must exist),
    every entry resolved inside ``side.root``; the entries written."""
    dest = locate(side)
    if dest is None:
        raise CopyError(f"no such directory: {side.where()}")
    if kind_of(side, dest) != "dir":
        raise CopyError(f"{side.where()}: not a directory")
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                count += _extract_one(side, dest, tar, member, archive)
    except tarfile.TarError as exc:
        raise UsageError(f"the archive cannot be read: {exc}") from None
    return count


def _clean(name: str) -> tuple[str, ...] | None:
    """An entry's name as components below the destination (None: it leaves it)."""
    normal = posixpath.normpath("/" + name).lstrip("/")
    if posixpath.normpath(name.lstrip("/")).startswith(".."):
        return None
    return tuple(p for p in normal.split("/") if p and p != ".")


def _parent_of(side: Endpoint, dest: tuple[str, ...], parts: tuple[str, ...]) -> tuple[str, ...]:
    """The real directory an entry goes in: its parent components resolved below ``dest``
    (links followed, clamped at the root), missing ones made."""

    def create(made: tuple[str, ...], last: bool) -> Node:
        with open_dir(side.root, made[:-1]) as fd:
            os.mkdir(made[-1], 0o755, dir_fd=fd)
        return DIRECTORY

    found = resolve(
        parts[:-1], _lookup(side.root), directory=True, missing=Missing.CREATE,
        create=create, start=dest,
    )  # fmt: skip
    if isinstance(found, Refusal):
        raise CopyError(f"{side.where()}/{'/'.join(parts)}: a parent is not a directory")
    return found.parts


def _extract_one(
    side: Endpoint,
    dest: tuple[str, ...],
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    archive: bool,
) -> int:
    parts = _clean(member.name)
    if parts is None:
        raise CopyError(f"{member.name!r} is outside of {side.where()}")
    if not parts:  # "." or "/": the destination itself
        return 0
    parent = _parent_of(side, dest, parts)
    last = parts[-1]
    with open_dir(side.root, parent) as fd:
        try:
            existing = os.stat(last, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            if stat.S_ISDIR(existing.st_mode):
                raise CopyError(f"cannot overwrite directory {'/'.join(parts)} with a file")
            os.unlink(last, dir_fd=fd)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(last, 0o700, dir_fd=fd)
        elif member.isreg():
            source = tar.extractfile(member)
            assert source is not None
            out = os.open(
                last, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600, dir_fd=fd,
            )  # fmt: skip
            with os.fdopen(out, "wb") as f:
                while chunk := source.read(1 << 20):
                    write_to(f, chunk)
        elif member.issym():
            os.symlink(member.linkname, last, dir_fd=fd)  # the container's own, resolved there
        elif member.islnk():
            target = _clean(member.linkname)
            if target is None or not target:
                raise CopyError(f"{member.name!r}: its link target leaves the destination")
            target_parent = _parent_of(side, dest, target)
            with open_dir(side.root, target_parent) as tfd:
                os.link(target[-1], last, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
            return 1
        elif member.isfifo():
            os.mkfifo(last, 0o600, dir_fd=fd)
        else:  # devices: not made by cp (docker refuses them too, without --privileged)
            return 0
        _attributes(fd, last, member, archive)
    return 1


def _attributes(fd: int, name: str, member: tarfile.TarInfo, archive: bool) -> None:
    if archive:
        os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
    if not member.issym():
        os.chmod(name, member.mode & 0o7777, dir_fd=fd)
    with contextlib.suppress(OSError):  # a symlink's time where the kernel allows it
        os.utime(name, (member.mtime, member.mtime), dir_fd=fd, follow_symlinks=False)


# -- one copy -------------------------------------------------------------------------------------


def copy(
    src: Endpoint | None,
    dest: Endpoint | None,
    *,
    stdin: IO[bytes],
    stdout: IO[bytes],
    follow: bool = False,
    archive: bool = False,
) -> dict[str, Any]:
    """``src`` None: the tar on ``stdin`` into ``dest``; ``dest`` None: ``src`` as a tar on
    ``stdout``; else from ``src`` to ``dest`` by docker's rules (plan)."""
    if src is None:
        assert dest is not None
        return {"entries": extract_archive(dest, stdin, archive=archive), "to": dest.where()}
    if dest is None:
        name = None if src.path.endswith("/.") else _top_name(src)
        count = write_archive(src, stdout, name=name, follow=follow, archive=archive)
        return {"entries": count, "from": src.where()}
    src_parts = locate(src, follow_last=follow)
    src_kind = kind_of(src, src_parts)
    if src_kind is None:
        raise CopyError(f"could not find the file {src.where()}")
    dest_parts = locate(dest)
    decided = plan(src.path, src_kind, dest.path, kind_of(dest, dest_parts))
    target = Endpoint(dest.root, decided.directory, dest.container)
    if locate(target) is None:
        raise CopyError(f"no such directory: {target.where()}")
    import threading

    read_end, write_end = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_end, "wb") as out:
                write_archive(src, out, name=decided.name, follow=follow, archive=archive)
        except BaseException as exc:  # told to the consumer's side
            failure.append(exc)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    try:
        with os.fdopen(read_end, "rb") as stream:
            count = extract_archive(target, stream, archive=archive)
    finally:
        writer.join()
    if failure:
        raise failure[0]
    return {"entries": count, "from": src.where(), "to": dest.where()}


def _top_name(side: Endpoint) -> str | None:
    """The archive's top entry for ``cp SRC -``: SRC's own name (the root: its contents)."""
    return posixpath.basename(posixpath.normpath(side.path)) or None
