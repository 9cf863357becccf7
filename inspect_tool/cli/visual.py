"""``dockscope graph``, ``tree`` and ``report``: images drawn, as a graph, a tree, a page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from inspect_tool.cli._common import (
    IMAGE_ARGUMENT,
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    ByteProgress,
    handle_errors,
    image_location,
    layer_progress,
    output_stream,
    stdout_console,
    write_json,
)
from inspect_tool.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from inspect_tool.analyze.report import ContainerReport
    from inspect_tool.sources import Candidate, ImageSelection, Source

IMAGES_ARGUMENT = typer.Argument(
    ...,
    metavar="IMAGE...",
    help="Image archives (.tar, .tar.gz, .tar.zst), layout directories or locations "
    "(oci:DIR[:REF], containers-storage:NAME, …).",
    show_default=False,
    parser=image_location,
)


def _output_option(what: str) -> Any:
    return typer.Option(
        ...,
        "--output",
        "-o",
        metavar="FILE|-",
        help=f"Where to write {what}; - for stdout. Replaced only once complete.",
        show_default=False,
    )


def _open_all(paths: list[Path], selection: ImageSelection) -> list[tuple[Source, list[Candidate]]]:
    """Every source opened with the selection applied (all its images when none is given)."""
    from inspect_tool.sources import open_candidates

    opened: list[tuple[Source, list[Candidate]]] = []
    try:
        for path in paths:
            opened.append(open_candidates(path, selection))
    except BaseException:
        for source, _ in opened:
            source.close()
        raise
    return opened


def _write(output: str, data: bytes) -> None:
    """Write to stdout, or to a file replaced atomically (never half a file)."""
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with output_stream(Path(output)) as out:
            out.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def graph(
    paths: list[Path] = IMAGES_ARGUMENT,
    output: str = _output_option("the graph (format from the suffix: .svg .png .pdf .dot)"),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
) -> None:
    """Draw images as one graph: index → manifests per platform → config and layers.

    Layers form a chain from each image's top layer down to its base. Layers with the same
    chain ID (same content on the same layers) are one node, so several images (several
    arguments, or several images in one archive or index) fork where they differ. Layer
    fill darkens with blob size; edge labels are the history steps that made no layer.
    The format comes from the suffix: .svg, .png and .pdf are drawn by Graphviz's dot
    program; .dot (or -o -) writes the DOT text itself, which needs no Graphviz. Reads
    only metadata, no layer.

    Examples:

      dockscope graph image.tar -o layers.svg

      dockscope graph old.tar new.tar -o both.png

      dockscope graph --platform linux/arm64 oci-dir/ -o arm64.pdf

      dockscope graph multi.tar -o - | dot -Tsvg > graph.svg
    """
    from inspect_tool.render.dot import FORMATS, graph_images, render, to_dot

    with handle_errors():
        fmt = "dot" if output == "-" else Path(output).suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(
                f"-o {output}: cannot tell the format; end the name with "
                + ", ".join(f".{f}" for f in FORMATS)
            )
        from inspect_tool.sources import ImageSelection

        opened = _open_all(paths, ImageSelection(image, ref, platform))
        try:
            items = graph_images(opened)
        finally:
            for source, _ in opened:
                source.close()
        text = to_dot(items)
        _write(output, render(text, fmt))
        if output != "-":
            from inspect_tool.render.text import plural, visible

            sys.stderr.write(
                f"dockscope: wrote {visible(output)} ({plural(len(items), 'image')})\n"
            )
        if any(item.image is None for item in items):
            raise typer.Exit(int(ExitCode.PROBLEMS))


def tree(
    path: Path = IMAGE_ARGUMENT,
    depth: int | None = typer.Option(
        None,
        "--depth",
        "-d",
        metavar="N",
        help="Show paths down to N components below / (deeper changes are counted).",
    ),
    layer: int | None = typer.Option(
        None, "--layer", "-L", metavar="N", help="Only layer N (0 is the bottom)."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Each layer, and under it the files it changed as a tree: + added, ~ modified, - deleted.

    Changes are against the layers below (whiteouts and opaque directories applied as an
    overlay does). --depth N cuts each layer's tree N levels below / and counts what lies
    deeper on the directory where it is cut.

    Examples:

      dockscope tree image.tar

      dockscope tree --depth 2 image.tar

      dockscope tree --layer 3 --json image.tar | jq '.layers[0].changes'
    """
    from inspect_tool.analyze.filesystem import changes_by_layer, check_layer

    with handle_errors():
        if depth is not None and depth < 0:
            raise UsageError(f"--depth {depth}: must be 0 or more")
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source:
            upto = None if layer is None else check_layer(selected, layer, label=source.label)
            shown = selected.layers if upto is None else selected.layers[: upto + 1]
            with layer_progress("reading layers", shown) as progress:
                changes = changes_by_layer(source, selected, upto=upto, progress=progress.advance)
        if layer is not None:
            changes = changes[layer:]
        from inspect_tool.render import tree as render

        if json_output:
            write_json(render.tree_document(selected, changes, depth=depth))
        else:
            render.render_tree(stdout_console(), selected, changes, depth=depth)


def _container_diff(name: str, root: str | None) -> ContainerReport:
    """A runtime container's writable layer, as ``dockscope container diff`` reads it."""
    from inspect_tool.analyze.report import ContainerChange, ContainerReport
    from runtime_lab.storage.driver import container_diff
    from runtime_lab.storage.store import Store

    store = Store(root)
    cid = store.resolve(name)
    config = store.load_config(cid)
    state = store.load_state(cid)
    found = container_diff(store, config, state).entries
    return ContainerReport(
        config.name,
        cid,
        config.image_source,
        config.image_id,
        state.status,
        tuple(ContainerChange(c.kind.value, c.path, c.type, c.size, c.mode) for c in found),
    )


def report(
    paths: list[Path] = IMAGES_ARGUMENT,
    output: str = _output_option("the HTML report"),
    container: str | None = typer.Option(
        None,
        "--container",
        metavar="NAME",
        help="Add this runtime container's writable layer (what it changed) to the report.",
    ),
    root: str | None = typer.Option(
        None,
        "--root",
        metavar="DIR",
        envvar="DOCKSCOPE_ROOT",
        help="The runtime's state directory for --container (default /var/lib/dockscope).",
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
) -> None:
    """Write one self-contained HTML page about images (and a container): open it anywhere.

    The page holds: verification of every blob, the layer graph, and per image a summary,
    the layers with size bars, efficiency and the worst paths, file types, the history with
    a reconstructed Dockerfile, and findings (setuid, setgid, world-writable, devices,
    executables added above the base, files deleted in later layers). Everything is inline
    (CSS, the graph as SVG); there is no script and nothing is loaded from anywhere.
    Exit status 1 when a verify check fails or an analysis could not complete (the report
    is written all the same and says why).

    Examples:

      dockscope report image.tar -o report.html

      dockscope report old.tar new.tar -o compare.html

      dockscope report image.tar --container web -o web.html
    """
    from inspect_tool.analyze.report import build_report, work_bytes
    from inspect_tool.render.dot import RenderError, graph_images, render, to_dot
    from inspect_tool.render.html import report_html

    with handle_errors():
        diff = _container_diff(container, root) if container is not None else None
        from inspect_tool.sources import ImageSelection

        opened = _open_all(paths, ImageSelection(image, ref, platform))
        try:
            with ByteProgress("analysing") as progress:
                progress.start(work_bytes(opened))
                result = build_report(opened, container=diff, progress=progress.advance)
            dot = to_dot(graph_images(opened))
        finally:
            for source, _ in opened:
                source.close()
        try:
            svg: bytes | None = render(dot, "svg")
        except RenderError:
            svg = None  # the page shows the DOT text instead
        _write(output, report_html(result, dot=dot, svg=svg).encode("utf-8"))
        if output != "-":
            from inspect_tool.render.text import visible

            sys.stderr.write(f"dockscope: wrote {visible(output)}\n")
        if not result.ok:
            raise typer.Exit(int(ExitCode.PROBLEMS))


def register(app: typer.Typer) -> None:
    for command in (graph, tree, report):
        app.command()(command)
