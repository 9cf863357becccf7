"""``create``: read the image (any source inspect_tool reads), make sure each layer is in the
layer store, and write the container's config and directories."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from inspect_tool.errors import UsageError
from runtime_lab.kernel.seccomp import Options as SecurityOptions
from runtime_lab.lifecycle.rootless import record as userns_record
from runtime_lab.lifecycle.rootless import userns_event
from runtime_lab.lifecycle.state import ContainerError, step_event
from runtime_lab.run_options import RunOptions
from runtime_lab.spec import (
    VolumeSpec,
    command_line,
    environment,
    labels,
    platform_mismatch,
    platform_warning,
)
from runtime_lab.storage.archives import identify, recall, remember
from runtime_lab.storage.layerstore import (
    copy_image,
    ensure_layers,
    overlay_available,
    stored_layers,
)
from runtime_lab.storage.store import ContainerConfig, ContainerState, Store, remove_dir
from runtime_lab.trace.events import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from inspect_tool.model.image import ImageConfig
    from runtime_lab.kernel.seccomp import Filter
    from runtime_lab.storage.archives import ImageFile


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
    """Everything before the processes: image, layer store, config, writable layer. An image
    file run before and unchanged since is not read again (storage/archives.py)."""
    network, pid_mode, ipc_mode = _namespaces(store, options)
    hostname_given = _check_identity(store, options, network)
    container_id = store.new_id()
    name = options.name or _name_from(container_id)
    if options.name and store.name_taken(options.name):
        raise UsageError(f"the container name {options.name!r} is already in use")
    made = _Made(container_id, name, hostname_given or container_id[:12], network)
    made.pid_mode, made.ipc_mode = pid_mode, ipc_mode
    mode = "overlay" if overlay_available() else "copy"
    file = identify(store, options.image, options.selection)  # before anything reads it
    known = recall(store, file) if file is not None and mode == "overlay" else None
    if known is not None:
        _entered(tracer)
        argv = _image_step(options, known.config, len(known.layer_dirs), tracer, read=False)
        _ensure_state_root(store)
        stored_layers(known.layer_dirs, tracer)
        config = _make(store, options, made, known.config, known.layer_dirs, argv, mode, None)
    else:
        config = _read_and_make(store, options, tracer, made, mode, file, progress)
    _container_dirs_step(tracer, store.container_dir(container_id), mode)
    return config


@dataclass
class _Made:
    """The new container's names and namespaces, decided before its image is read."""

    container_id: str
    name: str
    hostname: str
    network: str
    pid_mode: str = "private"
    ipc_mode: str = "private"


def _entered(tracer: Tracer) -> bool:
    """Rootless: the user namespace this command entered, traced; whether there is one."""
    entered = userns_event()
    if entered is not None:
        tracer.emit(entered)
    return entered is not None


def _read_and_make(
    store: Store,
    options: RunOptions,
    tracer: Tracer,
    made: _Made,
    mode: str,
    file: ImageFile | None,
    progress: Callable[[int], None] | None,
) -> ContainerConfig:
    """The image read from its source, its layers stored, the file's record written."""
    from inspect_tool.sources import open_image

    source, image = open_image(options.image, options.selection)
    with source:
        userxattr = _entered(tracer)
        argv = _image_step(options, image.config, len(image.layers), tracer, read=True)
        _ensure_state_root(store)  # only now that the image reads: a bad image leaves nothing
        layer_dirs = ensure_layers(
            store, source, image, tracer, progress=progress, userxattr=userxattr
        )
        if file is not None:
            remember(store, file, image)

        def copy(destination: Path) -> None:
            copy_image(source, image, destination)

        return _make(store, options, made, image.config, layer_dirs, argv, mode, copy)


def _make(
    store: Store,
    options: RunOptions,
    made: _Made,
    image_config: ImageConfig,
    layer_dirs: list[Path],
    argv: list[str],
    mode: str,
    copy: Callable[[Path], None] | None,
) -> ContainerConfig:
    """The container's directories, volumes, config and state: all or nothing."""
    directory = store.container_dir(made.container_id)
    mounts: list[dict[str, Any]] = []
    try:
        for sub in ("upper", "work", "merged"):
            (directory / sub).mkdir(parents=True, exist_ok=True, mode=0o755)
        if mode == "copy":
            assert copy is not None  # the copy fallback reads the image, never recalled
            copy(directory / "merged")
        mounts = _mounts(store, options.volumes)
        config = _config(options, made, image_config, layer_dirs, argv)
        _check_seccomp_profile(config)
        config.volumes = mounts
        config.network, config.pid_mode, config.ipc_mode = (
            made.network,
            made.pid_mode,
            made.ipc_mode,
        )
        config.userns = userns_record()
        if config.userns is not None:  # no control group: the limits are ignored (podman)
            config.memory = config.cpus = config.pids = None
        store.save_config(config)
        store.save_state(made.container_id, ContainerState(rootfs_mode=mode))
    except BaseException as exc:  # no half-made container (a full disk, an interrupt)
        _remove_half_made(store, directory, mounts)
        if isinstance(exc, OSError):
            raise ContainerError(
                f"cannot create the container: {exc.strerror or exc}", subject=str(directory)
            ) from None
        raise
    return config


def _namespaces(store: Store, options: RunOptions) -> tuple[str, str, str]:
    """--net, --pid and --ipc as recorded: a mode, or ``container:<id>``."""
    return (
        _namespace_mode(store, "--net", options.network, ("none", "bridge", "host")),
        _namespace_mode(store, "--pid", options.pid_mode, ("private", "host")),
        _namespace_mode(store, "--ipc", options.ipc_mode, ("private", "host")),
    )


def _check_identity(store: Store, options: RunOptions, network: str) -> str | None:
    """--name and --hostname as docker takes them; the hostname given (a shared network's
    owner's), None for the default."""
    hostname = options.hostname
    if network.startswith("container:"):
        # docker: the container takes the network's owner's hostname, and --hostname conflicts
        if hostname:
            raise UsageError("conflicting options: --hostname and --net container:NAME")
        hostname = store.load_config(network.partition(":")[2]).hostname
    if options.name is not None and not CONTAINER_NAME.fullmatch(options.name):
        raise UsageError(
            f"invalid container name '{options.name}': only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is "
            "allowed (docker's rule)"
        )
    if options.hostname is not None:
        _check_hostname(options.hostname)
    return hostname


def _image_step(
    options: RunOptions, image_config: ImageConfig, layers: int, tracer: Tracer, *, read: bool
) -> list[str]:
    """The image read (``read``), or taken from the record of its unchanged file: the
    command line it gives, traced with what it came from."""
    from inspect_tool.sources.location import location_text

    config_obj = dict(image_config.config)
    argv = command_line(config_obj, options.args, options.entrypoint)
    evidence: dict[str, Any] = {
        "image_id": str(image_config.digest),
        "layers": layers,
        "entrypoint": config_obj.get("Entrypoint"),
        "cmd": config_obj.get("Cmd"),
        "argv": argv,
        # not read: the file is the one run before (its identity unchanged), the config and
        # diff_ids are taken from <root>/archives/ (checked against the image ID)
        "file_read": read,
    }
    warning = platform_warning_for(image_config.data, options.selection.platform)
    if warning is not None:
        evidence["warning"] = warning
    tracer.emit(
        step_event("image", args={"source": location_text(options.image)}, evidence=evidence)
    )
    return argv


def _ensure_state_root(store: Store) -> None:
    try:
        store.ensure()
    except OSError as exc:
        raise ContainerError(
            f"cannot create the state directory: {exc.strerror or exc}", subject=str(store.root)
        ) from None


def _check_seccomp_profile(config: ContainerConfig) -> None:
    """A profile libseccomp refuses fails at create, not at start."""
    if config.seccomp_profile is not None:
        compiled = seccomp_filter(config, log=False)
        if compiled is not None:
            compiled.release()


def _remove_half_made(store: Store, directory: Path, mounts: list[dict[str, Any]]) -> None:
    """What a failed create made: the container's directory, its new anonymous volumes."""
    from runtime_lab.storage.volumes import remove_anonymous

    remove_dir(directory, ignore_errors=True)
    remove_anonymous(store, [m["name"] for m in mounts if m.get("name")])


def _container_dirs_step(tracer: Tracer, directory: Path, mode: str) -> None:
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
        from runtime_lab.storage.volumes import ensure  # named volumes only

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
    made: _Made,
    image_config: ImageConfig,
    layer_dirs: list[Path],
    argv: list[str],
) -> ContainerConfig:
    from inspect_tool.sources.location import location_text

    config_obj = dict(image_config.config)
    hostname = made.hostname
    return ContainerConfig(
        id=made.container_id,
        name=made.name,
        image_source=location_text(options.image),
        image_id=str(image_config.digest),
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
        image_config=dict(image_config.data),
        interactive=options.interactive,
        tty=options.tty,
        attach=list(options.attach),
        stdin_once=options.interactive and not options.detach and "stdin" in options.attach,
        labels=labels(config_obj, options.labels),
        read_only=options.read_only,
        restart=options.restart,
        seccomp=options.security.seccomp,
        seccomp_profile=options.security.profile,
        cap_add=list(options.caps.add),
        cap_drop=list(options.caps.drop),
        privileged=options.caps.privileged,
        capabilities=options.caps.capabilities(),
        ports=[
            {
                "host_port": p.host_port,
                "container_port": p.container_port,
                "protocol": p.protocol,
                "host_ip": p.host_ip,
            }
            for p in options.publish
        ],
    )


def seccomp_filter(
    config: ContainerConfig, *, log: bool, cache: Path | None = None
) -> Filter | None:
    """The container's seccomp filter, compiled here (libseccomp is on the host's disk, which
    PID 1 no longer sees when it loads the filter); with a trace, the kernel is asked to log
    what the filter denies (``log``: SECCOMP_FILTER_FLAG_LOG); with ``cache`` (the state
    root's ``seccomp/``), the program is exported and kept for the next container."""
    from runtime_lab.kernel import seccomp

    if config.privileged:  # docker: a privileged container gets no seccomp filter
        return None
    options = SecurityOptions(config.seccomp, config.seccomp_profile)
    try:  # the profile's includes/excludes "caps" see the container's own capabilities
        return seccomp.prepare(options, config.capability_set(), log=log, cache=cache)
    except seccomp.SeccompError as exc:
        raise ContainerError(exc.message, subject=config.name) from None
