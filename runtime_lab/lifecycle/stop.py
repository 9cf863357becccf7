"""``stop`` (SIGTERM, then SIGKILL, as docker stop) and ``remove``."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from inspect_tool.errors import UsageError
from runtime_lab.kernel import cgroups
from runtime_lab.lifecycle.state import STOP_MARKER, refresh
from runtime_lab.process.launch import wait_quietly
from runtime_lab.storage.store import ContainerState, Store, remove_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
        if state.status != "running":
            return state
        # it was started again before the mark was made: that run is stopped as any other
    if state.status != "running" or not state.pid:
        return state
    if state.paused:  # a frozen process acts on no signal: thawed first, as docker does
        from runtime_lab.lifecycle.control import unpause

        with contextlib.suppress(Exception):
            unpause(store, container_id)
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
    store: Store,
    container_id: str,
    *,
    force: bool = False,
    volumes: bool = False,
    leftovers: bool = True,
) -> dict[str, Any]:
    """Remove the container and its writable layer; with ``volumes``, its anonymous volumes
    too (named volumes stay: they are meant to outlive containers). ``leftovers``: look for
    the control group a dockscope killed with -9 left (``run --rm`` has just removed its own).
    Returns what went, as the evidence of the ``remove`` step."""
    state = refresh(store, container_id)
    if state.status in ("running", "restarting"):
        if not force:
            raise UsageError(f"the container is {state.status}: stop it first, or use rm -f")
        stop(store, container_id, timeout=0)
    directory = store.container_dir(container_id)
    bridged = True  # unknown: look for a lease
    try:
        config = store.load_config(container_id)
        anonymous = [m["name"] for m in config.volumes if m.get("name")]
        bridged = config.network == "bridge"
    except OSError:  # removed meanwhile (a supervisor's --rm)
        anonymous = []
    if store.run_dir(container_id) != directory:  # rootless: its runtime directory too
        remove_dir(store.run_dir(container_id), ignore_errors=True)
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
    if bridged:  # an address, rules and a veth left by a dockscope killed with -9
        from runtime_lab.lifecycle.network import release as release_network

        with contextlib.suppress(Exception):
            release_network(store, container_id)
    # a group left by a dockscope killed with -9 (empty: its processes died with PID 1)
    for group in cgroups.dockscope_groups() if leftovers else ():
        if group.name == container_id[:12]:
            with contextlib.suppress(OSError):
                group.rmdir()
    return {
        "removed": [str(directory)],
        "volumes_removed": anonymous if volumes else [],
        "exists_now": directory.exists(),
    }
