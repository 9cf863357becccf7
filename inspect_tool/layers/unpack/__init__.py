"""Unpack an image's layers into a directory without ever touching anything outside it.

``unpack`` is the entry point (``dockscope unpack``; the runtime's layer store applies one
layer at a time with the same parts). The package, by concept:

- ``audit.py`` — what is refused, skipped or neutralised (``AuditEntry``), and the counts.
- ``backend.py`` — the ``Backend`` protocol entries are written through (a directory on
  disk here, an in-memory tree for ``export.py``: the flattened tar is exactly the tree
  unpack writes).
- ``parents.py`` — the directories entries go into, resolved inside the root as if it were
  ``/`` (filepath-securejoin's semantics, ``model/resolve.py``).
- ``applier.py`` — ``LayerApplier``: each entry, and the whiteout rules, onto a backend.
- ``disk.py`` — ``DiskBackend``: DEST reached only through directory descriptors.

This package is the only code that writes extracted files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.image_fs import TooManyEntries
from inspect_tool.layers.unpack import twopass
from inspect_tool.layers.unpack.applier import LayerApplier, apply_layers
from inspect_tool.layers.unpack.audit import AuditEntry, ExtractStats
from inspect_tool.layers.unpack.backend import DestinationError
from inspect_tool.layers.unpack.disk import DiskBackend, tree_stats
from inspect_tool.model.image import Image, Layer
from inspect_tool.sources.source import Source


@dataclass(frozen=True, slots=True)
class UnpackOptions:
    """The choices of one ``unpack``: which layers and members to apply, which owners, devices and
    xattrs to reproduce, whether DEST may hold files, and how many passes."""

    same_owner: bool | None = None  # None: keep owners when running as root
    devices: bool = False  # create device nodes (only as root)
    xattrs: bool = True
    force: bool = False  # unpack into a directory that is not empty
    layers: int | None = None  # only the first N layers (None: all of them)
    wanted: Callable[[str], bool] | None = None  # only these members (cleaned names)
    # plan the tree, then make it (twopass.py): None where it pays (two layers or more, two
    # CPUs, a source forked workers can read); True wherever it can run; False never
    two_pass: bool | None = None


@dataclass(slots=True)
class UnpackResult:
    """What ``unpack`` did: where it wrote and whether it kept owners and made devices, the entries
    applied, the audit of what it refused or changed, and what DEST holds at the end."""

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


def unpack(
    source: Source,
    image: Image,
    destination: Path,
    *,
    options: UnpackOptions | None = None,
    progress: Callable[[int], None] | None = None,
    on_pass: Callable[[int], None] | None = None,
) -> UnpackResult:
    """Write the image's merged root filesystem into ``destination``.

    ``progress`` receives the bytes read; ``on_pass`` is called before each read of the
    layers with the bytes it will read (two reads where the layers are unpacked in two
    passes, ``twopass.py``). Raises DestinationError (DEST not empty, not writable) and the
    readers' InvalidImageError (a layer unreadable, its diff_id wrong: DEST is then partly
    written, nothing outside it; empty after two passes' first).
    """
    options = options or UnpackOptions()
    root = os.geteuid() == 0
    same_owner = root if options.same_owner is None else options.same_owner and root
    count = len(image.layers[: options.layers])
    result = UnpackResult(destination, count, same_owner, options.devices and root)
    root_fd = prepare_destination(destination, force=options.force)
    backend = DiskBackend(
        root_fd,
        same_owner=same_owner,
        devices=result.devices,
        xattrs=options.xattrs,
    )
    layers = image.layers[: options.layers]
    applier: LayerApplier[int] | None = None
    try:
        ran, made = _two_pass(source, layers, backend, root_fd, result, options, progress, on_pass)
        if not ran:
            if on_pass is not None:
                on_pass(_blob_bytes(layers))
            applier = LayerApplier(backend, result.stats, result.audit)
            apply_layers(
                source,
                image,
                applier,
                progress=progress,
                layers=options.layers,
                wanted=options.wanted,
            )
            applier.close()
            applier.finishing()
        try:
            backend.finish()
        except OSError as exc:
            raise DestinationError(f"cannot set metadata: {exc.strerror}") from exc
        try:
            result.written = tree_stats(root_fd) if made is None else made
        except OSError as exc:
            raise DestinationError(f"cannot read back what was written: {exc.strerror}") from exc
    except DestinationError as exc:
        raise exc.with_subject(str(destination)) from exc.__cause__
    except DockscopeError as exc:
        raise exc.with_subject(source.label) from exc.__cause__
    finally:
        if applier is not None:
            applier.close()
        os.close(root_fd)
    return result


def _two_pass(
    source: Source,
    layers: Sequence[Layer],
    backend: DiskBackend,
    root_fd: int,
    result: UnpackResult,
    options: UnpackOptions,
    progress: Callable[[int], None] | None,
    on_pass: Callable[[int], None] | None,
) -> tuple[bool, ExtractStats | None]:
    """Unpack in two passes (``twopass.py``) where asked and possible (every member wanted,
    DEST empty): whether it ran (if not, DEST is untouched), and what DEST then holds where
    it is known without a walk."""
    wanted = options.two_pass
    if wanted is None:
        wanted = twopass.usable(source, layers)
    if not wanted or not layers or options.wanted is not None or os.listdir(root_fd):
        return False, None
    if on_pass is not None:
        on_pass(_blob_bytes(layers))
    try:
        made = twopass.unpack_two_pass(
            source, layers, backend, result.stats, result.audit, progress=progress, on_pass=on_pass
        )
    except TooManyEntries:  # nothing written: the layers are applied one by one instead
        result.stats = ExtractStats()
        result.audit.clear()
        return False, None
    return True, made


def _blob_bytes(layers: Sequence[Layer]) -> int:
    """What one read of ``layers`` reads: their blobs' bytes."""
    return sum(layer.size or 0 for layer in layers)
