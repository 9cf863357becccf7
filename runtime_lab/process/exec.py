"""``dockscope exec``: a new process in a running container, made the way runc's nsexec and
nsenter make one.

dockscope forks a *helper*, writes its PID into the container's control group (so the helper
and what it starts count against the container's limits), then lets it go. The helper opens
``/proc/<PID 1>/ns/<kind>`` for every namespace first (after joining the mount namespace,
/proc is the container's), then calls ``setns`` on each, the mount namespace last: joining it
also sets the root and working directory to the container's root (what pivot_root left), so
no chroot is needed. ``setns`` on a PID namespace moves only the children, so the helper
forks: the child is in the container's PID namespace, under a number that is not 1. The
child becomes the container's user, drops capabilities as PID 1 did, forbids new privileges,
loads the container's seccomp filter (compiled by dockscope before the fork, as for run) and
executes the command. The helper waits for it and passes its status up; every step is a
trace event, as with run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspect_tool.errors import UsageError
from runtime_lab.kernel import cgroups, linux
from runtime_lab.lifecycle.children import (
    close_other_fds,
    forward_signals,
    restore_signals,
    wait_child,
)
from runtime_lab.lifecycle.create import seccomp_filter
from runtime_lab.lifecycle.start import StartIO
from runtime_lab.lifecycle.state import ContainerError, refresh, step_event
from runtime_lab.process.identity import drop_capabilities, switch_user
from runtime_lab.process.launch import StepReporter, exec_failure
from runtime_lab.process.terminal import open_terminal, set_stdio
from runtime_lab.spec import environment, exec_format_hint, platform_mismatch
from runtime_lab.storage.store import ContainerConfig, ContainerState, Store
from runtime_lab.streams import Hub, StreamPipes
from runtime_lab.trace.events import Event, Tracer

if TYPE_CHECKING:
    from runtime_lab.kernel.seccomp import Filter

# opened in this order, joined in this order: the mount namespace last, since after it
# /proc and every path are the container's
JOIN_ORDER = ("ipc", "uts", "net", "pid", "cgroup", "mnt")
CLONE_FLAGS = {
    "ipc": linux.Clone.NEWIPC,
    "uts": linux.Clone.NEWUTS,
    "net": linux.Clone.NEWNET,
    "pid": linux.Clone.NEWPID,
    "cgroup": linux.Clone.NEWCGROUP,
    "mnt": linux.Clone.NEWNS,
}


@dataclass(slots=True)
class ExecOptions:
    """The command ``dockscope exec`` runs and how, as given on its command line; what is not
    given is the container's own."""

    argv: list[str]
    env: list[str] = field(default_factory=list)  # added to the container's environment
    user: str | None = None  # default: the container's
    workdir: str | None = None  # default: the container's
    interactive: bool = False
    tty: bool = False


@dataclass(slots=True)
class _Launch:
    """Everything the exec helper needs, settled before the fork: the container process whose
    namespaces it joins, the command and its user, stdio, and the confinement PID 1 has."""

    target: int  # host PID of the container's main process
    argv: list[str]
    env: list[str]
    user: str
    workdir: str
    stdin_fd: int | None
    stdout_fd: int | None
    stderr_fd: int | None
    console_fd: int | None
    window: tuple[int, int] | None
    seccomp: Filter | None = None  # the container's filter (None: unconfined)
    exec_hint: str | None = None  # why execve may fail with ENOEXEC (the image's platform)
    capabilities: list[str] | None = None  # the container's (None: docker's default set)


@dataclass(frozen=True, slots=True)
class ExecResult:
    """How an exec ended: the command's exit code, and the step that failed, if one did."""

    exit_code: int  # the command's (126 when a step failed, 127 when it was not found)
    error: str | None  # the step that failed, and why


def exec_in(
    store: Store, container_id: str, options: ExecOptions, tracer: Tracer, io: StartIO
) -> ExecResult:
    """Run ``options.argv`` in the running container, to its end."""
    config, state = _running(store, container_id)
    env = environment({"Env": config.env}, options.env, config.hostname, tty=options.tty)
    streams = StreamPipes.open(interactive=options.interactive, tty=options.tty)
    hub = Hub(
        stdin=streams.stdin_w,
        stdout=streams.out_r,
        stderr=streams.err_r,
        console=streams.console,
        listener=None,
        log=None,  # as docker: an exec's output is not in the container's log
        local=io.local,
        stdin_once=True,
        tty=options.tty,
        open_stdin=options.interactive,
    )
    console_child = streams.console_child
    launch = _Launch(
        target=state.pid,
        argv=options.argv,
        env=env,
        user=options.user if options.user is not None else config.user,
        workdir=options.workdir or config.workdir or "/",
        stdin_fd=streams.stdin_r,
        stdout_fd=streams.out_w,
        stderr_fd=streams.err_w,
        console_fd=console_child.fileno() if console_child is not None else None,
        window=io.window,
        # exec's denials are not collected
        seccomp=seccomp_filter(config, log=False, cache=store.seccomp_cache),
        exec_hint=exec_format_hint(platform_mismatch(config.image_config)),
        capabilities=config.capability_set(),  # as PID 1 keeps them (--cap-add/--cap-drop)
    )
    events_r, events_w = os.pipe()
    go_r, go_w = os.pipe()
    helper = _fork_helper(launch, streams, events_w, go_r)
    watch = _ExecWatch(tracer, hub)
    forwarded = forward_signals(lambda: watch.process)
    failure: BaseException | None = None
    try:
        tracer.emit(step_event("fork-helper", args={"pid": helper}, evidence={"pid": helper}))
        _join_group(tracer, config.name, state.cgroup_paths, helper)
        os.write(go_w, b"g")
        hub.run(events_r, watch.on_events, os.pidfd_open(helper))
    except BaseException as exc:  # dockscope cannot watch it any more: end it
        failure = exc
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, signal.SIGKILL)
    finally:
        os.close(go_w)
        hub.restore_terminal()
        _, status = wait_child(helper)
        restore_signals(forwarded)
        hub.finish(None)
    if failure is not None:
        raise failure
    code = linux.exit_code(status)
    tracer.emit(step_event("exec-exit", args={"pid": watch.process}, evidence={"exit_code": code}))
    return ExecResult(code, watch.error)


def _running(store: Store, container_id: str) -> tuple[ContainerConfig, ContainerState]:
    """The container's config and state, if it runs with its control group recorded."""
    config = store.load_config(container_id)
    state = refresh(store, container_id)
    if state.status != "running" or not state.pid or not cgroups.process_exists(state.pid):
        raise UsageError(f"container {config.name} is not running")
    if not state.cgroup_paths and config.userns is None:  # rootless: no group at all
        raise ContainerError(
            "the container's control group is not recorded (started by an older dockscope): "
            "restart it to exec into it",
            subject=config.name,
        )
    return config, state


def _fork_helper(launch: _Launch, streams: StreamPipes, events_w: int, go_r: int) -> int:
    """Fork the helper (it never returns into dockscope's code) and close the ends that are
    now its own."""
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            keep = {events_w, go_r, *streams.child_ends, launch.console_fd}
            close_other_fds({fd for fd in keep if fd is not None})
            code = _run_helper(launch, events_w, go_r)
        except BaseException:  # reported as an event where it happened
            code = 126
        finally:
            os._exit(code)
    for fd in (events_w, go_r):
        os.close(fd)
    streams.close_child_ends()
    if launch.seccomp is not None:  # the helper has its copy
        launch.seccomp.release()
    return helper


def _join_user_namespace(
    launch: _Launch, reporter: StepReporter, own: dict[str, int], target: dict[str, int]
) -> None:
    """Rootless: the container's user namespace first (its owner, this user, may join it and
    gets every capability there), so that its other namespaces may be joined. Nothing when
    the container runs in the host's user namespace (root)."""
    if "user" not in target or target["user"] == own.get("user"):
        return
    path = f"/proc/{launch.target}/ns/user"

    def join() -> dict[str, Any]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, int(linux.Clone.NEWUSER))
        finally:
            os.close(fd)
        with open("/proc/self/uid_map") as f:
            uid_map = f.read()
        return {"before": own.get("user"), "container": target["user"], "uid_map": uid_map}

    reporter.run("setns", join, args={"namespace": "user", "path": path, "nstype": "CLONE_NEWUSER"})


def _join_group(tracer: Tracer, name: str, cgroup_paths: dict[str, str], helper: int) -> None:
    """The helper joins the container's control group (every path its state records)."""
    if not cgroup_paths:  # rootless: the container has no group
        return
    written = []
    for path in cgroup_paths.values():
        procs = os.path.join(path, "cgroup.procs")
        try:
            with open(procs, "w") as f:
                f.write(str(helper))
        except OSError as exc:
            raise ContainerError(
                f"echo {helper} > {procs}: {exc.strerror or exc}", subject=name
            ) from None
        written.append({"file": procs, "value": str(helper)})
    tracer.emit(step_event("cgroup-join", args={"pid": helper}, evidence={"written": written}))


class _ExecWatch:
    """The helper's events relayed to the trace: the process's host PID, a failed step's
    reason, the local terminal made raw once the command runs."""

    def __init__(self, tracer: Tracer, hub: Hub) -> None:
        self.tracer, self.hub = tracer, hub
        self.process = 0
        self.error: str | None = None
        self._pending = b""

    def on_events(self, chunk: bytes) -> None:
        self._pending += chunk
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            if not line.strip():
                continue
            event = Event.from_json(line.decode())
            self.tracer.emit(event)
            if event.result != "ok" and self.error is None:  # a step failed: which, and why
                self.error = f"{event.title}: {event.result}"
            if event.step == "fork-exec":
                self.process = int(event.evidence.get("host_pid", 0))
            if event.step == "exec-command" and event.result == "ok":
                self.hub.enter_raw()


def _run_helper(launch: _Launch, events_fd: int, go_fd: int) -> int:
    """In the forked helper: join every namespace of the container, fork the process, wait."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    reporter = StepReporter(events_fd, -1, stepping=False)
    if os.getppid() == 1 or os.read(go_fd, 1) != b"g":  # dockscope has gone
        return 1
    os.close(go_fd)
    own = linux.namespace_inodes()
    target = linux.namespace_inodes(launch.target)
    opened: dict[str, int] = {}
    # the container's root, opened before any join: after setns(CLONE_NEWNS) the root is the
    # mount namespace's, which is the container's only where its PID 1's pivot_root made it
    # so (not when dockscope itself runs in a chroot); like nsenter -r, chroot to PID 1's
    root_fd = os.open(f"/proc/{launch.target}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _join_user_namespace(launch, reporter, own, target)
        for kind in JOIN_ORDER:  # all opened before any is joined
            if kind in target and target[kind] != own.get(kind):
                path = f"/proc/{launch.target}/ns/{kind}"
                opened[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        for kind in JOIN_ORDER:
            path = f"/proc/{launch.target}/ns/{kind}"
            flag = CLONE_FLAGS[kind]
            if kind not in opened:  # the container shares this one with the host
                reporter.done(
                    "setns",
                    args={"namespace": kind, "path": path, "nstype": f"CLONE_{flag.name}"},
                    evidence={"skipped": "already shared with the host", "inode": own.get(kind)},
                )
                continue

            def join(kind: str = kind, flag: linux.Clone = flag) -> dict[str, Any]:
                linux.setns(opened[kind], int(flag))
                os.close(opened.pop(kind))
                evidence: dict[str, Any] = {"before": own.get(kind), "container": target.get(kind)}
                if kind == "mnt":
                    os.fchdir(root_fd)
                    os.chroot(".")
                    os.chdir("/")
                    evidence["root"] = f"/proc/{launch.target}/root (chroot, as nsenter -r)"
                return evidence

            reporter.run(
                "setns",
                join,
                args={"namespace": kind, "path": path, "nstype": f"CLONE_{flag.name}"},
            )
    finally:
        for fd in opened.values():
            os.close(fd)
        os.close(root_fd)
    reporter.before("fork-exec")
    reported_r, reported_w = os.pipe()  # the child goes on once its fork is in the trace
    pid = os.fork()
    if pid == 0:
        code = 126
        try:
            os.close(reported_w)
            os.read(reported_r, 1)
            os.close(reported_r)
            code = _run_process(launch, reporter)
        except BaseException:  # reported as an event where it happened
            code = 126
        finally:
            os._exit(code)
    reporter.done("fork-exec", args={"pid": pid}, evidence={"host_pid": pid})
    os.close(reported_r)
    os.write(reported_w, b"r")
    os.close(reported_w)
    os.close(events_fd)
    for stream in (launch.stdin_fd, launch.stdout_fd, launch.stderr_fd, launch.console_fd):
        if stream is not None:  # the process holds them: they end when it does
            os.close(stream)
    _, status = wait_child(pid)
    return linux.exit_code(status)


def _run_process(launch: _Launch, reporter: StepReporter) -> int:
    """The new process, inside every namespace of the container: user, capabilities,
    no_new_privs, its streams, the command."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    terminal: int | None = None
    if launch.console_fd is not None:
        console_fd = launch.console_fd

        def allocate() -> dict[str, Any]:
            nonlocal terminal
            # devpts itself: the container cannot replace a mount point, while /dev/ptmx is
            # a link in a tmpfs it may change
            master, slave, number = open_terminal("/dev/pts/ptmx", launch.window, console_fd)
            os.close(master)
            terminal = slave
            return {"terminal": f"/dev/pts/{number}", "window": list(launch.window or (0, 0))}

        reporter.run("tty", allocate, args={"ptmx": "/dev/pts/ptmx", "window": launch.window})
        os.close(console_fd)
    holder: dict[str, Any] = {}
    reporter.run(
        "user", lambda: switch_user(launch.user, holder, terminal), args={"user": launch.user}
    )
    reporter.run(
        "capabilities",
        lambda: drop_capabilities(holder["uid"], *_kept(launch)),
        args={"uid": holder["uid"]},
    )
    reporter.run("no_new_privs", linux.set_no_new_privs, args={"option": "PR_SET_NO_NEW_PRIVS"})
    set_stdio(launch.stdin_fd, launch.stdout_fd, launch.stderr_fd, terminal)
    try:
        os.chdir(launch.workdir)
    except OSError as exc:
        reporter.done(
            "exec-command",
            result=f"chdir {launch.workdir}: {exc.strerror}",
            args={"argv": launch.argv},
        )
        return 126
    if launch.seccomp is not None:
        reporter.run("seccomp", launch.seccomp.load, args={"profile": launch.seccomp.name})
    env = dict(item.split("=", 1) for item in launch.env if "=" in item)
    env.setdefault("HOME", holder.get("home", "/"))
    reporter.done(
        "exec-command",
        args={"argv": launch.argv, "cwd": launch.workdir},
        evidence={"container_pid": os.getpid(), "env": [f"{k}={v}" for k, v in env.items()]},
    )
    try:
        os.execvpe(launch.argv[0], launch.argv, env)
    except OSError as exc:
        sys.stderr.write(exec_failure(launch.argv[0], exc, launch.exec_hint) + "\n")
        return 127 if exc.errno == errno.ENOENT else 126
    return 126  # not reached


def _kept(launch: _Launch) -> tuple[list[str], ...]:
    """The container's capabilities as drop_capabilities takes them (none: its default)."""
    return () if launch.capabilities is None else (launch.capabilities,)
