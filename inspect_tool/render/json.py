"""The JSON documents of docs/JSON.md. Keys here are a contract: add, never rename.

Strings are exact. Beyond the control characters JSON escapes itself, ``json_text`` writes DEL,
C1, format (bidi) and separator characters as ``\\uNNNN`` and a byte that is not UTF-8 (a lone
surrogate) as ``\\udcNN``: the document is valid UTF-8, and safe on a terminal, and decodes to
the same strings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from inspect_tool.analyze.explain import Explanation
from inspect_tool.analyze.verify import VerifyReport
from inspect_tool.model.image import Image
from inspect_tool.render.text import json_text
from inspect_tool.sources.source import Candidate, Source

SCHEMA_VERSION = 1


def dumps(document: dict[str, Any]) -> str:
    try:
        return json_text(json.dumps(document, indent=2, ensure_ascii=False))
    except RecursionError:  # nested deeper than the encoder recurses (tree of a deep path)
        return json_text(dumps_deep(document))


def dumps_deep(value: Any) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, character for character, without
    recursion: for documents nested thousands of levels deep."""
    parts: list[str] = []
    stack: list[str | tuple[Any, int]] = [(value, 0)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        current, level = item
        if not isinstance(current, dict | list | tuple) or not current:
            parts.append(json.dumps(current, ensure_ascii=False))
            continue
        inner = "\n" + "  " * (level + 1)
        todo: list[str | tuple[Any, int]] = []
        if isinstance(current, dict):
            parts.append("{")
            for i, (key, child) in enumerate(current.items()):
                name = json.dumps(key if isinstance(key, str) else str(key), ensure_ascii=False)
                todo += [f"{',' if i else ''}{inner}{name}: ", (child, level + 1)]
            todo.append("\n" + "  " * level + "}")
        else:
            parts.append("[")
            for i, child in enumerate(current):
                todo += [f"{',' if i else ''}{inner}", (child, level + 1)]
            todo.append("\n" + "  " * level + "]")
        stack.extend(reversed(todo))
    return "".join(parts)


def write_streaming(
    out: TextIO, document: dict[str, Any], key: str, items: Iterable[dict[str, Any]]
) -> None:
    """Write ``document`` with ``document[key]`` taken from ``items`` one at a time, so a
    listing of a million entries never sits in memory as one structure."""
    head = dumps({k: v for k, v in document.items() if k != key})
    out.write(head[:-2] + f',\n  "{key}": [')
    first = True
    for item in items:
        line = json_text(json.dumps(item, ensure_ascii=False))
        out.write(("\n    " if first else ",\n    ") + line)
        first = False
    out.write("\n  ]\n}\n" if not first else "]\n}\n")


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def document_head(kind: str, image: Image) -> dict[str, Any]:
    """The first keys of every document about one image: schema, kind, source, image ID."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "source": image.source,
        "image_id": str(image.image_id),
    }


def image_document(image: Image, *, source: Source | None = None) -> dict[str, Any]:
    """The image as JSON; ``source`` adds its failed structural checks to ``warnings``."""
    warnings = list(image.warnings)
    if source is not None:
        warnings += [
            f"{f.check}: {f.subject}: expected {f.expected}, found {f.actual}"
            for f in source.findings
            if not f.ok
        ]
    platform = image.platform
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "image",
        "source": image.source,
        "format": image.format.value,
        "archive_compression": _s(image.archive_compression),
        "repo_tags": list(image.repo_tags),
        "ref_name": image.ref_name,
        "image_id": str(image.image_id),
        "manifest_digest": _s(image.manifest.digest) if image.manifest else None,
        "manifest_media_type": image.manifest.media_type if image.manifest else None,
        "config_media_type": image.config_blob.media_type,
        "architecture": image.config.text("architecture"),
        "os": image.config.text("os"),
        "variant": image.config.text("variant") or (platform.variant if platform else None),
        "created": image.config.text("created"),
        "author": image.config.text("author"),
        "config": dict(image.config.config),
        "history": list(image.config.history_raw),
        "layers": [
            {
                "index": layer.index,
                "digest": _s(layer.digest),
                "diff_id": _s(layer.diff_id),
                "chain_id": _s(layer.chain_id),
                "media_type": layer.media_type,
                "compression": layer.compression.value,
                "size": layer.size,
                "uncompressed_size": layer.uncompressed_size,
                "created_by": layer.created_by,
                "history_index": layer.history_index,
            }
            for layer in image.layers
        ],
        "warnings": warnings,
    }


def listing_document(source: Source, candidates: list[Candidate]) -> dict[str, Any]:
    images = []
    for candidate in candidates:
        try:
            image: Image | None = candidate.image()
        except Exception:  # listed even when it cannot be loaded; verify says why
            image = None
        platform = candidate.platform or (image.platform if image else None)
        images.append(
            {
                "selector": candidate.selector,
                "repo_tags": list(candidate.repo_tags),
                "ref_name": candidate.ref_name,
                "manifest_digest": _s(candidate.manifest_digest),
                "image_id": str(image.image_id) if image else None,
                "platform": _s(platform),
                "media_type": candidate.media_type,
                "path": list(candidate.index_path),
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "listing",
        "source": source.label,
        "format": source.format.value,
        "archive_compression": _s(source.archive_compression),
        "images": images,
    }


def verify_document(report: VerifyReport) -> dict[str, Any]:
    failed = len(report.failed)
    return {
        "schema_version": SCHEMA_VERSION,
        "source": report.source,
        "format": report.format,
        "ok": report.ok,
        "summary": {"passed": len(report.findings) - failed, "failed": failed},
        "findings": [
            {
                "check": f.check,
                "subject": f.subject,
                "expected": f.expected,
                "actual": f.actual,
                "ok": f.ok,
                "message": f.message,
            }
            for f in report.findings
        ],
        "notes": list(report.notes),
    }


def explain_document(explanation: Explanation) -> dict[str, Any]:
    image = explanation.image
    return {
        **document_head("explain-ids", image),
        "steps": [
            {
                "title": step.title,
                "explanation": step.explanation,
                "formula": step.formula,
                "value": step.value,
                "recorded": step.recorded,
                "matches": step.matches,
                "command": step.command,
                "details": list(step.details),
            }
            for step in explanation.steps
        ],
    }
