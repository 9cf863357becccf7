"""httpx as the registry client uses it; import httpx from here.

Two adjustments, both for speed and neither visible in behaviour:

- httpx's package imports its own command line (click, rich, pygments: ~30 ms at every
  registry command's start) whenever click is installed, which typer's dependencies make
  likely. dockscope never calls it; an empty entry for the module makes that import fail as
  if click were missing, a case httpx handles.
- httpcore reads a response 64 KiB at a time, and each read costs tens of microseconds of
  Python (h11's events, httpx's decoders) besides the copy: a 1 GiB pull made 16,000 of them,
  and the threads downloading layers spent their time handing the GIL to each other. A read
  now asks for up to 1 MiB; the kernel gives what the socket holds, so small answers are
  unaffected. (A 666 MiB pull from a local registry: 1.1-1.3 s with 1.0 s of system time,
  then 0.8 s with 0.35 s.) It is a class attribute of httpcore's HTTP/1.1 connection, set
  only where the installed version has it.

And one for the process's memory: each of those reads makes a new buffer of up to 1 MiB,
shrunk to what arrived. glibc serves a buffer that large from a fresh mapping or from heap it
then hands back to the kernel, so the memory of every read is page-faulted in again: ~37,000
faults in a 666 MiB pull. On this project's virtual machines, whose balloon takes back memory
the guest has freed, those faults cost 0.3-1.5 s of system time in most pulls inside
`bench_pull.py` (pull 0.87-1.12x skopeo's time over four runs). ``keep_freed_heap`` has glibc
serve buffers up to 4 MiB from the heap and keep up to 64 MiB of freed heap for reuse
(``mallopt``): ~12,000 faults, every pull 0.77-0.84 s (0.67x). Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

READ_SIZE = 1 << 20


def _larger_reads() -> None:
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:
        return
    current = getattr(HTTP11Connection, "READ_NUM_BYTES", None)
    if isinstance(current, int) and current < READ_SIZE:
        HTTP11Connection.READ_NUM_BYTES = READ_SIZE


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEPT_HEAP = 64 << 20  # freed heap kept for reuse before any is given back
HEAP_BUFFERS = 4 << 20  # buffers up to this size come from the heap, not a fresh mapping


def keep_freed_heap() -> bool:
    """Tune glibc's allocator as above; False where there is no glibc ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_TRIM_THRESHOLD, KEPT_HEAP)) and bool(
        mallopt(M_MMAP_THRESHOLD, HEAP_BUFFERS)
    )


_larger_reads()
keep_freed_heap()

__all__ = ["READ_SIZE", "httpx"]
