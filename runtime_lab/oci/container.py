"""The runtime's operations, as runc does them for an engine (conmon, containerd-shim):

- ``create``: cgroup, fork a child that joins or unshares the namespaces and forks PID 1,
  which sets up the container and blocks on the exec FIFO; the pid file is written and
  ``create`` returns, PID 1 waiting (orphaned to the engine's subreaper, as with runc).
- ``start``: open the FIFO for reading: PID 1 goes on to execute the process.
- ``kill``, ``delete``, ``exec``, ``state``.

Every step is a trace event, written (JSON lines) where the student asked: the
``org.dockscope.trace`` annotation or ``DOCKSCOPE_TRACE`` in the runtime's environment.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import time
from dataclasses import asdict, replace
from typing import Any

from inspect_tool.errors import DockscopeError, UsageError
from runtime_lab.kernel import linux
from runtime_lab.oci import cgroup, hooks, state
from runtime_lab.oci import config as oci_config
from runtime_lab.oci.config import Config, Hook
from runtime_lab.oci.init import InitContext, _finish, describe, run_init
from runtime_lab.oci.steps import Reporter
from runtime_lab.process.terminal import open_terminal

TRACE_ANNOTATION = "org.dockscope.trace"
TRACE_ENV = "DOCKSCOPE_TRACE"
PR_SET_CHILD_SUBREAPER = 36
NAMESPACE_FLAGS = {
    "pid": linux.Clone.NEWPID,
    "network": linux.Clone.NEWNET,
    "mount": linux.Clone.NEWNS,
    "ipc": linux.Clone.NEWIPC,
    "uts": linux.Clone.NEWUTS,
    "cgroup": linux.Clone.NEWCGROUP,
}
PROC_NS = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "cgroup": "cgroup",
}
# setns order: the mount namespace last (after it, /proc paths of the host are gone)
JOIN_ORDER = ("cgroup", "ipc", "uts", "network", "pid", "mount")


class ContainerError(DockscopeError):
    """The container could not be made or driven (exit 1, as runc)."""

    exit_code = 1  # type: ignore[assignment]


def trace_path(cfg: Config) -> str | None:
    return cfg.annotations.get(TRACE_ANNOTATION) or os.environ.get(TRACE_ENV) or None


def _open_trace(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write the trace: {exc.strerror}", subject=path) from None


def _seccomp_filter(cfg: Config) -> Any:
    if cfg.seccomp is None:
        return None
    from runtime_lab.oci.seccomp_spec import compile_spec

    return compile_spec(cfg.seccomp, log=False)


def _read_lines(fd: int) -> Any:
    buffer = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            if buffer.strip():
                yield json.loads(buffer)
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


def create(
    root: str,
    container_id: str,
    bundle: str,
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    preserve_fds: int = 0,
) -> state.Record:
    state.check_id(container_id)
    bundle = os.path.abspath(bundle)
    cfg = oci_config.load(bundle)
    if cfg.process.terminal and not console_socket:
        raise UsageError("process.terminal is true: --console-socket is needed")
    os.makedirs(root, mode=0o700, exist_ok=True)
    directory = state.directory(root, container_id)
    try:
        os.mkdir(directory, 0o711)
    except FileExistsError:
        raise ContainerError(f"container with id exists: {container_id}") from None
    trace = trace_path(cfg)
    try:
        return _create(
            root,
            directory,
            container_id,
            bundle,
            cfg,
            trace,
            pid_file,
            console_socket,
            preserve_fds,
        )
    except BaseException:
        _remove_tree(directory)
        raise


def _create(
    root: str,
    directory: str,
    container_id: str,
    bundle: str,
    cfg: Config,
    trace: str | None,
    pid_file: str | None,
    console_socket: str | None,
    preserve_fds: int,
) -> state.Record:
    trace_fd = _open_trace(trace)
    reporter = Reporter(trace_fd)
    reporter.done(
        "bundle",
        args={"bundle": bundle, "id": container_id},
        evidence={
            "ociVersion": cfg.oci_version,
            "root": cfg.root_path,
            "args": list(cfg.process.args),
            "namespaces": [asdict(n) for n in cfg.namespaces],
            "mounts": len(cfg.mounts),
            "cgroupsPath": cfg.cgroups_path,
            "hooks": {k: len(v) for k, v in cfg.hooks.items() if v},
        },
    )
    if not os.path.isdir(cfg.root_path):
        raise ContainerError(f"root.path: {cfg.root_path} is not a directory")
    groups = cgroup.paths(cfg.cgroups_path, container_id)
    writes = cgroup.limit_writes(groups, cfg.resources)
    reporter.run("cgroup-create", lambda: cgroup.create(groups), args={"path": cfg.cgroups_path})
    seccomp = None
    try:
        if writes:
            reporter.run("cgroup-limits", lambda: cgroup.apply_limits(writes), args={})
        if cfg.resources.devices and cgroup.unified_only(groups):
            reporter.run(
                "cgroup-limits",
                lambda: cgroup.device_program_v2(groups, cfg.resources),
                args={"devices": "eBPF BPF_PROG_TYPE_CGROUP_DEVICE"},
            )
        seccomp = _seccomp_filter(cfg)
        fifo = os.path.join(directory, "exec.fifo")
        os.mkfifo(fifo, 0o622)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        console_fd = _connect(console_socket) if cfg.process.terminal else None
        record = state.Record(
            id=container_id,
            bundle=bundle,
            pid=0,
            pid_start="",
            created=datetime.datetime.now(datetime.UTC).isoformat(),
            rootfs=cfg.root_path,
            annotations=cfg.annotations,
            cgroups=groups,
            namespaces=[n.type for n in cfg.namespaces],
            trace=trace,
            poststop=[asdict(h) for h in cfg.hooks["poststop"]],
            config={"seccomp": cfg.seccomp, "readonly": cfg.root_readonly},
        )
        pid = _spawn(
            cfg,
            container_id,
            bundle,
            groups,
            seccomp,
            fifo_fd,
            console_fd,
            reporter,
            record,
            root,
            preserve_fds,
        )
    except BaseException:
        for p in cgroup.pids(groups):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        cgroup.remove(groups)
        raise
    finally:
        if seccomp is not None:
            seccomp.release()
    if pid_file:
        _write_pid_file(pid_file, pid)
    return record


def _connect(path: str | None) -> int:
    assert path is not None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise ContainerError(f"--console-socket {path}: {exc.strerror}") from None
    return sock.detach()


def _write_pid_file(path: str, pid: int) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _spawn(
    cfg: Config,
    container_id: str,
    bundle: str,
    groups: dict[str, str],
    seccomp: Any,
    fifo_fd: int,
    console_fd: int | None,
    reporter: Reporter,
    record: state.Record,
    root: str,
    preserve_fds: int,
) -> int:
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    go_r, go_w = os.pipe()
    new = frozenset(n.type for n in cfg.namespaces if n.path is None)
    ctx = InitContext(
        config=cfg,
        sync_up=up_w,
        sync_down=down_r,
        fifo_fd=fifo_fd,
        console_fd=console_fd,
        seccomp=seccomp,
        cgroup_dirs=groups,
        new_namespaces=new,
        preserve_fds=preserve_fds,
        state={
            "ociVersion": state.OCI_VERSION,
            "id": container_id,
            "status": "creating",
            "bundle": bundle,
            "annotations": cfg.annotations,
        },
    )
    first = os.fork()
    if first == 0:
        code = 1
        try:
            os.close(up_r)
            os.close(down_w)
            os.close(go_w)
            code = _first_child(cfg, ctx, go_r, reporter)
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(up_w, (json.dumps({"error": describe(exc)}) + "\n").encode())
        finally:
            os._exit(code)
    for fd in (up_w, down_r, go_r, fifo_fd):
        os.close(fd)
    if console_fd is not None:
        os.close(console_fd)
    init_pid = 0
    try:
        reporter.run("cgroup-attach", lambda: cgroup.attach(groups, first), args={"pid": first})
        os.write(go_w, b"g")
        for message in _read_lines(up_r):
            if "init_pid" in message:
                init_pid = int(message["init_pid"])
                record.pid = init_pid
                record.pid_start = state.start_time(init_pid) or ""
                state.save(root, record)
            elif "hook" in message:
                doc = {**ctx.state, "pid": init_pid}
                for kind in ("prestart", "createRuntime"):
                    hooks.run_hooks(kind, cfg.hooks[kind], doc, reporter)
                os.write(down_w, b"g")
            elif "created" in message:
                break
            elif "error" in message:
                raise ContainerError(message["error"])
        else:
            raise ContainerError("the container's init ended before it was created")
    except BaseException:
        if init_pid:
            with contextlib.suppress(OSError):
                os.kill(init_pid, signal.SIGKILL)
        raise
    finally:
        os.close(up_r)
        os.close(down_w)
        os.close(go_w)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(first, 0)
    state.save(root, record)
    return init_pid


def _first_child(cfg: Config, ctx: InitContext, go_fd: int, reporter: Reporter) -> int:
    """Joins the namespaces given by path, unshares the new ones, forks PID 1 and ends."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.read(go_fd, 1) != b"g":
        return 1
    os.close(go_fd)
    _join(cfg, reporter, {n.type: n.path for n in cfg.namespaces if n.path})
    flags = 0
    for kind in ctx.new_namespaces:
        flags |= NAMESPACE_FLAGS[kind]
    before = linux.namespace_inodes()

    def unshare() -> dict[str, Any]:
        linux.unshare(flags)
        return {"namespaces_before": before, "namespaces_after": linux.namespace_inodes()}

    names = [f"CLONE_{f.name}" for f in linux.Clone if f & flags]
    reporter.run("unshare", unshare, args={"flags": names})
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = run_init(ctx, reporter)
        finally:
            os._exit(code)
    os.write(ctx.sync_up, (json.dumps({"init_pid": pid}) + "\n").encode())
    reporter.done("fork-init", args={"pid": pid}, evidence={"host_pid": pid})
    return 0


def _join(cfg: Config, reporter: Reporter, paths: dict[str, str]) -> None:
    opened = {}
    try:
        for kind in JOIN_ORDER:
            if kind in paths:
                try:
                    opened[kind] = os.open(paths[kind], os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"linux.namespaces[{kind}].path {paths[kind]}: {exc.strerror}"
                    ) from None
        for kind, fd in opened.items():

            def join(fd: int = fd, kind: str = kind) -> dict[str, Any]:
                linux.setns(fd, int(NAMESPACE_FLAGS[kind]))
                return {"inode": os.fstat(fd).st_ino}

            reporter.run("setns", join, args={"namespace": kind, "path": paths[kind]})
    finally:
        for fd in opened.values():
            os.close(fd)


def start(root: str, container_id: str) -> state.Record:
    record = state.load(root, container_id)
    now = state.status(root, record)
    if now != "created":
        raise ContainerError(f"cannot start a container that is {now}")
    fifo = os.path.join(state.directory(root, container_id), "exec.fifo")
    trace_fd = _open_trace(record.trace)
    reporter = Reporter(trace_fd)
    # recorded before the open: from the open on, PID 1 runs ahead and records its steps
    reporter.done("start", args={"id": container_id, "fifo": fifo}, evidence={"pid": record.pid})
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                data = None
            if data:
                break
            if state.start_time(record.pid) != record.pid_start:
                raise ContainerError("the container's init is gone")
            if time.monotonic() > deadline:
                raise ContainerError("the container's init did not take the start")
            time.sleep(0.005)
    finally:
        os.close(fd)
    os.unlink(fifo)
    cfg = oci_config.load(record.bundle) if os.path.exists(record.bundle) else None
    if cfg is not None and cfg.hooks["poststart"]:
        hooks.run_hooks("poststart", cfg.hooks["poststart"], state.document(root, record), reporter)
    return record


SIGNALS = {s.name: s for s in signal.Signals}


def parse_signal(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if not 0 < number < 65:
            raise UsageError(f"unknown signal {text!r}")
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in SIGNALS:
        raise UsageError(f"unknown signal {text!r}")
    return int(SIGNALS[name])


def kill(root: str, container_id: str, sig: int, *, all_processes: bool = False) -> list[int]:
    record = state.load(root, container_id)
    now = state.status(root, record)
    if now == "stopped" and not all_processes:
        raise ContainerError("container not running")
    targets = cgroup.pids(record.cgroups) if all_processes else [record.pid]
    if now != "stopped" and record.pid not in targets:
        targets.append(record.pid)
    sent = []
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            sent.append(pid)
    reporter = Reporter(_open_trace(record.trace))
    reporter.done("kill", args={"signal": sig, "all": all_processes}, evidence={"pids": sent})
    return sent


def delete(root: str, container_id: str, *, force: bool = False) -> None:
    try:
        record = state.load(root, container_id)
    except state.NotFound:
        directory = state.directory(root, container_id)
        if os.path.isdir(directory):  # a create that never finished
            _remove_tree(directory)
            return
        if force:
            return
        raise
    now = state.status(root, record)
    if now == "running" and not force:
        raise ContainerError(f"cannot delete container {container_id} that is not stopped: {now}")
    killed = []
    if now != "stopped":
        killed = kill(root, container_id, signal.SIGKILL, all_processes=True)
        deadline = time.monotonic() + 10
        while state.start_time(record.pid) == record.pid_start and time.monotonic() < deadline:
            time.sleep(0.01)
    for pid in cgroup.pids(record.cgroups):  # what is left, even of a stopped container
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    removed = cgroup.remove(record.cgroups)
    reporter = Reporter(_open_trace(record.trace))
    reporter.done(
        "delete",
        args={"id": container_id, "force": force},
        evidence={"status_before": now, "killed": killed, "cgroups_removed": removed},
    )
    doc = state.document(root, record)
    doc["status"] = "stopped"
    post = tuple(
        Hook(h["path"], tuple(h["args"]), tuple(h["env"]), h["timeout"]) for h in record.poststop
    )
    hooks.run_hooks("poststop", post, doc, reporter)
    _remove_tree(state.directory(root, container_id))


def _remove_tree(directory: str) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


def exec_process(
    root: str,
    container_id: str,
    process: dict[str, Any],
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    detach: bool = False,
    preserve_fds: int = 0,
) -> int:
    """One more process in a running container (runc exec): join its group and namespaces,
    fork into its PID namespace, set the process up from process.json and execute it."""
    record = state.load(root, container_id)
    now = state.status(root, record)
    if now not in ("running", "created"):
        raise ContainerError(f"cannot exec in a {now} container")
    proc = oci_config._process(oci_config._Reader(process, "process", oci_config._PROCESS_KEYS))
    if proc.terminal and not console_socket:
        raise UsageError("process.terminal is true: --console-socket is needed")
    seccomp_doc = record.config.get("seccomp")
    base = oci_config.parse(
        {
            "ociVersion": state.OCI_VERSION,
            "root": {"path": record.rootfs},
            "process": process,
            "linux": {"namespaces": [{"type": "mount"}], "seccomp": seccomp_doc},
        },
        record.bundle,
    )
    cfg = replace(base, process=proc)
    seccomp = _seccomp_filter(cfg)
    reporter = Reporter(_open_trace(record.trace))
    console_fd = _connect(console_socket) if proc.terminal else None
    paths = {
        kind: f"/proc/{record.pid}/ns/{PROC_NS[kind]}"
        for kind in record.namespaces
        if os.stat(f"/proc/{record.pid}/ns/{PROC_NS[kind]}").st_ino
        != os.stat(f"/proc/self/ns/{PROC_NS[kind]}").st_ino
    }
    up_r, up_w = os.pipe()
    if not detach:
        linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
    first = os.fork()
    if first == 0:
        code = 1
        try:
            os.close(up_r)
            cgroup.attach(record.cgroups, os.getpid())
            _join(cfg, reporter, paths)
            pid = os.fork()
            if pid == 0:
                try:
                    code = _exec_child(cfg, reporter, seccomp, console_fd, preserve_fds)
                finally:
                    os._exit(code)
            os.write(up_w, (json.dumps({"pid": pid}) + "\n").encode())
            code = 0
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(up_w, (json.dumps({"error": describe(exc)}) + "\n").encode())
        finally:
            os._exit(code)
    os.close(up_w)
    if console_fd is not None:
        os.close(console_fd)
    if seccomp is not None:
        seccomp.release()
    pid = 0
    for message in _read_lines(up_r):
        if "error" in message:
            os.close(up_r)
            raise ContainerError(message["error"])
        pid = int(message["pid"])
    os.close(up_r)
    os.waitpid(first, 0)
    if not pid:
        raise ContainerError("exec: the process could not be started")
    reporter.done(
        "exec-process",
        args={"argv": list(proc.args), "namespaces": sorted(paths)},
        evidence={"pid": pid},
    )
    if pid_file:
        _write_pid_file(pid_file, pid)
    if detach:
        return 0
    _, status = os.waitpid(pid, 0)
    return linux.exit_code(status)


def _exec_child(
    cfg: Config, reporter: Reporter, seccomp: Any, console_fd: int | None, preserve_fds: int
) -> int:
    terminal = None
    os.chdir("/")
    if console_fd is not None:
        size = cfg.process.console_size
        window = (size[0], size[1]) if size and size[0] and size[1] else None
        master, terminal, _ = open_terminal("/dev/pts/ptmx", window, console_fd)
        os.close(master)
        os.close(console_fd)
    return _finish(cfg, reporter, seccomp, terminal, preserve_fds)


def ps(root: str, container_id: str) -> list[int]:
    record = state.load(root, container_id)
    return cgroup.pids(record.cgroups)
