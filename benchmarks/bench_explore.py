"""Benchmark `dockscope explore` on the ~1 GiB image: time to first paint, time until the tree
and the efficiency figures are ready, opening directories, and peak memory, each against
`dockscope ls -R` on the same image measured in the same run (the floor: one pass over every
layer, the merged tree in memory).

Run with `.venv/bin/python benchmarks/bench_explore.py` (`--scale 0.1` for a quick look); see
benchmarks/README.md. Exit status: 0 when every target is met, 1 otherwise.

The explorer runs headless (Textual's `App.run_test`, as the tests drive it) in a child
process of its own (`--child IMAGE`), which reports its times as one JSON line; its peak RSS
is wait4's, like the floor's.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the heavy imports: they are part of the first paint

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "explore-results.json"
TARGET_PAINT_RATIO = 0.25  # first paint / ls -R
# first paint / `dockscope inspect --json` (the same metadata read, and printed): what Textual's
# import and the first frame add
TARGET_PAINT_INSPECT_RATIO = 4.0
TARGET_READY_RATIO = 2.5  # tree and efficiency ready / ls -R (one pass does both)
TARGET_OPEN_S = 1.0  # opening the root and every top directory, once the tree is ready
TARGET_RSS_RATIO = 5.0  # peak RSS / ls -R's (the tree keeps every version, efficiency its own)


def child(image: Path) -> None:
    """Run the explorer headless on ``image``; print its times as JSON."""
    import asyncio

    from inspect_tool.explore.app import ExploreApp, Opened
    from inspect_tool.sources import ImageSelection, open_image

    async def main() -> dict[str, float]:
        source, selected = open_image(image, ImageSelection())
        with source:
            app = ExploreApp(Opened(source, selected))
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.pause()
                assert app.painted_at is not None  # set once the first frame is drawn
                paint = app.painted_at - START
                await app.workers.wait_for_complete()
                await pilot.pause()
                ready = time.perf_counter() - START
                assert app.tree_model is not None and app.efficiency is not None
                tree = app.query_one("#files")
                begin = time.perf_counter()
                for node in list(tree.root.children):  # type: ignore[attr-defined]
                    node.expand()
                await pilot.pause()
                opened = time.perf_counter() - begin
                entries = app.tree_model.entries
        return {"paint": paint, "ready": ready, "open": opened, "entries": entries}

    print(json.dumps(asyncio.run(main())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="image size (1.0: ~1 GiB)")
    parser.add_argument("--cli", help="the dockscope command (default: the venv's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return 0

    from bench_images import ensure_images
    from harness import Report, find_cli, finish, fmt_mb, run_child, warm

    cli = find_cli(args.cli)
    if cli is None:
        print("no dockscope command found (--cli)", file=sys.stderr)
        return 2
    meta, _ = ensure_images(args.out, scale=args.scale)
    image = args.out / "big-oci.tar"
    warm([image])
    report = Report.begin(image=str(image), scale=args.scale)

    floor = run_child([*cli, "ls", "-R", str(image)], stdout=args.out / "explore-floor.txt")
    if floor.returncode != 0:
        report.fail("ls -R (floor)", f"exit {floor.returncode}", "0", floor.stderr.decode()[-300:])
        return finish(report, args.out, RESULTS)
    inspect = run_child([*cli, "inspect", "--json", str(image)])
    run = run_child([sys.executable, str(Path(__file__).resolve()), "--child", str(image)])
    if run.returncode != 0:
        report.fail("explore (headless)", f"exit {run.returncode}", "0", run.stderr.decode()[-300:])
        return finish(report, args.out, RESULTS)
    times: dict[str, Any] = json.loads(run.stdout.decode().strip().splitlines()[-1])

    report.add("image", f"{image.stat().st_size / 2**30:.2f} GiB, {times['entries']} paths")
    report.add("ls -R (floor): time", f"{floor.seconds:.2f} s")
    report.add("ls -R (floor): peak RSS", fmt_mb(floor.maxrss_bytes))
    report.add("inspect --json: time", f"{inspect.seconds:.2f} s")
    paint, ready = times["paint"], times["ready"]
    report.add("explore: first paint", f"{paint:.2f} s")
    ratio = paint / inspect.seconds
    report.add(
        "explore: first paint / inspect --json",
        f"{ratio:.2f}",
        f"≤ {TARGET_PAINT_INSPECT_RATIO}",
        ratio <= TARGET_PAINT_INSPECT_RATIO,
    )
    ratio = paint / floor.seconds
    report.add(
        "explore: first paint / floor",
        f"{ratio:.2f}",
        f"≤ {TARGET_PAINT_RATIO}",
        ratio <= TARGET_PAINT_RATIO,
    )
    ratio = ready / floor.seconds
    report.add(
        "explore: tree + efficiency ready / floor",
        f"{ratio:.2f} ({ready:.2f} s)",
        f"≤ {TARGET_READY_RATIO}",
        ratio <= TARGET_READY_RATIO,
    )
    report.add(
        "explore: open / and every top directory",
        f"{times['open']:.3f} s",
        f"< {TARGET_OPEN_S} s",
        times["open"] < TARGET_OPEN_S,
    )
    ratio = run.maxrss_bytes / floor.maxrss_bytes
    report.add(
        "explore: peak RSS / floor",
        f"{ratio:.2f} ({fmt_mb(run.maxrss_bytes)})",
        f"≤ {TARGET_RSS_RATIO}",
        ratio <= TARGET_RSS_RATIO,
    )
    report.data["explore"] = {**times, "maxrss_bytes": run.maxrss_bytes}
    report.data["floor"] = {"seconds": floor.seconds, "maxrss_bytes": floor.maxrss_bytes}
    report.data["images"] = meta.get("params", {})
    return finish(report, args.out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
