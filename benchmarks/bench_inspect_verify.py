"""Benchmark `dockscope inspect` and `dockscope verify` on a ~1 GiB OCI archive.

Run with `make bench`; see benchmarks/README.md for what is measured and the targets.
Exit status: 0 when every target is met, 1 otherwise (the reasons are printed).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_images import MIB, chain_ids, ensure_images
from harness import (
    Report,
    Run,
    arguments,
    big_image_arguments,
    finish,
    fmt_runs,
    interleaved,
    median,
    require_cli,
    run_child,
    timed,
    warm_inputs,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "results.json"
TARGET_INSPECT_RATIO = 1.5
TARGET_VERIFY_RATIO = 1.5
TARGET_VERIFY_RSS_MB = 150.0  # MB = 10**6 bytes


@dataclass
class FloorJob:
    cmd: list[str]
    expected: str  # hex digest the command must print
    cost: int  # bytes it hashes, for longest-first scheduling


def floor_jobs(meta: dict[str, Any], out: Path, hasher: str) -> list[FloorJob]:
    """sha256sum over every blob plus zcat | sha256sum over every layer."""
    big = meta["big"]
    blob_dir = out / big["blobs"]["dir"]
    hash_cmd = {"sha256sum": ["sha256sum"], "openssl": ["openssl", "dgst", "-sha256", "-r"]}[hasher]
    jobs: list[FloorJob] = []
    blobs = [
        (big["blobs"]["manifest"], 0),
        (big["blobs"]["config"], 0),
        *((layer["digest"], layer["size"]) for layer in big["oci"]["layers"]),
    ]
    for digest, size in blobs:
        path = blob_dir / digest.removeprefix("sha256:")
        jobs.append(FloorJob([*hash_cmd, str(path)], digest.removeprefix("sha256:"), size))
    pipe = f'zcat -- "$1" | {shlex.join(hash_cmd)}'
    for layer, facts in zip(big["oci"]["layers"], big["layer_results"], strict=True):
        path = blob_dir / layer["digest"].removeprefix("sha256:")
        jobs.append(
            FloorJob(
                ["sh", "-c", pipe, "sh", str(path)],
                layer["diff_id"].removeprefix("sha256:"),
                facts["tar_size"],
            )
        )
    return sorted(jobs, key=lambda j: j.cost, reverse=True)


def run_floor(jobs: list[FloorJob], parallel: int = 2) -> float:
    """Run the jobs `parallel` at a time (longest first); check every digest; return seconds."""

    def one(job: FloorJob) -> None:
        done = subprocess.run(job.cmd, capture_output=True, check=True)
        got = done.stdout.split(maxsplit=1)[0].decode()
        if got != job.expected:
            raise RuntimeError(f"floor: {shlex.join(job.cmd)} printed {got}, not {job.expected}")

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, jobs))
    return time.perf_counter() - start


def check_inspect(run: Run, image: dict[str, Any], fmt: str) -> list[str]:
    """Compare `inspect --json` with what the generator wrote; return the disagreements."""
    if run.returncode != 0:
        return [f"exit status {run.returncode}: {run.stderr.decode(errors='replace')[-500:]}"]
    try:
        doc = json.loads(run.stdout)
    except ValueError as e:
        return [f"stdout is not JSON ({e})"]
    problems: list[str] = []
    expect: dict[str, Any] = {
        "kind": "image",
        "format": fmt,
        "image_id": image["config_digest"],
        "manifest_digest": image["manifest_digest"],
    }
    for key, value in expect.items():
        if doc.get(key) != value:
            problems.append(f"{key}: {doc.get(key)!r}, expected {value!r}")
    layers = doc.get("layers") or []
    if len(layers) != len(image["layers"]):
        problems.append(f"{len(layers)} layers, expected {len(image['layers'])}")
    chains = chain_ids([x["diff_id"] for x in image["layers"]])
    for got, want, chain in zip(layers, image["layers"], chains, strict=False):
        for key in ("digest", "size", "diff_id", "media_type"):
            if key in want and want[key] is not None and got.get(key) != want[key]:
                problems.append(
                    f"layer {got.get('index')} {key}: {got.get(key)!r} != {want[key]!r}"
                )
        if got.get("chain_id") != chain:
            problems.append(f"layer {got.get('index')} chain_id: {got.get('chain_id')!r}")
    return problems


def check_verify(run: Run, n_layers: int) -> tuple[list[str], list[str]]:
    """(problems, warnings) for `verify --json` on a valid image."""
    try:
        doc = json.loads(run.stdout)
    except ValueError as e:
        return [f"exit {run.returncode}, stdout is not JSON ({e})"], []
    problems: list[str] = []
    if run.returncode != 0:
        problems.append(f"exit status {run.returncode}")
    if doc.get("ok") is not True:
        problems.append(f"ok is {doc.get('ok')!r}")
    findings = doc.get("findings") or []
    for f in findings:
        if not f.get("ok"):
            problems.append(f"failed {f.get('check')}: {f.get('subject')}")
    warnings: list[str] = []
    for check in ("blob-digest", "diff-id"):
        count = sum(1 for f in findings if f.get("check") == check)
        if count < n_layers:
            warnings.append(f"only {count} {check} findings for {n_layers} layers")
    return problems[:10], warnings


def describe_images(meta: dict[str, Any], generated: bool, out: Path) -> None:
    t = meta["totals"]
    big = meta["big"]
    how = "generated now" if generated else "cached; generation took"
    print(
        f"images ({how} {meta['generation_seconds']:.1f} s with {meta['workers']} processes, "
        f"gzip -{meta['params']['gzip_level']}, seed {meta['params']['seed']}):"
    )
    print(
        f"  {big['oci']['archive']}: {big['oci']['archive_size'] / MIB:.1f} MiB archive, "
        f"{t['layers']} gzip layers, {t['regular_files']} regular files "
        f"({t['big_files']} big), {t['directories']} dirs, {t['symlinks']} symlinks, "
        f"{t['hardlinks']} hardlinks, {t['whiteouts']} whiteouts"
    )
    print(
        f"  content {t['content_bytes'] / MIB:.1f} MiB "
        f"({100 * t['random_content_bytes'] / max(1, t['content_bytes']):.0f}% incompressible), "
        f"layer tars {t['layer_tar_bytes'] / MIB:.1f} MiB, "
        f"layer blobs {t['layer_blob_bytes'] / MIB:.1f} MiB"
    )
    if "legacy" in big:
        print(f"  {big['legacy']['archive']}: {big['legacy']['archive_size'] / MIB:.1f} MiB")
    print(f"  {meta['tiny']['archive']}: {meta['tiny']['archive_size']} bytes, 1 layer")
    print(f"  floor reads the same blobs as files from {out / big['blobs']['dir']}")


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--inspect-reps", type=int, default=7)
    ap.add_argument("--verify-reps", type=int, default=3)
    big_image_arguments(ap)
    ap.add_argument("--no-legacy", action="store_true", help="skip the docker-archive variant")
    ap.add_argument("--floor-only", action="store_true", help="generate, time the floor, stop")
    args = ap.parse_args(argv)
    out: Path = args.out
    report = Report.begin()
    data = report.data

    meta, generated = ensure_images(
        out,
        seed=args.seed,
        scale=args.scale,
        level=args.gzip_level,
        legacy=not args.no_legacy,
        workers=args.workers,
        force=args.regenerate,
    )
    describe_images(meta, generated, out)
    data["images"] = {"generated_now": generated, **meta}
    big = meta["big"]
    totals = meta["totals"]
    report.add(
        "generation time" + ("" if generated else " (cached, from images.json)"),
        f"{meta['generation_seconds']:.1f} s",
        "~180 s",
    )
    report.add("big image: gzip layers", str(totals["layers"]), ">= 10", totals["layers"] >= 10)
    report.add(
        "big image: regular files",
        str(totals["regular_files"]),
        ">= 100000",
        totals["regular_files"] >= 100_000,
    )
    report.add("big image: file content", f"{totals['content_bytes'] / MIB:.0f} MiB", "~1024 MiB")
    report.add("big image: archive size", f"{big['oci']['archive_size'] / MIB:.0f} MiB")

    blob_dir = out / big["blobs"]["dir"]
    archives = [out / big["oci"]["archive"], out / meta["tiny"]["archive"]]
    if "legacy" in big:
        archives.append(out / big["legacy"]["archive"])
    files = [*archives, *sorted(blob_dir.iterdir())]
    data["warm_cache"] = warm_inputs(files, "every command also gets one untimed warm-up run")

    floor = floor_jobs(meta, out, "sha256sum")
    fast_floor = floor_jobs(meta, out, "openssl") if shutil.which("openssl") else None
    run_floor(floor)  # warm-up: checks every digest and diff_id the generator recorded

    cli = None if args.floor_only else require_cli(report, args.cli)
    if cli is None:  # --floor-only, or no CLI (a failed row)
        times = interleaved({"floor": lambda: run_floor(floor)}, args.verify_reps)
        data["floor_seconds"] = times["floor"]
        report.add("floor (sha256sum, 2 at a time)", fmt_runs(times["floor"]))
        status = finish(report, out, RESULTS)
        return 0 if args.floor_only else status

    big_oci = str(out / big["oci"]["archive"])
    tiny_oci = str(out / meta["tiny"]["archive"])
    legacy = str(out / big["legacy"]["archive"]) if "legacy" in big else None

    # Correctness first (these are also the warm-up runs).
    inspect_problems = check_inspect(
        run_child([*cli, "inspect", "--json", big_oci]), big["oci"], "oci-archive"
    )
    tiny_problems = check_inspect(
        run_child([*cli, "inspect", "--json", tiny_oci]), meta["tiny"], "oci-archive"
    )
    first_verify = run_child([*cli, "verify", "--json", big_oci])
    verify_problems, verify_warnings = check_verify(first_verify, totals["layers"])
    for w in verify_warnings:
        print(f"WARNING: verify: {w}")
    legacy_inspect_problems: list[str] = []
    legacy_verify_problems: list[str] = []
    if legacy:
        legacy_inspect_problems = check_inspect(
            run_child([*cli, "inspect", "--json", legacy]), big["legacy"], "docker-archive"
        )
        legacy_verify_problems, _ = check_verify(
            run_child([*cli, "verify", "--json", legacy]), totals["layers"]
        )
    if fast_floor:
        run_floor(fast_floor)  # warm-up

    # inspect: big vs tiny, interleaved.
    print(f"timing inspect: {args.inspect_reps} runs each, interleaved", flush=True)
    inspect_runs: dict[str, list[Run]] = {"big": [], "tiny": [], "legacy": []}

    def inspect(name: str, path: str) -> Callable[[], float]:
        return timed([*cli, "inspect", "--json", path], inspect_runs[name])

    jobs = {"big": inspect("big", big_oci), "tiny": inspect("tiny", tiny_oci)}
    if legacy:
        jobs["legacy"] = inspect("legacy", legacy)
    t_inspect = interleaved(jobs, args.inspect_reps)

    # verify vs the floor, interleaved.
    print(f"timing verify and the floor: {args.verify_reps} runs each, interleaved", flush=True)
    verify_runs: dict[str, list[Run]] = {"big": [first_verify], "legacy": []}

    def verify(name: str, path: str) -> Callable[[], float]:
        return timed([*cli, "verify", "--json", path], verify_runs[name])

    vjobs: dict[str, Callable[[], float]] = {
        "verify": verify("big", big_oci),
        "floor": lambda: run_floor(floor),
    }
    if fast_floor:
        vjobs["floor_openssl"] = lambda: run_floor(fast_floor)
    if legacy:
        vjobs["verify_legacy"] = verify("legacy", legacy)
    t_verify = interleaved(vjobs, args.verify_reps)

    m_big, m_tiny = median(t_inspect["big"]), median(t_inspect["tiny"])
    ratio_inspect = m_big / m_tiny
    m_verify, m_floor = median(t_verify["verify"]), median(t_verify["floor"])
    ratio_verify = m_verify / m_floor
    rss = max(r.maxrss_bytes for r in verify_runs["big"]) / 1e6
    n_i, n_v = args.inspect_reps, args.verify_reps
    report.add(f"inspect big (median of {n_i})", fmt_runs(t_inspect["big"]))
    report.add(f"inspect tiny (median of {n_i})", fmt_runs(t_inspect["tiny"]))
    report.add(
        "inspect big / tiny",
        f"{ratio_inspect:.2f}x",
        f"<= {TARGET_INSPECT_RATIO:.2f}x",
        ratio_inspect <= TARGET_INSPECT_RATIO,
    )
    report.add(f"verify big (median of {n_v})", fmt_runs(t_verify["verify"]))
    report.add(
        f"floor: sha256sum + zcat|sha256sum, 2 at a time (median of {n_v})",
        fmt_runs(t_verify["floor"]),
    )
    report.add(
        "verify / floor",
        f"{ratio_verify:.2f}x",
        f"<= {TARGET_VERIFY_RATIO:.2f}x",
        ratio_verify <= TARGET_VERIFY_RATIO,
    )
    report.add(
        "verify peak RSS (max over runs)",
        f"{rss:.1f} MB",
        f"< {TARGET_VERIFY_RSS_MB:.0f} MB",
        rss < TARGET_VERIFY_RSS_MB,
    )
    report.add(
        "inspect --json matches the image",
        "yes" if not inspect_problems and not tiny_problems else "no",
        "yes",
        not inspect_problems and not tiny_problems,
    )
    report.add(
        "verify --json: ok on the valid image",
        "yes" if not verify_problems else "no",
        "yes",
        not verify_problems,
    )
    if fast_floor:
        m_fast = median(t_verify["floor_openssl"])
        report.add(
            f"info: floor with openssl dgst (median of {n_v})", fmt_runs(t_verify["floor_openssl"])
        )
        report.add("info: verify / openssl floor", f"{m_verify / m_fast:.2f}x")
    if legacy:
        m_leg = median(t_inspect["legacy"])
        report.add(f"info: inspect docker-archive (median of {n_i})", fmt_runs(t_inspect["legacy"]))
        report.add("info: inspect docker-archive / tiny", f"{m_leg / m_tiny:.2f}x")
        report.add(
            f"info: verify docker-archive (median of {n_v})",
            fmt_runs(t_verify["verify_legacy"]),
        )
        leg_rss = max(r.maxrss_bytes for r in verify_runs["legacy"]) / 1e6
        report.add("info: verify docker-archive peak RSS", f"{leg_rss:.1f} MB")
        report.add(
            "info: inspect --json matches docker-archive",
            "yes" if not legacy_inspect_problems else "no",
        )
        report.add("info: verify docker-archive ok", "yes" if not legacy_verify_problems else "no")
        data["legacy_inspect_problems"] = legacy_inspect_problems
        data["legacy_verify_problems"] = legacy_verify_problems

    for name, problems in (
        ("inspect big", inspect_problems),
        ("inspect tiny", tiny_problems),
        ("verify big", verify_problems),
        ("info: inspect docker-archive", legacy_inspect_problems),
        ("info: verify docker-archive", legacy_verify_problems),
    ):
        for p in problems:
            print(f"PROBLEM: {name}: {p}")
    data["inspect_problems"] = {"big": inspect_problems, "tiny": tiny_problems}
    data["verify_problems"] = verify_problems
    data["verify_warnings"] = verify_warnings
    data["timings_seconds"] = {
        "inspect": t_inspect,
        "verify": {k: v for k, v in t_verify.items()},
        "verify_first_run": first_verify.seconds,
    }
    data["medians_seconds"] = {
        "inspect_big": m_big,
        "inspect_tiny": m_tiny,
        "verify_big": m_verify,
        "floor": m_floor,
    }
    data["ratios"] = {"inspect_big_over_tiny": ratio_inspect, "verify_over_floor": ratio_verify}
    data["verify_peak_rss_bytes"] = [r.maxrss_bytes for r in verify_runs["big"]]
    data["inspect_peak_rss_bytes"] = max(r.maxrss_bytes for r in inspect_runs["big"])
    return finish(report, out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
