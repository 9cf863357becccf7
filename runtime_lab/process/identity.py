"""Who the command runs as: the user and groups from the image's own /etc/passwd and
/etc/group, and the capabilities it keeps (docker's default set)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from runtime_lab.kernel import linux
from runtime_lab.spec import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES, resolve_user

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


USER_DB_LIMIT = 1 << 20  # bytes read of the image's /etc/passwd and /etc/group


def read_user_db(path: str) -> tuple[str, str | None]:
    """The image's /etc/passwd or /etc/group (read inside the container's root, so a symlink
    stays in it) and, when it was not read, why. Only a regular file is read: opening a FIFO
    would block PID 1 before the command ever runs, so the file is opened non-blocking
    (and never as a controlling terminal) and checked with fstat before any read; at most
    ``USER_DB_LIMIT`` bytes. Anything else counts as missing, as for docker."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return "", None if exc.errno == errno.ENOENT else f"{path}: {exc.strerror}"
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return "", f"{path}: not a regular file (ignored)"
        return f.read(USER_DB_LIMIT).decode("utf-8", "replace"), None


def switch_user(spec_user: str, holder: dict[str, Any], terminal: int | None) -> dict[str, Any]:
    passwd, passwd_problem = read_user_db("/etc/passwd")
    group, group_problem = read_user_db("/etc/group")
    ignored = [p for p in (passwd_problem, group_problem) if p]
    user = resolve_user(spec_user, passwd, group)
    holder.update(uid=user.uid, home=user.home)
    if terminal is not None:  # the user owns the terminal, as with a login
        os.fchown(terminal, user.uid, -1)
    # rootless with a single-ID map, setgroups is denied (/proc/self/setgroups: deny): the
    # groups stay as they were, as runc leaves them there
    groups_denied = _read("/proc/self/setgroups").strip() == "deny"
    if not groups_denied:
        os.setgroups(list(user.groups))
    try:
        os.setgid(user.gid)
        if user.uid != 0:
            # keep the capabilities long enough to reduce the bounding set afterwards
            linux.prctl(8, 1)  # PR_SET_KEEPCAPS
        os.setuid(user.uid)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise OSError(  # one line for the run's message, without "[Errno 22]"
            f"uid {user.uid} or gid {user.gid} is not mapped in the container's user namespace "
            f"(uid_map: {' '.join(_read('/proc/self/uid_map').split())})",
        ) from None
    evidence: dict[str, Any] = {
        "uid": user.uid,
        "gid": user.gid,
        "groups": list(user.groups),
        "home": user.home,
    }
    if ignored:
        evidence["ignored"] = ignored
    if groups_denied:
        evidence["setgroups"] = "denied in this user namespace: supplementary groups not set"
    return evidence


def drop_capabilities(uid: int, names: Sequence[str] = DEFAULT_CAPABILITIES) -> dict[str, Any]:
    """Keep only ``names`` (docker's default set unless --cap-add/--cap-drop/--privileged
    changed it): every other capability leaves the bounding set, for good."""
    keep = {CAPABILITY_NUMBERS[name] for name in names}
    last = int(_read("/proc/sys/kernel/cap_last_cap").strip() or 40)
    if uid != 0:
        # setuid to a non-root user cleared the effective set (PR_SET_KEEPCAPS kept only the
        # permitted one), and PR_CAPBSET_DROP needs CAP_SETPCAP effective: raise it again
        permitted = int(_status_field("CapPrm") or "0", 16)
        linux.capset(permitted, permitted, 0)
    dropped = []
    for cap in range(last + 1):
        if cap not in keep:
            linux.drop_bounding_capability(cap)
            dropped.append(cap)
    mask = sum(1 << cap for cap in keep)
    # the host may run dockscope itself without some capabilities (a container, a sandbox):
    # a set cannot grow beyond what this process holds, so those are named, not asked for
    held = int(_status_field("CapPrm") or "0", 16)
    unavailable = [cap for cap in sorted(keep) if not held >> cap & 1]
    mask &= held
    if uid == 0:
        # nothing inheritable, as docker since 23.0 (CVE-2022-24769)
        linux.capset(mask, mask, 0)
    else:
        linux.capset(0, 0, 0)  # a non-root user keeps none, as with docker
    status = {name: _status_field(name) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd")}
    evidence: dict[str, Any] = {"dropped": dropped, "status": status}
    if unavailable:
        evidence["unavailable"] = unavailable  # kept, but dockscope itself lacks them
    return evidence


def _status_field(name: str) -> str | None:
    """One field of /proc/self/status (``CapEff`` → ``00000000a80425fb``)."""
    for line in _read("/proc/self/status").splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return None
