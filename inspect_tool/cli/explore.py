"""``dockscope explore``: the interactive layer explorer (Textual, imported only here, inside
the command)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from inspect_tool.cli._common import IMAGE_OPTION, PLATFORM_OPTION, REF_OPTION, handle_errors
from inspect_tool.errors import UsageError


def explore(
    path: Path | None = typer.Argument(
        None,
        metavar="IMAGE",
        help="An image archive (.tar, .tar.gz, .tar.zst) or layout directory.",
        show_default=False,
    ),
    path_b: Path | None = typer.Argument(
        None, metavar="[B]", help="A second image: the tree shows how B differs from IMAGE."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    image_b: str | None = typer.Option(None, "--image-b", help="--image for B (default: --image)."),
    ref_b: str | None = typer.Option(None, "--ref-b", help="--ref for B (default: --ref)."),
    platform_b: str | None = typer.Option(
        None, "--platform-b", help="--platform for B (default: --platform)."
    ),
    trace: Path | None = typer.Option(
        None,
        "--trace",
        metavar="FILE",
        help="Open a runtime trace (dockscope run --trace-json FILE) as a timeline of steps.",
    ),
    show_secrets: bool = typer.Option(
        False,
        "--show-secrets",
        help="The secrets screen (S) shows each secret whole (default: a redacted excerpt).",
    ),
    extract_to: Path | None = typer.Option(
        None,
        "--extract-to",
        metavar="DIR",
        help="Where x (extract) proposes to write (default: the current directory).",
    ),
) -> None:
    """Browse an image's layers and files interactively (as dive does, and more).

    The layer list (size, command) and the selected layer's digest, diff_id, chain ID and
    command; the image's efficiency figures (as dockscope efficiency prints them); the file
    tree after the selected layer, added/modified/removed entries coloured and marked
    (+ ~ -). Keys: Tab switches panes, a toggles "this layer only", 1-4 hide
    added/removed/modified/unchanged, / filters paths by a regular expression, s sorts by
    size, c collapses all, Enter shows a file's content (any layer, removed versions too),
    t lists the layers that touched a path, f finds names in every layer, x extracts a file
    or directory safely, p lists the packages (the layer that installed each; Enter shows its
    files), S the secrets in every layer (redacted unless --show-secrets; Enter shows that
    version of the file), ? lists every key, q quits. NO_COLOR=1 turns colour off (the
    markers stay).

    Examples:

      dockscope explore image.tar

      dockscope explore --platform linux/arm64 oci-dir/

      dockscope explore old.tar new.tar

      dockscope explore --trace run.jsonl
    """
    with handle_errors():
        if trace is not None:
            if path is not None:
                raise UsageError("--trace FILE opens a trace: give no IMAGE with it")
            from inspect_tool.explore.trace import read_trace

            steps = read_trace(trace)
            _need_terminal()
            from inspect_tool.explore.app import TraceApp

            TraceApp(str(trace), steps).run()
            return
        if path is None:
            raise UsageError("missing argument IMAGE")
        from inspect_tool.sources import ImageSelection, open_image

        with contextlib.ExitStack() as stack:
            source, selected = open_image(path, ImageSelection(image, ref, platform))
            stack.enter_context(source)
            from inspect_tool.explore.app import ExploreApp, Opened

            second = None
            if path_b is not None:
                selection_b = ImageSelection(image_b or image, ref_b or ref, platform_b or platform)
                source_b, selected_b = open_image(path_b, selection_b)
                stack.enter_context(source_b)
                second = Opened(source_b, selected_b)
            _need_terminal()
            ExploreApp(
                Opened(source, selected),
                second,
                extract_to=extract_to,
                show_secrets=show_secrets,
            ).run()


def _need_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("it is interactive: run it in a terminal")


def register(app: typer.Typer) -> None:
    app.command()(explore)
