"""A container's recorded state: the error every lifecycle operation raises, the trace event of
a step, the state saved (a full disk never stops a running container) and corrected when its
processes are gone."""

from __future__ import annotations

import os

from inspect_tool.errors import DockscopeError
from runtime_lab.kernel import cgroups
from runtime_lab.storage.store import ContainerState, Store, now
from runtime_lab.trace.events import Event
from runtime_lab.trace.steps import STEPS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ContainerError(DockscopeError):
    """A container operation failed (exit 3: the input or the host cannot do it)."""


def step_event(step_id: str, **fields: Any) -> Event:
    step = STEPS[step_id]
    fields.setdefault("explanation", step.explanation)
    return Event(step=step.id, title=step.title, syscall=step.syscall, **fields)


def save_state(store: Store, container_id: str, state: ContainerState) -> OSError | None:
    """Record the state; a full disk must not stop a container that is already running."""
    try:
        store.save_state(container_id, state)
    except OSError as exc:
        return exc
    return None


# -- lifecycle ------------------------------------------------------------------------------------
STOP_MARKER = "stop-requested"  # made by stop: the supervisor restarts the container no more


def refresh(store: Store, container_id: str) -> ContainerState:
    """A state that says "running" for a process that is gone is corrected to "exited", and
    "restarting" for a supervisor that is gone too."""
    state = store.load_state(container_id)
    if state.status == "restarting" and not (
        state.supervisor_pid and cgroups.process_exists(state.supervisor_pid)
    ):
        state.status = "exited"
        save_state(store, container_id, state)
    if state.status == "running":
        alive = bool(state.shim_pid) and cgroups.process_exists(state.shim_pid)
        if not alive and not _recording(state):
            state.status = "exited"
            state.finished = state.finished or now()
            if state.exit_code is None:
                state.exit_code = -1
                state.error = "dockscope was not there when it exited"
            save_state(store, container_id, state)  # on a full disk: corrected in memory only
    return state


def _recording(state: ContainerState) -> bool:
    """Whether another process is still recording the exit: it reaped the shim and tears
    the network down before it writes the exit code (stop and rm wait for that), so a
    reader meanwhile must not take the exit for one nobody saw."""
    recorder = state.recorder_pid
    return bool(recorder) and recorder != os.getpid() and cgroups.process_exists(recorder)
