"""What the runtime remembers of an image file it has run, so that the next run of the same,
unchanged file need not read it again.

``dockscope run IMAGE.tar`` reads the archive's index, manifest and config (and, the first
time, unpacks its layers into the layer store). podman and docker read an archive once, at
``load``, and run from their store afterwards; dockscope runs the file itself, so it keeps,
for each file it has run, a record under ``<root>/archives/``: the file's identity as the
kernel gives it (device, inode, size, modification and change times in nanoseconds), the
selection (``--image``, ``--ref``, ``--platform``) and the location's own, and what the run
took from the file: the config's exact bytes and the layers' diff_ids. The next run of the
same path with the same selection uses the record instead of the file when

- the file's identity is the recorded one (any write, rename over or ``touch`` changes the
  change time, which no call can set back),
- the config's sha256 is the recorded image ID (a record is trusted as the layer store is,
  and checked as cheaply),
- and every layer is in the layer store (with overlayfs only: the copy fallback reads the
  layers again from the file).

Anything else (no record, another file, a record of another layout, a layer removed) and
the file is read as before, and the record written anew. Only files are recorded: an OCI
layout directory's files can change one by one, and a registry is not a file.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from inspect_tool.model.digest import hex_digest
from runtime_lab.storage.store import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from inspect_tool.model.image import Image, ImageConfig
    from inspect_tool.sources.selection import ImageSelection
    from runtime_lab.storage.store import Store

LAYOUT = 1  # the record's layout: a record of another is not used
_FILE_TRANSPORTS = ("path", "docker-archive", "oci-archive")


@dataclass(frozen=True, slots=True)
class Recalled:
    """An image taken from its file's record: its config and the layer directories, bottom
    first, all present in the layer store."""

    config: ImageConfig
    layer_dirs: list[Path]


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An image file as a run names it: its record's path, its absolute path, and its
    identity when it was looked at (before it is read)."""

    record: Path
    path: str  # absolute
    identity: dict[str, int]
    written: str  # as the command line gave it


def recall(store: Store, file: ImageFile) -> Recalled | None:
    """The image the record of ``file`` holds, when the file is the one recorded and its
    layers are stored; else None (the file is to be read)."""
    record = _read(file.record)
    if isinstance(record, str) or record.get("file") != file.identity:
        return None
    return _image(store, record)


def remember(store: Store, file: ImageFile, image: Image) -> bool:
    """Record what this run read of ``file`` (identified before it was read): False where
    the file changed meanwhile, or the record cannot be written (the run goes on; the next
    one reads the file)."""
    diff_ids = [layer.diff_id.hex for layer in image.layers if layer.diff_id is not None]
    if len(diff_ids) != len(image.layers) or image.config.digest.algorithm != "sha256":
        return False
    if _identity_now(file.path) != file.identity:  # written while it was read
        return False
    record = {
        "layout": LAYOUT,
        "file": file.identity,
        "path": file.path,
        "source": file.written,
        "image_id": str(image.config.digest),
        "diff_ids": diff_ids,
        "config": image.config.raw.decode("utf-8"),  # parsed: UTF-8 already
    }
    try:
        file.record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(file.record, json.dumps(record).encode())
    except OSError:
        return False
    return True


def prune(store: Store) -> list[str]:
    """``dockscope cleanup``: the records no run can use any more removed (their file gone
    or changed since, or not a record of this layout), and any temporary left by a write
    that was cut short; a line for each."""
    report: list[str] = []
    if not store.archives.is_dir():
        return report
    for entry in sorted(store.archives.iterdir()):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)
            report.append(f"archives: removed an unfinished record ({entry.name})")
            continue
        why = _stale(entry)
        if why is not None:
            entry.unlink(missing_ok=True)
            report.append(f"archives: removed the record {entry.name} ({why})")
    return report


def _stale(entry: Path) -> str | None:
    """Why the record at ``entry`` cannot serve a run any more; None if it still can."""
    record = _read(entry)
    if isinstance(record, str):
        return record
    path = record.get("path")
    if not isinstance(path, str):
        return "no path"
    identity = _identity_now(path)
    if identity is None:
        return f"{path} is gone"
    if record.get("file") != identity:
        return f"{path} changed since"
    return None


def _read(entry: Path) -> dict[str, object] | str:
    """The record at ``entry``; or why there is none to use."""
    try:
        with open(entry, "rb") as stream:
            record = json.loads(stream.read())
    except (OSError, ValueError):
        return "unreadable"
    if not isinstance(record, dict) or record.get("layout") != LAYOUT:
        return "not a record of this layout"
    return record


def _identity_now(path: str) -> dict[str, int] | None:
    try:
        return _identity(os.stat(path))
    except (OSError, ValueError):
        return None


def identify(store: Store, where: str | Path, selection: ImageSelection) -> ImageFile | None:
    """``where`` (as ``run`` was given it) as an image file, its identity now and the path
    of its record for this selection; None when it names no regular file."""
    from inspect_tool.errors import DockscopeError
    from inspect_tool.sources.location import parse_location

    try:
        location = parse_location(where)
    except DockscopeError:  # a malformed location: the reader says so
        return None
    if location.transport.value not in _FILE_TRANSPORTS or location.path is None:
        return None
    path = os.path.abspath(location.path)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    key = [
        location.transport.value,
        path,
        location.ref,
        location.image,
        selection.image,
        selection.ref,
        selection.platform,
    ]
    name = hex_digest("sha256", json.dumps(key).encode())
    return ImageFile(store.archives / f"{name}.json", path, _identity(st), str(where))


def _identity(st: os.stat_result) -> dict[str, int]:
    """A file as the kernel tells it apart: a write, rename over or touch changes it."""
    return {
        "device": st.st_dev,
        "inode": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def _image(store: Store, record: dict[str, object]) -> Recalled | None:
    """The record's config, checked against its image ID, and its stored layers."""
    from inspect_tool.errors import DockscopeError
    from inspect_tool.model.image import ImageConfig
    from inspect_tool.model.jsondoc import parse_json

    text, image_id, diff_ids = record.get("config"), record.get("image_id"), record.get("diff_ids")
    if not isinstance(text, str) or not isinstance(image_id, str):
        return None
    if not isinstance(diff_ids, list) or not all(_is_hex(d) for d in diff_ids):
        return None
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if f"sha256:{hex_digest('sha256', raw)}" != image_id:
        return None
    layer_dirs = [store.layer_dir(d) for d in diff_ids]
    if not all(d.is_dir() for d in layer_dirs):
        return None
    try:
        config = ImageConfig.from_bytes(raw, parse_json(raw, subject=image_id), subject=image_id)
        if [d.hex for d in config.diff_ids(subject=image_id)] != diff_ids:
            return None
    except DockscopeError:
        return None
    return Recalled(config, layer_dirs)


def _is_hex(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )
