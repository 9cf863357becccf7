"""JSON documents of the analysis commands (efficiency, types, history): docs/JSON.md.

Keys are a contract: add, never rename. Floats that have no finite value are ``null``.
"""

from __future__ import annotations

import math
from typing import Any

from inspect_tool.analyze.efficiency import EfficiencyReport, GateResult
from inspect_tool.analyze.filetypes import LayerTypes, Tally, TypesReport
from inspect_tool.analyze.history import HistoryReport
from inspect_tool.model.image import Image
from inspect_tool.render.json import document_head


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- efficiency ---------------------------------------------------------------------------------
def efficiency_document(
    image: Image, report: EfficiencyReport, gates: list[GateResult]
) -> dict[str, Any]:
    return {
        **document_head("efficiency", image),
        "efficiency": report.efficiency,
        "wasted_bytes": report.wasted_bytes,
        "size_bytes": report.size_bytes,
        "user_size_bytes": report.user_size_bytes,
        "user_wasted_percent": _finite(report.user_wasted_percent),
        "layer_sizes": list(report.layer_sizes),
        "inefficient_paths": [
            {
                "path": p.path,
                "count": p.count,
                "size_bytes": p.cumulative_size,
                "min_size_bytes": p.min_size,
                "layers": list(p.layers),
            }
            for p in report.inefficient_paths
        ],
        "gates": [
            {
                "rule": g.rule,
                "threshold": g.threshold,
                "actual": g.actual,
                "ok": g.ok,
                "message": g.message,
            }
            for g in gates
        ],
        "ok": all(g.ok for g in gates),
        "notes": list(report.notes),
    }


# -- types --------------------------------------------------------------------------------------
def _tally(tally: Tally) -> dict[str, int]:
    return {"count": tally.count, "bytes": tally.bytes}


def _layer_types(stats: LayerTypes) -> dict[str, Any]:
    return {
        "files": _tally(stats.files),
        "categories": {
            str(c): _tally(t)
            for c, t in sorted(stats.categories.items(), key=lambda item: -item[1].bytes)
        },
        "mime_types": {
            m: _tally(t)
            for m, t in sorted(stats.mime_types.items(), key=lambda item: (-item[1].count, item[0]))
        },
    }


def types_document(image: Image, report: TypesReport) -> dict[str, Any]:
    return {
        **document_head("types", image),
        "head_bytes": report.head_bytes,
        "base_layers": report.base_layers,
        "layers": [
            {
                "index": stats.index,
                "created_by": stats.created_by,
                "entries": dict(sorted(stats.entries.items())),
                **_layer_types(stats),
            }
            for stats in report.layers
        ],
        "totals": _layer_types(report.totals),
        "findings": [
            {
                "kind": str(f.kind),
                "layer": f.layer,
                "path": f.path,
                "type": f.type.value,
                "mode": f"{f.mode:04o}",
                "uid": f.uid,
                "gid": f.gid,
                "detail": f.detail,
                "category": None if f.category is None else str(f.category),
                "change": f.change,
                "visible": f.visible,
            }
            for f in report.findings
        ],
    }


# -- history ------------------------------------------------------------------------------------
def history_document(image: Image, report: HistoryReport) -> dict[str, Any]:
    entries = []
    for row in report.rows:
        entry = row.entry
        entries.append(
            {
                "index": row.index,
                "layer": row.layer,
                "created": entry.created if entry else None,
                "created_by": entry.created_by if entry else None,
                "author": entry.author if entry else None,
                "comment": entry.comment if entry else None,
                "empty_layer": entry.empty_layer if entry else False,
                "size": row.size,
                "keyword": row.step.keyword or None,
                "instruction": row.step.line or None,
                "builder": row.step.builder,
                "notes": list(row.step.notes),
                "base": row.base,
            }
        )
    return {
        **document_head("history", image),
        "base": {
            "name": report.base_name,
            "source": report.base_source,
            "history_entries": report.base_entries,
            "layers": report.base_layers,
            "recorded": report.base_certain,
            "certain_entries": report.base_lower,
        },
        "entries": entries,
        "dockerfile": report.dockerfile,
        "warnings": list(report.warnings),
    }
