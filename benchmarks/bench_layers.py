"""Benchmark `dockscope ls -R` on a million entries and `dockscope diff` of two ~1 GiB images.

Run with `.venv/bin/python benchmarks/bench_layers.py`; see benchmarks/README.md for what is
measured and the targets. Exit status: 0 when every target is met, 1 otherwise (the reasons
are printed).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench_images import MIB, ensure_images
from bench_layer_images import ManyPlan, ensure_layer_images, many_expected
from harness import (
    Report,
    Run,
    arguments,
    finish,
    fmt_mb,
    fmt_runs,
    interleaved,
    median,
    require_cli,
    run_child,
    timed,
    warm,
    warm_inputs,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "layers-results.json"
TARGET_LS_RSS_MB = 300.0  # MB = 10**6 bytes, for ls -R and ls -R --json alike
TARGET_DIFF_RATIO = 1.5


def warn_inherited(label: str, runs: list[Run]) -> None:
    """Warn when a child's peak RSS could be the one it inherited from this process.

    Every child writes its stdout into a file (a million lines do not belong in a pipe buffer
    of this process) and its peak RSS is wait4's ru_maxrss. Linux keeps a process's peak RSS
    across exec, so a child forked from a big parent reports at least the parent's RSS: this
    process must stay small (the big JSON check runs in a process of its own), and each run
    records the parent's RSS at the fork to show it did."""
    for run in runs:
        if run.maxrss_bytes <= 1.05 * run.parent_rss_bytes:
            print(
                f"WARNING: {label}: peak RSS {fmt_mb(run.maxrss_bytes)} is not above this "
                f"process's RSS at the fork ({fmt_mb(run.parent_rss_bytes)}): it may be inherited"
            )


def _stderr_tail(run: Run) -> str:
    return run.stderr.decode(errors="replace").strip()[-300:]


# -- ls ----------------------------------------------------------------------------------------
def check_ls_plain(run: Run, plan: ManyPlan) -> tuple[int, list[str]]:
    """(lines, problems): every line against the expected (layer, path), in order."""
    if run.returncode != 0:
        return 0, [f"exit status {run.returncode}: {_stderr_tail(run)}"]
    problems: list[str] = []
    expected = many_expected(plan)
    lines = wrong = 0
    with open(run.stdout_path, encoding="utf-8") as f:
        for line in f:
            lines += 1
            want = next(expected, None)
            layer, path, is_dir = want or (-1, "(nothing)", False)
            tag, _, shown = line.rstrip("\n").partition(" ")
            if tag != f"L{layer}" or shown.lstrip(" ") != path + ("/" if is_dir else ""):
                wrong += 1
                if wrong <= 5:
                    problems.append(f"line {lines}: {line.rstrip()!r}, expected L{layer} {path}")
    if wrong > 5:
        problems.append(f"{wrong} lines differ from the expected listing in all")
    missing = sum(1 for _ in expected)
    if missing:
        problems.append(f"{missing} expected entries not listed")
    return lines, problems


def check_ls_json(run: Run, plan: ManyPlan) -> tuple[int, list[str]]:
    """(entries, problems): the whole document parses; every entry against the expected one."""
    if run.returncode != 0:
        return 0, [f"exit status {run.returncode}: {_stderr_tail(run)}"]
    try:
        doc = json.loads(run.stdout_path.read_bytes())
    except ValueError as e:
        return 0, [f"stdout is not JSON ({e})"]
    problems: list[str] = []
    for key, value in (("kind", "ls"), ("path", "/"), ("layer", plan.layers - 1)):
        if doc.get(key) != value:
            problems.append(f"{key}: {doc.get(key)!r}, expected {value!r}")
    entries: list[dict[str, Any]] = doc.get("entries") or []
    for i, (got, want) in enumerate(zip(entries, many_expected(plan), strict=False)):
        layer, path, is_dir = want
        kind = "dir" if is_dir else "file"
        if (got.get("layer"), got.get("path"), got.get("type")) != (layer, path, kind):
            problems.append(f"entry {i}: {got}, expected L{layer} {path} {kind}")
            if len(problems) >= 5:
                break
    if len(entries) != plan.entries:
        problems.append(f"{len(entries)} entries, expected {plan.entries}")
    return len(entries), problems


def bench_ls(
    report: Report, cli: list[str], out: Path, meta: dict[str, Any], plan: ManyPlan, reps: int
) -> None:
    many = meta["many"]
    archive = out / many["archive"]
    data = report.data
    restated = plan.layers - 1  # srv/ is restated by every layer above the first
    distinct = many["tar_entries"] - restated
    print(
        f"{archive.name}: {archive.stat().st_size / MIB:.1f} MiB, {plan.layers} gzip layers, "
        f"{many['tar_entries']} tar entries ({restated} restated directories) "
        f"+ {many['implicit_parents']} implicit parents = {distinct + many['implicit_parents']} "
        "entries in the merged view",
        flush=True,
    )
    warm([archive])
    plain_cmd = [*cli, "ls", "-R", str(archive), "/"]
    json_cmd = [*cli, "ls", "-R", "--json", str(archive), "/"]
    plain_out, json_out = out / "ls-plain.out", out / "ls-json.out"

    print("ls: checking the listings (untimed warm-up runs)", flush=True)
    first_plain = run_child(plain_cmd, stdout=plain_out)
    lines, plain_problems = check_ls_plain(first_plain, plan)
    first_json = run_child(json_cmd, stdout=json_out)
    # json.loads of a million entries takes ~1 GB; in this process, that memory would be
    # counted in the peak RSS of every child started afterwards (see warn_inherited).
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        entries, json_problems = pool.submit(check_ls_json, first_json, plan).result()

    print(f"timing ls -R and ls -R --json: {reps} runs each, interleaved", flush=True)
    runs: dict[str, list[Run]] = {"plain": [], "json": []}

    def job(name: str, cmd: list[str], dest: Path, size: int) -> Callable[[], float]:
        def check(run: Run) -> None:
            if run.returncode != 0 or run.stdout_size != size:
                problems = plain_problems if name == "plain" else json_problems
                problems.append(
                    f"timed run: exit {run.returncode}, {run.stdout_size} bytes of output "
                    f"(checked run: {size})"
                )

        return timed(cmd, runs[name], check=check, stdout=dest)

    times = interleaved(
        {
            "plain": job("plain", plain_cmd, plain_out, first_plain.stdout_size),
            "json": job("json", json_cmd, json_out, first_json.stdout_size),
        },
        reps,
    )
    expect = plan.entries
    how = f"= {distinct} listed + {many['implicit_parents']} implicit parents"
    for name, label, count, problems, first in (
        ("plain", "ls -R", lines, plain_problems, first_plain),
        ("json", "ls -R --json", entries, json_problems, first_json),
    ):
        rss = max(r.maxrss_bytes for r in [first, *runs[name]])
        warn_inherited(label, [first, *runs[name]])
        report.add(f"{label}: wall time (median of {reps})", fmt_runs(times[name]))
        report.add(
            f"{label} peak RSS (max over {reps + 1} runs)",
            fmt_mb(rss),
            f"<= {TARGET_LS_RSS_MB:.0f} MB",
            rss <= TARGET_LS_RSS_MB * 1e6,
        )
        unit = "lines" if name == "plain" else "entries"
        report.add(
            f"{label}: {unit}, each the expected path and layer",
            f"{count}" + ("" if not problems else " (mismatch)"),
            f"{expect} ({how})",
            count == expect and not problems,
        )
        report.add(f"info: {label} output size", f"{first.stdout_size / MIB:.1f} MiB")
        for p in problems:
            print(f"PROBLEM: {label}: {p}")
        data[f"ls_{name}"] = {
            "seconds": times[name],
            "first_run_seconds": first.seconds,
            "peak_rss_bytes": [r.maxrss_bytes for r in [first, *runs[name]]],
            "parent_rss_bytes_at_fork": [r.parent_rss_bytes for r in [first, *runs[name]]],
            "output_bytes": first.stdout_size,
            "count": count,
            "expected": expect,
            "problems": problems,
        }
    plain_out.unlink(missing_ok=True)
    json_out.unlink(missing_ok=True)


# -- diff --------------------------------------------------------------------------------------
def check_diff(run: Run, diff: dict[str, Any], label: str) -> list[str]:
    """`diff --json`: exit status 1 and exactly the planted file and config changes."""
    problems: list[str] = []
    if run.returncode != 1:
        problems.append(f"exit status {run.returncode}, expected 1: {_stderr_tail(run)}")
    try:
        doc = json.loads(run.stdout_path.read_bytes())
    except ValueError as e:
        return [*problems, f"stdout is not JSON ({e})"]
    got = [
        {"path": f["path"], "change": f["change"], "differences": f["differences"]}
        for f in doc.get("files") or []
    ]
    expected: list[dict[str, Any]] = diff["expected_files"]
    for item in got:
        if item not in expected:
            problems.append(f"unexpected {item}")
    for item in expected:
        if item not in got:
            problems.append(f"missing {item}")
    if doc.get("config") != diff["expected_config"]:
        problems.append(f"config: {doc.get('config')}, expected {diff['expected_config']}")
    if doc.get("equal") is not False:
        problems.append(f"equal: {doc.get('equal')!r}")
    shared = diff["base_layers"] if label == "big" else 1
    if doc.get("shared_layers") != shared:
        problems.append(f"shared_layers: {doc.get('shared_layers')!r}, expected {shared}")
    return problems[:12]


def base_floor(blobs: list[Path]) -> float:
    """zcat of every base layer blob, one after the other, to /dev/null: decompression alone."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["zcat", "--", *map(str, blobs)], stdout=null, check=True)
    return time.perf_counter() - start


def bench_diff(
    report: Report,
    cli: list[str],
    out: Path,
    big_meta: dict[str, Any],
    meta: dict[str, Any],
    reps: int,
) -> None:
    diff = meta["diff"]
    images = {k: out / v["archive"] for k, v in diff["images"].items()}
    big = big_meta["big"]
    base_archive = out / big["oci"]["archive"]
    blob_dir = out / big["blobs"]["dir"]
    blobs = [blob_dir / x["digest"].removeprefix("sha256:") for x in big["oci"]["layers"]]
    top_a, top_b = (diff["images"][k]["top_layer_blob_size"] / MIB for k in ("a-big", "b-big"))
    print(
        f"diff: {images['a-big'].name} / {images['b-big'].name} "
        f"({images['a-big'].stat().st_size / MIB:.0f} MiB each): {diff['base_layers']} shared "
        f"layers ({diff['base_blob_bytes'] / MIB:.0f} MiB gzip, "
        f"{diff['base_tar_bytes'] / MIB:.0f} MiB of tar) + one top layer each "
        f"({top_a:.1f} / {top_b:.1f} MiB); tiny pair: the "
        f"same top layers on a {diff['tiny_base_entries']}-entry base",
        flush=True,
    )
    warm_inputs([*images.values(), base_archive, *blobs])

    scratch = out / "diff.out"
    # diff caches the merged view of a shared base by chain ID: the first diff of a pair reads
    # the base (and is timed here as the cold figure), the timed runs find it cached
    cache = out / "diff-cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["DOCKSCOPE_CACHE"] = str(cache)
    print("diff: checking the answers (first runs: cold cache)", flush=True)
    problems: dict[str, list[str]] = {}
    first: dict[str, Run] = {}
    for label in ("big", "tiny"):
        cmd = [*cli, "diff", "--json", str(images[f"a-{label}"]), str(images[f"b-{label}"])]
        first[label] = run_child(cmd, stdout=scratch)
        problems[label] = check_diff(first[label], diff, label)
    layers_cmd = [*cli, "layers", str(base_archive)]
    warmup = run_child(layers_cmd, stdout=scratch)
    problems["layers"] = [] if warmup.returncode == 0 else [f"exit {warmup.returncode}"]
    base_floor(blobs)

    print(
        f"timing diff (big pair, tiny pair), layers of the base, zcat of the base: {reps} runs "
        "each, interleaved",
        flush=True,
    )
    runs: dict[str, list[Run]] = {"big": [], "tiny": [], "layers": []}

    def job(name: str, cmd: list[str], status: int) -> Callable[[], float]:
        def check(run: Run) -> None:
            if run.returncode != status:
                problems[name].append(f"timed run: exit status {run.returncode}, not {status}")

        return timed(cmd, runs[name], check=check, stdout=scratch)

    times = interleaved(
        {
            "big": job("big", [*cli, "diff", str(images["a-big"]), str(images["b-big"])], 1),
            "tiny": job("tiny", [*cli, "diff", str(images["a-tiny"]), str(images["b-tiny"])], 1),
            "layers": job("layers", layers_cmd, 0),
            "zcat": lambda: base_floor(blobs),
        },
        reps,
    )
    scratch.unlink(missing_ok=True)
    m = {k: median(v) for k, v in times.items()}
    ratio = m["big"] / m["tiny"]
    report.add(
        "info: diff A B, ~1 GiB pair, first run (base read once, then cached)",
        f"{first['big'].seconds:.3f} s",
    )
    report.add(f"diff A B, ~1 GiB pair, base cached (median of {reps})", fmt_runs(times["big"]))
    report.add(f"diff A B, tiny pair (median of {reps})", fmt_runs(times["tiny"]))
    report.add(
        "diff big pair / tiny pair (same top layers)",
        f"{ratio:.2f}x",
        f"<= {TARGET_DIFF_RATIO:.2f}x",
        ratio <= TARGET_DIFF_RATIO,
    )
    report.add(
        f"info: layers of the base image, read once (median of {reps})", fmt_runs(times["layers"])
    )
    report.add("info: diff big pair / layers of the base", f"{m['big'] / m['layers']:.2f}x")
    report.add(
        f"info: zcat of the {len(blobs)} base blobs, one after another (median of {reps})",
        fmt_runs(times["zcat"]),
    )
    report.add("info: diff big pair / zcat of the base", f"{m['big'] / m['zcat']:.2f}x")
    report.add(
        "info: diff peak RSS, big / tiny pair",
        f"{fmt_mb(max(r.maxrss_bytes for r in runs['big']))} / "
        f"{fmt_mb(max(r.maxrss_bytes for r in runs['tiny']))}",
    )
    for name in ("big", "tiny"):
        warn_inherited(f"diff {name}", runs[name])
    n_files = len(diff["expected_files"])
    for label in ("big", "tiny"):
        report.add(
            f"diff --json, {label} pair: the planted changes, exit status 1",
            "yes" if not problems[label] else "no",
            f"yes ({n_files} files, 1 config key)",
            not problems[label],
        )
    for name, found in problems.items():
        for p in found:
            print(f"PROBLEM: diff {name}: {p}")
    report.data["diff"] = {
        "seconds": times,
        "medians": m,
        "ratio_big_over_tiny": ratio,
        "ratio_big_over_layers": m["big"] / m["layers"],
        "first_run_seconds": {k: v.seconds for k, v in first.items()},
        "peak_rss_bytes": {k: [r.maxrss_bytes for r in v] for k, v in runs.items()},
        "parent_rss_bytes_at_fork": {k: [r.parent_rss_bytes for r in v] for k, v in runs.items()},
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--entries", type=int, default=1_000_000, help="of the ls image")
    ap.add_argument("--ls-layers", type=int, default=4, help="gzip layers of the ls image")
    ap.add_argument("--ls-reps", type=int, default=3)
    ap.add_argument("--diff-reps", type=int, default=5)
    ap.add_argument("--only", choices=("ls", "diff"), help="run one half only")
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--workers", type=int, default=2, help="generator processes")
    ap.add_argument("--regenerate", action="store_true", help="of this benchmark's images")
    args = ap.parse_args(argv)
    out: Path = args.out
    report = Report.begin()
    data = report.data
    plan = ManyPlan(args.entries, args.ls_layers, args.seed, 1)
    big_meta: dict[str, Any] | None = None
    if args.only != "ls":
        big_meta, _ = ensure_images(out, seed=args.seed, workers=args.workers)
    meta, generated = ensure_layer_images(
        out, big_meta, plan=plan, seed=args.seed, workers=args.workers, force=args.regenerate
    )
    data["images"] = {"generated_now": generated, **meta}
    for part in ("many", "diff"):
        if part in meta:
            how = "generated now" if part in generated else "cached, from layer-images.json"
            report.add(
                f"generation of the {part} images ({how})",
                f"{meta[part]['generation_seconds']:.1f} s",
            )

    cli = require_cli(report, args.cli)
    if cli is None:
        return finish(report, out, RESULTS)
    if args.only != "diff":
        bench_ls(report, cli, out, meta, plan, args.ls_reps)
    if big_meta is not None:
        bench_diff(report, cli, out, big_meta, meta, args.diff_reps)
    return finish(report, out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
