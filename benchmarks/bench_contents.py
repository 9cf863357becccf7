"""Benchmark `dockscope packages` and `dockscope secrets` on the ~1 GiB image against one read
of its layers (`dockscope efficiency`: every layer streamed and applied once).

Run with `.venv/bin/python benchmarks/bench_contents.py`; see benchmarks/README.md. Exit
status: 0 when every target is met, 1 otherwise (the reasons are printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_images import ensure_images
from harness import Report, find_cli, finish, fmt_runs, interleaved, median, run_child, warm

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "contents-results.json"
TARGET_RATIO = 1.3  # the issue's: packages and secrets against one read of the layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cli", help="the dockscope command (default: the venv's)")
    args = parser.parse_args()
    cli = find_cli(args.cli)
    if cli is None:
        print("no working dockscope command", file=sys.stderr)
        return 1
    ensure_images(args.out)
    image = args.out / "big-oci.tar"
    warm([image])
    report = Report.begin(image=str(image), reps=args.reps)
    cpu: dict[str, list[float]] = {}

    def command(name: str) -> float:
        run = run_child([*cli, name, "--json", str(image)], stdout=args.out / f"{name}.json")
        if run.returncode not in (0, 1):  # secrets: 1 when it finds any
            raise SystemExit(f"dockscope {name} failed: {run.stderr.decode()[-500:]}")
        cpu.setdefault(name, []).append(run.cpu_seconds)
        return run.seconds

    times = interleaved(
        {name: (lambda n=name: command(n)) for name in ("efficiency", "packages", "secrets")},
        args.reps,
    )
    base, base_cpu = median(times["efficiency"]), median(cpu["efficiency"])
    report.add("efficiency --json (one read of the layers)", fmt_runs(times["efficiency"]))
    for name in ("packages", "secrets"):
        ratio = median(times[name]) / base
        report.add(f"{name} --json", fmt_runs(times[name]))
        report.add(
            f"{name} ÷ one read (wall, medians)",
            f"{ratio:.2f}×",
            f"≤ {TARGET_RATIO}×",
            ratio <= TARGET_RATIO,
        )
        report.add(f"{name} ÷ one read (CPU time, medians)", f"{median(cpu[name]) / base_cpu:.2f}×")
    report.data["times"] = times
    report.data["cpu"] = cpu
    return finish(report, args.out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
