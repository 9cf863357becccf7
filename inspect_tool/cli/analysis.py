"""``dockscope efficiency``, ``types`` and ``history``: what an image's layers cost and hold."""

from __future__ import annotations

from pathlib import Path

import typer

from inspect_tool.cli._common import (
    IMAGE_ARGUMENT,
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    ByteProgress,
    handle_errors,
    open_one_image,
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
    top: int = typer.Option(
        20, "--top", metavar="N", help="List the N worst paths (0: all). JSON lists all."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
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
        source, selected = open_one_image(path, image, ref, platform)
        with source, ByteProgress("reading layers") as progress:
            progress.start(sum(layer.size or 0 for layer in selected.layers))
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

            render_efficiency(stdout_console(), selected, report, gates, top=top)
        if not all(g.ok for g in gates):
            raise typer.Exit(int(ExitCode.PROBLEMS))


def register(app: typer.Typer) -> None:
    app.command()(efficiency)
