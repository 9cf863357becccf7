"""User namespaces: how an ordinary user becomes root of a namespace of its own (rootless).

A process that calls ``unshare(CLONE_NEWUSER)`` gets every capability *in the new namespace*,
and nowhere else; until its uid and gid maps are written it is ``nobody`` there (65534). The
maps are written once, by a process outside, to ``/proc/PID/uid_map`` and ``gid_map``:

- with a range in ``/etc/subuid`` and ``/etc/subgid`` (``usermod --add-subuids``) and the
  set-uid helpers ``newuidmap``/``newgidmap`` (Debian's ``uidmap``), the user maps itself to 0
  and its subordinate range to 1…N, as podman does: ``0 UID 1`` and ``1 START COUNT``. Image
  files owned by uid 1000 are then owned on the host by ``START + 999``;
- without them, an unprivileged process may only map its own uid and gid (one line each,
  ``0 UID 1``), and only after writing ``deny`` to ``/proc/PID/setgroups`` (so that a group
  it was in can never be dropped to gain access). Every other id is unmapped: shown as
  ``nobody`` (65534), and ``chown`` to it fails.

``enter`` does this for the running dockscope command, as podman re-executes itself in its
user namespace: it forks, the child unshares, the parent (still outside) writes the maps and
then only waits and passes the child's exit status on; the child carries on with the command
as uid 0 of the new namespace. Everything it then makes (the layer store, mounts, the
container's other namespaces) belongs to that namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from runtime_lab.kernel import linux

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
PR_SET_DUMPABLE = 4
OVERFLOW_ID = 65534  # what an unmapped id is shown as (/proc/sys/kernel/overflowuid)


class UsernsError(OSError):
    """The user namespace could not be made or mapped."""


@dataclass(frozen=True, slots=True)
class IdRange:
    """One line of a uid_map or gid_map: ids ``inside``… are ``outside``… on the host."""

    inside: int
    outside: int
    count: int

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"


@dataclass(slots=True)
class MapPlan:
    """The maps to write, and how: ``subid`` (newuidmap/newgidmap with the ranges of
    /etc/subuid and /etc/subgid) or ``single`` (this user's own ids only, setgroups denied)."""

    mode: str
    uid_map: list[IdRange]
    gid_map: list[IdRange]
    reason: str  # why this mode (for the trace)
    commands: list[list[str]] = field(default_factory=list)  # what was run or written

    def maps_id(self, uid: int) -> bool:
        return any(r.inside <= uid < r.inside + r.count for r in self.uid_map)


def subordinate_ranges(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    """The ranges /etc/subuid (or subgid) gives ``user`` (by name or by number): (start,
    count) pairs; a file that is missing or unreadable gives none."""
    found: list[tuple[int, int]] = []
    try:
        with open(path) as f:
            text = f.read(1 << 20)
    except OSError:
        return found
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        with contextlib.suppress(ValueError):
            start, count = int(parts[1]), int(parts[2])
            if start > 0 and count > 0:
                found.append((start, count))
    return found


def plan_maps(uid: int | None = None, gid: int | None = None) -> MapPlan:
    """The maps for this user: its subordinate ranges when it has both and the helpers are
    installed, else its own ids alone."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    subuids = subordinate_ranges(SUBUID, name, uid)
    subgids = subordinate_ranges(SUBGID, name, uid)
    helpers = shutil.which("newuidmap") and shutil.which("newgidmap")
    own_uid, own_gid = IdRange(0, uid, 1), IdRange(0, gid, 1)
    if subuids and subgids and helpers:
        return MapPlan(
            "subid",
            [own_uid, IdRange(1, subuids[0][0], subuids[0][1])],
            [own_gid, IdRange(1, subgids[0][0], subgids[0][1])],
            f"{SUBUID} and {SUBGID} give {name} a range; newuidmap and newgidmap write it",
        )
    if not helpers:
        why = "newuidmap/newgidmap are not installed (Debian: uidmap)"
    else:
        missing = [p for p, r in ((SUBUID, subuids), (SUBGID, subgids)) if not r]
        why = f"no range for {name} in {' and '.join(missing)}"
    return MapPlan("single", [own_uid], [own_gid], f"{why}: only the user's own ids are mapped")


def _write_maps(pid: int, plan: MapPlan) -> None:
    """From outside the namespace: its maps written (by the helpers, or directly)."""
    if plan.mode == "subid":
        for tool, ranges in (("newuidmap", plan.uid_map), ("newgidmap", plan.gid_map)):
            argv = [tool, str(pid)] + [
                str(n) for r in ranges for n in (r.inside, r.outside, r.count)
            ]
            plan.commands.append(argv)
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise UsernsError(
                    f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}"
                )
        return
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", "\n".join(r.line() for r in plan.uid_map)),
        ("gid_map", "\n".join(r.line() for r in plan.gid_map)),
    ):
        path = f"/proc/{pid}/{name}"
        plan.commands.append(["echo", text, ">", path])
        try:
            with open(path, "w") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise UsernsError(f"echo '{text}' > {path}: {exc.strerror}") from None


def read_maps(pid: int | str = "self") -> dict[str, str]:
    """The maps as the kernel shows them (the evidence): uid_map, gid_map, setgroups."""
    found: dict[str, str] = {}
    for name in ("uid_map", "gid_map", "setgroups"):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                found[name] = f.read()
        except OSError:
            continue
    return found


# the evidence of ``enter``, for the trace of the command that runs inside
ENTERED: dict[str, Any] = {}


def in_own_namespace() -> bool:
    """Whether this process runs in a user namespace dockscope entered (``enter``)."""
    return bool(ENTERED)


def enter(plan: MapPlan | None = None) -> dict[str, Any]:
    """Move the rest of this command into a new user namespace, as its uid 0: returns (in the
    child) the evidence; the parent never returns (it waits and exits with the child's
    status). Raises UsernsError when the namespace cannot be made or mapped."""
    plan = plan or plan_maps()
    outer = {"uid": os.getuid(), "gid": os.getgid()}
    unshared_r, unshared_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(unshared_r)
        os.close(mapped_w)
        try:
            # the parent writes /proc/PID/*_map as the same user: a process that dropped
            # privileges (setuid from root) is not dumpable and its /proc files stay root's
            linux.prctl(PR_SET_DUMPABLE, 1)
            # killed with the process outside, as a container dies with dockscope as root
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(137)
            linux.unshare(int(linux.Clone.NEWUSER))
        except OSError as exc:
            os.write(unshared_w, json.dumps({"error": f"unshare(CLONE_NEWUSER): {exc}"}).encode())
            os._exit(125)
        os.write(unshared_w, b"{}")
        os.close(unshared_w)
        answer = _read_all(mapped_r)
        os.close(mapped_r)
        told = json.loads(answer or b'{"error": "dockscope ended before the maps were written"}')
        if "error" in told:
            raise UsernsError(told["error"])
        evidence = {
            "mode": plan.mode,
            "reason": plan.reason,
            "outside": outer,
            "inside": {"uid": os.getuid(), "gid": os.getgid()},
            "commands": [" ".join(argv) for argv in told["commands"]],
            **read_maps(),
            "user_namespace": os.stat("/proc/self/ns/user").st_ino,
            "outer_pid": os.getppid(),
        }
        ENTERED.update(evidence)
        return evidence
    os.close(unshared_w)
    os.close(mapped_r)
    _wait_outside(pid, plan, unshared_r, mapped_w)
    raise AssertionError("not reached")  # pragma: no cover


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_outside(pid: int, plan: MapPlan, unshared_r: int, mapped_w: int) -> None:
    """The parent's part: write the maps, then wait for the child and exit as it did. The
    terminal's Ctrl-C reaches the child itself; SIGTERM and SIGHUP are passed on."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, _frame: _pass_on(pid, signum))
    told = json.loads(_read_all(unshared_r) or b'{"error": "the child ended"}')
    os.close(unshared_r)
    if "error" not in told:
        try:
            _write_maps(pid, plan)
            told = {"commands": plan.commands}
        except (OSError, subprocess.SubprocessError) as exc:
            told = {"error": str(exc)}
    with contextlib.suppress(OSError):
        os.write(mapped_w, json.dumps(told).encode())
    os.close(mapped_w)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    if "error" in told and os.WEXITSTATUS(status) == 125:
        os.write(2, f"dockscope: cannot make a user namespace: {told['error']}\n".encode())
    os._exit(os.WEXITSTATUS(status))


def _pass_on(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
