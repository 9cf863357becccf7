"""Which image of a source a command means: one selection value, one way to open it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from inspect_tool.errors import InvalidImageError, SelectionError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from inspect_tool.model.image import Image
    from inspect_tool.registry.access import RegistryAccess
    from inspect_tool.sources.location import Location
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
    path: str | Path | Location, selection: ImageSelection = ALL_IMAGES
) -> tuple[Source, list[Candidate]]:
    """Open a source and keep the candidates the selection names (all of them when it names
    none). The caller closes the source. A ``Location`` (one already parsed, or made for a
    file dockscope wrote) is opened as it is."""
    from inspect_tool.model.image import Platform
    from inspect_tool.sources import Location, open_location, parse_location

    location = path if isinstance(path, Location) else parse_location(path)
    selection, given = merge_location(selection, location)
    source = open_location(location, selection.access)
    source.given.update(given)
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


def merge_location(
    selection: ImageSelection, location: Location
) -> tuple[ImageSelection, dict[str, str]]:
    """The selection with what the location names (oci's REF, docker-archive's NAME:TAG or
    @N) folded in, and how the location wrote each; naming one thing twice differently is a
    usage error."""
    given: dict[str, str] = {}
    changes: dict[str, str] = {}
    for field_name, value, option in (
        ("ref", location.ref, "--ref"),
        ("image", location.image, "--image"),
    ):
        if value is None:
            continue
        chosen = getattr(selection, field_name)
        if chosen is not None and chosen != value:
            raise UsageError(
                f"the location chooses {_as_written(field_name, value)} and {option} "
                f"{chosen}: give one of them",
                subject=location.text,
            )
        changes[field_name] = value
        given[field_name] = _as_written(field_name, value)
    if changes:
        selection = replace(
            selection,
            ref=changes.get("ref", selection.ref),
            image=changes.get("image", selection.image),
        )
    return selection, given


def _as_written(field_name: str, value: str) -> str:
    if field_name == "image" and value.isdigit():
        return f"image @{int(value) - 1}"
    return f"{field_name} {value}"


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
