"""Builders for the analysis tests: layers with directories, modes, devices and whiteouts, and
legacy docker-save archives with a chosen config (history, labels)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import config_bytes, sha256, write_tar

_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass
class E:
    """One tar entry."""

    name: str
    data: bytes = b""
    kind: str = "file"
    mode: int = 0o644
    link: str = ""
    size: int | None = None  # a header size different from len(data) (dirs: 0)
    uid: int = 0
    gid: int = 0


def d(name: str, mode: int = 0o755) -> E:
    return E(name, kind="dir", mode=mode)


def f(name: str, data: bytes | int = b"", mode: int = 0o644) -> E:
    return E(name, b"x" * data if isinstance(data, int) else data, mode=mode)


def entries_tar(entries: list[E]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode
            info.mtime = 0
            info.uid, info.gid = entry.uid, entry.gid
            info.linkname = entry.link
            if entry.kind in ("char", "block"):
                info.devmajor, info.devminor = 1, 3
            if entry.kind == "file":
                info.size = len(entry.data)
                tf.addfile(info, io.BytesIO(entry.data))
            else:
                tf.addfile(info)
    return buffer.getvalue()


def write_image(
    path: Path, layers: list[bytes], *, tag: str = "test:latest", **config: Any
) -> Path:
    """A legacy docker-save archive of the given uncompressed layers; ``config`` keys replace
    the defaults of tests.helpers.config_bytes (history, config, …)."""
    diff_ids = [sha256(layer) for layer in layers]
    raw = config_bytes(diff_ids, **config)
    config_name = hashlib.sha256(raw).hexdigest() + ".json"
    members: dict[str, bytes | tuple[str, str]] = {config_name: raw}
    paths = []
    for i, layer in enumerate(layers):
        directory = f"{i:064x}"
        members[f"{directory}/layer.tar"] = layer
        members[f"{directory}/VERSION"] = b"1.0"
        paths.append(f"{directory}/layer.tar")
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    return write_tar(path, members)
