"""dockscope's own state root as one more storage driver: a runtime container's writable layer
as engine storage's ``WritableLayer`` (``inspect_tool/storage/model.py``), so ``container diff``
and ``container export``/``commit`` of a runtime container go through the code that reads
Docker's and containers/storage's containers (``inspect_tool/storage/diff.py`` and
``export.py``): one walk, one tar writer, one JSON shape.

What makes it dockscope's is its ``Rules`` and its mount. The runtime mounts overlayfs without
``userxattr``: only ``trusted.overlay.*`` is overlay's (``trusted.overlay.opaque`` marks an
opaque directory; redirect and metacopy, which leave data in another layer, are refused by
export), and a layer root's opaque mark hides nothing, as the kernel has it. Its diff compares
the upperdir with the lower layers as their union shows them (a whiteout over nothing deletes
nothing; an opaque directory deletes each name it hides), lists every directory overlay
copied up as C, leaves out the mount points the runtime made (docker keeps them in its init
layer) and is sorted by path.

Everything is only read, through descriptors that never follow a symlink and with
``O_NOATIME`` (``inspect_tool.storage.evidence``): even access times stay, and a container may
nest directories deeper than Python's stack and than PATH_MAX.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import replace
from pathlib import Path

from inspect_tool.layers.whiteout import (
    METACOPY_XATTR,
    REDIRECT_XATTR,
    TRUSTED_OVERLAY,
    USER_OVERLAY,
)
from inspect_tool.storage.diff import ContainerDiff, diff_layer
from inspect_tool.storage.evidence import Evidence, LayerDir
from inspect_tool.storage.model import ContainerRecord, WritableLayer
from inspect_tool.storage.writable import CopyTree, Rules, UnionView, Whiteouts
from runtime_lab.storage.records import container_record
from runtime_lab.storage.store import ContainerConfig, ContainerState, Store

DOCKSCOPE_OVERLAY = Rules(
    Whiteouts.OVERLAY,
    opaque_needs_lower=False,
    lower_whiteouts=False,
    all_ancestors=False,
    rounded_times=False,
    lower_union=True,
    compare_dirs=False,
    xattr_prefixes=(TRUSTED_OVERLAY,),
    by_path=True,
)
# a rootless container's overlay is mounted with userxattr: user.overlay.* is overlay's
DOCKSCOPE_ROOTLESS_OVERLAY = replace(DOCKSCOPE_OVERLAY, xattr_prefixes=(USER_OVERLAY,))


@contextlib.contextmanager
def layer_dirs(paths: list[Path]) -> Iterator[list[LayerDir]]:
    """Each directory opened once; everything below is reached from its descriptor."""
    with contextlib.ExitStack() as stack:
        opened = []
        for path in paths:
            evidence = stack.enter_context(Evidence(path))
            opened.append(stack.enter_context(LayerDir(evidence, "")))
        yield opened


def union_view(layers: list[LayerDir], rules: Rules = DOCKSCOPE_OVERLAY) -> UnionView:
    """The union of ``layers`` (topmost first) as the runtime's overlay mount shows it."""
    return UnionView(
        layers,
        Whiteouts.OVERLAY,
        opaque_xattrs=rules.opaque_xattrs,
        opaque_root=False,
    )


@contextlib.contextmanager
def writable_layer(
    upper: Path,
    lowers: list[Path],
    *,
    container: ContainerRecord | None = None,
    excluded: Collection[str] = (),
    merged: Path | None = None,
    userxattr: bool = False,
) -> Iterator[WritableLayer]:
    """The writable layer ``upper`` over the image's layer directories ``lowers`` (bottom
    first, as a container's config lists them). ``excluded``: paths the runtime made ("/proc"),
    left out of diff and layer export; ``merged``: a root filesystem that is a plain copy
    (no overlayfs), which export then writes as it is; ``userxattr``: a rootless container's
    (``user.overlay.*`` marks)."""
    rules = DOCKSCOPE_ROOTLESS_OVERLAY if userxattr else DOCKSCOPE_OVERLAY
    with layer_dirs([upper, *reversed(lowers)]) as (upper_dir, *lower_dirs):
        layer = WritableLayer(container, upper_dir, lower_dirs, Whiteouts.OVERLAY, "overlay", rules)
        layer.excluded_paths = frozenset(excluded)
        layer.refused_xattrs = (
            (REDIRECT_XATTR, METACOPY_XATTR) if not userxattr else rules.unfollowed_xattrs
        )
        if merged is None:
            layer.merged = union_view([upper_dir, *lower_dirs], rules)
            yield layer
            return
        with layer_dirs([merged]) as (copied,):
            # a plain copy: the container wrote into it, so its diff is the copy compared
            # entry by entry with the image's layers as their union shows them ("naive",
            # engine storage's ChangesDirs for vfs)
            layer.method = "naive"
            layer.new_tree = CopyTree(copied)
            layer.old_tree = union_view(lower_dirs, rules)
            layer.merged = union_view([copied], rules)
            yield layer


@contextlib.contextmanager
def container_layer(
    store: Store, config: ContainerConfig, state: ContainerState
) -> Iterator[WritableLayer]:
    """A container of the state root as engine storage's ``WritableLayer``: its upperdir over
    its image's layers in the layer store, its record as ``storage ls`` shows it, the mount
    points the runtime made excluded; a container that ran on a copy of the image (no
    overlayfs) exports that copy."""
    directory = store.container_dir(config.id)
    with writable_layer(
        directory / "upper",
        [store.layer_dir(d) for d in config.diff_ids],
        container=container_record(store, config, state),
        excluded=state.runtime_paths,
        merged=directory / "merged" if state.rootfs_mode != "overlay" else None,
        userxattr=config.userns is not None,
    ) as layer:
        yield layer


def container_diff(
    store: Store, config: ContainerConfig, state: ContainerState, *, hashes: bool = False
) -> ContainerDiff:
    """``container diff`` of a runtime container: engine storage's ``diff_layer`` over its
    writable layer (sorted by path), as engine storage's ``ContainerDiff``."""
    with container_layer(store, config, state) as layer:
        entries, notes = diff_layer(layer, hashes=hashes)
        assert layer.container is not None
        return ContainerDiff(
            root=str(store.root),
            engine=layer.container.engine,
            driver=state.rootfs_mode,  # "overlay", or "copy" where overlayfs is unavailable
            method="overlay" if state.rootfs_mode == "overlay" else "naive",
            container=layer.container,
            entries=entries,
            notes=notes,
        )
