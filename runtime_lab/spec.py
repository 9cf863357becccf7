"""What to run, with docker's semantics: the command line from Entrypoint and Cmd, the
environment, the working directory and the user (resolved in the image's own /etc/passwd and
/etc/group, from inside the container's root)."""

from __future__ import annotations

import os
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
