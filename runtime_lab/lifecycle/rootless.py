"""Rootless containers: what changes when an ordinary user runs ``dockscope run``.

- The command first moves into a user namespace of its own (``kernel/userns.py``: the maps
  from /etc/subuid and /etc/subgid through newuidmap/newgidmap, or the user's own ids alone),
  as podman does; it is uid 0 there, with every capability over what that namespace owns: the
  container's other namespaces, its mounts (overlayfs mounted with ``userxattr``), the layer
  store's owners (through the map).
- The state root is the user's (``~/.local/share/dockscope``), the attach sockets under
  ``$XDG_RUNTIME_DIR/dockscope``.
- Control groups only where the user was given one (delegated, cgroup v2 with systemd):
  on cgroup v1 nothing is delegated, so no group is made, and ``--memory``, ``--cpus`` and
  ``--pids-limit`` are ignored with podman's warning.
- What the kernel keeps for the host's root: device nodes (mknod) are bind-mounted from the
  host's /dev instead; the audit log of what seccomp denied cannot be read.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from runtime_lab.kernel import cgroups
from runtime_lab.lifecycle.state import ContainerError, step_event
from runtime_lab.storage.store import rootless
from runtime_lab.trace.events import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# podman's words (pkg/specgen/generate/validate.go), on a cgroup v1 host
LIMITS_IGNORED = "Resource limits are not supported and ignored on cgroups V1 rootless systems"
NO_CGROUP = (
    "not delegated: this host mounts cgroup v1, whose hierarchies belong to root; an ordinary "
    "user may make no group in them, so limits cannot apply (podman ignores them likewise)"
)
NO_CGROUP_V2 = (
    "cgroup v2 groups for an ordinary user need a delegated subtree (systemd's Delegate=yes, "
    "podman's --cgroup-manager=systemd); dockscope does not ask systemd for one, so limits "
    "cannot apply"
)
NOT_AVAILABLE = [
    "control groups: limits and the device allowlist (see cgroup-none)",
    "device nodes: the kernel lets only the host's root mknod; /dev's nodes are bind mounts "
    "of the host's",
    "seccomp-denied: the kernel's audit records (/dev/kmsg, an audit session) need "
    "CAP_SYSLOG and CAP_AUDIT_CONTROL on the host; the filter itself is loaded",
    "networks other than none and host (a bridge needs the host's root; slirp4netns or "
    "pasta would give user-mode networking, not done here)",
]


def enter() -> None:
    """As an ordinary user: the rest of this command runs as uid 0 of a new user namespace
    (the process that called this only waits outside). As root, or already inside: nothing."""
    if os.geteuid() == 0 or _entered():
        return
    from runtime_lab.kernel import userns  # root's runs never load it

    try:
        userns.enter()
    except OSError as exc:
        raise ContainerError(
            f"cannot make a user namespace: {exc}", subject=f"uid {os.getuid()}"
        ) from None


def userns_event() -> Event | None:
    """The ``userns`` step of a rootless run: the maps written, read back from /proc."""
    if not _entered():
        return None
    evidence = dict(_entered())
    evidence["not_available"] = NOT_AVAILABLE
    return step_event("userns", args={"mode": evidence.get("mode")}, evidence=evidence)


def record() -> dict[str, Any] | None:
    """What a container's config keeps of its user namespace: the mode and the maps."""
    entered = _entered()
    if not entered:
        return None
    return {
        "mode": entered.get("mode"),
        "uid_map": entered.get("uid_map", ""),
        "gid_map": entered.get("gid_map", ""),
        "setgroups": entered.get("setgroups", "").strip(),
    }


def _entered() -> dict[str, Any]:
    """What ``kernel/userns.py`` recorded when this process entered its user namespace (its
    ``ENTERED``); empty when it did not, and when that module was never loaded (entering
    loads it), as for every run as root."""
    module = sys.modules.get("runtime_lab.kernel.userns")
    if module is None or not module.in_own_namespace():
        return {}
    entered: dict[str, Any] = module.ENTERED
    return entered


def cgroup_reason() -> str:
    return NO_CGROUP_V2 if cgroups.detect().version == 2 else NO_CGROUP


@dataclass(slots=True)
class NoCgroup(cgroups.Cgroup):
    """A rootless container's "group": none. Everything a group would do is nothing."""

    reason: str = ""
    unused: list[str] = field(default_factory=list)

    def apply(self, limits: cgroups.Limits) -> None:
        return None

    def restrict_devices(self, rules: Any) -> dict[str, Any]:
        return {}

    def oom_killed(self) -> bool:
        return False

    def values(self) -> dict[str, str]:
        return {}

    def procs(self) -> list[int]:
        return []

    def remove(self) -> None:
        return None


def no_group(name: str) -> NoCgroup:
    driver = cgroups.detect()
    return NoCgroup(driver, name, {}, reason=cgroup_reason())


def limits_warning(memory: int | None, cpus: float | None, pids: int | None) -> str | None:
    """podman's warning when limits are asked for where they cannot apply (rootless)."""
    if not rootless() or all(v is None for v in (memory, cpus, pids)):
        return None
    if cgroups.detect().version == 2:
        return "Resource limits are ignored: no delegated cgroup v2 subtree (rootless)"
    return LIMITS_IGNORED
