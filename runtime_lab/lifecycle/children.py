"""dockscope's own children (a container's shim, an exec's helper): the descriptors they keep,
signals forwarded to them while dockscope waits, and the wait."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def close_other_fds(keep: set[int]) -> None:
    """The shim keeps stdio and its pipes only: no descriptor of dockscope's (a supervisor's
    readiness pipe, an open image) lives on in the container's processes."""
    top = 3
    for fd in sorted(keep):
        if fd > top:
            os.closerange(top, fd)
        top = fd + 1
    os.closerange(top, 65536)


def wait_child(pid: int) -> tuple[int, int]:
    return os.waitpid(pid, 0)  # retried by Python when a signal interrupts it (PEP 475)


def forward_signals(target: Callable[[], int]) -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP go to the container's PID 1, as docker run forwards them.

    PID 1 ignores signals it has no handler for: a second Ctrl-C sends SIGKILL."""
    presses = {"count": 0}

    def forward(signum: int, _frame: object) -> None:
        pid = target()
        if not pid:
            return
        if signum == signal.SIGINT:
            presses["count"] += 1
            if presses["count"] > 1:
                signum = signal.SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[signum] = signal.signal(signum, forward)
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
