"""The container's terminal and standard streams: a pty from the container's own devpts, and
the descriptors 0, 1 and 2 of the command."""

from __future__ import annotations

import os

from runtime_lab.kernel import linux
from runtime_lab.process.launch import LaunchSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def open_terminal(
    ptmx: str, window: tuple[int, int] | None, console_fd: int
) -> tuple[int, int, int]:
    """A pseudo-terminal from the devpts instance of ``ptmx``: its master goes up to
    dockscope over the console socket (SCM_RIGHTS); the slave (returned, with its number and
    the master's descriptor, still open here) stays to become the command's terminal."""
    import socket

    master, slave, number = linux.open_pty(ptmx)
    try:
        if window is not None:
            linux.set_window_size(master, *window)
        with socket.socket(fileno=os.dup(console_fd)) as sock:
            socket.send_fds(sock, [b"t"], [master])
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave, number


def allocate_terminal(root: str, spec: LaunchSpec) -> dict[str, Any]:
    """A terminal from the container's own devpts (so it is /dev/pts/N inside, as runc's
    console): its slave becomes the command's stdin, stdout, stderr and controlling
    terminal; /dev/console is the slave too."""
    assert spec.console_fd is not None
    master, slave, number = open_terminal(
        os.path.join(root, "dev", "pts", "ptmx"), spec.window, spec.console_fd
    )
    os.close(master)
    spec.terminal = slave
    os.close(spec.console_fd)
    spec.console_fd = None
    console = os.path.join(root, "dev", "console")
    with open(console, "w"):
        pass  # a mount point for the bind mount below
    linux.mount(os.path.join(root, "dev", "pts", str(number)), console, None, linux.MS_BIND)
    return {
        "terminal": f"/dev/pts/{number}",
        "window": list(linux.window_size(slave) or (0, 0)),
        "console": "/dev/console",
        "master": "sent to dockscope (SCM_RIGHTS)",
    }


def prepare_stdio(spec: LaunchSpec) -> None:
    set_stdio(spec.stdin_fd, spec.stdout_fd, spec.stderr_fd, spec.terminal)


def set_stdio(
    stdin_fd: int | None, stdout_fd: int | None, stderr_fd: int | None, terminal: int | None
) -> None:
    """The command's stdin, stdout and stderr, in a session of its own (as runc's init
    calls setsid): a terminal becomes its controlling terminal; no stdin is /dev/null."""
    os.setsid()
    if terminal is not None:
        linux.set_controlling_terminal(terminal)
        for target in (0, 1, 2):
            os.dup2(terminal, target)
        os.close(terminal)
        return
    if stdin_fd is not None:
        os.dup2(stdin_fd, 0)
    else:
        fd = os.open("/dev/null", os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
    if stdout_fd is not None:
        os.dup2(stdout_fd, 1)
    if stderr_fd is not None:
        os.dup2(stderr_fd, 2)
