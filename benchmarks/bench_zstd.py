"""`dockscope verify` on zstd layers against `zstd -dc | sha256sum` (issue 19, informational).

The largest gzip layers of the big image (``--layers``, default 3) are inflated and
recompressed with the zstd command (level 3, one frame each, as buildah and podman write
them) into an OCI layout under ``--work`` (default ``out/zstd``, reused when present). The
floor hashes each blob with ``sha256sum`` and its ``zstd -dc`` output with ``sha256sum``, the
layers split over two shell jobs (as verify runs two layers at a time); a second floor does the
same with python-zstandard and hashlib in two processes (``--hash``: the libraries verify
uses, nothing else). `verify --json` on the layout and the floors run interleaved, ``--reps``
rounds after one warm-up. Prints the medians, the ratios, CPU seconds and verify's peak RSS;
writes ``zstd-results.json`` under ``--work``.

libzstd decodes one frame on one thread (its multi-threading is for compression), and
python-zstandard's only parallel decoding (``multi_decompress_to_buffer``) takes whole
independent frames in memory: neither splits a single-frame layer over cores, so two layers at
a time is what both sides do.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from harness import VMHWM, find_cli, fmt_mb, fmt_runs, interleaved, median, run_child

HERE = Path(__file__).resolve().parent
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


def _blob(root: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest, len(data)


def make_layout(source: Path, work: Path, count: int) -> list[Path]:
    """The ``count`` largest gzip layer blobs of ``source/blobs`` as a zstd OCI layout."""
    blobs = sorted((source / "blobs" / "sha256").iterdir(), key=lambda p: -p.stat().st_size)
    layers = [p for p in blobs if p.read_bytes()[:2] == b"\x1f\x8b"][:count]
    layout = work / "layout"
    saved = work / "manifest.json"  # the layout's manifest, for reuse
    if (layout / "index.json").is_file() and saved.is_file():
        manifest = json.loads(saved.read_text())
        return [layout / "blobs" / "sha256" / d["digest"][7:] for d in manifest["layers"]]
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    descriptors, diff_ids = [], []
    for path in layers:
        tar = gzip.decompress(path.read_bytes())
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        packed = subprocess.run(
            ["zstd", "-3", "-T2", "-q", "-c"], input=tar, capture_output=True, check=True
        ).stdout
        digest, size = _blob(layout, packed)
        descriptors.append({"mediaType": ZSTD_LAYER, "digest": digest, "size": size})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_digest, config_size = _blob(layout, config)
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descriptors,
    }
    manifest = json.dumps(manifest_doc).encode()
    digest, size = _blob(layout, manifest)
    saved.write_bytes(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": manifest_doc["mediaType"], "digest": digest, "size": size}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return [layout / "blobs" / "sha256" / d["digest"][7:] for d in descriptors]


def hash_blobs(paths: list[str]) -> int:
    """The same-library floor: python-zstandard and hashlib, as verify uses them, nothing else."""
    import zstandard

    for path in paths:
        raw_hash, tar_hash = hashlib.sha256(), hashlib.sha256()
        with open(path, "rb") as f:
            raw_hash.update(f.read())
            f.seek(0)
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            while data := reader.read(4 << 20):
                tar_hash.update(data)
        print(path, raw_hash.hexdigest(), tar_hash.hexdigest())
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--hash"]:
        return hash_blobs(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "out", help="the big image's cache")
    ap.add_argument("--work", type=Path, default=HERE / "out" / "zstd")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    cli = find_cli(None)
    if cli is None or shutil.which("zstd") is None:
        print("needs the dockscope CLI and the zstd command", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    blobs = make_layout(args.out, args.work, args.layers)
    jobs: list[list[str]] = [[], []]
    for i, blob in enumerate(blobs):
        jobs[i % 2].append(f"sha256sum {blob} >/dev/null; zstd -dc {blob} | sha256sum >/dev/null")
    script = " & ".join("(" + "; ".join(job) + ")" for job in jobs if job) + " & wait"
    floor_cmd = ["bash", "-c", script]
    me = [sys.executable, str(Path(__file__).resolve()), "--hash"]
    halves = [[str(b) for b in blobs[i::2]] for i in range(2)]
    library_cmd = ["bash", "-c", " & ".join(shlex.join(me + h) for h in halves if h) + " & wait"]
    verify_cmd = [*cli, "verify", "--json", str(args.work / "layout")]
    cpu: dict[str, list[float]] = {"floor": [], "library": [], "verify": []}
    rss: list[int] = []

    def floor() -> float:
        run = run_child(floor_cmd)
        cpu["floor"].append(run.cpu_seconds)
        return run.seconds

    def library() -> float:
        run = run_child(library_cmd)
        cpu["library"].append(run.cpu_seconds)
        return run.seconds

    def verify() -> float:
        run = run_child(verify_cmd, peak=VMHWM)
        if run.returncode != 0:
            raise SystemExit(f"verify failed: {run.stderr.decode()[-500:]}")
        cpu["verify"].append(run.cpu_seconds)
        rss.append(run.maxrss_bytes)
        return run.seconds

    floor(), library(), verify()  # warm-up, page cache
    cpu = {"floor": [], "library": [], "verify": []}
    rss.clear()
    times = interleaved({"floor": floor, "library": library, "verify": verify}, args.reps)
    load = os.getloadavg()
    ratio = median(times["verify"]) / median(times["floor"])
    sizes = sum(b.stat().st_size for b in blobs)
    print(f"{len(blobs)} zstd layers, {sizes / 2**20:.0f} MiB compressed; load {load[0]:.1f}")
    print(f"floor (sha256sum + zstd -dc | sha256sum, 2 jobs): {fmt_runs(times['floor'])}")
    print(f"python-zstandard + hashlib, 2 processes: {fmt_runs(times['library'])}")
    print(f"verify --json: {fmt_runs(times['verify'])}")
    library_ratio = median(times["verify"]) / median(times["library"])
    print(f"verify / floor: {ratio:.2f}x; verify / same-library floor: {library_ratio:.2f}x")
    print(
        "CPU seconds floor / same-library floor / verify: "
        f"{median(cpu['floor']):.2f} / {median(cpu['library']):.2f} / "
        f"{median(cpu['verify']):.2f}; verify peak RSS {fmt_mb(max(rss))}"
    )
    results = {
        "times": times,
        "cpu": cpu,
        "ratio": ratio,
        "library_ratio": library_ratio,
        "rss": rss,
        "load": load,
        "compressed_bytes": sizes,
    }
    (args.work / "zstd-results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
