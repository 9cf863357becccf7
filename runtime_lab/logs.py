"""A container's log: docker's json-file records, read from where the last read stopped."""

from __future__ import annotations

import json
from pathlib import Path

from inspect_tool.errors import DockscopeError, UsageError


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
                records.append((str(record.get("stream", "stdout")), str(record.get("log", ""))))
            except (ValueError, AttributeError):
                raise DockscopeError(
                    f"line {self.number} is not a json-file log record", subject=str(self.path)
                ) from None
        return records
