"""``dockscope inspect`` and ``dockscope verify``."""

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
    stdout_console,
    write_json,
)
from inspect_tool.errors import (
    BlobNotFoundError,
    ExitCode,
    InvalidImageError,
    SelectionError,
)


def inspect(
    path: Path = IMAGE_ARGUMENT,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    explain_ids: bool = typer.Option(
        False,
        "--explain-ids",
        help="Show, step by step with this image's values, how its image ID, diff_ids, "
        "chain IDs and manifest digest are computed from bytes (reads every layer).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show an image's tags, IDs, platform, config, history and layers.

    When the archive or index holds several images and no --image, --ref or --platform
    narrows the choice, every image is listed.

    Examples:

      dockscope inspect busybox.tar

      dockscope inspect --platform linux/arm64 oci-dir/

      dockscope inspect --json --image 2 multi.tar

      dockscope inspect --explain-ids image.tar
    """
    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_candidates

        source, chosen = open_candidates(path, ImageSelection(image, ref, platform))
        try:
            if len(chosen) != 1:
                if explain_ids:
                    raise SelectionError(
                        f"holds {len(chosen)} images; choose one with --image, --ref or "
                        "--platform (run inspect without --explain-ids to list them)",
                        subject=source.label,
                    )
                if json_output:
                    from inspect_tool.render.json import listing_document

                    write_json(listing_document(source, chosen))
                else:
                    from inspect_tool.render.console import render_listing

                    render_listing(stdout_console(), source, chosen)
                return
            selected = chosen[0].image()
            if explain_ids:
                from inspect_tool.analyze.explain import explain_ids as explain

                explanation = explain(source, selected)
                if json_output:
                    from inspect_tool.render.json import explain_document

                    write_json(explain_document(explanation))
                else:
                    from inspect_tool.render.console import render_explain

                    render_explain(stdout_console(), explanation)
                return
            if json_output:
                from inspect_tool.render.json import image_document

                write_json(image_document(selected, source=source))
            else:
                from inspect_tool.render.console import render_image

                render_image(stdout_console(), selected, source=source)
            missing = [lyr for lyr in selected.layers if lyr.blob and lyr.size is None]
            if missing:
                # Shown as far as it goes, but the input is incomplete: say so and exit 3.
                from inspect_tool.render.text import plural

                first = missing[0]
                raise BlobNotFoundError(
                    f"layer {first.index} blob {first.blob.path if first.blob else ''} is "
                    f"missing ({plural(len(missing), 'missing layer blob')} in all)",
                    subject=source.label,
                )
        finally:
            source.close()


def verify(
    path: Path = IMAGE_ARGUMENT,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List passed checks too."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Check every blob, digest, diff_id, chain ID and image ID; report all findings.

    Every blob is read to its end. Nothing stops at the first failure: all checks run and
    are reported. Without --image, --ref or --platform every image in the source is verified.
    Exit status 0 when every check passes, 1 when any fails.

    Examples:

      dockscope verify image.tar

      dockscope verify --json oci-dir/ | jq '.findings[] | select(.ok == false)'
    """
    from inspect_tool.analyze.verify import verify as run_verify

    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_candidates

        source, chosen = open_candidates(path, ImageSelection(image, ref, platform))
        try:
            with ByteProgress("verifying") as progress:
                report = run_verify(source, chosen, progress=progress)
        finally:
            source.close()
        if json_output:
            from inspect_tool.render.json import verify_document

            write_json(verify_document(report))
        else:
            from inspect_tool.render.console import render_verify

            render_verify(stdout_console(), report, verbose=verbose)
        unreadable = [f for f in report.failed if f.check == "image-readable"]
        if unreadable:
            raise InvalidImageError(
                unreadable[0].actual or "unreadable image", subject=unreadable[0].subject
            )
        if not report.ok:
            raise typer.Exit(int(ExitCode.PROBLEMS))


def register(app: typer.Typer) -> None:
    app.command()(inspect)
    app.command()(verify)
