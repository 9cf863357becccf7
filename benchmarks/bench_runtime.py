"""Benchmark `dockscope run` against `podman run` (runc): warm start, and a ~100 MB cold start,
both with `--network none` on each side (and each one's default network, for information).

Run as root with `.venv/bin/python benchmarks/bench_runtime.py`; see benchmarks/README.md for
what is measured and the target. Exit status: 0 when every target is met, 1 otherwise (the
reasons are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_images import (
    MIB,
    LayerResult,
    LayerSpec,
    _config,
    _index,
    _make_layer,
    _manifest,
    _sha,
    _write_oci_archive,
)
from harness import (
    Report,
    Run,
    Trees,
    arguments,
    finish,
    fmt_runs,
    interleaved,
    median,
    require_cli,
)
from harness import run_child as run_process

from runtime_lab.kernel.cgroups import dockscope_groups, own_cgroup_path

if TYPE_CHECKING:
    from tests.interop.test_storage_podman import StorePeers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
RESULTS = "runtime-results.json"
BUSYBOX = REPO / "sample_images" / "busybox.tar"
TARGET_WARM_RATIO = 0.6  # warm and cold, --network none on both sides
TARGET_TRACE_COST = 1.10  # a traced warm run, at most 10 % more than an untraced one
NONE = "none"  # --network none; None: each tool's default network

# The ~100 MB image: the busybox layer (so that `true` runs), then data layers written by
# bench_images' layer generator: (small files, MiB of file content) per layer.
GENERATOR_VERSION = 1
DATA_LAYER_PLAN: tuple[tuple[int, int], ...] = ((3000, 40), (2000, 35), (1000, 25))
GZIP_LEVEL = 6
IMAGE_ARCHIVE = "runtime-100m-oci.tar"
IMAGE_STAMP = "runtime-image.json"
IMAGE_REF = "localhost/dockscope-bench/runtime:100m"
WORK = "runtime-work"  # dockscope's state roots, removed at the end
# podman's stores go to a short temporary directory: podman refuses a run root longer than
# 50 characters (conmon's socket paths). /tmp is the same file system here (checked).
PODMAN_PREFIX = "dockscope-bench-"


def run_child(cmd: list[str], env: dict[str, str], check: int | None = 0) -> Run:
    """Run cmd to completion; with check set, any other exit status ends the benchmark."""
    run = run_process(cmd, env=env)
    if check is not None and run.returncode != check:
        raise BenchError(
            f"{shlex.join(cmd)} exited {run.returncode} (expected {check}): "
            f"{run.stderr.decode(errors='replace')[-2000:]}"
        )
    return run


class BenchError(RuntimeError):
    pass


# -- the ~100 MB image ----------------------------------------------------------------------


@dataclass(frozen=True)
class Busybox:
    """The layer and the identity of sample_images/busybox.tar (a docker save archive)."""

    path: Path
    layer_tar: bytes
    diff_id: str
    image_id: str


def _member(archive: tarfile.TarFile, path: Path, name: str) -> bytes:
    """The content of the file ``name`` in the tar ``archive`` read from ``path``."""
    f = archive.extractfile(name)
    if f is None:
        raise BenchError(f"{path}: {name} is not a file")
    return f.read()


def read_busybox(path: Path) -> Busybox:
    with tarfile.open(path) as archive:
        entry = json.loads(_member(archive, path, "manifest.json"))[0]
        config_bytes = _member(archive, path, entry["Config"])
        layer_tar = _member(archive, path, entry["Layers"][0])
    config = json.loads(config_bytes)
    diff_id = _sha(layer_tar)
    if len(entry["Layers"]) != 1 or config["rootfs"]["diff_ids"] != [diff_id]:
        raise BenchError(f"{path}: expected one uncompressed layer matching its diff_id")
    return Busybox(path, layer_tar, diff_id, _sha(config_bytes))


def _stamp_params(seed: int, busybox: Busybox) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "plan": [list(p) for p in DATA_LAYER_PLAN],
        "gzip_level": GZIP_LEVEL,
        "busybox_diff_id": busybox.diff_id,
    }


def ensure_image(
    out: Path, busybox: Busybox, seed: int, force: bool
) -> tuple[dict[str, Any], bool]:
    """The busybox layer plus ~100 MiB of data layers as an OCI archive; (facts, generated now).

    Same seed and busybox binary, same bytes. Cached by IMAGE_STAMP like bench_images.py."""
    stamp = out / IMAGE_STAMP
    params = _stamp_params(seed, busybox)
    if stamp.is_file() and not force:
        meta: dict[str, Any] = json.loads(stamp.read_text())
        archive = out / meta.get("archive", IMAGE_ARCHIVE)
        if (
            meta.get("params") == params
            and archive.is_file()
            and archive.stat().st_size == meta["archive_size"]
        ):
            return meta, False
    stamp.unlink(missing_ok=True)
    print(f"generating the ~100 MB image in {out} (seed {seed})", flush=True)
    start = time.perf_counter()
    blob_dir = out / "runtime-blobs"
    shutil.rmtree(blob_dir, ignore_errors=True)
    blob_dir.mkdir(parents=True)
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    blob = comp.compress(busybox.layer_tar) + comp.flush()
    base = LayerResult(0, _sha(blob), len(blob), busybox.diff_id, len(busybox.layer_tar))
    (blob_dir / base.digest.removeprefix("sha256:")).write_bytes(blob)
    layers = [base]
    for i, (n_files, mib) in enumerate(DATA_LAYER_PLAN, start=1):
        spec = LayerSpec(
            index=i,
            seed=seed * 1000 + i,
            small_files=n_files,
            content_bytes=mib * MIB,
            level=GZIP_LEVEL,
            blob_dir=str(blob_dir),
            raw_path=None,
            top=False,
        )
        layers.append(_make_layer(spec))
        print(
            f"  layer {i}: {layers[-1].files} files, {layers[-1].content_bytes / MIB:.1f} MiB "
            f"-> {layers[-1].size / MIB:.1f} MiB gzip",
            flush=True,
        )
    config = _config(layers, "runtime-100m")
    manifest = _manifest(config, layers)
    index = _index(manifest, IMAGE_REF)
    small = {_sha(b).removeprefix("sha256:"): b for b in (config, manifest)}
    files = {x.digest.removeprefix("sha256:"): blob_dir / x.digest[7:] for x in layers}
    archive = out / IMAGE_ARCHIVE
    _write_oci_archive(archive, index, small, files)
    shutil.rmtree(blob_dir)
    meta = {
        "params": params,
        "archive": archive.name,
        "archive_size": archive.stat().st_size,
        "ref": IMAGE_REF,
        "image_id": _sha(config),
        "manifest_digest": _sha(manifest),
        "generation_seconds": round(time.perf_counter() - start, 2),
        "layers": [asdict(x) for x in layers],
        "totals": {
            "layers": len(layers),
            "regular_files": sum(x.files for x in layers[1:]),
            "content_bytes": sum(x.content_bytes for x in layers[1:]) + len(busybox.layer_tar),
            "layer_tar_bytes": sum(x.tar_size for x in layers),
            "layer_blob_bytes": sum(x.size for x in layers),
        },
    }
    stamp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta, True


def layer_blobs(archive: Path, dest: Path) -> list[Path]:
    """The image's layer blobs written out as files, bottom first (for the GNU tar floor)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        index = json.loads(_member(tar, archive, "index.json"))
        manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
        manifest = json.loads(_member(tar, archive, manifest_name))
        paths = []
        for layer in manifest["layers"]:
            hexd = layer["digest"].removeprefix("sha256:")
            path = dest / hexd
            path.write_bytes(_member(tar, archive, f"blobs/sha256/{hexd}"))
            paths.append(path)
    return paths


# -- the two runtimes -----------------------------------------------------------------------


class Dockscope:
    """`dockscope run` with its own state root (DOCKSCOPE_ROOT).

    Warm includes Python's bytecode cache: with PYTHONDONTWRITEBYTECODE set (some shells and
    CI set it) every module without a .pyc beside it is compiled again on every run. The
    children write and read their .pyc files under ``pycache`` instead (PYTHONPYCACHEPREFIX),
    so nothing is written into the source tree and the warm-up runs fill the cache."""

    def __init__(self, cli: list[str], root: Path, pycache: Path) -> None:
        self.cli = cli
        self.root = root
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env = {**env, "DOCKSCOPE_ROOT": str(root), "PYTHONPYCACHEPREFIX": str(pycache)}

    def run(
        self,
        image: Path,
        *argv: str,
        trace: Path | None = None,
        check: int = 0,
        network: str | None = NONE,
    ) -> Run:
        extra = ["--trace-json", str(trace)] if trace else []
        if network is not None:
            extra += ["--network", network]
        return run_child([*self.cli, "run", "--rm", *extra, str(image), *argv], self.env, check)

    def containers(self) -> list[str]:
        d = self.root / "containers"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def remove(self) -> None:
        """`dockscope cleanup` on the state root, then delete it."""
        if self.root.exists():
            run_child([*self.cli, "cleanup"], self.env, check=None)
            unmount_below(self.root)
            shutil.rmtree(self.root)


def store_peers(root: Path) -> StorePeers:
    """tests/interop's peers on an isolated overlay store (the repo root must be importable)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    module = importlib.import_module("tests.interop.test_storage_podman")
    peers: StorePeers = module.StorePeers(root, "overlay")
    return peers


class Podman:
    """podman on an isolated overlay store (storage.conf, registries.conf, policy, containers.conf
    and the environment from tests/interop), the OCI runtime named on the command line."""

    def __init__(self, root: Path, runtime: str) -> None:
        self.root = root
        self.peers = store_peers(root)
        self.runtime = runtime
        # podman's default RLIMIT_NOFILE/NPROC are beyond what runc may set here (no
        # CAP_SYS_RESOURCE): the limits tests/interop uses, no higher than ours.
        self.ulimits: list[str] = []
        for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
            limit = min(4096, resource.getrlimit(which)[0])
            self.ulimits += ["--ulimit", f"{name}={limit}:{limit}"]

    def argv(self, *args: str) -> list[str]:
        return ["podman", *self.peers._podman_flags(), "--runtime", self.runtime, *args]

    def load(self, archive: Path) -> Run:
        return run_child(self.argv("load", "--quiet", "--input", str(archive)), self.peers.env)

    def run_argv(self, image_id: str, *argv: str, network: str | None = NONE) -> list[str]:
        # --network none: a new namespace with only lo, as dockscope's --network none; None:
        # podman's default network (here CNI's bridge cni-podman0, as dockscope's default
        # bridge for root)
        args = ["run", "--rm", "--pull", "never", *self.ulimits]
        if network is not None:
            args += ["--network", network]
        return self.argv(*args, image_id, *argv)

    def run(self, image_id: str, *argv: str, check: int = 0, network: str | None = NONE) -> Run:
        return run_child(self.run_argv(image_id, *argv, network=network), self.peers.env, check)

    def containers(self) -> list[str]:
        run = run_child(self.argv("ps", "--all", "--quiet"), self.peers.env, check=None)
        return run.stdout.decode().split()

    def remove(self) -> None:
        with contextlib.suppress(BenchError, OSError):
            if self.containers():
                run_child(self.argv("rm", "--all", "--force"), self.peers.env, check=None)
        self.peers.cleanup()
        unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix) or p == prefix[:-1]]


def unmount_below(path: Path) -> None:
    for point in sorted(mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


# -- the trace of a run ---------------------------------------------------------------------

# Phases of a warm `dockscope run`, between the fork of the process and the trace events:
# (name, from event, to event); None is the fork (start) or the end of wait4 (end).
PHASES: tuple[tuple[str, str | None, str | None], ...] = (
    ("fork -> image: start-up, imports, read image", None, "image"),
    ("image -> container-dirs: layer store, dirs", "image", "container-dirs"),
    ("-> cgroup-create", "container-dirs", "cgroup-create"),
    ("-> cgroup-attach: fork the shim, attach", "cgroup-create", "cgroup-attach"),
    ("-> fork-init: unshare, fork PID 1", "cgroup-attach", "fork-init"),
    ("-> exec: PID 1's mounts, pivot_root, ...", "fork-init", "exec"),
    ("-> exit: the command runs, wait4", "exec", "exit"),
    ("-> cleanup: remove the control group", "exit", "cleanup"),
    ("cleanup -> end of wait4: --rm, exit", "cleanup", None),
)


def trace_phases(run: Run, trace: Path) -> dict[str, float]:
    """Seconds of each phase, from the trace events' wall-clock times."""
    events = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    last: dict[str, float] = {}
    for event in events:
        if event.get("phase") == "done":
            last[event["step"]] = float(event["time"])

    def at(step: str | None, edge: float) -> float:
        return edge if step is None else last[step]

    return {
        name: at(end, run.ended) - at(start, run.started)
        for name, start, end in PHASES
        if (start is None or start in last) and (end is None or end in last)
    }


def cold_layer_seconds(run: Run, trace: Path) -> dict[str, Any]:
    """From a cold run's trace: time to the image event, to the last layer-store event, the
    rest, and the layer store's per-layer evidence."""
    events = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    image = next(float(e["time"]) for e in events if e["step"] == "image")
    layers = [e for e in events if e["step"] == "layer-store"]
    done = float(layers[-1]["time"]) if layers else image
    return {
        "start_to_image": image - run.started,
        "layer_store": done - image,
        "after_layer_store": run.ended - done,
        "layers": [
            {k: e["evidence"].get(k) for k in ("cached", "files", "directories", "bytes")}
            for e in layers
        ],
    }


# -- main -----------------------------------------------------------------------------------


def versions(runtime: str) -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        except OSError as e:
            return f"unavailable ({e})"
        lines = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
        return lines[0] if lines else "?"

    return {
        "podman": first_line(["podman", "--version"]),
        runtime: first_line([runtime, "--version"]),
        "conmon": first_line(["conmon", "--version"]),
        "kernel": platform.release(),
    }


def source_state() -> dict[str, Any]:
    """Which dockscope is measured: the commit, files changed since, PYTHONPATH (to measure a
    snapshot, e.g. `git archive HEAD inspect_tool runtime_lab | tar -x -C DIR`)."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, check=False)
        return done.stdout.decode(errors="replace").rstrip()

    changed = git("status", "--porcelain", "--", "inspect_tool", "runtime_lab")
    return {
        "head": git("rev-parse", "HEAD"),
        "uncommitted": [line[3:] for line in changed.splitlines()],
        "PYTHONPATH": os.environ.get("PYTHONPATH"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, OUT)
    ap.add_argument("--busybox", type=Path, default=BUSYBOX, help="the runnable busybox image")
    ap.add_argument("--runtime", default="runc", help="podman's OCI runtime (default runc)")
    ap.add_argument("--reps", type=int, default=11, help="timed warm runs on busybox, each")
    ap.add_argument("--big-reps", type=int, default=5, help="timed warm runs on ~100 MB, each")
    ap.add_argument("--cold-reps", type=int, default=5, help="cold starts of each")
    ap.add_argument("--trace-reps", type=int, default=5, help="traced warm dockscope runs")
    ap.add_argument("--seed", type=int, default=20240301)
    ap.add_argument("--regenerate", action="store_true", help="regenerate the ~100 MB image")
    ap.add_argument("--keep", action="store_true", help="keep the state roots and stores")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report = Report.begin()
    data = report.data

    if os.geteuid() != 0:
        report.fail("root", "no", "yes", "dockscope run and podman run need root")
        return finish(report, out, RESULTS)
    missing = [t for t in ("podman", args.runtime, "conmon") if shutil.which(t) is None]
    if missing:
        why = f"apt-get install {' '.join(missing)} (Debian packages)"
        report.fail("peers", f"missing: {', '.join(missing)}", "installed", why)
        return finish(report, out, RESULTS)
    data["versions"] = versions(args.runtime)
    for tool, version in data["versions"].items():
        report.add(f"info: {tool}", version)
    cli = require_cli(report, args.cli)
    if cli is None:
        return finish(report, out, RESULTS)
    data["source"] = source_state()
    if data["source"]["uncommitted"] and not os.environ.get("PYTHONPATH"):
        print(
            "WARNING: measuring a working tree with uncommitted changes in inspect_tool/ or "
            f"runtime_lab/: {', '.join(data['source']['uncommitted'])}",
            flush=True,
        )
    if not args.busybox.is_file():
        print(f"building {args.busybox}", flush=True)
        maker = [sys.executable, str(REPO / "sample_images" / "make_samples.py")]
        run_child([*maker, "--busybox", str(args.busybox)], dict(os.environ))
    busybox = read_busybox(args.busybox)
    meta, generated = ensure_image(out, busybox, args.seed, args.regenerate)
    big = out / meta["archive"]
    totals = meta["totals"]
    data["image"] = {"generated_now": generated, **meta}
    data["busybox"] = {
        "path": str(busybox.path),
        "image_id": busybox.image_id,
        "diff_id": busybox.diff_id,
        "size": busybox.path.stat().st_size,
    }
    print(
        f"busybox: {busybox.path} ({busybox.path.stat().st_size / MIB:.1f} MiB, one layer)\n"
        f"~100 MB image: {big} ({totals['layers']} gzip layers, {totals['regular_files']} "
        f"regular files + busybox, {totals['content_bytes'] / MIB:.0f} MiB of content, "
        f"{totals['layer_blob_bytes'] / MIB:.0f} MiB of blobs; "
        + ("generated now" if generated else "cached")
        + f", generation took {meta['generation_seconds']:.1f} s)",
        flush=True,
    )
    report.add("~100 MB image: layers (busybox + data)", str(totals["layers"]))
    report.add("~100 MB image: file content", f"{totals['content_bytes'] / MIB:.0f} MiB", "~100")
    report.add("~100 MB image: regular files", str(totals["regular_files"]))
    report.add("~100 MB image: gzip blobs", f"{totals['layer_blob_bytes'] / MIB:.0f} MiB")

    work = out / WORK
    if work.exists():  # a previous run that did not finish
        print(f"removing the leftovers of a previous run in {work}", flush=True)
        for d in sorted(work.iterdir()):
            if d.name.startswith("dockscope"):
                Dockscope(cli, d, work / "pycache").remove()
        unmount_below(work)
        shutil.rmtree(work)
    work.mkdir()
    stores = Path(tempfile.mkdtemp(prefix=PODMAN_PREFIX))
    data["podman_stores"] = str(stores)
    same_fs = os.stat(stores).st_dev == os.stat(work).st_dev
    report.add("info: podman stores on the state root's file system", "yes" if same_fs else "no")
    owned: list[Dockscope | Podman] = []
    groups_before = cgroups()
    try:
        measure(args, report, cli, busybox, big, meta, work, stores, owned)
    except BenchError as e:
        report.fail("benchmark", "stopped", "completes", str(e))
        print(f"ERROR: {e}", file=sys.stderr)
    finally:
        leftovers = cleanup(owned, [work, stores], groups_before, keep=args.keep)
        data["leftovers"] = leftovers
        report.add(
            "left behind: containers, mounts, cgroups",
            "none" if not leftovers else "; ".join(leftovers),
            "none",
            not leftovers,
        )
    return finish(report, out, RESULTS)


def measure(
    args: argparse.Namespace,
    report: Report,
    cli: list[str],
    busybox: Busybox,
    big: Path,
    meta: dict[str, Any],
    work: Path,
    stores: Path,
    owned: list[Dockscope | Podman],
) -> None:
    data = report.data
    big_id = meta["image_id"].removeprefix("sha256:")
    bb_id = busybox.image_id.removeprefix("sha256:")
    print(f"dockscope: {shlex.join(cli)} run --rm IMAGE true (DOCKSCOPE_ROOT under {work})")
    probe = Podman(stores / "probe", args.runtime)
    print(f"podman: {shlex.join(probe.run_argv('IMAGE', 'true'))}", flush=True)
    probe.remove()

    # Warm: one state root and one store, both images loaded, two untimed runs of each first.
    pycache = work / "pycache"
    data["bytecode"] = {
        "caller_PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "children_PYTHONPYCACHEPREFIX": str(pycache),
    }
    ds = Dockscope(cli, work / "dockscope-warm", pycache)
    pm = Podman(stores / "warm", args.runtime)
    owned += [ds, pm]
    for path in (busybox.path, big):  # into the page cache
        path.read_bytes()
    load_bb, load_big = pm.load(busybox.path), pm.load(big)
    data["podman_warm_store_load_seconds"] = {"busybox": load_bb.seconds, "big": load_big.seconds}
    # Sanity: the image's shell runs in the container and its exit status comes back.
    sanity = {
        "dockscope": ds.run(busybox.path, "sh", "-c", "exit 7", check=7).returncode,
        "podman": pm.run(bb_id, "sh", "-c", "exit 7", check=7).returncode,
    }
    report.add("`sh -c 'exit 7'` in busybox exits 7 (both)", "yes", "yes", True)
    data["sanity_exit_status"] = sanity
    for _ in range(2):  # warm-up
        ds.run(busybox.path, "true")
        pm.run(bb_id, "true")
        ds.run(big, "true")
        pm.run(big_id, "true")

    # Each tool's default network once untimed (dockscope's bridge, podman's CNI bridge).
    ds.run(busybox.path, "true", network=None)
    pm.run(bb_id, "true", network=None)
    print(f"timing warm runs on busybox: {args.reps} each, interleaved", flush=True)
    cpu_warm: dict[str, list[float]] = {}

    def job(name: str, run: Callable[[], Run]) -> Callable[[], float]:
        def timed_run() -> float:
            done = run()
            cpu_warm.setdefault(name, []).append(done.cpu_seconds)
            return done.seconds

        return timed_run

    traces = iter(range(10**6))
    warm_bb = interleaved(
        {
            "dockscope": job("dockscope", lambda: ds.run(busybox.path, "true")),
            "podman": job("podman", lambda: pm.run(bb_id, "true")),
            "dockscope_traced": job(
                "dockscope_traced",
                lambda: ds.run(
                    busybox.path, "true", trace=work / f"warm-traced-{next(traces)}.jsonl"
                ),
            ),
            "dockscope_default": job(
                "dockscope_default", lambda: ds.run(busybox.path, "true", network=None)
            ),
            "podman_default": job("podman_default", lambda: pm.run(bb_id, "true", network=None)),
        },
        args.reps,
    )
    for old in work.glob("warm-traced-*.jsonl"):
        old.unlink()
    print(f"timing warm runs on the ~100 MB image: {args.big_reps} each, interleaved", flush=True)
    warm_big = interleaved(
        {
            "dockscope": lambda: ds.run(big, "true").seconds,
            "podman": lambda: pm.run(big_id, "true").seconds,
        },
        args.big_reps,
    )
    print(f"tracing {args.trace_reps} warm dockscope runs (--trace-json)", flush=True)
    phases: list[dict[str, float]] = []
    traced: list[float] = []
    for i in range(args.trace_reps):
        trace = work / f"warm-trace-{i}.jsonl"
        run = ds.run(busybox.path, "true", trace=trace)
        traced.append(run.seconds)
        phases.append(trace_phases(run, trace))
        if i == 0:
            data["warm_trace_events"] = [json.loads(x) for x in trace.read_text().splitlines()]
        trace.unlink()

    # Cold: an empty state root / an empty store each time, each a new one: every run's files
    # are kept until the last cold run (harness.Trees says why)
    print(f"timing cold starts of the ~100 MB image: {args.cold_reps} each, interleaved")
    trees = Trees(work / "cold", work.parent)
    cold: dict[str, list[float]] = {"dockscope": [], "podman_load": [], "podman_first_run": []}
    cpu: dict[str, list[float]] = {"dockscope": [], "podman_load": [], "podman_first_run": []}
    splits: list[dict[str, Any]] = []
    blobs = layer_blobs(big, work / "blobs")
    floor: list[float] = []
    made: list[Dockscope | Podman] = []

    def tar_floor() -> float:
        """GNU tar extracting the layer blobs in order into an empty directory (tar runs the
        system's gzip -d; this image has no whiteouts): the file system's floor."""
        tar_dest = trees.new("tar")
        tar_dest.mkdir()
        subprocess.run(["sync"], check=True)
        env = dict(os.environ)
        return sum(
            run_child(["tar", "-xzf", str(b), "-C", str(tar_dest)], env).seconds for b in blobs
        )

    def dockscope_cold(trace: Path) -> Run:
        fresh = Dockscope(cli, trees.new("dockscope"), pycache)
        made.append(fresh)
        owned.append(fresh)  # the final clean-up's, should this stop early
        subprocess.run(["sync"], check=True)
        run = fresh.run(big, "true", trace=trace)
        if fresh.containers():
            raise BenchError(f"dockscope run --rm left {fresh.containers()} in {fresh.root}")
        return run

    def podman_cold(i: int) -> tuple[Run, Run]:
        store = Podman(stores / f"cold{i}", args.runtime)  # podman wants a short run root
        made.append(store)
        owned.append(store)
        subprocess.run(["sync"], check=True)
        load = store.load(big)
        first = store.run(big_id, "true")
        return load, first

    try:
        for i in range(args.cold_reps):
            trace = work / f"cold-trace-{i}.jsonl"
            run = dockscope_cold(trace)
            splits.append(cold_layer_seconds(run, trace))
            cold["dockscope"].append(run.seconds)
            cpu["dockscope"].append(run.cpu_seconds)
            load, first = podman_cold(i)
            cold["podman_load"].append(load.seconds)
            cold["podman_first_run"].append(first.seconds)
            cpu["podman_load"].append(load.cpu_seconds)
            cpu["podman_first_run"].append(first.cpu_seconds)
            floor.append(tar_floor())
    finally:
        for thing in made:
            thing.remove()
            owned.remove(thing)
        trees.remove()
    cold["gnu_tar_floor"] = floor
    data["cold_dockscope_trace_split_seconds"] = splits
    data["cold_cpu_seconds"] = cpu
    pairs = zip(cold["podman_load"], cold["podman_first_run"], strict=True)
    cold["podman_total"] = [load + first for load, first in pairs]

    # The table.
    m_ds, m_pm = median(warm_bb["dockscope"]), median(warm_bb["podman"])
    ratio = m_ds / m_pm
    n, nb, nt, nc = args.reps, args.big_reps, args.trace_reps, args.cold_reps
    report.add(f"warm busybox: dockscope run (median of {n})", fmt_runs(warm_bb["dockscope"]))
    report.add(
        f"warm busybox: podman run, {args.runtime} (median of {n})", fmt_runs(warm_bb["podman"])
    )
    report.add(
        "warm busybox, --network none: dockscope / podman",
        f"{ratio:.2f}x",
        f"<= {TARGET_WARM_RATIO:.2f}x",
        ratio <= TARGET_WARM_RATIO,
    )
    for name in ("dockscope", "podman", "dockscope_traced", "dockscope_default", "podman_default"):
        report.add(f"info:   CPU time, user+sys: {name} (median of {n})", fmt_runs(cpu_warm[name]))
    m_tr = median(warm_bb["dockscope_traced"])
    report.add(
        f"info: warm busybox: dockscope --trace-json (median of {n})",
        fmt_runs(warm_bb["dockscope_traced"]),
    )
    report.add(
        "warm busybox: traced / untraced dockscope",
        f"{m_tr / m_ds:.2f}x",
        f"<= {TARGET_TRACE_COST:.2f}x",
        m_tr / m_ds <= TARGET_TRACE_COST,
    )
    d_ds, d_pm = median(warm_bb["dockscope_default"]), median(warm_bb["podman_default"])
    report.add(
        f"info: warm busybox, default network: dockscope bridge (median of {n})",
        fmt_runs(warm_bb["dockscope_default"]),
    )
    report.add(
        f"info: warm busybox, default network: podman CNI bridge (median of {n})",
        fmt_runs(warm_bb["podman_default"]),
    )
    report.add("info: warm busybox, default networks: dockscope / podman", f"{d_ds / d_pm:.2f}x")
    b_ds, b_pm = median(warm_big["dockscope"]), median(warm_big["podman"])
    report.add(f"info: warm 100 MB: dockscope (median of {nb})", fmt_runs(warm_big["dockscope"]))
    report.add(f"info: warm 100 MB: podman (median of {nb})", fmt_runs(warm_big["podman"]))
    report.add("info: warm 100 MB: dockscope / podman", f"{b_ds / b_pm:.2f}x")
    report.add(f"info: warm busybox, traced dockscope, in a row (median of {nt})", fmt_runs(traced))
    for name, _, _ in PHASES:
        values = [p[name] for p in phases if name in p]
        if values:
            report.add(f"info:   {name}", f"{median(values) * 1000:.0f} ms")
    c_ds, c_pm = median(cold["dockscope"]), median(cold["podman_total"])
    report.add(
        f"info: cold 100 MB: dockscope, empty root, traced (median of {nc})",
        fmt_runs(cold["dockscope"]),
    )
    for key, label in (
        ("start_to_image", "fork -> image: start-up, read image"),
        ("layer_store", f"unpack {len(splits[0]['layers'])} layers (layer-store)"),
        ("after_layer_store", "the rest: container, exit, --rm"),
    ):
        report.add(f"info:   {label}", fmt_runs([x[key] for x in splits]))
    report.add(f"info:   CPU time, user+sys (median of {nc})", fmt_runs(cpu["dockscope"]))
    report.add(
        f"info: floor: GNU tar -xzf of the {len(blobs)} layers, in order (median of {nc})",
        fmt_runs(floor),
    )
    layer_store = median([x["layer_store"] for x in splits])
    report.add("info:   dockscope layer-store / GNU tar", f"{layer_store / median(floor):.2f}x")
    report.add(f"info: cold 100 MB: podman load (median of {nc})", fmt_runs(cold["podman_load"]))
    report.add(
        f"info: cold 100 MB: podman first run (median of {nc})",
        fmt_runs(cold["podman_first_run"]),
    )
    report.add(
        f"info: cold 100 MB: podman load + first run (median of {nc})",
        fmt_runs(cold["podman_total"]),
    )
    report.add(
        f"info:   CPU time of podman load, user+sys (median of {nc})", fmt_runs(cpu["podman_load"])
    )
    report.add(
        "cold 100 MB, --network none: dockscope (traced) / podman load + run",
        f"{c_ds / c_pm:.2f}x",
        f"<= {TARGET_WARM_RATIO:.2f}x",
        c_ds / c_pm <= TARGET_WARM_RATIO,
    )
    report.add(
        "info: 100 MB cold / warm: dockscope, podman", f"{c_ds / b_ds:.1f}x, {c_pm / b_pm:.1f}x"
    )

    data["warm_busybox_cpu_seconds"] = cpu_warm
    data["timings_seconds"] = {
        "warm_busybox": warm_bb,
        "warm_big": warm_big,
        "traced_warm": traced,
        "cold": cold,
    }
    data["warm_trace_phases_seconds"] = phases
    data["medians_seconds"] = {
        "warm_busybox_dockscope": m_ds,
        "warm_busybox_podman": m_pm,
        "warm_big_dockscope": b_ds,
        "warm_big_podman": b_pm,
        "cold_dockscope": c_ds,
        "cold_podman_load": median(cold["podman_load"]),
        "cold_podman_first_run": median(cold["podman_first_run"]),
        "cold_podman_total": c_pm,
        "cold_gnu_tar_floor": median(cold["gnu_tar_floor"]),
    }
    data["ratios"] = {
        "warm_busybox": ratio,
        "warm_busybox_traced_over_untraced": m_tr / m_ds,
        "warm_busybox_default_networks": d_ds / d_pm,
        "warm_big": b_ds / b_pm,
        "cold": c_ds / c_pm,
    }


def cgroups() -> set[str]:
    """Container groups on the host: dockscope's (any state root) and podman's (cgroupfs)."""
    found = {str(p) for p in dockscope_groups()}
    found |= {str(p) for p in Path("/sys/fs/cgroup").glob("*/libpod_parent/libpod-*")}
    return found


def ours(groups: set[str]) -> list[str]:
    """The groups among ``groups`` that this benchmark's runs can have left: other processes
    (tests of other checkouts, say) run containers meanwhile. A group with processes in it is
    not ours (every container of ours has exited). On v1, dockscope nests its groups below the
    caller's own group, so when this process's memory group is not the root, a dockscope group
    is ours only if its name has a memory group below ours."""
    memory = Path("/sys/fs/cgroup/memory")
    own = own_cgroup_path("memory").strip("/")
    mine = (memory / own / "dockscope") if own else None
    names = {p.name for p in mine.iterdir() if p.is_dir()} if mine and mine.is_dir() else set()
    found = []
    for group in sorted(groups):
        path = Path(group)
        try:
            if not path.is_dir() or (path / "cgroup.procs").read_text().strip():
                continue
        except OSError:
            continue
        if "libpod_parent" not in path.parts and mine is not None and path.name not in names:
            continue
        found.append(group)
    return found


def cleanup(
    owned: list[Dockscope | Podman], dirs: list[Path], groups_before: set[str], *, keep: bool
) -> list[str]:
    """Remove what the benchmark made; return what was left behind by the runs themselves."""
    leftovers: list[str] = []
    unique = {thing.root: thing for thing in owned}
    for thing in unique.values():
        if thing.root.exists():
            with contextlib.suppress(BenchError, OSError):
                if names := thing.containers():
                    leftovers.append(f"containers in {thing.root}: {names}")
    # --rm removed every container and dockscope/podman removed its group: an empty group
    # made since the start, still there two seconds later, is a leftover.
    new_groups = ours(cgroups() - groups_before)
    if new_groups:
        time.sleep(2)
        new_groups = ours(cgroups() - groups_before)
    if new_groups:
        leftovers.append(f"control groups: {new_groups}")
    if keep:
        return leftovers
    for thing in reversed(unique.values()):
        with contextlib.suppress(BenchError, OSError):
            thing.remove()
    for d in dirs:
        if mounts := mounts_below(d):
            leftovers.append(f"mounts still there after removing the stores: {mounts}")
            unmount_below(d)
        shutil.rmtree(d, ignore_errors=True)
    return leftovers


if __name__ == "__main__":
    sys.exit(main())
