"""Benchmark deep paths: ``unpack``, ``export`` and ``ls -R`` up to the 4,095-byte path bound,
and how fast a deeper path is refused.

Run with `.venv/bin/python benchmarks/bench_deep_paths.py`; see benchmarks/README.md. Each
image holds one file below N directories ``a/`` (a PAX path). Exit status: 0 when every target
is met, 1 otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import VMHWM, run_child  # noqa: E402

from tests.support.images import oci_layout  # noqa: E402
from tests.support.tar_entries import build_layer, file_entry  # noqa: E402

DEEPEST = 2045  # "/" + "a/" * 2045 + "file": 4,095 bytes
ALLOWED = (500, 1000, DEEPEST)
REFUSED = (20_000, 80_000)
TARGET_SECONDS = 5.0  # any command at the deepest allowed path, or any refusal
TARGET_PEAK = 150 * 10**6  # bytes


def image(root: Path, levels: int) -> Path:
    path = root / f"deep-{levels}"
    name = "/".join(["a"] * levels) + "/file"
    oci_layout(path, [build_layer([file_entry(name, b"deep\n", pax_path=True)])])
    return path


def measure(args: list[str]) -> tuple[int, float, int]:
    """Exit status, seconds and peak RSS (VmHWM, polled) of ``dockscope ARGS``."""
    run = run_child([sys.executable, "-m", "inspect_tool", *args], peak=VMHWM, interval=0.01)
    return run.returncode, run.seconds, run.maxrss_bytes


def main() -> int:
    failures = []
    print(f"{'command':<10} {'levels':>7} {'exit':>4} {'seconds':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for levels in (*ALLOWED, *REFUSED):
            source = image(root, levels)
            dest = root / f"dest-{levels}"
            commands = {
                "ls -R": ["ls", "-R", str(source)],
                "export": ["export", str(source), "-o", os.devnull],
                "unpack": ["unpack", str(source), str(dest)],
            }
            for label, args in commands.items():
                code, seconds, peak = measure(args)
                subprocess.run(["rm", "-rf", str(dest)], check=True)  # any depth
                print(f"{label:<10} {levels:>7} {code:>4} {seconds:>8.2f} {peak / 1e6:>8.0f}")
                expected = 0 if levels <= DEEPEST else 3
                if code != expected:
                    failures.append(f"{label} at {levels} levels exited {code}, not {expected}")
                if seconds > TARGET_SECONDS or peak > TARGET_PEAK:
                    failures.append(f"{label} at {levels} levels: {seconds:.1f} s, {peak} B")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
