"""Containers: create, start, stop, remove; the state on disk; the parent's side of a run.

``create`` reads the image (any source inspect_tool reads), makes sure each layer is in the
layer store, and writes the container's config and directories. ``start`` creates the control
group, forks the shim (see process.py), relays the trace, forwards signals to PID 1, waits,
records the exit and removes the control group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from inspect_tool.errors import DockscopeError, UsageError
from runtime_lab.kernel import cgroups
from runtime_lab.kernel.seccomp import Options as SecurityOptions
from runtime_lab.process.launch import LaunchSpec, wait_quietly
from runtime_lab.process.shim import run_shim
from runtime_lab.run_options import RunOptions
from runtime_lab.spec import (
    VolumeSpec,
    command_line,
    environment,
    exec_format_hint,
    labels,
    platform_mismatch,
    platform_warning,
)
from runtime_lab.storage.layerstore import copy_image, ensure_layers, overlay_available
from runtime_lab.storage.store import (
    ContainerConfig,
    ContainerState,
    Store,
    now,
    remove_dir,
    write_atomic,
)
from runtime_lab.streams import ATTACH_SOCKET, Hub, LocalStreams, listen
from runtime_lab.trace.events import Event, Tracer
from runtime_lab.trace.steps import CLEANUP_BEFORE_REMOVE, STEPS

if TYPE_CHECKING:
    from inspect_tool.model.image import Image
    from runtime_lab.kernel.seccomp import Filter, KernelLog

MEMORY_KILL_EXIT = 137


class ContainerError(DockscopeError):
    """A container operation failed (exit 3: the input or the host cannot do it)."""


def step_event(step_id: str, **fields: Any) -> Event:
    step = STEPS[step_id]
    fields.setdefault("explanation", step.explanation)
    return Event(step=step.id, title=step.title, syscall=step.syscall, **fields)


def _name_from(container_id: str) -> str:
    return f"dockscope-{container_id[:8]}"


# docker's validContainerNamePattern (without the leading "/" the API allows)
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
HOST_NAME_MAX = 64  # the kernel's limit for sethostname


def _check_hostname(hostname: str) -> None:
    """A hostname the kernel takes and a terminal shows as it is: at most 64 bytes, printable
    ASCII without white space (sethostname itself takes any bytes)."""
    raw = hostname.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > HOST_NAME_MAX:
        raise UsageError(f"invalid hostname: 1 to {HOST_NAME_MAX} bytes, not {len(raw)}")
    if not all(0x21 <= b <= 0x7E for b in raw):
        raise UsageError(
            f"invalid hostname '{hostname}': printable ASCII without spaces only "
            "(letters, digits, '-', '.' as RFC 1123 names have)"
        )


def create(
    store: Store, options: RunOptions, tracer: Tracer, progress: Callable[[int], None] | None = None
) -> ContainerConfig:
    """Everything before the processes: image, layer store, config, writable layer."""
    from inspect_tool.sources import open_image

    network = _namespace_mode(store, "--net", options.network, ("none", "host"))
    pid_mode = _namespace_mode(store, "--pid", options.pid_mode, ("private", "host"))
    ipc_mode = _namespace_mode(store, "--ipc", options.ipc_mode, ("private", "host"))
    hostname_given = options.hostname
    if network.startswith("container:"):
        # docker: the container takes the network's owner's hostname, and --hostname conflicts
        if hostname_given:
            raise UsageError("conflicting options: --hostname and --net container:NAME")
        hostname_given = store.load_config(network.partition(":")[2]).hostname
    if options.name is not None and not CONTAINER_NAME.fullmatch(options.name):
        raise UsageError(
            f"invalid container name '{options.name}': only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is "
            "allowed (docker's rule)"
        )
    if options.hostname is not None:
        _check_hostname(options.hostname)
    container_id = store.new_id()
    name = options.name or _name_from(container_id)
    if options.name and store.name_taken(options.name):
        raise UsageError(f"the container name {options.name!r} is already in use")
    source, image = open_image(options.image, options.selection)
    with source:
        config_obj = dict(image.config.config)
        argv = command_line(config_obj, options.args, options.entrypoint)
        hostname = hostname_given or container_id[:12]
        evidence: dict[str, Any] = {
            "image_id": str(image.image_id),
            "layers": len(image.layers),
            "entrypoint": config_obj.get("Entrypoint"),
            "cmd": config_obj.get("Cmd"),
            "argv": argv,
        }
        warning = platform_warning_for(image.config.data, options.selection.platform)
        if warning is not None:
            evidence["warning"] = warning
        tracer.emit(step_event("image", args={"source": str(options.image)}, evidence=evidence))
        try:  # only now that the image reads: a bad image leaves nothing behind
            store.ensure()
        except OSError as exc:
            raise ContainerError(
                f"cannot create the state directory: {exc.strerror or exc}", subject=str(store.root)
            ) from None
        layer_dirs = ensure_layers(store, source, image, tracer, progress=progress)
        mode = "overlay" if overlay_available() else "copy"
        directory = store.container_dir(container_id)
        mounts: list[dict[str, Any]] = []
        try:
            for sub in ("upper", "work", "merged"):
                (directory / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
            if mode == "copy":
                copy_image(source, image, directory / "merged")
            mounts = _mounts(store, options.volumes)
            config = _config(options, container_id, name, image, layer_dirs, argv, hostname)
            if config.seccomp_profile is not None:  # one libseccomp refuses fails now
                compiled = seccomp_filter(config, log=False)
                if compiled is not None:
                    compiled.release()
            config.volumes = mounts
            config.network, config.pid_mode, config.ipc_mode = network, pid_mode, ipc_mode
            store.save_config(config)
            store.save_state(container_id, ContainerState(rootfs_mode=mode))
        except BaseException as exc:  # no half-made container (a full disk, an interrupt)
            remove_dir(directory, ignore_errors=True)
            from runtime_lab.storage.volumes import remove_anonymous

            remove_anonymous(store, [m["name"] for m in mounts if m.get("name")])
            if isinstance(exc, OSError):
                raise ContainerError(
                    f"cannot create the container: {exc.strerror or exc}", subject=str(directory)
                ) from None
            raise
    tracer.emit(
        step_event(
            "container-dirs",
            args={"path": str(directory)},
            evidence={
                "upperdir": str(directory / "upper"),
                "workdir": str(directory / "work"),
                "merged": str(directory / "merged"),
                "rootfs_mode": mode,
            },
        )
    )
    return config


def platform_warning_for(image_config: Mapping[str, Any], requested: str | None) -> str | None:
    """docker's warning when the image's platform is not this machine's and none was
    requested (``--platform``); None otherwise."""
    mismatch = platform_mismatch(image_config)
    if mismatch is None or requested:
        return None
    return platform_warning(*mismatch)


def _namespace_mode(store: Store, flag: str, value: str, plain: tuple[str, ...]) -> str:
    """``--net``/``--pid``/``--ipc``: one of ``plain``, or ``container:NAME``, recorded as
    ``container:<id>`` (the container must exist; it must run when this one starts)."""
    if value in plain:
        return value
    kind, _, name = value.partition(":")
    if kind != "container" or not name:
        raise UsageError(f"{flag} {value}: use {', '.join(plain)} or container:NAME")
    return f"container:{store.resolve(name)}"


def _mounts(store: Store, volumes: Sequence[VolumeSpec]) -> list[dict[str, Any]]:
    """-v as recorded in the config: each volume made if new (an anonymous one named)."""
    from runtime_lab.storage.volumes import ensure

    seen: set[str] = set()
    for spec in volumes:
        if spec.destination in seen:
            raise UsageError(f"-v: {spec.destination} is mounted twice (duplicate mount point)")
        seen.add(spec.destination)
    mounts: list[dict[str, Any]] = []
    for spec in volumes:
        if spec.kind == "bind":
            mounts.append(
                {
                    "type": "bind",
                    "name": None,
                    "source": spec.source,
                    "destination": spec.destination,
                    "read_only": spec.read_only,
                    "copy": False,
                }
            )
            continue
        volume = ensure(store, spec.source or None)
        mounts.append(
            {
                "type": "volume",
                "name": volume.name,
                "source": str(volume.data),
                "destination": spec.destination,
                "read_only": spec.read_only,
                "copy": spec.copy,
            }
        )
    return mounts


def _config(
    options: RunOptions,
    container_id: str,
    name: str,
    image: Image,
    layer_dirs: list[Path],
    argv: list[str],
    hostname: str,
) -> ContainerConfig:
    config_obj = dict(image.config.config)
    return ContainerConfig(
        id=container_id,
        name=name,
        image_source=str(options.image),
        image_id=str(image.image_id),
        image_selector={
            "image": options.selection.image,
            "ref": options.selection.ref,
            "platform": options.selection.platform,
        },
        diff_ids=[p.name for p in layer_dirs],
        command=argv,
        env=environment(config_obj, options.env, hostname, tty=options.tty),
        workdir=options.workdir or str(config_obj.get("WorkingDir") or "/"),
        user=options.user if options.user is not None else str(config_obj.get("User") or ""),
        hostname=hostname,
        network=options.network,
        memory=options.memory,
        cpus=options.cpus,
        pids=options.pids,
        auto_remove=options.auto_remove,
        detached=options.detach,
        image_config=dict(image.config.data),
        interactive=options.interactive,
        tty=options.tty,
        attach=list(options.attach),
        stdin_once=options.interactive and not options.detach and "stdin" in options.attach,
        labels=labels(config_obj, options.labels),
        read_only=options.read_only,
        restart=options.restart,
        seccomp=options.security.seccomp,
        seccomp_profile=options.security.profile,
    )


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
    driver = cgroups.detect()
    try:
        group = driver.create(f"{container_id[:12]}")
    except OSError as exc:
        raise ContainerError(
            f"cannot create the control group: {exc.strerror or exc}", subject=config.name
        ) from None
    try:
        return _run(store, container_id, tracer, io, group, state)
    finally:  # whatever happened, the group goes (it is empty: the container has ended)
        try:
            group.remove()
            removed = [str(p) for p in group.paths.values()]
            evidence: dict[str, Any] = {"removed": removed}
            if group.killed:  # left in a shared PID namespace when the command ended
                evidence["killed"] = group.killed
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


def _save(store: Store, container_id: str, state: ContainerState) -> OSError | None:
    """Record the state; a full disk must not stop a container that is already running."""
    try:
        store.save_state(container_id, state)
    except OSError as exc:
        return exc
    return None


def _run(
    store: Store,
    container_id: str,
    tracer: Tracer,
    io: StartIO,
    group: cgroups.Cgroup,
    previous: ContainerState,
) -> int:
    """The part of ``start`` inside the control group's lifetime."""
    config = store.load_config(container_id)
    directory = store.container_dir(container_id)
    driver = group.driver
    tracer.emit(
        step_event(
            "cgroup-create",
            args={"version": driver.version},
            evidence={
                "paths": {k: str(v) for k, v in group.paths.items()},
                # v2: the controllers handed down on the way (cgroup.subtree_control)
                "written": [{"file": w.path, "value": w.value} for w in group.writes],
            },
        )
    )
    from runtime_lab.kernel.devices import DEFAULT_RULES, describe

    try:
        restricted = group.restrict_devices(DEFAULT_RULES)
    except OSError as exc:
        raise ContainerError(
            f"cannot restrict the devices: {exc.strerror or exc}", subject=config.name
        ) from None
    tracer.emit(
        step_event("cgroup-devices", args={"rules": describe(DEFAULT_RULES)}, evidence=restricted)
    )
    # pids.max waits for the shim to leave the group (cgroup-release): the shim is not one
    # of the container's processes, and docker's --pids-limit N allows N of those
    limits = cgroups.Limits(config.memory, config.cpus, None)
    if any(v is not None for v in (config.memory, config.cpus, config.pids)):
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
    join = _joined_namespaces(store, config)
    # the container's streams: pipes, or with -t a terminal init allocates inside the
    # container and passes up the console socket; stdin only with -i (else /dev/null)
    tty = config.tty
    stdin_r, stdin_w = os.pipe() if config.interactive and not tty else (None, None)
    out_r, out_w = (None, None) if tty else os.pipe()
    err_r, err_w = (None, None) if tty else os.pipe()
    console, console_child = socket.socketpair() if tty else (None, None)
    try:
        listener = listen(directory)
    except OSError as exc:
        raise ContainerError(
            f"cannot create the attach socket: {exc.strerror or exc}", subject=str(directory)
        ) from None
    log = JsonFileLog(directory / "container.log")
    hub = Hub(
        stdin=stdin_w,
        stdout=out_r,
        stderr=err_r,
        console=console,
        listener=listener,
        log=log,
        local=io.local,
        stdin_once=config.stdin_once,
        tty=tty,
        open_stdin=config.interactive,
    )
    spec = LaunchSpec(
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
        stdin_fd=stdin_r,
        stdout_fd=out_w,
        stderr_fd=err_w,
        tty=tty,
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
    )
    spec.seccomp = seccomp_filter(config, log=tracer.tracing)
    spec.exec_hint = exec_format_hint(platform_mismatch(config.image_config))
    kernel_log = _open_kernel_log(spec)
    events_r, events_w = os.pipe()
    go_r, go_w = os.pipe()
    ack_r, ack_w = os.pipe()
    release_r, release_w = os.pipe()  # PID 1 starts once the shim has left the group
    spec.release_fd = release_r
    state = ContainerState(
        status="running",
        started=now(),
        rootfs_mode=previous.rootfs_mode,
        runtime_paths=previous.runtime_paths,
        restart_count=previous.restart_count,
        supervisor_pid=previous.supervisor_pid,
    )
    shim = os.fork()
    if shim == 0:  # the shim: never returns into dockscope's code
        code = 1
        try:
            keep = {events_w, go_r, ack_r, release_r, stdin_r, out_w, err_w, spec.console_fd}
            close_other_fds({fd for fd in keep if fd is not None})
            if kernel_log is not None:  # the container's seccomp records: its own session
                from runtime_lab.kernel.seccomp import new_audit_session

                new_audit_session()
            code = run_shim(spec, events_w, go_r, ack_r)
        except BaseException:  # reported as an event where it happened
            code = 1
        finally:
            os._exit(code)
    for fd in (events_w, go_r, ack_r, release_r, stdin_r, out_w, err_w):
        if fd is not None:
            os.close(fd)
    if console_child is not None:
        console_child.close()
    if spec.seccomp is not None:  # the children have their copy
        spec.seccomp.release()
    state.shim_pid = shim
    state.cgroup_paths = {k: str(v) for k, v in group.paths.items()}
    init_pid = 0
    save_error: OSError | None = None
    session: int | None = None  # the container's audit session (seccomp records)
    reached: set[str] = set()  # the steps done

    def release_shim() -> None:
        """PID 1 exists: the shim leaves the group, the process limit is written, and PID 1
        may go on (its first act is to wait for this)."""
        nonlocal release_w
        made = len(group.writes)
        try:
            group.release(shim)
            if config.pids is not None:
                group.apply(cgroups.Limits(pids=config.pids))
            evidence: dict[str, Any] = {
                "written": [{"file": w.path, "value": w.value} for w in group.writes[made:]],
                "procs": group.procs(),
            }
            tracer.emit(step_event("cgroup-release", args={"pid": shim}, evidence=evidence))
            os.write(release_w, b"g")
        except OSError as exc:  # PID 1 ends at the closed pipe; the run says why
            state.error = state.error or f"{STEPS['cgroup-release'].title}: {exc}"
            tracer.emit(step_event("cgroup-release", args={"pid": shim}, result=str(exc)))
        finally:
            os.close(release_w)
            release_w = -1

    def on_event(event: Event) -> None:
        nonlocal init_pid, save_error, session
        changed = False
        if event.phase == "done":
            reached.add(event.step)
        if event.step == "seccomp" and event.phase == "done":
            session = event.evidence.get("audit_session")
        if event.step == "fork-init" and event.phase == "done":
            init_pid = int(event.evidence.get("host_pid", 0))
            state.pid = init_pid
            changed = True
            if release_w >= 0:
                release_shim()
        if event.result != "ok" and state.error is None:  # a step failed: say which, and why
            state.error = f"{event.title}: {event.result}"
            changed = True
        for path in event.evidence.get("created_mountpoints", []) or []:
            if path not in state.runtime_paths:
                state.runtime_paths.append(path)
                changed = True
        if changed:
            save_error = _save(store, container_id, state) or save_error
        if event.phase == "plan" and io.stepper is not None:
            io.stepper(event)
            os.write(ack_w, b"y")
        if event.step == "exec" and event.phase == "done" and event.result == "ok":
            hub.enter_raw()  # -it: the command runs, the local terminal goes raw

    pending = b""

    def on_events(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                event = Event.from_json(line.decode())
                tracer.emit(event)
                on_event(event)

    forwarded = forward_signals(lambda: init_pid)
    failure: BaseException | None = None
    try:
        tracer.emit(step_event("fork-shim", args={"pid": shim}, evidence={"shim_pid": shim}))
        group.add(shim)
        tracer.emit(
            step_event(
                "cgroup-attach",
                args={"pid": shim},
                evidence={
                    "written": [
                        {"file": w.path, "value": w.value}
                        for w in group.writes[-len(group.paths) :]
                    ]
                },
            )
        )
        os.write(go_w, b"g")
        os.close(go_w)
        go_w = -1
        hub.run(events_r, on_events, os.pidfd_open(shim), lambda: _kill_leftovers(group))
    except BaseException as exc:
        # dockscope cannot watch the container any more (a trace file on a full disk, a
        # stepper that failed…): end it rather than leave it running unwatched. Killing the
        # shim kills PID 1 (its parent-death signal), and with it the whole namespace.
        failure = exc
        with contextlib.suppress(ProcessLookupError):
            os.kill(shim, signal.SIGKILL)
    finally:
        hub.restore_terminal()
        _, status = wait_child(shim)
        restore_signals(forwarded)
        for fd in (go_w, ack_w, release_w):
            if fd >= 0:
                os.close(fd)
        log.close()
        if failure is not None:
            hub.finish(None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / ATTACH_SOCKET)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    oom = False
    with contextlib.suppress(OSError, ValueError):
        oom = group.oom_killed() and code == MEMORY_KILL_EXIT
    values: dict[str, str] = {}
    with contextlib.suppress(OSError):
        values = group.values()
    if kernel_log is not None:  # before the exit is recorded: stop waits for that record
        try:
            if failure is None:
                _report_denials(tracer, kernel_log, session)
        except Exception as exc:  # a trace file that cannot be written: the exit still counts
            failure = exc
        finally:
            kernel_log.close()
    if spec.seccomp is not None and "no_new_privs" in reached and "exec" not in reached:
        state.error = state.error or _denied_before_exec(code)
    state.status, state.exit_code, state.oom_killed, state.finished = "exited", code, oom, now()
    save_error = _save(store, container_id, state) or save_error
    if failure is not None:
        raise failure
    hub.finish(code)  # attach clients get the exit status
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / ATTACH_SOCKET)
    tracer.emit(
        step_event(
            "exit",
            args={"pid": init_pid},
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


def close_other_fds(keep: set[int]) -> None:
    """The shim keeps stdio and its pipes only: no descriptor of dockscope's (a supervisor's
    readiness pipe, an open image) lives on in the container's processes."""
    top = 3
    for fd in sorted(keep):
        if fd > top:
            os.closerange(top, fd)
        top = fd + 1
    os.closerange(top, 65536)


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


def seccomp_filter(config: ContainerConfig, *, log: bool) -> Filter | None:
    """The container's seccomp filter, compiled here (libseccomp is on the host's disk, which
    PID 1 no longer sees when it loads the filter); with a trace, the kernel is asked to log
    what the filter denies (``log``: SECCOMP_FILTER_FLAG_LOG)."""
    from runtime_lab.kernel import seccomp
    from runtime_lab.spec import DEFAULT_CAPABILITIES

    options = SecurityOptions(config.seccomp, config.seccomp_profile)
    try:
        return seccomp.prepare(options, DEFAULT_CAPABILITIES, log=log)
    except seccomp.SeccompError as exc:
        raise ContainerError(exc.message, subject=config.name) from None


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


def wait_child(pid: int) -> tuple[int, int]:
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue


def forward_signals(target: Callable[[], int]) -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP go to the container's PID 1, as docker run forwards them.

    PID 1 ignores signals it has no handler for: a second Ctrl-C sends SIGKILL."""
    presses = {"count": 0}

    def forward(signum: int, _frame: object) -> None:
        pid = target()
        if not pid:
            return
        if signum == signal.SIGINT:
            presses["count"] += 1
            if presses["count"] > 1:
                signum = signal.SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[signum] = signal.signal(signum, forward)
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


# -- lifecycle ------------------------------------------------------------------------------------
STOP_MARKER = "stop-requested"  # made by stop: the supervisor restarts the container no more


def refresh(store: Store, container_id: str) -> ContainerState:
    """A state that says "running" for a process that is gone is corrected to "exited", and
    "restarting" for a supervisor that is gone too."""
    state = store.load_state(container_id)
    if state.status == "restarting" and not (
        state.supervisor_pid and cgroups.process_exists(state.supervisor_pid)
    ):
        state.status = "exited"
        _save(store, container_id, state)
    if state.status == "running":
        alive = bool(state.shim_pid) and cgroups.process_exists(state.shim_pid)
        if not alive:
            state.status = "exited"
            state.finished = state.finished or now()
            if state.exit_code is None:
                state.exit_code = -1
                state.error = "dockscope was not there when it exited"
            _save(store, container_id, state)  # on a full disk: corrected in memory only
    return state


def stop(store: Store, container_id: str, timeout: float = 10.0) -> ContainerState:
    """SIGTERM to PID 1, then SIGKILL after ``timeout`` seconds, as docker stop does. A
    container stopped by hand is not restarted by its restart policy."""
    state = refresh(store, container_id)
    if state.status in ("running", "restarting"):
        with contextlib.suppress(OSError):
            (store.container_dir(container_id) / STOP_MARKER).touch()
    if state.status == "restarting":  # its supervisor sees the mark and stops waiting
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and state.status == "restarting":
            time.sleep(0.02)
            state = refresh(store, container_id)
        return state
    if state.status != "running" or not state.pid:
        return state
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGTERM)
    if not wait_quietly(state.pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGKILL)
        wait_quietly(state.pid, 5.0)
    if state.shim_pid:
        wait_quietly(state.shim_pid, 5.0)
    # the process that started it (run, or the supervisor of a detached container) records
    # the exit status, then removes the control group: wait for the record
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        current = store.load_state(container_id)
        if current.status != "running":
            return current
        time.sleep(0.02)
    return refresh(store, container_id)  # nobody recorded it: dockscope itself had died


def remove(
    store: Store, container_id: str, *, force: bool = False, volumes: bool = False
) -> dict[str, Any]:
    """Remove the container and its writable layer; with ``volumes``, its anonymous volumes
    too (named volumes stay: they are meant to outlive containers). Returns what went, as
    the evidence of the ``remove`` step."""
    state = refresh(store, container_id)
    if state.status in ("running", "restarting"):
        if not force:
            raise UsageError(f"the container is {state.status}: stop it first, or use rm -f")
        stop(store, container_id, timeout=0)
    directory = store.container_dir(container_id)
    try:
        anonymous = [m["name"] for m in store.load_config(container_id).volumes if m.get("name")]
    except OSError:  # removed meanwhile (a supervisor's --rm)
        anonymous = []
    for attempt in range(20):  # a supervisor still finishing (--rm) may remove or add files
        try:
            remove_dir(directory)
            break
        except FileNotFoundError:
            if not directory.exists():
                break
        except OSError:
            if attempt == 19:
                raise
        time.sleep(0.05)
    if volumes and anonymous:
        from runtime_lab.storage.volumes import remove_anonymous

        remove_anonymous(store, anonymous)
    # a group left by a dockscope killed with -9 (empty: its processes died with PID 1)
    for group in cgroups.dockscope_groups():
        if group.name == container_id[:12]:
            with contextlib.suppress(OSError):
                group.rmdir()
    return {
        "removed": [str(directory)],
        "volumes_removed": anonymous if volumes else [],
        "exists_now": directory.exists(),
    }


class JsonFileLog:
    """docker's json-file log format: one JSON object per line of output,
    ``{"log": "line\\n", "stream": "stdout", "time": "…Z"}``. A line still unfinished when the
    container ends is written without its newline, as docker does. A log that cannot be
    written (a full disk) loses lines; the container runs on."""

    def __init__(self, path: Path) -> None:
        try:
            self._handle: BinaryIO | None = open(path, "ab", buffering=0)  # noqa: SIM115
        except OSError:
            self._handle = None
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        buffered = self._partial[stream] + data
        *lines, self._partial[stream] = buffered.split(b"\n")
        self._write(stream, [line + b"\n" for line in lines])

    def _write(self, stream: str, lines: list[bytes]) -> None:
        if self._handle is None or not lines:
            return
        records = b"".join(
            json.dumps(
                {"log": line.decode("utf-8", "replace"), "stream": stream, "time": now()}
            ).encode()
            + b"\n"
            for line in lines
        )
        with contextlib.suppress(OSError):  # a full disk loses lines; the container runs on
            self._handle.write(records)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._write(stream, [rest])
        self._partial = {"stdout": b"", "stderr": b""}
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


def save_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2).encode())
