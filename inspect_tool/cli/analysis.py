"""``dockscope efficiency``, ``types`` and ``history``: what an image's layers cost and hold."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from inspect_tool.cli._common import (
    IMAGE_ARGUMENT,
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    handle_errors,
    layer_progress,
    limit_option,
    stdout_console,
    write_json,
)
from inspect_tool.errors import ExitCode, UsageError


def efficiency(
    path: Path = IMAGE_ARGUMENT,
    lowest_efficiency: float | None = typer.Option(
        None,
        "--lowest-efficiency",
        metavar="RATIO",
        help="CI gate: fail (exit 1) when the efficiency is below RATIO (0 to 1), like dive's "
        "rules.lowestEfficiency.",
    ),
    highest_wasted_bytes: str | None = typer.Option(
        None,
        "--highest-wasted-bytes",
        metavar="SIZE",
        help="CI gate: fail (exit 1) when more than SIZE bytes are wasted (1000, 50kB, 2MiB), "
        "like dive's rules.highestWastedBytes.",
    ),
    highest_user_wasted_percent: float | None = typer.Option(
        None,
        "--highest-user-wasted-percent",
        metavar="RATIO",
        help="CI gate: fail (exit 1) when wasted bytes / bytes above layer 0 exceeds RATIO "
        "(0.1 = 10 %), like dive's rules.highestUserWastedPercent.",
    ),
    limit: int = limit_option("List the N worst paths (0: all). JSON lists all."),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
    old_top: int | None = typer.Option(None, "--top", min=0, hidden=True),
) -> None:
    """Wasted bytes and the efficiency score, exactly as dive computes them.

    Every occurrence of a path in a layer counts its bytes, and a whiteout counts the bytes
    it removes; efficiency = sum over paths of the smallest size seen / sum of all sizes seen.
    Wasted bytes add up every occurrence of each path found in more than one layer.

    With any of the gate options, the exit status is 1 when a gate fails.

    Examples:

      dockscope efficiency image.tar

      dockscope efficiency --lowest-efficiency 0.95 --highest-wasted-bytes 20MB image.tar

      dockscope efficiency --json image.tar | jq '.efficiency, .wasted_bytes'
    """
    from inspect_tool.analyze.efficiency import efficiency as run_efficiency
    from inspect_tool.analyze.efficiency import evaluate_gates, parse_bytes

    with handle_errors():
        if old_top is not None:  # its name in 0.1, where types said --limit for the same
            sys.stderr.write(
                "dockscope: efficiency --top N is now --limit N; the old name goes in the next "
                "release\n"
            )
            limit = old_top
        wasted_limit: int | None = None
        if highest_wasted_bytes is not None:
            try:
                wasted_limit = parse_bytes(highest_wasted_bytes)
            except ValueError as exc:
                raise UsageError(f"--highest-wasted-bytes: {exc}") from None
        for name, ratio in (
            ("--lowest-efficiency", lowest_efficiency),
            ("--highest-user-wasted-percent", highest_user_wasted_percent),
        ):
            if ratio is not None and not 0 <= ratio <= 1:  # dive: misconfigured outside 0-1
                raise UsageError(f"{name}: expected a ratio from 0 to 1, not {ratio}")
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, layer_progress("reading layers", selected.layers) as progress:
            report = run_efficiency(source, selected, progress=progress.advance)
        gates = evaluate_gates(
            report,
            lowest_efficiency=lowest_efficiency,
            highest_wasted_bytes=wasted_limit,
            highest_user_wasted_percent=highest_user_wasted_percent,
        )
        if json_output:
            from inspect_tool.render.analysis_json import efficiency_document

            write_json(efficiency_document(selected, report, gates))
        else:
            from inspect_tool.render.analysis import render_efficiency

            render_efficiency(stdout_console(), selected, report, gates, limit=limit)
        if not all(g.ok for g in gates):
            raise typer.Exit(int(ExitCode.PROBLEMS))


def types(
    path: Path = IMAGE_ARGUMENT,
    layer: int | None = typer.Option(
        None, "--layer", "-L", metavar="N", help="Classify only layer N (0 is the bottom)."
    ),
    base_layers: int | None = typer.Option(
        None,
        "--base-layers",
        metavar="N",
        help="Treat the bottom N layers as the base image for late-executable findings "
        "(default: guessed from the history, at least layer 0).",
    ),
    limit: int = limit_option("Show at most N findings of each kind (0: all)."),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """File types per layer by count and bytes, and entries worth a forensic look.

    Each regular file's first 2 KiB are classified (ELF executables, shared libraries,
    scripts, text, archives, bytecode, media, …) as the layer streams past; nothing is
    extracted. Findings: setuid and setgid files, world-writable files and directories,
    device nodes, and executables added or replaced above the base layers.

    Examples:

      dockscope types image.tar

      dockscope types --layer 3 image.tar

      dockscope types --json image.tar | jq '.findings[] | select(.kind == "setuid")'
    """
    from inspect_tool.analyze.filetypes import analyze_types

    with handle_errors():
        if base_layers is not None and base_layers < 0:
            raise UsageError(f"--base-layers {base_layers}: must be 0 or more")
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, layer_progress("classifying files", selected.layers) as progress:
            report = analyze_types(
                source, selected, layer=layer, base_layers=base_layers, progress=progress.advance
            )
        if json_output:
            from inspect_tool.render.analysis_json import types_document

            write_json(types_document(selected, report))
        else:
            from inspect_tool.render.analysis import render_types

            render_types(stdout_console(), selected, report, limit=limit)


def history(
    path: Path = IMAGE_ARGUMENT,
    dockerfile: bool = typer.Option(
        False,
        "--dockerfile",
        help="Write the Dockerfile reconstructed from the history instead of the table.",
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """The build history with empty steps aligned between layers, as Dockerfile lines.

    Understands what docker's classic builder, BuildKit, buildah and kaniko write in
    created_by. --dockerfile writes a Dockerfile reconstructed from it: FROM is the base
    image when the image records it, else FROM scratch with the base image's own steps
    (guessed) marked. Reads only metadata, no layer. Names and instructions from the image
    are shown with control and bidi characters escaped (\x1b, \u202e; a backslash as \\);
    --dockerfile written to a file or a pipe is exact, on a terminal each line is escaped.

    Examples:

      dockscope history image.tar

      dockscope history --dockerfile image.tar > Dockerfile.guess

      dockscope history --json image.tar | jq -r '.entries[].instruction'
    """
    from inspect_tool.analyze.history import history as run_history

    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source:
            report = run_history(selected)
        if json_output:
            from inspect_tool.render.analysis_json import history_document

            write_json(history_document(selected, report))
        elif dockerfile:
            import sys

            from inspect_tool.render.text import visible_lines

            # a file or a pipe gets the exact text; a person, each line escaped
            text = report.dockerfile
            sys.stdout.write(visible_lines(text) if sys.stdout.isatty() else text)
        else:
            from inspect_tool.render.analysis import render_history

            render_history(stdout_console(), selected, report)


def register(app: typer.Typer) -> None:
    app.command()(efficiency)
    app.command()(types)
    app.command()(history)
