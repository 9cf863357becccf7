"""Where an OCI container's state lives (``ROOT/ID/state.json`` and its exec FIFO), and its
status as the runtime spec defines it: ``created`` (PID 1 waits on the exec FIFO),
``running`` (it has gone on to the user's process), ``stopped`` (it is gone)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from inspect_tool.errors import DockscopeError, UsageError

DEFAULT_ROOT = "/run/dockscope-runtime"
OCI_VERSION = "1.0.2"
ID_PATTERN = re.compile(r"[\w+.-]{1,1024}")


class NotFound(DockscopeError):
    """No container with that ID under the state root (runc: ``container does not exist``)."""


class WrongState(DockscopeError):
    """The container is not in a state that allows the operation."""


@dataclass(slots=True)
class Record:
    """An OCI container's ``state.json`` under the state root: its bundle, its PID 1 and what
    later commands (state, start, exec, kill, delete) need to find again."""

    id: str
    bundle: str
    pid: int
    pid_start: str  # field 22 of /proc/PID/stat: a PID reused by another process differs
    created: str  # RFC 3339
    rootfs: str
    annotations: dict[str, str] = field(default_factory=dict)
    cgroups: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)  # the kinds exec joins
    trace: str | None = None
    poststop: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # for exec: seccomp, etc.


def check_id(container_id: str) -> str:
    if not ID_PATTERN.fullmatch(container_id) or container_id in (".", ".."):
        raise UsageError(f"invalid container ID format: {container_id!r}")
    return container_id


def directory(root: str, container_id: str) -> str:
    return os.path.join(root, check_id(container_id))


def load(root: str, container_id: str) -> Record:
    path = os.path.join(directory(root, container_id), "state.json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"container {container_id!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise DockscopeError(f"unreadable state: {exc}", subject=path) from None
    return Record(**{k: doc[k] for k in Record.__dataclass_fields__ if k in doc})


def save(root: str, record: Record) -> None:
    path = os.path.join(directory(root, record.id), "state.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(record), f)
    os.rename(tmp, path)


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot), or None when it is gone or a
    zombie (dead, only waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def status(root: str, record: Record) -> str:
    if record.pid <= 0 or start_time(record.pid) != record.pid_start:
        return "stopped"
    if os.path.exists(os.path.join(directory(root, record.id), "exec.fifo")):
        return "created"
    return "running"


def document(root: str, record: Record) -> dict[str, Any]:
    """The state as the runtime spec's ``state`` command prints it (state-schema.json)."""
    now = status(root, record)
    doc: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": record.id,
        "status": now,
        "pid": record.pid if now != "stopped" else 0,
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "created": record.created,
    }
    if record.annotations:
        doc["annotations"] = record.annotations
    return doc


def ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, "state.json"))]
