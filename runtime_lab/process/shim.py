"""The container's processes: the shim that unshares the namespaces, and PID 1.

dockscope forks the *shim*; the shim waits until dockscope has put it into the control group,
unshares the namespaces and forks *init*, which becomes PID 1 of the new PID namespace. Init
mounts the root filesystem inside its private mount namespace (so every mount vanishes with
the container, even if dockscope is killed), pivots into it, drops privileges and executes the
command. Both report each step up an events pipe; with ``--step`` each waits for dockscope's
go-ahead before acting.

If dockscope dies, the shim dies (PR_SET_PDEATHSIG), then init, and with PID 1 the kernel
kills every process of the namespace: nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal

from runtime_lab.kernel import linux
from runtime_lab.process.init import run_init
from runtime_lab.process.launch import LaunchSpec, StepReporter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run_shim(spec: LaunchSpec, events_fd: int, go_fd: int, ack_fd: int) -> int:
    """In the forked shim: unshare, fork PID 1, wait for it. Returns the exit code."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # dockscope already died
        return 1
    child = StepReporter(events_fd, ack_fd, spec.stepping)
    if os.read(go_fd, 1) != b"g":
        return 1
    os.close(go_fd)
    _join_namespaces(spec, child)
    flags = linux.Clone.NEWNS | linux.Clone.NEWUTS | linux.Clone.NEWCGROUP
    for kind, flag in (("ipc", linux.Clone.NEWIPC), ("pid", linux.Clone.NEWPID)):
        if kind not in spec.join and kind not in spec.share:
            flags |= flag
    if spec.network in ("none", "bridge"):  # bridge: dockscope plugs a veth in (step veth)
        flags |= linux.Clone.NEWNET
    before = linux.namespace_inodes()

    def unshare() -> dict[str, Any]:
        linux.unshare(int(flags))
        # the PID namespace is not among the changes yet: it is for the children, and appears
        # (as /proc/self/ns/pid_for_children) with the first one, PID 1 (see fork-init)
        return {"namespaces_before": before, "namespaces_after": linux.namespace_inodes()}

    flag_names = [f"CLONE_{f.name}" for f in linux.Clone if f & flags]
    child.run("unshare", unshare, args={"flags": flag_names})
    child.before("fork-init")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = run_init(spec, child)
        except BaseException:  # the reason was reported as an event
            code = 126 if code == 1 else code
        finally:
            os._exit(code)
    if spec.release_fd is not None:  # PID 1's to wait on
        os.close(spec.release_fd)
    evidence: dict[str, Any] = {"host_pid": pid, "container_pid": _pid_inside(pid)}
    with contextlib.suppress(OSError):  # exists once the namespace has its first process
        evidence["pid_namespace"] = os.stat("/proc/self/ns/pid_for_children").st_ino
    child.done("fork-init", args={"pid": pid}, evidence=evidence)
    os.close(events_fd)
    # the shim holds none of the container's streams: they end when the container does
    for fd in (spec.stdin_fd, spec.stdout_fd, spec.stderr_fd, spec.console_fd):
        if fd is not None:
            os.close(fd)
    _, status = os.waitpid(pid, 0)
    return linux.exit_code(status)


JOIN_ORDER = ("ipc", "net", "pid")


CLONE_FLAGS = {"ipc": linux.Clone.NEWIPC, "net": linux.Clone.NEWNET, "pid": linux.Clone.NEWPID}


def _join_namespaces(spec: LaunchSpec, child: StepReporter) -> None:
    """--net/--pid/--ipc container:NAME: setns into that container's namespace instead of
    unsharing a new one (as a pod's containers join its pause container's). Every file is
    opened before any is joined."""
    own = linux.namespace_inodes()
    opened: dict[str, int] = {}
    try:
        for kind in JOIN_ORDER:
            if kind in spec.join:
                path = f"/proc/{spec.join[kind]}/ns/{kind}"
                opened[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        for kind, fd in opened.items():
            flag = CLONE_FLAGS[kind]
            target = os.fstat(fd).st_ino

            def join(
                fd: int = fd,
                flag: linux.Clone = flag,
                before: int | None = own.get(kind),
                target: int = target,
            ) -> dict[str, Any]:
                linux.setns(fd, int(flag))
                return {"before": before, "container": target}

            child.run(
                "setns",
                join,
                args={
                    "namespace": kind,
                    "path": f"/proc/{spec.join[kind]}/ns/{kind}",
                    "nstype": f"CLONE_{flag.name}",
                },
            )
    finally:
        for fd in opened.values():
            os.close(fd)


def _pid_inside(pid: int) -> int | None:
    """A child's PID in its own PID namespace: the last NSpid of /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None
