"""The layer store: each layer unpacked once, in the form overlayfs reads as a lowerdir.

A layer is extracted with inspect_tool's safe extraction (every path resolved inside the
layer's directory, the diff_id verified as the layer streams) into a temporary directory, then
renamed to ``<store>/layers/<diff_id hex>`` in one step: a concurrent run either sees the whole
layer or none of it, and never a half-written one. Whiteouts take overlayfs's form: ``.wh.NAME``
becomes a character device 0/0 named NAME, ``.wh..wh..opq`` the ``trusted.overlay.opaque=y``
attribute of its directory (the conversion containerd's and docker's overlay drivers make).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from runtime_lab.storage.store import Store, remove_dir, rootless
from runtime_lab.trace.events import Event, Tracer
from runtime_lab.trace.steps import STEPS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from inspect_tool.layers.unpack.audit import AuditEntry
    from inspect_tool.model.image import Image
    from inspect_tool.sources.source import Source


USERNS_OVERLAY_KERNEL = (5, 11)


def kernel_release() -> tuple[int, int]:
    """The running kernel's major and minor version (``uname -r``)."""
    major, _, rest = os.uname().release.partition(".")
    minor = "".join(c for c in rest.partition(".")[0] if c.isdigit())
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (0, 0)


def overlay_available() -> bool:
    """Whether overlayfs can be used (DOCKSCOPE_ROOTFS=copy forces the copy fallback, to
    teach or test it on a machine that has overlayfs). Rootless, the kernel must let a user
    namespace mount it (5.11 or later); before that the image is copied (fuse-overlayfs,
    podman's answer there, is not used)."""
    if os.environ.get("DOCKSCOPE_ROOTFS") == "copy":
        return False
    if rootless() and kernel_release() < USERNS_OVERLAY_KERNEL:
        return False  # overlayfs mounts in a user namespace came with Linux 5.11
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def ensure_layers(
    store: Store,
    source: Source,
    image: Image,
    tracer: Tracer,
    *,
    progress: Callable[[int], None] | None = None,
    userxattr: bool = False,
) -> list[Path]:
    """The layer directories for ``image``, bottom first, unpacking those not yet stored
    (``userxattr``: rootless, opaque directories marked ``user.overlay.opaque``, and owners the
    user namespace's map lacks counted rather than listed)."""
    step = STEPS["layer-store"]
    directories = []
    for layer in image.layers:
        if layer.diff_id is None:
            from inspect_tool.errors import InvalidImageError

            raise InvalidImageError(f"layer {layer.index} has no diff_id", subject=source.label)
        final = store.layer_dir(layer.diff_id.hex)
        directories.append(final)
        if final.is_dir():
            tracer.emit(_stored_event(layer.index, str(layer.diff_id), final))
            continue
        temporary = store.layers / f".tmp-{layer.diff_id.hex[:16]}-{os.urandom(4).hex()}"
        from runtime_lab.storage.overlay_extract import extract_layer

        try:
            stats, audit = extract_layer(
                source, image, layer.index, temporary, progress, userxattr=userxattr
            )
            try:
                os.rename(temporary, final)  # atomic: the layer appears whole
            except OSError:
                if not final.is_dir():
                    raise
                remove_dir(temporary)  # another run stored it first: theirs is the same
        except BaseException:
            remove_dir(temporary, ignore_errors=True)
            raise
        tracer.emit(
            Event(
                step=step.id,
                title=step.title,
                explanation=step.explanation,
                syscall=step.syscall,
                args={"layer": layer.index, "diff_id": str(layer.diff_id)},
                evidence={
                    "path": str(final),
                    "cached": False,
                    "files": stats.files,
                    "directories": stats.directories,
                    "bytes": stats.bytes,
                    "whiteouts": stats.whiteouts,
                    **_refused(audit, userxattr),
                },
            )
        )
    return directories


def stored_layers(layer_dirs: list[Path], tracer: Tracer) -> None:
    """Layers found in the layer store (each ``layers/<diff_id hex>``), traced as
    ``ensure_layers`` traces a layer it need not unpack."""
    for index, directory in enumerate(layer_dirs):
        tracer.emit(_stored_event(index, f"sha256:{directory.name}", directory))


def _stored_event(index: int, diff_id: str, directory: Path) -> Event:
    step = STEPS["layer-store"]
    return Event(
        step=step.id,
        title=step.title,
        explanation=step.explanation,
        syscall=None,
        args={"layer": index, "diff_id": diff_id},
        evidence={"path": str(directory), "cached": True},
    )


def copy_image(source: Source, image: Image, destination: Path) -> None:
    """Without overlayfs: the merged filesystem unpacked into the container's own root."""
    from inspect_tool.layers.unpack import UnpackOptions, unpack

    # device nodes are never made (the container gets docker's default /dev), overlayfs's own
    # xattrs never taken from the image: the same rules as the layer store
    unpack(source, image, destination, options=UnpackOptions(devices=False, force=True))


def _refused(audit: list[AuditEntry], userxattr: bool) -> dict[str, Any]:
    """What the layer store did not reproduce; rootless, the owners its user namespace does
    not map (a single-ID map maps only root) are counted: those entries stay the user's,
    root's inside."""
    refused = [f"{a.name}: {a.message}" for a in audit]
    if not userxattr:
        return {"refused": refused}
    unmapped = [r for r in refused if "not set" in r and "owner" in r]
    return {
        "refused": [r for r in refused if r not in unmapped],
        "owners_unmapped": len(unmapped),
    }
