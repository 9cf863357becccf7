"""The merged root filesystem as one tar stream (what ``crane export`` and ``docker export``
write), computed from the layers without extracting anything.

Pass 1 applies every layer to an in-memory tree with exactly the rules ``unpack`` uses
(``unpack.applier.LayerApplier``: whiteouts, symlinks resolved inside the root, hard links
resolved to the inode they name, the same refusals). The tree holds metadata only. Pass 2
writes the tar depth-first, as GNU tar and umoci do: each directory's entry, then everything
below it, names sorted, then its next sibling. GNU tar (``tar -xp``) sets a directory's
metadata once it meets a member outside that directory; an archive with every directory
first loses the directories' mtimes to the files written into them later. The headers are
laid out first, every size being known from pass 1; file contents are then streamed into
their places, layer by layer in the order each layer stores them, from a second read of
that layer (verified against its diff_id again). A stream that cannot seek (a pipe) gets
the tar through a temporary file. Every name of a hard-linked inode follows its first name
as a hard link entry. The output depends on the image alone: same image, same bytes.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from inspect_tool.errors import InvalidImageError
from inspect_tool.layers.decompress import CHUNK
from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.unpack.applier import LayerApplier, apply_layers
from inspect_tool.layers.unpack.audit import AuditEntry, ExtractStats, Note
from inspect_tool.layers.unpack.backend import Kind
from inspect_tool.layers.whiteout import OVERLAY_XATTR_PREFIXES
from inspect_tool.model.image import Image, Layer
from inspect_tool.sources.source import Source

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_IMPLICIT_DIR_MODE = 0o755
_NAME_MAX = 255  # bytes in one path component, as Linux file systems allow
_TAR_TYPES = {
    EntryType.FILE: tarfile.REGTYPE,
    EntryType.SYMLINK: tarfile.SYMTYPE,
    EntryType.FIFO: tarfile.FIFOTYPE,
    EntryType.CHAR: tarfile.CHRTYPE,
    EntryType.BLOCK: tarfile.BLKTYPE,
}


class _Dir:
    __slots__ = ("children", "member")

    def __init__(self, member: TarMember | None) -> None:
        self.member = member  # None: a parent no layer lists
        self.children: dict[str, _Dir | _Node] = {}


class _Node:
    """A non-directory inode; every name hard-linked to it holds the same object."""

    __slots__ = ("layer", "member")

    def __init__(self, member: TarMember, layer: int) -> None:
        self.member = member
        self.layer = layer


def _no_note(action: object, reason: object, message: str) -> None:
    return None


class MemoryBackend:
    """The applier's Backend over an in-memory tree: metadata only, no file content."""

    devices = True  # a tar can carry device nodes

    def __init__(self) -> None:
        self.root = _Dir(None)
        self.note: Note = _no_note
        self._layer = 0

    def start_layer(self, index: int) -> None:
        self._layer = index

    def step(self, parent: _Dir, name: str) -> tuple[Kind | None, _Dir | None, str | None]:
        child = parent.children.get(name)
        if child is None:
            return None, None, None
        if isinstance(child, _Dir):
            return Kind.DIR, child, None
        if child.member.type is EntryType.SYMLINK:
            return Kind.SYMLINK, None, child.member.linkname
        return _kind(child), None, None

    def kind(self, parent: _Dir, name: str) -> Kind | None:
        child = parent.children.get(name)
        if child is None:
            return None
        return Kind.DIR if isinstance(child, _Dir) else _kind(child)

    def mkdir(self, parent: _Dir, name: str, path: str, member: TarMember | None) -> None:
        self._free(parent, name)
        parent.children[name] = _Dir(member)

    def dir_meta(self, parent: _Dir, name: str, path: str, member: TarMember) -> None:
        child = parent.children[name]
        assert isinstance(child, _Dir)
        child.member = member

    def root_meta(self, member: TarMember) -> None:
        self.root.member = member

    def write_file(self, parent: _Dir, name: str, member: TarMember, reader: TarReader) -> None:
        self._free(parent, name)
        parent.children[name] = _Node(member, self._layer)  # the data is skipped by the reader

    def symlink(self, parent: _Dir, name: str, member: TarMember) -> None:
        self._free(parent, name)
        if not member.linkname:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if "\x00" in member.linkname:
            raise ValueError("embedded null byte")
        parent.children[name] = _Node(member, self._layer)

    def special(self, parent: _Dir, name: str, member: TarMember) -> None:
        self._free(parent, name)
        parent.children[name] = _Node(member, self._layer)

    # export's applier runs with OnDiskFormat.OCI (whiteouts applied), so overlay's on-disk
    # forms never reach this tree: asking for one is a programming error, not a missing feature
    def whiteout_device(self, parent: _Dir, name: str) -> None:
        raise TypeError("the export tree applies whiteouts: it keeps no overlay whiteouts")

    def mark_opaque(self, directory: _Dir) -> None:
        raise TypeError("the export tree applies whiteouts: it keeps no opaque marks")

    def link(self, src: _Dir, src_name: str, parent: _Dir, name: str) -> None:
        node = src.children.get(src_name)
        if node is None:
            raise FileNotFoundError(src_name)
        self._free(parent, name)
        parent.children[name] = node

    def remove(self, parent: _Dir, name: str, kind: Kind, path: str) -> None:
        parent.children.pop(name, None)

    def listdir(self, parent: _Dir) -> list[str]:
        return list(parent.children)

    def open_child(self, parent: _Dir, name: str) -> _Dir | None:
        child = parent.children.get(name)
        return child if isinstance(child, _Dir) else None

    def close(self, handle: _Dir) -> None:
        return None

    @staticmethod
    def _free(parent: _Dir, name: str) -> None:
        """Refuse what ``unpack``'s system calls refuse, so both report the same entries."""
        if "\x00" in name:
            raise ValueError("embedded null byte")
        if len(name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)
        if name in parent.children:
            raise FileExistsError(name)


def _kind(node: _Node) -> Kind:
    kind = node.member.type
    if kind is EntryType.FILE:
        return Kind.FILE
    if kind is EntryType.SYMLINK:
        return Kind.SYMLINK
    return Kind.OTHER


@dataclass(slots=True)
class ExportResult:
    output: str  # a file name, or "-" for stdout
    layers: int
    stats: ExtractStats = field(default_factory=ExtractStats)  # entries in the tar
    audit: list[AuditEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.audit


@dataclass(slots=True)
class _Pending:
    node: _Node
    path: str  # the name its content is written under
    offset: int  # of the content in the tar


class _TarWriter:
    """Headers written in order, content areas reserved (sizes known in advance) and filled
    later at their offsets: ``out`` must be seekable."""

    def __init__(self, out: BinaryIO, stats: ExtractStats) -> None:
        self._out = out
        self._stats = stats
        self._start = out.tell()
        self._written = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._written += len(data)

    def entry(self, info: tarfile.TarInfo) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        stats = self._stats
        if info.type == tarfile.DIRTYPE:
            stats.directories += 1
        elif info.type == tarfile.LNKTYPE:
            stats.hardlinks += 1
        elif info.type == tarfile.SYMTYPE:
            stats.symlinks += 1
        elif info.type == tarfile.FIFOTYPE:
            stats.fifos += 1
        elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            stats.devices += 1
        else:
            stats.files += 1

    def reserve(self, size: int) -> int:
        """Leave room for ``size`` bytes of content (padded to a block); their offset."""
        offset = self._written
        padded = size + (-size % _BLOCK)
        self._out.seek(padded, os.SEEK_CUR)
        self._written += padded
        self._stats.bytes += size
        return offset

    def fill(self, offset: int, reader: TarReader, size: int) -> None:
        """Write ``size`` bytes from ``reader`` (and the padding) at ``offset``."""
        self._out.seek(self._start + offset)
        left = size
        while left > 0:
            chunk = reader.read(min(left, CHUNK))
            self._out.write(chunk)
            left -= len(chunk)
        if size % _BLOCK:
            self._out.write(bytes(_BLOCK - size % _BLOCK))

    def close(self) -> None:
        self._out.seek(self._start + self._written)
        self._write(bytes(2 * _BLOCK))
        if self._written % _RECORD:
            self._write(bytes(_RECORD - self._written % _RECORD))
        self._out.flush()


def _info(path: str, member: TarMember | None, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path + "/" if directory else path)
    if directory:
        info.type = tarfile.DIRTYPE
    if member is None:  # an implied parent directory
        info.mode = _IMPLICIT_DIR_MODE
        info.mtime = 0
        return info
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.uname, info.gname = member.uname, member.gname
    info.mtime = int(member.mtime) if member.mtime.is_integer() else member.mtime
    if not directory:
        info.type = _TAR_TYPES[member.type]
        if member.type is EntryType.SYMLINK:
            info.linkname = member.linkname
        elif member.type in (EntryType.CHAR, EntryType.BLOCK):
            info.devmajor, info.devminor = member.devmajor, member.devminor
        elif member.type is EntryType.FILE:
            info.size = member.size
    if member.xattrs:
        info.pax_headers = {
            f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
            for key, value in sorted(member.xattrs.items())
            if not key.startswith(OVERLAY_XATTR_PREFIXES)  # as unpack: never image content
        }
    return info


def _link(path: str, target: str, member: TarMember) -> tarfile.TarInfo:
    """A hard link entry, with the inode's metadata as GNU tar writes it."""
    info = _info(path, member)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    info.size = 0
    info.devmajor = info.devminor = 0
    return info


def _seekable(out: BinaryIO) -> bool:
    try:
        return out.seekable()
    except (OSError, ValueError):
        return False


def _walk(root: _Dir) -> Iterator[tuple[str, _Dir | _Node]]:
    """Every entry below the root, parents before children, names sorted (iterative)."""
    stack: list[tuple[str, Iterator[tuple[str, _Dir | _Node]]]] = [
        ("", iter(sorted(root.children.items())))
    ]
    while stack:
        base, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        name, node = item
        path = f"{base}/{name}" if base else name
        yield path, node
        if isinstance(node, _Dir):
            stack.append((path, iter(sorted(node.children.items()))))


def export(
    source: Source,
    image: Image,
    out: BinaryIO,
    *,
    output_name: str = "-",
    progress: Callable[[int], None] | None = None,
    on_pass: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the image's merged filesystem to ``out`` as one tar stream.

    ``on_pass`` is called before each read of the layers with the bytes it will read.
    Raises InvalidImageError when a layer is unreadable or its diff_id is wrong (the tar
    written so far is then incomplete).
    """
    result = ExportResult(output_name, len(image.layers))
    tree = MemoryBackend()
    applier = LayerApplier(tree, ExtractStats(), result.audit)
    if on_pass is not None:
        on_pass(sum(layer.size or 0 for layer in image.layers))
    apply_layers(source, image, applier, progress=progress)
    applier.close()

    if _seekable(out):
        _write_tar(source, image, tree, out, result, progress, on_pass)
        return result
    with tempfile.TemporaryFile(prefix="dockscope-export-") as spool:
        _write_tar(source, image, tree, spool, result, progress, on_pass)
        spool.seek(0)
        shutil.copyfileobj(spool, out, CHUNK)
        out.flush()
    return result


def _write_tar(
    source: Source,
    image: Image,
    tree: MemoryBackend,
    out: BinaryIO,
    result: ExportResult,
    progress: Callable[[int], None] | None,
    on_pass: Callable[[int], None] | None,
) -> None:
    writer = _TarWriter(out, result.stats)
    first_name: dict[int, str] = {}  # inode (id of its node) -> the name written first
    pending: list[_Pending] = []  # content to fill in from a second read of the layers
    for path, node in _walk(tree.root):
        if isinstance(node, _Dir):
            writer.entry(_info(path, node.member, directory=True))
            continue
        key = id(node)
        if key in first_name:
            writer.entry(_link(path, first_name[key], node.member))
            continue
        first_name[key] = path
        writer.entry(_info(path, node.member))
        if node.member.type is EntryType.FILE and node.member.size > 0:
            pending.append(_Pending(node, path, writer.reserve(node.member.size)))

    by_layer: dict[int, dict[int, _Pending]] = {}
    for item in pending:
        by_layer.setdefault(item.node.layer, {})[item.node.member.offset] = item
    layers = [layer for layer in image.layers if layer.index in by_layer]
    if on_pass is not None:
        on_pass(sum(layer.size or 0 for layer in layers))
    for layer in layers:
        _write_contents(source, layer, by_layer[layer.index], writer, progress)
    writer.close()


def _write_contents(
    source: Source,
    layer: Layer,
    wanted: dict[int, _Pending],
    writer: _TarWriter,
    progress: Callable[[int], None] | None,
) -> None:
    subject = f"{source.label}: layer {layer.index}"
    with open_layer(source, layer, progress=progress) as opened:
        reader = opened.reader
        left = len(wanted)
        for member in reader:
            item = wanted.get(member.offset)
            if item is None:
                continue
            known = item.node.member
            if (member.name, member.size, member.type) != (known.name, known.size, known.type):
                raise InvalidImageError(
                    f"{member.name!r} at byte {member.offset} changed between two reads",
                    subject=subject,
                )
            writer.fill(item.offset, reader, known.size)
            left -= 1
            if not left:
                break
        if left:
            raise InvalidImageError(
                f"{left} entries seen on the first read are missing on the second", subject=subject
            )
        opened.finish(layer, label=source.label)
