"""Detached containers: the supervisor, dockscope's own process in its own session, that runs
a container with its output in its log, records its exit and applies its restart policy."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from inspect_tool.errors import UsageError
from runtime_lab.spec import RestartPolicy
from runtime_lab.storage.store import Store


def start_detached(store: Store, container_id: str, *, trace_json: Path | None = None) -> None:
    """Start the container under a supervisor in its own session, output to its log file.

    The supervisor is dockscope's own process, detached (double fork, setsid): it relays the
    container's output into docker's json-file log format, records the exit in state.json,
    removes the control group, starts the container again as its restart policy says, and
    removes the container with --rm. A start by hand counts restarts from zero again.
    """
    from runtime_lab.lifecycle.state import STOP_MARKER, refresh

    state = refresh(store, container_id)
    if state.status in ("running", "restarting"):
        name = store.load_config(container_id).name
        raise UsageError(f"container {name} is already {state.status}")
    directory = store.container_dir(container_id)
    with contextlib.suppress(FileNotFoundError):
        (directory / STOP_MARKER).unlink()
    if state.restart_count:
        state.restart_count = 0
        store.save_state(container_id, state)
    ready_r, ready_w = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.close(ready_r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _supervise(store, container_id, directory, ready_w, trace_json)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.waitpid(first, 0)
    # wait until the container is running (or has already exited), so ps sees it at once;
    # a byte says so (EOF too: the supervisor died before)
    with os.fdopen(ready_r, "rb") as ready:
        ready.read(1)
    state = refresh(store, container_id)
    if state.error:
        raise UsageError(f"the container failed to start: {state.error}")


def _supervise(
    store: Store, container_id: str, directory: Path, ready_w: int, trace_json: Path | None
) -> None:
    from runtime_lab.lifecycle.start import StartIO
    from runtime_lab.lifecycle.start import start as start_container
    from runtime_lab.lifecycle.state import STOP_MARKER, refresh, step_event
    from runtime_lab.lifecycle.stop import remove as remove_container
    from runtime_lab.trace.events import JsonLinesSink, Tracer

    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    log = os.open(directory / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    tracer = Tracer()
    trace_file = open(trace_json, "a") if trace_json else None  # noqa: SIM115
    if trace_file is not None:
        tracer.add_sink(JsonLinesSink(trace_file))

    def ready(event: Any) -> None:
        nonlocal ready_w
        if ready_w >= 0 and event.step in ("exec", "exit"):
            os.write(ready_w, b"r")
            os.close(ready_w)
            ready_w = -1

    tracer.add_sink(ready, watching=False)  # no trace: the filter logs nothing
    policy = RestartPolicy.parse(store.load_config(container_id).restart)
    delay = 0.0
    try:
        while True:
            began = time.monotonic()
            code = start_container(store, container_id, tracer, StartIO())
            state = store.load_state(container_id)
            stopped = (directory / STOP_MARKER).exists()
            # a container that could not even start (a step failed) is not started again
            if stopped or state.error or not policy.wants_restart(code, state.restart_count):
                break
            # docker's back-off: 100 ms, doubled for each restart in a row, at most a minute;
            # a container that ran 10 s or more starts the count of delays again
            ran = time.monotonic() - began
            delay = 0.1 if ran >= 10 or not delay else min(delay * 2, 60.0)
            state.status, state.restart_count = "restarting", state.restart_count + 1
            state.supervisor_pid = os.getpid()
            store.save_state(container_id, state)
            tracer.emit(
                step_event(
                    "restart",
                    args={"policy": str(policy), "delay": delay},
                    evidence={"exit_code": code, "restart_count": state.restart_count},
                )
            )
            if not _wait_unless_stopped(directory / STOP_MARKER, delay):
                state.status = "exited"  # stopped by hand while it waited
                store.save_state(container_id, state)
                break
    except BaseException as exc:  # recorded for ps and for the waiting run -d
        state = refresh(store, container_id)
        if state.status != "running":  # never over a container that runs (started twice)
            state.status, state.error = "exited", str(exc)
            with contextlib.suppress(OSError):
                store.save_state(container_id, state)
    finally:
        if ready_w >= 0:
            os.close(ready_w)
        with contextlib.suppress(Exception):
            if store.load_config(container_id).auto_remove:
                removed = remove_container(store, container_id, force=True, volumes=True)
                tracer.emit(step_event("remove", evidence=removed))
        if trace_file is not None:
            trace_file.close()


def _wait_unless_stopped(marker: Path, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as ``marker`` appears (dockscope stop)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return False
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    return not marker.exists()
