"""JSON documents of the analysis commands (efficiency, types, history): docs/JSON.md.

Keys are a contract: add, never rename. Floats that have no finite value are ``null``.
"""

from __future__ import annotations

import math
from typing import Any

from inspect_tool.analyze.efficiency import EfficiencyReport, GateResult
from inspect_tool.model.image import Image
from inspect_tool.render.json import SCHEMA_VERSION


def _head(kind: str, image: Image) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "source": image.source,
        "image_id": str(image.image_id),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- efficiency ---------------------------------------------------------------------------------
def efficiency_document(
    image: Image, report: EfficiencyReport, gates: list[GateResult]
) -> dict[str, Any]:
    return {
        **_head("efficiency", image),
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
