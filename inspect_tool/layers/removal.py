"""Removing a tree without following a symlink: the one implementation, kept apart from the
unpack package so that the runtime's clean-up (a container's writable layer, its directory)
loads nothing else."""

from __future__ import annotations

import os

_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(parent: int, name: str) -> None:
    """Remove ``name`` below ``parent`` and all it holds, never following a symlink.

    Iterative with one descriptor at a time (climbing back through ``..`` of a directory it
    descended into), so any depth works within the descriptor limit."""
    try:
        os.unlink(name, dir_fd=parent)
        return
    except IsADirectoryError:
        pass
    except FileNotFoundError:
        return
    names = [name]
    fd = os.open(name, _DIR_READ, dir_fd=parent)
    try:
        while True:
            descended = False
            for child in os.listdir(fd):
                try:
                    os.unlink(child, dir_fd=fd)
                except IsADirectoryError:
                    inner = os.open(child, _DIR_READ, dir_fd=fd)
                    os.close(fd)
                    fd = inner
                    names.append(child)
                    descended = True
                    break
            if descended:
                continue
            done = names.pop()
            if not names:
                os.close(fd)
                fd = -1
                os.rmdir(done, dir_fd=parent)
                return
            up = os.open("..", _DIR_READ, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(done, dir_fd=fd)
    finally:
        if fd >= 0:
            os.close(fd)
