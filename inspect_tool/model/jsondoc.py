"""Parsing JSON documents from images: bounded in size and depth, typed errors with context.

Every JSON document dockscope reads from an image or from engine storage goes through
``parse_json``. Numbers are held to what JSON means and Go's encoding/json (the engines'
parser) can hold: no ``NaN``/``Infinity`` literals (Python's json module accepts them), no
float beyond float64's range, no integer of more than ``MAX_NUMBER_DIGITS`` digits (Python
refuses to convert longer ones; Go's int64 and float64 hold far fewer).
"""

from __future__ import annotations

import json
import math

from inspect_tool.errors import InvalidJSONError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# Manifests, indexes and configs are small; real configs with long histories stay far below.
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
# Members of one object or array: real ones hold a few hundred (labels, env, annotations,
# history); a busy engine's repositories.json or layers.json a few thousand. A million keys
# or array elements made rendering hang.
MAX_MEMBERS = 65_536
# Python's int_max_str_digits default: longer integers cannot even be converted
MAX_NUMBER_DIGITS = 4300


class _NumberError(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _NumberError(
            f"an integer of {len(text.lstrip('-'))} digits exceeds the "
            f"{MAX_NUMBER_DIGITS}-digit bound"
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberError(f"the number {_excerpt(text)} is beyond float64's range")
    return value


def _parse_constant(text: str) -> NoReturn:
    raise _NumberError(f"{text} is not a JSON value")


def _excerpt(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:10]}…{text[-10:]} ({len(text)} characters)"


def parse_json(data: bytes, *, subject: str, max_members: int = MAX_MEMBERS) -> Any:
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
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except _NumberError as exc:
        raise InvalidJSONError(exc.problem, subject=subject) from None
    except RecursionError:
        raise InvalidJSONError("JSON is nested too deeply", subject=subject) from None
    except json.JSONDecodeError as exc:
        raise InvalidJSONError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", subject=subject
        ) from None
    if _depth(value, subject, max_members) > MAX_DEPTH:
        raise InvalidJSONError(f"JSON is nested deeper than {MAX_DEPTH} levels", subject=subject)
    return value


def _depth(value: Any, subject: str, max_members: int) -> int:
    """How deep the document nests; InvalidJSONError for a container over ``max_members``."""
    depth = 0
    level: list[Any] = [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        if depth > MAX_DEPTH:
            return depth
        for container in containers:
            if len(container) > max_members:
                what = "object" if isinstance(container, dict) else "array"
                unit = "keys" if isinstance(container, dict) else "elements"
                raise InvalidJSONError(
                    f"a JSON {what} with {len(container)} {unit} exceeds the bound of "
                    f"{max_members} keys or elements per object or array",
                    subject=subject,
                )
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
