"""The steps that make a container, in order, each with what it does and why.

The same catalogue drives the live trace (events carry a step's id, title and explanation),
``--step`` (a pause before each) and ``--explain`` (the whole plan, nothing done).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Step:
    """A step in the plan: what it is called, the call it makes, why, and who makes it."""

    id: str
    title: str
    syscall: str | None
    explanation: str
    where: str  # "dockscope", "shim" (holds the namespaces) or "init" (becomes PID 1)


_ALL = [
    Step(
        "userns",
        "Enter a user namespace (rootless)",
        "unshare/newuidmap",
        "An ordinary user cannot make the other namespaces or mount anything; in a new user "
        "namespace it is uid 0 with every capability over what that namespace owns. "
        "dockscope forks, the child unshares CLONE_NEWUSER, the parent (outside) writes "
        "its uid_map and gid_map: with /etc/subuid and /etc/subgid ranges through the "
        "set-uid newuidmap/newgidmap (0 = you, 1… = your range), else only your own ids "
        "(setgroups denied first). Only run as an ordinary user.",
        "dockscope",
    ),
    Step(
        "image",
        "Read the image",
        None,
        "The image's config says what to run (Entrypoint, Cmd, Env, WorkingDir, User) and "
        "its rootfs.diff_ids name the layers, bottom first.",
        "dockscope",
    ),
    Step(
        "layer-store",
        "Unpack each layer once",
        "openat/mknod/rename",
        "Each layer is extracted into its own directory keyed by diff_id, verified while it "
        "streams, and renamed into place atomically so concurrent runs share it safely.",
        "dockscope",
    ),
    Step(
        "container-dirs",
        "Create the writable layer",
        "mkdir",
        "upper/ will receive every change the container makes (the 'container layer'); "
        "overlayfs needs an empty work/ on the same filesystem.",
        "dockscope",
    ),
    Step(
        "cgroup-create",
        "Create the control group",
        "mkdir",
        "A directory in the cgroup filesystem is a group; limits are files inside it.",
        "dockscope",
    ),
    Step(
        "cgroup-none",
        "No control group (rootless)",
        None,
        "cgroups are the host's: an ordinary user may make groups only in a subtree given "
        "to it (cgroup v2 delegation). Without one the container runs in dockscope's own "
        "group, with no limits and no device allowlist (mknod is the host root's anyway).",
        "dockscope",
    ),
    Step(
        "cgroup-limits",
        "Write the resource limits",
        "write",
        "The kernel enforces what these files say: memory (OOM kill above it), CPU time "
        "per period; the number of processes once the shim has left the group.",
        "dockscope",
    ),
    Step(
        "cgroup-devices",
        "Allow only docker's default devices",
        "write",
        "Every open or mknod of a device node asks the control group first. Everything is "
        "denied, then null, zero, full, random, urandom, tty, console, the terminals and "
        "/dev/net/tun are allowed (and mknod of any node, for images that ship them): a node "
        "for the host's disk made inside cannot be opened. v1 writes devices.deny and "
        "devices.allow; v2 attaches an eBPF program (bpf BPF_PROG_ATTACH) that answers each "
        "request.",
        "dockscope",
    ),
    Step(
        "bridge",
        "Set up the bridge",
        "ip link/ip addr/nft",
        "--network bridge: a bridge is a virtual switch on the host (docker0's twin) whose "
        "address is the containers' gateway; ip_forward lets the host route their packets, "
        "and an nft table masquerades what leaves by another interface (outbound NAT). The "
        "first container of a bridge makes it all; the last one's end removes it.",
        "dockscope",
    ),
    Step(
        "ip-lease",
        "Lease an address",
        "flock/write",
        "The lowest free address of the bridge's subnet is recorded in the host's lease "
        "file, under a lock, so no two containers get the same one.",
        "dockscope",
    ),
    Step(
        "network-files",
        "Write /etc/hosts and /etc/resolv.conf",
        "write",
        "As docker does, the container's hosts and resolv.conf are files in its directory "
        "that PID 1 bind-mounts on the image's: its own name and its peers' on the bridge, "
        "and the host's nameservers without the loopback ones (127.0.0.53 would be the "
        "container's own loopback). Running peers get the new name in theirs.",
        "dockscope",
    ),
    Step(
        "fork-shim",
        "Start the shim process",
        "fork",
        "The shim will own the new namespaces and wait for the container's PID 1.",
        "dockscope",
    ),
    Step(
        "cgroup-attach",
        "Put the shim into the control group",
        "write",
        "Writing a PID to cgroup.procs moves it; its children start inside the group.",
        "dockscope",
    ),
    Step(
        "unshare",
        "Unshare the namespaces",
        "unshare",
        "New mount, UTS, IPC, network, cgroup and PID namespaces: from here on this "
        "process tree gets its own view of mounts, hostname, IPC, network and PIDs.",
        "shim",
    ),
    Step(
        "fork-init",
        "Fork the container's PID 1",
        "fork",
        "A new PID namespace applies to children: the first child is PID 1 inside it.",
        "shim",
    ),
    Step(
        "cgroup-release",
        "Take the shim out of the control group",
        "write",
        "The shim only waits for PID 1, and docker's shim lives outside the container's "
        "group too: writing its PID to dockscope's own group's cgroup.procs leaves the group "
        "to the container's processes, so the process limit (pids.max, written now) counts "
        "exactly them. PID 1 waits for this before its first step.",
        "dockscope",
    ),
    Step(
        "veth",
        "Plug the container into the bridge",
        "ip link/ip addr/ip route",
        "A veth pair is a virtual cable: one end joins the bridge, the other is made in "
        "PID 1's network namespace as eth0 (peer name eth0 netns PID), then given the address "
        "and a default route via the bridge, by the requests ip would send, made on a socket "
        "of that namespace. PID 1 waits until this is done.",
        "dockscope",
    ),
    Step(
        "publish",
        "Publish the ports (-p)",
        "nft add rule",
        "Each -p is a DNAT rule: a packet for the host's port gets the container's address "
        "and port as destination, in prerouting (from other machines and containers) and in "
        "output (from the host itself, 127.0.0.1 included: route_localnet lets such packets "
        "leave by the bridge, and they are masqueraded there).",
        "dockscope",
    ),
    Step(
        "mount-private",
        "Make all mounts private",
        "mount",
        "MS_REC|MS_PRIVATE on /: mounts made inside no longer propagate to the host "
        "(and the host's no longer appear inside).",
        "init",
    ),
    Step(
        "hostname",
        "Set the hostname",
        "sethostname",
        "The UTS namespace is private, so this changes the hostname for the container only.",
        "init",
    ),
    Step(
        "loopback",
        "Bring up the loopback interface",
        "ioctl",
        "A new network namespace starts with only 'lo', and it is down.",
        "init",
    ),
    Step(
        "mount-rootfs",
        "Mount the root filesystem",
        "mount",
        "overlayfs stacks the read-only layer directories (lowerdir) under the writable "
        "layer (upperdir): reads fall through, writes land in upperdir.",
        "init",
    ),
    Step(
        "mount-proc",
        "Mount /proc",
        "mount",
        "A proc mounted from inside the new PID namespace shows only the container's processes.",
        "init",
    ),
    Step(
        "mount-dev",
        "Populate a minimal /dev",
        "mount/mknod",
        "A tmpfs with null, zero, full, random, urandom and tty, a private devpts and "
        "/dev/shm: no host devices are visible.",
        "init",
    ),
    Step(
        "tty",
        "Allocate the terminal",
        "open/ioctl/sendmsg",
        "With -t, /dev/ptmx of the container's own devpts gives a pseudo-terminal pair: the "
        "slave (/dev/pts/N inside) becomes the command's stdin, stdout, stderr and "
        "controlling terminal; the master goes to dockscope over a socket (SCM_RIGHTS).",
        "init",
    ),
    Step(
        "mount-sys",
        "Mount /sys read-only",
        "mount",
        "sysfs shows this network namespace's devices; read-only so the container cannot "
        "change kernel settings.",
        "init",
    ),
    Step(
        "mount-volume",
        "Mount a volume",
        "mount",
        "-v: a bind mount puts a host directory (a named volume's _data, or a host path) at "
        "its place in the container; writes there go to it, not to the writable layer.",
        "init",
    ),
    Step(
        "mount-network-files",
        "Mount /etc/hosts and /etc/resolv.conf",
        "mount",
        "Bind mounts of the files written on the host: the container reads its names and "
        "nameservers there, and the host can update them while it runs.",
        "init",
    ),
    Step(
        "pivot_root",
        "Switch to the container's root",
        "pivot_root",
        "pivot_root makes the merged filesystem '/' and the old root is detached: the host's "
        "files are no longer reachable at all (chroot would leave them reachable).",
        "init",
    ),
    Step(
        "readonly-paths",
        "Make the kernel's settings read-only",
        "mount",
        "/proc/sys, /proc/sysrq-trigger, /proc/irq, /proc/bus and /proc/fs are bind-mounted "
        "onto themselves and remounted read-only: root in the container cannot write the "
        "host's kernel settings (core_pattern, a known route to running code as root on the "
        "host; vm.overcommit_memory; a SysRq reboot). Writes fail with EROFS.",
        "init",
    ),
    Step(
        "masked-paths",
        "Mask what leaks about the host",
        "mount",
        "/proc/keys, /proc/kcore, /proc/timer_list, /proc/sched_debug and the rest of "
        "docker's masked paths get /dev/null bind-mounted over them (files) or an empty "
        "read-only tmpfs (directories, as /proc/acpi and /sys/firmware): they read empty.",
        "init",
    ),
    Step(
        "privileged",
        "Turn the protections off (--privileged)",
        None,
        "--privileged gives the container what the host's root has: every capability, no "
        "seccomp filter, no masked or read-only paths in /proc and /sys, /sys writable, "
        "and every host device (the device cgroup allows a *:* rwm). Anything that runs as "
        "root in it can load kernel modules, mount the host's disks, and so own the host.",
        "init",
    ),
    Step(
        "readonly-rootfs",
        "Make the root filesystem read-only",
        "mount",
        "--read-only: remounting '/' with MS_RDONLY makes the container's root (and so its "
        "writable layer) read-only; /dev, /dev/shm, /proc and volumes stay writable.",
        "init",
    ),
    Step(
        "user",
        "Become the image's user",
        "setgroups/setgid/setuid",
        "The user is looked up in the image's own /etc/passwd and /etc/group.",
        "init",
    ),
    Step(
        "capabilities",
        "Drop capabilities",
        "prctl/capset",
        "Root in the container keeps only docker's default capabilities (no CAP_SYS_ADMIN, "
        "no CAP_NET_ADMIN…), changed by --cap-add and --cap-drop (ALL or names, as docker "
        "takes them); the bounding set is reduced so the others cannot come back. "
        "/proc/self/status shows the result: CapEff 00000000a80425fb is docker's 14.",
        "init",
    ),
    Step(
        "no_new_privs",
        "Forbid gaining privileges",
        "prctl",
        "PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant nothing.",
        "init",
    ),
    Step(
        "seccomp",
        "Load the seccomp filter",
        "seccomp(SECCOMP_SET_MODE_FILTER)",
        "A BPF program the kernel runs at every system call of this process and all it "
        "starts, for good: docker's default profile allows about 350 calls and answers EPERM "
        "to the rest, the calls that reach kernel code shared with the host without "
        "namespaces to isolate them (keyctl and add_key on the kernel's keyrings, unshare "
        "and clone of new user namespaces, mount, bpf, kexec_load, reboot, "
        "open_by_handle_at). Calls a kept capability needs stay allowed (chroot with "
        "CAP_SYS_CHROOT). Loaded last, after no_new_privs (which lets an unprivileged "
        "process load one), so runtime steps are not filtered.",
        "init",
    ),
    Step(
        "exec",
        "Run the command",
        "execve",
        "In a session of its own (setsid), with its stdin, stdout and stderr in place, the "
        "process replaces itself with the image's command; it is PID 1 in the container.",
        "init",
    ),
    Step(
        "network-release",
        "Leave the bridge",
        "nft delete/ip link del",
        "The container's -p rules are deleted by their handles, its veth (gone with the "
        "namespace) removed if left, its address released and its name taken out of its "
        "peers' hosts files; with the bridge's last container, the bridge and its table go.",
        "dockscope",
    ),
    Step(
        "seccomp-denied",
        "Read what the seccomp filter denied",
        "read(/dev/kmsg)",
        "With a trace the filter is loaded with SECCOMP_FILTER_FLAG_LOG: the kernel writes an "
        "audit record (type 1326, AUDIT_SECCOMP) for each call it does not allow, with the "
        "process, the call's number and the action. The container's shim began an audit "
        "session of its own (a write to /proc/self/loginuid), so its records are those "
        "with its session id (ses=). Without an audit daemon they are in the kernel log "
        "(dmesg); with one, in its log (ausearch -m SECCOMP). The kernel's audit thread "
        "writes them a moment later, in order: dockscope reads until a record of its own "
        "comes behind them (a child whose own filter logs its getppid, SECCOMP_RET_LOG).",
        "dockscope",
    ),
    Step(
        "exit",
        "The container exits",
        "wait4",
        "PID 1 exited; the kernel killed every other process of the PID namespace. Exit "
        "status is passed through (128+N for signal N).",
        "dockscope",
    ),
    Step(
        "cleanup",
        "Remove the control group",
        "rmdir",
        "The namespaces vanished with their last process, and the mounts with the mount "
        "namespace; the writable layer stays until 'dockscope rm'.",
        "dockscope",
    ),
    Step(
        "remove",
        "Remove the container (--rm)",
        "unlinkat/rmdir",
        "--rm: the container's directory goes, with its writable layer (upper/), its config, "
        "state and log, and its anonymous volumes; named volumes stay.",
        "dockscope",
    ),
]

# the cleanup step's explanation when --rm removes the container right after it
CLEANUP_BEFORE_REMOVE = (
    "The namespaces vanished with their last process, and the mounts with the mount "
    "namespace; --rm removes the container and its writable layer next."
)

# steps of ``dockscope exec`` only (it also takes tty, user, capabilities, no_new_privs, exec
# and exit from the list above)
_EXEC = [
    Step(
        "fork-helper",
        "Start the helper process",
        "fork",
        "The helper will join the container's namespaces and wait for the new process.",
        "dockscope",
    ),
    Step(
        "cgroup-join",
        "Put the helper into the container's control group",
        "write",
        "Writing its PID to the group's cgroup.procs puts the helper, and everything it "
        "starts, under the container's limits.",
        "dockscope",
    ),
    Step(
        "setns",
        "Join a namespace",
        "setns",
        "setns() on /proc/PID/ns/KIND moves this process into that namespace of the "
        "container's; a PID namespace applies to the children only, and joining the mount "
        "namespace also makes the container's root this process's root.",
        "helper",
    ),
    Step(
        "fork-exec",
        "Fork the new process",
        "fork",
        "The child starts in the container's PID namespace, under a number there other "
        "than 1: the container's PID 1 is still its command.",
        "helper",
    ),
    Step(
        "exec-command",
        "Run the command",
        "execve",
        "In a session of its own (setsid), with its stdin, stdout and stderr in place, the "
        "process replaces itself with the command: one more process in the container.",
        "process",
    ),
    Step(
        "restart",
        "Restart the container",
        None,
        "The restart policy (--restart) calls for a new start: after a delay (100 ms, doubled "
        "for each restart in a row), the same container starts again on the same writable "
        "layer. A container stopped by hand is not restarted.",
        "dockscope",
    ),
    Step(
        "exec-exit",
        "The command exits",
        "wait4",
        "The new process ended; the container runs on, its PID 1 untouched. The exit status "
        "is passed through (128+N for signal N).",
        "dockscope",
    ),
]

# the steps of --network bridge only
BRIDGE_STEPS = frozenset(
    (
        "bridge",
        "ip-lease",
        "network-files",
        "veth",
        "publish",
        "mount-network-files",
        "network-release",
    )
)

STEPS: dict[str, Step] = {step.id: step for step in [*_ALL, *_EXEC]}


def plan(
    *,
    network: str,
    limits: bool,
    rootfs_mode: str,
    tty: bool = False,
    volumes: int = 0,
    read_only: bool = False,
    joined: Sequence[str] = (),
    seccomp: bool = True,
    traced: bool = False,
    auto_remove: bool = False,
    privileged: bool = False,
    rootless: bool = False,
    ports: int = 0,
) -> list[Step]:
    """The steps a run will take with these options, in order (``joined``: the kinds of
    namespace joined with setns rather than unshared; ``seccomp``: a filter is loaded;
    ``traced``: the run is traced, so what the filter denied is read from the kernel;
    ``auto_remove``: --rm, the container is removed after its control group; ``rootless``:
    run by an ordinary user, in a user namespace, without a control group)."""
    chosen = []
    for step in _ALL:
        if step.id == "userns" and not rootless:
            continue
        if step.id == "cgroup-none" and not rootless:
            continue
        if rootless and step.id.startswith("cgroup-") and step.id != "cgroup-none":
            continue
        if rootless and step.id == "seccomp-denied":
            continue
        if step.id == "unshare":  # run joins in the shim (exec, in its helper)
            chosen += [replace(STEPS["setns"], where="shim")] * len(joined)
        if step.id == "mount-volume":
            chosen += [step] * volumes
            continue
        if step.id == "readonly-rootfs" and not read_only:
            continue
        if step.id == "privileged" and not privileged:
            continue
        if step.id in ("readonly-paths", "masked-paths") and privileged:
            continue
        if step.id == "seccomp" and not seccomp:  # --security-opt seccomp=unconfined
            continue
        if step.id == "seccomp-denied" and not (seccomp and traced):
            continue
        if step.id == "loopback" and network not in ("none", "bridge"):
            continue
        if step.id in BRIDGE_STEPS and network != "bridge":
            continue
        if step.id == "publish" and not ports:
            continue
        if step.id == "tty" and not tty:
            continue
        if step.id == "cgroup-limits" and not limits:
            continue
        if step.id == "remove" and not auto_remove:
            continue
        if step.id == "cleanup" and auto_remove:
            chosen.append(replace(step, explanation=CLEANUP_BEFORE_REMOVE))
            continue
        if step.id == "container-dirs" and rootfs_mode == "copy":
            chosen.append(
                Step(
                    step.id,
                    "Copy the image into the container's root",
                    "copy",
                    "overlayfs is unavailable here, so the layers are copied into "
                    "one directory; changes are found by comparing it with the "
                    "image.",
                    step.where,
                )
            )
            continue
        chosen.append(step)
    return chosen
