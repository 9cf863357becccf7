"""One checked fact, passed or failed: what verify reports and readers contribute."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check: what was expected, what was found, and whether they agree."""

    check: str  # e.g. "blob-digest"; the list is in docs/JSON.md
    subject: str  # what was checked, naming the file or member
    expected: str | None
    actual: str | None
    ok: bool
    message: str = ""
