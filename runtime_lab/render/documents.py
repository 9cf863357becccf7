"""The runtime's output: the JSON documents (docs/JSON.md) and the tables its commands print,
built from runtime_lab's records. Pure: nothing here reads state or prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from inspect_tool.layers.tarwrite import TarStats
    from inspect_tool.model.image import Image
    from inspect_tool.storage.diff import ContainerDiff
    from runtime_lab.run_options import RunOptions
    from runtime_lab.storage.commit import CommitResult
    from runtime_lab.storage.volumes import Volume


# -- ps ------------------------------------------------------------------------------------------


def ps_document(
    rows: list[tuple[Any, Any]], sizes: Mapping[str, tuple[int | None, int | None]]
) -> dict[str, Any]:
    """``ps --json`` (docs/JSON.md): each container's config and state; sizes with -s."""
    return {
        "schema_version": 1,
        "kind": "ps",
        "containers": [
            {
                "id": c.id,
                "name": c.name,
                "image": c.image_source,
                "image_id": c.image_id,
                "command": c.command,
                "created": c.created,
                "status": s.status,
                "pid": s.pid or None,
                "exit_code": s.exit_code,
                "oom_killed": s.oom_killed,
                "started": s.started,
                "finished": s.finished,
                "restart_policy": c.restart,
                "restart_count": s.restart_count,
                "size_rw": sizes[c.id][0],
                "size_root_fs": sizes[c.id][1],
            }
            for c, s in rows
        ],
    }


def ps_fields(config: Any, state: Any, size: tuple[int | None, int | None]) -> dict[str, str]:
    """One container as docker ps's template fields (each value escaped for the terminal)."""
    from runtime_lab.render.ps import command_cell, safe
    from runtime_lab.storage.records import human_size

    if state.status == "running":
        status = f"Up {ago(state.started)}" + (" (Paused)" if state.paused else "")
    elif state.status == "restarting":
        status = f"Restarting ({state.exit_code}) {ago(state.finished)} ago"
    elif state.status == "exited":
        status = f"Exited ({state.exit_code}) {ago(state.finished)} ago"
    else:
        status = "Created"
    rw, virtual = size
    return {
        "ID": config.id[:12],
        "Image": safe(config.image_source),
        "Command": command_cell(config.command),
        "CreatedAt": created_at(config.created),
        "RunningFor": f"{ago(config.created)} ago",
        "Ports": safe(_ports(config.ports)) if state.status == "running" else "",
        "State": "paused" if state.paused and state.status == "running" else state.status,
        "Status": status,
        "Size": (
            f"{human_size(rw)} (virtual {human_size(virtual)})"
            if rw is not None and virtual is not None
            else "0B"
        ),
        "Names": safe(config.name),
        "Labels": safe(",".join(f"{k}={v}" for k, v in sorted(config.labels.items()))),
        "Mounts": safe(",".join(str(m.get("name") or m.get("source")) for m in config.volumes)),
        "Networks": safe(config.network),
        "RestartCount": str(state.restart_count),
    }


def _ports(ports: list[dict[str, Any]]) -> str:
    """-p as docker ps shows it: ``0.0.0.0:8080->80/tcp``, comma-separated."""
    return ", ".join(
        f"{p.get('host_ip') or '0.0.0.0'}:{p.get('host_port')}->{p.get('container_port')}/"
        f"{p.get('protocol')}"
        for p in ports
    )


def ago(stamp: str | None) -> str:
    """How long ago an RFC 3339 UTC stamp was, as docker words it: `5 minutes`."""
    if not stamp:
        return ""
    import datetime as dt

    then = dt.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    seconds = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def created_at(stamp: str | None) -> str:
    """docker's CreatedAt: ``2024-05-01 12:00:00 +0000 UTC``."""
    if not stamp:
        return ""
    return f"{stamp[:10]} {stamp[11:19]} +0000 UTC"


# -- container diff, export, commit ----------------------------------------------------------


def diff_document(result: ContainerDiff, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine storage's container-diff document (one shape for the command, docs/JSON.md), for
    a dockscope container; plus its ``volumes``."""
    from inspect_tool.render.storage import diff_document as storage_diff_document

    return {**storage_diff_document(result), "volumes": volumes}


def tar_summary(stats: TarStats) -> dict[str, Any]:
    """A tar's counts, without the list of what was left out (``skipped``, its own key)."""
    summary = asdict(stats)
    summary.pop("skipped")
    return summary


def export_document(
    container_id: str, name: str, output: str, layer: bool, stats: TarStats
) -> dict[str, Any]:
    """``container export --json`` (docs/JSON.md)."""
    return {
        "schema_version": 1,
        "kind": "container-export",
        "id": container_id,
        "name": name,
        "output": output,
        "layer": layer,
        "summary": tar_summary(stats),
        "skipped": [{"path": p, "reason": r} for p, r in stats.skipped],
    }


def commit_document(container_id: str, name: str, result: CommitResult) -> dict[str, Any]:
    """``container commit --json`` (docs/JSON.md)."""
    return {
        "schema_version": 1,
        "kind": "container-commit",
        "id": container_id,
        "name": name,
        "output": str(result.output),
        "tag": str(result.tag) if result.tag else None,
        "ref_name": result.tag.tag if result.tag else None,
        "base_image_id": str(result.base_image_id),
        "image_id": str(result.image_id),
        "manifest_digest": str(result.manifest_digest),
        "manifest_size": result.manifest_size,
        "layers": result.layers,
        "layer": {
            "diff_id": str(result.layer.diff_id),
            "digest": str(result.layer.digest),
            "media_type": result.layer.media_type,
            "size": result.layer.size,
            "uncompressed_size": result.layer.uncompressed_size,
            "summary": tar_summary(result.layer.stats),
        },
        "skipped": [{"path": p, "reason": r} for p, r in result.layer.stats.skipped],
    }


# -- volumes -------------------------------------------------------------------------------------


def volume_ls_document(found: list[tuple[Volume, list[str]]]) -> dict[str, Any]:
    """``volume ls --json``: each volume with the containers that use it."""
    return {
        "schema_version": 1,
        "kind": "volume-ls",
        "volumes": [{**v.to_json(), "containers": users} for v, users in found],
    }


def volume_table(found: list[tuple[Volume, list[str]]]) -> Table:
    """``volume ls``: docker's columns, names escaped for the terminal."""
    from rich import box
    from rich.table import Table

    from inspect_tool.render.text import markup

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("DRIVER", "VOLUME NAME", "CONTAINERS"):
        table.add_column(column, overflow="fold")
    for volume, users in found:
        table.add_row("local", markup(volume.name), markup(", ".join(users)))
    return table


def volume_inspect_document(found: list[tuple[Volume, list[str], int]]) -> dict[str, Any]:
    """``volume inspect``: each volume, who uses it and its size."""
    return {
        "schema_version": 1,
        "kind": "volume-inspect",
        "volumes": [{**v.to_json(), "containers": users, "size": size} for v, users, size in found],
    }


# -- run --explain -------------------------------------------------------------------------------


def explain_details(
    options: RunOptions,
    image: Image,
    argv: list[str],
    mismatch: tuple[str, str] | None,
    mode: str,
) -> dict[str, str]:
    """The facts ``run --explain`` prints above the plan: image, command, user, namespaces,
    limits, platform, root filesystem (``mode``: overlay or copy) and seccomp."""
    import json

    return {
        "image": f"{image.display_name} ({image.image_id.short}), {len(image.layers)} layers",
        "command": json.dumps(argv),
        "user": options.user or str(dict(image.config.config).get("User") or "root"),
        "network": options.network,
        "pid": options.pid_mode,
        "ipc": options.ipc_mode,
        "limits": ", ".join(
            f"{k}={v}"
            for k, v in (("memory", options.memory), ("cpus", options.cpus), ("pids", options.pids))
            if v is not None
        )
        or "none",
        "platform": (
            f"{mismatch[0]}, not this host's {mismatch[1]}: its programs fail with "
            "'Exec format error' unless an emulator is registered (binfmt_misc)"
            if mismatch
            else "this host's"
        ),
        "root filesystem": mode,
        "seccomp": "none (--privileged)"
        if options.caps.privileged
        else {
            "default": "docker's default profile (runtime_lab/kernel/profiles/default.json)",
            "unconfined": "unconfined (no filter)",
        }.get(options.security.seccomp, options.security.seccomp),
        "capabilities": _capabilities_line(options),
    }


def _capabilities_line(options: RunOptions) -> str:
    """--explain's capabilities: docker's default set, or what the options changed."""
    from runtime_lab.kernel.capabilities import describe, privileged_changes

    if options.caps.privileged:
        return "all (--privileged); also off: " + "; ".join(privileged_changes()[1:])
    chosen = options.caps.capabilities()
    changed = describe(chosen)
    if not changed["added"] and not changed["dropped"]:
        return f"docker's default {len(chosen)}"
    parts = [f"{len(chosen)} kept"]
    if changed["added"]:
        parts.append("added " + " ".join(changed["added"]))
    if changed["dropped"]:
        parts.append("dropped " + " ".join(changed["dropped"]))
    return ", ".join(parts)
