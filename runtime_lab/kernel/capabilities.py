"""Capabilities: which of root's powers the container's root keeps (``--cap-add``,
``--cap-drop``, ``--privileged``), decided as docker decides them.

Root's power is split into about 40 capabilities (``CAP_NET_RAW``: raw sockets, which ping
uses; ``CAP_SYS_ADMIN``: mount and much else; ``CAP_NET_ADMIN``: interfaces and routes). A
container's root keeps docker's default 14 (runtime_lab/spec.py, moby's
``oci/caps/defaults.go``); the rest are dropped from the bounding set, so nothing inside can
ever gain them back. The options change that set, with moby's ``caps.TweakCapabilities``
rules:

- names are case-insensitive, with or without ``CAP_`` (``net_raw``, ``CAP_NET_RAW``);
  ``ALL`` means every capability; a name the kernel does not know is refused;
- ``--cap-add ALL``: every capability except those dropped;
- ``--cap-drop ALL``: only those added;
- otherwise: the defaults, minus the dropped, plus the added;
- ``--privileged``: every capability, whatever the other two say, and the rest of the
  protections off (see :func:`privileged_changes`).

"The kernel's list" is the one it was built with: ``/proc/sys/kernel/cap_last_cap`` gives the
highest number it knows; names above it are refused here as docker refuses names its Go
library does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from inspect_tool.errors import UsageError
from runtime_lab.spec import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES

ALL = "ALL"


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return max(CAPABILITY_NUMBERS.values())


def known_capabilities(last: int | None = None) -> list[str]:
    """Every capability this kernel knows, by number."""
    top = last_capability() if last is None else last
    return [
        name
        for name, number in sorted(CAPABILITY_NUMBERS.items(), key=lambda i: i[1])
        if number <= top
    ]


def normalize(names: Iterable[str], option: str, last: int | None = None) -> list[str]:
    """``net_raw`` → ``CAP_NET_RAW``, ``all`` → ``ALL``; one UsageError for an unknown name."""
    known = set(known_capabilities(last))
    result: list[str] = []
    for raw in names:
        for given in raw.split(","):  # docker's CLI takes repeated options; a list reads too
            name = given.strip().upper()
            if not name:
                continue
            if name == ALL:
                result.append(ALL)
                continue
            if not name.startswith("CAP_"):
                name = "CAP_" + name
            if name not in known:
                if name in CAPABILITY_NUMBERS:
                    raise UsageError(
                        f"{option} {given}: this kernel does not know {name} "
                        f"(cap_last_cap is {last_capability() if last is None else last})"
                    )
                raise UsageError(f"{option}: unknown capability: {given!r}")
            if name not in result:
                result.append(name)
    return result


@dataclass(frozen=True, slots=True)
class CapabilityOptions:
    """``--cap-add``, ``--cap-drop`` and ``--privileged`` as given (normalized)."""

    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    privileged: bool = False

    @classmethod
    def parse(
        cls, add: Sequence[str] = (), drop: Sequence[str] = (), *, privileged: bool = False
    ) -> CapabilityOptions:
        return cls(
            tuple(normalize(add, "--cap-add")), tuple(normalize(drop, "--cap-drop")), privileged
        )

    def capabilities(self, last: int | None = None) -> list[str]:
        """The container's capabilities, as moby's TweakCapabilities computes them."""
        every = known_capabilities(last)
        if self.privileged:
            return every
        if not self.add and not self.drop:
            return list(DEFAULT_CAPABILITIES)
        if ALL in self.add:
            return [c for c in every if c not in self.drop]
        if ALL in self.drop:
            return [c for c in self.add if c != ALL]
        kept = [c for c in DEFAULT_CAPABILITIES if c not in self.drop]
        return kept + [c for c in self.add if c not in kept]


def describe(capabilities: Sequence[str]) -> dict[str, list[str]]:
    """For the trace: what differs from docker's default set."""
    chosen = set(capabilities)
    return {
        "added": [c for c in capabilities if c not in DEFAULT_CAPABILITIES],
        "dropped": [c for c in DEFAULT_CAPABILITIES if c not in chosen],
    }


def mask(capabilities: Iterable[str]) -> int:
    """The capability set as the kernel shows it in /proc/PID/status (CapEff: 0000…a80425fb)."""
    return sum(1 << CAPABILITY_NUMBERS[name] for name in capabilities)


def privileged_changes() -> list[str]:
    """What ``--privileged`` turns off, each as the trace and --explain say it."""
    return [
        "capabilities: all of them (the bounding set is left whole)",
        "seccomp: no filter (as --security-opt seccomp=unconfined)",
        "masked paths: none (/proc/kcore, /proc/keys, /sys/firmware… are readable)",
        "read-only paths: none (/proc/sys, /proc/sysrq-trigger… are writable)",
        "/sys: mounted read-write",
        "devices: every device of the host's /dev is made in the container's /dev, and the "
        "device cgroup allows all (a *:* rwm)",
    ]
