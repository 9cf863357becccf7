"""The directories a layer's entries go into, resolved inside the root over a ``Backend``.

Every path is resolved as if the root were ``/`` (filepath-securejoin's semantics, in
``model/resolve.py``), one component at a time from a handle of the root: symlinks are read
and expanded by hand (an absolute target restarts at the root, ``..`` never climbs above it,
more than 40 links is a loop), so nothing is ever opened by a string path joined onto the
root. Components that do not exist are taken lexically and created when asked; a lower
layer's non-directory where this layer needs a directory is replaced, as overlayfs does.
Resolved directories stay open in a small cache until something along their paths changes.
"""

from __future__ import annotations

from typing import Generic

from inspect_tool.layers.unpack.audit import Action, Note, Reason, Refusal
from inspect_tool.layers.unpack.backend import Backend, H, Kind
from inspect_tool.model.resolve import (
    DIRECTORY,
    MAX_SYMLINKS,
    NOT_DIRECTORY,
    Missing,
    Node,
    Resolved,
    symlink,
)
from inspect_tool.model.resolve import Reason as ResolveReason
from inspect_tool.model.resolve import resolve as resolve_path

_CACHE_LIMIT = 512  # resolved parent directories kept open

Found = tuple[H, str, bool]  # a directory's handle, its resolved path, whether it was clamped


class _Cursor(Generic[H]):
    """The one directory a walk keeps open: its resolved path and its handle. The walk's
    start, a handle borrowed from the cache, is never closed."""

    def __init__(self, fs: Backend[H], start: Found[H] | None, parents: Parents[H]) -> None:
        self.fs = fs
        self.parents = parents
        self.borrowed = fs.root
        self.base: tuple[str, ...] = ()
        self.clamped = False
        if start is not None:
            self.borrowed, here, self.clamped = start
            self.base = tuple(here.split("/")) if here else ()
        self.at = self.base
        self.handle = self.borrowed
        self.kinds: dict[tuple[str, ...], Kind] = {}  # the non-directories met, by path

    def release(self, old: H) -> None:
        if old is not self.borrowed:
            self.fs.close(old)

    def handle_of(self, parts: tuple[str, ...]) -> H:
        if self.at == parts:
            return self.handle
        fresh = self.fs.root if not parts else self.parents.reopen(list(parts))
        self.release(self.handle)
        self.at, self.handle = parts, fresh
        return fresh

    def lookup(self, parts: tuple[str, ...]) -> Node | None:
        """``model/resolve.py``'s lookup: what stands at ``parts`` (a directory found becomes
        the cursor's)."""
        kind, child, target = self.fs.step(self.handle_of(parts[:-1]), parts[-1])
        if kind is None:
            return None
        if kind is Kind.SYMLINK:
            assert target is not None
            return symlink(target)
        if kind is Kind.DIR:
            assert child is not None
            self.release(self.handle)
            self.at, self.handle = parts, child
            return DIRECTORY
        self.kinds[parts] = kind
        return NOT_DIRECTORY


class Parents(Generic[H]):
    """Resolves directories for the applier and keeps them open: ``resolve`` raises
    ``Refusal`` for a loop or a parent that cannot be a directory."""

    def __init__(self, fs: Backend[H], note: Note, entries: set[str]) -> None:
        self.fs = fs
        self._note = note
        self._entries = entries  # resolved paths of the current layer's own entries
        self._cache: dict[str, Found[H]] = {}
        self._graveyard: list[H] = []  # dropped handles, closed once the entry is done

    def invalidate(self) -> None:
        """Forget resolved directories (something along their paths may have changed)."""
        self._graveyard.extend(handle for handle, _, _ in self._cache.values())
        self._cache.clear()

    def bury(self) -> None:
        for handle in self._graveyard:
            self.fs.close(handle)
        self._graveyard.clear()

    def resolve(self, path: str, *, create: bool) -> Found[H] | None:
        """The directory ``path`` names, resolved inside the root: (handle, resolved path,
        whether a symlink's ``..`` was clamped at the root). None when it does not exist (or
        is not a directory) and ``create`` is False. Raises Refusal."""
        hit = self._cache.get(path)
        if hit is not None:
            return hit
        # start from the nearest ancestor resolved before (a real directory: resolving the
        # rest from there is resolving the whole path)
        start: Found[H] | None = None
        rest = path
        prefix = path
        while "/" in prefix:
            prefix = prefix.rpartition("/")[0]
            start = self._cache.get(prefix)
            if start is not None:
                rest = path[len(prefix) + 1 :]
                break
        found = self._walk(rest, create=create, start=start)
        if found is not None:
            if len(self._cache) >= _CACHE_LIMIT:
                self.invalidate()
            self._cache[path] = found
        return found

    def reopen(self, parts: list[str]) -> H:
        """A fresh handle on a path resolved before (all real directories)."""
        fs = self.fs
        handle = fs.root
        for part in parts:
            kind, child, _ = fs.step(handle, part)
            fs.close(handle)
            if kind is not Kind.DIR or child is None:
                raise Refusal(Reason.PARENT_NOT_DIRECTORY, f"{part!r} changed while resolving")
            handle = child
        return handle

    def _walk(self, path: str, *, create: bool, start: Found[H] | None = None) -> Found[H] | None:
        """filepath-securejoin's walk (``model/resolve.py``) over handles: components that
        do not exist are taken lexically (a later ``..`` cancels them) and created at the end
        when asked. ``start``: a directory resolved before (its handle is borrowed, never
        closed)."""
        cursor = _Cursor(self.fs, start, self)
        try:
            found = self._find(path, cursor, create=create)
            if found is None or (found.missing and not create):
                return None
            handle, resolved = self._make_missing(found, cursor)
            return (handle, "/".join(resolved), cursor.clamped or found.clamped)
        finally:
            cursor.release(cursor.handle)

    def _find(self, path: str, cursor: _Cursor[H], *, create: bool) -> Resolved | None:
        """``path`` resolved from the cursor's start. A lower layer's non-directory where
        this layer has a directory is replaced (when ``create``), as overlayfs does; one met
        through a symlink, or met again, is refused."""
        replaced: set[tuple[str, ...]] = set()
        while True:
            found = resolve_path(
                path, cursor.lookup, directory=True, missing=Missing.LEXICAL, start=cursor.base
            )
            if isinstance(found, Resolved):
                return found
            if found.reason is ResolveReason.LOOP:
                raise Refusal(
                    Reason.SYMLINK_LOOP,
                    f"more than {MAX_SYMLINKS} symlinks while resolving {path!r}",
                )
            assert found.reason is ResolveReason.NOT_DIRECTORY
            if not create:
                return None
            kind = cursor.kinds[found.at]
            here = "/".join(found.at)
            if found.via is not None or found.at in replaced:
                raise Refusal(
                    Reason.PARENT_NOT_DIRECTORY,
                    f"{here!r} is a {kind.value}, not a directory",
                )
            if here in self._entries:
                self._note(
                    Action.NEUTRALISED,
                    Reason.DUPLICATE,
                    f"{here!r} is stored in this layer as a {kind.value} and as a "
                    "directory; the directory replaces it",
                )
            self.fs.remove(cursor.handle_of(found.at[:-1]), found.at[-1], kind, here)
            self.invalidate()
            replaced.add(found.at)

    def _make_missing(self, found: Resolved, cursor: _Cursor[H]) -> tuple[H, list[str]]:
        """The handle of the directory ``found`` names, its missing components created, and
        its resolved path; the handle is the caller's to close."""
        fs = self.fs
        resolved = list(found.parts)
        handle = cursor.handle_of(found.parts)
        for part in found.missing:
            here = "/".join([*resolved, part])
            fs.mkdir(handle, part, here, None)
            made, child, _ = fs.step(handle, part)
            if made is not Kind.DIR or child is None:
                raise Refusal(Reason.PARENT_NOT_DIRECTORY, f"cannot create {here!r}")
            cursor.release(handle)
            handle = child
            resolved.append(part)
            cursor.at, cursor.handle = tuple(resolved), handle
        if handle is cursor.borrowed and handle is not fs.root:
            handle = self.reopen(resolved)  # each cache entry owns its handle
        else:
            cursor.at, cursor.handle = (), fs.root  # now owned by the caller
        return handle, resolved
