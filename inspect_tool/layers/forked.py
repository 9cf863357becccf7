"""Jobs run in forked worker processes, for work that holds the interpreter (a layer's tar scan
beside its inflate and hashes): two processes keep two cores busy where two threads would take
turns at the GIL.

Each child is forked from the caller, so it holds the opened source as it is (no pickling of
trees, no interpreter start-up, no imports); it takes job numbers from a pipe, one at a time,
and sends each result back pickled. The biggest jobs go first, each to the child that is free.
Children report the bytes they have read through shared memory, which the caller turns into
progress. A child never touches the standard streams, leaves with ``os._exit`` and dies on
SIGINT, so nothing the caller's threads held at the fork (a progress bar's lock) can hold it.

A job a child could not finish (the child died, or raised something other than what the job
function returns) is run again in the caller, which then raises what it raises: so a worker
failure never changes a result, and an unexpected error keeps its traceback for ``--debug``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import selectors
import signal
import struct
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Generic, TypeVar

from inspect_tool.diskio import write_all
from inspect_tool.heap import keep_freed_heap

J = TypeVar("J")
R = TypeVar("R")

Progress = Callable[[int], None]
_COUNTER = struct.Struct("=q")
_LENGTH = struct.Struct("=Q")
_INDEX = struct.Struct("=i")
_POLL = 0.1  # seconds between progress updates while children work


def cpus() -> int:
    """The CPUs this process may run on (its affinity; the machine's count where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - every Linux has it
        return os.cpu_count() or 1


LAYER_WORKERS = 2  # processes that read an image's layers at once (fewer where fewer CPUs)


def usable_workers(asked: int) -> int:
    """How many children to fork for ``asked``: never more than the CPUs this process may use."""
    return max(1, min(asked, cpus()))


def run_forked(
    work: Callable[[J, Progress | None], R],
    jobs: Sequence[J],
    sizes: Sequence[int],
    *,
    workers: int,
    progress: Progress | None = None,
) -> list[R]:
    """``work(job, advance)`` for every job, in ``workers`` forked children; the results in the
    order of ``jobs``. ``sizes`` orders the hand-out (biggest first). ``progress`` receives
    the byte counts children pass to their ``advance``, in the caller's thread."""
    order = sorted(range(len(jobs)), key=lambda i: -sizes[i])
    results = _results(work, jobs, order, workers, progress)
    with contextlib.closing(results):
        return list(results)


def iter_forked(
    work: Callable[[J, Progress | None], R],
    jobs: Sequence[J],
    *,
    workers: int,
    progress: Progress | None = None,
) -> Generator[R, None, None]:
    """The same, the jobs handed out in their order and each result given as soon as it and
    every one before it are done, so the caller works on the first while children work on
    the next. Close the iterator (``contextlib.closing``) to stop the children early."""
    return _results(work, jobs, list(range(len(jobs))), workers, progress)


def _results(
    work: Callable[[J, Progress | None], R],
    jobs: Sequence[J],
    order: list[int],
    workers: int,
    progress: Progress | None,
) -> Generator[R, None, None]:
    done: dict[int, R] = {}
    following = 0  # the next result to give
    if jobs:
        pool = _Pool(work, jobs, min(workers, len(jobs)), progress)
        try:
            for _ in pool.run(order, done):
                while following in done:
                    yield done.pop(following)
                    following += 1
        finally:
            pool.close()
    for i in range(following, len(jobs)):
        if i in done:
            yield done.pop(i)
        else:  # its child failed: here, where an unexpected error shows itself
            yield work(jobs[i], progress)


class _Child:
    __slots__ = ("buffer", "busy", "jobs", "pid", "results", "slot")

    def __init__(self, pid: int, jobs: int, results: int, slot: int) -> None:
        self.pid = pid
        self.jobs = jobs  # write end: job numbers to the child
        self.results = results  # read end: pickled results from the child
        self.slot = slot
        self.busy: int | None = None  # the job it has
        self.buffer = bytearray()


class _Pool(Generic[J, R]):
    def __init__(
        self,
        work: Callable[[J, Progress | None], R],
        jobs: Sequence[J],
        workers: int,
        progress: Progress | None,
    ) -> None:
        self.work = work
        self.jobs = jobs
        self.progress = progress
        self.counters = mmap.mmap(-1, _COUNTER.size * workers)  # shared with the children
        keep_freed_heap()  # the children's reads reuse their heap (inherited through fork)
        self.reported = 0
        self.children: list[_Child] = []
        for slot in range(workers):
            child = self._fork(slot)
            if child is not None:
                self.children.append(child)

    def _fork(self, slot: int) -> _Child | None:
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:  # no process may be made here: the caller does the work
            for fd in (job_read, job_write, result_read, result_write):
                os.close(fd)
            return None
        if pid == 0:  # pragma: no cover - the child; its work is checked through the parent
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for other in self.children:
                    os.close(other.jobs)
                    os.close(other.results)
                os.close(job_write)
                os.close(result_read)
                self._serve(job_read, result_write, slot)
                status = 0
            finally:
                os._exit(status)
        os.close(job_read)
        os.close(result_write)
        return _Child(pid, job_write, result_read, slot)

    # -- in the child ---------------------------------------------------------------------
    def _serve(self, job_read: int, result_write: int, slot: int) -> None:  # pragma: no cover
        counters = self.counters
        offset = slot * _COUNTER.size
        total = 0

        def advance(amount: int) -> None:
            nonlocal total
            total += amount
            _COUNTER.pack_into(counters, offset, total)

        while True:
            raw = _read_exactly(job_read, _INDEX.size)
            if raw is None:
                return
            (index,) = _INDEX.unpack(raw)
            try:
                payload = pickle.dumps(
                    (True, self.work(self.jobs[index], advance)), pickle.HIGHEST_PROTOCOL
                )
            except BaseException:
                payload = pickle.dumps((False, None))
            write_all(result_write, _LENGTH.pack(len(payload)) + payload)

    # -- in the caller --------------------------------------------------------------------
    def run(self, order: list[int], done: dict[int, R]) -> Iterator[None]:
        """Hand out ``order``, put each result in ``done``; yields after each wait."""
        waiting = list(reversed(order))  # pop() takes the first
        selector = selectors.DefaultSelector()
        try:
            for child in self.children:
                if waiting:
                    self._hand(child, waiting.pop())
                    selector.register(child.results, selectors.EVENT_READ, child)
            while any(child.busy is not None for child in self.children):
                for key, _ in selector.select(_POLL):
                    child = key.data
                    if not self._receive(child, done):
                        selector.unregister(child.results)
                        continue
                    if child.busy is None and waiting:
                        self._hand(child, waiting.pop())
                self._report()
                yield
        finally:
            selector.close()
        self._report()

    def _hand(self, child: _Child, index: int) -> None:
        try:
            write_all(child.jobs, _INDEX.pack(index))
        except OSError:  # the child is gone: the job is left for the caller
            return
        child.busy = index

    def _receive(self, child: _Child, done: dict[int, R]) -> bool:
        """Read what the child sent; False when it has gone (its job left undone)."""
        try:
            data = os.read(child.results, 1 << 20)
        except OSError:
            data = b""
        if not data:
            child.busy = None
            return False
        child.buffer += data
        while len(child.buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(child.buffer)
            if len(child.buffer) < _LENGTH.size + length:
                break
            payload = bytes(child.buffer[_LENGTH.size : _LENGTH.size + length])
            del child.buffer[: _LENGTH.size + length]
            try:
                ok, value = pickle.loads(payload)
            except Exception:
                ok, value = False, None
            if ok and child.busy is not None:
                done[child.busy] = value
            child.busy = None
        return True

    def _report(self) -> None:
        if self.progress is None:
            return
        total = sum(
            _COUNTER.unpack_from(self.counters, child.slot * _COUNTER.size)[0]
            for child in self.children
        )
        if total > self.reported:
            self.progress(total - self.reported)
            self.reported = total

    def close(self) -> None:
        for child in self.children:
            for fd in (child.jobs, child.results):
                with contextlib.suppress(OSError):
                    os.close(fd)
        for child in self.children:
            if child.busy is not None:  # interrupted: nobody wants its result
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
        self.children = []
        self.counters.close()


def _read_exactly(fd: int, size: int) -> bytes | None:  # pragma: no cover - in the child
    data = b""
    while len(data) < size:
        piece = os.read(fd, size - len(data))
        if not piece:
            return None
        data += piece
    return data
