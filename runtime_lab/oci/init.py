"""PID 1 of an OCI container, from config.json: the mounts in order, the devices, pivot_root,
the masked and read-only paths, then (at create's end) a wait on the exec FIFO, and at start
the user, capabilities, rlimits, no_new_privs, seccomp and execve.

Talks to the runtime process that forked it over ``sync``: one JSON line per message up
(``{"hook": KIND}`` asks it to run hooks, ``{"created": true}`` or ``{"error": ...}``), one
byte back down (``g`` to go on)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import stat
import sys
from dataclasses import dataclass, field
from typing import Any

from runtime_lab.kernel import hardening, linux
from runtime_lab.oci.cgroup import unified_only
from runtime_lab.oci.config import Config, Mount
from runtime_lab.oci.hooks import run_hooks
from runtime_lab.oci.steps import Reporter
from runtime_lab.process.launch import exec_failure
from runtime_lab.process.mounts import DEV_NODES, _mountinfo, pivot, resolve_in_root
from runtime_lab.process.terminal import open_terminal, set_stdio

PR_SET_KEEPCAPS = 8


@dataclass(slots=True)
class InitContext:
    """What the container's PID 1 is handed by the runtime process that forked it: the config,
    the descriptors to talk and wait on, and what it needs to set the container up."""

    config: Config
    sync_up: int  # write end: JSON lines to the runtime
    sync_down: int  # read end: "g" from the runtime
    fifo_fd: int | None  # O_PATH of the exec FIFO (None: exec, which does not wait)
    console_fd: int | None  # connected to --console-socket
    seccomp: Any  # a compiled runtime_lab.kernel.seccomp.Filter, or None
    cgroup_dirs: dict[str, str]
    new_namespaces: frozenset[str]
    preserve_fds: int = 0  # the engine's descriptors 3 .. 3+N-1 stay open in the process
    state: dict[str, Any] = field(default_factory=dict)  # what hooks get on their stdin
    terminal: int | None = None


def describe(exc: BaseException) -> str:
    """An error as one line without Python's ``[Errno N]`` prefix."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def send(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def ask_runtime(ctx: InitContext, message: dict[str, Any]) -> None:
    """Ask the runtime to do something (run hooks) and wait until it says go."""
    send(ctx.sync_up, message)
    answer = os.read(ctx.sync_down, 1)
    if answer != b"g":
        raise OSError(errno.ECANCELED, f"the runtime stopped the container at {message}")


def run_init(ctx: InitContext, child: Reporter) -> int:
    """Set up the container, report created, wait for start, execute. Returns only on
    failure (the error was sent up)."""
    # no PR_SET_PDEATHSIG: its parent ends at once, and PID 1 outlives create; if create
    # dies first, the sync pipe ends and PID 1 with it
    with contextlib.suppress(OSError, ValueError):
        child.host_pid = int(os.readlink("/proc/self"))
        ctx.state["pid"] = child.host_pid
    try:
        _world(ctx, child)
        send(ctx.sync_up, {"created": True})
        os.close(ctx.sync_up)
        os.close(ctx.sync_down)
    except Exception as exc:  # the step already reported it in the trace
        with contextlib.suppress(OSError):
            send(ctx.sync_up, {"error": describe(exc)})
        return 1
    try:
        _wait_for_start(ctx, child)
        hooks = ctx.config.hooks["startContainer"]
        if hooks:
            run_hooks("startContainer", hooks, {**ctx.state, "status": "running"}, child)
    except Exception as exc:
        sys.stderr.write(f"dockscope-runtime: {describe(exc)}\n")
        return 1
    try:
        return _finish(ctx.config, child, ctx.seccomp, ctx.terminal, ctx.preserve_fds)
    except Exception as exc:  # on the container's stderr, which the engine logs (as runc)
        sys.stderr.write(f"dockscope-runtime: {describe(exc)}\n")
        return 1


def _world(ctx: InitContext, child: Reporter) -> None:
    c = ctx.config
    root = c.root_path
    child.run(
        "mount-private",
        lambda: linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE),
        args={"target": "/", "flags": ["MS_REC", "MS_SLAVE"]},
    )
    if c.hostname is not None:
        if "uts" not in ctx.new_namespaces:
            raise OSError(errno.EINVAL, "hostname: needs a new uts namespace (runc's rule)")

        def hostname() -> dict[str, Any]:
            linux.sethostname(c.hostname or "")
            return {"uts_hostname": os.uname().nodename}

        child.run("hostname", hostname, args={"name": c.hostname})
    if "network" in ctx.new_namespaces:
        child.run("loopback", linux.set_loopback_up, args={"interface": "lo", "flags": "IFF_UP"})

    def bind_root() -> dict[str, Any]:
        linux.mount(root, root, None, linux.MS_BIND | linux.MS_REC)
        return {"mountinfo": _mountinfo(root)}

    child.run(
        "mount-rootfs", bind_root, args={"source": root, "target": root, "flags": ["MS_BIND"]}
    )
    created: list[str] = []
    for mount in c.mounts:
        child.run(
            "mount",
            lambda m=mount: _mount(root, m, ctx, created),  # type: ignore[misc]
            args={
                "destination": mount.destination,
                "type": mount.type,
                "source": mount.source,
                "options": list(mount.options),
            },
        )
    child.run("devices", lambda: _devices(root, c), args={"count": len(c.devices)})
    if c.process.terminal:
        child.run("tty", lambda: _terminal(root, ctx), args={"console_socket": True})
    ask_runtime(ctx, {"hook": "prestart+createRuntime"})
    if c.hooks["createContainer"]:  # in the container's namespaces, before pivot_root
        run_hooks("createContainer", c.hooks["createContainer"], ctx.state, child)
    child.run("pivot_root", lambda: pivot(root), args={"new_root": root, "put_old": root})
    if c.sysctl:
        child.run("sysctl", lambda: _sysctl(c.sysctl), args={"sysctl": c.sysctl})
    if c.readonly_paths:
        paths = tuple(c.readonly_paths)
        child.run(
            "readonly-paths",
            lambda: hardening.make_readonly(paths),
            args={"paths": list(paths), "flags": ["MS_BIND", "MS_RDONLY"]},
        )
    if c.masked_paths:
        masked = tuple(c.masked_paths)
        child.run("masked-paths", lambda: hardening.mask(masked, ()), args={"paths": list(masked)})
    if c.rootfs_propagation is not None:
        flags = c.rootfs_propagation
        child.run(
            "rootfs-propagation",
            lambda: linux.mount(None, "/", None, flags),
            args={"target": "/", "flags": flags},
        )
    if c.root_readonly:

        def read_only() -> dict[str, Any]:
            linux.mount(None, "/", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)
            return {"mountinfo": _mountinfo("/")}

        child.run("readonly-rootfs", read_only, args={"target": "/"})
    if c.process.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(c.process.oom_score_adj))


def _wait_for_start(ctx: InitContext, child: Reporter) -> None:
    assert ctx.fifo_fd is not None
    child.done("created", args={"fifo": "exec.fifo"})
    fd = os.open(f"/proc/self/fd/{ctx.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(ctx.fifo_fd)


def _mount(root: str, m: Mount, ctx: InitContext, created: list[str]) -> dict[str, Any]:
    if m.bind:
        source = m.source
        directory = os.path.isdir(source)
        if not os.path.exists(source):
            raise OSError(errno.ENOENT, f"mount source {source}: does not exist")
    else:
        directory = True
    target = resolve_in_root(root, m.destination, directory=directory, created=created)
    flags = m.flags & ~linux.MS_REMOUNT
    if m.type == "cgroup":
        return _mount_cgroup(target, m, ctx)
    if m.bind:
        fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            proc_target = f"/proc/self/fd/{fd}"
            linux.mount(m.source, proc_target, None, flags & (linux.MS_BIND | linux.MS_REC))
        finally:
            os.close(fd)
        rest = flags & ~(linux.MS_BIND | linux.MS_REC)
        if rest:  # a bind ignores other flags: a remount of the new mount applies them
            fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                linux.mount(
                    None, f"/proc/self/fd/{fd}", None, linux.MS_REMOUNT | linux.MS_BIND | rest
                )
            finally:
                os.close(fd)
    else:
        linux.mount(m.source, target, m.type, flags, m.data or None)
    if m.propagation:
        linux.mount(None, target, None, m.propagation)
    return {"mountinfo": _mountinfo(target), "created_mountpoints": list(created)}


def _mount_cgroup(target: str, m: Mount, ctx: InitContext) -> dict[str, Any]:
    """``type: cgroup`` as runc does on v1: a tmpfs, and in it each hierarchy's directory of
    the container's own group bound read-only (v2: the cgroup2 filesystem)."""
    ro = m.flags & linux.MS_RDONLY
    base = m.flags & (linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    if unified_only(ctx.cgroup_dirs):
        linux.mount("cgroup2", target, "cgroup2", m.flags)
        return {"mountinfo": _mountinfo(target)}
    # the tmpfs itself stays writable, as runc leaves it; the groups are read-only
    linux.mount("tmpfs", target, "tmpfs", base, "mode=755")
    bound = {}
    for mount_point, path in ctx.cgroup_dirs.items():
        if os.path.exists(os.path.join(mount_point, "cgroup.controllers")):
            continue  # a hybrid host's v2 hierarchy: not in the container (as runc)
        name = os.path.basename(mount_point)
        inside = os.path.join(target, name)
        os.mkdir(inside, 0o755)
        linux.mount(path, inside, None, linux.MS_BIND | linux.MS_REC)
        linux.mount(None, inside, None, linux.MS_REMOUNT | linux.MS_BIND | base | ro)
        bound[name] = path
        for alias in name.split(",") if "," in name else ():
            os.symlink(name, os.path.join(target, alias))
    return {"bound": bound, "mountinfo": _mountinfo(target)}


def _devices(root: str, c: Config) -> dict[str, Any]:
    dev = os.path.join(root, "dev")
    made = []
    wanted = [(f"/dev/{n}", "c", ma, mi, 0o666, 0, 0) for n, ma, mi in DEV_NODES]
    wanted += [(d.path, d.type, d.major, d.minor, d.file_mode, d.uid, d.gid) for d in c.devices]
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    for path, kind, major, minor, mode, uid, gid in wanted:
        target = resolve_in_root(root, os.path.dirname(path), directory=True, created=[])
        target = os.path.join(target, os.path.basename(path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        os.mknod(target, (mode & 0o7777) | kinds[kind], os.makedev(major, minor))
        os.chown(target, uid, gid)
        os.chmod(target, mode & 0o7777)
        made.append(path)
    for name, link in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        with contextlib.suppress(FileExistsError):
            os.symlink(link, os.path.join(dev, name))
    return {"devices": made, "dev": sorted(os.listdir(dev))}


def _terminal(root: str, ctx: InitContext) -> dict[str, Any]:
    """A pty of the container's devpts: the master to the engine over --console-socket, the
    slave the command's terminal and /dev/console."""
    assert ctx.console_fd is not None
    size = ctx.config.process.console_size
    window = (size[0], size[1]) if size and size[0] and size[1] else None
    master, slave, number = open_terminal(
        os.path.join(root, "dev", "pts", "ptmx"), window, ctx.console_fd
    )
    os.close(master)
    os.close(ctx.console_fd)
    ctx.console_fd = None
    ctx.terminal = slave
    console = os.path.join(root, "dev", "console")
    if not os.path.exists(console):
        with open(console, "w"):
            pass
    linux.mount(os.path.join(root, "dev", "pts", str(number)), console, None, linux.MS_BIND)
    return {"terminal": f"/dev/pts/{number}", "console": "/dev/console"}


def _sysctl(values: dict[str, str]) -> dict[str, Any]:
    written = {}
    for key, value in values.items():
        path = "/proc/sys/" + key.replace(".", "/")
        if ".." in key.split("."):
            raise OSError(errno.EINVAL, f"linux.sysctl: {key!r}")
        with open(path, "w") as f:
            f.write(value)
        written[path] = value
    return {"written": written}


def _finish(
    c: Config, child: Reporter, seccomp: Any, terminal: int | None, preserve_fds: int = 0
) -> int:
    """From start on (or for exec): user, capabilities, rlimits, no_new_privs, seccomp,
    the streams and execve."""
    p = c.process
    child.run("rlimits", lambda: _rlimits(c), args={"count": len(p.rlimits)})
    if seccomp is not None and not p.no_new_privileges:
        # runc's order: without no_new_privs, loading a filter needs CAP_SYS_ADMIN, so it is
        # loaded before the capabilities are dropped (the filter allows what follows)
        child.run("seccomp", seccomp.load, args={"profile": seccomp.name, "before": "capabilities"})
    caps = p.capabilities
    child.run(
        "capabilities",
        lambda: _capabilities(c),
        args={
            "bounding": list(caps.bounding),
            "effective": list(caps.effective),
            "permitted": list(caps.permitted),
            "inheritable": list(caps.inheritable),
            "ambient": list(caps.ambient),
            "uid": p.uid,
        },
    )
    if p.no_new_privileges:
        child.run("no_new_privs", linux.set_no_new_privs, args={"option": "PR_SET_NO_NEW_PRIVS"})
    if terminal is not None:
        set_stdio(None, None, None, terminal)
    else:
        _keep_stdio()
    if p.umask is not None:
        os.umask(p.umask)
    try:
        os.chdir(p.cwd)
    except OSError as exc:
        child.done("exec", result=f"chdir {p.cwd}: {exc.strerror}", args={"argv": list(p.args)})
        sys.stderr.write(f"dockscope-runtime: chdir {p.cwd}: {exc.strerror}\n")
        return 126
    if seccomp is not None and p.no_new_privileges:  # the last step before execve
        child.run("seccomp", seccomp.load, args={"profile": seccomp.name})
    env = dict(item.split("=", 1) for item in p.env if "=" in item)
    child.done("exec", args={"argv": list(p.args), "cwd": p.cwd}, evidence={"env": list(p.env)})
    _close_other_fds(3 + preserve_fds)
    try:
        os.execvpe(p.args[0], list(p.args), env)
    except OSError as exc:
        sys.stderr.write(exec_failure(p.args[0], exc, None) + "\n")
        return 127 if exc.errno == errno.ENOENT else 126
    return 126


def _close_other_fds(first: int) -> None:
    """Every descriptor from ``first`` on is closed by execve (the engine's, the runtime's):
    only 0, 1, 2 and --preserve-fds reach the process, as runc does."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def _keep_stdio() -> None:
    """Without a terminal the process keeps the streams the engine gave the runtime (conmon's
    pipes), in a session of its own as runc's init."""
    with contextlib.suppress(OSError):
        os.setsid()


def _rlimits(c: Config) -> dict[str, Any]:
    done = {}
    for r in c.process.rlimits:
        try:
            resource.setrlimit(r.number, (r.soft, r.hard))
        except (OSError, ValueError) as exc:
            raise OSError(
                errno.EPERM, f"process.rlimits {r.type} {r.soft}:{r.hard}: {exc}"
            ) from None
        done[r.type] = [r.soft, r.hard]
    return {"set": done}


def _capabilities(c: Config) -> dict[str, Any]:
    """runc's order: the bounding set first (needs CAP_SETPCAP), the user (keeping the
    permitted set across setuid), then capset, then the ambient set."""
    p = c.process
    caps = p.capabilities
    last = int(_read("/proc/sys/kernel/cap_last_cap").strip() or 40)
    keep = set(caps.bounding)
    for cap in range(last + 1):
        if cap not in keep:
            linux.drop_bounding_capability(cap)
    groups = sorted(set(p.additional_gids))
    os.setgroups(groups)
    os.setgid(p.gid)
    if p.uid != 0:
        linux.prctl(PR_SET_KEEPCAPS, 1)
    os.setuid(p.uid)

    def mask(numbers: tuple[int, ...]) -> int:
        return sum(1 << n for n in numbers if n <= last)

    linux.capset(mask(caps.effective), mask(caps.permitted), mask(caps.inheritable))
    not_raised = {}
    for cap in caps.ambient:
        try:
            linux.ambient_raise(cap)
        except OSError as exc:  # runc warns and goes on: an ambient capability must also be
            not_raised[cap] = exc.strerror  # permitted and inheritable
    status = {
        k: v
        for k, v in (
            line.split(":", 1) for line in _read("/proc/self/status").splitlines() if ":" in line
        )
        if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    }
    evidence: dict[str, Any] = {"status": {k: v.strip() for k, v in status.items()}}
    if not_raised:
        evidence["ambient_not_raised"] = not_raised
    return evidence


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
