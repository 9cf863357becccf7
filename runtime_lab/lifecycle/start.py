"""``start``: the parent's side of a run. It creates the control group, forks the shim (see
process/shim.py), relays the trace, forwards signals to PID 1, waits, records the exit and
removes the control group."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inspect_tool.errors import UsageError
from inspect_tool.heap import resume_collection
from runtime_lab.kernel import cgroups, linux, warmup
from runtime_lab.lifecycle.children import (
    close_other_fds,
    forward_signals,
    restore_signals,
    wait_child,
)
from runtime_lab.lifecycle.create import seccomp_filter
from runtime_lab.lifecycle.logs import JsonFileLog
from runtime_lab.lifecycle.state import ContainerError, refresh, save_state, step_event
from runtime_lab.process.launch import LaunchSpec
from runtime_lab.process.shim import run_shim
from runtime_lab.spec import exec_format_hint, platform_mismatch
from runtime_lab.storage.store import (
    ContainerConfig,
    ContainerState,
    Store,
    now,
    remove_dir,
    rootless,
)
from runtime_lab.streams import ATTACH_SOCKET, Hub, LocalStreams, StreamPipes, listen
from runtime_lab.trace.events import Event, Tracer
from runtime_lab.trace.steps import CLEANUP_BEFORE_REMOVE, STEPS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runtime_lab.kernel.seccomp import KernelLog
    from runtime_lab.lifecycle.network import BridgeNetwork


MEMORY_KILL_EXIT = 137


@dataclass(slots=True)
class StartIO:
    """How the watcher (``run`` in the foreground, or a supervisor) connects the container's
    streams: the output always goes to ``container.log`` and to attach clients; ``local``
    names dockscope's own descriptors attached to it (a foreground run)."""

    local: LocalStreams | None = None
    stepper: Callable[[Event], None] | None = None  # called at each planned step (--step)
    window: tuple[int, int] | None = None  # with -t: the terminal's size to start with


def start(store: Store, container_id: str, tracer: Tracer, io: StartIO | None = None) -> int:
    """Run the container's command to completion; returns its exit status."""
    io = io or StartIO()
    if not rootless():  # the wait before the shim's attach, taken now (kernel/warmup.py)
        warmup.begin("the start began")
    config = store.load_config(container_id)
    state = store.load_state(container_id)
    if state.status == "running" and state.pid and cgroups.process_exists(state.pid):
        raise UsageError(f"container {config.name} is already running")
    directory = store.container_dir(container_id)
    # overlay refuses a workdir left over from an earlier mount: start from an empty one
    remove_dir(directory / "work", ignore_errors=True)
    try:
        (directory / "work").mkdir(mode=0o755)
    except OSError as exc:
        raise ContainerError(
            f"cannot prepare the container: {exc.strerror or exc}", subject=str(directory)
        ) from None
    try:
        group = _make_group(container_id)
    except OSError as exc:
        raise ContainerError(
            f"cannot create the control group: {exc.strerror or exc}", subject=config.name
        ) from None
    network = None
    if config.network == "bridge":
        from runtime_lab.lifecycle.network import BridgeNetwork

        network = BridgeNetwork(store, config, tracer)
    try:
        return _run(store, container_id, tracer, io, group, state, network)
    finally:  # whatever happened, the group goes (it is empty: the container has ended)
        warmup.end()  # ended at the attach, unless the start failed before it
        if network is not None:  # a start that failed early: its lease, rules, veth
            network.disconnect()
        try:
            group.remove()
            removed = [str(p) for p in group.paths.values()]
            evidence: dict[str, Any] = {"removed": removed}
            if group.killed:  # left in a shared PID namespace when the command ended
                evidence["killed"] = group.killed
            if not group.paths:  # rootless: there was none
                evidence["cgroup"] = "none was made (rootless: see cgroup-none)"
            if config.auto_remove:  # what happens next to the writable layer
                evidence["writable_layer"] = "removed next (--rm)"
                tracer.emit(
                    step_event("cleanup", evidence=evidence, explanation=CLEANUP_BEFORE_REMOVE)
                )
            else:
                evidence["writable_layer"] = (
                    f"kept in {directory / 'upper'} until 'dockscope rm {config.name}'"
                )
                tracer.emit(step_event("cleanup", evidence=evidence))
        except OSError as exc:
            with contextlib.suppress(Exception):
                tracer.emit(step_event("cleanup", result=f"cgroup not removed: {exc}"))


def _make_group(container_id: str) -> cgroups.Cgroup:
    """The container's control group; none for an ordinary user (lifecycle/rootless.py)."""
    if rootless():
        from runtime_lab.lifecycle.rootless import no_group

        return no_group(container_id[:12])
    return cgroups.detect().create(container_id[:12])


def _run(
    store: Store,
    container_id: str,
    tracer: Tracer,
    io: StartIO,
    group: cgroups.Cgroup,
    previous: ContainerState,
    network: BridgeNetwork | None = None,
) -> int:
    """The part of ``start`` inside the control group's lifetime: the group set up, the
    container's streams opened, the shim forked and watched until it ends, the exit recorded."""
    config = store.load_config(container_id)
    directory = store.container_dir(container_id)
    _set_up_group(tracer, group, config)
    join = _joined_namespaces(store, config)
    if network is not None:  # the bridge, an address, hosts and resolv.conf
        network.prepare()
    streams = StreamPipes.open(interactive=config.interactive, tty=config.tty)
    try:
        run_dir = store.run_dir(container_id)
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        listener = listen(run_dir)
    except OSError as exc:
        raise ContainerError(
            f"cannot create the attach socket: {exc.strerror or exc}", subject=str(directory)
        ) from None
    log = JsonFileLog(directory / "container.log")
    hub = Hub(
        stdin=streams.stdin_w,
        stdout=streams.out_r,
        stderr=streams.err_r,
        console=streams.console,
        listener=listener,
        log=log,
        local=io.local,
        stdin_once=config.stdin_once,
        tty=config.tty,
        open_stdin=config.interactive,
    )
    spec = _launch_spec(store, directory, config, previous, io, streams, join)
    spec.capabilities, spec.privileged = config.capability_set(), config.privileged
    # rootless: the kernel's audit records cannot be read, so the filter does not log
    spec.seccomp = seccomp_filter(
        config, log=tracer.tracing and not rootless(), cache=store.seccomp_cache
    )
    if network is not None or "net" in join:
        from runtime_lab.lifecycle.network import shared_network_files

        # bridge: its own hosts and resolv.conf; container:NAME: its owner's, as docker shares
        spec.network_files = shared_network_files(store, config, directory, spec.rootfs_mode)
        if spec.network_files and spec.rootfs_mode == "overlay":  # docker's init layer
            spec.lowerdirs.append(str(directory / "init"))
    spec.exec_hint = exec_format_hint(platform_mismatch(config.image_config))
    kernel_log = _open_kernel_log(spec)
    pipes = _Pipes.open()
    spec.release_fd = pipes.release_r
    state = ContainerState(
        status="running",
        started=now(),
        rootfs_mode=previous.rootfs_mode,
        runtime_paths=previous.runtime_paths,
        restart_count=previous.restart_count,
        supervisor_pid=previous.supervisor_pid,
        recorder_pid=os.getpid(),
    )
    shim = _fork_shim(spec, streams, pipes, kernel_log)
    state.shim_pid = shim
    state.cgroup_paths = {k: str(v) for k, v in group.paths.items()}
    watch = _Watch(store, container_id, tracer, io, group, config, state, hub, shim, pipes)
    watch.network = network
    status, failure = watch.run(log)
    return _record_exit(watch, status, failure, spec, kernel_log)


def _set_up_group(tracer: Tracer, group: cgroups.Cgroup, config: ContainerConfig) -> None:
    """The control group made, its devices restricted and its limits written (steps
    cgroup-create, cgroup-devices, cgroup-limits); rootless, none (cgroup-none)."""
    if not group.paths:
        reason = getattr(group, "reason", "")
        tracer.emit(
            step_event(
                "cgroup-none",
                args={"version": group.driver.version},
                evidence={
                    "reason": reason,
                    "limits": "cannot apply",
                    "devices": "host's root only",
                },
            )
        )
        return
    tracer.emit(
        step_event(
            "cgroup-create",
            args={"version": group.driver.version},
            evidence={
                "paths": {k: str(v) for k, v in group.paths.items()},
                # v2: the controllers handed down on the way (cgroup.subtree_control)
                "written": [{"file": w.path, "value": w.value} for w in group.writes],
            },
        )
    )
    from runtime_lab.kernel.devices import DEFAULT_RULES, PRIVILEGED_RULES, describe

    rules = PRIVILEGED_RULES if config.privileged else DEFAULT_RULES
    try:
        restricted = group.restrict_devices(rules)
    except OSError as exc:
        raise ContainerError(
            f"cannot restrict the devices: {exc.strerror or exc}", subject=config.name
        ) from None
    tracer.emit(step_event("cgroup-devices", args={"rules": describe(rules)}, evidence=restricted))
    # pids.max waits for the shim to leave the group (cgroup-release): the shim is not one
    # of the container's processes, and docker's --pids-limit N allows N of those
    limits = cgroups.Limits(config.memory, config.cpus, None)
    if all(v is None for v in (config.memory, config.cpus, config.pids)):
        return
    made = len(group.writes)
    try:
        group.apply(limits)
    except OSError as exc:
        raise ContainerError(
            f"cannot set the limits: {exc.strerror or exc}", subject=config.name
        ) from None
    tracer.emit(
        step_event(
            "cgroup-limits",
            args={"memory": config.memory, "cpus": config.cpus, "pids": config.pids},
            evidence={
                "written": [{"file": w.path, "value": w.value} for w in group.writes[made:]],
                "values": group.values(),
                **({"pids.max": "after cgroup-release"} if config.pids is not None else {}),
            },
        )
    )


@dataclass(slots=True)
class _Pipes:
    """dockscope's pipes with the shim: its events up, the go-ahead (and with --step each
    step's acknowledgement) down, and the release of PID 1 once the shim has left the group."""

    events_r: int
    events_w: int
    go_r: int
    go_w: int
    ack_r: int
    ack_w: int
    release_r: int
    release_w: int

    @classmethod
    def open(cls) -> _Pipes:
        return cls(*os.pipe(), *os.pipe(), *os.pipe(), *os.pipe())


def _launch_spec(
    store: Store,
    directory: Path,
    config: ContainerConfig,
    previous: ContainerState,
    io: StartIO,
    streams: StreamPipes,
    join: dict[str, int],
) -> LaunchSpec:
    """What the shim and PID 1 are given."""
    console_child = streams.console_child
    return LaunchSpec(
        merged=str(directory / "merged"),
        lowerdirs=[str(store.layer_dir(d)) for d in config.diff_ids],
        upper=str(directory / "upper"),
        work=str(directory / "work"),
        rootfs_mode=previous.rootfs_mode,
        hostname=config.hostname,
        network=config.network,
        argv=config.command,
        env=config.env,
        workdir=config.workdir,
        user=config.user,
        stepping=io.stepper is not None,
        stdin_fd=streams.stdin_r,
        stdout_fd=streams.out_w,
        stderr_fd=streams.err_w,
        tty=config.tty,
        console_fd=console_child.fileno() if console_child is not None else None,
        window=io.window,
        mounts=config.volumes,
        read_only=config.read_only,
        join=join,
        share=[
            kind
            for kind, mode in (("pid", config.pid_mode), ("ipc", config.ipc_mode))
            if mode == "host"
        ],
        rootless=config.userns is not None,
    )


def _fork_shim(
    spec: LaunchSpec, streams: StreamPipes, pipes: _Pipes, kernel_log: KernelLog | None
) -> int:
    """Fork the shim (it never returns into dockscope's code) and close the ends that are
    now the children's."""
    child_ends = (pipes.events_w, pipes.go_r, pipes.ack_r, pipes.release_r)
    shim = os.fork()
    if shim == 0:  # the shim
        code = 1
        try:
            keep = (*child_ends, *streams.child_ends, spec.console_fd)
            close_other_fds({fd for fd in keep if fd is not None})
            resume_collection()  # the shim lives as long as the container
            if kernel_log is not None:  # the container's seccomp records: its own session
                from runtime_lab.kernel.seccomp import new_audit_session

                new_audit_session()
            code = run_shim(spec, pipes.events_w, pipes.go_r, pipes.ack_r)
        except BaseException:  # reported as an event where it happened
            code = 1
        finally:
            os._exit(code)
    for fd in child_ends:
        os.close(fd)
    streams.close_child_ends()
    if spec.seccomp is not None:  # the children have their copy
        spec.seccomp.release()
    return shim


class _Watch:
    """dockscope watching a running container: the shim's events relayed to the trace (and
    acted on: PID 1's host PID recorded, the shim released from the group, a failed step's
    reason kept), its streams relayed by the hub, signals forwarded to PID 1."""

    def __init__(
        self,
        store: Store,
        container_id: str,
        tracer: Tracer,
        io: StartIO,
        group: cgroups.Cgroup,
        config: ContainerConfig,
        state: ContainerState,
        hub: Hub,
        shim: int,
        pipes: _Pipes,
    ) -> None:
        self.store, self.container_id, self.tracer, self.io = store, container_id, tracer, io
        self.group, self.config, self.state, self.hub = group, config, state, hub
        self.shim, self.pipes = shim, pipes
        self.init_pid = 0
        self.save_error: OSError | None = None
        self.session: int | None = None  # the container's audit session (seccomp records)
        self.reached: set[str] = set()  # the steps done
        self.network: BridgeNetwork | None = None  # --network bridge: plugged in at release
        self._pending = b""

    def run(self, log: JsonFileLog) -> tuple[int, BaseException | None]:
        """Start the shim and relay until it ends; its wait status, and what stopped the
        watch early if anything did."""
        group, shim, pipes = self.group, self.shim, self.pipes
        forwarded = forward_signals(lambda: self.init_pid)
        failure: BaseException | None = None
        try:
            self.tracer.emit(
                step_event("fork-shim", args={"pid": shim}, evidence={"shim_pid": shim})
            )
            if group.paths:  # rootless: no group to join
                group.add(shim)
                written = group.writes[-len(group.paths) :]
                evidence: dict[str, Any] = {
                    "written": [{"file": w.path, "value": w.value} for w in written]
                }
                warmed = warmup.end()
                if warmed is not None:
                    evidence["warmup"] = warmed
                self.tracer.emit(step_event("cgroup-attach", args={"pid": shim}, evidence=evidence))
            os.write(pipes.go_w, b"g")
            os.close(pipes.go_w)
            pipes.go_w = -1
            resume_collection()  # paused while dockscope started (heap.py): the watch is long
            self.hub.run(
                pipes.events_r, self.on_events, os.pidfd_open(shim), lambda: _kill_leftovers(group)
            )
        except BaseException as exc:
            # dockscope cannot watch the container any more (a trace file on a full disk, a
            # stepper that failed…): end it rather than leave it running unwatched. Killing the
            # shim kills PID 1 (its parent-death signal), and with it the whole namespace.
            failure = exc
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim, signal.SIGKILL)
        finally:
            self.hub.restore_terminal()
            _, status = wait_child(shim)
            restore_signals(forwarded)
            for fd in (pipes.go_w, pipes.ack_w, pipes.release_w):
                if fd >= 0:
                    os.close(fd)
            log.close()
            if failure is not None:
                self.hub.finish(None)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.store.run_dir(self.container_id) / ATTACH_SOCKET)
        return status, failure

    def release_shim(self) -> None:
        """PID 1 exists: the shim leaves the group, the process limit is written, and PID 1
        may go on (its first act is to wait for this)."""
        group, shim = self.group, self.shim
        made = len(group.writes)
        try:
            if not group.paths:  # rootless: nothing to leave, PID 1 may go on
                os.write(self.pipes.release_w, b"g")
                return
            group.release(shim)
            if self.config.pids is not None:
                group.apply(cgroups.Limits(pids=self.config.pids))
            evidence: dict[str, Any] = {
                "written": [{"file": w.path, "value": w.value} for w in group.writes[made:]],
                "procs": group.procs(),
            }
            self.tracer.emit(step_event("cgroup-release", args={"pid": shim}, evidence=evidence))
            if self.network is not None:  # PID 1's namespace exists: plug it into the bridge
                failed = self.network.attach(self.init_pid)
                if failed is not None:  # PID 1 ends at the closed pipe; the run says why
                    self.state.error = self.state.error or failed
                    return
            os.write(self.pipes.release_w, b"g")
        except OSError as exc:  # PID 1 ends at the closed pipe; the run says why
            self.state.error = self.state.error or f"{STEPS['cgroup-release'].title}: {exc}"
            self.tracer.emit(step_event("cgroup-release", args={"pid": shim}, result=str(exc)))
        finally:
            os.close(self.pipes.release_w)
            self.pipes.release_w = -1

    def on_event(self, event: Event) -> None:
        state = self.state
        changed = False
        if event.phase == "done":
            self.reached.add(event.step)
        if event.step == "seccomp" and event.phase == "done":
            self.session = event.evidence.get("audit_session")
        if event.step == "fork-init" and event.phase == "done":
            self.init_pid = int(event.evidence.get("host_pid", 0))
            state.pid = self.init_pid
            changed = True
            if self.pipes.release_w >= 0:
                self.release_shim()
        if event.result != "ok" and state.error is None:  # a step failed: say which, and why
            state.error = f"{event.title}: {event.result}"
            changed = True
        for path in event.evidence.get("created_mountpoints", []) or []:
            if path not in state.runtime_paths:
                state.runtime_paths.append(path)
                changed = True
        if changed:
            self.save_error = save_state(self.store, self.container_id, state) or self.save_error
        if event.phase == "plan" and self.io.stepper is not None:
            self.io.stepper(event)
            os.write(self.pipes.ack_w, b"y")
        if event.step == "exec" and event.phase == "done" and event.result == "ok":
            self.hub.enter_raw()  # -it: the command runs, the local terminal goes raw

    def on_events(self, chunk: bytes) -> None:
        self._pending += chunk
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            if line.strip():
                event = Event.from_json(line.decode())
                self.tracer.emit(event)
                self.on_event(event)


def _record_exit(
    watch: _Watch,
    status: int,
    failure: BaseException | None,
    spec: LaunchSpec,
    kernel_log: KernelLog | None,
) -> int:
    """The exit recorded (status, OOM kill, seccomp denials), attach clients told, the exit
    step traced; the run's exit code."""
    group, state, tracer = watch.group, watch.state, watch.tracer
    directory = watch.store.container_dir(watch.container_id)
    code = linux.exit_code(status)
    oom = False
    with contextlib.suppress(OSError, ValueError):
        oom = group.oom_killed() and code == MEMORY_KILL_EXIT
    values: dict[str, str] = {}
    if tracer.tracing:  # evidence only: eight files read
        with contextlib.suppress(OSError):
            values = group.values()
    if watch.network is not None:  # before the exit is recorded: stop and rm wait for it
        watch.network.disconnect()
    if kernel_log is not None:  # before the exit is recorded: stop waits for that record
        try:
            if failure is None:
                _report_denials(tracer, kernel_log, watch.session)
        except Exception as exc:  # a trace file that cannot be written: the exit still counts
            failure = exc
        finally:
            kernel_log.close()
    if spec.seccomp is not None and "no_new_privs" in watch.reached and "exec" not in watch.reached:
        state.error = state.error or _denied_before_exec(code)
    state.status, state.exit_code, state.oom_killed, state.finished = "exited", code, oom, now()
    save_error = save_state(watch.store, watch.container_id, state) or watch.save_error
    if failure is not None:
        raise failure
    watch.hub.finish(code)  # attach clients get the exit status
    with contextlib.suppress(FileNotFoundError):
        os.unlink(watch.store.run_dir(watch.container_id) / ATTACH_SOCKET)
    tracer.emit(
        step_event(
            "exit",
            args={"pid": watch.init_pid},
            evidence={"exit_code": code, "oom_killed": oom, "cgroup": values},
        )
    )
    if save_error is not None:
        raise ContainerError(
            f"the container exited ({code}) but its state could not be saved: "
            f"{save_error.strerror or save_error}",
            subject=str(directory),
        )
    return code


def _denied_before_exec(code: int) -> str:
    """PID 1 loaded the filter and never reached execve: the profile denies a call it makes
    in between (writing the step's event, reading /proc/self/status, even exit_group, whose
    failure ends in SIGSEGV)."""
    how = f"signal {code - 128}" if code > 128 else f"exit {code}"
    return (
        f"{STEPS['seccomp'].title}: PID 1 ended ({how}) before execve: the seccomp profile "
        "denies a call it makes after loading the filter (allow write, read, openat, close, "
        "mmap, munmap, brk, rt_sigaction, exit_group and execve)"
    )


def _open_kernel_log(spec: LaunchSpec) -> KernelLog | None:
    """With a trace and a filter that logs: the kernel log, read from now on."""
    if spec.seccomp is None or not spec.seccomp.log:
        return None
    from runtime_lab.kernel.seccomp import KernelLog

    return KernelLog.open()


def _report_denials(tracer: Tracer, kernel_log: KernelLog, session: int | None) -> None:
    if session is None:
        tracer.emit(
            step_event(
                "seccomp-denied",
                result="no audit session of its own: the records cannot be told apart",
            )
        )
        return
    denied = kernel_log.denials(session)
    tracer.emit(
        step_event(
            "seccomp-denied",
            args={"session": session},
            evidence={
                "denied": denied,
                "counts": dict(Counter(d["syscall"] for d in denied).most_common()),
            },
        )
    )


def _joined_namespaces(store: Store, config: ContainerConfig) -> dict[str, int]:
    """Namespace kind → host PID of the running container whose namespace is joined."""
    join: dict[str, int] = {}
    for kind, mode in (("net", config.network), ("pid", config.pid_mode), ("ipc", config.ipc_mode)):
        if not mode.startswith("container:"):
            continue
        owner = mode.partition(":")[2]
        try:
            name = store.load_config(owner).name
        except OSError:
            raise ContainerError(
                f"cannot join the {kind} namespace of container {owner[:12]}: it was removed",
                subject=config.name,
            ) from None
        state = refresh(store, owner)
        if state.status != "running" or not state.pid:
            raise ContainerError(
                f"cannot join the {kind} namespace of container {name}: it is not running",
                subject=config.name,
            )
        join[kind] = state.pid
    return join


def _kill_leftovers(group: cgroups.Cgroup) -> None:
    """The container's main process has ended: anything left in its group (possible only
    when it shares another container's PID namespace, or the host's, where its end kills
    nobody else) is killed, as runc does, so that the group can go."""
    for pid in group.procs():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            group.killed.append(pid)
