"""What to run, with docker's semantics: the command line from Entrypoint and Cmd, the
environment, the working directory and the user (resolved in the image's own /etc/passwd and
/etc/group, from inside the container's root)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspect_tool.errors import UsageError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# docker's default capability set (moby oci/caps/defaults.go)
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
CAPABILITY_NUMBERS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def command_line(
    config: Mapping[str, Any], args: Sequence[str], entrypoint: str | None
) -> list[str]:
    """docker run's rules: arguments replace Cmd; ``--entrypoint`` replaces Entrypoint and
    then also drops the image's Cmd."""
    image_entrypoint = list(config.get("Entrypoint") or [])
    image_cmd = list(config.get("Cmd") or [])
    if entrypoint is not None:
        first = [entrypoint] if entrypoint else []
        argv = first + list(args)
    else:
        argv = image_entrypoint + (list(args) if args else image_cmd)
    if not argv:
        raise UsageError("no command specified: the image has no Entrypoint or Cmd")
    return argv


def environment(config: Mapping[str, Any], extra: Sequence[str], hostname: str) -> list[str]:
    """The image's Env, then ``-e`` values; PATH and HOSTNAME as docker sets them."""
    env: dict[str, str] = {}
    for item in [*(config.get("Env") or []), *extra]:
        name, sep, value = str(item).partition("=")
        if not sep:  # "-e NAME" passes the caller's value through, as docker does
            if name in os.environ:
                env[name] = os.environ[name]
            continue
        env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = hostname
    return [f"{k}={v}" for k, v in env.items()]


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str | None


def resolve_user(spec: str, passwd: str, group: str) -> User:
    """``name``, ``uid``, ``name:group`` or ``uid:gid`` against the image's own files."""
    spec = spec or "root"
    user_part, _, group_part = spec.partition(":")
    users = [line.split(":") for line in passwd.splitlines() if line.count(":") >= 6]
    groups = [line.split(":") for line in group.splitlines() if line.count(":") >= 3]
    entry = next((u for u in users if u[0] == user_part), None)
    if entry is None and user_part.isdigit():
        entry = next((u for u in users if u[2] == user_part), None)
    if entry is None:
        if not user_part.isdigit():
            raise UsageError(f"unable to find user {user_part}: no matching entries in passwd")
        uid, gid, home, name = int(user_part), int(user_part), "/", None
    else:
        uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
    if group_part:
        match = next((g for g in groups if g[0] == group_part), None)
        if match is not None:
            gid = int(match[2])
        elif group_part.isdigit():
            gid = int(group_part)
        else:
            raise UsageError(f"unable to find group {group_part}: no matching entries in group")
    supplementary = tuple(
        int(g[2]) for g in groups if name and name in g[3].split(",") and g[2].isdigit()
    )
    return User(uid, gid, tuple(sorted({gid, *supplementary})), home, name)


def read_env_file(path: str, text: str) -> list[str]:
    """docker's ``--env-file``: one ``KEY=VALUE`` a line, taken as written (no quotes
    removed, no expansion); blank lines and lines starting with ``#`` skipped; a ``KEY``
    alone passes the caller's value through (it is left out when unset)."""
    found = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not name or any(c.isspace() for c in name):
            raise UsageError(f"line {number}: variable {name!r} has white space", subject=path)
        if sep:
            found.append(f"{name}={value}")
        elif name in os.environ:
            found.append(f"{name}={os.environ[name]}")
    return found


def labels(config: Mapping[str, Any], given: Sequence[str]) -> dict[str, str]:
    """The image's Labels, then ``--label KEY=VALUE`` (a ``KEY`` alone is an empty value)."""
    found = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    for item in given:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        found[key] = value
    return found


VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]+")
VOLUME_OPTIONS = ("ro", "rw", "nocopy")


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """One ``-v``: ``HOST:CONTAINER[:OPTS]`` (a bind mount of an existing host path),
    ``NAME:CONTAINER[:OPTS]`` (a named volume) or ``CONTAINER`` (an anonymous volume)."""

    kind: str  # "bind" or "volume"
    source: str  # the host path (absolute), the volume's name, or "" (anonymous)
    destination: str  # absolute, in the container
    read_only: bool = False
    copy: bool = True  # a new, empty volume gets the image's files at the destination


def parse_volume(text: str, cwd: str) -> VolumeSpec:
    parts = text.split(":")
    if not text or len(parts) > 3:
        raise UsageError(f"-v {text!r}: expected [HOST-PATH|NAME:]CONTAINER-PATH[:ro]")
    options: list[str] = []
    if len(parts) == 3:
        options = parts[2].split(",")
    if len(parts) == 1:
        source, destination = "", parts[0]
    else:
        source, destination = parts[0], parts[1]
    bad = [o for o in options if o not in VOLUME_OPTIONS]
    if bad or ("ro" in options and "rw" in options):
        raise UsageError(f"-v {text!r}: options are ro, rw and nocopy")
    if not destination.startswith("/"):
        raise UsageError(f"-v {text!r}: the container path must be absolute")
    destination = os.path.normpath(destination)
    if destination == "/":
        raise UsageError(f"-v {text!r}: the container path cannot be /")
    read_only = "ro" in options
    if source.startswith(("/", ".")):
        host = os.path.normpath(os.path.join(cwd, source))
        if not os.path.exists(host):  # docker's -v would create it: dockscope does not
            raise UsageError(f"-v {text!r}: the host path {host} does not exist")
        if "nocopy" in options:
            raise UsageError(f"-v {text!r}: nocopy is for volumes, not host paths")
        return VolumeSpec("bind", host, destination, read_only, copy=False)
    if source and not VOLUME_NAME.fullmatch(source):
        raise UsageError(
            f"-v {text!r}: {source!r} is not a volume name ([A-Za-z0-9][A-Za-z0-9_.-]+) nor a "
            "path (start it with / or ./)"
        )
    return VolumeSpec("volume", source, destination, read_only, copy="nocopy" not in options)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """``--restart``: ``no``, ``always`` or ``on-failure[:N]`` (N retries at most; 0 or none
    means no limit), as docker's restart manager reads it."""

    name: str = "no"
    maximum: int = 0

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        name, _, count = text.partition(":")
        if name not in ("no", "always", "on-failure"):
            raise UsageError(f"--restart {text!r}: use no, always or on-failure[:N]")
        if not count:
            return cls(name)
        if name != "on-failure":
            raise UsageError(f"--restart {text!r}: only on-failure takes a retry count")
        if not count.isdigit():
            raise UsageError(f"--restart {text!r}: the retry count must be a number")
        return cls(name, int(count))

    def __str__(self) -> str:
        return f"{self.name}:{self.maximum}" if self.maximum else self.name

    def wants_restart(self, exit_code: int, restarts: int) -> bool:
        """Whether an exit with ``exit_code`` calls for another start, after ``restarts``."""
        if self.name == "always":
            return True
        if self.name == "on-failure":
            return exit_code != 0 and (self.maximum == 0 or restarts < self.maximum)
        return False
