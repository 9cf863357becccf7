"""Named volumes: directories under the state root that outlive their containers.

```
<root>/volumes/<name>/_data         what a container sees at the mount point (bind-mounted)
<root>/volumes/<name>/volume.json   {"name", "created", "anonymous"}
```

The layout is docker's (``/var/lib/docker/volumes/<name>/_data``, its ``local`` driver). A
volume is made the first time a container names it (``-v data:/data``) and shared by every
container that names it; ``-v /data`` makes an *anonymous* one (a random name), which
``rm -v`` and ``run --rm`` remove with their container. Writes into a volume are not in the
container's writable layer: they never show in ``container diff``, ``export`` or ``commit``.
"""

from __future__ import annotations

import json
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_tool.errors import UsageError
from inspect_tool.model.words import agree
from runtime_lab.spec import VOLUME_NAME
from runtime_lab.storage.store import Store, now, reading, remove_dir, write_atomic


@dataclass(frozen=True, slots=True)
class Volume:
    """A named volume under the state root: its directory, when it was made, and whether it
    is anonymous (removed with its container)."""

    name: str
    path: Path  # <root>/volumes/<name>
    created: str | None
    anonymous: bool

    @property
    def data(self) -> Path:
        return self.path / "_data"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mountpoint": str(self.data),
            "created": self.created,
            "anonymous": self.anonymous,
            "driver": "local",
        }


def _directory(store: Store) -> Path:
    return store.root / "volumes"


def ensure(store: Store, name: str | None) -> Volume:
    """The volume called ``name``, made if it is new; ``None`` makes an anonymous one."""
    anonymous = name is None
    if name is None:
        name = secrets.token_hex(32)
    elif not VOLUME_NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a volume name ([A-Za-z0-9][A-Za-z0-9_.-]+)")
    path = _directory(store) / name
    _directory(store).mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return load(store, name)
    (path / "_data").mkdir(mode=0o755)
    record = {"name": name, "created": now(), "anonymous": anonymous}
    write_atomic(path / "volume.json", json.dumps(record, indent=2).encode())
    return Volume(name, path, str(record["created"]), anonymous)


def load(store: Store, name: str) -> Volume:
    path = _directory(store) / name
    with reading(path):
        found = VOLUME_NAME.fullmatch(name) and (path / "_data").is_dir()
    if not found:
        raise UsageError(f"no such volume: {name}")
    try:
        record = json.loads((path / "volume.json").read_text())
    except (OSError, ValueError):  # being made right now, or damaged: the directory counts
        record = {}
    return Volume(name, path, record.get("created"), bool(record.get("anonymous")))


def all_volumes(store: Store) -> list[Volume]:
    directory = _directory(store)
    with reading(directory):
        if not directory.is_dir():
            return []
        names = [p.name for p in sorted(directory.iterdir()) if (p / "_data").is_dir()]
    return [load(store, name) for name in names]


def users(store: Store, name: str) -> list[str]:
    """Names of the containers (running or not) that mount the volume."""
    found = []
    for cid in store.ids():
        config = store.load_config(cid)
        if any(m.get("name") == name for m in config.volumes):
            found.append(config.name)
    return found


def remove(store: Store, name: str) -> None:
    volume = load(store, name)
    using = users(store, name)
    if using:
        raise UsageError(
            f"volume {name} is in use by {agree(len(using), 'container')}: {', '.join(using)}"
        )
    remove_dir(volume.path)


def remove_anonymous(store: Store, names: list[str]) -> None:
    """The anonymous volumes among ``names`` that no other container uses (``rm -v``)."""
    for name in names:
        try:
            volume = load(store, name)
        except UsageError:
            continue
        if volume.anonymous and not users(store, name):
            remove_dir(volume.path, ignore_errors=True)


def size(path: Path) -> int:
    """Bytes of the files under ``path`` (hard links once), as ``docker system df`` counts."""
    from runtime_lab.storage.records import walk_size

    return walk_size(path, lambda st: not stat.S_ISDIR(st.st_mode))


def diff_notes(mounts: list[dict[str, Any]]) -> list[str]:
    """What ``container diff`` must say about a container's volumes: writes there are in the
    volume or the host directory, not in the writable layer, so no diff shows them."""
    notes = []
    for mount in mounts:
        where = (
            f"volume {mount['name']} ({mount['source']})"
            if mount.get("type") == "volume"
            else f"host path {mount['source']}"
        )
        notes.append(
            f"{mount['destination']} is {where}: what the container wrote there is not in the "
            "writable layer, so it is not in this diff"
        )
    return notes
