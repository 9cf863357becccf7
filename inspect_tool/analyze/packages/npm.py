"""npm packages: ``node_modules/NAME/package.json``, ``node_modules/@SCOPE/NAME/package.json``."""

from __future__ import annotations

from typing import Any

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError
from inspect_tool.errors import InvalidJSONError
from inspect_tool.model.jsondoc import parse_json

MAX_BYTES = 4 * 1024 * 1024


def parse_package_json(data: bytes, *, database: str, location: str) -> Package | None:
    """The package a package.json names (None when it names none: a workspace stub)."""
    if len(data) > MAX_BYTES:
        raise PackageDataError(f"package.json over {MAX_BYTES} bytes", subject=database)
    try:
        document = parse_json(data, subject=database)
    except InvalidJSONError as exc:
        raise PackageDataError(exc.message, subject=database) from None
    if not isinstance(document, dict):
        raise PackageDataError("package.json is not an object", subject=database)
    name, version = document.get("name"), document.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name:
        return None
    return Package(Ecosystem.NPM, name, version, location, database, license=_licence(document))


def _licence(document: dict[str, Any]) -> str:
    value = document.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, str):
        return value
    values = document.get("licenses")
    if isinstance(values, list):
        names = [v.get("type") if isinstance(v, dict) else v for v in values[:20]]
        return " OR ".join(n for n in names if isinstance(n, str))
    return ""
