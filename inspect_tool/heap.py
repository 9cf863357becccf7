"""The process's heap kept for reuse rather than page-faulted in again.

Reading a blob, a layer or a response, dockscope makes a new buffer of up to 1 MiB per read
(a socket's ``recv``, a decompressor's output), shrunk to what arrived. glibc serves buffers
that large from a fresh mapping, or from heap it hands back to the kernel once freed, so the
memory of every read is faulted in again: ~37,000 page faults in a 666 MiB ``pull``. On this
project's virtual machines, whose balloon takes back memory the guest has freed, those faults
cost 0.3-1.5 s of system time in most pulls inside ``bench_pull.py`` (0.87-1.12x skopeo's
time over four runs). With glibc told to serve buffers up to 4 MiB from the heap and keep up
to 64 MiB of freed heap (``mallopt``): ~12,000 faults, pull 0.67-0.73x skopeo in four runs,
and ``verify``'s workers ~4 % less CPU (benchmarks/README.md, "Memory"). The bound is 8 MiB:
a decompressor's output reaches ``decompress.MAX_OUTPUT`` (4 MiB) plus the bytes object's
header, which a 4 MiB bound sent to fresh mappings (unpack of the 1 GiB benchmark image:
280,000 minor faults, 122,000 with 8 MiB, 0.5 s less system time).

``no_cycle_collection`` pauses Python's cycle collector around work that builds a large
structure without cycles.

``keep_freed_heap`` is called where such reads are many: the registry's HTTP client
(``registry/http.py``) and before forking workers (``layers/forked.py``; a child inherits the
setting). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEPT_HEAP = 64 << 20  # freed heap kept for reuse before any is given back to the kernel
HEAP_BUFFERS = 8 << 20  # buffers up to this size come from the heap, not a fresh mapping

_done: bool | None = None


def keep_freed_heap() -> bool:
    """Tune glibc's allocator as above, once per process (forked children inherit it); False
    where there is no glibc ``mallopt``."""
    global _done
    if _done is None:
        _done = _mallopt()
    return _done


def _mallopt() -> bool:
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_TRIM_THRESHOLD, KEPT_HEAP)) and bool(
        mallopt(M_MMAP_THRESHOLD, HEAP_BUFFERS)
    )


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused: for work that builds a large structure without
    cycles (the planned tree of an image: a TarMember per entry), where each collection would
    walk every object made so far, for nothing (~0.4 s of a 1 GiB, 110,000-file unpack).
    Forked workers inherit the pause. Reference counting frees everything as before."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def pause_collection() -> None:
    """The cycle collector off while a command starts: its imports make tens of thousands of
    objects that live as long as the process, and each collection of the young generation
    walks those made since the last (18 collections, ~3 ms of a warm ``run``'s start)."""
    import gc

    gc.disable()


def resume_collection() -> None:
    """The cycle collector on again, what start-up made set aside for good (``gc.freeze``):
    from here on a collection walks only what the command makes."""
    import gc

    gc.freeze()
    gc.enable()
