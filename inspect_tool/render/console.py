"""Readable terminal output with rich. Same results as render/json.py, for people."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from inspect_tool.analyze.explain import Explanation
from inspect_tool.analyze.verify import VerifyReport
from inspect_tool.model.image import Image, Layer
from inspect_tool.model.mediatypes import declared_compression
from inspect_tool.render.text import markup, styled, visible
from inspect_tool.sources.source import Candidate, Source

FORMAT_NAMES = {
    "docker-archive": "docker save archive (legacy layout)",
    "docker-archive-oci": "docker save archive (Docker 25+: OCI layout + manifest.json)",
    "docker-dir": "extracted docker save directory",
    "oci-layout": "OCI image layout (directory)",
    "oci-archive": "OCI image layout in a tar (oci-archive)",
    "dir": "skopeo dir: directory",
    "containers-storage": "containers-storage (Podman/Buildah store, read offline)",
    "registry": "registry (OCI distribution API)",
}


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def titled_table(title: str) -> Table:
    """The table of every listing: its title left-aligned above a simple header rule, no
    padding at the edges. ``title`` is rich markup: escape what comes from an image."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _short(digest: object | None, width: int = 12) -> str:
    if digest is None:
        return "-"
    text = str(digest)
    algorithm, _, hexpart = text.partition(":")
    return f"{algorithm}:{hexpart[:width]}" if hexpart else text


def _json_inline(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _format_ports(ports: Any) -> str:
    return ", ".join(sorted(ports)) if isinstance(ports, Mapping) else ""


def _format_healthcheck(check: Any) -> str:
    if not isinstance(check, Mapping):
        return ""
    test = check.get("Test")
    parts = [_json_inline(test)] if test else []
    for key in ("Interval", "Timeout", "StartPeriod", "Retries"):
        if check.get(key):
            value = check[key]
            if key != "Retries" and isinstance(value, int):
                value = f"{value / 1e9:g}s"
            parts.append(f"{key.lower()}={value}")
    return " ".join(parts)


def render_image(console: Console, image: Image, *, source: Source | None = None) -> None:
    config = image.config.config
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold cyan", no_wrap=True)
    summary.add_column(overflow="fold")

    def row(label: str, value: str | None, *, lines: bool = False) -> None:
        # lines: entries already escaped one by one, joined by line feeds
        if not value:
            summary.add_row(label, Text("-", style="dim"))
        else:
            summary.add_row(label, escape(value) if lines else markup(value))

    row("Tags", ", ".join(image.repo_tags) or None)
    if image.ref_name:
        row("Ref name", image.ref_name)
    compression = (
        f", {image.archive_compression.value}-compressed" if image.archive_compression else ""
    )
    row("Format", FORMAT_NAMES.get(image.format.value, image.format.value) + compression)
    row("Image ID", str(image.image_id))
    row(
        "Manifest digest",
        str(image.manifest.digest) if image.manifest else "none (this format stores no manifest)",
    )
    row("Platform", str(image.platform) if image.platform else None)
    row("Created", image.config.text("created"))
    row("Author", image.config.text("author"))
    row("Entrypoint", _json_inline(config["Entrypoint"]) if config.get("Entrypoint") else None)
    row("Cmd", _json_inline(config["Cmd"]) if config.get("Cmd") else None)
    env = config.get("Env") or []
    row(
        "Env",
        "\n".join(visible(str(e)) for e in env) if isinstance(env, list) else None,
        lines=True,
    )
    row("WorkingDir", config.get("WorkingDir") or None)
    row("User", config.get("User") or None)
    row("Ports", _format_ports(config.get("ExposedPorts")) or None)
    row("Volumes", _format_ports(config.get("Volumes")) or None)
    labels = config.get("Labels")
    row(
        "Labels",
        "\n".join(visible(f"{k}={v}") for k, v in sorted(labels.items()))
        if isinstance(labels, Mapping) and labels
        else None,
        lines=True,
    )
    row("Healthcheck", _format_healthcheck(config.get("Healthcheck")) or None)
    row("StopSignal", config.get("StopSignal") or None)
    title = image.repo_tags[0] if image.repo_tags else _short(image.image_id)
    console.print(Panel(summary, title=styled(title, "bold"), title_align="left", expand=False))
    console.print(layers_table(image))
    for warning in image.warnings:
        console.print(f"[yellow]warning:[/] {markup(warning)}", soft_wrap=True)
    for finding in source.findings if source else []:
        if not finding.ok:
            console.print(
                f"[yellow]warning:[/] {finding.check}: {markup(finding.subject)}: expected "
                f"{markup(str(finding.expected))}, found {markup(str(finding.actual))}",
                soft_wrap=True,
            )


def layers_table(image: Image) -> Table:
    """Layers bottom to top, with empty history steps aligned between them."""
    table = Table(
        title="Layers (bottom to top)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        expand=False,
        pad_edge=False,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("diff_id\ndigest", no_wrap=True)
    table.add_column("size\nunpacked", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("created_by", overflow="fold", min_width=24)
    by_history = {
        layer.history_index: layer for layer in image.layers if layer.history_index is not None
    }
    shown: set[int] = set()
    for h_index, entry in enumerate(image.history):
        layer = by_history.get(h_index)
        if layer is None:
            table.add_row(
                "",
                "",
                "",
                Text("empty", style="dim"),
                Text(visible(short_created_by(entry.created_by)), style="dim"),
            )
            continue
        shown.add(layer.index)
        table.add_row(*_layer_cells(layer))
    for layer in image.layers:
        if layer.index not in shown:
            table.add_row(*_layer_cells(layer))
    return table


_NOP = "/bin/sh -c #(nop) "
_SHELL = "/bin/sh -c "
_LONG_HEX = re.compile(r"([0-9a-f]{12})[0-9a-f]{20,}")


def short_created_by(created_by: str | None) -> str:
    """A history step as a Dockerfile-like line: shell prefixes off, long hashes shortened."""
    if not created_by:
        return ""
    text = created_by.strip()
    if text.startswith(_NOP):
        text = text[len(_NOP) :].strip()
    elif text.startswith(_SHELL):
        text = "RUN " + text[len(_SHELL) :].strip()
    return _LONG_HEX.sub(r"\1…", text)


_MEDIA_SHORT = {
    "application/vnd.oci.image.layer.v1.tar": "oci tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "oci tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "oci tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "docker tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "docker tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "docker tar.zstd",
}


def _layer_cells(layer: Layer) -> list[str | Text]:
    if layer.media_type is None:
        compression = "" if layer.compression.value == "none" else f"+{layer.compression.value}"
        kind = Text(f"tar{compression} (implied)")
    else:
        kind = Text(visible(_MEDIA_SHORT.get(layer.media_type, layer.media_type)))
        declared = declared_compression(layer.media_type)
        if declared is not None and declared is not layer.compression:
            kind.append(f" but {layer.compression.value}!", style="bold red")
    digest = "(same)" if layer.digest == layer.diff_id and layer.digest else _hex(layer.digest)
    return [
        str(layer.index),
        f"{_hex(layer.diff_id)}\n{digest}",
        f"{human_size(layer.size)}\n{human_size(layer.uncompressed_size)}",
        kind,
        Text(visible(short_created_by(layer.created_by))),
    ]


def _hex(digest: object | None) -> str:
    if digest is None:
        return "-"
    return str(digest).partition(":")[2][:12] or str(digest)


def render_listing(console: Console, source: Source, candidates: list[Candidate]) -> None:
    table = titled_table(
        f"{markup(source.label)}: {FORMAT_NAMES.get(source.format.value, '')}, "
        f"{len(candidates)} images"
    )
    for column in ("--image", "tags", "ref", "platform", "image ID", "manifest", "via"):
        table.add_column(column, no_wrap=column not in ("tags", "via"))
    for candidate in candidates:
        try:
            image: Image | None = candidate.image()
        except Exception as exc:  # still listed; the row says why
            image = None
            error = str(exc)
        else:
            error = ""
        platform = candidate.platform or (image.platform if image else None)
        table.add_row(
            candidate.selector,
            markup(", ".join(candidate.repo_tags)) or "-",
            markup(candidate.ref_name or "-"),
            markup(str(platform)) if platform else "-",
            _hex(image.image_id) if image else Text(f"unreadable: {visible(error)}", style="red"),
            _hex(candidate.manifest_digest),
            markup(_DIGEST.sub(r"\1…", " → ".join(candidate.index_path))) or "manifest.json",
        )
    console.print(table)
    console.print(
        "Choose one with [bold]--image N[/] (or NAME:TAG), [bold]--ref NAME[/] or "
        f"[bold]--platform {escape('os/arch[/variant]')}[/]."
    )


_DIGEST = re.compile(r"(sha(?:256|512):[0-9a-f]{12})[0-9a-f]+")
_BLOB_HEX = re.compile(r"(blobs/sha(?:256|512)/)([0-9a-f]{12})[0-9a-f]+")


def _short_paths(text: str) -> str:
    return _BLOB_HEX.sub(r"\1\2…", text)


def render_verify(console: Console, report: VerifyReport, *, verbose: bool = False) -> None:
    """One line per check (failed ones always, passed ones with --verbose)."""
    for finding in report.findings:
        if finding.ok and not verbose:
            continue
        line = Text()
        line.append("ok   " if finding.ok else "FAIL ", style="green" if finding.ok else "bold red")
        line.append(f"{finding.check:<19}", style="bold")
        line.append(visible(_short_paths(finding.subject)))
        console.print(line, soft_wrap=True)
        if not finding.ok:
            expected, actual = visible(str(finding.expected)), visible(str(finding.actual))
            console.print(Text(f"       expected {expected}", style="dim"), soft_wrap=True)
            console.print(Text(f"       actual   {actual}"), soft_wrap=True)
        if finding.message and (verbose or not finding.ok):
            console.print(Text(f"       {visible(finding.message)}", style="dim"), soft_wrap=True)
    for note in report.notes:
        console.print(styled(f"note: {note}", "dim"), soft_wrap=True)
    failed = len(report.failed)
    passed = len(report.findings) - failed
    if failed:
        checks = sorted({f.check for f in report.failed})
        console.print(
            f"[bold red]FAILED[/]: {failed} of {len(report.findings)} checks failed "
            f"({', '.join(checks)}); {passed} passed."
        )
    else:
        console.print(f"[bold green]OK[/]: all {passed} checks passed.")


def render_explain(console: Console, explanation: Explanation) -> None:
    console.print(
        f"[bold]How the identifiers of {markup(explanation.image.source)} are computed[/]\n"
    )
    for number, step in enumerate(explanation.steps, 1):
        parts: list[Any] = [Text(visible(step.explanation))]
        parts.append(Text.assemble(("formula  ", "bold"), visible(step.formula)))
        if step.value:
            parts.append(Text.assemble(("result   ", "bold"), (visible(step.value), "green")))
        if step.recorded is not None:
            verdict = ("matches", "green") if step.matches else ("DIFFERS", "bold red")
            recorded = visible(step.recorded)
            parts.append(Text.assemble(("recorded ", "bold"), recorded, "  ", verdict))
        for detail in step.details:
            parts.append(Text(visible(detail), style="dim"))
        if step.command:
            parts.append(Text.assemble(("try it   ", "bold"), (visible(step.command), "cyan")))
        title = f"{number}. {markup(step.title)}"
        # as wide as the terminal; on a pipe (no width to fill) as wide as its text
        panel = Panel(Group(*parts), title=title, title_align="left", expand=console.is_terminal)
        console.print(panel)
