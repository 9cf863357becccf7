"""What the shim and PID 1 are given (``LaunchSpec``), how each reports its steps up the
events pipe (``StepReporter``), and waiting for a process that may already be gone."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inspect_tool.render.text import visible  # imported here: PID 1 cannot import after pivot_root
from runtime_lab.kernel.cgroups import process_exists
from runtime_lab.trace.events import Event, PipeEmitter
from runtime_lab.trace.steps import STEPS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime_lab.kernel.seccomp import Filter


@dataclass(slots=True)
class LaunchSpec:
    """What the shim and PID 1 are given: the root file system, the command and its settings."""

    merged: str
    lowerdirs: list[str]  # bottom first
    upper: str
    work: str
    rootfs_mode: str  # "overlay" or "copy" (merged is then a plain directory)
    hostname: str
    network: str  # "none", "bridge", "host" or "container:<id>" (joined: see ``join``)
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    stepping: bool = False
    stdin_fd: int | None = None  # read end of the stdin pipe (-i); None: /dev/null
    stdout_fd: int | None = None  # write ends of the output pipes the watcher relays
    stderr_fd: int | None = None
    tty: bool = False  # -t: a terminal from the container's own devpts is stdin/out/err
    console_fd: int | None = None  # with -t: the socket the terminal's master goes up
    window: tuple[int, int] | None = None  # (rows, columns) to start the terminal with
    mounts: list[dict[str, Any]] = field(default_factory=list)  # -v, as in the config
    read_only: bool = False  # --read-only
    join: dict[str, int] = field(default_factory=dict)  # kind → PID whose namespace to join
    share: list[str] = field(default_factory=list)  # kinds kept from the host (--pid host)
    created_mountpoints: list[str] = field(default_factory=list)
    terminal: int | None = None  # init's side of the terminal (the slave), once allocated
    seccomp: Filter | None = None  # compiled by dockscope before fork; None: unconfined
    exec_hint: str | None = None  # why execve may fail with ENOEXEC (the image's platform)
    release_fd: int | None = None  # PID 1 reads "g" here once the shim has left the group
    capabilities: list[str] | None = None  # kept by the container's root (None: docker's)
    privileged: bool = False  # --privileged: no masked or read-only paths, /sys rw, all devices
    rootless: bool = False  # in a user namespace: overlayfs with userxattr, /dev's nodes bound
    network_files: list[dict[str, Any]] = field(default_factory=list)  # bridge: hosts, resolv


def exec_failure(command: str, exc: OSError, hint: str | None) -> str:
    """The one line PID 1 (or exec's process) prints when execve fails; for ENOEXEC ("Exec
    format error") it says why: usually an image of another platform."""
    line = f"dockscope: exec {visible(command)}: {exc.strerror}"
    if exc.errno == errno.ENOEXEC and hint:
        line += f": {hint}"
    return line


class StepReporter:
    """Step reporting inside a child: emit, optionally wait for a go-ahead, act, emit."""

    def __init__(self, events_fd: int, ack_fd: int, stepping: bool) -> None:
        self.out = PipeEmitter(events_fd)
        self.ack_fd = ack_fd
        self.stepping = stepping
        self.host_pid: int | None = None  # PID 1 also reports the PID the host sees it as

    def event(self, step_id: str, **fields: Any) -> Event:
        step = STEPS[step_id]
        if self.host_pid is not None:
            fields.setdefault("host_pid", self.host_pid)
        return Event(
            step=step.id,
            title=step.title,
            explanation=step.explanation,
            syscall=step.syscall,
            **fields,
        )

    def before(self, step_id: str, **fields: Any) -> None:
        if self.stepping:
            self.out.emit(self.event(step_id, phase="plan", **fields))
            os.read(self.ack_fd, 1)

    def done(self, step_id: str, **fields: Any) -> None:
        self.out.emit(self.event(step_id, **fields))

    def run(self, step_id: str, action: Callable[[], dict[str, Any] | None], **fields: Any) -> None:
        self.before(step_id, **fields)
        try:
            evidence = action() or {}
        except Exception as exc:  # OSError, or UsageError for a user the image lacks
            self.done(step_id, result=str(exc), **fields)
            raise
        self.done(step_id, evidence=evidence, **fields)


def wait_quietly(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a process (not our child) to vanish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_exists(pid):  # gone, or a zombie: dead all the same
            return True
        time.sleep(0.02)
    return False
