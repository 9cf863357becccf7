"""Acting on a running container from outside, as docker's habits do: ``kill -s SIGNAL``,
``pause``/``unpause`` (the freezer), ``wait`` (for exit codes), ``rename``.

Each returns what it did as evidence (the file written, the signal sent to which host PID), so
the CLI can say it the way the trace says a step.

The freezer is a control group feature: every process of the group is stopped by the kernel
where it stands (not a signal: the processes cannot see, catch or ignore it) until the group
is thawed.

- cgroup v1: the ``freezer`` hierarchy; ``echo FROZEN > freezer.state`` starts it,
  ``freezer.state`` reads ``FREEZING`` until every task has stopped, then ``FROZEN``;
  ``echo THAWED`` resumes them.
- cgroup v2: no controller is needed; ``echo 1 > cgroup.freeze`` and ``cgroup.events`` says
  ``frozen 1`` once done; ``echo 0`` thaws.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from inspect_tool.errors import UsageError
from runtime_lab.lifecycle.create import CONTAINER_NAME
from runtime_lab.lifecycle.state import ContainerError, refresh, save_state
from runtime_lab.storage.store import ContainerState, Store

FREEZE_TIMEOUT = 5.0


def parse_signal(text: str) -> signal.Signals:
    """docker's ``--signal``: a name with or without SIG (``KILL``, ``SIGHUP``, ``hup``) or a
    number (``9``)."""
    value = text.strip().upper()
    try:
        if value.isdigit():
            return signal.Signals(int(value))
        return signal.Signals[value if value.startswith("SIG") else "SIG" + value]
    except (KeyError, ValueError):
        raise UsageError(f"invalid signal: {text}") from None


def _running(store: Store, container_id: str) -> tuple[str, ContainerState]:
    state = refresh(store, container_id)
    name = store.load_config(container_id).name
    if state.status != "running" or not state.pid:
        raise ContainerError(f"container {name} is not running", subject=name)
    return name, state


def kill(store: Store, container_id: str, sig: signal.Signals) -> dict[str, Any]:
    """Send ``sig`` to the container's PID 1 (docker kill: PID 1 only; a PID 1 that set no
    handler ignores SIGTERM and SIGINT: the kernel protects a namespace's init from signals
    it did not ask for, except SIGKILL and SIGSTOP sent from outside)."""
    name, state = _running(store, container_id)
    if state.paused and sig != signal.SIGKILL:
        raise ContainerError(f"container {name} is paused: unpause it first", subject=name)
    if state.paused:  # killed processes of a frozen group die only once it thaws
        _freeze(state, frozen=False)
        state.paused = False
        save_state(store, container_id, state)
    try:
        os.kill(state.pid, sig)
    except ProcessLookupError:
        raise ContainerError(f"container {name} is not running", subject=name) from None
    return {"syscall": f"kill({state.pid}, {sig.name})", "host_pid": state.pid}


def pause(store: Store, container_id: str) -> dict[str, Any]:
    name, state = _running(store, container_id)
    if state.paused:
        raise ContainerError(f"container {name} is already paused", subject=name)
    evidence = _freeze(state, frozen=True)
    state.paused = True
    save_state(store, container_id, state)
    return evidence


def unpause(store: Store, container_id: str) -> dict[str, Any]:
    name, state = _running(store, container_id)
    if not state.paused:
        raise ContainerError(f"container {name} is not paused", subject=name)
    evidence = _freeze(state, frozen=False)
    state.paused = False
    save_state(store, container_id, state)
    return evidence


def freezer_files(paths: dict[str, str]) -> tuple[Path, str, str, Path, str] | None:
    """(file to write, value to freeze, value to thaw, file to read, value read when frozen)
    for a group's paths, or None when it has no freezer."""
    if "freezer" in paths:  # v1
        state = Path(paths["freezer"]) / "freezer.state"
        return state, "FROZEN", "THAWED", state, "FROZEN"
    if "unified" in paths:  # v2: a core file, no controller to enable
        group = Path(paths["unified"])
        return group / "cgroup.freeze", "1", "0", group / "cgroup.events", "frozen 1"
    return None


def _freeze(state: ContainerState, *, frozen: bool) -> dict[str, Any]:
    files = freezer_files(state.cgroup_paths)
    if files is None:
        raise ContainerError(
            "the container's control group has no freezer (cgroup v1 without the freezer "
            "hierarchy): it cannot be paused"
        )
    target, freeze, thaw, check, done = files
    value = freeze if frozen else thaw
    try:
        target.write_text(value)
    except OSError as exc:
        raise ContainerError(f"echo {value} > {target}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + FREEZE_TIMEOUT
    seen = ""
    while True:
        with contextlib.suppress(OSError):
            seen = check.read_text()
        lines = seen.splitlines()
        reached = (done in lines) if frozen else (done not in lines)
        if reached or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if not reached:
        raise ContainerError(f"{check} still reads {seen.strip()!r} after {FREEZE_TIMEOUT} s")
    return {"written": f"echo {value} > {target}", "read": f"{check}: {seen.strip()}"}


def wait(store: Store, container_id: str, poll: float = 0.05) -> int:
    """Block until the container is not running; its exit code (docker wait). A container
    that was never started waits for its start and end, as docker's (condition not-running:
    a created container returns at once with 0)."""
    while True:
        state = refresh(store, container_id)
        if state.status not in ("running", "restarting"):
            return state.exit_code if state.exit_code is not None else 0
        time.sleep(poll)


def rename(store: Store, container_id: str, new_name: str) -> dict[str, str]:
    """A new name for the container (docker rename): checked as run --name checks it, and not
    in use. Its ID, hostname and everything else stay."""
    if not CONTAINER_NAME.fullmatch(new_name):
        raise UsageError(
            f"invalid container name '{new_name}': only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed"
        )
    config = store.load_config(container_id)
    old = config.name
    if old == new_name:
        raise UsageError(f"renaming a container with the same name as its current name: {old}")
    if store.name_taken(new_name):
        raise UsageError(f"the container name {new_name!r} is already in use")
    config.name = new_name
    store.save_config(config)
    return {"old": old, "new": new_name, "file": str(store.container_dir(container_id))}
