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
import errno
import functools
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspect_tool.model.resolve import (
    DIRECTORY,
    NOT_DIRECTORY,
    Missing,
    Node,
    Reason,
    Refusal,
    symlink,
)
from inspect_tool.model.resolve import resolve as resolve_in
from inspect_tool.render.text import visible  # imported here: PID 1 cannot import after pivot_root
from runtime_lab.kernel import hardening, linux
from runtime_lab.kernel.cgroups import process_exists
from runtime_lab.spec import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES, resolve_user
from runtime_lab.trace.events import Event, PipeEmitter
from runtime_lab.trace.steps import STEPS

if TYPE_CHECKING:
    from runtime_lab.kernel.seccomp import Filter

DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)


@dataclass(slots=True)
class LaunchSpec:
    merged: str
    lowerdirs: list[str]  # bottom first
    upper: str
    work: str
    rootfs_mode: str  # "overlay" or "copy" (merged is then a plain directory)
    hostname: str
    network: str  # "none", "host" or "container:<id>" (joined: see ``join``)
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


def _mountinfo(*mount_points: str) -> list[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    if not mount_points:
        return lines
    return [line for line in lines if line.split()[4] in mount_points]


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
    if spec.network == "none":
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
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


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


def run_init(spec: LaunchSpec, child: StepReporter) -> int:
    """PID 1 of the container: set up its world and exec the command (never returns on
    success)."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if spec.release_fd is not None:  # dockscope takes the shim out of the group first
        released = os.read(spec.release_fd, 1)
        os.close(spec.release_fd)
        if released != b"g":  # it could not: the reason is its event
            return 126
    # Until the container's own /proc is mounted, /proc is the host's: /proc/self names this
    # process by the PID the host sees, which is what a student types in another terminal.
    with contextlib.suppress(OSError, ValueError):
        child.host_pid = int(os.readlink("/proc/self"))
    root = spec.merged
    child.run(
        "mount-private",
        lambda: linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE),
        args={"target": "/", "flags": ["MS_REC", "MS_PRIVATE"]},
    )

    def hostname() -> dict[str, Any]:
        linux.sethostname(spec.hostname)
        return {"uts_hostname": os.uname().nodename}

    child.run("hostname", hostname, args={"name": spec.hostname})
    if spec.network == "none":
        child.run("loopback", _loopback, args={"interface": "lo", "flags": "IFF_UP"})
    child.run("mount-rootfs", lambda: _mount_rootfs(spec), args=_rootfs_args(spec))
    child.run(
        "mount-proc",
        lambda: _mount(
            root, "proc", "proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, spec
        ),
        args={"target": f"{root}/proc"},
    )
    child.run("mount-dev", lambda: _mount_dev(root, spec), args={"target": f"{root}/dev"})
    if spec.tty:
        child.run(
            "tty",
            lambda: _allocate_terminal(root, spec),
            args={"ptmx": f"{root}/dev/pts/ptmx", "window": spec.window},
        )
    child.run(
        "mount-sys",
        lambda: _mount(
            root,
            "sys",
            "sysfs",
            "sysfs",
            linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
            spec,
        ),
        args={"target": f"{root}/sys", "flags": ["MS_RDONLY"]},
    )
    for mount in spec.mounts:
        child.run(
            "mount-volume",
            functools.partial(_mount_volume, root, mount, spec),
            args={
                "source": mount["source"],
                "target": mount["destination"],
                "flags": ["MS_BIND", "MS_REC"] + (["MS_RDONLY"] if mount["read_only"] else []),
                "volume": mount.get("name"),
            },
        )
    child.run("pivot_root", lambda: _pivot(root), args={"new_root": root, "put_old": root})
    child.run(
        "readonly-paths",
        hardening.make_readonly,
        args={"paths": list(hardening.READONLY_PATHS), "flags": ["MS_BIND", "MS_RDONLY"]},
    )
    child.run("masked-paths", hardening.mask, args={"paths": list(hardening.MASKED_PATHS)})
    workdir = spec.workdir or "/"
    try:  # made as root, before the root may become read-only (docker makes it at create)
        os.makedirs(workdir, exist_ok=True)
    except OSError as exc:
        child.done("exec", result=f"mkdir {workdir}: {exc.strerror}", args={"argv": spec.argv})
        return 126
    if spec.read_only:
        child.run(
            "readonly-rootfs",
            _read_only_root,
            args={"target": "/", "flags": ["MS_REMOUNT", "MS_BIND", "MS_RDONLY"]},
        )
    user_holder: dict[str, Any] = {}
    child.run(
        "user",
        lambda: switch_user(spec.user, user_holder, spec.terminal),
        args={"user": spec.user},
    )
    child.run(
        "capabilities",
        lambda: drop_capabilities(user_holder["uid"]),
        args={"keep": list(DEFAULT_CAPABILITIES)},
    )
    child.run("no_new_privs", linux.set_no_new_privs, args={"option": "PR_SET_NO_NEW_PRIVS"})
    _prepare_stdio(spec)
    try:
        os.chdir(workdir)
    except OSError as exc:
        child.done("exec", result=f"chdir {workdir}: {exc.strerror}", args={"argv": spec.argv})
        return 126
    if spec.seccomp is not None:  # the last step before execve, as runc loads it
        child.run("seccomp", spec.seccomp.load, args={"profile": spec.seccomp.name})
    env = dict(item.split("=", 1) for item in spec.env if "=" in item)
    env.setdefault("HOME", user_holder.get("home", "/"))
    child.before("exec", args={"argv": spec.argv, "cwd": workdir})
    child.done(
        "exec",
        args={"argv": spec.argv, "cwd": workdir},
        evidence={"env": [f"{k}={v}" for k, v in env.items()]},
    )
    try:
        os.execvpe(spec.argv[0], spec.argv, env)
    except OSError as exc:
        sys.stderr.write(exec_failure(spec.argv[0], exc, spec.exec_hint) + "\n")
        return 127 if exc.errno == errno.ENOENT else 126
    return 126  # not reached


def _loopback() -> dict[str, Any]:
    import socket

    linux.set_loopback_up()
    # asked of the kernel in this network namespace (/sys is still the host's at this point)
    return {"interfaces": sorted(name for _, name in socket.if_nameindex())}


def _rootfs_args(spec: LaunchSpec) -> dict[str, Any]:
    if spec.rootfs_mode == "copy":
        return {"source": spec.merged, "target": spec.merged, "flags": ["MS_BIND"]}
    return {
        "fstype": "overlay",
        "target": spec.merged,
        "lowerdir": list(reversed(spec.lowerdirs)),
        "upperdir": spec.upper,
        "workdir": spec.work,
    }


def _mount_rootfs(spec: LaunchSpec) -> dict[str, Any]:
    if spec.rootfs_mode == "copy":
        linux.mount(spec.merged, spec.merged, None, linux.MS_BIND | linux.MS_REC)
    else:
        # overlayfs lists lowerdirs top first
        lower = ":".join(reversed(spec.lowerdirs)) if spec.lowerdirs else None
        if lower is None:  # an image without layers: one empty lower layer
            empty = os.path.join(os.path.dirname(spec.upper), "empty")
            os.makedirs(empty, exist_ok=True)
            lower = empty
        data = f"lowerdir={lower},upperdir={spec.upper},workdir={spec.work}"
        linux.mount("overlay", spec.merged, "overlay", 0, data)
    return {"mountinfo": _mountinfo(spec.merged)}


def _mountpoint(root: str, name: str, spec: LaunchSpec) -> str:
    """The directory to mount on; created (and remembered) when the image lacks it."""
    target = os.path.join(root, name)
    try:
        st = os.lstat(target)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"{name} in the image is not a directory")
    except FileNotFoundError:
        os.makedirs(target, mode=0o755)
        spec.created_mountpoints.append("/" + name)
    return target


def _mount(
    root: str, name: str, source: str, fstype: str, flags: int, spec: LaunchSpec
) -> dict[str, Any]:
    created = len(spec.created_mountpoints)
    target = _mountpoint(root, name, spec)
    linux.mount(source, target, fstype, flags)
    return {
        "mountinfo": _mountinfo(target),
        "created_mountpoints": spec.created_mountpoints[created:],
    }


def _mount_dev(root: str, spec: LaunchSpec) -> dict[str, Any]:
    created = len(spec.created_mountpoints)
    dev = _mountpoint(root, "dev", spec)
    linux.mount(
        "tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k"
    )
    for name, major, minor in DEV_NODES:
        path = os.path.join(dev, name)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    linux.mount(
        "devpts",
        os.path.join(dev, "pts"),
        "devpts",
        linux.MS_NOSUID | linux.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    linux.mount(
        "shm",
        os.path.join(dev, "shm"),
        "tmpfs",
        linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
        "mode=1777,size=65536k",
    )
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))
    return {
        "devices": sorted(os.listdir(dev)),
        "mountinfo": _mountinfo(dev),
        "created_mountpoints": spec.created_mountpoints[created:],
    }


def resolve_in_root(root: str, path: str, *, directory: bool, created: list[str]) -> str:
    """``path`` in the container as a host path below ``root``, every symlink resolved as if
    ``root`` were ``/`` (filepath-securejoin's rule, ``inspect_tool/model/resolve.py``:
    ``..`` stops at the root, 40 links at most), so an image's ``/data -> /etc`` or
    ``-> ../../..`` cannot lead a mount out of the container. Missing components are made
    (directories; the last one an empty file when a file is to be mounted on it), the
    topmost one appended to ``created``."""

    def lookup(parts: tuple[str, ...]) -> Node | None:
        candidate = os.path.join(root, *parts)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return symlink(os.readlink(candidate))
        return DIRECTORY if stat.S_ISDIR(st.st_mode) else NOT_DIRECTORY

    def create(parts: tuple[str, ...], last: bool) -> Node:
        candidate = os.path.join(root, *parts)
        if not last or directory:
            os.mkdir(candidate, 0o755)
        else:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        inside = "/" + "/".join(parts)
        if not any(inside.startswith(p + "/") for p in created):
            created.append(inside)
        return DIRECTORY if not last or directory else NOT_DIRECTORY

    found = resolve_in(path, lookup, missing=Missing.CREATE, create=create)
    if isinstance(found, Refusal):
        if found.reason is Reason.LOOP:
            raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
        where = "/" + "/".join(found.at)
        raise OSError(errno.ENOTDIR, f"{path}: {where} is not a directory")
    return os.path.join(root, *found.parts)


def _mount_volume(root: str, mount: dict[str, Any], spec: LaunchSpec) -> dict[str, Any]:
    """A bind mount of the volume's (or host path's) directory onto its place in the
    container, made read-only by a second mount call when asked (MS_RDONLY is ignored by
    the first: a bind keeps its source's flags). A new, empty volume first gets the image's
    files at that place, as docker copies them."""
    created = len(spec.created_mountpoints)
    source = mount["source"]
    is_directory = os.path.isdir(source)
    target = resolve_in_root(
        root, mount["destination"], directory=is_directory, created=spec.created_mountpoints
    )
    copied = 0
    if mount.get("copy") and is_directory and not os.listdir(source):
        st = os.lstat(target)
        if stat.S_ISDIR(st.st_mode):
            copied = _copy_tree(target, source)
    fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:  # through the descriptor: the very directory resolved above
        linux.mount(source, f"/proc/self/fd/{fd}", None, linux.MS_BIND | linux.MS_REC)
    finally:
        os.close(fd)
    if mount["read_only"]:
        linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    return {
        "mountinfo": _mountinfo(target),
        "created_mountpoints": spec.created_mountpoints[created:],
        "copied_from_image": copied,
    }


def _copy_tree(source: str, destination: str) -> int:
    """The image's entries below ``source`` into an empty volume: owners, modes and times
    kept, symlinks copied as links (never followed), devices and FIFOs made again."""
    count = 0
    directories: list[tuple[str, os.stat_result]] = [(destination, os.lstat(source))]
    for here, dirnames, filenames in os.walk(source):
        there = os.path.join(destination, os.path.relpath(here, source))
        for name in [*dirnames, *filenames]:
            src, dst = os.path.join(here, name), os.path.join(there, name)
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(dst, 0o700)
                directories.append((dst, st))
                count += 1
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                reader = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                writer = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    while chunk := os.read(reader, 1 << 20):
                        os.write(writer, chunk)
                finally:
                    os.close(reader)
                    os.close(writer)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                os.mknod(dst, st.st_mode, st.st_rdev)
            else:
                continue  # a socket
            os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            count += 1
    for path, st in reversed(directories):  # children first: their writes touched the times
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return count


def _read_only_root() -> dict[str, Any]:
    linux.mount(None, "/", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)
    return {"mountinfo": _mountinfo("/")}


def _pivot(root: str) -> dict[str, Any]:
    os.chdir(root)
    linux.pivot_root(".", ".")  # the old root ends up stacked under the new one
    linux.umount2(".", linux.MNT_DETACH)  # …and is detached from it
    os.chdir("/")
    return {"mountinfo": _mountinfo()}


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
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    if user.uid != 0:
        # keep the capabilities long enough to reduce the bounding set afterwards
        linux.prctl(8, 1)  # PR_SET_KEEPCAPS
    os.setuid(user.uid)
    evidence: dict[str, Any] = {
        "uid": user.uid,
        "gid": user.gid,
        "groups": list(user.groups),
        "home": user.home,
    }
    if ignored:
        evidence["ignored"] = ignored
    return evidence


def drop_capabilities(uid: int) -> dict[str, Any]:
    keep = {CAPABILITY_NUMBERS[name] for name in DEFAULT_CAPABILITIES}
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
    if uid == 0:
        # nothing inheritable, as docker since 23.0 (CVE-2022-24769)
        linux.capset(mask, mask, 0)
    else:
        linux.capset(0, 0, 0)  # a non-root user keeps none, as with docker
    status = {name: _status_field(name) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd")}
    return {"dropped": dropped, "status": status}


def _status_field(name: str) -> str | None:
    """One field of /proc/self/status (``CapEff`` → ``00000000a80425fb``)."""
    for line in _read("/proc/self/status").splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return None


def open_terminal(
    ptmx: str, window: tuple[int, int] | None, console_fd: int
) -> tuple[int, int, int]:
    """A pseudo-terminal from the devpts instance of ``ptmx``: its master goes up to
    dockscope over the console socket (SCM_RIGHTS); the slave (returned, with its number and
    the master's descriptor, still open here) stays to become the command's terminal."""
    import socket

    master, slave, number = linux.open_pty(ptmx)
    try:
        if window is not None:
            linux.set_window_size(master, *window)
        with socket.socket(fileno=os.dup(console_fd)) as sock:
            socket.send_fds(sock, [b"t"], [master])
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave, number


def _allocate_terminal(root: str, spec: LaunchSpec) -> dict[str, Any]:
    """A terminal from the container's own devpts (so it is /dev/pts/N inside, as runc's
    console): its slave becomes the command's stdin, stdout, stderr and controlling
    terminal; /dev/console is the slave too."""
    assert spec.console_fd is not None
    master, slave, number = open_terminal(
        os.path.join(root, "dev", "pts", "ptmx"), spec.window, spec.console_fd
    )
    os.close(master)
    spec.terminal = slave
    os.close(spec.console_fd)
    spec.console_fd = None
    console = os.path.join(root, "dev", "console")
    with open(console, "w"):
        pass  # a mount point for the bind mount below
    linux.mount(os.path.join(root, "dev", "pts", str(number)), console, None, linux.MS_BIND)
    return {
        "terminal": f"/dev/pts/{number}",
        "window": list(linux.window_size(slave) or (0, 0)),
        "console": "/dev/console",
        "master": "sent to dockscope (SCM_RIGHTS)",
    }


def _prepare_stdio(spec: LaunchSpec) -> None:
    set_stdio(spec.stdin_fd, spec.stdout_fd, spec.stderr_fd, spec.terminal)


def set_stdio(
    stdin_fd: int | None, stdout_fd: int | None, stderr_fd: int | None, terminal: int | None
) -> None:
    """The command's stdin, stdout and stderr, in a session of its own (as runc's init
    calls setsid): a terminal becomes its controlling terminal; no stdin is /dev/null."""
    os.setsid()
    if terminal is not None:
        linux.set_controlling_terminal(terminal)
        for target in (0, 1, 2):
            os.dup2(terminal, target)
        os.close(terminal)
        return
    if stdin_fd is not None:
        os.dup2(stdin_fd, 0)
    else:
        fd = os.open("/dev/null", os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
    if stdout_fd is not None:
        os.dup2(stdout_fd, 1)
    if stderr_fd is not None:
        os.dup2(stderr_fd, 2)


def wait_quietly(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a process (not our child) to vanish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_exists(pid):  # gone, or a zombie: dead all the same
            return True
        time.sleep(0.02)
    return False
