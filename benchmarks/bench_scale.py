"""How inspect, verify, ls -R, diff, efficiency and unpack grow with files and with layers.

Images of N small files (0-200 bytes, 100 per directory, spread evenly over L gzip -1
layers, each layer its own directories) for N in 10k / 100k / 1M and L in 1 / 12 / 127
(the grid: N varies at 12 layers, L varies at 100k files). Each command runs as a child
process (start-up included) on a warm page cache, ``--reps`` times, interleaved; the median
is reported with the time per 1,000 files, so growth worse than linear shows as a rising
per-file cost (µs/file). Writes ``out/scale-results.json``, prints a Markdown table and, with
matplotlib installed (the ``bench`` extra), a PNG plot (``--plot``).

``--quick``: 10k and 100k files only (the 1M-file image takes minutes per command on a loaded
2-core machine).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from bench_images import LayerResult, _config, _index, _manifest, _sha, _write_oci_archive
from bench_layer_images import ustar_header
from harness import VMHWM, arguments, find_cli, median, run_child

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = "scale-results.json"
PER_DIR = 100
GENERATOR_VERSION = 1
COMMANDS = ("inspect", "verify", "ls -R", "diff", "efficiency", "unpack")


def _layer(index: int, files: int) -> tuple[LayerResult, bytes]:
    """``files`` small files below ``l<index>/dNNNNN/``: gzip -1 of a hand-written ustar."""
    raw = io.BytesIO()
    w = raw.write
    w(ustar_header(b"l%d/" % index, 0, True))
    for i in range(files):
        if i % PER_DIR == 0:
            w(ustar_header(b"l%d/d%05d/" % (index, i // PER_DIR), 0, True))
        size = (i * 37) % 201
        w(ustar_header(b"l%d/d%05d/f%03d" % (index, i // PER_DIR, i % PER_DIR), size, False))
        if size:
            w((b"%d:%d " % (index, i) * 50)[:size].ljust(512, b"\0"))
    w(b"\0" * 1024)
    tar = raw.getvalue()
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    blob = comp.compress(tar) + comp.flush()
    return LayerResult(index, _sha(blob), len(blob), _sha(tar), len(tar), files=files), blob


def make_image(out: Path, files: int, layers: int) -> Path:
    name = f"scale-{files}-{layers}.tar"
    path = out / name
    stamp = out / (name + ".json")
    params = {"version": GENERATOR_VERSION, "files": files, "layers": layers}
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == params:
        return path
    start = time.perf_counter()
    results, blobs = [], {}
    for k in range(layers):
        per = files // layers + (1 if k < files % layers else 0)
        result, blob = _layer(k, per)
        results.append(result)
        blobs[result.digest.removeprefix("sha256:")] = blob
    config = _config(results, f"scale-{files}-{layers}")
    manifest = _manifest(config, results)
    for b in (config, manifest):
        blobs[_sha(b).removeprefix("sha256:")] = b
    _write_oci_archive(path, _index(manifest, "scale"), blobs, {})
    stamp.write_text(json.dumps(params))
    print(f"  generated {name} in {time.perf_counter() - start:.1f} s", flush=True)
    return path


def grid(quick: bool) -> list[tuple[int, int]]:
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    cells = [(n, 12) for n in sizes] + [(100_000, 1), (100_000, 127)]
    return sorted(set(cells))


def commands(cli: list[str], image: Path, small: Path, work: Path) -> dict[str, list[str]]:
    return {
        "inspect": [*cli, "inspect", "--json", str(image)],
        "verify": [*cli, "verify", "--json", str(image)],
        "ls -R": [*cli, "ls", "-R", str(image), "/"],
        "diff": [*cli, "diff", str(small), str(image)],
        "efficiency": [*cli, "efficiency", str(image)],
        "unpack": [*cli, "unpack", str(image), str(work / "rootfs")],
    }


def measure(cli: list[str], out: Path, cells: list[tuple[int, int]], reps: int) -> dict[str, Any]:
    work = out / "scale-work"
    small = make_image(out, 10, 1)
    rows: dict[str, Any] = {}
    for files, layers in cells:
        image = make_image(out, files, layers)
        image.read_bytes()  # warm
        cmds = commands(cli, image, small, work)
        times: dict[str, list[float]] = {c: [] for c in cmds}
        peaks: dict[str, int] = {c: 0 for c in cmds}
        cpu: dict[str, list[float]] = {c: [] for c in cmds}
        for _ in range(reps):
            for name, cmd in cmds.items():
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                env = {**os.environ, "DOCKSCOPE_CACHE": str(work / "cache")}
                run = run_child(cmd, env=env, stdout=work / "stdout", peak=VMHWM)
                if run.returncode not in (0, 1):  # diff exits 1 when the images differ
                    raise RuntimeError(f"{name} exit {run.returncode}: {run.stderr[-300:]!r}")
                times[name].append(run.seconds)
                cpu[name].append(run.cpu_seconds)
                peaks[name] = max(peaks[name], run.maxrss_bytes)
        shutil.rmtree(work, ignore_errors=True)
        key = f"{files}x{layers}"
        rows[key] = {
            "files": files,
            "layers": layers,
            "seconds": {c: median(t) for c, t in times.items()},
            "runs": times,
            "cpu_seconds": {c: median(t) for c, t in cpu.items()},
            "cpu_runs": cpu,
            "peak_rss": peaks,
        }
        print(
            f"  {files:>9,} files, {layers:>3} layers: "
            + ", ".join(f"{c} {median(t):.2f}s" for c, t in times.items()),
            flush=True,
        )
    return rows


def table(rows: dict[str, Any]) -> str:
    head = "| files | layers | " + " | ".join(COMMANDS) + " |"
    lines = [head, "|" + " --- |" * (2 + len(COMMANDS))]
    for row in sorted(rows.values(), key=lambda r: (r["layers"] != 12, r["files"], r["layers"])):
        cells = []
        for c in COMMANDS:
            s = row["seconds"][c]
            per_file = s / row["files"] * 1e6
            mb = row["peak_rss"][c] / 1e6
            cell = f"{s:.2f} s · {per_file:.0f} µs/file · {mb:.0f} MB"
            if "cpu_seconds" in row:  # CPU time: growth that background load does not blur
                cell += f" · CPU {row['cpu_seconds'][c] / row['files'] * 1e6:.0f} µs/file"
            cells.append(cell)
        lines.append(f"| {row['files']:,} | {row['layers']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_cpu = all("cpu_seconds" in r for r in rows.values())
    measures = [("seconds", "wall seconds")] + (
        [("cpu_seconds", "CPU seconds")] if with_cpu else []
    )
    fig, axes = plt.subplots(len(measures), 2, figsize=(11, 4.5 * len(measures)), squeeze=False)
    files_rows = sorted((r for r in rows.values() if r["layers"] == 12), key=lambda r: r["files"])
    layer_rows = sorted(
        (r for r in rows.values() if r["files"] == 100_000), key=lambda r: r["layers"]
    )
    for (key, label), (by_files, by_layers) in zip(measures, axes, strict=True):
        for c in COMMANDS:
            by_files.plot(
                [r["files"] for r in files_rows], [r[key][c] for r in files_rows], "o-", label=c
            )
            by_layers.plot(
                [r["layers"] for r in layer_rows], [r[key][c] for r in layer_rows], "o-", label=c
            )
        if files_rows:  # linear growth from the smallest image, for reference
            r0 = files_rows[0]
            xs = [r["files"] for r in files_rows]
            by_files.plot(
                xs, [r0[key]["ls -R"] * x / r0["files"] for x in xs], "k:", label="linear (ls)"
            )
        by_files.set(xscale="log", yscale="log", xlabel="files (12 layers)", ylabel=label)
        by_layers.set(xscale="log", xlabel="layers (100,000 files)", ylabel=label)
        by_files.legend(fontsize=8)
        by_files.grid(True, which="both", alpha=0.3)
        by_layers.grid(True, which="both", alpha=0.3)
    fig.suptitle("dockscope: time per command (median, start-up included)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--quick", action="store_true", help="10k and 100k files only")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--plot", type=Path, help="write the PNG plot here (needs matplotlib)")
    ap.add_argument("--table", action="store_true", help="print the last results, run nothing")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(json.loads((out / RESULTS).read_text())["rows"]))
        return 0
    cli = find_cli(args.cli)
    if cli is None:
        print("no dockscope command found", file=sys.stderr)
        return 1
    load = os.getloadavg()
    rows = measure(cli, out, grid(args.quick), args.reps)
    result = {"loadavg": [load, os.getloadavg()], "reps": args.reps, "rows": rows}
    (out / RESULTS).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end\n")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
