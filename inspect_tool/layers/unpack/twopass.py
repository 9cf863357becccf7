"""Unpack in two passes with both cores busy: the final tree planned in memory, then made.

Pass 1 is export's (``memory.plan_layers``): every layer read whole by forked workers, its
diff_id checked, its members applied to the in-memory tree with the applier's rules, so the
audit is the one a layer-by-layer unpack gives. Nothing is written yet: a layer that fails
its diff_id leaves DEST empty.

Pass 2 makes the tree: directories (work mode, as ``DiskBackend`` makes them), symlinks and
special files here, depth first, each below its parent's descriptor; then the regular files
in forked workers, one layer per job, biggest first. A worker reads its layer a second time
and creates each file with ``O_CREAT | O_EXCL | O_NOFOLLOW`` below directory descriptors it
opens component by component without following anything, writes its bytes as they go by
(the first read noted where they lie in the tar, ``TarMember.data_offset``; a layer with
sparse files is parsed again instead), and sets its metadata (``DiskBackend.file_meta``). As
in export's second read, the layer is decompressed up to its last wanted byte and only
hashed after it, and its raw digest must be the first read's, which proves the bytes are
the ones whose diff_id was checked. Then the other names of hard-linked inodes, then the
directories' metadata (``DiskBackend.finish``). Only what survives the layers above is
written: a file a later layer replaces or deletes is never created. What the disk refuses is
reported per entry (its layer, name and header offset), so the audit reads as the one-pass
unpack's.

``unpack`` uses it where it pays (``usable``); elsewhere it applies the layers one by one
(``applier.apply_layers``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from inspect_tool.diskio import WRITE_PIECE, write_all
from inspect_tool.errors import DockscopeError, InvalidImageError
from inspect_tool.heap import no_cycle_collection
from inspect_tool.layers.decompress import CHUNK
from inspect_tool.layers.forked import LAYER_WORKERS, run_forked, usable_workers
from inspect_tool.layers.image_fs import OpenLayer, open_layer
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.unpack.applier import LayerApplier
from inspect_tool.layers.unpack.audit import Action, AuditEntry, ExtractStats, Reason
from inspect_tool.layers.unpack.backend import FATAL_ERRNOS, DestinationError, join
from inspect_tool.layers.unpack.disk import DIR_PATH, NEW_FILE, DiskBackend
from inspect_tool.layers.unpack.memory import MemoryBackend, TreeDir, TreeNode, plan_layers
from inspect_tool.model.image import Layer
from inspect_tool.sources.source import Source

_OPEN_DIRS = 64  # directory descriptors kept open (a deeper tree reopens through "..")
# a file to create weighs as much as this many bytes of blob to read, when the layers are
# handed out biggest first (~40 us of creating against ~4 ns a byte of reading, measured)
_FILE_WEIGHT = 10_000
# the entries the plan may hold (each ~0.85 KB with its place in the tree: ~210 MB); past
# them ``unpack_two_pass`` stops before writing anything (``TooManyEntries``) and ``unpack``
# applies the layers one by one, which holds none: a hostile image of millions of entries
# costs time, not memory
PLAN_ENTRIES = 250_000


def usable(source: Source, layers: Sequence[Layer]) -> bool:
    """Whether two passes pay here: two layers or more, two CPUs, and a source forked
    workers can read (each opens its own descriptor)."""
    return len(layers) > 1 and usable_workers(LAYER_WORKERS) > 1 and source.tree.forked_reads


@dataclass(slots=True)
class _Filled:
    """What a worker reports of one layer's files."""

    notes: list[AuditEntry] = field(default_factory=list)
    made_files: int = 0
    made_bytes: int = 0
    failed_files: int = 0
    failed_bytes: int = 0
    error: DockscopeError | None = None  # stopped: DEST is full, or the blob changed


# a regular file to create: (its parent's path, its name, its node)
_File = tuple[str, str, TreeNode]


def unpack_two_pass(
    source: Source,
    layers: Sequence[Layer],
    backend: DiskBackend,
    stats: ExtractStats,
    audit: list[AuditEntry],
    *,
    progress: Callable[[int], None] | None = None,
    on_pass: Callable[[int], None] | None = None,
) -> ExtractStats | None:
    """Unpack ``layers`` into the empty directory behind ``backend`` in two passes; ``stats``
    and ``audit`` receive what ``LayerApplier`` gives them, and ``backend.note`` is left
    reporting what ``backend.finish`` (the directories' metadata, the caller's) meets.
    Returns what DEST holds (``disk.tree_stats``'s counts: it was empty, and these are the
    entries made), or None where the disk refused an entry (a file may be there in part:
    only a walk of DEST counts it). ``on_pass`` is called before the second read with the
    bytes it reads. Raises what a layer-by-layer unpack raises (and ``BlobChangedError``
    when a blob is not the same on the second read), and ``TooManyEntries``, with nothing
    written, when the layers hold more than ``PLAN_ENTRIES`` entries."""
    with no_cycle_collection():
        return _two_passes(source, layers, backend, stats, audit, progress, on_pass)


def _two_passes(
    source: Source,
    layers: Sequence[Layer],
    backend: DiskBackend,
    stats: ExtractStats,
    audit: list[AuditEntry],
    progress: Callable[[int], None] | None,
    on_pass: Callable[[int], None] | None,
) -> ExtractStats | None:
    tree = MemoryBackend(devices=backend.devices)
    applier = LayerApplier(tree, stats, audit)
    digests = plan_layers(source, layers, applier, progress, budget=PLAN_ENTRIES)
    applier.close()
    last = layers[-1].index if layers else 0

    disk: list[AuditEntry] = []  # what the disk refused, by entry
    made = ExtractStats()  # what DEST holds
    files: dict[int, list[_File]] = {}
    links: list[tuple[str, str, str, str, TreeNode]] = []
    _make_tree(tree.root, backend, files, links, stats, made, disk)
    if tree.root.member is not None:
        backend.root_meta(tree.root.member)
    reads = [layer for layer in layers if layer.index in files]
    if on_pass is not None:
        on_pass(sum(layer.size or 0 for layer in reads if _reads(files[layer.index])))
    _make_files(source, reads, digests, backend, files, stats, made, disk, progress)
    _make_links(backend, links, stats, made, disk)
    audit.extend(disk)
    audit.sort(key=lambda entry: (entry.layer, -1 if entry.offset is None else entry.offset))

    def finishing(action: Action, reason: Reason, message: str) -> None:
        audit.append(AuditEntry(last, "", action, reason, message, None))

    backend.note = finishing
    return None if disk else made  # where the disk refused something, DEST is walked


class _Notes:
    """The backend's ``note`` while one entry is made: its problems, as that entry's."""

    __slots__ = ("entries", "node")

    def __init__(self, entries: list[AuditEntry]) -> None:
        self.entries = entries
        self.node: TreeNode | None = None

    def __call__(self, action: Action, reason: Reason, message: str) -> None:
        assert self.node is not None
        member = self.node.member
        self.entries.append(
            AuditEntry(self.node.layer, member.name, action, reason, message, member.offset)
        )


def _failed(exc: OSError | ValueError | OverflowError) -> str:
    """An entry's failure as the applier words it (``Reason.WRITE_FAILED``); raises when DEST
    cannot take more (``FATAL_ERRNOS``)."""
    if isinstance(exc, OSError):
        if exc.errno in FATAL_ERRNOS:
            raise DestinationError(f"cannot write: {exc.strerror}") from exc
        return exc.strerror or str(exc)
    return str(exc)


def _make_tree(
    root: TreeDir,
    backend: DiskBackend,
    files: dict[int, list[_File]],
    links: list[tuple[str, str, str, str, TreeNode]],
    stats: ExtractStats,
    made: ExtractStats,
    disk: list[AuditEntry],
) -> None:
    """Directories, symlinks and special files, depth first; regular files by layer into
    ``files``; every further name of an inode into ``links``. At most ``_OPEN_DIRS``
    descriptors stay open: a directory whose descriptor was closed is reopened through ".."
    from its child's when the walk climbs back."""
    first: dict[int, tuple[str, str]] = {}  # id(node) -> the (parent, name) it is made at
    notes = _Notes(disk)
    backend.note = notes
    # (descriptor or None, path, the children left to make)
    stack: list[tuple[int | None, str, list[tuple[str, TreeDir | TreeNode]]]] = [
        (backend.root, "", list(reversed(root.children.items())))
    ]
    try:
        while stack:
            fd, base, items = stack[-1]
            if not items:
                stack.pop()
                if stack and stack[-1][0] is None:  # reopen the parent before leaving
                    assert fd is not None
                    up = os.open("..", DIR_PATH, dir_fd=fd)
                    stack[-1] = (up, *stack[-1][1:])
                if fd is not None and fd != backend.root:
                    os.close(fd)
                continue
            assert fd is not None
            name, node = items.pop()
            path = join(base, name)
            if isinstance(node, TreeDir):
                try:
                    backend.mkdir(fd, name, path, node.member)
                except (OSError, ValueError) as exc:
                    message = _failed(exc)
                    if node.member is not None:  # else a parent no layer lists
                        disk.append(_entry(node, message))
                        stats.directories -= 1
                    continue  # nothing below it can be made
                made.directories += 1
                try:
                    child = os.open(name, DIR_PATH, dir_fd=fd)
                except OSError as exc:  # made, but nothing below it can be
                    message = _failed(exc)
                    if node.member is not None:
                        disk.append(_entry(node, message))
                    continue
                stack.append((child, path, list(reversed(node.children.items()))))
                if len(stack) > _OPEN_DIRS:
                    far = len(stack) - _OPEN_DIRS - 1
                    far_fd = stack[far][0]
                    if far_fd is not None and far_fd != backend.root:
                        os.close(far_fd)
                        stack[far] = (None, *stack[far][1:])
                continue
            at = first.get(id(node))
            if at is not None:
                links.append((at[0], at[1], base, name, node))
                continue
            first[id(node)] = (base, name)
            member = node.member
            if member.type is EntryType.FILE:
                files.setdefault(node.layer, []).append((base, name, node))
                continue
            notes.node = node
            try:
                if member.type is EntryType.SYMLINK:
                    backend.symlink(fd, name, member)
                else:
                    backend.special(fd, name, member)
            except (OSError, ValueError, OverflowError) as exc:
                disk.append(_entry(node, _failed(exc)))
                _count(stats, member.type, -1)
            else:
                _count(made, member.type, 1)
    finally:
        for fd, _, _ in stack:
            if fd is not None and fd != backend.root:
                os.close(fd)


def _entry(node: TreeNode | TreeDir, message: str) -> AuditEntry:
    member = node.member
    assert member is not None
    return AuditEntry(
        node.layer, member.name, Action.REFUSED, Reason.WRITE_FAILED, message, member.offset
    )


def _count(stats: ExtractStats, kind: EntryType, n: int) -> None:
    """``n`` more symlinks or special files (-1: one counted as applied that the disk
    refused)."""
    if kind is EntryType.SYMLINK:
        stats.symlinks += n
    elif kind is EntryType.FIFO:
        stats.fifos += n
    else:
        stats.devices += n


class _Dirs:
    """Descriptors of the tree's directories by path, each opened component by component
    from the nearest one known (``O_PATH | O_NOFOLLOW``: nothing is followed)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.open: dict[str, int] = {}

    def get(self, path: str) -> int:
        if not path:
            return self.root
        fd = self.open.get(path)
        if fd is not None:
            return fd
        base, parts = path, []
        while base and base not in self.open:
            base, _, part = base.rpartition("/")
            parts.append(part)
        fd = self.open.get(base, self.root) if base else self.root
        if len(self.open) + len(parts) > 4 * _OPEN_DIRS:
            self.close()
            fd, base, parts = self.root, "", path.split("/")[::-1]
        for part in reversed(parts):
            fd = os.open(part, DIR_PATH, dir_fd=fd)
            base = join(base, part)
            self.open[base] = fd
        return fd

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()


def _reads(items: list[_File]) -> bool:
    """Whether a layer's files need their bytes (else they are made empty, nothing read)."""
    return any(node.member.size for _, _, node in items)


def _make_files(
    source: Source,
    layers: list[Layer],
    digests: dict[int, str],
    backend: DiskBackend,
    files: dict[int, list[_File]],
    stats: ExtractStats,
    made: ExtractStats,
    disk: list[AuditEntry],
    progress: Callable[[int], None] | None,
) -> None:
    """Every regular file, a layer per job, in forked workers (the biggest layers first)."""

    def fill(layer: Layer, advance: Callable[[int], None] | None) -> _Filled:
        return _fill(source, layer, digests[layer.index], backend, files[layer.index], advance)

    workers = usable_workers(LAYER_WORKERS)
    if workers > 1 and len(layers) > 1 and source.tree.forked_reads:
        sizes = [(layer.size or 0) + _FILE_WEIGHT * len(files[layer.index]) for layer in layers]
        results = run_forked(fill, layers, sizes, workers=workers, progress=progress)
    else:
        results = [fill(layer, progress) for layer in layers]
    for filled in results:
        disk.extend(filled.notes)
        stats.files -= filled.failed_files
        stats.bytes -= filled.failed_bytes
        made.files += filled.made_files
        made.bytes += filled.made_bytes
    for filled in results:
        if filled.error is not None:
            raise filled.error


class _Maker:
    """Creates one layer's files in a worker and keeps its report."""

    def __init__(self, backend: DiskBackend, filled: _Filled) -> None:
        self.backend = backend
        self.filled = filled
        self.dirs = _Dirs(backend.root)
        self.notes = _Notes(filled.notes)

    def create(self, base: str, name: str, node: TreeNode) -> int | None:
        """A new file's descriptor; None when the disk refused it (reported)."""
        member = node.member
        try:
            parent = self.dirs.get(base)
            try:
                return os.open(name, NEW_FILE, member.mode & 0o777, dir_fd=parent)
            except FileExistsError:  # this job's earlier attempt, in a child that died
                os.unlink(name, dir_fd=parent)
                return os.open(name, NEW_FILE, member.mode & 0o777, dir_fd=parent)
        except (OSError, ValueError, OverflowError) as exc:
            self.failed(node, exc)
            return None

    def write(self, fd: int, node: TreeNode, data: memoryview | bytes) -> int | None:
        """``data`` into the file; None (the file closed, reported) when the disk refused."""
        try:
            _write(fd, data)
        except OSError as exc:
            os.close(fd)
            self.failed(node, exc)
            return None
        return fd

    def done(self, fd: int, node: TreeNode) -> None:
        """Its metadata set, and closed."""
        self.notes.node = node
        try:
            self.backend.file_meta(fd, node.member)
        except (OSError, ValueError, OverflowError) as exc:
            self.failed(node, exc)
            return
        finally:
            os.close(fd)
        self.filled.made_files += 1
        self.filled.made_bytes += node.member.size

    def failed(self, node: TreeNode, exc: OSError | ValueError | OverflowError) -> None:
        self.filled.notes.append(_entry(node, _failed(exc)))  # raises when DEST is full
        self.filled.failed_files += 1
        self.filled.failed_bytes += node.member.size


def _write(fd: int, data: memoryview | bytes) -> None:
    """``diskio.write_all``, a small piece (most files) written without its set-up."""
    if len(data) <= WRITE_PIECE:
        done = os.write(fd, data)  # all of it, but for a full disk or a signal
        if done == len(data):
            return
        data = memoryview(data)[done:]
    write_all(fd, data)


def _fill(
    source: Source,
    layer: Layer,
    digest_hex: str,
    backend: DiskBackend,
    items: list[_File],
    progress: Callable[[int], None] | None,
) -> _Filled:
    """One layer's files: the empty ones first, then the others in the order their bytes
    lie in the layer, written from a second read of it."""
    filled = _Filled()
    maker = _Maker(backend, filled)
    saved, backend.note = backend.note, maker.notes
    try:
        full: list[_File] = []
        for item in items:
            if item[2].member.size:
                full.append(item)
            elif (fd := maker.create(*item)) is not None:
                maker.done(fd, item[2])
        if full:
            _fill_layer(source, layer, digest_hex, maker, full, progress)
    except (DestinationError, InvalidImageError) as exc:
        filled.error = exc
    finally:
        backend.note = saved
        maker.dirs.close()
    return filled


def _fill_layer(
    source: Source,
    layer: Layer,
    digest_hex: str,
    maker: _Maker,
    items: list[_File],
    progress: Callable[[int], None] | None,
) -> None:
    """Each file created and its bytes written as a second read of the layer goes by."""
    with open_layer(source, layer, progress=progress, hash_diff=False) as opened:
        for (base, name, node), pieces in _pieces(source, layer, opened, items):
            fd = maker.create(base, name, node)
            for piece in pieces:  # read past even when it failed
                if fd is not None:
                    fd = maker.write(fd, node, piece)
            if fd is not None:
                maker.done(fd, node)
        opened.finish_again(layer, label=source.label, digest_hex=digest_hex)


def _pieces(
    source: Source, layer: Layer, opened: OpenLayer, items: list[_File]
) -> Iterator[tuple[_File, Iterator[memoryview | bytes]]]:
    """Each file with its bytes, in the order they lie in the layer: taken from the
    uncompressed stream at the place the first read noted (``TarMember.data_offset``), without
    parsing the tar again; or, in a layer with sparse files (their bytes are fragments the
    reader expands), through the tar reader, each member checked to be the one the first read
    saw. Each file's bytes are to be read whole before the next file is asked for."""
    if all(node.member.data_offset >= 0 for _, _, node in items):
        items.sort(key=lambda item: item[2].member.data_offset)
        stored = opened.stored(layer, label=source.label)
        for item in items:
            yield item, stored.pieces(item[2].member)
        return
    wanted = {item[2].member.offset: item for item in items}
    known = {offset: node.member for offset, (_, _, node) in wanted.items()}
    for member in opened.again(known, layer, label=source.label):
        # a stream cut short raises in the reader (open_layer names the layer)
        yield wanted[member.offset], opened.reader.iter_data(CHUNK)


def _make_links(
    backend: DiskBackend,
    links: list[tuple[str, str, str, str, TreeNode]],
    stats: ExtractStats,
    made: ExtractStats,
    disk: list[AuditEntry],
) -> None:
    """Every further name of an inode, linked to the name it was made at."""
    if not links:
        return
    dirs = _Dirs(backend.root)
    try:
        for src_base, src_name, base, name, node in links:
            try:
                backend.link(dirs.get(src_base), src_name, dirs.get(base), name)
            except (OSError, ValueError) as exc:
                disk.append(_entry(node, _failed(exc)))
                stats.hardlinks -= 1
                continue
            kind = node.member.type
            if kind is EntryType.FILE:  # tree_stats: a file's further names are links
                made.hardlinks += 1
            else:  # and every name of a symlink or special file one of its kind
                _count(made, kind, 1)
    finally:
        dirs.close()
