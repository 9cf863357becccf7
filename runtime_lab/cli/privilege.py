"""The one check (and message) that a command needs root, and the way into a user namespace
for an ordinary user (rootless). Free of typer: a plain ``run`` is parsed without it."""

from __future__ import annotations

import os

from inspect_tool.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime_lab.storage.store import Store


def need_root() -> None:
    """Refuse, as a usage error, a command that makes namespaces, mounts or cgroups as a user
    other than root."""
    if os.geteuid() != 0:
        raise UsageError(
            "this needs root (namespaces, mounts and cgroups): run it with sudo "
            "(dockscope run --explain shows what a run would do, without root)"
        )


def need_root_or_rootless(*, enter: bool = True) -> None:
    """Root, or an ordinary user (rootless, docs/RUNTIME.md): with ``enter`` the rest of the
    command runs as uid 0 of a user namespace of its own (its files in the layer store and the
    writable layers are owned through that namespace's map), as podman re-enters its own."""
    if os.geteuid() == 0 or not enter:
        return
    from runtime_lab.lifecycle.rootless import enter as enter_user_namespace

    enter_user_namespace()


def enter_if_rootless(store: Store, container_ids: list[str]) -> None:
    """An ordinary user acting on the files of its rootless containers (``userns`` in their
    config): into a user namespace with the same maps first, where the range's owners are
    reachable. Nothing for root, or for containers root made."""
    if os.geteuid() == 0:
        return
    if any(store.load_config(cid).userns is not None for cid in container_ids):
        need_root_or_rootless()
