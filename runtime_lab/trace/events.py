"""Trace events: every step of making a container, as data.

Each event names the step, the system call or file it involves, its arguments and result, a
one-sentence explanation, and evidence (namespace inodes before and after, mountinfo lines,
cgroup files and values). Events travel from the container's processes to dockscope through a
pipe as JSON lines; sinks narrate them (rich, on stderr) or store them (``--trace-json``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from inspect_tool.diskio import write_all
from inspect_tool.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any


@dataclass(slots=True)
class Event:
    """One step of a container's life, as the trace records it."""

    step: str  # a stable identifier: "unshare", "pivot_root", "cgroup-limits", …
    title: str  # what a person reads: "Unshare the namespaces"
    explanation: str  # one sentence: why this makes a container
    syscall: str | None = None  # "unshare", "mount", "pivot_root", "write", "execve", …
    args: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"  # "ok", or the error
    evidence: dict[str, Any] = field(default_factory=dict)
    pid: int = field(default_factory=os.getpid)  # as the process sees itself (PID 1: 1)
    host_pid: int | None = None  # the same process in the host's PID namespace, where it differs
    time: float = field(default_factory=time.time)
    phase: str = "done"  # "plan" (about to happen) or "done"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, line: str) -> Event:
        data = json.loads(line)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Tracer:
    """Collects events and hands each to the sinks."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._sinks: list[Callable[[Event], None]] = []
        self.tracing = False  # someone watches the steps (see add_sink)

    def add_sink(self, sink: Callable[[Event], None], *, watching: bool = True) -> None:
        """``watching``: the sink shows or records the steps (--trace, --trace-json,
        --step), rather than only reacting to some (a supervisor's readiness)."""
        self._sinks.append(sink)
        self.tracing = self.tracing or watching

    def emit(self, event: Event) -> None:
        self.events.append(event)
        for sink in self._sinks:
            sink(event)


class JsonLinesSink:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: Event) -> None:
        try:
            self._stream.write(event.to_json() + "\n")
            self._stream.flush()
        except OSError as exc:  # a full disk: the run stops with this message (exit 2)
            raise UsageError(
                f"cannot write the trace: {exc.strerror or exc}", subject=self._stream.name
            ) from None


class PipeEmitter:
    """Used inside the container's processes: events go up a pipe to dockscope."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def emit(self, event: Event) -> None:
        write_all(self._fd, (event.to_json() + "\n").encode())


def read_events(fd: int, tracer: Tracer, on_line: Callable[[Event], None] | None = None) -> None:
    """Read JSON-line events from ``fd`` until it closes, emitting each."""
    buffer = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                event = Event.from_json(line.decode())
                tracer.emit(event)
                if on_line is not None:
                    on_line(event)
