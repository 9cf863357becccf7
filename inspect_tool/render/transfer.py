"""``dockscope copy`` and ``pull``: the result as JSON (docs/JSON.md) and as text."""

from __future__ import annotations

from typing import Any

from inspect_tool.render.json import SCHEMA_VERSION
from inspect_tool.render.text import visible
from inspect_tool.transfer.copy import CopyResult


def copy_document(result: CopyResult) -> dict[str, Any]:
    report = result.report
    failed = [f for f in report.findings if not f.ok] if report is not None else []
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "copy",
        "source": result.source,
        "destination": result.destination,
        "transport": result.format,
        "ok": result.ok,
        "manifest_digest": result.manifest_digest,
        "source_manifest_digest": result.source_manifest_digest,
        "manifest_preserved": result.manifest_preserved,
        "config_digest": result.config_digest,
        "layers": [
            {
                "index": layer.index,
                "digest": layer.digest,
                "source_digest": layer.source_digest,
                "diff_id": layer.diff_id,
                "size": layer.size,
                "media_type": layer.media_type,
                "decompressed": layer.decompressed,
            }
            for layer in result.layers
        ],
        "bytes_copied": result.bytes_copied,
        "verified": {
            "ok": report.ok if report is not None else None,
            "passed": len(report.findings) - len(failed) if report is not None else 0,
            "failed": [
                {"check": f.check, "subject": f.subject, "expected": f.expected, "actual": f.actual}
                for f in failed
            ],
            "checked": sorted({f.check for f in report.findings}) if report is not None else [],
            "diff_ids_checked": result.diff_ids_checked and report is not None,
        },
        "notes": list(result.notes),
    }


def copy_lines(result: CopyResult) -> list[str]:
    """What copy prints: one line per fact, every name escaped, sizes as people read them
    (render/console.human_size; the JSON document keeps the exact byte counts)."""
    from inspect_tool.render.console import human_size

    report = result.report
    checks = f"{len(report.findings)} checks passed" if report is not None else "not verified"
    if report is not None:
        checks += (
            " (blob, manifest and config digests; diff_ids and chain IDs)"
            if result.diff_ids_checked
            else " (blob, manifest and config digests; diff_ids not checked: --verify does)"
        )
    manifest = result.manifest_digest or "none (docker-archive keeps no manifest)"
    kept = " (the source's)" if result.manifest_preserved else ""
    lines = [
        f"Copied {visible(result.source)} to {visible(result.destination)}",
        f"  manifest  {manifest}{kept}",
        f"  config    {result.config_digest}",
    ]
    for layer in result.layers:
        note = " (decompressed)" if layer.decompressed else ""
        lines.append(f"  layer {layer.index:<3} {layer.digest}  {human_size(layer.size)}{note}")
    lines.append(f"  verified: {checks}; {human_size(result.bytes_copied)} copied")
    lines += [f"note: {visible(n)}" for n in result.notes]
    return lines
