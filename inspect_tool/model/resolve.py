"""Resolving a path inside a root as if the root were ``/``: filepath-securejoin's rules.

One walk, no I/O: what stands at a path comes from the caller's ``lookup`` (an in-memory
tree, ``lstat`` below a directory descriptor, a tar index), so each caller keeps its own way
of reading and every caller resolves alike. The rules:

- components are taken one at a time; ``.`` and empty ones are skipped;
- a symlink is expanded by hand: its target's components replace it; an absolute target
  restarts at the root (or is refused, ``Escape.REFUSE``);
- ``..`` goes back one *resolved* component (the kernel's rule, not a lexical one) and
  stops at the root (noted as ``clamped``; or refused, ``Escape.REFUSE``);
- more than ``MAX_SYMLINKS`` links in one resolution is a loop;
- a component that is not a directory where one is needed ends the walk;
- a missing component ends the walk (``Missing.FAIL``), is taken lexically so that a later
  ``..`` cancels it (``Missing.LEXICAL``: the caller creates what is left), or is made at
  once by the caller's ``create`` (``Missing.CREATE``).

The result is a ``Resolved`` (the real components, none of them a symlink unless
``follow_last`` is False) or a ``Refusal`` naming where and why; the caller turns a refusal
into its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

MAX_SYMLINKS = 40  # Linux's MAXSYMLINKS


class NodeKind(Enum):
    DIR = "directory"
    LINK = "symlink"
    OTHER = "not a directory"


@dataclass(frozen=True, slots=True)
class Node:
    """What stands at one path: a directory, a symlink (with its target) or anything else."""

    kind: NodeKind
    target: str = ""  # a symlink's target


DIRECTORY = Node(NodeKind.DIR)
NOT_DIRECTORY = Node(NodeKind.OTHER)


def symlink(target: str) -> Node:
    return Node(NodeKind.LINK, target)


class Missing(Enum):
    FAIL = "fail"
    LEXICAL = "lexical"
    CREATE = "create"


class Escape(Enum):
    CLAMP = "clamp"  # absolute targets restart at the root, ``..`` stops there
    REFUSE = "refuse"  # both are refusals


class Reason(Enum):
    LOOP = "loop"
    NOT_DIRECTORY = "not-directory"
    MISSING = "missing"
    ABSOLUTE = "absolute-link"
    ESCAPES = "escapes"


Parts = tuple[str, ...]
Lookup = Callable[[Parts], Node | None]
Create = Callable[[Parts, bool], Node]  # (the path, whether it is the last component)


@dataclass(frozen=True, slots=True)
class Via:
    """The symlink a component came from."""

    at: Parts
    target: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a path leads once its links are followed."""

    parts: Parts  # the components that exist, links expanded
    missing: Parts = ()  # Missing.LEXICAL: components below ``parts`` that do not exist
    clamped: bool = False  # a ``..`` stopped at the root


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a path could not be followed, and where the walk stopped."""

    reason: Reason
    at: Parts  # the component the walk stopped at (a link's own path for ABSOLUTE)
    via: Via | None = None  # the symlink that component came from (the link for ABSOLUTE)
    kind: NodeKind | None = None  # NOT_DIRECTORY: what stands at ``at``


def resolve(
    path: str | Sequence[str],
    lookup: Lookup,
    *,
    follow_last: bool = True,
    directory: bool = False,
    missing: Missing = Missing.FAIL,
    escape: Escape = Escape.CLAMP,
    create: Create | None = None,
    start: Parts = (),
) -> Resolved | Refusal:
    """Resolve ``path`` (a string split on ``/``, or its components) below ``start`` (real
    directories resolved before). ``lookup(parts)`` is asked only for a child of resolved
    directories. ``directory``: the last component must be a directory too. ``create`` (with
    ``Missing.CREATE``) makes a missing component and says what it made."""
    names = path.split("/") if isinstance(path, str) else path
    pending: list[tuple[str, Via | None]] = [(p, None) for p in reversed(names) if p]
    resolved: list[str] = list(start)
    lexical: list[str] = []
    clamped = False
    links = 0
    while pending:
        part, via = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if lexical:
                lexical.pop()
            elif resolved:
                resolved.pop()
            elif escape is Escape.REFUSE:
                return Refusal(Reason.ESCAPES, (), via)
            else:
                clamped = True
            continue
        if lexical:
            lexical.append(part)
            continue
        here = (*resolved, part)
        last = not pending
        node = lookup(here)
        if node is None:
            if missing is Missing.FAIL:
                return Refusal(Reason.MISSING, here, via)
            if missing is Missing.LEXICAL:
                lexical.append(part)
                continue
            assert create is not None
            node = create(here, last)
        if node.kind is NodeKind.LINK and (not last or follow_last):
            links += 1
            if links > MAX_SYMLINKS:
                return Refusal(Reason.LOOP, here, via)
            link = Via(here, node.target)
            if node.target.startswith("/"):
                if escape is Escape.REFUSE:
                    return Refusal(Reason.ABSOLUTE, here, link)
                resolved.clear()
            pending.extend((p, link) for p in reversed(node.target.split("/")) if p)
            continue
        if node.kind is not NodeKind.DIR and (not last or directory):
            return Refusal(Reason.NOT_DIRECTORY, here, via, node.kind)
        resolved.append(part)
    return Resolved(tuple(resolved), tuple(lexical), clamped)
