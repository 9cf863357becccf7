"""Parsing JSON documents from images: bounded in size and depth, typed errors with context."""

from __future__ import annotations

import json
from typing import Any

from inspect_tool.errors import InvalidJSONError

# Manifests, indexes and configs are small; real configs with long histories stay far below.
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64


def parse_json(data: bytes, *, subject: str) -> Any:
    """Parse a JSON document; raise InvalidJSONError naming ``subject`` on any problem."""
    if len(data) > MAX_JSON_BYTES:
        raise InvalidJSONError(
            f"JSON document of {len(data)} bytes exceeds the {MAX_JSON_BYTES}-byte limit",
            subject=subject,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSONError(f"not UTF-8 text at byte {exc.start}", subject=subject) from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidJSONError("JSON is nested too deeply", subject=subject) from None
    except json.JSONDecodeError as exc:
        raise InvalidJSONError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", subject=subject
        ) from None
    if _depth(value) > MAX_DEPTH:
        raise InvalidJSONError(f"JSON is nested deeper than {MAX_DEPTH} levels", subject=subject)
    return value


def _depth(value: Any) -> int:
    depth = 0
    level: list[Any] = [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return depth


def expect_object(value: Any, *, subject: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidJSONError(f"{what} is not a JSON object", subject=subject)
    return value


def expect_list(value: Any, *, subject: str, what: str, allow_null: bool = True) -> list[Any]:
    if value is None and allow_null:
        return []
    if not isinstance(value, list):
        raise InvalidJSONError(f"{what} is not a JSON array", subject=subject)
    return value
