"""What to run, with docker's semantics: the command line from Entrypoint and Cmd, the
environment, the working directory and the user (resolved in the image's own /etc/passwd and
/etc/group, from inside the container's root)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inspect_tool.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


def environment(
    config: Mapping[str, Any], extra: Sequence[str], hostname: str, *, tty: bool = False
) -> list[str]:
    """The image's Env, then ``-e`` values; PATH and HOSTNAME as docker sets them, and with
    ``tty`` (-t) TERM=xterm unless the image or -e sets TERM (docker's daemon does the same
    for run -t and exec -t)."""
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
    if tty:
        env.setdefault("TERM", "xterm")
    return [f"{k}={v}" for k, v in env.items()]


@dataclass(frozen=True, slots=True)
class User:
    """Who the container's process runs as, resolved against the image's files."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str | None


MAX_ID = (1 << 31) - 1  # runc's bound for a uid or gid (32-bit systems' compatibility)


def _id(text: str) -> int | None:
    """A uid or gid as runc reads it (strconv.Atoi: an optional sign, then digits)."""
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


def _in_range(number: int) -> int:
    if not 0 <= number <= MAX_ID:
        raise UsageError(f"uids and gids must be in range 0-{MAX_ID}")
    return number


def resolve_user(spec: str, passwd: str, group: str) -> User:
    """``""``, ``name``, ``uid``, ``name:group`` or ``uid:gid`` against the image's own
    files, with runc's rules (moby/sys/user ``GetExecUser``, as docker resolves a
    container's user). ``passwd`` and ``group`` are the files' text ("" when the image has
    none: that is the same as a file with no entries):

    - ``""`` (no User): uid 0, gid 0, with its passwd entry (home, groups) when there is one;
      so an image without /etc/passwd runs as root.
    - a number is always a uid (never a name); one without an entry is used as is, gid 0.
    - a name must have an entry ("unable to find user NAME"), even ``root``.
    - a group given is looked up the same way (a number is a gid); supplementary groups only
      when the user has an entry and no group was given.
    """
    user_part, _, group_part = spec.partition(":")
    users = [
        (fields + [""] * 7)[:7]
        for line in passwd.splitlines()
        if (fields := line.strip().split(":")) != [""]
    ]
    groups = [
        (fields + [""] * 4)[:4]
        for line in group.splitlines()
        if (fields := line.strip().split(":")) != [""]
    ]
    wanted_uid = 0 if user_part == "" else _id(user_part)
    if user_part == "" or wanted_uid is not None:
        entry = next((u for u in users if _id(u[2]) == wanted_uid), None)
    else:
        entry = next((u for u in users if u[0] == user_part), None)
    uid, gid, home, name = 0, 0, "/", None
    if entry is not None:
        uid, gid, home, name = _id(entry[2]) or 0, _id(entry[3]) or 0, entry[5] or "/", entry[0]
    elif wanted_uid is None:
        raise UsageError(f"unable to find user {user_part}: no matching entries in passwd file")
    else:
        uid = _in_range(wanted_uid)
    supplementary: tuple[int, ...] = ()
    if group_part:
        wanted_gid = _id(group_part)
        match = next(
            (
                g
                for g in groups
                if (_id(g[2]) == wanted_gid if wanted_gid is not None else g[0] == group_part)
            ),
            None,
        )
        if match is not None:
            gid = _id(match[2]) or 0
        elif wanted_gid is None:
            raise UsageError(
                f"unable to find group {group_part}: no matching entries in group file"
            )
        else:
            gid = _in_range(wanted_gid)
    elif name:
        supplementary = tuple(
            _id(g[2]) or 0 for g in groups if name in g[3].split(",") and _id(g[2]) is not None
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


# uname's machine → the architecture (and variant) an image config names, Go's spelling
_MACHINES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "ppc64": ("ppc64", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "loongarch64": ("loong64", None),
}


def host_platform(machine: str | None = None) -> tuple[str, str, str | None]:
    """This machine's platform as an image config spells it: (os, architecture, variant)."""
    machine = machine or os.uname().machine
    architecture, variant = _MACHINES.get(machine, (machine, None))
    return "linux", architecture, variant


def platform_text(os_name: str, architecture: str, variant: str | None) -> str:
    return "/".join(part for part in (os_name, architecture, variant) if part)


def platform_mismatch(
    image_config: Mapping[str, Any], machine: str | None = None
) -> tuple[str, str] | None:
    """(the image's platform, the host's) when the image's config names a platform this
    machine cannot run natively, as docker's check (containerd's ``platforms.Only``) finds
    it: another os or architecture; for 32-bit arm, a newer variant than the host's (a v7
    host runs v5, v6 and v7). None when they match or the config names no architecture."""
    host_os, host_arch, host_variant = host_platform(machine)
    image_os = str(image_config.get("os") or "linux")
    image_arch = str(image_config.get("architecture") or "")
    image_variant = image_config.get("variant")
    image_variant = str(image_variant) if image_variant else None
    if not image_arch:
        return None
    # a 64-bit arm host runs 32-bit arm images too (docker's default platform matcher does)
    same = image_os == host_os and (
        image_arch == host_arch or (host_arch == "arm64" and image_arch == "arm")
    )
    if same and image_arch == "arm" and host_arch == "arm" and image_variant and host_variant:
        same = image_variant <= host_variant
    if same:
        return None
    return (
        platform_text(image_os, image_arch, image_variant),
        platform_text(host_os, host_arch, host_variant),
    )


def platform_warning(image: str, host: str) -> str:
    """docker's warning, word for word."""
    return (
        f"The requested image's platform ({image}) does not match the detected host platform "
        f"({host}) and no specific platform was requested"
    )


def exec_format_hint(mismatch: tuple[str, str] | None) -> str:
    """Why execve failed with ENOEXEC, for the one line PID 1 (or exec) prints."""
    if mismatch is not None:
        image, host = mismatch
        return (
            f"the image is built for {image} and this host is {host}: its programs cannot "
            "run here unless an emulator for them is registered (binfmt_misc, qemu-user-static)"
        )
    return (
        "not a program this kernel can run (a binary for another architecture, or a "
        "script without #!)"
    )
