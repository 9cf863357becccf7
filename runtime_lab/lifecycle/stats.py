"""``stats`` and ``top``: what a running container uses, read from the files the kernel keeps
for its control group (and, for the network, from /proc/PID/net/dev in its namespace).

- memory used: v1 ``memory.usage_in_bytes`` minus ``total_inactive_file`` of ``memory.stat``;
  v2 ``memory.current`` minus ``inactive_file``;
- memory limit: v1 ``memory.limit_in_bytes``, v2 ``memory.max`` (none: the host's memory);
- CPU time: v1 ``cpuacct.usage`` (nanoseconds), v2 ``usage_usec`` of ``cpu.stat``;
- processes: ``pids.current``.

The CPU figure is docker's: the CPU time the group used between two samples over the time
that passed, as a percentage of one CPU (so 200% is two CPUs busy). Memory as docker's CLI
counts it: the page cache the kernel can drop at once (inactive files) is not "used".
Block I/O is not measured (dockscope makes no blkio group): it shows ``--``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from inspect_tool.errors import UsageError
from runtime_lab.lifecycle.state import ContainerError, refresh
from runtime_lab.storage.store import ContainerConfig, ContainerState, Store


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a container's files; ``cpu_ns`` and ``at_ns`` make the CPU % with the
    next one."""

    container_id: str
    name: str
    memory: int | None
    limit: int | None
    cpu_ns: int | None
    at_ns: int
    pids: int | None
    net_rx: int | None
    net_tx: int | None
    files: dict[str, str]  # what was read, for --json and the docs


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat_field(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def host_memory() -> int | None:
    text = _read(Path("/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def network_bytes(pid: int) -> tuple[int | None, int | None]:
    """Bytes received and sent by the container's interfaces but lo (/proc/PID/net/dev shows
    the network namespace of PID)."""
    text = _read(Path(f"/proc/{pid}/net/dev"))
    if text is None:
        return None, None
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def sample(config: ContainerConfig, state: ContainerState) -> Sample:
    paths = {k: Path(v) for k, v in state.cgroup_paths.items()}
    files: dict[str, str] = {}

    def read(controller: str, name: str) -> str | None:
        if controller not in paths:
            return None
        path = paths[controller] / name
        text = _read(path)
        if text is not None:
            files[str(path)] = text.strip() if "\n" not in text.strip() else "(memory.stat)"
        return text

    def number(controller: str, name: str) -> int | None:
        """A file holding one decimal number (not "max", not missing)."""
        text = read(controller, name)
        return int(text) if text and text.strip().isdigit() else None

    if "unified" in paths:
        memory = number("unified", "memory.current")
        inactive = "inactive_file"
        stat = ("unified", "memory.stat")
        limit = number("unified", "memory.max")
        usec = _stat_field(read("unified", "cpu.stat"), "usage_usec")
        cpu = usec * 1000 if usec is not None else None
        pids = number("unified", "pids.current")
    else:
        memory = number("memory", "memory.usage_in_bytes")
        inactive = "total_inactive_file"
        stat = ("memory", "memory.stat")
        limit = number("memory", "memory.limit_in_bytes")
        cpu = number("cpuacct", "cpuacct.usage")
        pids = number("pids", "pids.current")
    if memory is not None:  # the page cache the kernel can drop is not counted, as docker
        memory -= _stat_field(read(*stat), inactive) or 0
    host = host_memory()
    if host is not None and (limit is None or limit > host):
        limit = host  # no limit (or one above the machine's memory): the machine's, as docker
    rx, tx = network_bytes(state.pid) if state.pid else (None, None)
    return Sample(
        container_id=config.id,
        name=config.name,
        memory=max(memory, 0) if memory is not None else None,
        limit=limit,
        cpu_ns=cpu,
        at_ns=time.monotonic_ns(),
        pids=pids,
        net_rx=rx,
        net_tx=tx,
        files=files,
    )


def cpu_percent(before: Sample, after: Sample) -> float | None:
    if before.cpu_ns is None or after.cpu_ns is None or after.at_ns <= before.at_ns:
        return None
    return (after.cpu_ns - before.cpu_ns) / (after.at_ns - before.at_ns) * 100.0


def running(store: Store, names: list[str], *, all_: bool) -> list[str]:
    """The containers stats shows: those named (each must exist), or every running one (with
    -a: every one)."""
    if names:
        return [store.resolve(n) for n in names]
    chosen = []
    for cid in store.ids():
        if all_ or refresh(store, cid).status == "running":
            chosen.append(cid)
    return chosen


# -- top ----------------------------------------------------------------------------------------


def container_pids(store: Store, container_id: str) -> list[int]:
    """The host PIDs in the container's control group (the shim left it at start)."""
    state = refresh(store, container_id)
    name = store.load_config(container_id).name
    if state.status != "running" or not state.cgroup_paths:
        raise ContainerError(f"container {name} is not running", subject=name)
    found: set[int] = set()
    for path in state.cgroup_paths.values():
        text = _read(Path(path) / "cgroup.procs")
        found.update(int(p) for p in (text or "").split() if p.isdigit())
    return sorted(found)


def top(pids: list[int], ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """docker top: the host's ``ps`` with ``ps_args`` (default ``-ef``), only the rows of
    ``pids``: (titles, rows). The PID column is found by its title, as docker's."""
    args = ps_args or ["-ef"]
    try:
        done = subprocess.run(
            ["ps", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise ContainerError("ps is not installed on this host (procps)") from None
    if done.returncode != 0:
        raise UsageError(f"ps {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    lines = done.stdout.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise UsageError(f"ps {' '.join(args)}: no PID column in its output")
    index = titles.index("PID")
    wanted = {str(p) for p in pids}
    rows = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < len(titles):
            continue
        row = [*fields[: len(titles) - 1], " ".join(fields[len(titles) - 1 :])]
        if row[index] in wanted:
            rows.append(row)
    return titles, rows


def online_cpus() -> int:
    return len(os.sched_getaffinity(0))
