"""What engine storage holds, as values: images, containers, writable layers, image layers.

Each engine reader (``docker.py``, ``containers.py``) fills these from its own files; the
commands (``diff.py``, ``export.py``, ``save.py``, ``logs.py``) work on these values only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from inspect_tool.errors import DockscopeError, SelectionError
from inspect_tool.storage.evidence import Evidence, LayerDir
from inspect_tool.storage.writable import LayerTree, Rules, Whiteouts


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image as its engine's storage records it: its ID, names, layers, driver and size."""

    id: str  # "sha256:<hex>": the digest of the config
    tags: tuple[str, ...]  # "name:tag"
    digests: tuple[str, ...]  # "name@sha256:…" (the manifest digests the engine recorded)
    created: str | None
    diff_ids: tuple[str, ...]
    driver: str
    size: int | None  # bytes of the layers' content as the engine recorded it
    key: str = ""  # the engine's own handle (c/storage: the image ID without "sha256:")


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One container as its engine's storage records it: its identity, image, state and command, and
    where its writable layer and log lie."""

    id: str
    name: str
    image: str  # as the user named it ("busybox"), or the image ID
    image_id: str | None
    created: str | None
    running: bool | None  # None: the state files say nothing
    status: str  # running, paused, restarting, exited, created, dead, unknown
    exit_code: int | None
    started: str | None
    finished: str | None
    pid: int | None
    command: tuple[str, ...] | None
    driver: str
    engine: str  # docker, podman, buildah, containers-storage
    upper_dir: str | None  # where the writable layer lies (for people: never opened by it)
    log_path: str | None
    key: str = ""  # the engine's own handle (c/storage: the container's layer)


@dataclass(slots=True)
class WritableLayer:
    """Everything needed to diff or export one container's writable layer, whichever engine
    wrote it (Docker, containers/storage, or dockscope's runtime: runtime_lab/storage/driver.py)."""

    container: ContainerRecord | None  # None: layer directories read without a container
    upper: LayerDir
    lowers: list[LayerDir]  # topmost first: what the engine diffs against
    whiteouts: Whiteouts
    method: str  # "overlay", "aufs" (walk_changes) or "naive" (ChangesDirs)
    rules: Rules | None  # for walk_changes
    new_tree: LayerTree | None = None  # for naive: the container's tree …
    old_tree: LayerTree | None = None  # … and its parent's
    merged: LayerTree | None = None  # the container's root filesystem
    base: list[LayerDir] = field(default_factory=list)  # image layers below everything (export)
    engine_paths: dict[str, str] = field(default_factory=dict)  # path -> why the engine made it
    hidden_paths: frozenset[str] = frozenset()  # paths the engine's own diff leaves out
    # paths left out of diff and layer export, with everything below them (the mount points
    # dockscope's runtime made: docker keeps them in its init layer)
    excluded_paths: frozenset[str] = frozenset()
    # xattrs an export refuses to write (overlay features that leave data in another layer)
    refused_xattrs: tuple[str, ...] = ()
    opened: list[LayerDir] = field(default_factory=list)

    def close(self) -> None:
        for layer in self.opened:
            layer.close()


@dataclass(frozen=True, slots=True)
class ImageLayer:
    """One layer of an image as the engine stores it."""

    index: int
    diff_id: str  # what the config's rootfs.diff_ids says
    recorded: str | None  # what the engine's own layer record says (layerdb diff, diff-digest)
    label: str  # the engine's name for it (cache ID, layer ID)
    directory: str  # relative to ROOT: the unpacked content
    whiteouts: Whiteouts
    tar_split: str | None  # relative to ROOT: the original tar's headers (tar-split), if kept
    size: int | None


class EngineStorage(ABC):
    """One engine's storage under ROOT."""

    engine: str

    def __init__(self, evidence: Evidence, drivers: list[str]) -> None:
        self.evidence = evidence
        self.drivers = drivers
        # containers left out of the listing (a symlink where their directory should be, a
        # damaged record): the error stays for the command that names one of them
        self.skipped_containers: dict[str, DockscopeError] = {}

    @abstractmethod
    def images(self) -> list[ImageRecord]: ...

    @abstractmethod
    def containers(self) -> list[ContainerRecord]: ...

    @abstractmethod
    def writable(self, container: ContainerRecord) -> WritableLayer: ...

    @abstractmethod
    def image_config(self, image: ImageRecord) -> bytes: ...

    @abstractmethod
    def image_layers(self, image: ImageRecord) -> list[ImageLayer]: ...

    @abstractmethod
    def inspect(self, container: ContainerRecord) -> dict[str, Any]: ...

    @abstractmethod
    def log_file(self, container: ContainerRecord) -> tuple[str, str]:
        """(format, path relative to ROOT) of the container's log: ``json-file`` (Docker)
        or ``k8s-file`` (Podman)."""

    def resolve_container(self, ident: str) -> ContainerRecord:
        records = self.containers()
        try:
            return _resolve(
                ident,
                records,
                names=lambda c: [c.name, c.name.lstrip("/")],
                ids=lambda c: [c.id],
                what="container",
                label=lambda c: f"{c.id[:12]} ({c.name})",
            )
        except SelectionError:
            skipped = [e for cid, e in self.skipped_containers.items() if cid.startswith(ident)]
            if ident and len(skipped) == 1:
                raise skipped[0] from None
            raise

    def resolve_image(self, ident: str) -> ImageRecord:
        def names(image: ImageRecord) -> list[str]:
            found = [*image.tags, *image.digests]
            for tag in image.tags:
                repo = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
                if tag.endswith(":latest"):
                    found.append(repo)
                found += [f"docker.io/{tag}", f"docker.io/library/{tag}"]
            return found

        return _resolve(
            ident,
            self.images(),
            names=names,
            ids=lambda i: [i.id, i.id.removeprefix("sha256:")],
            what="image",
            label=lambda i: (
                f"{i.id.removeprefix('sha256:')[:12]} ({', '.join(i.tags) or 'no tag'})"
            ),
        )


T = TypeVar("T")


def _resolve(
    ident: str,
    records: list[T],
    *,
    names: Callable[[T], list[str]],
    ids: Callable[[T], list[str]],
    what: str,
    label: Callable[[T], str],
) -> T:
    """An exact name or ID first, else a unique ID prefix; an ambiguous prefix lists the
    candidates."""
    if not ident:
        raise SelectionError(f"an empty {what} name")
    exact = [r for r in records if ident in names(r) or ident in ids(r)]
    if len(exact) == 1:
        return exact[0]
    prefix = ident.removeprefix("sha256:")
    matches = exact or [
        r for r in records if any(i.removeprefix("sha256:").startswith(prefix) for i in ids(r))
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SelectionError(f"no {what} named or with an ID starting {ident!r}")
    candidates = ", ".join(label(r) for r in matches)
    raise SelectionError(f"{ident!r} is ambiguous: it matches {len(matches)} {what}s: {candidates}")
