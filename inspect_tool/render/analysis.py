"""Readable output of the analysis commands (efficiency, types, history) with rich.

The same results as render/analysis_json.py, for people.
"""

from __future__ import annotations

import math
import re

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from inspect_tool.analyze.efficiency import EfficiencyReport, GateResult
from inspect_tool.analyze.filetypes import LayerTypes, TypeFinding, TypesReport
from inspect_tool.analyze.history import HistoryReport
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size, titled_table
from inspect_tool.render.text import markup, plural, visible

_LONG_HEX = re.compile(r"([0-9a-f]{12})[0-9a-f]{20,}")


def _title(image: Image) -> str:
    name = image.repo_tags[0] if image.repo_tags else image.ref_name or str(image.image_id)[:19]
    return markup(name)


# -- efficiency ---------------------------------------------------------------------------------
def _percent(value: float) -> str:
    if math.isnan(value):
        return "n/a (no bytes above layer 0)"
    if math.isinf(value):
        return "infinite (no bytes above layer 0)"
    return f"{value * 100:.4f} %"


def _print_more(console: Console, shown: int, total: int) -> None:
    """The line under a list that --limit cut: how many rows it left out."""
    if shown < total:
        console.print(Text(f"… {total - shown} more (--limit 0 lists all)", style="dim"))


def efficiency_figures(report: EfficiencyReport) -> list[tuple[str, str]]:
    """The summary figures as ``efficiency`` prints them (and the explorer's image panel):
    (label, value), no markup in either."""
    return [
        ("Efficiency", f"{report.efficiency * 100:.4f} % ({report.efficiency!r})"),
        ("Wasted bytes", f"{report.wasted_bytes} ({human_size(report.wasted_bytes)})"),
        ("User wasted", _percent(report.user_wasted_percent)),
        (
            "Size",
            f"{report.size_bytes} ({human_size(report.size_bytes)}), of which above layer 0: "
            f"{report.user_size_bytes} ({human_size(report.user_size_bytes)})",
        ),
    ]


def render_efficiency(
    console: Console,
    image: Image,
    report: EfficiencyReport,
    gates: list[GateResult],
    *,
    limit: int,
) -> None:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold cyan", no_wrap=True)
    summary.add_column()
    summary.add_row("Image", _title(image))
    for label, value in efficiency_figures(report):
        summary.add_row(label, value)
    console.print(summary)
    console.print()
    paths = report.inefficient_paths
    shown = paths if limit <= 0 else paths[:limit]
    table = titled_table(f"Inefficient paths ({len(paths)}, worst first)")
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("wasted", justify="right", no_wrap=True)
    table.add_column("layers", no_wrap=True)
    table.add_column("path", overflow="fold")
    for p in shown:
        table.add_row(
            str(p.count),
            human_size(p.cumulative_size),
            ",".join(str(i) for i in p.layers),
            markup(p.path),
        )
    if paths:
        console.print(table)
        _print_more(console, len(shown), len(paths))
    else:
        console.print(Text("No inefficient paths.", style="green"))
    for note in report.notes:
        console.print(Text(f"note: {visible(note)}", style="yellow"))
    if gates:
        console.print()
        for gate in gates:
            status = Text("PASS", style="green") if gate.ok else Text("FAIL", style="bold red")
            line = Text.assemble(status, f" {gate.rule}")
            if gate.message:
                line.append(f": {visible(gate.message)}")
            console.print(line)
        failed = sum(not g.ok for g in gates)
        console.print(
            Text(
                f"Result: {'FAIL' if failed else 'PASS'} [Total: {len(gates)}] "
                f"[Passed: {len(gates) - failed}] [Failed: {failed}]",
                style="bold red" if failed else "bold green",
            )
        )


# -- types --------------------------------------------------------------------------------------
def _breakdown(stats: LayerTypes, limit: int = 4) -> str:
    items = sorted(stats.categories.items(), key=lambda item: -item[1].bytes)
    parts = [f"{c} {t.count} ({human_size(t.bytes)})" for c, t in items[:limit]]
    if len(items) > limit:
        parts.append(f"+{len(items) - limit} more")
    return ", ".join(parts)


def finding_detail(finding: TypeFinding) -> str:
    """A finding's detail column: its own detail, or what a layer did to the path, and
    whether a later layer hides it."""
    detail = finding.detail
    if finding.change:
        detail = f"{finding.change} {finding.category or ''}".strip()
    if not finding.visible:
        detail = f"{detail}, hidden by a later layer".lstrip(", ")
    return detail


def render_types(console: Console, image: Image, report: TypesReport, *, limit: int) -> None:
    layers = titled_table(
        f"{_title(image)}: files by layer (first {report.head_bytes} bytes of each)"
    )
    layers.add_column("#", justify="right", no_wrap=True)
    layers.add_column("files", justify="right", no_wrap=True)
    layers.add_column("size", justify="right", no_wrap=True)
    layers.add_column("largest kinds", overflow="fold")
    for stats in report.layers:
        layers.add_row(
            str(stats.index),
            str(stats.files.count),
            human_size(stats.files.bytes),
            markup(_breakdown(stats)),
        )
    console.print(layers)
    totals = Table(title="All analysed layers", title_justify="left", box=box.SIMPLE_HEAD)
    totals.add_column("kind", no_wrap=True)
    totals.add_column("files", justify="right", no_wrap=True)
    totals.add_column("size", justify="right", no_wrap=True)
    totals.add_column("share", justify="right", no_wrap=True)
    whole = report.totals.files.bytes or 1
    for category, tally in sorted(report.totals.categories.items(), key=lambda i: -i[1].bytes):
        totals.add_row(
            markup(str(category)),
            str(tally.count),
            human_size(tally.bytes),
            f"{tally.bytes * 100 / whole:.1f} %",
        )
    console.print(totals)
    kinds: dict[str, list[TypeFinding]] = {}
    for finding in report.findings:
        kinds.setdefault(str(finding.kind), []).append(finding)
    if not kinds:
        console.print(Text("No findings.", style="green"))
        return
    for kind, found in kinds.items():
        note = ""
        if kind == "late-executable":
            note = f" (above the {plural(report.base_layers, 'base layer')})"
        table = titled_table(f"{markup(kind)}: {len(found)}{note}")
        table.add_column("layer", justify="right", no_wrap=True)
        table.add_column("mode", no_wrap=True)
        table.add_column("owner", no_wrap=True)
        table.add_column("path", overflow="fold")
        table.add_column("detail", overflow="fold")
        shown = found if limit <= 0 else found[:limit]
        for f in shown:
            table.add_row(
                str(f.layer),
                f"{f.mode:04o}",
                f"{f.uid}:{f.gid}",
                markup(f.path),
                markup(finding_detail(f)),
            )
        console.print(table)
        _print_more(console, len(shown), len(found))


# -- history ------------------------------------------------------------------------------------
def render_history(console: Console, image: Image, report: HistoryReport) -> None:
    table = titled_table(f"{_title(image)}: history, bottom to top")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("layer", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("instruction", overflow="fold", ratio=1)
    builders: dict[str, int] = {}
    for row in report.rows:
        entry = row.entry
        created = (entry.created or "")[:16].replace("T", " ") if entry else ""
        builders[row.step.builder] = builders.get(row.step.builder, 0) + 1
        text = _LONG_HEX.sub(r"\1…", row.step.line or (row.step.notes[0] if row.step.notes else ""))
        style = "dim" if row.layer is None else ""
        instruction = Text(visible(text), style=style)
        if row.base:
            instruction.append("  (base)", style="dim cyan")
        table.add_row(
            "" if row.index is None else str(row.index),
            "empty" if row.layer is None else str(row.layer),
            markup(created),
            human_size(row.size) if row.layer is not None else "",
            instruction,
            style=style,
        )
    console.print(table)
    base = report.base_name or "not recorded"
    console.print(
        f"Base image: {markup(base)}; {'recorded' if report.base_certain else 'guessed'} "
        f"base: {plural(report.base_entries, 'history entry', 'history entries')}, "
        f"{plural(report.base_layers, 'layer')} "
        f"({markup(report.base_source)})",
        soft_wrap=True,
    )
    console.print(
        "Written by: " + ", ".join(f"{markup(name)} ({n})" for name, n in sorted(builders.items())),
        soft_wrap=True,
    )
    for warning in report.warnings:
        console.print(Text(f"warning: {visible(warning)}", style="yellow"))
