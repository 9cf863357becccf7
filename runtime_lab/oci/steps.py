"""The steps of an OCI runtime, as trace events: the same ids as ``dockscope run``'s where the
operation is the same (unshare, pivot_root, capabilities, seccomp…), and the runtime spec's own
(a mount of config.json, a hook, the exec FIFO that ``start`` opens)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from runtime_lab.process.launch import StepReporter
from runtime_lab.trace.events import Event
from runtime_lab.trace.steps import STEPS, Step


def _step(id: str, title: str, syscall: str | None, explanation: str, where: str) -> Step:
    return Step(id, title, syscall, explanation, where)


OCI_STEPS: dict[str, Step] = {
    s.id: s
    for s in (
        _step(
            "bundle",
            "Read the bundle's config.json",
            "open",
            "The engine wrote what to run in config.json (OCI runtime spec): the process, the "
            "root, the mounts, the namespaces, the limits; a field dockscope does not implement "
            "is refused, never ignored.",
            "runtime",
        ),
        _step(
            "cgroup-create",
            "Make the control group(s) at cgroupsPath",
            "mkdir",
            "The engine chose where the container's group lives (linux.cgroupsPath); on cgroup "
            "v1 one directory in each hierarchy.",
            "runtime",
        ),
        _step(
            "cgroup-limits",
            "Write linux.resources into the group",
            "write",
            "Memory, CPU, PIDs and the device rules of linux.resources become cgroup files.",
            "runtime",
        ),
        _step(
            "cgroup-attach",
            "Put the first child into the group",
            "write",
            "Writing a PID to cgroup.procs moves the process; its children are born inside.",
            "runtime",
        ),
        STEPS["setns"],
        STEPS["unshare"],
        STEPS["fork-init"],
        STEPS["mount-private"],
        _step(
            "hostname",
            "Set the hostname",
            "sethostname",
            "config.json's hostname, in the container's own UTS namespace.",
            "init",
        ),
        STEPS["loopback"],
        _step(
            "mount-rootfs",
            "Bind the bundle's root onto itself",
            "mount",
            "pivot_root needs a mount point: root.path (the engine's overlay, already mounted) "
            "is bound onto itself.",
            "init",
        ),
        _step(
            "mount",
            "Mount one entry of config.json's mounts",
            "mount",
            "Each mount in order, its destination resolved inside the root (symlinks cannot "
            "lead out), its options turned into mount(2) flags and data.",
            "init",
        ),
        _step(
            "devices",
            "Make the device nodes",
            "mknod",
            "runc's default devices (null, zero, full, random, urandom, tty) and linux.devices, "
            "plus /dev/fd, stdin, stdout, stderr and ptmx links.",
            "init",
        ),
        _step(
            "hook",
            "Run a hook",
            "execve",
            "config.json's hooks run at the points the spec names, each given the container's "
            "state on its stdin.",
            "runtime",
        ),
        STEPS["tty"],
        STEPS["pivot_root"],
        _step(
            "sysctl",
            "Write linux.sysctl",
            "write",
            "Namespaced kernel parameters, written under the container's /proc/sys.",
            "init",
        ),
        _step(
            "readonly-paths",
            "Make linux.readonlyPaths read-only",
            "mount",
            "Each path bound onto itself, then remounted read-only.",
            "init",
        ),
        _step(
            "masked-paths",
            "Mask linux.maskedPaths",
            "mount",
            "Directories under an empty read-only tmpfs, files under /dev/null.",
            "init",
        ),
        _step(
            "rootfs-propagation",
            "Set the root's propagation",
            "mount",
            "linux.rootfsPropagation: whether mounts spread between the container and the host.",
            "init",
        ),
        STEPS["readonly-rootfs"],
        _step(
            "created",
            "Wait for start",
            "open",
            "The container is created: PID 1 blocks opening the exec FIFO for writing until "
            "`start` opens it for reading.",
            "init",
        ),
        _step(
            "start",
            "Release PID 1",
            "open",
            "start opens the exec FIFO: PID 1 goes on to execute the process.",
            "runtime",
        ),
        _step(
            "user",
            "Become process.user",
            "setgroups/setgid/setuid",
            "The numeric uid, gid and additionalGids of config.json (no lookup: the engine "
            "resolved names).",
            "init",
        ),
        _step(
            "capabilities",
            "Set the five capability sets",
            "prctl/capset",
            "The bounding set is reduced first, then effective, permitted and inheritable are "
            "set, then the ambient ones raised.",
            "init",
        ),
        _step(
            "rlimits",
            "Set process.rlimits",
            "setrlimit",
            "Each limit, soft and hard, as the engine asked.",
            "init",
        ),
        STEPS["no_new_privs"],
        STEPS["seccomp"],
        STEPS["exec"],
        _step(
            "kill",
            "Send a signal",
            "kill",
            "kill sends the signal to PID 1 (or, with --all, to every process of the group).",
            "runtime",
        ),
        _step(
            "delete",
            "Delete the container",
            "rmdir",
            "The groups and the state are removed; poststop hooks run.",
            "runtime",
        ),
        _step(
            "exec-process",
            "Start one more process in the container",
            "setns/fork/execve",
            "exec joins the container's namespaces and group, then runs process.json.",
            "runtime",
        ),
    )
}


def event(step_id: str, **fields: Any) -> Event:
    step = OCI_STEPS[step_id]
    return Event(
        step=step.id,
        title=step.title,
        explanation=step.explanation,
        syscall=step.syscall,
        **fields,
    )


class Reporter(StepReporter):
    """``StepReporter`` over the OCI catalogue, writing each event to the trace file (opened
    with O_APPEND before fork, so that PID 1 keeps it after pivot_root) or nowhere."""

    def __init__(self, trace_fd: int | None) -> None:
        super().__init__(trace_fd if trace_fd is not None else -1, -1, False)
        self.trace_fd = trace_fd

    def event(self, step_id: str, **fields: Any) -> Event:
        if self.host_pid is not None:
            fields.setdefault("host_pid", self.host_pid)
        return event(step_id, **fields)

    def done(self, step_id: str, **fields: Any) -> None:
        if self.trace_fd is not None:
            write_event(self.trace_fd, self.event(step_id, **fields))


def write_event(fd: int, ev: Event) -> None:
    """One JSON line (an O_APPEND write of a whole line: lines of several processes do not
    interleave)."""
    data = (ev.to_json() + "\n").encode()
    with contextlib.suppress(OSError):  # a trace that cannot be written never stops the container
        os.write(fd, data)
