"""Benchmark `dockscope pull` against `skopeo copy` of the ~1 GiB image from a local registry.

Run with `.venv/bin/python benchmarks/bench_pull.py`; see benchmarks/README.md for what is
measured and the target. Exit status: 0 when every target is met, 1 otherwise (the reasons
are printed).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_images import MIB, ensure_images
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
REPO = HERE.parent
OUT = HERE / "out"
RESULTS = "pull-results.json"
TARGET_RATIO = 1.0
REPOSITORY = "bench"
TAG = "1"


def servers() -> Any:
    """tests/registry/servers.py: the docker-registry starter the tests use."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tests.registry.servers")


@contextlib.contextmanager
def registry(work: Path) -> Iterator[Any]:
    """Debian's docker-registry, plain HTTP on 127.0.0.1, its storage under ``work``."""
    started = servers().start_registry("plain", work / "registry")
    try:
        yield started
    finally:
        started.stop()


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"skopeo {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def sync() -> None:
    """Write back what the last run left dirty, so that no run pays for another's writes."""
    os.sync()


def layout_facts(layout: Path) -> tuple[str | None, dict[str, int]]:
    """(the manifest digest index.json names, {blob digest: size}) of an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests") or []
    digest = manifests[0].get("digest") if len(manifests) == 1 else None
    blobs = {
        f"sha256:{p.name}": p.stat().st_size
        for p in (layout / "blobs" / "sha256").iterdir()
        if not p.name.startswith(".")
    }
    return digest, blobs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def check_layout(layout: Path, expected: dict[str, Any], *, hashes: bool) -> list[str]:
    """The pulled layout against the image pushed: its manifest, every blob, byte sizes (and,
    with ``hashes``, every blob's digest recomputed)."""
    try:
        digest, blobs = layout_facts(layout)
    except (OSError, ValueError) as exc:
        return [f"not a readable OCI layout: {exc}"]
    problems = []
    if digest != expected["manifest"]:
        problems.append(f"index.json names {digest}, not {expected['manifest']}")
    if blobs != expected["blobs"]:
        missing = sorted(set(expected["blobs"]) - set(blobs))
        extra = sorted(set(blobs) - set(expected["blobs"]))
        problems.append(f"blobs differ: missing {missing[:3]}, extra {extra[:3]}")
    if hashes and not problems:
        for name in expected["blobs"]:
            path = layout / "blobs" / "sha256" / name.removeprefix("sha256:")
            if sha256_file(path) != name:
                problems.append(f"{name}: the bytes written do not hash to it")
    return problems


def diff_id_cost(blob_dir: Path, layers: list[dict[str, Any]]) -> float:
    """CPU seconds to inflate and sha256 every layer once (the diff_ids), with the same
    LayerStream pull uses: what a pull that checks diff_ids pays on top of skopeo's copy."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from inspect_tool.layers.decompress import LayerStream

    start = time.process_time()
    for layer in layers:
        with open(blob_dir / layer["digest"].removeprefix("sha256:"), "rb") as raw:
            stream = LayerStream(raw, hash_raw=False)
            stream.finish()
        if "sha256:" + stream.diff_id_hex != layer["diff_id"]:
            raise SystemExit(f"{layer['digest']}: diff_id {stream.diff_id_hex}")
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each command")
    big_image_arguments(ap)
    args = ap.parse_args(argv)
    out: Path = args.out
    report = Report.begin()
    data = report.data
    for tool in ("skopeo", "/usr/bin/docker-registry"):
        if shutil.which(tool) is None:
            report.fail(tool, "missing", "installed", "apt-get install skopeo docker-registry")
            return finish(report, out, RESULTS)
    data["skopeo"] = skopeo("--version").strip()

    meta, generated = ensure_images(
        out,
        seed=args.seed,
        scale=args.scale,
        level=args.gzip_level,
        legacy=True,  # the same parameters as bench_inspect_verify: its cache is reused
        workers=args.workers,
        force=args.regenerate,
    )
    big = meta["big"]
    layers = big["oci"]["layers"]
    blob_bytes = sum(layer["size"] for layer in layers)
    print(
        f"image ({'generated now' if generated else 'cached'}): {len(layers)} gzip layers, "
        f"{blob_bytes / MIB:.0f} MiB of blobs, {meta['totals']['regular_files']} files",
        flush=True,
    )
    expected = {
        "manifest": big["oci"]["manifest_digest"],
        "blobs": {
            big["blobs"]["manifest"]: 0,
            big["blobs"]["config"]: 0,
            **{layer["digest"]: layer["size"] for layer in layers},
        },
    }
    blob_dir = out / big["blobs"]["dir"]
    for name in (big["blobs"]["manifest"], big["blobs"]["config"]):
        expected["blobs"][name] = (blob_dir / name.removeprefix("sha256:")).stat().st_size

    cli = require_cli(report, args.cli)
    if cli is None:
        return finish(report, out, RESULTS)

    work = Path(tempfile.mkdtemp(prefix="pull-", dir=out))
    try:
        with registry(work) as started:
            return measure(report, args, cli, started, work, out, expected, blob_bytes, layers)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(
    report: Report,
    args: Any,
    cli: list[str],
    started: Any,
    work: Path,
    out: Path,
    expected: dict[str, Any],
    blob_bytes: int,
    layers: list[dict[str, Any]],
) -> int:
    data = report.data
    reference = f"{started.host}/{REPOSITORY}:{TAG}"
    archive = out / "big-oci.tar"
    print(f"pushing {archive.name} to docker://{reference} with skopeo copy", flush=True)
    skopeo(
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        f"oci-archive:{archive}:big",
        f"docker://{reference}",
    )
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").encode()
    pushed = "sha256:" + hashlib.sha256(raw).hexdigest()
    report.add(
        "the registry serves the generator's manifest",
        pushed[:19],
        expected["manifest"][:19],
        pushed == expected["manifest"],
    )
    stored = sorted((started.root / "data").rglob("data"))
    data["warm_cache"] = warm_inputs(stored, "the registry's blob files")

    env = dict(os.environ)
    runs: dict[str, list[Run]] = {"cold": [], "verify": [], "warm": [], "skopeo": []}
    problems: dict[str, list[str]] = {"cold": [], "verify": [], "warm": [], "skopeo": []}
    warm_cache = work / "warm-cache"
    counter = iter(range(1_000_000))

    def destination() -> Path:
        return work / f"out-{next(counter)}"

    def pull(
        name: str, cache: Path | None, *, check_hashes: bool = False, verify: bool = False
    ) -> Callable[[], float]:
        options = ["--verify"] if verify else []

        def job() -> float:
            target = destination()
            fresh = cache or work / f"cache-{next(counter)}"
            child_env = {**env, "DOCKSCOPE_CACHE": str(fresh)}
            sync()
            command = [*cli, "pull", "--json", *options, reference, str(target)]
            run = run_child(command, env=child_env, peak=VMHWM)
            runs[name].append(run)
            if run.returncode != 0:
                problems[name].append(
                    f"exit {run.returncode}: {run.stderr.decode(errors='replace')[-400:]}"
                )
            else:
                problems[name] += check_layout(target, expected, hashes=check_hashes)
                document = json.loads(run.stdout)
                if document.get("ok") is not True:
                    problems[name].append(f"--json says ok {document.get('ok')!r}")
                checked = (document.get("verified") or {}).get("diff_ids_checked")
                if checked is not verify:
                    problems[name].append(f"--json says diff_ids_checked {checked!r}")
            shutil.rmtree(target, ignore_errors=True)
            if cache is None:
                shutil.rmtree(fresh, ignore_errors=True)
            return run.seconds

        return job

    def skopeo_copy(*, check_hashes: bool = False) -> float:
        target = destination()
        sync()
        run = run_child(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                f"docker://{reference}",
                f"oci:{target}",
            ],
            env=env,
            peak=VMHWM,
        )
        runs["skopeo"].append(run)
        if run.returncode != 0:
            problems["skopeo"].append(f"exit {run.returncode}: {run.stderr.decode()[-400:]}")
        else:
            problems["skopeo"] += check_layout(target, expected, hashes=check_hashes)
        shutil.rmtree(target, ignore_errors=True)
        return run.seconds

    # Untimed, checked first runs: every blob written hashed again here. The warm cache is
    # filled by its first run.
    print("warm-up runs (checked, not timed)", flush=True)
    skopeo_copy(check_hashes=True)
    pull("cold", None, check_hashes=True)()
    pull("verify", None, verify=True)()
    pull("warm", warm_cache, check_hashes=True)()
    first = {name: list(kept) for name, kept in runs.items()}
    for kept in runs.values():
        kept.clear()

    print(f"timing: {args.reps} runs of each, interleaved", flush=True)
    times = interleaved(
        {
            "skopeo": skopeo_copy,
            "cold": pull("cold", None),
            "verify": pull("verify", None, verify=True),
            "warm": pull("warm", warm_cache),
        },
        args.reps,
    )
    m_skopeo, m_cold, m_verify, m_warm = (
        median(times[k]) for k in ("skopeo", "cold", "verify", "warm")
    )
    ratio = m_cold / m_skopeo
    rss = {k: max(r.maxrss_bytes for r in runs[k] + first[k]) for k in runs}
    cpu = {k: median([r.cpu_seconds for r in runs[k]]) for k in runs}
    n = args.reps
    report.add("blobs pulled", f"{blob_bytes / MIB:.0f} MiB in {len(expected['blobs'])} blobs")
    report.add(f"skopeo copy docker:// oci: (median of {n})", fmt_runs(times["skopeo"]))
    report.add(f"dockscope pull, cold blob cache (median of {n})", fmt_runs(times["cold"]))
    report.add(
        "pull (cold cache) / skopeo copy", f"{ratio:.2f}x", f"<= {TARGET_RATIO:.2f}x", ratio <= 1.0
    )
    report.add(f"dockscope pull --verify, cold cache (median of {n})", fmt_runs(times["verify"]))
    report.add("info: pull --verify / skopeo copy", f"{m_verify / m_skopeo:.2f}x")
    report.add(f"dockscope pull, warm blob cache (median of {n})", fmt_runs(times["warm"]))
    report.add("info: pull (warm cache) / skopeo copy", f"{m_warm / m_skopeo:.2f}x")
    report.add(
        "peak RSS (VmHWM of the process; --verify's 2 workers apart): pull cold / --verify / warm",
        f"{fmt_mb(rss['cold'])} / {fmt_mb(rss['verify'])} / {fmt_mb(rss['warm'])}",
    )
    report.add("info: peak RSS: skopeo copy", fmt_mb(rss["skopeo"]))
    inflate = diff_id_cost(out / "blobs" / "sha256", layers)
    data["diff_id_cpu_seconds"] = inflate
    report.add("info: CPU to inflate and hash every layer once (the diff_ids)", f"{inflate:.2f} s")
    report.add(
        "info: CPU time (user+sys): skopeo / pull cold / pull --verify / pull warm",
        f"{cpu['skopeo']:.2f} / {cpu['cold']:.2f} / {cpu['verify']:.2f} / {cpu['warm']:.2f} s",
    )
    for name, label in (
        ("cold", "pull, cold"),
        ("verify", "pull --verify"),
        ("warm", "pull, warm"),
        ("skopeo", "skopeo"),
    ):
        found = problems[name]
        report.add(
            f"{label}: every run exit 0, the pushed manifest and every blob in the layout",
            "yes" if not found else f"no ({found[0][:80]})",
            "yes",
            not found,
        )
    data["reference"] = f"docker://{reference}"
    data["timings_seconds"] = times
    data["first_runs_seconds"] = {k: [r.seconds for r in v] for k, v in first.items()}
    data["medians_seconds"] = {
        "skopeo": m_skopeo,
        "pull_cold": m_cold,
        "pull_verify": m_verify,
        "pull_warm": m_warm,
    }
    data["ratio_pull_cold_over_skopeo"] = ratio
    data["ratio_pull_verify_over_skopeo"] = m_verify / m_skopeo
    data["peak_rss_bytes"] = {k: [r.maxrss_bytes for r in first[k] + runs[k]] for k in runs}
    data["cpu_seconds"] = {k: [r.cpu_seconds for r in runs[k]] for k in runs}
    data["problems"] = problems
    return finish(report, out, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
