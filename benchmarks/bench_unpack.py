"""Benchmark `dockscope unpack` against `umoci unpack` and GNU tar on the ~1 GiB, 110k-file image.

Run with `.venv/bin/python benchmarks/bench_unpack.py`; see benchmarks/README.md for what is
measured and the targets. Exit status: 0 when every target is met, 1 otherwise (the reasons
are printed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_images import MIB, ensure_images
from harness import (
    VMHWM,
    Report,
    Run,
    Trees,
    arguments,
    big_image_arguments,
    finish,
    fmt_runs,
    interleaved,
    median,
    require_cli,
    run_child,
    warm,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "unpack-results.json"
TARGET_UMOCI_RATIO = 1.0
TARGET_TAR_RATIO = 0.8  # issue 19 (was 1.3)
TARGET_RSS_MB = 300.0
REF = "big"
# Peak memory is the child's VmHWM (harness.VMHWM): wait4's ru_maxrss would also count this
# (large, after the tree comparison) process's pages as they were when it forked.


def make_layout(meta: dict[str, Any], out: Path) -> tuple[Path, list[Path]]:
    """The big image as an OCI layout directory (what umoci reads): index.json and oci-layout
    from big-oci.tar, the blobs hard-linked (else copied) from out/blobs. Returns the layout
    and the layer blobs, bottom first."""
    big = meta["big"]
    layout = out / "big-layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / big["oci"]["archive"]) as archive:
        for name in ("index.json", "oci-layout"):
            member = archive.extractfile(name)
            assert member is not None
            (layout / name).write_bytes(member.read())
    source = out / big["blobs"]["dir"]
    for blob in source.iterdir():
        target = blobs / blob.name
        if target.exists() and target.stat().st_size == blob.stat().st_size:
            continue
        target.unlink(missing_ok=True)
        try:
            os.link(blob, target)
        except OSError:
            shutil.copyfile(blob, target)
    layers = [blobs / layer["digest"].removeprefix("sha256:") for layer in big["oci"]["layers"]]
    return layout, layers


def tree(root: Path, *, content: bool) -> dict[str, tuple[Any, ...]]:
    """Every entry below root: type, mode, owner, size, link target, content sha256."""
    out: dict[str, tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = os.lstat(path)
            extra: str | None = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode) and content:
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(4 * MIB):
                        digest.update(chunk)
                extra = digest.hexdigest()
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, size, extra)
    return out


def compare_trees(ours: Path, theirs: Path) -> list[str]:
    a, b = tree(ours, content=True), tree(theirs, content=True)
    problems = [f"only in dockscope's: {p}" for p in sorted(a.keys() - b.keys())][:5]
    problems += [f"only in umoci's: {p}" for p in sorted(b.keys() - a.keys())][:5]
    problems += [
        f"differs: {p}: {a[p]} != {b[p]}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]
    ][:5]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each tool")
    big_image_arguments(ap)
    args = ap.parse_args(argv)
    out: Path = args.out
    report = Report.begin(root=os.geteuid() == 0)
    data = report.data

    missing = [tool for tool in ("umoci", "tar", "gzip") if shutil.which(tool) is None]
    if missing:
        report.fail("peers", f"missing: {', '.join(missing)}", "installed", "make debs-test")
        return finish(report, out, RESULTS)
    versions = {
        "umoci": run_child(["umoci", "--version"]).stdout.decode().strip(),
        "tar": run_child(["tar", "--version"]).stdout.decode().splitlines()[0],
        "gzip": run_child(["gzip", "--version"]).stdout.decode().splitlines()[0],
    }
    data["versions"] = versions
    meta, generated = ensure_images(
        out,
        seed=args.seed,
        scale=args.scale,
        level=args.gzip_level,
        legacy=True,  # the same parameters as bench_inspect_verify: its cache is reused
        workers=args.workers,
        force=args.regenerate,
    )
    totals = meta["totals"]
    data["image"] = {"generated_now": generated, "totals": totals}
    layout, layers = make_layout(meta, out)
    print(
        f"image: {layout} ({len(layers)} gzip layers, {totals['regular_files']} regular files, "
        f"{totals['content_bytes'] / MIB:.0f} MiB of content, "
        f"{sum(p.stat().st_size for p in layers) / MIB:.0f} MiB of blobs)",
        flush=True,
    )
    report.add("image: gzip layers", str(len(layers)), ">= 10", len(layers) >= 10)
    report.add(
        "image: regular files",
        str(totals["regular_files"]),
        ">= 100000",
        totals["regular_files"] >= 100_000,
    )
    report.add("image: file content", f"{totals['content_bytes'] / MIB:.0f} MiB", "~1024 MiB")

    cli = require_cli(report, args.cli)
    if cli is None:
        return finish(report, out, RESULTS)
    root = os.geteuid() == 0
    content = totals["content_bytes"]
    # every run's tree is kept until the end (harness.Trees): the warm-up's and the timed ones
    needed = (args.reps + 1) * 3 * content * 1.2
    free = shutil.disk_usage(out).free
    if free < needed:
        report.fail(
            "free space for every run's tree",
            f"{free / MIB / 1024:.1f} GiB",
            f">= {needed / MIB / 1024:.1f} GiB",
            "free space, or fewer --reps",
        )
        return finish(report, out, RESULTS)
    trees = Trees(out / "unpack-scratch", out)

    def umoci_cmd(dest: Path) -> list[str]:
        cmd = ["umoci", "unpack", *([] if root else ["--rootless"])]
        return [*cmd, "--image", f"{layout}:{REF}", str(dest)]

    print(f"dockscope: {shlex.join(cli)} unpack --json {layout} DEST", flush=True)
    print(f"umoci: {shlex.join(umoci_cmd(Path('DEST')))}", flush=True)
    print("tar: for each layer, bottom first: tar --extract --gzip --file BLOB -C DEST", flush=True)
    print(f"each run into a new DEST below {trees.base}, all removed at the end", flush=True)

    unpack_runs: list[Run] = []
    last: dict[str, Path] = {}

    def dockscope() -> float:
        last["dockscope"] = dest = trees.new("dockscope")
        run = run_child([*cli, "unpack", "--json", str(layout), str(dest)], peak=VMHWM)
        unpack_runs.append(run)
        if run.returncode != 0:
            raise SystemExit(
                f"dockscope unpack exited {run.returncode}: {run.stderr.decode()[-2000:]}"
            )
        return run.seconds

    def umoci() -> float:
        last["umoci"] = dest = trees.new("umoci")
        run = run_child(umoci_cmd(dest), peak=VMHWM)
        if run.returncode != 0:
            raise SystemExit(f"umoci unpack exited {run.returncode}: {run.stderr.decode()[-2000:]}")
        return run.seconds

    def gnu_tar() -> float:
        dest = trees.new("tar")
        dest.mkdir()
        seconds = 0.0
        for blob in layers:
            run = run_child(
                ["tar", "--extract", "--gzip", "--file", str(blob), "-C", str(dest)], peak=VMHWM
            )
            if run.returncode != 0:
                raise SystemExit(f"tar exited {run.returncode}: {run.stderr.decode()[-2000:]}")
            seconds += run.seconds
        return seconds

    print("warming the page cache and checking dockscope against umoci (untimed)", flush=True)
    warm(layers)
    os.sync()
    first = {"dockscope": dockscope(), "umoci": umoci(), "tar": gnu_tar()}
    doc = json.loads(unpack_runs[0].stdout)
    audit_ok = doc.get("ok") is True and not doc.get("audit")
    problems = compare_trees(last["dockscope"], last["umoci"] / "rootfs")
    data["warmup_seconds"] = first
    data["tree_problems"] = problems
    for problem in problems:
        print(f"PROBLEM: {problem}")

    print(f"timing: {args.reps} runs of each, interleaved", flush=True)
    jobs: dict[str, Callable[[], float]] = {"dockscope": dockscope, "umoci": umoci, "tar": gnu_tar}
    try:
        times = interleaved(jobs, args.reps)
    finally:
        trees.remove()

    m_ours, m_umoci, m_tar = (median(times[k]) for k in ("dockscope", "umoci", "tar"))
    r_umoci, r_tar = m_ours / m_umoci, m_ours / m_tar
    n = args.reps
    report.add(f"dockscope unpack (median of {n})", fmt_runs(times["dockscope"]))
    report.add(f"umoci unpack (median of {n})", fmt_runs(times["umoci"]))
    report.add(f"GNU tar -xz, layers in order (median of {n})", fmt_runs(times["tar"]))
    report.add(
        "unpack / umoci unpack",
        f"{r_umoci:.2f}x",
        f"<= {TARGET_UMOCI_RATIO:.2f}x",
        r_umoci <= TARGET_UMOCI_RATIO,
    )
    report.add(
        "unpack / GNU tar",
        f"{r_tar:.2f}x",
        f"<= {TARGET_TAR_RATIO:.2f}x",
        r_tar <= TARGET_TAR_RATIO,
    )
    report.add(
        "unpack's tree equals umoci's (paths, modes, owners, sizes, links, sha256)",
        "yes" if not problems else "no",
        "yes",
        not problems,
    )
    report.add("unpack exit 0, empty audit", "yes" if audit_ok else "no", "yes", audit_ok)
    rss = max(run.maxrss_bytes for run in unpack_runs) / 1e6
    report.add(
        "unpack peak RSS (max over runs)",
        f"{rss:.1f} MB",
        f"< {TARGET_RSS_MB:.0f} MB",
        rss < TARGET_RSS_MB,
    )
    data["timings_seconds"] = times
    data["medians_seconds"] = {"dockscope": m_ours, "umoci": m_umoci, "tar": m_tar}
    data["ratios"] = {"unpack_over_umoci": r_umoci, "unpack_over_tar": r_tar}
    data["unpack_peak_rss_bytes"] = [run.maxrss_bytes for run in unpack_runs]
    return finish(report, out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
