"""Readable output of the analysis commands (efficiency, types, history) with rich.

The same results as render/analysis_json.py, for people.
"""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from inspect_tool.analyze.efficiency import EfficiencyReport, GateResult
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size


def _title(image: Image) -> str:
    name = image.repo_tags[0] if image.repo_tags else image.ref_name or str(image.image_id)[:19]
    return escape(name)


# -- efficiency ---------------------------------------------------------------------------------
def _percent(value: float) -> str:
    if math.isnan(value):
        return "n/a (no bytes above layer 0)"
    if math.isinf(value):
        return "infinite (no bytes above layer 0)"
    return f"{value * 100:.4f} %"


def render_efficiency(
    console: Console,
    image: Image,
    report: EfficiencyReport,
    gates: list[GateResult],
    *,
    top: int,
) -> None:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold cyan", no_wrap=True)
    summary.add_column()
    summary.add_row("Image", _title(image))
    summary.add_row("Efficiency", f"{report.efficiency * 100:.4f} % ({report.efficiency!r})")
    summary.add_row("Wasted bytes", f"{report.wasted_bytes} ({human_size(report.wasted_bytes)})")
    summary.add_row("User wasted", _percent(report.user_wasted_percent))
    summary.add_row(
        "Size",
        f"{report.size_bytes} ({human_size(report.size_bytes)}), of which above layer 0: "
        f"{report.user_size_bytes} ({human_size(report.user_size_bytes)})",
    )
    console.print(summary)
    console.print()
    paths = report.inefficient_paths
    shown = paths if top <= 0 else paths[:top]
    table = Table(
        title=f"Inefficient paths ({len(paths)}, worst first)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("wasted", justify="right", no_wrap=True)
    table.add_column("layers", no_wrap=True)
    table.add_column("path", overflow="fold")
    for p in shown:
        table.add_row(
            str(p.count),
            human_size(p.cumulative_size),
            ",".join(str(i) for i in p.layers),
            escape(p.path),
        )
    if paths:
        console.print(table)
        if len(shown) < len(paths):
            console.print(
                Text(f"… {len(paths) - len(shown)} more (--top 0 lists all)", style="dim")
            )
    else:
        console.print(Text("No inefficient paths.", style="green"))
    for note in report.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    if gates:
        console.print()
        for gate in gates:
            status = Text("PASS", style="green") if gate.ok else Text("FAIL", style="bold red")
            line = Text.assemble(status, f" {gate.rule}")
            if gate.message:
                line.append(f": {gate.message}")
            console.print(line)
        failed = sum(not g.ok for g in gates)
        console.print(
            Text(
                f"Result: {'FAIL' if failed else 'PASS'} [Total: {len(gates)}] "
                f"[Passed: {len(gates) - failed}] [Failed: {failed}]",
                style="bold red" if failed else "bold green",
            )
        )
