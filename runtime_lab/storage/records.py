"""A dockscope container as a record: its sizes as ``docker ps -s`` reports them, and the
document of ``container inspect``, in the shape engine storage's containers have.

Sizes follow docker's overlay2 driver: the writable layer's size is what moby's
``directory.Size`` counts in the upperdir (every entry but directories, hard links once,
whiteouts weigh nothing), and the virtual size adds the image's, the sum of its layers'
sizes, each the bytes of its regular files (what a layer's tar carries, hard links once).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspect_tool.errors import DockscopeError
from inspect_tool.storage.model import ContainerRecord
from runtime_lab.storage.store import ContainerConfig, ContainerState, Store


def upper_size(path: Path) -> int:
    """moby's ``directory.Size``: non-directory entries of nonzero size, hard links once."""
    return walk_size(path, lambda st: not stat.S_ISDIR(st.st_mode) and st.st_size > 0)


def layer_size(path: Path) -> int:
    """A layer's size as docker records it when applying its tar: the bytes of its regular
    files (symlinks, devices, whiteouts and directories carry none), hard links once."""
    return walk_size(path, lambda st: stat.S_ISREG(st.st_mode))


def walk_size(path: Path, counted: Callable[[os.stat_result], bool]) -> int:
    """The sizes of the entries below ``path`` that ``counted`` accepts, each inode once;
    walked without recursion through descriptors (a container may nest directories deeper
    than Python's stack and than PATH_MAX). A missing directory counts 0."""
    from runtime_lab.storage.driver import layer_dirs

    total = 0
    seen: set[int] = set()
    try:
        with layer_dirs([path]) as (layer,):
            for _, st in layer.walk():
                if counted(st) and st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
    except DockscopeError:  # gone (removed meanwhile) or unreadable: nothing to count
        return 0
    return total


@dataclass
class Sizes:
    """Sizes of several containers, each layer measured once (images share layers)."""

    store: Store
    _layers: dict[str, int] = field(default_factory=dict)

    def image(self, config: ContainerConfig) -> int:
        total = 0
        for diff_id in config.diff_ids:
            if diff_id not in self._layers:
                self._layers[diff_id] = layer_size(self.store.layer_dir(diff_id))
            total += self._layers[diff_id]
        return total

    def container(self, config: ContainerConfig) -> tuple[int, int]:
        """(the writable layer's size, the virtual size: image and writable layer)."""
        rw = upper_size(self.store.container_dir(config.id) / "upper")
        return rw, rw + self.image(config)


def human_size(size: int) -> str:
    """go-units' HumanSizeWithPrecision(size, 3), as docker ps prints sizes: decimal units,
    three significant digits (``0B``, ``5B``, ``1.15MB``)."""
    value = float(size)
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    index = 0
    while value >= 1000 and index < len(units) - 1:
        value /= 1000
        index += 1
    return f"{value:.3g}{units[index]}"


def container_record(
    store: Store, config: ContainerConfig, state: ContainerState
) -> ContainerRecord:
    """The container as engine storage's readers describe theirs (``storage ls``)."""
    directory = store.container_dir(config.id)
    return ContainerRecord(
        id=config.id,
        name=config.name,
        image=config.image_source,
        image_id=config.image_id,
        created=config.created,
        running=state.status == "running",
        status=state.status,
        exit_code=state.exit_code if state.status == "exited" else None,
        started=state.started,
        finished=state.finished,
        pid=state.pid or None,
        command=tuple(config.command),
        driver=state.rootfs_mode,
        engine="dockscope",
        upper_dir=str(directory / "upper"),
        log_path=str(directory / "container.log"),
    )


def inspect_document(
    store: Store, config: ContainerConfig, state: ContainerState, *, size: bool = False
) -> dict[str, Any]:
    """``container inspect``: engine storage's document (``container``, ``files``) with the
    whole recorded config and state, the paths, and with ``size`` the sizes of ``ps -s``."""
    from inspect_tool.render.storage import container_json

    directory = store.container_dir(config.id)
    files: dict[str, Any] = {}
    for name in ("config.json", "state.json"):
        path = directory / name
        try:
            files[str(path)] = json.loads(path.read_text())
        except (OSError, ValueError):
            files[str(path)] = None
    sizes = None
    if size:
        rw, virtual = Sizes(store).container(config)
        sizes = {"rw": rw, "root_fs": virtual}
    return {
        "schema_version": 1,
        "kind": "container-inspect",
        "root": str(store.root),
        "engine": "dockscope",
        "container": container_json(container_record(store, config, state)),
        "files": files,
        "id": config.id,
        "name": config.name,
        "config": asdict(config),
        "state": asdict(state),
        "paths": {
            "upperdir": str(directory / "upper"),
            "workdir": str(directory / "work"),
            "merged": str(directory / "merged"),
            "log": str(directory / "container.log"),
            "lowerdirs": [str(store.layer_dir(d)) for d in config.diff_ids],
        },
        "size": sizes,
    }
