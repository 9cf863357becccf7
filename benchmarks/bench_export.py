"""Benchmark `dockscope export` against `crane export`'s work on the ~1 GiB, 110k-file image.

crane (go-containerregistry) is not packaged for Debian, so the anchor is
``crane_export/main.go``: go-containerregistry's ``mutate.Extract`` algorithm written against
Go's standard library alone (each blob's sha256 checked as it streams, compress/gzip,
archive/tar, the top layer first, a path written once, whiteouts applied), built here with
Debian's Go. It reads every layer once and extracts nothing: the work the issue names.
Both write to /dev/null; an untimed first run of each writes a file, and the two trees are
compared (names, types, modes, sizes, link targets, file contents). Run with
`.venv/bin/python benchmarks/bench_export.py`; see benchmarks/README.md. Exit status: 0 when
every target is met, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from bench_images import OPAQUE_DIR, ensure_images
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
RESULTS = "export-results.json"
TARGET_RATIO = 0.8  # issue 19: export against crane export's work
SOURCE = HERE / "crane_export" / "main.go"


def build_floor(out: Path) -> Path | None:
    """``crane_export`` built from its source (once per source text), or None without Go."""
    go = shutil.which("go")
    if go is None:
        return None
    text = SOURCE.read_bytes()
    binary = out / f"crane_export-{hashlib.sha256(text).hexdigest()[:12]}"
    if not binary.exists():
        env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(out / "go-cache")}
        done = subprocess.run(
            [go, "build", "-o", str(binary), str(SOURCE)], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return None
    return binary


def tree_of(path: Path) -> dict[str, tuple[str, int, int, str]]:
    """{name: (type, mode, size, content sha256 or link target)} of a flattened tar; a hard
    link counts as the file it names."""
    found: dict[str, tuple[str, int, int, str]] = {}
    links: dict[str, str] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            name = member.name.rstrip("/")
            if member.islnk():
                links[name] = member.linkname.rstrip("/")
            elif member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                digest = hashlib.sha256(extracted.read()).hexdigest()
                found[name] = ("file", member.mode, member.size, digest)
            elif member.isdir():
                found[name] = ("dir", member.mode, 0, "")
            elif member.issym():
                found[name] = ("symlink", member.mode, 0, member.linkname)
            else:
                found[name] = (str(member.type), member.mode, 0, "")
    for name, target in links.items():
        found[name] = found.get(target, ("dangling link", 0, 0, target))
    return found


def compare(ours: Path, theirs: Path) -> tuple[list[str], int]:
    """What differs between the two trees, and how many of crane's entries lie in the
    directory the image makes opaque: mutate.Extract takes ``.wh..wh..opq`` for the whiteout
    of a file named ``.wh..opq``, so the lower layers' files stay in its tree (they are not
    counted as a difference; export hides them, as the OCI spec and every engine do)."""
    a, b = tree_of(ours), tree_of(theirs)
    problems = []
    kept_below_opaque = 0
    for name in sorted(set(a) | set(b)):
        if name == "" or a.get(name) == b.get(name):
            continue
        if name.startswith(OPAQUE_DIR + "/") and name not in a:
            kept_below_opaque += 1
            continue
        # crane writes only the directories some layer lists; export also writes the parents
        # no layer lists (0755): those alone are not a difference in the tree
        if name not in b and a[name][0] == "dir":
            continue
        problems.append(f"{name}: export {a.get(name)}, crane's work {b.get(name)}")
    return problems, kept_below_opaque


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each")
    big_image_arguments(ap)
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report = Report.begin()
    data = report.data
    meta, _ = ensure_images(
        out,
        seed=args.seed,
        scale=args.scale,
        level=args.gzip_level,
        legacy=True,  # the parameters of bench_inspect_verify: its cache
        workers=args.workers,
        force=args.regenerate,
    )
    big = meta["big"]
    blob_dir = out / big["blobs"]["dir"]
    layers = big["oci"]["layers"]
    archive = out / big["oci"]["archive"]
    blobs = [blob_dir / layer["digest"].removeprefix("sha256:") for layer in layers]
    floor = build_floor(out)
    if floor is None:
        report.fail("crane_export", "not built", "built", "apt-get install golang-go")
        return finish(report, out, RESULTS)
    cli = require_cli(report, args.cli)
    if cli is None:
        return finish(report, out, RESULTS)
    data["warm_cache"] = warm_inputs([archive, *blobs])
    layer_args = [f"{blob}:{blob.name}" for blob in blobs]
    runs: dict[str, list[Run]] = {"export": [], "crane": []}
    problems: list[str] = []

    def command(name: str, target: str) -> list[str]:
        if name == "export":
            return [*cli, "export", str(archive), "-o", target]
        return [str(floor), target, *layer_args]

    def job(name: str, target: str = os.devnull) -> float:
        run = run_child(command(name, target), peak=VMHWM)
        runs[name].append(run)
        if run.returncode != 0:
            problems.append(f"{name} exit {run.returncode}: {run.stderr.decode()[-300:]}")
        return run.seconds

    print("first runs (untimed): both written to files and their trees compared", flush=True)
    files = {name: out / f"export-{name}.tar" for name in runs}
    for name, path in files.items():
        job(name, str(path))
    differences, crane_opaque = compare(files["export"], files["crane"])
    for path in files.values():
        path.unlink(missing_ok=True)
    for kept in runs.values():
        kept.clear()
    print(f"timing: {args.reps} runs of each, interleaved, to {os.devnull}", flush=True)
    times = interleaved({name: lambda name=name: job(name) for name in runs}, args.reps)
    ratio = median(times["export"]) / median(times["crane"])
    cpu = {name: median([r.cpu_seconds for r in kept]) for name, kept in runs.items()}
    peak = {name: max(r.tree_rss_bytes for r in kept) for name, kept in runs.items()}
    report.add("info: image", f"{len(layers)} gzip layers, {meta['totals']['regular_files']} files")
    report.add("crane export's work (Go, one pass)", fmt_runs(times["crane"]))
    report.add("dockscope export", fmt_runs(times["export"]))
    report.add(
        "export / crane's work", f"{ratio:.2f}x", f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO
    )
    report.add(
        "info: CPU seconds export / crane's work", f"{cpu['export']:.2f} / {cpu['crane']:.2f}"
    )
    report.add(
        "info: peak RSS export (with its workers, summed) / crane's work",
        f"{fmt_mb(peak['export'])} / {fmt_mb(peak['crane'])}",
    )
    report.add(
        "the same tree",
        "yes" if not differences else f"{len(differences)} differences: {differences[:3]}",
        "yes",
        not differences,
    )
    report.add(
        f"info: crane's work keeps the files below the opaque {OPAQUE_DIR}/",
        str(crane_opaque),
    )
    if problems:
        report.add("every run succeeded", "; ".join(problems[:3]), "yes", False)
    data.update(times=times, ratio=ratio, cpu_seconds=cpu, peak_rss=peak)
    any_data: dict[str, Any] = data
    any_data["differences"] = differences[:50]
    json.dumps(any_data)  # the results file must be JSON
    return finish(report, out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
