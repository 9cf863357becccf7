"""What unpack and export report about a layer's entries: the audit.

What the image holds is reproduced faithfully; what cannot be reproduced safely is refused
and reported here, never silently dropped: names that climb out of the root, an entry that
would change the root's type, parents that loop or are not directories, hard links whose
target is missing, a directory or outside the root, invalid whiteouts, device nodes (created
only as root with ``devices=True``), unsupported entry types. Writing through a symlink whose
target climbs above the root is done inside the root and reported as neutralised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    REFUSED = "refused"  # the entry was not applied
    SKIPPED = "skipped"  # the entry, or part of its metadata, was left out
    NEUTRALISED = "neutralised"  # applied, but not as the archive asked


class Reason(StrEnum):
    NAME_ESCAPES = "name-escapes"
    ROOT_TYPE = "root-type"
    SYMLINK_LOOP = "symlink-loop"
    PARENT_NOT_DIRECTORY = "parent-not-directory"
    SYMLINK_CLAMPED = "symlink-clamped"
    LINK_ESCAPES = "link-escapes"
    LINK_MISSING = "link-target-missing"
    LINK_DIRECTORY = "link-to-directory"
    LINK_ITSELF = "link-to-itself"
    WHITEOUT_INVALID = "whiteout-invalid"
    DUPLICATE = "duplicate"
    DEVICE = "device"
    UNSUPPORTED = "unsupported-type"
    OWNER = "owner"
    XATTR = "xattr"
    UNION_XATTR = "union-xattr"
    WRITE_FAILED = "write-failed"
    SYMLINK_TARGET_LONG = "symlink-target-too-long"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One layer entry that unpack or export refused, skipped or neutralised, with the reason and
    where the entry lies in its layer."""

    layer: int
    name: str  # the member name as stored in the layer
    action: Action
    reason: Reason
    message: str
    offset: int | None = None  # of the member's header in the layer tar; None: not one entry


@dataclass(slots=True)
class ExtractStats:
    """Counts of entries: applied from the layers (summed over all layers: an entry a later
    layer replaces or deletes counts each time), or found in DEST (``tree_stats``)."""

    directories: int = 0
    files: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    fifos: int = 0
    devices: int = 0
    whiteouts: int = 0
    bytes: int = 0  # regular-file content written


Note = Callable[[Action, Reason, str], None]  # reports a problem with the current entry


class Refusal(Exception):
    """An entry that is not applied, and why (recorded as ``Action.REFUSED``)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
