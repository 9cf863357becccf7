"""``container logs`` on engine storage: what a container printed, from its log files.

- Docker's json-file driver: ``containers/<id>/<id>-json.log``, one JSON object a line
  (``{"log": "…\\n", "stream": "stdout", "time": "…"}``); rotated files ``…-json.log.1`` …
  (``.gz`` when compressed) are older and are read first.
- Podman's k8s-file driver: ``userdata/ctr.log``, lines ``TIME STREAM F|P TEXT``; ``P`` marks
  a partial line continued by the next entry.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from inspect_tool.model.jsondoc import parse_json
from inspect_tool.storage.detect import open_storage
from inspect_tool.storage.evidence import Evidence, StorageError
from inspect_tool.storage.model import ContainerRecord
from inspect_tool.storage.times import parse_rfc3339_ns

MAX_LINE = 16 * 1024 * 1024
_ROTATED = re.compile(r"-json\.log\.(\d+)(\.gz)?")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a container's log: when it was printed, on which stream, and the text."""

    time: str | None
    time_ns: int | None
    stream: str  # stdout or stderr
    text: str  # as printed, with its newline when it had one


def _lines(evidence: Evidence, rel: str, compressed: bool) -> Iterator[bytes]:
    fd = evidence.open_file(rel)
    with os.fdopen(fd, "rb") as raw:
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if compressed else raw
        while line := stream.readline(MAX_LINE + 1):
            if len(line) > MAX_LINE:
                raise StorageError(f"a line longer than {MAX_LINE} bytes", subject=rel)
            yield line


def _json_file(evidence: Evidence, rel: str, compressed: bool) -> Iterator[LogEntry]:
    for number, line in enumerate(_lines(evidence, rel, compressed), 1):
        item = parse_json(line, subject=f"{rel}: line {number}")
        if not isinstance(item, dict):
            raise StorageError(f"line {number} is not a JSON object", subject=rel)
        time = item.get("time") if isinstance(item.get("time"), str) else None
        yield LogEntry(
            time,
            parse_rfc3339_ns(time) if time else None,
            str(item.get("stream") or "stdout"),
            str(item.get("log") or ""),
        )


def _k8s_file(evidence: Evidence, rel: str) -> Iterator[LogEntry]:
    partial: list[str] = []
    for number, raw in enumerate(_lines(evidence, rel, False), 1):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        fields = line.split(" ", 3)
        if len(fields) < 3:
            raise StorageError(f"line {number} is not TIME STREAM TAG TEXT", subject=rel)
        time, stream, tag = fields[:3]
        text = fields[3] if len(fields) > 3 else ""
        if "P" in tag.split(":"):
            partial.append(text)
            continue
        yield LogEntry(time, parse_rfc3339_ns(time), stream, "".join(partial) + text + "\n")
        partial = []
    if partial:
        yield LogEntry(None, None, "stdout", "".join(partial))


def read_log(evidence: Evidence, kind: str, rel: str) -> Iterator[LogEntry]:
    if kind == "k8s-file":
        yield from _k8s_file(evidence, rel)
        return
    if kind != "json-file":
        raise StorageError(f"the {kind!r} log driver's files are not read", subject=rel)
    directory, _, name = rel.rpartition("/")
    rotated = []
    for other in evidence.listdir(directory):
        match = _ROTATED.fullmatch(other[len(name) - len("-json.log") :])
        if other.startswith(name) and match:
            rotated.append((int(match.group(1)), other, bool(match.group(2))))
    for _, other, compressed in sorted(rotated, reverse=True):
        yield from _json_file(evidence, f"{directory}/{other}", compressed)
    if evidence.is_file(rel):
        yield from _json_file(evidence, rel, False)


def container_logs(
    root: Path, ident: str, *, since_ns: int | None = None, tail: int | None = None
) -> tuple[ContainerRecord, list[LogEntry]]:
    """Container ``ident``'s log entries, oldest first (``tail``: the last N only)."""
    storage = open_storage(root)
    try:
        container = storage.resolve_container(ident)
        kind, rel = storage.log_file(container)
        entries: deque[LogEntry] = deque(maxlen=tail if tail is not None and tail >= 0 else None)
        for entry in read_log(storage.evidence, kind, rel):
            if since_ns is not None and (entry.time_ns is None or entry.time_ns < since_ns):
                continue
            entries.append(entry)
        return container, list(entries)
    finally:
        storage.evidence.close()
