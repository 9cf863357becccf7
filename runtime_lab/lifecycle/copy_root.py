"""Where ``cp`` finds a container's files: ``/proc/PID/root`` while it runs; for a stopped one,
its overlay mounted again in a child process's own mount namespace (the copy runs in that
child, and the mount vanishes with it); a container in copy mode is its directory."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from inspect_tool.errors import DockscopeError, UsageError
from runtime_lab.lifecycle.state import ContainerError, refresh
from runtime_lab.storage.store import Store, remove_dir

CLONE_NEWNS = 0x00020000


def with_container_root(
    store: Store, container_id: str, action: Callable[[str, str], dict[str, Any]]
) -> dict[str, Any]:
    """``action(root, how)`` with the container's root filesystem at ``root``; ``how`` says
    which view it is (for the trace line)."""
    config = store.load_config(container_id)
    state = refresh(store, container_id)
    directory = store.container_dir(container_id)
    if state.status == "running" and state.pid:
        return action(f"/proc/{state.pid}/root", f"/proc/{state.pid}/root (running)")
    if state.status in ("running", "restarting"):
        raise ContainerError(
            f"container {config.name} is restarting: try again", subject=config.name
        )
    if state.rootfs_mode == "copy":
        return action(str(directory / "merged"), f"{directory / 'merged'} (copy mode)")
    lowers = [str(store.layer_dir(d)) for d in reversed(config.diff_ids)]
    if not lowers:
        empty = directory / "empty"
        empty.mkdir(exist_ok=True)
        lowers = [str(empty)]
    options = (
        f"lowerdir={':'.join(lowers)},upperdir={directory / 'upper'},workdir={directory / 'work'}"
    )
    how = f"overlay mounted again on {directory / 'merged'} in a private mount namespace (stopped)"
    return _in_child(lambda: _mount_and_run(directory, options, action, how))


def _mount_and_run(
    directory: Any, options: str, action: Callable[[str, str], dict[str, Any]], how: str
) -> dict[str, Any]:
    from runtime_lab.kernel import linux

    linux.unshare(CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    remove_dir(directory / "work", ignore_errors=True)  # overlay refuses a used workdir
    (directory / "work").mkdir(mode=0o755, exist_ok=True)
    linux.mount("overlay", str(directory / "merged"), "overlay", 0, options)
    return action(str(directory / "merged"), how)


def _in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in a forked child (its mount namespace dies with it); its result, or its
    error raised again here with the same kind."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        code = 0
        try:
            reply: dict[str, Any] = {"ok": work()}
        except DockscopeError as exc:
            reply = {"error": exc.message, "usage": isinstance(exc, UsageError)}
            code = 1
        except OSError as exc:
            reply = {"error": f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")}
            code = 1
        except BaseException as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
            code = 1
        try:
            sys.stdout.flush()
            with os.fdopen(write_end, "w") as out:
                json.dump(reply, out)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        text = reader.read()
    os.waitpid(pid, 0)
    try:
        reply = json.loads(text)
    except ValueError:
        raise ContainerError("the copy's process ended without a word") from None
    if "error" in reply:
        if reply.get("usage"):
            raise UsageError(reply["error"])
        raise ContainerError(reply["error"])
    result: dict[str, Any] = reply["ok"]
    return result
