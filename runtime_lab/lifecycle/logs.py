"""A container's log: docker's json-file records, written as the container runs and read from
where the last read stopped."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from inspect_tool.errors import DockscopeError, UsageError
from runtime_lab.storage.store import now

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO


def parse_tail(text: str) -> int | None:
    """docker's --tail: "all" (or a negative number) for every line, else N >= 0."""
    if text == "all":
        return None
    try:
        number = int(text)
    except ValueError:
        raise UsageError(f"--tail {text!r}: give a number of lines, or all") from None
    return None if number < 0 else number


class LogReader:
    """Reads ``container.log`` (docker's json-file lines) from where it stopped last time;
    only whole lines, so a record being written is read next time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.number = 0

    def read(self) -> list[tuple[str, str]]:
        """(stream, text) of each new record."""
        return [(stream, text) for stream, text, _ in self.read_timed()]

    def read_timed(self) -> list[tuple[str, str, str]]:
        """(stream, text, time) of each new record; time as written (RFC 3339, 9 digits)."""
        from runtime_lab.storage.store import reading

        with reading(self.path):
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    data = f.read()
            except FileNotFoundError:  # not started yet, or removed (--rm)
                return []
        whole, _, _ = data.rpartition(b"\n")
        if not whole:
            return []
        self.offset += len(whole) + 1
        records = []
        for raw in whole.split(b"\n"):
            self.number += 1
            try:
                record = json.loads(raw)
                records.append(
                    (
                        str(record.get("stream", "stdout")),
                        str(record.get("log", "")),
                        str(record.get("time", "")),
                    )
                )
            except (ValueError, AttributeError):
                raise DockscopeError(
                    f"line {self.number} is not a json-file log record", subject=str(self.path)
                ) from None
        return records


class JsonFileLog:
    """docker's json-file log format: one JSON object per line of output,
    ``{"log": "line\\n", "stream": "stdout", "time": "…Z"}``. A line still unfinished when the
    container ends is written without its newline, as docker does. A log that cannot be
    written (a full disk) loses lines; the container runs on."""

    def __init__(self, path: Path) -> None:
        try:
            self._handle: BinaryIO | None = open(path, "ab", buffering=0)  # noqa: SIM115
        except OSError:
            self._handle = None
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        buffered = self._partial[stream] + data
        *lines, self._partial[stream] = buffered.split(b"\n")
        self._write(stream, [line + b"\n" for line in lines])

    def _write(self, stream: str, lines: list[bytes]) -> None:
        if self._handle is None or not lines:
            return
        records = b"".join(
            json.dumps(
                {"log": line.decode("utf-8", "replace"), "stream": stream, "time": now()}
            ).encode()
            + b"\n"
            for line in lines
        )
        with contextlib.suppress(OSError):  # a full disk loses lines; the container runs on
            self._handle.write(records)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._write(stream, [rest])
        self._partial = {"stdout": b"", "stderr": b""}
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


class TimeWindow:
    """``logs --since`` and ``--until`` (each RFC 3339, a date, Unix seconds, or a duration
    before now such as ``10m``): a record is shown when its time is within them."""

    def __init__(self, since: str | None = None, until: str | None = None) -> None:
        from inspect_tool.storage.times import parse_since

        self.since = parse_since(since) if since else None
        self.until = None
        if until:
            try:
                self.until = parse_since(until)
            except UsageError as exc:
                raise UsageError(exc.message.replace("--since", "--until", 1)) from None

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None

    def keeps(self, stamp: str) -> bool:
        from inspect_tool.storage.times import parse_rfc3339_ns

        moment = parse_rfc3339_ns(stamp)
        if moment is None:  # a record without a time: docker's json-file always has one
            return self.since is None and self.until is None
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment <= self.until
