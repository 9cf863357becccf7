"""The HTML report: one self-contained file that needs no network.

Everything is inline: the CSS in one ``<style>``, the layer graph as the SVG Graphviz drew,
size bars as styled elements. There is no script at all, and the page's Content Security
Policy (``default-src 'none'``) forbids any load, so the file cannot fetch anything even if
some text slipped through.

Every string from an image is hostile (tags, labels, ``created_by``, file names can hold
HTML): each goes through ``_e`` (render/text.py's ``visible``: controls, bidi characters and
lone surrogates escaped, as on a terminal; then
``html.escape`` with quotes), and the SVG is embedded only after a check that it holds
nothing but drawing elements; otherwise the DOT text is shown instead.
"""

from __future__ import annotations

import html
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from inspect_tool import __version__
from inspect_tool.analyze.efficiency import EfficiencyReport
from inspect_tool.analyze.filetypes import TypeFinding, TypesReport
from inspect_tool.analyze.history import HistoryReport
from inspect_tool.analyze.report import (
    ContainerReport,
    ImageAnalysis,
    RemovedEntry,
    Report,
    SourceReport,
)
from inspect_tool.analyze.verify import VerifyReport
from inspect_tool.model.image import Image
from inspect_tool.render.analysis import finding_detail
from inspect_tool.render.console import FORMAT_NAMES, human_size, short_created_by
from inspect_tool.render.text import plural, visible

TOP_PATHS = 20  # efficiency: worst paths shown
FINDINGS_LIMIT = 100  # per kind of finding
REMOVED_LIMIT = 200  # deleted files listed
CONTAINER_LIMIT = 1000  # container changes listed

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

CSS = """
:root { --fg: #1d2433; --muted: #5b6577; --line: #d8dde6; --panel: #f5f7fa;
  --ok: #1e7d32; --bad: #b3261e; --warn: #8a5a00; --accent: #2456a6; --bar: #f08c2b; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
header { background: #1d2433; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c9d1e0; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 32px 48px; }
nav { margin: 16px 0; padding: 10px 14px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 6px; }
nav ul { margin: 0; padding-left: 18px; }
a { color: var(--accent); }
h2 { font-size: 20px; border-bottom: 2px solid var(--line); padding-bottom: 4px;
  margin: 36px 0 12px; }
h3 { font-size: 16px; margin: 24px 0 8px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas,
  "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
table { border-collapse: collapse; width: auto; max-width: 100%; margin: 8px 0 4px; }
table.wide { width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
.wrap { word-break: break-all; }
.nowrap { white-space: nowrap; }
.zero { color: var(--muted); }
.bar { display: inline-block; width: 110px; height: 10px; background: #eef1f6;
  border-radius: 2px; vertical-align: middle; margin-right: 6px; }
.bar > span { display: block; height: 100%; background: var(--bar); border-radius: 2px;
  min-width: 1px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.badge.ok { background: #e3f4e5; color: var(--ok); }
.badge.bad { background: #fde7e5; color: var(--bad); }
.added { color: var(--ok); } .modified { color: var(--warn); }
.deleted { color: var(--bad); }
.error { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px;
  margin: 8px 0; }
dl.summary dt { color: var(--muted); }
dl.summary dd { margin: 0; word-break: break-all; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 4px;
  padding: 10px; overflow: auto; white-space: pre-wrap; word-break: break-all; }
.graph { overflow: auto; border: 1px solid var(--line); border-radius: 4px; padding: 8px; }
.graph svg { max-width: 100%; height: auto; }
section.image { margin-top: 28px; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0; }
.stat { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px 14px; min-width: 150px; }
.stat b { display: block; font-size: 18px; }
details > summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
"""

# What an SVG drawn by Graphviz may hold to be embedded: drawing elements, no links, no
# scripts, no foreign content, no event handlers.
_SVG_TAGS = frozenset(
    {"svg", "g", "title", "polygon", "polyline", "path", "ellipse", "text", "defs", "desc"}
)
_SVG_ATTRS = frozenset(
    {
        "width",
        "height",
        "viewBox",
        "id",
        "class",
        "transform",
        "fill",
        "stroke",
        "stroke-width",
        "stroke-dasharray",
        "points",
        "d",
        "cx",
        "cy",
        "rx",
        "ry",
        "x",
        "y",
        "text-anchor",
        "font-family",
        "font-size",
        "font-weight",
        "font-style",
        "fill-opacity",
        "stroke-opacity",
        "text-decoration",
        "baseline-shift",
    }
)
_SVG_NS = "{http://www.w3.org/2000/svg}"


def _e(value: object) -> str:
    """Any value as HTML text: control characters visible, then escaped (quotes too)."""
    return html.escape(visible(str(value)), quote=True)


def _text_block(text: str) -> str:
    """Multi-line text for a ``<pre>``: each line escaped on its own."""
    return "\n".join(_e(line.replace("\t", "    ")) for line in text.split("\n"))


def _digest(value: object | None, width: int = 12) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    text = str(value)
    algorithm, _, hexpart = text.partition(":")
    short = f"{algorithm}:{hexpart[:width]}" if hexpart else text
    return f'<code title="{_e(text)}">{_e(short)}</code>'


def _bar(value: int, maximum: int, text: str) -> str:
    """A size bar (``value`` against ``maximum``) followed by ``text``, on one line."""
    share = 0.0 if maximum <= 0 else max(0.0, min(1.0, value / maximum))
    return (
        f'<span class="nowrap"><span class="bar"><span style="width:{share * 100:.1f}%">'
        f"</span></span>{_e(text)}</span>"
    )


def _count(css: str, mark: str, count: int) -> str:
    return f'<span class="{css if count else "zero"}">{mark}{count}</span>'


def _badge(ok: bool, text: str) -> str:
    return f'<span class="badge {"ok" if ok else "bad"}">{_e(text)}</span>'


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Iterable[int] = (),
    wide: bool = False,
) -> str:
    """A table of cells that are already HTML; ``numeric`` columns align right."""
    right = set(numeric)

    def cls(i: int) -> str:
        return ' class="num"' if i in right else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    opening = '<table class="wide">' if wide else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _more(shown: int, total: int, what: str) -> str:
    if shown >= total:
        return ""
    return f'<p class="muted">… {total - shown} more {_e(what)} not listed.</p>'


def _error(analysis: ImageAnalysis, key: str) -> str:
    message = analysis.errors.get(key)
    return f'<p class="error">Could not be computed: {_e(message)}</p>' if message else ""


# -- the graph ----------------------------------------------------------------------------------
def inline_svg(svg: bytes | None) -> str | None:
    """Graphviz's SVG as an element for the page, or None when it holds anything but
    drawing elements (or does not parse). What is embedded is serialised again from the
    parsed tree, so its text is escaped by the serialiser, whatever the input did."""
    if not svg:
        return None
    try:
        text = svg.decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = text.find("<svg")
    if start < 0:
        return None
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError:
        return None
    for element in root.iter():
        tag = element.tag
        if not isinstance(tag, str) or not tag.startswith(_SVG_NS):
            return None
        element.tag = tag[len(_SVG_NS) :]
        if element.tag not in _SVG_TAGS:
            return None
        if any(name not in _SVG_ATTRS for name in element.attrib):
            return None
    return ET.tostring(root, encoding="unicode")


def _graph_section(dot: str, svg: bytes | None) -> str:
    drawing = inline_svg(svg)
    parts = ['<section id="graph"><h2>Layer graph</h2>']
    if drawing is not None:
        parts.append(f'<div class="graph">{drawing}</div>')
    else:
        parts.append(
            '<p class="muted">Graphviz\'s dot program was not available to draw the graph '
            "(Debian: apt-get install graphviz); its DOT text follows.</p>"
        )
    parts.append(
        f"<details><summary>DOT source</summary><pre>{_text_block(dot)}</pre></details></section>"
    )
    return "".join(parts)


# -- verify -------------------------------------------------------------------------------------
def _verify_block(source: SourceReport) -> str:
    report: VerifyReport = source.verify
    failed = report.failed
    passed = len(report.findings) - len(failed)
    status = _badge(report.ok, "all checks passed" if report.ok else f"{len(failed)} failed")
    parts = [
        f"<h3>{_e(source.label)} {status}</h3>",
        f'<p class="muted">{_e(FORMAT_NAMES.get(source.format, source.format))}; '
        f"{passed} of {len(report.findings)} checks passed.</p>",
    ]
    for selector, error in source.unreadable:
        parts.append(f'<p class="error">Image {_e(selector)} unreadable: {_e(error)}</p>')

    def rows(findings: Iterable[Any]) -> list[list[str]]:
        return [
            [
                _badge(f.ok, "ok" if f.ok else "FAIL"),
                f"<code>{_e(f.check)}</code>",
                f'<span class="wrap">{_e(f.subject)}</span>',
                f"<code>{_e(f.expected)}</code>" if f.expected is not None else "",
                f"<code>{_e(f.actual)}</code>" if f.actual is not None else "",
                _e(f.message),
            ]
            for f in findings
        ]

    headers = ("", "check", "subject", "expected", "actual", "note")
    if failed:
        parts.append(_table(headers, rows(failed)))
    passing = [f for f in report.findings if f.ok]
    if passing:
        parts.append(
            f"<details><summary>{len(passing)} passed checks</summary>"
            f"{_table(headers, rows(passing))}</details>"
        )
    for note in report.notes:
        parts.append(f'<p class="muted">note: {_e(note)}</p>')
    return "".join(parts)


# -- one image ----------------------------------------------------------------------------------
def _summary(number: int, analysis: ImageAnalysis, source: SourceReport) -> str:
    image = analysis.image
    config = image.config.config

    def inline(value: Any) -> str | None:
        if not value:
            return None
        import json

        return json.dumps(value, ensure_ascii=False)

    items: list[tuple[str, str | None]] = [
        ("Source", source.label),
        ("Format", FORMAT_NAMES.get(image.format.value, image.format.value)),
        ("Tags", ", ".join(image.repo_tags) or None),
        ("Ref name", image.ref_name),
        ("Image ID", str(image.image_id)),
        ("Manifest digest", str(image.manifest.digest) if image.manifest else None),
        ("Platform", str(image.platform) if image.platform else None),
        ("Created", image.config.text("created")),
        ("Author", image.config.text("author")),
        ("Entrypoint", inline(config.get("Entrypoint"))),
        ("Cmd", inline(config.get("Cmd"))),
        ("User", str(config.get("User") or "") or None),
        ("WorkingDir", str(config.get("WorkingDir") or "") or None),
    ]
    labels = config.get("Labels")
    if isinstance(labels, Mapping) and labels:
        items.append(("Labels", "\n".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    rows = "".join(
        f"<dt>{_e(name)}</dt><dd>"
        + (
            "<br>".join(_e(line) for line in value.split("\n"))
            if value
            else '<span class="muted">-</span>'
        )
        + "</dd>"
        for name, value in items
    )
    stored = sum(layer.size or 0 for layer in image.layers)
    stats = [
        ("layers", str(len(image.layers))),
        ("stored", human_size(stored)),
        ("verify", "ok" if source.verify.ok else f"{len(source.verify.failed)} failed"),
    ]
    if analysis.efficiency is not None:
        stats.append(("efficiency", _score(analysis.efficiency.efficiency)))
        stats.append(("wasted", human_size(analysis.efficiency.wasted_bytes)))
    if analysis.types is not None:
        stats.append(("findings", str(len(analysis.types.findings))))
    if analysis.packages is not None:
        stats.append(("packages", str(len(analysis.packages.packages))))
    if analysis.secrets is not None:
        stats.append(("secrets", str(len(analysis.secrets.findings))))
    boxes = "".join(f'<div class="stat">{_e(k)}<b>{_e(v)}</b></div>' for k, v in stats)
    for warning in image.warnings:
        boxes += f'<p class="error">warning: {_e(warning)}</p>'
    return (
        f'<div id="summary-{number}"><div class="stats">{boxes}</div>'
        f'<dl class="summary">{rows}</dl></div>'
    )


def _layers(number: int, analysis: ImageAnalysis) -> str:
    image = analysis.image
    parts = [f'<section id="layers-{number}"><h3>Layers, bottom to top</h3>']
    parts.append(_error(analysis, "layers"))
    by_index = {row.index: row for row in analysis.rows or []}
    largest = max((layer.size or 0 for layer in image.layers), default=0)
    rows = []
    for layer in image.layers:
        row = by_index.get(layer.index)
        size = layer.size or 0
        rows.append(
            [
                str(layer.index),
                _digest(layer.diff_id) + "<br>" + _digest(layer.chain_id),
                _bar(size, largest, human_size(layer.size)),
                _e(human_size(row.content_size)) if row else "",
                _count("added", "+", row.added) if row else "",
                _count("modified", "~", row.modified) if row else "",
                _count("deleted", "-", row.deleted) if row else "",
                _e(human_size(row.wasted)) if row else "",
                f'<code class="wrap">{_e(short_created_by(layer.created_by))}</code>',
            ]
        )
    parts.append(
        _table(
            (
                "#",
                "diff_id / chain ID",
                "stored",
                "content",
                "added",
                "modified",
                "deleted",
                "wasted",
                "created_by",
            ),
            rows,
            numeric=(0, 3, 4, 5, 6, 7),
            wide=True,
        )
    )
    parts.append(
        '<p class="muted">stored: the blob as pulled; content: bytes of regular files in the '
        "layer; wasted: bytes of lower-layer files this layer replaced or deleted.</p>"
    )
    for row in analysis.rows or []:
        for anomaly in row.anomalies:
            parts.append(
                f'<p class="error">layer {row.index}: {_e(anomaly.name)}: {_e(anomaly.problem)}</p>'
            )
    parts.append("</section>")
    return "".join(parts)


def _score(value: float) -> str:
    """Two decimals, never rounded up to 100 % while anything is wasted."""
    shown = math.floor(value * 10000) / 100
    return f"{shown:.2f} %"


def _percent(value: float) -> str:
    return f"{value * 100:.2f} %" if math.isfinite(value) else "n/a"


def _efficiency(number: int, analysis: ImageAnalysis) -> str:
    parts = [f'<section id="efficiency-{number}"><h3>Efficiency and wasted space</h3>']
    parts.append(_error(analysis, "efficiency"))
    report: EfficiencyReport | None = analysis.efficiency
    if report is not None:
        stats = [
            ("efficiency (as dive)", f"{report.efficiency * 100:.4f} %"),
            ("wasted bytes", f"{human_size(report.wasted_bytes)}"),
            ("user wasted", _percent(report.user_wasted_percent)),
            ("size (headers)", human_size(report.size_bytes)),
        ]
        parts.append(
            '<div class="stats">'
            + "".join(f'<div class="stat">{_e(k)}<b>{_e(v)}</b></div>' for k, v in stats)
            + "</div>"
        )
        paths = report.inefficient_paths
        if paths:
            worst = paths[0].cumulative_size
            shown = paths[:TOP_PATHS]
            parts.append(
                _table(
                    ("count", "wasted", "layers", "path"),
                    (
                        [
                            str(p.count),
                            _bar(p.cumulative_size, worst, human_size(p.cumulative_size)),
                            _e(",".join(str(i) for i in p.layers)),
                            f'<code class="wrap">{_e(p.path)}</code>',
                        ]
                        for p in shown
                    ),
                    numeric=(0,),
                )
            )
            parts.append(_more(len(shown), len(paths), "paths"))
        else:
            parts.append('<p class="added">No path is stored in more than one layer.</p>')
        for note in report.notes:
            parts.append(f'<p class="muted">note: {_e(note)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _types(number: int, analysis: ImageAnalysis) -> str:
    parts = [f'<section id="types-{number}"><h3>File types</h3>']
    parts.append(_error(analysis, "types"))
    report: TypesReport | None = analysis.types
    if report is not None:
        totals = sorted(report.totals.categories.items(), key=lambda i: (-i[1].bytes, i[0]))
        whole = report.totals.files.bytes
        parts.append(
            _table(
                ("kind", "files", "size", "share"),
                (
                    [
                        _e(category),
                        str(tally.count),
                        _bar(tally.bytes, whole, human_size(tally.bytes)),
                        _e(f"{tally.bytes * 100 / whole:.1f} %" if whole else "-"),
                    ]
                    for category, tally in totals
                ),
                numeric=(1, 3),
            )
        )
        rows = []
        for stats in report.layers:
            kinds = sorted(stats.categories.items(), key=lambda i: (-i[1].bytes, i[0]))
            rows.append(
                [
                    str(stats.index),
                    str(stats.files.count),
                    _e(human_size(stats.files.bytes)),
                    _e(", ".join(f"{c} {t.count} ({human_size(t.bytes)})" for c, t in kinds[:5])),
                ]
            )
        parts.append(
            "<details><summary>By layer</summary>"
            + _table(("#", "files", "size", "largest kinds"), rows, numeric=(0, 1, 2))
            + "</details>"
        )
    parts.append("</section>")
    return "".join(parts)


PACKAGE_ROWS = 500  # rows of the packages table (the rest counted)


def _packages(number: int, analysis: ImageAnalysis) -> str:
    parts = [f'<section id="packages-{number}"><h3>Packages</h3>']
    parts.append(_error(analysis, "packages"))
    report = analysis.packages
    if report is not None:
        if not report.packages and not report.removed:
            parts.append('<p class="muted">No package database found.</p>')
        by_layer: dict[int, int] = {}
        for item in report.packages:
            by_layer[item.layer] = by_layer.get(item.layer, 0) + 1
        if by_layer:
            parts.append(
                "<p>"
                + _e(
                    f"{len(report.packages)} installed; by the layer that installed them: "
                    + ", ".join(f"layer {k}: {v}" for k, v in sorted(by_layer.items()))
                )
                + "</p>"
            )
        rows = []
        for item in sorted(report.packages, key=lambda p: (p.layer, p.package.key))[:PACKAGE_ROWS]:
            package = item.package
            history = "; ".join(
                f"{e.layer}: {e.action.value}" + (f" from {e.previous}" if e.previous else "")
                for e in item.events
            )
            rows.append(
                [
                    str(item.layer),
                    _e(package.ecosystem.value),
                    _e(package.name),
                    _e(package.version),
                    _e(package.license or "-"),
                    _e(history if len(item.events) > 1 else ""),
                    str(len(item.altered)),
                ]
            )
        if rows:
            parts.append(
                "<details><summary>Installed packages</summary>"
                + _table(
                    ("layer", "type", "name", "version", "licence", "history", "files changed"),
                    rows,
                    numeric=(0, 6),
                    wide=True,
                )
                + _more(len(rows), len(report.packages), "packages")
                + "</details>"
            )
        if report.removed:
            parts.append(
                "<details><summary>Removed by a later layer</summary>"
                + _table(
                    ("type", "name", "version", "history"),
                    (
                        [
                            _e(item.package.ecosystem.value),
                            _e(item.package.name),
                            _e(item.package.version),
                            _e("; ".join(f"{e.layer}: {e.action.value}" for e in item.events)),
                        ]
                        for item in report.removed
                    ),
                )
                + "</details>"
            )
        for problem in report.problems:
            parts.append(
                f'<p class="error">layer {problem.layer}: {_e(problem.path)}: '
                f"{_e(problem.message)}</p>"
            )
    parts.append("</section>")
    return "".join(parts)


def _secrets(number: int, analysis: ImageAnalysis) -> str:
    parts = [f'<section id="secrets-{number}"><h3>Secrets</h3>']
    parts.append(_error(analysis, "secrets"))
    report = analysis.secrets
    if report is not None:
        if not report.findings:
            parts.append(f"<p>{_badge(True, 'none found')}</p>")
        else:
            parts.append(
                f"<p>{_badge(False, f'{len(report.findings)} found')} "
                "Excerpts are redacted; <code>dockscope secrets --show</code> prints them.</p>"
            )
            parts.append(
                _table(
                    ("layer", "fate", "rule", "where", "excerpt (redacted)"),
                    (
                        [
                            "config" if f.layer is None else str(f.layer),
                            _e(f.fate if f.by_layer is None else f"{f.fate} by layer {f.by_layer}"),
                            _e(f.rule),
                            _e(f.path if f.layer is None else f"{f.path}:{f.line}"),
                            f"<code>{_e(f.excerpt)}</code>",
                        ]
                        for f in report.findings
                    ),
                    wide=True,
                )
            )
        if report.set_aside:
            parts.append(
                '<p class="muted">Set aside (docs/SECRETS.md): '
                + _e(", ".join(f"{k}: {v}" for k, v in sorted(report.set_aside.items())))
                + "</p>"
            )
    parts.append("</section>")
    return "".join(parts)


def _history(number: int, report: HistoryReport) -> str:
    rows = []
    for row in report.rows:
        entry = row.entry
        created = (entry.created or "")[:19].replace("T", " ") if entry else ""
        text = row.step.line or (row.step.notes[0] if row.step.notes else "")
        base = ' <span class="muted">(base)</span>' if row.base else ""
        rows.append(
            [
                "" if row.index is None else str(row.index),
                "empty" if row.layer is None else str(row.layer),
                f'<span class="nowrap">{_e(created)}</span>',
                _e(human_size(row.size)) if row.layer is not None else "",
                f'<code class="wrap">{_e(short_created_by(text))}</code>{base}',
                _e(row.step.builder),
            ]
        )
    base = report.base_name or "not recorded"
    parts = [
        f'<section id="history-{number}"><h3>History</h3>',
        _table(
            ("#", "layer", "created", "size", "instruction", "builder"),
            rows,
            numeric=(3,),
            wide=True,
        ),
        f'<p class="muted">Base image: {_e(base)}; '
        f"{'recorded' if report.base_certain else 'guessed'} base: "
        f"{plural(report.base_entries, 'history entry', 'history entries')}, "
        f"{plural(report.base_layers, 'layer')} ({_e(report.base_source)}).</p>",
    ]
    for warning in report.warnings:
        parts.append(f'<p class="error">warning: {_e(warning)}</p>')
    parts.append(
        f'<h3>Reconstructed Dockerfile</h3><pre id="dockerfile-{number}">'
        f"{_text_block(report.dockerfile)}</pre></section>"
    )
    return "".join(parts)


_FINDING_TITLES = {
    "setuid": "setuid files",
    "setgid": "setgid files",
    "world-writable": "world-writable entries",
    "device": "device nodes",
    "fifo": "FIFOs",
    "late-executable": "executables added above the base layers",
}


def _finding_rows(found: Sequence[TypeFinding]) -> list[list[str]]:
    rows = []
    for f in found[:FINDINGS_LIMIT]:
        rows.append(
            [
                str(f.layer),
                f"<code>{f.mode:04o}</code>",
                _e(f"{f.uid}:{f.gid}"),
                f'<code class="wrap">{_e(f.path)}</code>',
                _e(finding_detail(f)),
            ]
        )
    return rows


def _removed_rows(removed: Sequence[RemovedEntry]) -> list[list[str]]:
    return [
        [
            str(r.layer),
            str(r.by_layer),
            _e(r.type.value),
            _e(human_size(r.size)),
            f'<code class="wrap">{_e(r.path)}</code>',
        ]
        for r in removed[:REMOVED_LIMIT]
    ]


def _findings(number: int, analysis: ImageAnalysis) -> str:
    parts = [f'<section id="findings-{number}"><h3>Findings</h3>']
    parts.append(_error(analysis, "types"))
    if analysis.types is not None:
        kinds: dict[str, list[TypeFinding]] = {}
        for finding in analysis.types.findings:
            kinds.setdefault(str(finding.kind), []).append(finding)
        if not kinds:
            parts.append('<p class="added">No setuid, setgid, world-writable or device entry.</p>')
        for kind, found in kinds.items():
            title = _FINDING_TITLES.get(kind, kind)
            parts.append(f"<h4>{_e(title)}: {len(found)}</h4>")
            parts.append(
                _table(
                    ("layer", "mode", "owner", "path", "detail"), _finding_rows(found), numeric=(0,)
                )
            )
            parts.append(_more(min(len(found), FINDINGS_LIMIT), len(found), "entries"))
    parts.append(_error(analysis, "layers"))
    if analysis.rows is not None:
        deleted = [r for r in analysis.removed if r.fate == "deleted"]
        replaced = [r for r in analysis.removed if r.fate == "replaced"]
        deleted_bytes = sum(r.size for r in deleted)
        parts.append(
            f"<h4>Files deleted in later layers: {len(deleted)} "
            f"({_e(human_size(deleted_bytes))} still stored)</h4>"
        )
        if deleted:
            parts.append(
                _table(
                    ("stored in layer", "deleted in layer", "type", "size", "path"),
                    _removed_rows(deleted),
                    numeric=(0, 1, 3),
                )
            )
            parts.append(_more(min(len(deleted), REMOVED_LIMIT), len(deleted), "files"))
            parts.append(
                '<p class="muted">Each is still in the image; recover it with '
                "<code>dockscope cat --at N IMAGE PATH</code>.</p>"
            )
        parts.append(
            f'<p class="muted">Files overwritten by later layers: {len(replaced)} '
            f"({_e(human_size(sum(r.size for r in replaced)))} of older versions stored).</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _image_section(number: int, analysis: ImageAnalysis, source: SourceReport) -> str:
    return "".join(
        [
            f'<section class="image" id="image-{number}">',
            f"<h2>{number}. {_e(_title(analysis.image))}</h2>",
            _summary(number, analysis, source),
            _layers(number, analysis),
            _efficiency(number, analysis),
            _types(number, analysis),
            _packages(number, analysis),
            _secrets(number, analysis),
            _history(number, analysis.history),
            _findings(number, analysis),
            "</section>",
        ]
    )


def _title(image: Image) -> str:
    platform = f" ({image.platform})" if image.platform else ""
    return f"{image.display_name}{platform}"


# -- container ----------------------------------------------------------------------------------
_KINDS = {"A": ("added", "added"), "C": ("modified", "changed"), "D": ("deleted", "deleted")}


def _container(diff: ContainerReport) -> str:
    counts = {kind: sum(1 for c in diff.changes if c.kind == kind) for kind in _KINDS}
    rows = []
    for change in diff.changes[:CONTAINER_LIMIT]:
        css, word = _KINDS.get(change.kind, ("", change.kind))
        rows.append(
            [
                f'<span class="{css}">{_e(change.kind)}</span>',
                f'<code class="wrap">{_e(change.path)}</code>',
                _e(change.type or ""),
                _e(human_size(change.size)) if change.size is not None else "",
                f"<code>{change.mode:04o}</code>" if change.mode is not None else "",
                _e(word),
            ]
        )
    summary = ", ".join(f"{counts[k]} {_KINDS[k][1]}" for k in _KINDS)
    return "".join(
        [
            '<section id="container"><h2>Container writable layer</h2>',
            '<dl class="summary">',
            f"<dt>Container</dt><dd>{_e(diff.name)} <code>{_e(diff.id[:12])}</code></dd>",
            f"<dt>Status</dt><dd>{_e(diff.status)}</dd>",
            f"<dt>Image</dt><dd>{_e(diff.image_source)} {_digest(diff.image_id)}</dd>",
            "</dl>",
            f"<p>What the container changed, as <code>docker diff</code> shows it: "
            f"{_e(summary)}.</p>",
            _table(("", "path", "type", "size", "mode", "change"), rows, numeric=(3,)),
            _more(len(rows), len(diff.changes), "changes"),
            "</section>",
        ]
    )


# -- the page -----------------------------------------------------------------------------------
def report_html(report: Report, *, dot: str, svg: bytes | None) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    numbered: list[tuple[int, ImageAnalysis, SourceReport]] = []
    for source in report.sources:
        for analysis in source.images:
            numbered.append((len(numbered) + 1, analysis, source))
    names = ", ".join(_title(a.image) for _, a, _ in numbered) or "no image"
    toc = ['<li><a href="#verify">Verification</a></li>', '<li><a href="#graph">Graph</a></li>']
    toc += [f'<li><a href="#image-{n}">{_e(_title(a.image))}</a></li>' for n, a, _ in numbered]
    if report.container is not None:
        toc.append('<li><a href="#container">Container writable layer</a></li>')
    verdict = _badge(report.ok, "all checks passed" if report.ok else "problems found")
    body = [
        "<header><h1>dockscope report</h1>",
        f"<p>{_e(names)}</p></header>",
        "<main>",
        f"<nav><p>{verdict}</p><ul>{''.join(toc)}</ul></nav>",
        '<section id="verify"><h2>Verification</h2>',
        "".join(_verify_block(source) for source in report.sources),
        "</section>",
        _graph_section(dot, svg),
        "".join(_image_section(n, a, s) for n, a, s in numbered),
        _container(report.container) if report.container is not None else "",
        f'<p class="muted">Written by dockscope {_e(__version__)}. This page loads nothing: '
        "no script, no font, no image from anywhere.</p>",
        "</main>",
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>dockscope report: {_e(names)}</title>"
        f"<style>{CSS}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
