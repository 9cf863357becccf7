"""What every reader produces: a Source listing the images it holds, each loadable on demand.

A reader walks only metadata (index.json, manifest.json, manifests). Loading an image reads its
config and looks at the first bytes of each layer blob; no layer is read to answer inspect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inspect_tool.errors import DockscopeError, SelectionError
from inspect_tool.model.digest import Digest
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import Blob, Image, ImageFormat, Platform
from inspect_tool.model.mediatypes import Compression
from inspect_tool.model.words import plural
from inspect_tool.sources.tree import Tree


@dataclass(slots=True)
class Candidate:
    """One image a source holds, before it is loaded."""

    selector: str  # 1-based position, what --image N takes
    repo_tags: tuple[str, ...]
    ref_name: str | None
    manifest_digest: Digest | None
    media_type: str | None
    platform: Platform | None
    index_path: tuple[str, ...]
    load: Callable[[], Image]
    _image: Image | None = None
    _error: DockscopeError | None = None

    def image(self) -> Image:
        if self._image is None:
            if self._error is not None:
                raise self._error
            try:
                self._image = self.load()
            except DockscopeError as exc:
                self._error = exc
                raise
        return self._image


@dataclass(slots=True)
class Source:
    """An opened image source: its files and the images it holds."""

    path: Path
    tree: Tree
    format: ImageFormat
    candidates: list[Candidate] = field(default_factory=list)
    # Index and manifest blobs walked to find the candidates (verified by verify).
    walked: list[Blob] = field(default_factory=list)
    # Structural checks made while reading metadata; verify reports them with its own.
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The location as the user wrote it, when it named a transport (oci:DIR:REF, …): errors
    # and documents name the image by it.
    location: str | None = None
    # Selectors the location itself carried (oci's REF, docker-archive's NAME:TAG or @N):
    # a selection error names them as written, not as the option they stand for.
    given: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.location or str(self.path)

    @property
    def archive_compression(self) -> Compression | None:
        return self.tree.compression

    def select(
        self,
        *,
        image: str | None = None,
        ref: str | None = None,
        platform: Platform | None = None,
    ) -> list[Candidate]:
        """The candidates that match every given selector (all of them when none is given)."""
        chosen = list(self.candidates)
        if image is not None:
            if image.isdigit():
                number = int(image)
                if not 1 <= number <= len(self.candidates):
                    raise SelectionError(
                        f"{self.given.get('image', '--image ' + image)}: the source holds "
                        f"{plural(len(self.candidates), 'image')}",
                        subject=self.label,
                    )
                chosen = [c for c in chosen if c.selector == image]
            else:
                chosen = [c for c in chosen if any(tag_matches(t, image) for t in c.repo_tags)]
                if not chosen:
                    raise SelectionError(
                        f"{self.given.get('image', '--image ' + image)}: no image with that tag; "
                        "tags here: "
                        f"{', '.join(t for c in self.candidates for t in c.repo_tags) or 'none'}",
                        subject=self.label,
                    )
        if ref is not None:
            chosen = [c for c in chosen if c.ref_name == ref]
            if not chosen:
                names = sorted({c.ref_name for c in self.candidates if c.ref_name})
                raise SelectionError(
                    f"{self.given.get('ref', '--ref ' + ref)}: no manifest with that ref name; "
                    "names here: "
                    f"{', '.join(names) or 'none'}",
                    subject=self.label,
                )
        if platform is not None:
            matching = [c for c in chosen if self._platform_of(c) and _matches(c, platform, self)]
            if not matching:
                found = sorted({str(p) for c in chosen if (p := self._platform_of(c))})
                raise SelectionError(
                    f"--platform {platform}: no image for that platform; platforms here: "
                    f"{', '.join(found) or 'none'}",
                    subject=self.label,
                )
            chosen = matching
        return chosen

    @staticmethod
    def _platform_of(candidate: Candidate) -> Platform | None:
        if candidate.platform is not None:
            return candidate.platform
        try:
            return candidate.image().platform
        except DockscopeError:
            return None

    def close(self) -> None:
        self.tree.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _matches(candidate: Candidate, wanted: Platform, source: Source) -> bool:
    platform = source._platform_of(candidate)
    return platform is not None and platform.matches(wanted)


def normalize_tag(tag: str) -> str:
    """``busybox`` → ``docker.io/library/busybox:latest``, as docker resolves short names."""
    name, _, digest = tag.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        if "/" not in name:
            name = "library/" + name
        name = "docker.io/" + name
    return name + ("@" + digest if digest else "")


def tag_matches(stored: str, wanted: str) -> bool:
    return stored == wanted or normalize_tag(stored) == normalize_tag(wanted)
