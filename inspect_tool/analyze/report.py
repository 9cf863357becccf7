"""Everything the HTML report shows, gathered by the analyses that the commands use.

Per source: ``verify`` (every blob read to its end). Per image: ``changes_by_layer`` (the
layer table, and the entries later layers deleted, from ``UnionFS``'s ``on_remove``),
``efficiency`` (dive's figures), ``analyze_types`` (file kinds and forensic findings),
``scan_packages`` (installed packages per layer), ``scan_secrets`` (secrets, redacted in
the page) and ``history`` (metadata only). Each layer is streamed once per analysis. An
analysis that cannot complete (a layer that fails its diff_id, a missing blob) leaves its
error in the report instead of stopping it: a broken image is when a report is most wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from inspect_tool.analyze.efficiency import EfficiencyReport, efficiency
from inspect_tool.analyze.filesystem import LayerRow, changes_by_layer, rows_of
from inspect_tool.analyze.filetypes import TypesReport, analyze_types
from inspect_tool.analyze.history import HistoryReport, history
from inspect_tool.analyze.packages.scan import PackagesReport, scan_packages
from inspect_tool.analyze.secrets import SecretsReport, scan_secrets
from inspect_tool.analyze.verify import VerifyReport, verify
from inspect_tool.errors import DockscopeError
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.union import FileInfo
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Candidate, Source

Progress = Callable[[int], None] | None


@dataclass(frozen=True, slots=True)
class RemovedEntry:
    """A non-directory entry that a later layer deleted or overwrote: still stored in its own
    layer (and recoverable with ``dockscope cat --at``), invisible in the image."""

    path: str
    type: EntryType
    size: int
    mode: int
    layer: int  # the layer that stores it
    by_layer: int  # the layer that deleted or replaced it
    fate: str  # "deleted" or "replaced"


@dataclass(slots=True)
class ImageAnalysis:
    """Every analysis of one image that the HTML report shows; one that could not complete is left
    empty and its error kept instead."""

    image: Image
    history: HistoryReport
    rows: list[LayerRow] | None = None
    removed: list[RemovedEntry] = field(default_factory=list)
    efficiency: EfficiencyReport | None = None
    types: TypesReport | None = None
    packages: PackagesReport | None = None
    secrets: SecretsReport | None = None
    errors: dict[str, str] = field(default_factory=dict)  # analysis → why it is missing


@dataclass(slots=True)
class SourceReport:
    """One source in the HTML report: its verification, the analyses of its chosen images and the
    images that could not be read."""

    label: str
    format: str
    verify: VerifyReport
    images: list[ImageAnalysis] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (selector, error)


@dataclass(frozen=True, slots=True)
class ContainerChange:
    """One path a container changed in its writable layer, marked added, changed or deleted as
    ``docker diff`` prints it."""

    kind: str  # "A", "C" or "D", as docker diff prints them
    path: str
    type: str | None
    size: int | None
    mode: int | None


@dataclass(frozen=True, slots=True)
class ContainerReport:
    """A runtime container for the report: who it is and what it changed (its writable layer
    as ``dockscope container diff`` reads it)."""

    name: str
    id: str
    image_source: str
    image_id: str
    status: str
    changes: tuple[ContainerChange, ...]


@dataclass(slots=True)
class Report:
    """Everything the HTML report shows: each source with its images' analyses, and the runtime
    container when one is reported on."""

    sources: list[SourceReport]
    container: ContainerReport | None = None

    @property
    def images(self) -> list[ImageAnalysis]:
        return [image for source in self.sources for image in source.images]

    @property
    def ok(self) -> bool:
        """Every verify check passed, every image was read and every analysis completed."""
        return all(
            source.verify.ok
            and not source.unreadable
            and not any(image.errors for image in source.images)
            for source in self.sources
        )


def work_bytes(sources: Sequence[tuple[Source, Sequence[Candidate]]]) -> int:
    """About how many bytes a report reads: each layer blob six times (verify and five
    analyses), for a progress bar."""
    total = 0
    for _, candidates in sources:
        for candidate in candidates:
            try:
                total += 6 * sum(layer.size or 0 for layer in candidate.image().layers)
            except DockscopeError:
                continue
    return total


class _Forward:
    """verify's progress protocol, forwarding to a callback whose total is already set."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def start(self, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        if self._progress is not None:
            self._progress(amount)


def analyze_image(source: Source, image: Image, *, progress: Progress = None) -> ImageAnalysis:
    result = ImageAnalysis(image, history(image))
    removed: list[RemovedEntry] = []

    def on_remove(info: FileInfo, layer: int, reason: str) -> None:
        if info.type is not EntryType.DIR and info.layer < layer:
            removed.append(
                RemovedEntry(info.path, info.type, info.size, info.mode, info.layer, layer, reason)
            )

    try:
        changes = changes_by_layer(source, image, on_remove=on_remove, progress=progress)
        result.rows = rows_of(image, changes)
        result.removed = sorted(removed, key=lambda r: (r.by_layer, r.path, r.layer))
    except DockscopeError as exc:
        result.errors["layers"] = str(exc)
    try:
        result.efficiency = efficiency(source, image, progress=progress)
    except DockscopeError as exc:
        result.errors["efficiency"] = str(exc)
    try:
        result.types = analyze_types(source, image, progress=progress)
    except DockscopeError as exc:
        result.errors["types"] = str(exc)
    try:
        result.packages = scan_packages(source, image, progress=progress)
    except DockscopeError as exc:
        result.errors["packages"] = str(exc)
    try:
        result.secrets = scan_secrets(source, image, progress=progress)
    except DockscopeError as exc:
        result.errors["secrets"] = str(exc)
    return result


def build_report(
    sources: Sequence[tuple[Source, Sequence[Candidate]]],
    *,
    container: ContainerReport | None = None,
    progress: Progress = None,
) -> Report:
    """Verify each source and analyse each of its chosen images."""
    report = Report([], container)
    for source, candidates in sources:
        checked = verify(source, candidates, progress=_Forward(progress))
        part = SourceReport(source.label, source.format.value, checked)
        for candidate in candidates:
            try:
                image = candidate.image()
            except DockscopeError as exc:
                part.unreadable.append((candidate.selector, str(exc)))
                continue
            part.images.append(analyze_image(source, image, progress=progress))
        report.sources.append(part)
    return report
