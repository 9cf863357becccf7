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

And the process's heap is kept for reuse (``heap.keep_freed_heap``): each of those reads
makes a new buffer of up to 1 MiB, which glibc would otherwise fault in again every time.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

from inspect_tool.heap import keep_freed_heap  # noqa: E402

READ_SIZE = 1 << 20


def _larger_reads() -> None:
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:
        return
    current = getattr(HTTP11Connection, "READ_NUM_BYTES", None)
    if isinstance(current, int) and current < READ_SIZE:
        HTTP11Connection.READ_NUM_BYTES = READ_SIZE


_larger_reads()
keep_freed_heap()

__all__ = ["READ_SIZE", "httpx"]
