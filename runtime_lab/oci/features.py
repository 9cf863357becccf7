"""``features``: what this runtime implements, in the runtime spec's features.md format, so
an engine can ask before it writes config.json."""

from __future__ import annotations

from typing import Any

from runtime_lab.kernel.seccomp import ACTIONS, OPERATORS
from runtime_lab.oci.config import (
    HOOK_KINDS,
    MOUNT_FLAGS,
    NAMESPACE_TYPES,
    PROPAGATION_FLAGS,
)
from runtime_lab.spec import CAPABILITY_NUMBERS

ARCHITECTURES = (
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
)


def features() -> dict[str, Any]:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted([*MOUNT_FLAGS, *PROPAGATION_FLAGS]),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": sorted(CAPABILITY_NUMBERS, key=CAPABILITY_NUMBERS.__getitem__),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted(ACTIONS),
                "operators": sorted(OPERATORS),
                "archs": list(ARCHITECTURES),
                "knownFlags": [],
                "supportedFlags": [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {
            "org.dockscope.trace": "a file to append the trace to (JSON lines)",
        },
    }
