"""What ``dockscope run`` asks for, checked once: ``RunOptions.parse`` takes the options as
given on the command line, applies docker's rules and bounds, and returns a frozen value that
create and start then trust."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inspect_tool.errors import UsageError
from inspect_tool.sources.selection import ALL_IMAGES, ImageSelection
from runtime_lab.kernel.capabilities import CapabilityOptions
from runtime_lab.kernel.seccomp import Options as SecurityOptions
from runtime_lab.kernel.seccomp import security_options
from runtime_lab.spec import RestartPolicy, VolumeSpec, parse_volume, read_env_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime_lab.kernel.network import PortMapping

# docker's bounds: below them the kernel refuses the value (a CFS quota under 1 ms) or the
# container cannot even start
MIN_MEMORY = 6 * 1024 * 1024
MIN_CPUS = 0.01


@dataclass(frozen=True, slots=True)
class RunOptions:
    """``dockscope run``'s options, checked and in the form create takes them."""

    image: Path
    args: tuple[str, ...] = ()
    selection: ImageSelection = ALL_IMAGES  # --image, --ref, --platform
    entrypoint: str | None = None
    name: str | None = None
    hostname: str | None = None
    network: str = "none"  # none, bridge, host or container:NAME
    pid_mode: str = "private"  # private, host or container:NAME
    ipc_mode: str = "private"
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids: int | None = None
    env: tuple[str, ...] = ()  # the --env-file lines, then -e
    workdir: str | None = None
    user: str | None = None
    detach: bool = False
    auto_remove: bool = False
    interactive: bool = False
    tty: bool = False
    attach: tuple[str, ...] = ()  # foreground: the streams attached
    labels: tuple[str, ...] = ()  # --label KEY=VALUE
    volumes: tuple[VolumeSpec, ...] = ()  # -v
    read_only: bool = False
    restart: str = "no"  # a RestartPolicy, as it prints
    security: SecurityOptions = field(default_factory=SecurityOptions)  # --security-opt
    caps: CapabilityOptions = field(default_factory=CapabilityOptions)  # --cap-*, --privileged
    publish: tuple[PortMapping, ...] = ()  # -p, with --network bridge

    @classmethod
    def parse(
        cls,
        image: Path,
        args: Sequence[str] = (),
        *,
        selection: ImageSelection = ALL_IMAGES,
        entrypoint: str | None = None,
        name: str | None = None,
        hostname: str | None = None,
        network: str | None = None,
        pid_mode: str = "private",
        ipc_mode: str = "private",
        memory: str | None = None,
        cpus: float | None = None,
        pids_limit: int | None = None,
        env: Sequence[str] = (),
        env_files: Sequence[Path] = (),
        labels: Sequence[str] = (),
        volumes: Sequence[str] = (),
        read_only: bool = False,
        security_opt: Sequence[str] = (),
        cap_add: Sequence[str] = (),
        cap_drop: Sequence[str] = (),
        privileged: bool = False,
        publish: Sequence[str] = (),
        workdir: str | None = None,
        user: str | None = None,
        detach: bool = False,
        auto_remove: bool = False,
        restart: str = "no",
        interactive: bool = False,
        tty: bool = False,
        attach: Sequence[str] = (),
        step: bool = False,
        explain: bool = False,
    ) -> RunOptions:
        """The options as the command line gave them (strings as typed; ``step`` and
        ``explain`` only for the rules they take part in), each checked as docker checks it,
        in this order; a UsageError names the first one that is wrong."""
        from runtime_lab.lifecycle.session import attached_streams

        memory_bytes = _check_resources(memory, cpus, pids_limit)
        policy = _check_lifecycle(restart, detach=detach, auto_remove=auto_remove, step=step)
        streams = attached_streams(list(attach), detach=detach, interactive=interactive)
        environment = _environment(env_files, env)
        mounts = tuple(parse_volume(v, os.getcwd()) for v in volumes)
        security = security_options(security_opt)
        caps = CapabilityOptions.parse(cap_add, cap_drop, privileged=privileged)
        ports = _check_publish(publish, network or default_network())
        _check_terminal(tty=tty, interactive=interactive, streams=streams, explain=explain)
        return cls(
            image=image,
            args=tuple(args),
            selection=selection,
            entrypoint=entrypoint,
            name=name,
            hostname=hostname,
            network=network or default_network(),
            pid_mode=pid_mode,
            ipc_mode=ipc_mode,
            memory=memory_bytes,
            cpus=cpus,
            pids=pids_limit,
            env=tuple(environment),
            workdir=workdir,
            user=user,
            detach=detach,
            auto_remove=auto_remove,
            interactive=interactive,
            tty=tty,
            attach=tuple(streams),
            labels=tuple(labels),
            volumes=mounts,
            read_only=read_only,
            restart=str(policy),
            security=security,
            caps=caps,
            publish=ports,
        )


def _check_resources(memory: str | None, cpus: float | None, pids_limit: int | None) -> int | None:
    """--memory (as bytes, returned), --cpus and --pids-limit within docker's bounds."""
    from runtime_lab.kernel.cgroups import parse_memory

    try:
        memory_bytes = parse_memory(memory) if memory else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if memory_bytes is not None and memory_bytes < MIN_MEMORY:
        raise UsageError("--memory: the minimum is 6m")
    available = os.cpu_count() or 1
    if cpus is not None and not MIN_CPUS <= cpus <= available:
        raise UsageError(f"--cpus: from 0.01 to {available} (the CPUs this machine has)")
    if pids_limit is not None and pids_limit < 1:
        raise UsageError("--pids-limit must be at least 1")
    return memory_bytes


def _check_lifecycle(restart: str, *, detach: bool, auto_remove: bool, step: bool) -> RestartPolicy:
    """-d, --rm, --restart and --step together: the restart policy, parsed."""
    if detach and step:
        raise UsageError("--detach cannot be combined with --step")
    policy = RestartPolicy.parse(restart)
    if policy.name != "no" and auto_remove:
        raise UsageError("conflicting options: --restart and --rm")
    if policy.name != "no" and not detach:
        raise UsageError("--restart needs -d: the supervisor of a detached container restarts it")
    return policy


def _environment(env_files: Sequence[Path], env: Sequence[str]) -> list[str]:
    """The environment as docker builds it: the --env-file lines first, then -e."""
    environment: list[str] = []
    for path in env_files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--env-file: cannot read it: {exc}", subject=str(path)) from None
        environment += read_env_file(str(path), text)
    environment += env
    return environment


def default_network() -> str:
    """docker's default, ``bridge``, for root; ``none`` for another user, who cannot make a
    bridge, veths or nft rules on the host (rootless docker and podman use a user-space
    network stack, slirp4netns or pasta, instead)."""
    return "bridge" if os.geteuid() == 0 else "none"


def _check_publish(publish: Sequence[str], network: str) -> tuple[PortMapping, ...]:
    """-p: each mapping parsed; only a container on the bridge has ports to publish, and no
    host port twice (docker's rules)."""
    if not publish:
        return ()
    from runtime_lab.kernel.network import parse_publish

    ports = tuple(parse_publish(value) for value in publish)
    if ports and network != "bridge":
        raise UsageError(
            f"conflicting options: -p and --network {network} (ports are published from the "
            "bridge network only)"
        )
    for i, port in enumerate(ports):
        if any(port.clashes(other) for other in ports[:i]):
            raise UsageError(f"-p {port}: the host port is published twice")
    return ports


def _check_terminal(*, tty: bool, interactive: bool, streams: list[str], explain: bool) -> None:
    """-it needs a terminal on stdin (unless nothing runs: --explain)."""
    if tty and interactive and "stdin" in streams and not os.isatty(0) and not explain:
        raise UsageError("the input device is not a TTY: -it needs a terminal on stdin")
