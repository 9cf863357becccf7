"""The kernel's wait before a process moves into a control group, taken early.

Moving a process (a write to ``cgroup.procs``) takes a global lock that every fork and exit
also takes, for reading. When no move happened for a while that lock is on its fast path, and
the first writer must wait for an RCU grace period to send the readers to the slow path: 5 to
30 ms on this kind of machine, holding the cgroup mutex meanwhile (a ``mkdir`` of a group
waits too). Writes that follow within about a grace period do not wait. podman pays it when
it moves conmon; crun on cgroup v2 avoids the move with ``clone3``'s ``CLONE_INTO_CGROUP``,
which v1 lacks.

``dockscope run`` starts that wait once it has parsed its command line, in a thread: it
writes its own PID to the group it is already in (the kernel moves nothing), then writes it
again every few milliseconds so the lock stays on its slow path while the interpreter imports
the rest, reads the image and makes the container's directories and group. The shim's attach
and release then find the lock ready. The cgroup-attach step's evidence shows the writes.
Best effort: a write refused ends the thread, recorded, and the attach waits as it would.
Each write briefly holds up every fork and exit on the machine, so the writes stop after
``LIFETIME`` seconds if no attach came (an image pulled or unpacked first): that attach
waits as it would have.
"""

from __future__ import annotations

import os
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
INTERVAL = 0.004  # seconds between writes: under one grace period
LIFETIME = 1.0  # seconds of writes at most (a warm run attaches within ~0.1 s)


class AttachWarmup:
    """The thread writing this process's PID to ``path`` (its own group's cgroup.procs)."""

    def __init__(self, path: str, since: str = "") -> None:
        self.path = path
        self.since = since  # when it began: "the command line was read", "the start began"
        self.writes = 0
        self.error: OSError | None = None
        self.expired = False  # stopped by LIFETIME, before any attach
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dockscope-warmup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        value = str(os.getpid()).encode()
        deadline = time.monotonic() + LIFETIME
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, value)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.error = exc
                return
            self.writes += 1
            if self._stop.wait(INTERVAL):
                return
            if time.monotonic() > deadline:
                self.expired = True
                return

    def stop(self) -> dict[str, Any]:
        """End the writes; what was written, for the trace."""
        self._stop.set()
        self._thread.join()
        found: dict[str, Any] = {"file": self.path, "value": str(os.getpid())}
        found["writes"] = self.writes
        if self.since:
            found["since"] = self.since
        if self.expired:
            found["expired"] = f"stopped after {LIFETIME:g} s, before the attach"
        if self.error is not None:
            found["refused"] = self.error.strerror or str(self.error)
        return found


_running: AttachWarmup | None = None


def procs_file(root: str = CGROUP_ROOT, proc_self: str = "/proc/self/cgroup") -> str | None:
    """This process's own group's cgroup.procs: on v1 in the pids hierarchy (or the first
    one of those dockscope uses that is mounted), on v2 in the unified one; None without."""
    from pathlib import Path

    from runtime_lab.kernel import cgroups

    try:
        groups = cgroups.own_cgroup_paths(proc_self)
        if cgroups.detect(Path(root)).version == 2:
            candidates: tuple[str, ...] = ("",)
        else:
            candidates = ("pids", *cgroups.V1_CONTROLLERS)
        for controller in candidates:
            if controller in groups and os.path.isdir(os.path.join(root, controller)):
                own = groups[controller].lstrip("/")
                return os.path.join(root, controller, own, "cgroup.procs")
    except (OSError, ValueError):
        pass
    return None


def begin(since: str = "", root: str = CGROUP_ROOT) -> AttachWarmup | None:
    """Start the writes (once per process; as root only: a user's run has no group);
    ``since`` says when, for the trace."""
    global _running
    if _running is None and os.geteuid() == 0:
        path = procs_file(root)
        if path is not None:
            _running = AttachWarmup(path, since)
    return _running


def end() -> dict[str, Any] | None:
    """Stop the writes begun in this process, if any; their evidence."""
    global _running
    running, _running = _running, None
    return None if running is None else running.stop()
