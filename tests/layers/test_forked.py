"""Jobs in forked workers (layers/forked.py): the same results as in one process, in the jobs'
order, progress counted, a child's failure repaired in the caller, no child left behind; and
verify through them gives the findings it gives in one process."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inspect_tool.analyze.verify import verify
from inspect_tool.layers import forked
from inspect_tool.layers.forked import iter_forked, run_forked, usable_workers
from inspect_tool.layers.hashing import hash_layer
from inspect_tool.sources import open_source

from ..image.test_real_formats import estargz_layer

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
PARENT = os.getpid()

Advance = Callable[[int], None] | None


def square(job: int, advance: Advance) -> tuple[int, int]:
    if advance is not None:
        advance(job)
    return job * job, os.getpid()


def children() -> set[int]:
    """This process's children now (other tests' servers among them)."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as listed:
            found |= {int(n) for n in listed.read().split()}
    return found


@pytest.fixture(autouse=True)
def no_child_left_behind() -> Iterator[None]:
    """Every test here: the children it made are gone (reaped) when it ends."""
    before = children()
    yield
    assert children() <= before


def test_results_come_back_in_the_jobs_order_from_the_children() -> None:
    jobs = list(range(1, 21))
    seen: list[int] = []
    results = run_forked(square, jobs, jobs, workers=2, progress=seen.append)
    assert [value for value, _ in results] == [j * j for j in jobs]
    pids = {pid for _, pid in results}
    assert PARENT not in pids and 1 <= len(pids) <= 2  # done in children, not here
    assert sum(seen) == sum(jobs)  # every byte the children counted reached the caller


def test_a_child_that_dies_leaves_its_job_to_the_caller() -> None:
    def dies_on_three(job: int, advance: Advance) -> tuple[int, int]:
        if job == 3 and os.getpid() != PARENT:
            os._exit(7)
        return square(job, None)

    results = run_forked(dies_on_three, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], workers=2)
    assert [value for value, _ in results] == [1, 4, 9, 16, 25]
    assert results[2][1] == PARENT


def test_every_child_dying_still_gives_every_result() -> None:
    def always_dies(job: int, advance: Advance) -> tuple[int, int]:
        if os.getpid() != PARENT:
            os._exit(1)
        return square(job, None)

    results = run_forked(always_dies, [4, 5, 6], [4, 5, 6], workers=2)
    assert [value for value, pid in results] == [16, 25, 36]
    assert {pid for _, pid in results} == {PARENT}


def test_an_unexpected_error_is_raised_in_the_caller_with_its_own_traceback() -> None:
    def broken(job: int, advance: Advance) -> int:
        if job == 2:
            raise ValueError(f"job {job} in {os.getpid()}")
        return job

    with pytest.raises(ValueError, match=f"job 2 in {PARENT}$"):
        run_forked(broken, [1, 2, 3], [1, 1, 1], workers=2)


def test_a_result_that_cannot_be_pickled_is_made_again_here() -> None:
    def unpicklable(job: int, advance: Advance) -> object:
        return (lambda: job) if os.getpid() != PARENT else job

    assert run_forked(unpicklable, [1, 2], [1, 2], workers=2) == [1, 2]


def test_when_no_process_can_be_made_the_caller_does_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(forked.os, "fork", refuse)
    results = run_forked(square, [1, 2, 3], [1, 2, 3], workers=2)
    assert [value for value, _ in results] == [1, 4, 9]
    assert {pid for _, pid in results} == {PARENT}


def test_workers_never_exceed_the_cpus_this_process_may_use() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert usable_workers(64) == cpus
    assert usable_workers(1) == 1
    assert usable_workers(0) == 1


def test_an_estargz_layers_hash_crosses_a_process_boundary_whole() -> None:
    """The TOC capture holds a hash object: what a worker sends keeps its digest."""
    import io

    blob, _, toc_digest = estargz_layer({"app/a": b"a" * 5000, "app/b": b"b" * 70})
    here = hash_layer(io.BytesIO(blob))
    assert here.estargz is not None and here.scan is not None and here.scan.tocs
    there = pickle.loads(pickle.dumps(here))
    assert there.scan.tocs[0].digest == here.scan.tocs[0].digest == toc_digest
    assert there.estargz == here.estargz
    assert there.scan.tocs[0].data == here.scan.tocs[0].data


@pytest.mark.parametrize(
    "name",
    [
        "oci-layout",
        "docker-archive-legacy.tar",
        "docker-archive-v25.tar",
        "tampered/layer-byte-flipped.tar",
        "tampered/diff-id-mismatch.tar",
        "tampered/missing-blob",
        "tampered/wrong-size",
    ],
)
def test_verify_in_workers_finds_what_one_process_finds(name: str) -> None:
    counted: list[int] = []

    class Counting:
        def start(self, total: int) -> None:
            counted.append(-total)

        def advance(self, amount: int) -> None:
            counted.append(amount)

    source = open_source(SAMPLES / name)
    try:
        assert source.tree.forked_reads
        alone = verify(source, workers=1)
        together = verify(source, workers=2, progress=Counting())
    finally:
        source.close()
    assert together.findings == alone.findings
    assert any(not f.ok for f in alone.findings) == name.startswith("tampered/")
    assert counted[0] < 0 and sum(counted[1:]) == -counted[0]  # every byte counted once


def test_iter_gives_each_result_in_order_while_the_next_are_worked_on() -> None:
    def slow_first(job: int, advance: Advance) -> tuple[int, float]:
        import time

        if job == 0:
            time.sleep(0.3)
        return job, time.monotonic()

    import time

    results = iter_forked(slow_first, list(range(6)), workers=2)
    first, _ = next(results)
    given = time.monotonic()
    rest = list(results)
    assert first == 0 and [job for job, _ in rest] == [1, 2, 3, 4, 5]
    # the other child finished jobs 1-5 while job 0 slept: they were done before 0 was given
    assert all(finished <= given for _, finished in rest)


def test_closing_iter_early_stops_its_children() -> None:
    import contextlib
    import time

    def sleepy(job: int, advance: Advance) -> int:
        if job > 1 and os.getpid() != PARENT:
            time.sleep(30)
        return job

    started = time.monotonic()
    results = iter_forked(sleepy, [1, 2, 3], workers=2)
    with contextlib.closing(results):
        assert next(results) == 1  # a child is still asleep on job 2, the other on job 3
    assert time.monotonic() - started < 10  # they were killed, not awaited
