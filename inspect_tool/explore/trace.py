"""A runtime trace (``dockscope run --trace-json FILE``) read as a timeline of steps.

The file is JSON lines, one event each, as docs/JSON.md ("run --trace-json") documents them:
``step``, ``title``, ``explanation``, ``syscall``, ``args``, ``result``, ``evidence``, ``pid``,
``host_pid``, ``time``, ``phase``. Parsed here against that schema (inspect_tool never imports
runtime_lab); every line is bounded by ``model/jsondoc``'s rules, a line that is not an event is
an error naming the file and the line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_tool.errors import InvalidImageError, InvalidJSONError
from inspect_tool.model.jsondoc import parse_json

MAX_LINES = 100_000
MAX_BYTES = 64 * 1024 * 1024


class TraceError(InvalidImageError):
    """The trace file is not JSON lines of trace events (exit 3)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a runtime trace, from one line of the file: the step and its explanation, the
    syscall it made and its result, and the evidence recorded."""

    number: int  # 1-based line number in the file
    step: str
    title: str
    explanation: str
    syscall: str | None
    result: str
    phase: str
    pid: int | None
    host_pid: int | None
    time: float
    args: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def details(self) -> list[tuple[str, str]]:
        """(label, value) pairs of everything the event records; values are raw (escape them
        before display)."""
        rows = [
            ("step", self.step),
            ("title", self.title),
            ("phase", self.phase),
            ("result", self.result),
            ("syscall", self.syscall or "-"),
            ("pid", "-" if self.pid is None else str(self.pid)),
            ("host pid", "-" if self.host_pid is None else str(self.host_pid)),
            ("explanation", self.explanation),
        ]
        rows += [(f"args.{k}", _value(v)) for k, v in sorted(self.args.items())]
        rows += [(f"evidence.{k}", _value(v)) for k, v in sorted(self.evidence.items())]
        return rows


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _text(data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TraceError(f"{where}: {key!r} is not a string")
    return value


def _int(data: dict[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TraceError(f"{where}: {key!r} is not an integer")
    return value


def parse_step(line: bytes, number: int, label: str) -> Step:
    where = f"line {number}"
    try:
        data = parse_json(line, subject=label)
    except InvalidJSONError as exc:
        raise TraceError(f"{where}: {exc.message}", subject=label) from None
    if not isinstance(data, dict):
        raise TraceError(f"{where}: not a trace event (an object)")
    moment = data.get("time", 0.0)
    if not isinstance(moment, int | float) or isinstance(moment, bool):
        raise TraceError(f"{where}: 'time' is not a number")
    args = data.get("args") or {}
    evidence = data.get("evidence") or {}
    if not isinstance(args, dict) or not isinstance(evidence, dict):
        raise TraceError(f"{where}: 'args' and 'evidence' must be objects")
    return Step(
        number=number,
        step=_text(data, "step", where),
        title=_text(data, "title", where, optional=True) or data["step"],
        explanation=_text(data, "explanation", where, optional=True) or "",
        syscall=_text(data, "syscall", where, optional=True),
        result=_text(data, "result", where, optional=True) or "ok",
        phase=_text(data, "phase", where, optional=True) or "done",
        pid=_int(data, "pid", where),
        host_pid=_int(data, "host_pid", where),
        time=float(moment),
        args=args,
        evidence=evidence,
    )


def read_trace(path: Path) -> list[Step]:
    """Every event of a ``--trace-json`` file, in order. Raises TraceError."""
    label = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise TraceError(f"the trace is {size} bytes, more than {MAX_BYTES}", subject=label)
        raw = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read: {exc.strerror}", subject=label) from None
    steps: list[Step] = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        if len(steps) >= MAX_LINES:
            raise TraceError(f"more than {MAX_LINES} events", subject=label)
        try:
            steps.append(parse_step(line, number, label))
        except TraceError as exc:
            raise exc.with_subject(label) from None
    if not steps:
        raise TraceError("no trace events in the file", subject=label)
    return steps
