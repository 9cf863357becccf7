"""``dockscope layers``, ``ls``, ``cat``, ``find`` and ``diff``: an image's files by layer."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspect_tool.cli._common import (
    IMAGE_ARGUMENT,
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    handle_errors,
    image_location,
    layer_progress,
    stdout_console,
    use_color,
    write_json,
)
from inspect_tool.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from inspect_tool.layers.union import FileInfo

AT_OPTION = typer.Option(
    None,
    "--at",
    metavar="N",
    help="The filesystem as it stands after layer N (0 is the bottom; default: the top).",
)
# --layer N means "only layer N's own changes" in every command (docs/CLI.md); in 0.1 ls and
# cat took it for --at, and still do, with a warning, for one release
OLD_LAYER_OPTION = typer.Option(None, "--layer", "-L", metavar="N", hidden=True)


def _at(at: int | None, old_layer: int | None, command: str) -> int | None:
    if old_layer is None:
        return at
    if at is not None:
        raise UsageError("give --at N only (--layer is its old name)")
    sys.stderr.write(
        f"dockscope: {command} --layer N is now --at N (the filesystem after layer N); "
        "the old name goes in the next release\n"
    )
    return old_layer


def layers(
    path: Path = IMAGE_ARGUMENT,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """One row per layer: files added, modified and deleted, and bytes it made invisible.

    "wasted" counts the bytes of lower-layer files a layer replaced or deleted: they are still
    stored (and pulled) but no container can see them.

    Examples:

      dockscope layers image.tar

      dockscope layers --json image.tar | jq '.layers[] | select(.wasted_bytes > 0)'
    """
    from inspect_tool.analyze.filesystem import layer_rows

    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, layer_progress("reading layers", selected.layers) as progress:
            rows = layer_rows(source, selected, progress=progress.advance)
        from inspect_tool.render import files as render

        if json_output:
            write_json(render.layers_document(selected, rows))
        else:
            render.render_layers(stdout_console(), selected, rows)


def ls(
    path: Path = IMAGE_ARGUMENT,
    target: str = typer.Argument("/", metavar="[PATH]", help="A path inside the image."),
    at: int | None = AT_OPTION,
    recursive: bool = typer.Option(False, "--recursive", "-R", help="List subdirectories too."),
    long: bool = typer.Option(False, "--long", "-l", help="Mode, owner, size and time."),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
    old_layer: int | None = OLD_LAYER_OPTION,
) -> None:
    """List the merged filesystem (after layer N with --at N), marking where each entry came
    from (Ln).

    Names are shown as ls -b would: control and bidi characters escaped (\\n, \\x1b,
    \\u202e), a backslash as \\\\ (docs/TERMINAL.md); --json gives them exactly.

    Examples:

      dockscope ls image.tar /etc

      dockscope ls -lR --at 2 image.tar /root
    """
    from inspect_tool.analyze.filesystem import resolve, view_at

    with handle_errors():
        layer = _at(at, old_layer, "ls")
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, layer_progress("reading layers", selected.layers) as progress:
            union = view_at(source, selected, layer, progress=progress.advance)
        info = resolve(union, target)
        from inspect_tool.layers.tarformat import EntryType

        entries: Iterable[FileInfo]
        if info.type is EntryType.DIR:
            entries = union.walk(info.path) if recursive else union.listdir(info.path) or []
            base = info.path.rstrip("/")
        else:
            entries, base = [info], ""
        from inspect_tool.render import files as render

        if json_output:
            shown = len(selected.layers) - 1 if layer is None else layer
            render.write_ls_json(sys.stdout, selected, shown, info.path, entries)
        else:
            render.write_ls(sys.stdout, entries, long=long, base=base, color=use_color())


def cat(
    path: Path = IMAGE_ARGUMENT,
    target: str = typer.Argument(..., metavar="PATH", help="A file inside the image."),
    at: int | None = AT_OPTION,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    old_layer: int | None = OLD_LAYER_OPTION,
) -> None:
    """Write a file's bytes to stdout, following symlinks inside the image root.

    With --at N, the file as it stood after layer N: this recovers files a later layer
    deleted or overwrote (dockscope find --deleted lists them; for a deleted file, the error
    names the layer that deleted it and the --at to use). The bytes are written as they
    are, escape sequences included: pipe an untrusted file through cat -v to look at it.

    Examples:

      dockscope cat image.tar /etc/os-release

      dockscope cat --at 3 image.tar /root/secret.txt > recovered.txt
    """
    from inspect_tool.analyze.filesystem import read_file

    with handle_errors():
        layer = _at(at, old_layer, "cat")
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source:
            read_file(source, selected, target, sys.stdout.buffer, layer=layer)
        sys.stdout.buffer.flush()


def find(
    path: Path = IMAGE_ARGUMENT,
    pattern: str = typer.Argument(
        ...,
        metavar="PATTERN",
        help="A shell pattern matched against names, or against whole paths when it has a /.",
    ),
    deleted: bool = typer.Option(
        False, "--deleted", help="Only entries a later layer deleted or overwrote."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Find entries across all layers, including those a later layer deleted or overwrote.

    Examples:

      dockscope find image.tar '*.pem'

      dockscope find --deleted image.tar '/root/*'
    """
    from inspect_tool.analyze.filesystem import find as run_find

    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, layer_progress("reading layers", selected.layers) as progress:
            found = run_find(
                source, selected, pattern, deleted_only=deleted, progress=progress.advance
            )
        from inspect_tool.render import files as render

        if json_output:
            write_json(render.find_document(selected, pattern, found))
        else:
            render.render_find(stdout_console(), found)


IMAGE_A = typer.Argument(
    ..., metavar="A", help="An image (archive, layout or location).", parser=image_location
)
IMAGE_B = typer.Argument(
    None, metavar="[B]", help="A second image; omit it with --layer.", parser=image_location
)


def diff(
    path_a: Path = IMAGE_A,
    path_b: Path | None = IMAGE_B,
    layer: int | None = typer.Option(
        None, "--layer", "-L", metavar="N", help="Show what layer N of A changed."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    image_b: str | None = typer.Option(None, "--image-b", help="--image for B (default: --image)."),
    ref_b: str | None = typer.Option(None, "--ref-b", help="--ref for B (default: --ref)."),
    platform_b: str | None = typer.Option(
        None, "--platform-b", help="--platform for B (default: --platform)."
    ),
    json_output: bool = JSON_OPTION,
    packages: bool = typer.Option(
        False,
        "--packages",
        help="Compare the installed packages instead (dockscope packages on both images).",
    ),
) -> None:
    """Compare two images (files, config, history), or show what one layer changed.

    A: added in B, D: removed in B, C: changed. Layers the images share are not compared.
    With --packages: packages added, removed, upgraded or downgraded (each ecosystem's
    version order: Debian, rpm, apk, PEP 440, semver). Exit status 0 when the images are
    equal, 1 when they differ.

    Examples:

      dockscope diff old.tar new.tar

      dockscope diff --json a.tar b.tar | jq '.files[] | select(.change == "modified")'

      dockscope diff --layer 3 image.tar

      dockscope diff --packages old.tar new.tar
    """
    from inspect_tool.render import files as render

    with handle_errors():
        from inspect_tool.sources import ImageSelection

        if path_b is None:
            if packages:
                raise UsageError("--packages compares two images: give A and B")
            if layer is None:
                raise UsageError(
                    "give a second image B, or --layer N to see what one layer changed"
                )
            from inspect_tool.analyze.filesystem import layer_changes
            from inspect_tool.sources import ImageSelection, open_image

            source, selected = open_image(path_a, ImageSelection(image, ref, platform))
            with source, layer_progress("reading layers", selected.layers[: layer + 1]) as progress:
                result = layer_changes(source, selected, layer, progress=progress.advance)
            if json_output:
                write_json(render.layer_diff_document(selected, result))
            else:
                render.render_layer_diff(stdout_console(), result)
            return
        if layer is not None:
            raise UsageError("--layer shows what one layer of A changed: give only A")
        if packages:
            from inspect_tool.cli.contents import diff_packages_command

            diff_packages_command(
                path_a,
                path_b,
                ImageSelection(image, ref, platform),
                ImageSelection(image_b or image, ref_b or ref, platform_b or platform),
                json_output=json_output,
            )
            return
        from inspect_tool.analyze.diff import diff_images
        from inspect_tool.sources import ImageSelection, open_image

        source_a, a = open_image(path_a, ImageSelection(image, ref, platform))
        with source_a:
            source_b, b = open_image(
                path_b, ImageSelection(image_b or image, ref_b or ref, platform_b or platform)
            )
            with source_b, layer_progress("comparing", (*a.layers, *b.layers)) as progress:
                compared = diff_images(source_a, a, source_b, b, progress=progress.advance)
        if json_output:
            write_json(render.diff_document(a, b, compared))
        else:
            render.render_diff(stdout_console(), a, b, compared)
        if not compared.equal:
            raise typer.Exit(int(ExitCode.PROBLEMS))


def register(app: typer.Typer) -> None:
    for command in (layers, ls, cat, find, diff):
        app.command()(command)
