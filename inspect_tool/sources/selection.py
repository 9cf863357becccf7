"""Which image of a source a command means: one selection value, one way to open it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspect_tool.errors import InvalidImageError, SelectionError

if TYPE_CHECKING:
    from inspect_tool.model.image import Image
    from inspect_tool.registry.access import RegistryAccess
    from inspect_tool.sources.source import Candidate, Source


@dataclass(frozen=True)
class ImageSelection:
    """--image (a tag or a 1-based position), --ref (a ref.name annotation) and --platform
    (OS/ARCH[/VARIANT]); None selects nothing by that criterion. ``access`` says how to reach
    a registry for docker:// references (None: the command line's, or the defaults)."""

    image: str | None = None
    ref: str | None = None
    platform: str | None = None
    access: RegistryAccess | None = None


ALL_IMAGES = ImageSelection()


def open_candidates(
    path: str | Path, selection: ImageSelection = ALL_IMAGES
) -> tuple[Source, list[Candidate]]:
    """Open a source and keep the candidates the selection names (all of them when it names
    none). The caller closes the source."""
    from inspect_tool.model.image import Platform
    from inspect_tool.sources import open_source

    source = open_source(path, selection.access)
    try:
        wanted = Platform.parse(selection.platform) if selection.platform else None
        if not source.candidates:
            raise InvalidImageError(
                "holds no image: " + ("; ".join(source.notes) or "no manifests listed"),
                subject=source.label,
            )
        return source, source.select(image=selection.image, ref=selection.ref, platform=wanted)
    except BaseException:
        source.close()
        raise


def open_image(path: str | Path, selection: ImageSelection = ALL_IMAGES) -> tuple[Source, Image]:
    """Like open_candidates, where exactly one image must be selected; it is loaded."""
    source, chosen = open_candidates(path, selection)
    try:
        if len(chosen) != 1:
            raise SelectionError(
                f"holds {len(chosen)} images; choose one with --image, --ref or --platform "
                "(dockscope inspect lists them)",
                subject=source.label,
            )
        return source, chosen[0].image()
    except BaseException:
        source.close()
        raise
