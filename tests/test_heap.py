"""The heap kept for reuse (inspect_tool/heap.py): reads that each make a 1 MiB buffer stop
faulting their memory in again, in the registry's client and in forked workers alike. Each
case runs in a fresh interpreter, measured against the same reads with glibc's defaults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

READS = """
import os, resource, threading


def reads() -> None:
    # what a socket's recv or a decompressor does: a 1 MiB buffer asked for, 64 KiB filled,
    # the rest given back
    r, w = os.pipe()
    os.set_blocking(r, False)
    for _ in range(300):
        os.write(w, b"x" * 65536)
        data = os.read(r, 1 << 20)
        del data


def faults(job=None, advance=None) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    threads = [threading.Thread(target=reads) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""

SETUPS = {
    "defaults": "print(faults())",
    "keep_freed_heap": (
        "from inspect_tool.heap import keep_freed_heap\nassert keep_freed_heap()\nprint(faults())"
    ),
    "registry client": "import inspect_tool.registry.http\nprint(faults())",
    "forked worker": (
        "from inspect_tool.layers.forked import run_forked\n"
        "print(run_forked(faults, [0], [1], workers=1)[0])"
    ),
}


def faults(setup: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", READS + SETUPS[setup]], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.parametrize("setup", ["keep_freed_heap", "registry client", "forked worker"])
def test_reads_reuse_freed_heap_instead_of_faulting_it_back(setup: str) -> None:
    default = faults("defaults")
    assert default > 3000  # 600 reads of 64 KiB, each one's pages faulted in again
    assert faults(setup) < default / 4


def test_collection_paused_for_start_up_then_resumed_with_its_objects_set_aside() -> None:
    import gc

    from inspect_tool import heap

    assert gc.isenabled()
    heap.pause_collection()
    try:
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]  # what a start-up makes and keeps
        heap.resume_collection()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)  # never walked again
    finally:
        gc.unfreeze()
        gc.enable()
