"""Rendering of the file-level commands (layers, ls, find, diff): rich for people, JSON for
programs. JSON keys are part of the contract in docs/JSON.md."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from inspect_tool.analyze.diff import FileDiff, ImageDiff
from inspect_tool.analyze.filesystem import LayerDiff, LayerRow, Occurrence
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.union import Change, ChangeKind, FileInfo
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size, short_created_by, titled_table
from inspect_tool.render.json import SCHEMA_VERSION, document_head, write_streaming
from inspect_tool.render.text import markup, plural, visible

_TYPE_BITS = {
    EntryType.FILE: stat.S_IFREG,
    EntryType.HARDLINK: stat.S_IFREG,
    EntryType.DIR: stat.S_IFDIR,
    EntryType.SYMLINK: stat.S_IFLNK,
    EntryType.CHAR: stat.S_IFCHR,
    EntryType.BLOCK: stat.S_IFBLK,
    EntryType.FIFO: stat.S_IFIFO,
    EntryType.OTHER: 0,
}


def mode_string(info: FileInfo) -> str:
    return stat.filemode(_TYPE_BITS[info.type] | info.mode)


def _utc(mtime: float) -> dt.datetime | None:
    """The time, or None outside the years 1 to 9999 (a tar may say any int64 seconds)."""
    try:
        return dt.datetime.fromtimestamp(mtime, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _time(mtime: float) -> str:
    when = _utc(mtime)
    return when.strftime("%Y-%m-%d %H:%M") if when else f"@{mtime:.0f}"


def mtime_json(mtime: float) -> str:
    """ISO 8601 UTC, or ``@<seconds>`` for a time outside the years 1 to 9999."""
    when = _utc(mtime)
    return when.isoformat().replace("+00:00", "Z") if when else f"@{mtime:.0f}"


def info_json(info: FileInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "path": info.path,
        "type": info.type.value,
        "mode": f"{info.mode:04o}",
        "uid": info.uid,
        "gid": info.gid,
        "size": info.size,
        "mtime": mtime_json(info.mtime),
        "link": info.linkname or None,
        "layer": info.layer,
        "device": [info.devmajor, info.devminor]
        if info.type in (EntryType.CHAR, EntryType.BLOCK)
        else None,
    }


# -- layers -------------------------------------------------------------------------------------
def layers_document(image: Image, rows: list[LayerRow]) -> dict[str, Any]:
    return {
        **document_head("layers", image),
        "layers": [
            {
                "index": row.index,
                "created_by": row.created_by,
                "diff_id": row.diff_id,
                "size": row.blob_size,
                "content_size": row.content_size,
                "added": row.added,
                "modified": row.modified,
                "deleted": row.deleted,
                "wasted_bytes": row.wasted,
                "anomalies": [{"name": a.name, "problem": a.problem} for a in row.anomalies],
            }
            for row in rows
        ],
    }


def render_layers(console: Console, image: Image, rows: list[LayerRow]) -> None:
    table = titled_table(f"Layers of {markup(image.display_name)}")
    for name, justify in (
        ("#", "right"),
        ("size", "right"),
        ("added", "right"),
        ("modified", "right"),
        ("deleted", "right"),
        ("wasted", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("created_by", overflow="fold", min_width=20)
    for row in rows:
        table.add_row(
            str(row.index),
            human_size(row.content_size),
            str(row.added),
            str(row.modified),
            str(row.deleted),
            Text(human_size(row.wasted), style="yellow" if row.wasted else "dim"),
            markup(short_created_by(row.created_by)),
        )
    console.print(table)
    total = sum(r.wasted for r in rows)
    console.print(
        f"{len(rows)} layers, {human_size(sum(r.content_size for r in rows))} of "
        f"file content, {human_size(total)} replaced or deleted by later layers."
    )
    for row in rows:
        for anomaly in row.anomalies:
            console.print(
                f"[yellow]layer {row.index}:[/] {markup(anomaly.name)}: {markup(anomaly.problem)}",
                soft_wrap=True,
            )


# -- ls -----------------------------------------------------------------------------------------
def write_ls_json(
    out: TextIO, image: Image, layer: int, path: str, entries: Iterable[FileInfo]
) -> None:
    head = {**document_head("ls", image), "layer": layer, "path": path}
    write_streaming(out, head, "entries", (info_json(e) or {} for e in entries))


_BLUE, _CYAN, _DIM, _RESET = "\x1b[1;34m", "\x1b[36m", "\x1b[2m", "\x1b[0m"


def write_ls(
    out: TextIO, entries: Iterable[FileInfo], *, long: bool, base: str, color: bool
) -> int:
    """``ls``-style lines written straight to ``out`` (a million lines must stay fast)."""
    blue, cyan, dim, reset = (_BLUE, _CYAN, _DIM, _RESET) if color else ("", "", "", "")
    count = 0
    for info in entries:
        count += 1
        name = info.path if not base else info.path[len(base) :].lstrip("/") or info.path
        name = visible(name)
        if long:
            if info.type is EntryType.FILE:
                size = str(info.size)
            elif info.type in (EntryType.CHAR, EntryType.BLOCK):
                size = f"{info.devmajor},{info.devminor}"
            else:
                size = "-"
            prefix = (
                f"{mode_string(info)} {info.uid:>5}/{info.gid:<5} {size:>10} {_time(info.mtime)} "
            )
        else:
            prefix = ""
        if info.type is EntryType.DIR:
            shown = f"{blue}{name}/{reset}"
        elif info.type is EntryType.SYMLINK:
            shown = f"{name}{cyan} -> {visible(info.linkname)}{reset}"
        elif info.type is EntryType.HARDLINK:
            shown = f"{name}{cyan} => {visible(info.linkname)}{reset}"
        else:
            shown = name
        out.write(f"{prefix}{dim}L{info.layer:<3}{reset}{shown}\n")
    return count


# -- find ---------------------------------------------------------------------------------------
def find_document(image: Image, pattern: str, found: list[Occurrence]) -> dict[str, Any]:
    return {
        **document_head("find", image),
        "pattern": pattern,
        "entries": [
            {**(info_json(o.info) or {}), "fate": o.fate, "by_layer": o.by_layer} for o in found
        ],
    }


def render_find(console: Console, found: list[Occurrence]) -> None:
    for occurrence in found:
        info = occurrence.info
        line = Text()
        line.append(f"L{info.layer:<3}", style="dim")
        line.append(f"{mode_string(info)} {human_size(info.size):>9}  ")
        line.append(visible(info.path))
        if info.type is EntryType.SYMLINK:
            line.append(f" -> {visible(info.linkname)}", style="cyan")
        if occurrence.fate == "deleted":
            line.append(f"  (deleted in layer {occurrence.by_layer})", style="red")
        elif occurrence.fate == "replaced":
            line.append(f"  (overwritten in layer {occurrence.by_layer})", style="yellow")
        console.print(line, soft_wrap=True, highlight=False)
    hidden = sum(1 for o in found if not o.visible)
    console.print(
        f"{plural(len(found), 'entry', 'entries')}, {hidden} no longer visible in the image. "
        "Recover one with: dockscope cat --at N IMAGE PATH",
        style="dim",
    )


# -- diff ---------------------------------------------------------------------------------------
_MARKS = {"added": ("A", "green"), "removed": ("D", "red"), "modified": ("C", "yellow")}


def diff_document(a: Image, b: Image, result: ImageDiff) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "diff",
        "a": {"source": a.source, "image_id": str(a.image_id)},
        "b": {"source": b.source, "image_id": str(b.image_id)},
        "equal": result.equal,
        "shared_layers": result.shared_layers,
        "files": [_file_diff_json(f) for f in result.files],
        "config": [{"key": c.key, "a": c.a, "b": c.b} for c in result.config],
        "history": {"removed": result.history_removed, "added": result.history_added},
    }


def _file_diff_json(f: FileDiff) -> dict[str, Any]:
    a, b = info_json(f.a), info_json(f.b)
    if a is not None:
        a["sha256"] = f.a_hash
    if b is not None:
        b["sha256"] = f.b_hash
    return {"path": f.path, "change": f.change, "differences": list(f.differences), "a": a, "b": b}


def render_diff(console: Console, a: Image, b: Image, result: ImageDiff) -> None:
    console.print(
        f"[bold]A[/] {markup(a.source)} ({a.image_id.short})  [bold]B[/] "
        f"{markup(b.source)} ({b.image_id.short}); "
        f"{plural(result.shared_layers, 'shared layer')} not compared",
        soft_wrap=True,
    )
    for f in result.files:
        mark, style = _MARKS[f.change]
        line = Text(f"{mark} ", style=style)
        line.append(visible(f.path))
        if f.change == "modified":
            details = []
            if "size" in f.differences and f.a and f.b:
                details.append(f"size {f.a.size} → {f.b.size}")
            details += [visible(d) for d in f.differences if d != "size"]
            line.append(f"  ({', '.join(details)})", style="dim")
        console.print(line, soft_wrap=True, highlight=False)
    if result.config:
        console.print("[bold]config[/]")
        for c in result.config:
            console.print(
                f"  {markup(c.key)}: {markup(_value(c.a))} → {markup(_value(c.b))}",
                soft_wrap=True,
                highlight=False,
            )
    if result.history_removed or result.history_added:
        console.print("[bold]history[/]")
        for step in result.history_removed:
            console.print(
                Text(f"  - {visible(short_created_by(step))}", style="red"), soft_wrap=True
            )
        for step in result.history_added:
            console.print(
                Text(f"  + {visible(short_created_by(step))}", style="green"), soft_wrap=True
            )
    counts = {k: sum(1 for f in result.files if f.change == k) for k in _MARKS}
    verdict = "identical" if result.equal else "different"
    console.print(
        f"{verdict}: {counts['added']} added, {counts['removed']} removed, "
        f"{counts['modified']} modified files; {len(result.config)} config and "
        f"{len(result.history_removed) + len(result.history_added)} history changes."
    )


def _value(value: Any) -> str:
    """A config value as the image stores it (JSON), "(none)" when absent."""
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False)


def layer_diff_document(image: Image, diff: LayerDiff) -> dict[str, Any]:
    return {
        **document_head("layer-diff", image),
        "layer": diff.layer,
        "files": [_change_json(c, diff.hashes.get(c.path)) for c in diff.changes.changes],
        "anomalies": [{"name": a.name, "problem": a.problem} for a in diff.changes.anomalies],
    }


_CHANGE_WORDS = {
    ChangeKind.ADDED: "added",
    ChangeKind.MODIFIED: "modified",
    ChangeKind.DELETED: "removed",
}


def _change_json(change: Change, sha: str | None) -> dict[str, Any]:
    now = info_json(change.info)
    if now is not None:
        now["sha256"] = sha
    return {
        "path": change.path,
        "change": _CHANGE_WORDS[change.kind],
        "entry": now,
        "previous": info_json(change.previous),
    }


def render_layer_diff(console: Console, diff: LayerDiff) -> None:
    for change in diff.changes.changes:
        mark, style = _MARKS[_CHANGE_WORDS[change.kind]]
        line = Text(f"{mark} ", style=style)
        line.append(visible(change.path))
        info = change.info or change.previous
        if info is not None and info.type is EntryType.FILE:
            line.append(f"  {human_size(info.size)}", style="dim")
        console.print(line, soft_wrap=True, highlight=False)
    c = diff.changes
    console.print(
        f"layer {diff.layer}: {c.added} added, {c.modified} modified, {c.deleted} "
        f"deleted; {human_size(c.wasted)} of lower layers replaced or deleted."
    )
