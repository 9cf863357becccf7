"""``dockscope unpack`` and ``dockscope export``: the merged root filesystem, written safely."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspect_tool.cli._common import (
    IMAGE_ARGUMENT,
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    TAR_OUTPUT_OPTION,
    ByteProgress,
    handle_errors,
    output_stream,
    stderr_console,
    stdout_console,
    tar_to_stdout,
    write_json,
)
from inspect_tool.errors import ExitCode

if TYPE_CHECKING:
    from inspect_tool.layers.export import ExportResult
    from inspect_tool.model.image import Image
    from inspect_tool.sources import Source

DEST_ARGUMENT = typer.Argument(
    ...,
    metavar="DEST",
    help="Directory to write the root filesystem into: created when missing, and it must be "
    "empty unless --force.",
    show_default=False,
)


def unpack(
    path: Path = IMAGE_ARGUMENT,
    destination: Path = DEST_ARGUMENT,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    no_same_owner: bool = typer.Option(
        False,
        "--no-same-owner",
        help="Files belong to the current user (always the case when not running as root).",
    ),
    devices: bool = typer.Option(
        False,
        "--devices",
        help="Create device nodes (as root only; otherwise they are skipped and reported).",
    ),
    no_xattrs: bool = typer.Option(
        False, "--no-xattrs", help="Do not set extended attributes (each one is reported)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Apply the layers on top of what a non-empty DEST holds."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the image's merged root filesystem into DEST (what umoci puts in rootfs/).

    Layers are applied in order with their whiteouts; symlinks are kept exactly as written
    (absolute ones too) and resolve as if DEST were /, so nothing is ever created, changed
    or deleted outside DEST. Hard links stay links, modes and mtimes are kept, owners too
    when running as root. Each layer's diff_id is verified as it is read: with two layers or
    more (and two CPUs, an empty DEST), every layer is read and verified before anything is
    written, then read again by two processes that write only the files no layer above
    replaces or deletes (two progress bars). Entries that cannot be written safely are
    refused and listed (--json: the audit); the exit status is then 1.

    Examples:

      dockscope unpack busybox.tar rootfs

      sudo dockscope unpack --devices oci-dir/ /srv/rootfs

      dockscope unpack --json image.tar rootfs | jq '.audit[]'
    """
    from inspect_tool.layers.unpack import UnpackOptions
    from inspect_tool.layers.unpack import unpack as run_unpack

    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        options = UnpackOptions(
            same_owner=False if no_same_owner else None,
            devices=devices,
            xattrs=not no_xattrs,
            force=force,
        )
        with source, ByteProgress("unpacking") as progress:
            result = run_unpack(
                source,
                selected,
                destination,
                options=options,
                progress=progress.advance,
                on_pass=progress.start,
            )
        from inspect_tool.render import extract as render

        if json_output:
            write_json(render.unpack_document(selected, result))
        else:
            render.render_unpack(stdout_console(), selected, result)
        if not result.ok:
            raise typer.Exit(int(ExitCode.PROBLEMS))


def export(
    path: Path = IMAGE_ARGUMENT,
    output: str = TAR_OUTPUT_OPTION,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the image's merged root filesystem as one tar (what crane export writes).

    Whiteouts are applied and the layers flattened without extracting anything: a first read
    of the layers builds the merged tree, a second streams the surviving files' content.
    Entries are written depth-first (a directory, then everything below it), so tar -xp
    restores every mtime; hard links are kept. The same image always gives the same bytes.
    Entries unpack would refuse are left out and listed (--json: the audit); the exit status
    is then 1. With -o -, messages go to stderr and --json is not available.

    Examples:

      dockscope export image.tar -o rootfs.tar

      dockscope export --platform linux/arm64 oci-dir/ -o - | tar -tvf -

      dockscope export --json image.tar -o rootfs.tar | jq '.summary'
    """
    from inspect_tool.layers.export import export as run_export

    with handle_errors():
        to_stdout = tar_to_stdout(output, json_output=json_output)
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, ByteProgress("exporting") as progress:
            if to_stdout:
                result = run_export(
                    source,
                    selected,
                    sys.stdout.buffer,
                    output_name="-",
                    progress=progress.advance,
                    on_pass=progress.start,
                )
            else:
                result = _export_to_file(source, selected, Path(output), progress)
        from inspect_tool.render import extract as render

        if json_output:
            write_json(render.export_document(selected, result))
        else:
            console = stderr_console() if to_stdout else stdout_console()
            render.render_export(console, selected, result)
        if not result.ok:
            raise typer.Exit(int(ExitCode.PROBLEMS))


def _export_to_file(
    source: Source, image: Image, output: Path, progress: ByteProgress
) -> ExportResult:
    """Write the tar to ``output`` (a file appears only once complete; a device such as
    /dev/null is written in place, never replaced)."""
    from inspect_tool.layers.export import export as run_export

    with output_stream(output) as out:
        return run_export(
            source,
            image,
            out,
            output_name=str(output),
            progress=progress.advance,
            on_pass=progress.start,
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def register(app: typer.Typer) -> None:
    app.command()(unpack)
    app.command()(export)
