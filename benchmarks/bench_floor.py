"""`dockscope verify` against the inflate floor: the same inflater, two processes, nothing else.

The floor inflates every layer blob of the big image with the inflater dockscope uses
(``inspect_tool.layers.inflate``: ISA-L, else zlib), hashing the blob and the uncompressed
bytes with sha256, in two worker processes (longest blobs first, each to the less loaded
worker); it does no tar parsing, no archive walk and no reporting. `verify --json` on the big
archive and the floor run interleaved; the medians are compared. See benchmarks/README.md.

``--child BLOB...`` is the floor itself (run as a separate process, timed from outside like
verify, interpreter start-up included).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench_images import ensure_images
from harness import (
    VMHWM,
    Report,
    Run,
    arguments,
    big_image_arguments,
    finish,
    fmt_mb,
    fmt_runs,
    interleaved,
    median,
    require_cli,
    run_child,
    warm_inputs,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "floor-results.json"
TARGET_RATIO = 1.15
TARGET_RSS_MB = 150.0
READ = 1 << 20


def inflate_and_hash(path: str) -> tuple[str, str, str]:
    """(path, sha256 of the blob, sha256 of its inflated bytes)."""
    from inspect_tool.layers.inflate import inflater

    raw_hash, diff_hash = hashlib.sha256(), hashlib.sha256()
    chosen = inflater()
    d = chosen.gzip()
    with open(path, "rb", buffering=0) as f:
        while data := f.read(READ):
            raw_hash.update(data)
            while data:
                if d.eof:  # another gzip member
                    data = d.unused_data + data
                    d = chosen.gzip()
                diff_hash.update(d.decompress(data, 4 * READ))
                data = d.unconsumed_tail
    return path, raw_hash.hexdigest(), diff_hash.hexdigest()


def child(paths: list[str]) -> int:
    """Two processes, longest-processing-time-first: print each blob's two digests."""
    loads: list[tuple[int, list[str]]] = [(0, []), (0, [])]
    for p in sorted(paths, key=lambda p: -os.path.getsize(p)):
        i = 0 if loads[0][0] <= loads[1][0] else 1
        loads[i] = (loads[i][0] + os.path.getsize(p), [*loads[i][1], p])
    pids = []
    for _, mine in loads:
        pid = os.fork()
        if pid == 0:
            for p in mine:
                print(*inflate_and_hash(p), flush=True)
            os._exit(0)
        pids.append(pid)
    return max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)


def check_floor(run: Run, expected: dict[str, tuple[str, str]]) -> list[str]:
    got = {}
    problems = [f"floor exit {run.returncode}"] if run.returncode else []
    for line in run.stdout.decode().splitlines():
        fields = line.split()
        if len(fields) != 3:
            problems.append(f"floor printed {line!r}")
            continue
        path, raw, diff = fields
        got[Path(path).name] = (raw, diff)
    for name, digests in expected.items():
        if got.get(name) != digests:
            problems.append(f"floor: {name[:12]} gave {got.get(name)}, not {digests}")
    return problems


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    ap = arguments(__doc__, OUT)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each side")
    big_image_arguments(ap)
    ap.add_argument(
        "--no-legacy", action="store_true", help="as bench_inspect_verify's (same image cache)"
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    report = Report.begin()
    data = report.data
    meta, _ = ensure_images(
        out,
        seed=args.seed,
        scale=args.scale,
        level=args.gzip_level,
        legacy=not args.no_legacy,  # the parameters of bench_inspect_verify: its cache
        workers=args.workers,
        force=args.regenerate,
    )
    big = meta["big"]
    blob_dir = out / big["blobs"]["dir"]
    layers = big["oci"]["layers"]
    expected = {
        lyr["digest"].removeprefix("sha256:"): (
            lyr["digest"].removeprefix("sha256:"),
            lyr["diff_id"].removeprefix("sha256:"),
        )
        for lyr in layers
    }
    paths = [str(blob_dir / name) for name in expected]
    archive = out / big["oci"]["archive"]
    data["warm_cache"] = warm_inputs([archive, *map(Path, paths)])
    cli = require_cli(report, args.cli)
    if cli is None:
        return finish(report, out, RESULTS)
    from inspect_tool.layers.inflate import inflater

    data["inflater"] = inflater().name
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    floor_cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *paths]
    verify_cmd = [*cli, "verify", "--json", str(archive)]
    runs: dict[str, list[Run]] = {"floor": [], "verify": [], "verify_zlib": []}
    problems: list[str] = []

    def floor() -> float:
        run = run_child(floor_cmd, env=env, peak=VMHWM)
        runs["floor"].append(run)
        problems.extend(check_floor(run, expected))
        return run.seconds

    def verify() -> float:
        run = run_child(verify_cmd, peak=VMHWM)
        runs["verify"].append(run)
        if run.returncode or not json.loads(run.stdout).get("ok"):
            problems.append(f"verify exit {run.returncode}")
        return run.seconds

    def verify_zlib() -> float:  # dockscope as it was before ISA-L, for comparison
        run = run_child(verify_cmd, env={**os.environ, "DOCKSCOPE_INFLATER": "zlib"}, peak=VMHWM)
        runs["verify_zlib"].append(run)
        return run.seconds

    floor()
    verify()  # warm-up runs, checked
    verify_zlib()
    times = interleaved({"floor": floor, "verify": verify, "verify_zlib": verify_zlib}, args.reps)
    ratio = median(times["verify"]) / median(times["floor"])
    # VmHWM of the verify process and of its worker processes, summed (an upper bound: a
    # forked worker counts again the pages it shares with its parent); the floor's likewise
    peak = max(r.tree_rss_bytes for r in runs["verify"])
    floor_peak = max(r.tree_rss_bytes for r in runs["floor"])
    report.add("inflater", data["inflater"])
    report.add("floor: inflate + sha256 both sides, 2 processes", fmt_runs(times["floor"]))
    report.add("verify --json", fmt_runs(times["verify"]))
    report.add("verify / floor", f"{ratio:.2f}x", f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO)
    report.add(
        "verify peak RSS (VmHWM of the process and its workers, summed)",
        fmt_mb(peak),
        f"< {TARGET_RSS_MB:.0f} MB",
        peak < TARGET_RSS_MB * 1e6,
    )
    report.add("info: floor peak RSS (its 3 processes, summed)", fmt_mb(floor_peak))
    zlib_ratio = median(times["verify_zlib"]) / median(times["floor"])
    report.add("info: verify with zlib (DOCKSCOPE_INFLATER=zlib)", fmt_runs(times["verify_zlib"]))
    report.add("info: verify with zlib / floor", f"{zlib_ratio:.2f}x")
    cpu = {k: median([r.cpu_seconds for r in v[1:]]) for k, v in runs.items()}
    report.add(
        "info: CPU seconds floor / verify / verify with zlib",
        f"{cpu['floor']:.2f} / {cpu['verify']:.2f} / {cpu['verify_zlib']:.2f}",
    )
    report.add("digests and diff_ids, verify ok", "yes" if not problems else "; ".join(problems))
    if problems:
        report.add("correct", "no", "yes", False)
    data["times"] = times
    data["ratio"] = ratio
    data["verify_peak_rss"] = peak
    data["cpu_seconds"] = cpu
    any_data: dict[str, Any] = data
    any_data["problems"] = problems
    return finish(report, out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
