"""What every benchmark shares: the child runner, the report of targets, the end of a run.

- ``run_child``: one command to completion, its wall time and its peak RSS, measured one of two
  ways: ``wait4``'s ``ru_maxrss`` (the child and the children it waited for; Linux keeps a peak
  across exec, so a child forked from a big parent reports at least the parent's RSS, which
  ``parent_rss_bytes`` records) or the child's ``VmHWM`` from ``/proc``, sampled by a thread
  (the child alone, nothing inherited).
- ``Report``: rows of measure, value, target and verdict (PASS, FAIL or info) plus the data
  written as JSON; ``print_table`` prints the rows.
- ``finish``: the table, the results file, the list of missed targets and the exit status
  (1 when any target is missed, else 0).
- The options every benchmark takes (``arguments``, ``big_image_arguments``), the CLI under
  test (``find_cli``, ``require_cli``), warm caches (``warm``, ``warm_inputs``), round-robin
  repetitions (``interleaved`` of ``timed`` jobs) and the formats of times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

REPO = Path(__file__).resolve().parent.parent

MIB = 1 << 20
WAIT4 = "wait4"  # peak RSS: ru_maxrss of os.wait4 (the child and its waited-for children)
VMHWM = "vmhwm"  # peak RSS: the child's VmHWM, sampled from /proc/PID/status


@dataclass
class Run:
    """One child process: wall time, exit status, output, peak RSS."""

    seconds: float
    returncode: int
    stdout: bytes  # empty when stdout went to a file (stdout_path)
    stderr: bytes
    maxrss_bytes: int  # peak RSS, measured as run_child was asked (WAIT4 or VMHWM)
    started: float = 0.0  # time.time() just before the fork
    ended: float = 0.0  # time.time() just after wait4
    cpu_seconds: float = 0.0  # user + system time of the process and the children it waited for
    parent_rss_bytes: int = 0  # this process's RSS when it started the child
    stdout_path: Path | None = None
    stdout_size: int = 0
    # VMHWM: the sum of the peaks of the child and every process below it (WAIT4: as maxrss)
    tree_rss_bytes: int = 0


def self_rss() -> int:
    """This process's resident set now (not its peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def run_child(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    stdout: Path | None = None,
    peak: str = WAIT4,
    interval: float = 0.02,
) -> Run:
    """Run ``cmd`` to completion, stdin from /dev/null, output kept (or, with ``stdout``, written
    to that file: a million lines do not belong in this process). ``peak`` chooses how the peak
    RSS is measured (``WAIT4`` or ``VMHWM``, sampled every ``interval`` seconds)."""
    if peak not in (WAIT4, VMHWM):
        raise ValueError(f"peak must be {WAIT4!r} or {VMHWM!r}, not {peak!r}")
    parent = self_rss()
    with (
        open(stdout, "wb") if stdout is not None else tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        sampler = _HwmSampler(proc.pid, interval) if peak == VMHWM else None
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        ended = time.time()
        hwm, tree_hwm = sampler.stop() if sampler is not None else (0, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return Run(
            seconds=seconds,
            returncode=proc.returncode,
            stdout=_read_all(out) if stdout is None else b"",
            stderr=err.read(),
            maxrss_bytes=hwm if sampler is not None else usage.ru_maxrss * 1024,
            tree_rss_bytes=tree_hwm if sampler is not None else usage.ru_maxrss * 1024,
            started=started,
            ended=ended,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            parent_rss_bytes=parent,
            stdout_path=stdout,
            stdout_size=stdout.stat().st_size if stdout is not None else 0,
        )


def _read_all(out: BinaryIO) -> bytes:
    out.seek(0)
    return out.read()


class _HwmSampler:
    """A thread reading the VmHWM of the child, and of every process below it, every
    ``interval`` seconds until ``stop``: ``peak`` is the child's own, ``tree_peak`` the sum of
    each process's (an upper bound of what the tree held at once: a forked worker counts the
    pages it shares with its parent again)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    @property
    def peak(self) -> int:
        return self.peaks.get(self.pid, 0)

    @property
    def tree_peak(self) -> int:
        return sum(self.peaks.values())

    def _sample(self) -> None:
        while not self.done.wait(self.interval):
            pending = [self.pid]
            while pending:
                pid = pending.pop()
                hwm = _vmhwm(pid)
                if hwm is None:
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                pending += _children(pid)

    def stop(self) -> tuple[int, int]:
        self.done.set()
        self.thread.join()
        return self.peak, self.tree_peak


def _vmhwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (Linux's /proc/PID/task/TID/children)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listed:
                found += [int(n) for n in listed.read().split()]
    except (OSError, ValueError):
        pass
    return found


# -- the report --------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    value: str
    target: str
    verdict: str  # PASS, FAIL or info
    why: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def begin(cls, **environment: Any) -> Report:
        """A report stamped with the time and the machine: CPUs, Python, platform, the extra
        ``environment`` keys, the load average now (``finish`` adds the one at the end)."""
        report = cls()
        report.data["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        report.data["environment"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **environment,
            "loadavg_at_start": list(os.getloadavg()),
        }
        return report

    def add(self, measure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append(Row(measure, value, target or "-", verdict))

    def fail(self, measure: str, value: str, target: str, why: str) -> None:
        self.rows.append(Row(measure, value, target, "FAIL", why))


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, k)) for r in rows) for k in ("measure", "value", "target")]
    head = ("measure", "value", "target", "result")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, [*widths, 6], strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        cells = (r.measure, r.value, r.target)
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + r.verdict)


def finish(report: Report, out: Path, results: str) -> int:
    """Print the table, write ``out/results`` and return the exit status: 1 when any target
    was missed (listed), else 0."""
    print()
    print_table(report.rows)
    failed = [r for r in report.rows if r.verdict == "FAIL"]
    report.data["environment"]["loadavg_at_end"] = list(os.getloadavg())
    report.data["rows"] = [r.__dict__ for r in report.rows]
    report.data["ok"] = not failed
    report.data["failures"] = [
        f"{r.measure}: {r.value} (target {r.target}) {r.why}" for r in failed
    ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / results
    path.write_text(json.dumps(report.data, indent=2) + "\n")
    print(f"\nresults written to {path}")
    if failed:
        print("\nFAILED targets:")
        for r in failed:
            print(
                f"  - {r.measure}: {r.value}, target {r.target}" + (f" ({r.why})" if r.why else "")
            )
        return 1
    print("all targets met")
    return 0


# -- helpers -----------------------------------------------------------------------------------


def arguments(doc: str | None, out: Path) -> argparse.ArgumentParser:
    """A parser with the options of every benchmark: ``--out`` (default ``out``) and ``--cli``;
    its description is the first line of ``doc`` (the script's docstring)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--out", type=Path, default=out, help="output and cache directory")
    ap.add_argument("--cli", help="command to run dockscope (default: venv script or -m)")
    return ap


def big_image_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the ~1 GiB image (``bench_images.ensure_images``): benchmarks given the
    same values share its cache."""
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the big image (testing)")
    ap.add_argument("--gzip-level", type=int, default=6, choices=range(1, 10))
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--workers", type=int, default=2, help="generator processes")
    ap.add_argument("--regenerate", action="store_true")


def require_cli(report: Report, explicit: str | None) -> list[str] | None:
    """``find_cli``, recorded in the report: ``data["cli"]`` when found, else a failed row.
    The repository's packages are compiled to bytecode first (``compile_package``)."""
    report.data["bytecode"] = compile_package()
    cli = find_cli(explicit)
    if cli is None:
        report.fail("dockscope CLI", "not found", "runs", "no working dockscope CLI found")
    else:
        report.data["cli"] = cli
        print(f"CLI: {shlex.join(cli)}", flush=True)
    return cli


def compile_package() -> bool:
    """Compile inspect_tool and runtime_lab to bytecode, as pip does for an installed package
    (``make bytecode``): the venv's editable install would otherwise, under
    PYTHONDONTWRITEBYTECODE=1, compile every module at every start, and the benchmarks would
    time the compiler. Files already compiled are skipped. Then the dataclasses' generated
    code, kept beside it (``inspect_tool/classcode.py``). False if either failed."""
    packages = [str(REPO / name) for name in ("inspect_tool", "runtime_lab")]
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *packages], capture_output=True, check=False
    )
    warmed = subprocess.run(
        [sys.executable, "-m", "inspect_tool.classcode"], cwd=REPO, capture_output=True, check=False
    )
    return done.returncode == 0 and warmed.returncode == 0


def find_cli(explicit: str | None) -> list[str] | None:
    """The dockscope command: ``explicit`` if given, else ``dockscope`` beside the running
    interpreter, else ``python -m inspect_tool``; the first that answers ``--help``."""
    candidates: list[list[str]] = []
    if explicit:
        candidates.append(shlex.split(explicit))
        return _first_working(candidates)
    script = Path(sys.executable).with_name("dockscope")  # not resolved: venv python is a link
    if script.is_file():
        candidates.append([str(script)])
    candidates.append([sys.executable, "-m", "inspect_tool"])
    return _first_working(candidates)


def _first_working(candidates: list[list[str]]) -> list[str] | None:
    for cmd in candidates:
        try:
            probe = subprocess.run([*cmd, "--help"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cmd
    return None


def warm(paths: list[Path]) -> int:
    """Read every byte once so that all timed runs start from the page cache."""
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(8 * MIB):
                total += len(chunk)
    return total


def warm_inputs(paths: list[Path], note: str = "") -> dict[str, Any]:
    """``warm`` with a word first: how much is read (and ``note``), and a warning when the
    inputs come near the memory available (the page cache cannot hold them all). Returns
    what the report keeps: bytes read and memory available."""
    size = sum(p.stat().st_size for p in paths)
    avail = mem_available()
    print(
        f"warming the page cache: reading all {len(paths)} inputs ({size / MIB:.0f} MiB) once"
        + (f"; {note}" if note else ""),
        flush=True,
    )
    if avail is not None and size > 0.7 * avail:
        print(f"WARNING: {size / MIB:.0f} MiB of inputs vs {avail / MIB:.0f} MiB available memory")
    warm(paths)
    return {"bytes_read": size, "mem_available": avail}


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def median(values: list[float]) -> float:
    return statistics.median(values)


def interleaved(runs: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Call each function `reps` times, round-robin, so that drift hits all of them alike; each
    round starts one further along, so that no job always follows the same one (what a run
    leaves behind, such as the kernel still freeing the last one's output, is paid by whichever
    runs next: a pull that always followed skopeo's copy paid ~1 s of system time more). Each
    call starts with nothing dirty in the page cache (``os.sync`` first, untimed): the
    kernel writes a run's output back in the background, on the same two cores, and without
    it the next run paid for the gigabyte the last one wrote (bench_unpack, five runs each:
    unpack 6.5-10.4 s and GNU tar 8.3-9.8 s without it, 6.0-9.0 s and 6.7-9.7 s with it; the
    rest of the spread is this virtual machine's)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs.items())
    for round_ in range(reps):
        shift = round_ % len(order) if order else 0
        for name, fn in order[shift:] + order[:shift]:
            os.sync()
            times[name].append(fn())
    return times


def timed(
    cmd: list[str],
    kept: list[Run],
    *,
    check: Callable[[Run], None] | None = None,
    stdout: Path | None = None,
) -> Callable[[], float]:
    """A job for ``interleaved``: run ``cmd`` (output to ``stdout`` if given), keep its Run in
    ``kept``, hand it to ``check`` (which notes what is wrong) and return its wall time."""

    def job() -> float:
        run = run_child(cmd, stdout=stdout)
        kept.append(run)
        if check is not None:
            check(run)
        return run.seconds

    return job


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.2f} s"


def fmt_runs(times: list[float]) -> str:
    """Median, with the spread of the runs."""
    return f"{fmt_s(median(times))} [{min(times):.2f}-{max(times):.2f}]"


def fmt_mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


# -- file systems that do not reuse a freed inode at once ----------------------------------------

# ext4 without a journal does not reuse an inode freed less than 60 s ago, 360 s while the
# inode-table block holding it is dirty (fs/ext4/ialloc.c, recently_deleted): every new file
# scans past them, in system time. This machine's root file system is one. Right after a tree
# of 110,000 files was removed, GNU tar extracting the same 12 layers took 16.6 s and then
# 27.0 s (system time 13.5 and 23.8 s) against 8.3 s (4.3 s) on a file system with nothing
# removed lately: a benchmark that clears the last run's tree before the next one measures
# that scan, paid by whichever tool runs next. So the trees of timed runs are kept until the
# end (``Trees``), and a benchmark waits out the window left by an earlier removal.
INODE_REUSE_SECONDS = 360
REMOVED_STAMP = ".trees-removed"  # in a benchmark's output directory: when trees were removed


def journal_less_ext4(path: Path) -> bool:
    """Whether ``path`` is on an ext4 file system without a journal."""
    dev = os.stat(path).st_dev
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[2] != wanted:
                    continue
                after = fields[fields.index("-") + 1 :]
                if after[0] != "ext4":
                    return False
                task = Path("/sys/fs/ext4", os.path.basename(after[1]), "journal_task")
                return task.read_text().strip() == "<none>"
    except (OSError, ValueError, IndexError):
        pass
    return False


class Trees:
    """Fresh directories for runs that create many files (``new``), all removed by ``remove``
    at the end; the time of that removal is kept in ``out`` for the next benchmark, which
    ``settle`` makes wait while those inodes are not reused."""

    def __init__(self, base: Path, out: Path) -> None:
        self.base, self.out = base, out
        self.count = 0
        self.settle()
        if base.exists():  # an interrupted run's trees
            self.remove()
            self.settle()
        base.mkdir(parents=True)

    def new(self, name: str) -> Path:
        self.count += 1
        return self.base / f"{self.count:03d}-{name}"

    def remove(self) -> None:
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], check=True)
        os.sync()
        (self.out / REMOVED_STAMP).write_text(f"{time.time()}\n")

    def settle(self) -> None:
        """Wait out the window of the last removal, on a journal-less ext4 (else at once)."""
        try:
            removed = float((self.out / REMOVED_STAMP).read_text())
        except (OSError, ValueError):
            return
        left = removed + INODE_REUSE_SECONDS - time.time()
        probe = self.base if self.base.exists() else self.out
        if left > 0 and journal_less_ext4(probe):
            print(
                f"waiting {left:.0f} s: ext4 without a journal does not reuse the inodes freed "
                f"{time.time() - removed:.0f} s ago yet, and every new file would scan past them",
                flush=True,
            )
            time.sleep(left)
