"""``ps --filter KEY=VALUE``, with docker's rules (moby ``daemon/list.go``): values of the same
key are alternatives (any may match), different keys must all match; every ``label`` filter
must match.

- ``id``: the ID (a regular expression searched in it, as docker's: a prefix works);
- ``name``: the name (a regular expression searched in it: ``web`` matches ``web-1``);
- ``status``: ``created``, ``restarting``, ``running``, ``paused``, ``exited`` (``removing``,
  ``dead``: never here); it lists stopped containers without ``-a``, as docker's;
- ``exited``: an exited container's exit code (only useful with ``-a``);
- ``label``: ``KEY`` present, or ``KEY=VALUE``;
- ``ancestor``: the image: the path or reference given to run (or its file name), its image
  ID (``sha256:…``, or a prefix of its hex of 12 digits or more);
- ``before``, ``since``: created before (after) the container named (they list stopped
  containers without ``-a``, as docker's);
- ``volume``: a volume's name, or a mount point in the container;
- ``network``: the network mode (``bridge``, ``none``, ``host``, ``container:<ID>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from inspect_tool.errors import UsageError
from runtime_lab.storage.store import ContainerConfig, ContainerState

KEYS = (
    "id",
    "name",
    "status",
    "exited",
    "label",
    "ancestor",
    "before",
    "since",
    "volume",
    "network",
)
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def status_of(state: ContainerState) -> str:
    """docker's State.Status: a paused container is "paused", not "running"."""
    return "paused" if state.status == "running" and state.paused else state.status


@dataclass(slots=True)
class PsFilter:
    """``ps --filter`` as parsed: the values given for each key, and the creation times that
    before= and since= name once bound; ``matches`` tests one container against them."""

    values: dict[str, list[str]] = field(default_factory=dict)
    # before= and since=, as the creation times of the containers they name (``bind``)
    created_before: str | None = None
    created_since: str | None = None

    def bind(self, created_of: Callable[[str], str]) -> PsFilter:
        """Resolve before= and since= (a name or ID) to creation times with ``created_of``."""
        if "before" in self.values:
            self.created_before = min(created_of(v) for v in self.values["before"])
        if "since" in self.values:
            self.created_since = max(created_of(v) for v in self.values["since"])
        return self

    @classmethod
    def parse(cls, given: Iterable[str]) -> PsFilter:
        values: dict[str, list[str]] = {}
        for text in given:
            key, sep, value = text.partition("=")
            key = key.strip().lower()
            if not sep:
                raise UsageError(f"bad format of filter (expected name=value): {text!r}")
            if key not in KEYS:
                raise UsageError(f"invalid filter '{key}' (filters: {', '.join(KEYS)})")
            if key == "status" and value not in STATUSES:
                raise UsageError(f"invalid filter 'status={value}' (one of {', '.join(STATUSES)})")
            if key == "exited":
                try:
                    int(value)
                except ValueError:
                    raise UsageError(f"invalid filter 'exited={value}': not a number") from None
            if key in ("id", "name"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise UsageError(f"invalid filter '{key}={value}': {exc}") from None
            values.setdefault(key, []).append(value)
        return cls(values)

    @property
    def lists_stopped(self) -> bool:
        """A status filter looks at every container, as ``-a`` does (docker's rule)."""
        return any(key in self.values for key in ("status", "before", "since"))

    def matches(self, config: ContainerConfig, state: ContainerState) -> bool:
        v = self.values
        if "id" in v and not any(re.search(p, config.id) for p in v["id"]):
            return False
        if "name" in v and not any(re.search(p, config.name) for p in v["name"]):
            return False
        if "status" in v and status_of(state) not in v["status"]:
            return False
        if "exited" in v and not (
            state.status == "exited"
            and state.exit_code is not None
            and state.exit_code in {int(x) for x in v["exited"]}
        ):
            return False
        if "label" in v and not all(_label(config.labels, x) for x in v["label"]):
            return False
        if self.created_before is not None and not config.created < self.created_before:
            return False
        if self.created_since is not None and not config.created > self.created_since:
            return False
        if "volume" in v and not any(
            x in (m.get("name"), m.get("destination")) for m in config.volumes for x in v["volume"]
        ):
            return False
        if "network" in v and not any(
            config.network == x or config.network.startswith(x + ":") for x in v["network"]
        ):
            return False
        return "ancestor" not in v or any(_ancestor(config, x) for x in v["ancestor"])


def _label(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _ancestor(config: ContainerConfig, wanted: str) -> bool:
    source = config.image_source
    if wanted in (source, PurePosixPath(source).name):
        return True
    image_id = config.image_id.removeprefix("sha256:")
    hexpart = wanted.removeprefix("sha256:")
    if wanted.startswith("sha256:"):
        return bool(hexpart) and image_id.startswith(hexpart)
    return (
        len(hexpart) >= 12
        and re.fullmatch(r"[0-9a-f]+", hexpart) is not None
        and (image_id.startswith(hexpart))
    )
