"""PID 1 of the container: it sets up the container's world, step by step, and executes the
command. Every module it uses is imported before it runs: after pivot_root the host's Python
library is out of reach."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys

from runtime_lab.kernel import hardening, linux
from runtime_lab.kernel.capabilities import describe as describe_capabilities
from runtime_lab.kernel.capabilities import privileged_changes
from runtime_lab.process.identity import drop_capabilities, switch_user
from runtime_lab.process.launch import LaunchSpec, StepReporter, exec_failure
from runtime_lab.process.mounts import _mountinfo as mountinfo
from runtime_lab.process.mounts import _mountpoint as mountpoint
from runtime_lab.process.mounts import (
    mount_dev,
    mount_filesystem,
    mount_rootfs,
    mount_volume,
    pivot,
    remount_root_read_only,
    rootfs_args,
)
from runtime_lab.process.rootless_mounts import mount_sys
from runtime_lab.process.terminal import allocate_terminal, prepare_stdio
from runtime_lab.spec import DEFAULT_CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
    _make_world(spec, child)
    workdir = spec.workdir or "/"
    try:  # made as root, before the root may become read-only (docker makes it at create)
        os.makedirs(workdir, exist_ok=True)
    except OSError as exc:
        child.done("exec", result=f"mkdir {workdir}: {exc.strerror}", args={"argv": spec.argv})
        return 126
    if spec.read_only:
        child.run(
            "readonly-rootfs",
            remount_root_read_only,
            args={"target": "/", "flags": ["MS_REMOUNT", "MS_BIND", "MS_RDONLY"]},
        )
    user_holder = _become_user(spec, child)
    return _exec(spec, child, workdir, user_holder)


def _make_world(spec: LaunchSpec, child: StepReporter) -> None:
    """The container's world, made inside its own namespaces: its mounts private, its
    hostname, its loopback, its filesystems, pivot_root into them, the read-only and masked
    paths."""
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
    if spec.network in ("none", "bridge"):
        child.run("loopback", _loopback, args={"interface": "lo", "flags": "IFF_UP"})
    child.run("mount-rootfs", lambda: mount_rootfs(spec), args=rootfs_args(spec))
    child.run(
        "mount-proc",
        lambda: mount_filesystem(
            root, "proc", "proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC, spec
        ),
        args={"target": f"{root}/proc"},
    )
    child.run("mount-dev", lambda: mount_dev(root, spec), args={"target": f"{root}/dev"})
    if spec.tty:
        child.run(
            "tty",
            lambda: allocate_terminal(root, spec),
            args={"ptmx": f"{root}/dev/pts/ptmx", "window": spec.window},
        )
    child.run(
        "mount-sys",
        lambda: _mount_sys(root, spec),
        args={"target": f"{root}/sys", "flags": [] if spec.privileged else ["MS_RDONLY"]},
    )
    for mount in spec.mounts:
        child.run(
            "mount-volume",
            functools.partial(mount_volume, root, mount, spec),
            args={
                "source": mount["source"],
                "target": mount["destination"],
                "flags": ["MS_BIND", "MS_REC"] + (["MS_RDONLY"] if mount["read_only"] else []),
                "volume": mount.get("name"),
            },
        )
    if spec.network_files:  # --network bridge: /etc/hosts, /etc/resolv.conf
        child.run(
            "mount-network-files",
            functools.partial(_mount_network_files, root, spec),
            args={
                "sources": [m["source"] for m in spec.network_files],
                "targets": [m["destination"] for m in spec.network_files],
                "flags": ["MS_BIND"],
            },
        )
    child.run("pivot_root", lambda: pivot(root), args={"new_root": root, "put_old": root})
    if spec.privileged:  # docker's --privileged: neither read-only nor masked paths
        child.done("privileged", evidence={"turned_off": privileged_changes()})
        return
    child.run(
        "readonly-paths",
        hardening.make_readonly,
        args={"paths": list(hardening.READONLY_PATHS), "flags": ["MS_BIND", "MS_RDONLY"]},
    )
    child.run("masked-paths", hardening.mask, args={"paths": list(hardening.MASKED_PATHS)})


def _mount_sys(root: str, spec: LaunchSpec) -> dict[str, Any]:
    """sysfs read-only (read-write with --privileged); rootless, the host's /sys bound where the
    kernel refuses sysfs."""
    if not spec.rootless:
        return mount_filesystem(
            root,
            "sys",
            "sysfs",
            "sysfs",
            (0 if spec.privileged else linux.MS_RDONLY)
            | linux.MS_NOSUID
            | linux.MS_NODEV
            | linux.MS_NOEXEC,
            spec,
        )
    created = len(spec.created_mountpoints)
    target = mountpoint(root, "sys", spec)
    evidence = mount_sys(target)
    return {
        **evidence,
        "mountinfo": mountinfo(target),
        "created_mountpoints": spec.created_mountpoints[created:],
    }


def _become_user(spec: LaunchSpec, child: StepReporter) -> dict[str, Any]:
    """PID 1 becomes the container's user: its uid and groups, the capabilities it keeps,
    no new privileges, the command's descriptors; what was learnt of the user (uid, home)."""
    user_holder: dict[str, Any] = {}
    keep = list(DEFAULT_CAPABILITIES if spec.capabilities is None else spec.capabilities)
    child.run(
        "user",
        lambda: switch_user(spec.user, user_holder, spec.terminal),
        args={"user": spec.user},
    )
    child.run(
        "capabilities",
        lambda: drop_capabilities(user_holder["uid"], keep),
        args={"keep": keep, **describe_capabilities(keep)},
    )
    child.run("no_new_privs", linux.set_no_new_privs, args={"option": "PR_SET_NO_NEW_PRIVS"})
    prepare_stdio(spec)
    return user_holder


def _exec(spec: LaunchSpec, child: StepReporter, workdir: str, user_holder: dict[str, Any]) -> int:
    """The working directory, the seccomp filter (the last step before execve, as runc loads
    it) and execve; returns only if the command could not be executed."""
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


def _mount_network_files(root: str, spec: LaunchSpec) -> dict[str, Any]:
    """Each file written by dockscope bind-mounted on its place in /etc, as -v mounts a file."""
    evidence: dict[str, Any] = {"mountinfo": [], "created_mountpoints": []}
    for mount in spec.network_files:
        done = mount_volume(root, mount, spec)
        evidence["mountinfo"] += done["mountinfo"]
        evidence["created_mountpoints"] += done["created_mountpoints"]
    return evidence


def _loopback() -> dict[str, Any]:
    import socket

    linux.set_loopback_up()
    # asked of the kernel in this network namespace (/sys is still the host's at this point)
    return {"interfaces": sorted(name for _, name in socket.if_nameindex())}
