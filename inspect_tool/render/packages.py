"""``packages``' output: the JSON document (docs/JSON.md) and the tables for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from inspect_tool.analyze.packages.compare import PackageDifference
from inspect_tool.analyze.packages.scan import LayerPackage, PackagesReport
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size, titled_table
from inspect_tool.render.json import SCHEMA_VERSION, document_head
from inspect_tool.render.text import markup, plural, visible


def _package_json(item: LayerPackage, *, files: bool) -> dict[str, Any]:
    package = item.package
    document: dict[str, Any] = {
        "ecosystem": package.ecosystem.value,
        "name": package.name,
        "version": package.version,
        "arch": package.arch or None,
        "source": package.source or None,
        "license": package.license or None,
        "installed_size": package.installed_size,
        "location": package.location,
        "database": package.database,
        "layer": item.layer,
        "events": [
            {
                "layer": e.layer,
                "action": e.action.value,
                "version": e.version,
                "previous": e.previous,
            }
            for e in item.events
        ],
        "altered_files": [
            {"path": a.path, "change": a.change, "layer": a.layer} for a in item.altered
        ],
    }
    document["file_count"] = len(package.files)
    if files:
        document["files"] = list(package.files)
    return document


def packages_document(
    image: Image, report: PackagesReport, *, files: bool = False
) -> dict[str, Any]:
    return {
        **document_head("packages", image),
        "layer": report.upto,
        "os": None
        if report.os is None
        else {
            "id": report.os.id,
            "version_id": report.os.version_id,
            "pretty_name": report.os.pretty_name,
            "path": report.os.path,
            "layer": report.os.layer,
        },
        "packages": [_package_json(p, files=files) for p in report.packages],
        "removed": [_package_json(p, files=files) for p in report.removed],
        "databases": [
            {"path": d.path, "kind": d.kind, "layer": d.layer, "packages": d.packages}
            for d in report.databases
        ],
        "problems": [
            {"layer": p.layer, "path": p.path, "message": p.message} for p in report.problems
        ],
    }


def _history(item: LayerPackage) -> str:
    steps = []
    for event in item.events:
        if event.previous is not None:
            steps.append(f"{event.layer}: {event.action.value} from {event.previous}")
        else:
            steps.append(f"{event.layer}: {event.action.value}")
    return "; ".join(steps)


def render_packages(
    console: Console,
    image: Image,
    report: PackagesReport,
    *,
    show_files: bool = False,
    limit: int = 20,
    only_layer: bool = False,
) -> None:
    """The packages after ``report.upto``; with ``only_layer``, the report holds what that
    layer alone changed (``changed_in``), and the title says so."""
    from inspect_tool.render.analysis import _title

    count = len(report.packages)
    counted = plural(count, "package")
    if only_layer:
        title = f"{_title(image)}: layer {report.upto} installed or upgraded {counted}"
    else:
        title = f"{_title(image)}: {counted} after layer {report.upto}"
    if not report.packages and not report.removed and not report.problems:
        console.print(title, highlight=False)  # no empty table under it
        if only_layer and report.databases:
            said = f"Layer {report.upto} installed, upgraded or removed no packages."
            console.print(Text(said, style="yellow"))
        else:
            console.print(Text("No package database found.", style="yellow"))
        return
    table = titled_table(title)
    table.add_column("layer", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("version", overflow="fold")
    table.add_column("arch", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("history", overflow="fold")
    for item in sorted(report.packages, key=lambda p: (p.layer, p.package.key)):
        package = item.package
        history = _history(item) if len(item.events) > 1 else ""
        if item.altered:
            history = (history + "; " if history else "") + (
                f"{plural(len(item.altered), 'owned file')} changed later"
            )
        table.add_row(
            str(item.layer),
            package.ecosystem.value,
            markup(package.name),
            markup(package.version),
            markup(package.arch),
            human_size(package.installed_size),
            markup(history),
        )
    console.print(table)
    if report.removed:
        removed = titled_table(f"Removed by a later layer: {len(report.removed)}")
        removed.add_column("type", no_wrap=True)
        removed.add_column("name", overflow="fold")
        removed.add_column("version", overflow="fold")
        removed.add_column("history", overflow="fold")
        for item in report.removed:
            removed.add_row(
                item.package.ecosystem.value,
                markup(item.package.name),
                markup(item.package.version),
                markup(_history(item)),
            )
        console.print(removed)
    altered = [(item, a) for item in report.packages for a in item.altered]
    if altered:
        files = titled_table(f"Files owned by a package, changed by a later layer: {len(altered)}")
        files.add_column("layer", justify="right", no_wrap=True)
        files.add_column("change", no_wrap=True)
        files.add_column("path", overflow="fold")
        files.add_column("package", overflow="fold")
        shown = altered if limit == 0 else altered[:limit]
        for item, a in shown:
            files.add_row(
                "?" if a.layer is None else str(a.layer),
                a.change,
                markup(a.path),
                markup(f"{item.package.name} (layer {item.layer})"),
            )
        console.print(files)
        if len(shown) < len(altered):
            console.print(
                Text(f"… {len(altered) - len(shown)} more (--limit 0 lists all).", style="dim")
            )
    if show_files:
        for item in report.packages:
            if item.package.files:
                console.print(Text(f"{item.package.name}:", style="bold"))
                for path in item.package.files:
                    console.print(f"  {markup(path)}")
    for problem in report.problems:
        console.print(
            Text(f"layer {problem.layer}: ", style="yellow")
            + Text(visible(f"{problem.path}: {problem.message}"))
        )
    if not report.packages and not report.problems:
        console.print(Text("No package database found.", style="yellow"))


def package_diff_document(
    a: Image, b: Image, differences: list[PackageDifference]
) -> dict[str, Any]:
    def side(item: LayerPackage | None) -> dict[str, Any] | None:
        if item is None:
            return None
        return {"version": item.package.version, "layer": item.layer}

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "package-diff",
        "a": {"source": a.source, "image_id": str(a.image_id)},
        "b": {"source": b.source, "image_id": str(b.image_id)},
        "equal": not differences,
        "packages": [
            {
                "change": d.change.value,
                "ecosystem": d.package.package.ecosystem.value,
                "name": d.package.package.name,
                "arch": d.package.package.arch or None,
                "location": d.package.package.location,
                "a": side(d.a),
                "b": side(d.b),
            }
            for d in differences
        ],
    }


_MARKS = {"added": "+", "removed": "-", "upgraded": "↑", "downgraded": "↓", "changed": "~"}


def render_package_diff(
    console: Console, a: Image, b: Image, differences: list[PackageDifference]
) -> None:
    from inspect_tool.render.analysis import _title

    if not differences:
        console.print(Text("The images hold the same packages.", style="green"))
        return
    table = titled_table(
        f"Packages: {_title(a)} → {_title(b)}: {plural(len(differences), 'difference')}"
    )
    table.add_column("", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")
    table.add_column("B layer", justify="right", no_wrap=True)
    for d in differences:
        package = d.package.package
        table.add_row(
            _MARKS[d.change.value],
            package.ecosystem.value,
            markup(package.name),
            markup(d.a.package.version) if d.a else "",
            markup(d.b.package.version) if d.b else "",
            str(d.b.layer) if d.b else "",
        )
    console.print(table)
