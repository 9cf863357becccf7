"""Image configs, field for field as the classic builder and BuildKit write them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from samples.basics import fake_hex, go_json, sorted_map
from samples.recipes import Recipe, nop

# Docker's container.Config, in struct order, with each field's zero value when not omitempty
# (None: the field has `omitempty` and is left out when unset).
_CONTAINER_CONFIG_FIELDS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", "null"),
    ("Cmd", "null"),
    ("Healthcheck", None),
    ("ArgsEscaped", None),
    ("Image", ""),
    ("Volumes", "null"),
    ("WorkingDir", ""),
    ("Entrypoint", "null"),
    ("NetworkDisabled", None),
    ("OnBuild", "null"),
    ("Labels", "null"),
    ("StopSignal", None),
    ("StopTimeout", None),
    ("Shell", None),
)

# BuildKit's image config: OCI's ImageConfig fields, then Docker's extensions.
_BUILDKIT_CONFIG_ORDER = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)

_HEALTHCHECK_ORDER = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")


def _healthcheck(value: dict[str, Any]) -> dict[str, Any]:
    return {key: value[key] for key in _HEALTHCHECK_ORDER if value.get(key)}


def docker_container_config(values: dict[str, Any] | None) -> dict[str, Any]:
    """Marshal ``values`` the way Go marshals Docker's ``container.Config`` struct."""
    values = values or {}
    result: dict[str, Any] = {}
    for key, zero in _CONTAINER_CONFIG_FIELDS:
        value = values.get(key)
        if value is None:
            if zero is None:  # omitempty
                continue
            value = None if zero == "null" else zero
        if key == "Healthcheck" and value is not None:
            value = _healthcheck(value)
        result[key] = value
    return result


def buildkit_image_config(values: dict[str, Any]) -> dict[str, Any]:
    """Marshal ``values`` as BuildKit's DockerOCIImageConfig (``OnBuild`` is always present)."""
    result: dict[str, Any] = {}
    for key in _BUILDKIT_CONFIG_ORDER:
        if key == "OnBuild":
            result[key] = values.get(key)
        elif values.get(key) is not None:
            value = values[key]
            result[key] = _healthcheck(value) if key == "Healthcheck" else value
    return result


def history_entries(recipe: Recipe, *, buildkit: bool) -> list[dict[str, Any]]:
    """History in Go field order: created, author, created_by, comment, empty_layer."""
    entries: list[dict[str, Any]] = []
    for step in recipe.steps:
        entry: dict[str, Any] = {"created": step.when.rfc3339()}
        if buildkit and not step.from_base:
            entry["created_by"] = step.buildkit
            entry["comment"] = "buildkit.dockerfile.v0"
        else:
            entry["created_by"] = step.classic
        if step.layer is None:
            entry["empty_layer"] = True
        entries.append(entry)
    return entries


def classic_config(recipe: Recipe, diff_ids: Sequence[str] | None = None) -> bytes:
    """The config the classic builder (Docker <= 24, DOCKER_BUILDKIT=0) writes.

    Docker's Image.MarshalJSON round-trips through a map, so top-level keys come out sorted
    while nested objects keep struct order. ``container_config`` is the last build container's
    config, whose Cmd shows the last instruction.
    """
    last = recipe.steps[-1]
    parent_image = "sha256:" + fake_hex(f"intermediate-image:{last.classic}")
    runtime = dict(recipe.runtime, Image=parent_image)
    build_container = dict(
        runtime, Cmd=["/bin/sh", "-c", "#(nop) ", last.classic.removeprefix(nop(""))]
    )
    top: dict[str, Any] = {
        "architecture": recipe.architecture,
        "config": docker_container_config(runtime),
        "container": fake_hex(f"build-container:{last.classic}"),
        "container_config": docker_container_config(build_container),
        "created": recipe.created.rfc3339(),
        "docker_version": "24.0.7",
        "history": history_entries(recipe, buildkit=False),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids or recipe.diff_ids)},
    }
    if recipe.author:
        top["author"] = recipe.author
    if recipe.variant:
        top["variant"] = recipe.variant
    return go_json(sorted_map(top))


def buildkit_config(recipe: Recipe, diff_ids: Sequence[str] | None = None) -> bytes:
    """The config BuildKit writes (top-level keys sorted, ImageConfig in struct order)."""
    top: dict[str, Any] = {
        "architecture": recipe.architecture,
        "config": buildkit_image_config(recipe.runtime),
        "created": recipe.created.rfc3339(),
        "history": history_entries(recipe, buildkit=True),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids or recipe.diff_ids)},
    }
    if recipe.author:
        top["author"] = recipe.author
    if recipe.variant:
        top["variant"] = recipe.variant
    return go_json(sorted_map(top))
