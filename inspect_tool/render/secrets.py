"""``secrets``' output: the JSON document (docs/JSON.md) and the table for people. The secret
itself appears only when the caller asks (``show``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from inspect_tool.analyze.secrets import MAX_SCAN, RULE_IDS, SecretsReport
from inspect_tool.model.image import Image
from inspect_tool.render.json import document_head
from inspect_tool.render.text import plural, visible


def secrets_document(image: Image, report: SecretsReport, *, show: bool) -> dict[str, Any]:
    findings = []
    for f in report.findings:
        entry: dict[str, Any] = {
            "layer": f.layer,
            "path": f.path,
            "rule": f.rule,
            "line": f.line,
            "excerpt": f.excerpt,
            "fingerprint": f.fingerprint,
            "fate": f.fate,
            "by_layer": f.by_layer,
        }
        if show:
            entry["secret"] = f.secret
        findings.append(entry)
    return {
        **document_head("secrets", image),
        "rules": list(RULE_IDS),
        "findings": findings,
        "set_aside": dict(sorted(report.set_aside.items())),
        "files_scanned": report.files_scanned,
        "binary_skipped": report.binary_skipped,
        "truncated": report.truncated,
        "scan_bytes": MAX_SCAN,
    }


def _fate(fate: str, by_layer: int | None) -> str:
    return fate if by_layer is None else f"{fate} by layer {by_layer}"


def render_secrets(console: Console, image: Image, report: SecretsReport, *, show: bool) -> None:
    from inspect_tool.render.analysis import _title

    summary = (
        f"{report.files_scanned} text files scanned, {report.binary_skipped} binary skipped"
        + (f", {report.truncated} read to {MAX_SCAN} bytes" if report.truncated else "")
    )
    if not report.findings:
        console.print(Text(f"No secrets found ({summary}).", style="green"))
    else:
        console.print(
            Text.from_markup(
                f"[bold]{_title(image)}: {plural(len(report.findings), 'secret')}[/bold] "
                f"({summary})"
            )
        )
        for f in report.findings:
            where = f.path if f.layer is None else f"{f.path}:{f.line}"
            head = Text("config" if f.layer is None else f"layer {f.layer}", style="bold")
            head.append(f"  {f.rule}  ", style="red")
            head.append(visible(where))
            if f.fate != "visible":
                head.append(f"  ({_fate(f.fate, f.by_layer)})", style="yellow")
            console.print(head)
            console.print(Text("    " + visible(f.secret if show else f.excerpt)))
        hidden = [f for f in report.findings if f.fate != "visible"]
        if hidden:
            console.print(
                Text(
                    f"{len(hidden)} of them in files a later layer deleted or overwrote: still "
                    "in the image's layers (dockscope cat --at LAYER recovers them).",
                    style="yellow",
                )
            )
    for reason, count in sorted(report.set_aside.items()):
        console.print(
            Text(f"{plural(count, 'match', 'matches')} set aside in {reason} (docs/SECRETS.md).")
        )
