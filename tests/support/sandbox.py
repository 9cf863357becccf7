"""Running hostile input with the host's files out of reach."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 0x4000, 1 << 18


def _isolate(writable: list[Path]) -> None:
    """In a new mount namespace: everything read-only except ``writable`` (bind mounts)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source: bytes, target: bytes, flags: int) -> None:
        if libc.mount(source, target, None, flags, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mount {target!r}: {os.strerror(errno)}")

    if libc.unshare(_CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")
    mount(b"none", b"/", _MS_REC | _MS_PRIVATE)
    for path in writable:
        mount(bytes(path), bytes(path), _MS_BIND | _MS_REC)
    mount(b"none", b"/", _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


def sandboxed(function: Any, writable: list[Path]) -> Any:
    """``function()`` in a child process that sees the root filesystem read-only except
    ``writable``: should a breakout ever come back, it fails there instead of writing to
    the host's /etc. As root only (elsewhere permissions already keep /etc out of reach);
    where mount namespaces are not available the call runs here, unprotected."""
    import pickle

    if os.geteuid() != 0:
        return function()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            try:
                _isolate(writable)
            except OSError:
                outcome: tuple[str, Any] = ("no-sandbox", None)
            else:
                outcome = ("ok", function())
        except BaseException as exc:
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        payload = pickle.dumps(outcome)
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(payload)
    if kind == "no-sandbox":
        return function()
    if kind == "error":
        raise AssertionError(f"in the sandbox: {value}")
    return value


# -- the trees unpack and export produce, in one comparable form --------------------------------
