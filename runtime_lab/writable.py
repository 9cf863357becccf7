"""The writable layer ("container layer"): what a container changed, read from its upperdir.

overlayfs records a deletion as a character device 0/0 (a whiteout) and a directory whose
lower contents are hidden as ``trusted.overlay.opaque=y``. ``changes`` turns that into docker
diff's A/C/D: A for an entry no lower layer has, C for one it replaced (a changed parent
directory included: overlay copies it up), D for a deletion. Paths the runtime itself made
(mount points the image lacked) are left out, as docker keeps them in its init layer.

The same directories become tars: ``merged_entries`` walks the merged filesystem (overlay's
lookup rules applied to the layer directories, nothing mounted), ``layer_entries`` the upperdir
as an OCI layer (a whiteout device becomes ``.wh.NAME``, an opaque directory is followed by
``.wh..wh..opq``), and ``write_tar`` writes either one deterministically. Everything is only
read (``changes`` too), with ``O_NOATIME`` where it opens files and directories, so even
access times stay.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.tarwrite import Item, TarStats, TarWriter

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "A", "C" or "D"
    path: str  # absolute in the container: "/etc/motd"
    type: str | None = None  # file, dir, symlink, … (None for deletions)
    size: int | None = None
    mode: int | None = None
    mtime: float | None = None
    sha256: str | None = None


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class LowerView:
    """Lookups in the image's layers (overlay lowerdirs, bottom first), never following a
    symlink: a path below a symlink does not exist as such."""

    def __init__(self, lowers: list[Path]) -> None:
        self.top_first = list(reversed(lowers))

    def lookup(self, path: str) -> os.stat_result | None:
        """What the merged lower layers hold at ``path`` (overlay's lookup, layer by layer)."""
        parts = [p for p in path.split("/") if p]
        for lower in self.top_first:
            current = lower
            opaque_above = False
            for i, part in enumerate(parts):
                current = current / part
                try:
                    st = os.lstat(current)
                except FileNotFoundError:
                    break  # this layer has nothing there
                if is_whiteout(st):
                    return None  # deleted in this layer
                if i == len(parts) - 1:
                    return st
                if not stat.S_ISDIR(st.st_mode):
                    return None  # a non-directory hides everything below it
                if is_opaque(current):
                    opaque_above = True
            if opaque_above:
                return None  # layers below cannot supply anything under an opaque directory
        return None

    def listdir(self, path: str) -> set[str]:
        """Names a lower directory holds (as the merged lower view shows them)."""
        names: set[str] = set()
        hidden: set[str] = set()
        parts = [p for p in path.split("/") if p]
        for lower in self.top_first:
            directory = lower.joinpath(*parts)
            try:
                st = os.lstat(directory)
            except FileNotFoundError:
                continue
            if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                break
            for name in _listdir(str(directory)):
                child = os.lstat(directory / name)
                if is_whiteout(child):
                    hidden.add(name)
                elif name not in hidden:
                    names.add(name)
            if is_opaque(directory):
                break
        return names


def _type(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
    ):
        if test(mode):
            return name
    return "other"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = _noatime_open(str(path), os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def changes(
    upper: Path, lowers: list[Path], *, ignore: set[str] | None = None, hashes: bool = False
) -> list[Change]:
    """docker diff's view of a writable layer, sorted by path."""
    ignore = ignore or set()
    lower = LowerView(lowers)
    found: list[Change] = []

    def walk(directory: Path, base: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        for name in sorted(_listdir(str(directory))):
            path = directory / name
            yield f"{base}/{name}", path, os.lstat(path)

    stack = [(upper, "")]
    while stack:
        directory, base = stack.pop()
        for path, host_path, st in walk(directory, base):
            if path in ignore:
                continue
            if is_whiteout(st):
                if lower.lookup(path) is not None:
                    found.append(Change("D", path))
                continue
            existed = lower.lookup(path)
            kind = "C" if existed is not None else "A"
            if stat.S_ISDIR(st.st_mode):
                if existed is not None and is_opaque(host_path):
                    present = set(_listdir(str(host_path)))
                    found += [
                        Change("D", f"{path}/{name}")
                        for name in sorted(lower.listdir(path) - present)
                    ]
                stack.append((host_path, path))
            found.append(
                Change(
                    kind,
                    path,
                    _type(st.st_mode),
                    st.st_size if stat.S_ISREG(st.st_mode) else None,
                    stat.S_IMODE(st.st_mode),
                    st.st_mtime,
                    _sha256(host_path) if hashes and stat.S_ISREG(st.st_mode) else None,
                )
            )
    return sorted(found, key=lambda c: c.path)


# -- tars: the writable layer as an OCI layer, the merged filesystem as docker export ----------

OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")  # overlay's bookkeeping, not content
# features that keep part of an entry in a lower layer: this reader does not follow them
_UNFOLLOWED = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


class WritableLayerError(DockscopeError):
    """A writable layer cannot be read as asked (exit 3)."""


@dataclass(frozen=True, slots=True)
class FsEntry:
    """One entry of a tar to write: ``host`` holds it (its metadata, its bytes)."""

    path: str  # relative, no leading or trailing slash: "etc/motd"
    host: str
    st: os.stat_result
    marker: bool = False  # a ".wh." file standing for ``host`` (a whiteout or opaque dir)


def _noatime_open(path: str, flags: int) -> int:
    """Open without touching the access time (evidence stays as it was), where permitted."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(path, flags)


def _listdir(path: str) -> list[str]:
    fd = _noatime_open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def merged_entries(upper: Path, lowers: list[Path]) -> Iterator[FsEntry]:
    """The merged filesystem (what the container's root showed), computed from the layer
    directories with overlay's lookup rules: the topmost layer holding a name decides, a
    whiteout hides the name below it, a non-directory hides everything below it, a directory
    merges with the directories below it down to the first opaque one. Parents come before
    children, names sorted; the root itself is not an entry. ``lowers`` is bottom first."""
    roots = [str(upper), *(str(p) for p in reversed(lowers))]
    # each level: (its relative path, children not yet visited, last name first)
    stack: list[tuple[str, list[tuple[str, str, os.stat_result, list[str]]]]] = [
        ("", _merge_children(roots))
    ]
    while stack:
        base, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        name, host, st, below = pending.pop()
        path = f"{base}/{name}" if base else name
        yield FsEntry(path, host, st)
        if stat.S_ISDIR(st.st_mode):
            stack.append((path, _merge_children(below)))


def _merge_children(directories: list[str]) -> list[tuple[str, str, os.stat_result, list[str]]]:
    """The merged children of one directory held by ``directories`` (topmost first): for each
    name, the host path that shows, its stat, and (for a directory) the directories that merge
    under it. Sorted by name, last first (popped from the end)."""
    names: set[str] = set()
    for directory in directories:
        names.update(_listdir(directory))
    children = []
    for name in sorted(names, reverse=True):
        shown: tuple[str, os.stat_result] | None = None
        merged: list[str] = []
        for directory in directories:
            host = os.path.join(directory, name)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                continue
            if is_whiteout(st):
                break
            if not stat.S_ISDIR(st.st_mode):
                if shown is None:
                    shown = (host, st)
                break  # a file hides what lies below; below a directory, it is hidden
            shown = shown or (host, st)
            merged.append(host)
            if is_opaque(Path(host)):
                break
        if shown is not None:
            children.append((name, shown[0], shown[1], merged))
    return children


def layer_entries(upper: Path, *, ignore: set[str] | None = None) -> Iterator[FsEntry]:
    """The writable layer as OCI layer entries: a whiteout device becomes ``.wh.NAME``, an
    opaque directory is followed by its ``.wh..wh..opq``. Paths in ``ignore`` (absolute:
    "/proc") are left out with everything below them. Parents before children, names sorted
    by the name written, the opaque marker right after its directory."""
    ignore = ignore or set()

    def children(directory: str, base: str) -> list[FsEntry]:
        found = []
        for name in _listdir(directory):
            path = f"{base}/{name}" if base else name
            if "/" + path in ignore:
                continue
            host = os.path.join(directory, name)
            st = os.lstat(host)
            if is_whiteout(st):
                where = f"{base}/{WHITEOUT_PREFIX}{name}" if base else WHITEOUT_PREFIX + name
                found.append(FsEntry(where, host, st, marker=True))
            else:
                found.append(FsEntry(path, host, st))
        return sorted(found, key=lambda e: e.path, reverse=True)

    stack = [children(str(upper), "")]
    while stack:
        pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        entry = pending.pop()
        yield entry
        if stat.S_ISDIR(entry.st.st_mode):
            if is_opaque(Path(entry.host)):
                yield FsEntry(f"{entry.path}/{OPAQUE_MARKER}", entry.host, entry.st, marker=True)
            stack.append(children(entry.host, entry.path))


def _xattrs(host: str) -> dict[str, str]:
    try:
        names = os.listxattr(host, follow_symlinks=False)
    except OSError:
        return {}
    found = {}
    for name in sorted(names):
        if name in _UNFOLLOWED:
            raise WritableLayerError(
                f"{name} is set: the layer was written with an overlay feature dockscope "
                "does not read (redirect_dir or metacopy)",
                subject=host,
            )
        if name.startswith(OVERLAY_XATTRS):
            continue
        try:
            value = os.getxattr(host, name, follow_symlinks=False)
        except OSError:
            continue
        found[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return found


def _header(entry: FsEntry) -> tarfile.TarInfo:
    st = entry.st
    info = tarfile.TarInfo(entry.path)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    pax: dict[str, str] = {}
    seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if nanos and seconds >= 0:
        pax["mtime"] = f"{seconds}.{nanos:09d}".rstrip("0")
    if entry.marker:  # docker's form: an empty file with the permissions and owner of its cause
        info.type = tarfile.REGTYPE
        info.mode = stat.S_IMODE(st.st_mode) & 0o777
        info.pax_headers = pax
        return info
    mode = st.st_mode
    info.mode = stat.S_IMODE(mode)
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.host)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    pax.update(_xattrs(entry.host))
    info.pax_headers = pax
    return info


def write_tar(entries: Iterable[FsEntry], out: BinaryIO) -> TarStats:
    """Entries as one POSIX (pax) tar: numeric owners only, nanosecond mtimes, xattrs but
    overlay's own, hard links as links to the first name written, file bytes streamed."""
    writer: TarWriter[FsEntry] = TarWriter(
        out,
        describe=lambda entry: Item(entry.path, entry.st, entry.marker),
        header=_header,
        open_data=lambda entry: (_noatime_open(entry.host, os.O_RDONLY), entry.host),
        error=WritableLayerError,
    )
    return writer.write_all(entries)
