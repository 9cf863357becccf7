"""A foreground session's ends on dockscope's side: which streams are attached, dockscope's
own descriptors for them, the terminal's size and the trace's sinks (run, exec)."""

from __future__ import annotations

import os

from inspect_tool.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

    from runtime_lab.streams import LocalStreams
    from runtime_lab.trace.events import Tracer


def attached_streams(values: list[str], *, detach: bool, interactive: bool) -> list[str]:
    """docker's -a: the streams a foreground container has attached."""
    chosen: list[str] = []
    for value in values:
        stream = value.lower()
        if stream not in ("stdin", "stdout", "stderr"):
            raise UsageError(f"-a {value}: attach stdin, stdout or stderr")
        if stream not in chosen:
            chosen.append(stream)
    if detach:
        if chosen:
            raise UsageError(
                "conflicting options: -a and -d (a detached container is not attached)"
            )
        return []
    if not chosen:
        chosen = ["stdin", "stdout", "stderr"] if interactive else ["stdout", "stderr"]
    return chosen


def local_streams(streams: list[str], *, interactive: bool, tty: bool) -> LocalStreams:
    """dockscope's own descriptors for the attached streams. Input is forwarded only with -i:
    without it the container's stdin is closed, and ``-a stdin`` alone delivers nothing."""
    from runtime_lab.streams import LocalStreams

    stdin = 0 if "stdin" in streams and interactive else None
    return LocalStreams(
        stdin=stdin,
        stdout=1 if "stdout" in streams else None,
        stderr=2 if "stderr" in streams else None,
        terminal=0 if tty and stdin is not None and os.isatty(0) else None,
    )


def terminal_size() -> tuple[int, int] | None:
    from runtime_lab.kernel import linux

    for fd in (0, 1, 2):
        size = linux.window_size(fd)
        if size is not None and size != (0, 0):
            return size
    return None


def open_trace_file(path: object) -> IO[str] | None:
    """The --trace-json file opened for writing (None when not asked for); a path that cannot
    be written is a usage error naming it."""
    if not path:
        return None
    try:
        return open(str(path), "w")
    except OSError as exc:
        raise UsageError(f"cannot write the trace: {exc.strerror}", subject=str(path)) from None


def add_trace_sinks(tracer: Tracer, *, trace: bool, json_file: object) -> None:
    if trace:
        from runtime_lab.trace.narrate import Narrator

        tracer.add_sink(Narrator())
    if json_file is not None:
        from runtime_lab.trace.events import JsonLinesSink

        tracer.add_sink(JsonLinesSink(json_file))  # type: ignore[arg-type]
