"""Where the runtime keeps things: the layer store and each container's state.

```
<root>/layers/<diff_id hex>/        one layer, unpacked once, ready to be an overlay lowerdir
<root>/containers/<id>/config.json  what was asked: image, command, options (never changes)
<root>/containers/<id>/state.json   what happened: status, pid, exit code, times
<root>/containers/<id>/upper/       the writable layer (overlay upperdir)
<root>/containers/<id>/work/        overlay's workdir
<root>/containers/<id>/merged/      where the root filesystem is mounted (inside the container)
<root>/containers/<id>/container.log  output of a detached container, docker's json-file format
<root>/seccomp/<digest>.json        a seccomp filter's BPF program, kept for the next container
```

The root is ``/var/lib/dockscope`` unless ``--root`` or ``DOCKSCOPE_ROOT`` says otherwise;
an ordinary user's (rootless) is ``~/.local/share/dockscope``, its attach sockets under
``$XDG_RUNTIME_DIR/dockscope``. State
files are replaced atomically (write to a temporary name, then rename), so a reader never sees
half a file and a crash never leaves one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inspect_tool.diskio import replace_file
from inspect_tool.errors import DockscopeError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = Path("/var/lib/dockscope")


class StateError(DockscopeError):
    """dockscope's state cannot be read (exit 3): usually a user other than root reading
    root's state directory."""


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Reading the state at ``path``: permission denied is one line saying what to do."""
    try:
        yield
    except PermissionError as exc:
        raise StateError(
            "cannot read dockscope's state: permission denied (it belongs to root: run this "
            "with sudo, or give --root or DOCKSCOPE_ROOT a state directory of your own)",
            subject=str(exc.filename or path),
        ) from None


def state_root(root: str | Path | None = None) -> Path:
    if root:
        return Path(root)
    env = os.environ.get("DOCKSCOPE_ROOT")
    if env:
        return Path(env)
    return data_home() if rootless() else DEFAULT_ROOT


def rootless() -> bool:
    """Whether dockscope runs as an ordinary user: not root, or root only of a user namespace
    it entered (``kernel/userns.py``)."""
    if os.geteuid() != 0:
        return True
    # entered only through that module: not loaded, not entered (and not loaded for this)
    module = sys.modules.get("runtime_lab.kernel.userns")
    return module is not None and bool(module.in_own_namespace())


def data_home() -> Path:
    """An ordinary user's state root: ``$XDG_DATA_HOME/dockscope`` (``~/.local/share/dockscope``),
    where podman keeps its storage (``~/.local/share/containers``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(base) / "dockscope"


def runtime_home(root: Path) -> Path | None:
    """An ordinary user's runtime directory, ``$XDG_RUNTIME_DIR/dockscope`` (podman's runroot
    is ``$XDG_RUNTIME_DIR/containers``), for a state root of its own; None for root, or when
    $XDG_RUNTIME_DIR is not set (the container's directory then holds everything)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or not rootless() or not os.path.isabs(runtime):
        return None
    return Path(runtime) / "dockscope"


def remove_dir(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove ``path`` and all it holds (nothing when it is missing), never following a
    symlink. Iterative, one descriptor at a time: a container's writable layer or a volume
    may nest directories deeper than Python's stack (shutil.rmtree recurses on 3.11) and
    than PATH_MAX."""
    from inspect_tool.layers.removal import remove_tree

    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        if ignore_errors:
            return
        raise
    try:
        remove_tree(parent, path.name)
    except OSError:
        if not ignore_errors:
            raise
    finally:
        os.close(parent)


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` replaced whole by ``data`` (diskio.replace_file: a temporary renamed over it,
    so that a reader, or dockscope killed mid-write, never sees half a file)."""
    replace_file(path, data)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e9):09d}Z"


@dataclass(slots=True)
class ContainerConfig:
    """What a container was created with (its ``config.json``): never changes after create."""

    id: str
    name: str
    image_source: str  # the path given to run
    image_id: str
    image_selector: dict[str, str | None]  # --image/--ref/--platform used
    diff_ids: list[str]  # bottom to top: the lowerdirs
    command: list[str]  # the resolved argv (entrypoint + cmd)
    env: list[str]
    workdir: str
    user: str
    hostname: str
    network: str  # "none", "bridge", "host" or "container:<id>" (its namespace joined)
    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None
    auto_remove: bool = False
    detached: bool = False
    image_config: dict[str, Any] = field(default_factory=dict)  # the image's config, as stored
    created: str = field(default_factory=now)
    interactive: bool = False  # -i: stdin is a pipe kept open (docker's OpenStdin)
    tty: bool = False  # -t: a terminal inside the container
    attach: list[str] = field(default_factory=list)  # streams a foreground run attached
    stdin_once: bool = False  # the attached stdin's end closes the container's (run -i)
    labels: dict[str, str] = field(default_factory=dict)  # the image's, then --label
    # -v: {"type": "bind"|"volume", "name" (volumes), "source" (host path), "destination",
    # "read_only", "copy"}
    volumes: list[dict[str, Any]] = field(default_factory=list)
    read_only: bool = False  # --read-only: the root filesystem is mounted read-only
    restart: str = "no"  # --restart: no, always, on-failure[:N] (detached containers)
    pid_mode: str = "private"  # --pid: "private", "host" or "container:<id>"
    ipc_mode: str = "private"  # --ipc: "private", "host" or "container:<id>"
    # --security-opt seccomp=: "default" (docker's profile), "unconfined", or the path given,
    # whose document is kept here (read once, at create, as docker keeps it)
    seccomp: str = "default"
    seccomp_profile: dict[str, Any] | None = None
    # rootless: the user namespace it runs in ({"mode": "subid"|"single", "uid_map", "gid_map",
    # "setgroups"}); None when root ran it. Its layers then mark opaque directories with
    # user.overlay.opaque and overlayfs is mounted with userxattr.
    userns: dict[str, Any] | None = None

    # --cap-add/--cap-drop as given (normalized), --privileged, and the capabilities they give
    # (None: docker's default set, as for a container created before these options)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    capabilities: list[str] | None = None

    def capability_set(self) -> list[str]:
        """The capabilities the container's root keeps."""
        from runtime_lab.spec import DEFAULT_CAPABILITIES

        return list(DEFAULT_CAPABILITIES) if self.capabilities is None else self.capabilities

    # -p with --network bridge: {"host_port", "container_port", "protocol", "host_ip"}
    ports: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ContainerState:
    """What a container is doing (its ``state.json``): rewritten at each change."""

    status: str = "created"  # created, running, restarting (waiting to start again), exited
    pid: int = 0  # host PID of the container's PID 1
    shim_pid: int = 0  # the process that holds the namespaces and waits for PID 1
    exit_code: int | None = None
    oom_killed: bool = False
    started: str | None = None
    finished: str | None = None
    rootfs_mode: str = "overlay"  # "overlay", or "copy" where overlayfs is unavailable
    error: str | None = None
    # paths the runtime made in the writable layer (mount points the image lacks)
    runtime_paths: list[str] = field(default_factory=list)
    # the control group's directories while it runs (controller → path): exec joins them
    cgroup_paths: dict[str, str] = field(default_factory=dict)
    restart_count: int = 0  # starts by the restart policy since the last start by hand
    supervisor_pid: int = 0  # a detached container's supervisor (it restarts the container)
    # the process that reaps the shim and records the exit (the supervisor, or the run in
    # the foreground): between the two the shim is gone but the exit is not yet written
    recorder_pid: int = 0
    paused: bool = False  # dockscope pause: its control group is frozen (still "running")


class Store:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = state_root(root)
        self.layers = self.root / "layers"
        self.containers = self.root / "containers"
        # seccomp programs exported by libseccomp, by the digest of what they are made from
        self.seccomp_cache = self.root / "seccomp"
        # what was read of each image file run (storage/archives.py), for its next run
        self.archives = self.root / "archives"
        # rootless: the files that live only while a container runs (its attach socket) go
        # under $XDG_RUNTIME_DIR/dockscope, as podman keeps them in its runroot
        self.runtime = runtime_home(self.root)

    def ensure(self) -> None:
        for path in (self.root, self.layers, self.containers):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def layer_dir(self, diff_id_hex: str) -> Path:
        return self.layers / diff_id_hex

    # -- containers ----------------------------------------------------------------------------
    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id

    def run_dir(self, container_id: str) -> Path:
        """Where a running container's attach socket is: its directory, or (rootless, with
        $XDG_RUNTIME_DIR) ``$XDG_RUNTIME_DIR/dockscope/containers/<id>``."""
        if self.runtime is None:
            return self.container_dir(container_id)
        return self.runtime / "containers" / container_id

    def new_id(self) -> str:
        return os.urandom(32).hex()  # secrets.token_hex, without its imports

    def save_config(self, config: ContainerConfig) -> None:
        directory = self.container_dir(config.id)
        write_atomic(directory / "config.json", json.dumps(asdict(config), indent=2).encode())

    def load_config(self, container_id: str) -> ContainerConfig:
        path = self.container_dir(container_id) / "config.json"
        with reading(path):
            data = json.loads(path.read_text())
        return ContainerConfig(**data)

    def save_state(self, container_id: str, state: ContainerState) -> None:
        directory = self.container_dir(container_id)
        write_atomic(directory / "state.json", json.dumps(asdict(state), indent=2).encode())

    def load_state(self, container_id: str) -> ContainerState:
        path = self.container_dir(container_id) / "state.json"
        with reading(path):
            if not path.exists():
                return ContainerState()
            return ContainerState(**json.loads(path.read_text()))

    def ids(self) -> list[str]:
        with reading(self.containers):
            if not self.containers.is_dir():
                return []
            return sorted(
                p.name for p in self.containers.iterdir() if (p / "config.json").is_file()
            )

    def resolve(self, name_or_id: str) -> str:
        """A container by name, full ID or unambiguous ID prefix."""
        ids = self.ids()
        by_name = [i for i in ids if self.load_config(i).name == name_or_id]
        if by_name:
            return by_name[0]
        matches = [i for i in ids if i.startswith(name_or_id)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(f"no such container: {name_or_id}")
        raise UsageError(
            f"container ID prefix {name_or_id!r} is ambiguous: "
            + ", ".join(m[:12] for m in matches)
        )

    def name_taken(self, name: str) -> bool:
        return any(self.load_config(i).name == name for i in self.ids())
