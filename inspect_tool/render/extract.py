"""Rendering of ``unpack`` and ``export``: the audit of refused or neutralised entries, for
people (rich) and programs (JSON, the contract of docs/JSON.md)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from rich.console import Console

from inspect_tool.layers.export import ExportResult
from inspect_tool.layers.tarwrite import TarStats
from inspect_tool.layers.unpack import UnpackResult
from inspect_tool.layers.unpack.audit import AuditEntry, ExtractStats
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size
from inspect_tool.render.json import document_head
from inspect_tool.render.text import markup, plural


def _counts(stats: ExtractStats | TarStats) -> dict[str, int]:
    return {
        "directories": stats.directories,
        "files": stats.files,
        "symlinks": stats.symlinks,
        "hardlinks": stats.hardlinks,
        "fifos": stats.fifos,
        "devices": stats.devices,
        "whiteouts": stats.whiteouts,
        "bytes": stats.bytes,
    }


def _summary(stats: ExtractStats | TarStats, audit: list[AuditEntry]) -> dict[str, int]:
    actions = Counter(entry.action.value for entry in audit)
    return {
        **_counts(stats),
        "refused": actions["refused"],
        "neutralised": actions["neutralised"],
        "skipped": actions["skipped"],
    }


def _audit(audit: list[AuditEntry]) -> list[dict[str, Any]]:
    return [
        {
            "layer": entry.layer,
            "name": entry.name,
            "offset": entry.offset,
            "action": entry.action.value,
            "reason": entry.reason.value,
            "message": entry.message,
        }
        for entry in audit
    ]


def unpack_document(image: Image, result: UnpackResult) -> dict[str, Any]:
    return {
        **document_head("unpack", image),
        "destination": str(result.destination),
        "layers": result.layers,
        "same_owner": result.same_owner,
        "devices": result.devices,
        "ok": result.ok,
        "summary": {**_summary(result.written, result.audit), "whiteouts": result.stats.whiteouts},
        "applied": _counts(result.stats),
        "audit": _audit(result.audit),
    }


def export_document(image: Image, result: ExportResult) -> dict[str, Any]:
    return {
        **document_head("export", image),
        "output": result.output,
        "layers": result.layers,
        "ok": result.ok,
        "summary": _summary(result.stats, result.audit),
        "audit": _audit(result.audit),
    }


def render_audit(console: Console, audit: list[AuditEntry]) -> None:
    if not audit:
        return
    console.print(
        f"[yellow]{plural(len(audit), 'entry', 'entries')} refused, skipped or neutralised:[/]"
    )
    for entry in audit:
        console.print(
            f"  layer {entry.layer}: {markup(entry.name or '(metadata)')}: {entry.action.value} "
            f"({entry.reason.value}): {markup(entry.message)}",
            soft_wrap=True,
            highlight=False,
        )


class _Counts(Protocol):
    directories: int
    symlinks: int
    hardlinks: int


def _tree_counts(counts: _Counts) -> str:
    return (
        f"{plural(counts.directories, 'directory', 'directories')}, "
        f"{plural(counts.symlinks, 'symlink')}, {plural(counts.hardlinks, 'hard link')}"
    )


def render_unpack(console: Console, image: Image, result: UnpackResult) -> None:
    held, applied = result.written, result.stats
    console.print(
        f"Unpacked {markup(image.display_name)} ({plural(result.layers, 'layer')}) into "
        f"{markup(str(result.destination))}, which holds {plural(held.files, 'file')} "
        f"({human_size(held.bytes)}), {_tree_counts(held)}"
        + ("" if result.same_owner else "; owners not kept (files belong to the current user)"),
        soft_wrap=True,
        highlight=False,
    )
    console.print(
        f"Layer entries applied: {plural(applied.files, 'file')} "
        f"({human_size(applied.bytes)}), {_tree_counts(applied)}, "
        f"{plural(applied.whiteouts, 'whiteout')} (later layers replace or delete some)",
        soft_wrap=True,
        highlight=False,
        style="dim",
    )
    render_audit(console, result.audit)


def render_export(console: Console, image: Image, result: ExportResult) -> None:
    stats = result.stats
    where = "stdout" if result.output == "-" else result.output
    console.print(
        f"Exported {markup(image.display_name)} ({plural(result.layers, 'layer')}) to "
        f"{markup(where)}: {plural(stats.files, 'file')} ({human_size(stats.bytes)}), "
        f"{_tree_counts(stats)}",
        soft_wrap=True,
        highlight=False,
    )
    render_audit(console, result.audit)
