"""``dockscope cleanup``: bring the state back in line with reality after a crash.

Containers whose processes are gone are marked exited; processes left in the control group
of a container of this state root that is not running are killed and the group is removed
(groups of other state roots' containers are never touched: their containers may run);
half-unpacked layers (``.tmp-*``) are deleted, and the records of image files that are gone
or changed (``archives/``); any mount below the state directory is detached.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from inspect_tool.render.text import plural
from runtime_lab.kernel import linux
from runtime_lab.kernel.cgroups import CGROUP_ROOT, dockscope_groups
from runtime_lab.lifecycle.state import refresh
from runtime_lab.process.launch import wait_quietly
from runtime_lab.storage.store import Store, remove_dir


def recover(store: Store, cgroup_root: Path = CGROUP_ROOT) -> list[str]:
    report: list[str] = []
    stopped: set[str] = set()  # this store's containers that do not run: their groups go
    for cid in store.ids():
        before = store.load_state(cid).status
        state = refresh(store, cid)
        if state.status != "running":
            stopped.add(cid[:12])
        if before == "running" and state.status != "running":
            report.append(f"container {cid[:12]}: marked exited (its processes were gone)")
    for group in dockscope_groups(cgroup_root):
        if group.name not in stopped:  # running, or another state root's container
            continue
        procs = group / "cgroup.procs"
        pids = [int(p) for p in procs.read_text().split()] if procs.exists() else []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_quietly(pid, 2.0)
        if pids:
            killed = plural(len(pids), "leftover process", "leftover processes")
            report.append(f"cgroup {group}: killed {killed}")
        try:
            group.rmdir()
            report.append(f"cgroup {group}: removed")
        except OSError as exc:
            report.append(f"cgroup {group}: not removed ({exc.strerror})")
    from runtime_lab.lifecycle import network

    report += network.recover(store, {cid for cid in store.ids() if cid[:12] not in stopped})
    if store.layers.is_dir():
        for partial in store.layers.glob(".tmp-*"):
            remove_dir(partial, ignore_errors=True)
            report.append(f"layer store: removed half-unpacked {partial.name}")
    from runtime_lab.storage.archives import prune

    report += prune(store)
    prefix = str(store.root.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        with contextlib.suppress(OSError):
            linux.umount2(point, linux.MNT_DETACH)
            report.append(f"mount {point}: detached")
    if not report:
        report.append("nothing to clean up")
    return report
