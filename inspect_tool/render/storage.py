"""Rendering of engine storage (``storage ls``, ``storage save``) and of the container
commands on it (``container diff|export|inspect|logs --storage``): text as Docker and Podman
print it, JSON documents as docs/JSON.md describes them. Every name, path and value from the
engine's files is escaped by render/text.py before it is written (docs/TERMINAL.md); the
output of ``logs`` alone is written as the container wrote it, as ``docker logs`` does."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from inspect_tool.render.console import human_size
from inspect_tool.render.json import SCHEMA_VERSION
from inspect_tool.render.text import agree, plural, visible
from inspect_tool.storage.diff import ContainerDiff, DiffEntry
from inspect_tool.storage.export import ContainerExport
from inspect_tool.storage.logs import LogEntry
from inspect_tool.storage.model import ContainerRecord, EngineStorage, ImageRecord
from inspect_tool.storage.save import SaveResult
from inspect_tool.storage.times import format_ns
from inspect_tool.storage.writable import DiffKind

_CHANGE_NAMES = {DiffKind.ADDED: "added", DiffKind.CHANGED: "changed", DiffKind.DELETED: "deleted"}


def _short_id(value: str | None) -> str:
    return (value or "").removeprefix("sha256:")[:12]


def _when(value: str | None) -> str:
    """``2018-05-16T10:51:39.62598903Z`` → ``2018-05-16 10:51:39``."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def image_json(image: ImageRecord) -> dict[str, Any]:
    return {
        "id": image.id,
        "tags": list(image.tags),
        "digests": list(image.digests),
        "created": image.created,
        "layers": len(image.diff_ids),
        "diff_ids": list(image.diff_ids),
        "size": image.size,
        "driver": image.driver,
    }


def container_json(container: ContainerRecord) -> dict[str, Any]:
    return {
        "id": container.id,
        "name": container.name,
        "image": container.image,
        "image_id": container.image_id,
        "created": container.created,
        "running": container.running,
        "status": container.status,
        "exit_code": container.exit_code,
        "started": container.started,
        "finished": container.finished,
        "pid": container.pid,
        "command": list(container.command) if container.command is not None else None,
        "engine": container.engine,
        "driver": container.driver,
        "upper_dir": container.upper_dir,
        "log_path": container.log_path,
    }


def _notes(storage: EngineStorage) -> list[str]:
    notes = getattr(storage, "notes", [])
    return [str(n) for n in notes]


# -- storage ls ----------------------------------------------------------------------------------


def ls_document(
    storage: EngineStorage, images: list[ImageRecord], containers: list[ContainerRecord]
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "storage-ls",
        "root": str(storage.evidence.root),
        "engine": storage.engine,
        "drivers": list(storage.drivers),
        "images": [image_json(i) for i in images],
        "containers": [container_json(c) for c in containers],
        "warnings": _notes(storage),
    }


def status_text(container: ContainerRecord) -> str:
    if container.status == "running":
        pid = f" (pid {container.pid})" if container.pid else ""
        return f"Running{pid} since {_when(container.started)}"
    if container.status in ("exited", "stopped"):
        code = f" ({container.exit_code})" if container.exit_code is not None else ""
        return f"Exited{code} {_when(container.finished)}"
    return container.status.capitalize()


def _tabulate(out: TextIO, header: list[str], rows: list[list[str]]) -> None:
    """Columns as docker's tabwriter prints them: padded to the widest cell, three spaces
    apart, never wrapped. Each cell is escaped (render/text.py) before it is measured."""
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.write("   ".join(cells).rstrip() + "\n")


def render_ls(
    out: TextIO,
    storage: EngineStorage,
    images: list[ImageRecord],
    containers: list[ContainerRecord],
    *,
    long: bool = False,
) -> None:
    drivers = ", ".join(storage.drivers) or "none"
    out.write(
        f"{visible(str(storage.evidence.root))}: {visible(storage.engine)} storage "
        f"({visible(drivers)})\n\nIMAGES\n"
    )
    several = len(storage.drivers) > 1
    header = ["IMAGE ID", "REPOSITORY:TAG", "CREATED", "LAYERS", "SIZE"]
    rows = []
    for image in images:
        row = [
            _short_id(image.id),
            ", ".join(image.tags) or "<none>",
            _when(image.created),
            str(len(image.diff_ids)),
            human_size(image.size),
        ]
        rows.append(row + ([image.driver] if several else []))
    _tabulate(out, header + (["DRIVER"] if several else []), rows)
    out.write("\nCONTAINERS\n")
    header = ["CONTAINER ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS"]
    if long:
        header += ["ENGINE", "WRITABLE LAYER", "LOG"]
    rows = []
    for container in containers:
        command = " ".join(container.command or ())
        shown = json.dumps(command[:30] + ("…" if len(command) > 30 else ""), ensure_ascii=False)
        row = [
            _short_id(container.id),
            container.name,
            container.image or "-",
            shown if container.command is not None else "-",
            _when(container.created),
            status_text(container),
        ]
        if long:
            row += [container.engine, container.upper_dir or "-", container.log_path or "-"]
        rows.append(row)
    _tabulate(out, header, rows)
    for note in _notes(storage):
        out.write(f"warning: {visible(note)}\n")


# -- container diff ------------------------------------------------------------------------------


def diff_entry_json(entry: DiffEntry) -> dict[str, Any]:
    return {
        "kind": entry.kind.value,
        "change": _CHANGE_NAMES[entry.kind],
        "path": entry.path,
        "type": entry.type,
        "size": entry.size,
        "mode": f"{entry.mode:04o}" if entry.mode is not None else None,
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime": format_ns(entry.mtime_ns) if entry.mtime_ns is not None else None,
        "link": entry.link,
        "sha256": entry.sha256,
        "evidence": entry.evidence,
        "engine": entry.engine,
        "hidden": entry.hidden,
    }


def diff_document(result: ContainerDiff) -> dict[str, Any]:
    entries = result.entries
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "container-diff",
        "root": result.root,
        "engine": result.engine,
        "driver": result.driver,
        "method": result.method,
        "container": {
            "id": result.container.id,
            "name": result.container.name,
            "image": result.container.image,
        },
        "since": format_ns(result.since_ns) if result.since_ns is not None else None,
        "changes": [diff_entry_json(e) for e in entries],
        "summary": {
            "added": sum(1 for e in entries if e.kind is DiffKind.ADDED),
            "changed": sum(1 for e in entries if e.kind is DiffKind.CHANGED),
            "deleted": sum(1 for e in entries if e.kind is DiffKind.DELETED),
            "engine": sum(1 for e in entries if e.engine is not None),
            "hidden": sum(1 for e in entries if e.hidden),
        },
        "notes": list(result.notes),
    }


def write_diff(out: TextIO, result: ContainerDiff, *, show_all: bool = False) -> None:
    """``A /path`` lines as the engine prints them; ``show_all`` adds the entries the engine
    hides and marks every entry the engine itself wrote. With a ``since`` time: a timeline,
    oldest first, each line starting with the entry's mtime."""
    entries: Iterable[DiffEntry] = result.entries if show_all else result.shown
    if result.since_ns is not None:
        entries = sorted(entries, key=lambda e: (e.mtime_ns or 0, e.path))
    for entry in entries:
        line = f"{entry.kind.value} {visible(entry.path)}"
        if result.since_ns is not None and entry.mtime_ns is not None:
            line = f"{format_ns(entry.mtime_ns, fixed=True)} {line}"
        if show_all and entry.engine is not None:
            hidden = ", hidden by the engine's diff" if entry.hidden else ""
            line += f"    # written by the engine: {visible(entry.engine)}{hidden}"
        out.write(line + "\n")


def diff_footnote(result: ContainerDiff, *, show_all: bool) -> list[str]:
    """Lines for stderr (escaped): what the listing leaves out, and notes."""
    lines = [visible(note) for note in result.notes]
    hidden = [e for e in result.entries if e.hidden]
    if hidden and not show_all:
        lines.append(
            f"{plural(len(hidden), 'entry', 'entries')} written by the engine itself "
            f"{agree(len(hidden), 'is', 'are')} not shown, as "
            f"{visible(result.engine)} diff leaves them out "
            f"({', '.join(visible(e.path) for e in hidden[:6])}"
            f"{', …' if len(hidden) > 6 else ''}); --all lists them"
        )
    return lines


# -- container export, inspect, logs -------------------------------------------------------------


def export_document(root: str, output: str, result: ContainerExport) -> dict[str, Any]:
    stats = result.stats
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "container-export",
        "root": root,
        "container": container_json(result.container),
        "layer": result.layer,
        "output": output,
        "summary": {
            "directories": stats.directories,
            "files": stats.files,
            "hardlinks": stats.hardlinks,
            "symlinks": stats.symlinks,
            "devices": stats.devices,
            "fifos": stats.fifos,
            "whiteouts": stats.whiteouts,
            "opaque": stats.opaque,
            "bytes": stats.bytes,
        },
        "skipped": [{"path": p, "reason": r} for p, r in stats.skipped],
    }


def inspect_document(
    root: str, engine: str, container: ContainerRecord, files: dict[str, Any]
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "container-inspect",
        "root": root,
        "engine": engine,
        "container": container_json(container),
        "files": files,
    }


def logs_document(root: str, container: ContainerRecord, entries: list[LogEntry]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "container-logs",
        "root": root,
        "container": container_json(container),
        "entries": [{"time": e.time, "stream": e.stream, "text": e.text} for e in entries],
    }


def write_logs(out: TextIO, err: TextIO, entries: list[LogEntry], *, timestamps: bool) -> None:
    for entry in entries:
        stream = err if entry.stream == "stderr" else out
        # the text is the container's own output, written as it is (docker logs does too)
        time = visible(entry.time) if timestamps and entry.time else None
        stream.write(f"{time} {entry.text}" if time else entry.text)


# -- storage save --------------------------------------------------------------------------------


def save_document(root: str, result: SaveResult) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "storage-save",
        "root": root,
        "image": image_json(result.image),
        "output": result.output,
        "ok": result.ok,
        "manifest_digest": result.manifest_digest,
        "config_digest": result.config_digest,
        "layers": [
            {
                "index": layer.index,
                "label": layer.label,
                "diff_id": layer.diff_id,
                "recorded": layer.recorded,
                "computed": layer.computed,
                "size": layer.size,
                "source": layer.source,
                "ok": layer.ok,
                "problems": list(layer.problems),
            }
            for layer in result.layers
        ],
        "problems": list(result.problems),
    }


def render_save(out: TextIO, result: SaveResult) -> None:
    name = ", ".join(result.image.tags) or _short_id(result.image.id)
    out.write(f"{visible(name)} -> {visible(result.output)} (OCI image layout)\n")
    for layer in result.layers:
        mark = "ok" if layer.ok else "MISMATCH"
        out.write(
            f"  layer {layer.index}: {visible(str(layer.diff_id))} {mark} "
            f"({human_size(layer.size)}, rebuilt from {visible(str(layer.source))})\n"
        )
    out.write(f"  manifest {visible(str(result.manifest_digest))}\n")
