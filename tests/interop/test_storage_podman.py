"""containers/storage written by the real Podman and Buildah (Debian packages), in isolated
stores with the overlay and the vfs driver: what dockscope reads offline must be what the
engine itself reports. `podman diff` is the ground truth of `container diff --storage`,
`podman export` of `container export`, `podman logs` of `logs`, and `storage save` must give
an OCI layout that `dockscope verify` and `skopeo inspect` accept with Podman's diff_ids.

Every dockscope command runs with the whole store fingerprinted before and after (bytes,
modes, owners, times, xattrs): the evidence is only read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.storage import is_engine_root
from inspect_tool.storage.boltdb import BoltDB, Bucket
from tests.interop.interop_peers import MAKE_HINT, PeerError, Peers, missing_commands
from tests.support.cli import Result
from tests.support.storage import diff_lines, read_evidence

pytestmark = pytest.mark.interop

BASE = "localhost/dockscope-storage/base:1"
APP = "localhost/dockscope-storage/app:2"
APPLETS = ("sh", "ls", "cat", "echo", "mkdir", "rm", "touch", "ln", "chmod", "mv", "sleep")
# add, modify, delete, an opaque directory (rm -rf dir && mkdir dir), deep changes, a type
# change, a symlink retargeted, a hard link broken by copy-up, a file a lower layer deleted
CHANGES = (
    "echo new > /new.txt; echo mod >> /etc/passwd; rm /etc/doomed; "
    "rm -rf /opq && mkdir /opq && echo y > /opq/y; rm -rf /data/sub; "
    "mkdir -p /newdir/deep; echo z > /newdir/deep/z; chmod 600 /etc/greeting; "
    "echo q > /usr/share/doc/new; rm /usr/share/doc/r; rm -rf /tofile; echo f > /tofile; "
    "rm /lnk; ln -s /etc/greeting /lnk; echo app >> /etc/greeting.hard; echo back > /gone"
)
# what podman diff must show for CHANGES on either driver (the ground truth is checked too)
EXPECTED_CORE = {
    "A /new.txt",
    "C /etc/passwd",
    "D /etc/doomed",
    "A /opq/y",
    "D /data/sub",
    "A /newdir/deep/z",
    "A /usr/share/doc/new",
    "D /usr/share/doc/r",
    "C /tofile",
    "C /lnk",
}


class StorePeers(Peers):
    """The peers on one isolated store with the given storage driver."""

    def __init__(self, root: Path, driver: str) -> None:
        super().__init__(root)
        self.driver = driver
        self.storage_conf.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{self.graph}"\nrunroot = "{self.run}"\n'
        )

    def _store_flags(self) -> list[str]:
        return [
            "--root",
            str(self.graph),
            "--runroot",
            str(self.run),
            "--storage-driver",
            self.driver,
        ]

    def _podman_flags(self) -> list[str]:
        return [
            *self._store_flags(),
            "--tmpdir",
            str(self.root / "tmp"),
            "--cgroup-manager",
            "cgroupfs",
        ]

    def podman_both(self, *argv: str | Path) -> tuple[str, str]:
        """podman's stdout and stderr (podman logs writes the container's stderr there)."""
        args = ["podman", *self._podman_flags(), *(str(a) for a in argv)]
        proc = subprocess.run(args, env=self.env, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise PeerError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
        return proc.stdout.decode(), proc.stderr.decode()

    def podman_runtime(self, *argv: str | Path) -> str:
        """podman commands that start or stop a container through crun: in a private mount
        namespace without the cgroup v2 mount of a hybrid host (crun refuses hybrid mode),
        without cgroups, and with limits no higher than ours (no CAP_SYS_RESOURCE here)."""
        script = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
        return (
            self.cmd(
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                "podman",
                *self._podman_flags(),
                # named, not left to podman's default (which depends on whether crun or runc
                # happens to be installed): runc refuses --cgroups disabled
                "--runtime",
                "crun",
                *argv,
            )
            .decode()
            .strip()
        )

    def run_flags(self) -> list[str]:
        nofile = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        nproc = min(4096, resource.getrlimit(resource.RLIMIT_NPROC)[0])
        return [
            "--ulimit",
            f"nofile={nofile}:{nofile}",
            "--ulimit",
            f"nproc={nproc}:{nproc}",
            "--network",
            "none",
            "--cgroups",
            "disabled",
        ]


@dataclass
class Store:
    driver: str
    graph: Path
    peers: StorePeers
    diffs: dict[str, list[str]] = field(default_factory=dict)  # podman diff NAME
    logs: tuple[str, str] = ("", "")  # podman logs logger: stdout, stderr
    exports: dict[str, Path] = field(default_factory=dict)  # podman export NAME
    running: Result | None = None  # storage ls while "sleeper" ran
    inspect: dict[str, Any] = field(default_factory=dict)  # podman inspect NAME
    image_layers: dict[str, list[str]] = field(default_factory=dict)  # image -> diff_ids
    image_ids: dict[str, str] = field(default_factory=dict)


def _stage(stage: Path) -> None:
    for directory in ("bin", "etc", "data/sub", "opq", "usr/share/doc", "tofile"):
        (stage / directory).mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy2(Path(busybox).resolve(), stage / "bin" / "busybox")
    for applet in APPLETS:
        (stage / "bin" / applet).symlink_to("busybox")
    (stage / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (stage / "etc" / "doomed").write_text("deleted by the container\n")
    (stage / "etc" / "greeting").write_text("hello\n")
    os.link(stage / "etc" / "greeting", stage / "etc" / "greeting.hard")
    (stage / "data" / "a").write_text("a\n")
    (stage / "data" / "sub" / "b").write_text("b\n")
    (stage / "opq" / "x").write_text("x\n")
    (stage / "usr" / "share" / "doc" / "r").write_text("r\n")
    (stage / "tofile" / "k").write_text("k\n")
    (stage / "gone").write_text("deleted by the second layer\n")
    (stage / "lnk").symlink_to("etc/passwd")


def _build(peers: StorePeers, work: Path) -> Store:
    store = Store(peers.driver, peers.graph, peers)
    stage = work / "stage"
    _stage(stage)
    buildah = peers.buildah
    ctr = buildah("from", "--pull=never", "scratch")
    buildah("copy", ctr, f"{stage}/", "/")
    buildah("config", "--cmd", "/bin/sh", ctr)
    buildah("commit", "--quiet", "--rm", ctr, BASE)
    # a second layer, with a whiteout the container's diff must look through
    ctr = buildah("from", "--pull=never", BASE)
    buildah("run", ctr, "--", "/bin/sh", "-c", "rm /gone; echo two > /layer2")
    buildah("commit", "--quiet", "--rm", ctr, APP)
    flags = peers.run_flags()
    run = peers.podman_runtime
    run("run", *flags, "--name", "changed", APP, "/bin/sh", "-c", CHANGES)
    run(
        "run", *flags, "--name", "logger", APP, "/bin/sh", "-c", "echo out; echo err >&2; echo more"
    )
    run("run", "-d", *flags, "--name", "sleeper", APP, "/bin/sh", "-c", "touch /s; sleep 600")
    deadline = time.monotonic() + 30
    while "Up" not in peers.podman("ps", "--filter", "name=sleeper"):
        assert time.monotonic() < deadline, "the sleeper container did not start"
        time.sleep(0.2)
    store.running = read_evidence(peers.graph, "storage", "ls", "--json", peers.graph)
    run("stop", "-t", "0", "sleeper")
    # a Buildah working container: in the same store, never committed
    ctr = buildah("from", "--pull=never", "--name", "bworking", APP)
    buildah("run", ctr, "--", "/bin/sh", "-c", "echo built > /built.txt; rm /etc/doomed")
    for name in ("changed", "logger", "sleeper", "bworking"):
        store.diffs[name] = peers.podman("diff", name).splitlines()
    store.logs = peers.podman_both("logs", "logger")
    for name in ("changed", "logger"):
        out = work / f"{name}.tar"
        peers.podman("export", "-o", out, name)
        store.exports[name] = out
        store.inspect[name] = json.loads(peers.podman("inspect", name))[0]
    for image in (BASE, APP):
        record = json.loads(peers.podman("image", "inspect", image))[0]
        store.image_layers[image] = record["RootFS"]["Layers"]
        store.image_ids[image] = "sha256:" + record["Id"]
    return store


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    missing = missing_commands()
    if missing:
        pytest.fail(f"these tests need the Debian packages {', '.join(missing)}: {MAKE_HINT}")
    if os.geteuid() != 0:
        pytest.fail("these tests run podman and mount overlays, which needs root")
    root = tmp_path_factory.mktemp(f"store-{request.param}")
    peers = StorePeers(root, request.param)
    try:
        try:
            built = _build(peers, root)
        except PeerError as exc:
            pytest.fail(
                f"building the store failed:\n{exc}\nlast commands:\n" + "\n".join(peers.log[-10:])
            )
        yield built
    finally:
        with_running = subprocess.run(
            ["podman", *peers._podman_flags(), "ps", "-q"], env=peers.env, capture_output=True
        )
        if with_running.stdout.strip():
            peers.podman_runtime("stop", "-a", "-t", "0")
        peers.cleanup()


def _ours(store: Store, name: str, *extra: str) -> Result:
    return read_evidence(store.graph, "container", "diff", *extra, "--storage", store.graph, name)


# -- listing -------------------------------------------------------------------------------------


def test_the_store_is_engine_storage(store: Store) -> None:
    assert is_engine_root(store.graph)
    assert not is_engine_root(store.graph.parent)
    run = read_evidence(store.graph, "storage", "ls", "--json", store.graph)
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["engine"] == "containers-storage" and doc["drivers"] == [store.driver]
    images = {tag: i for i in doc["images"] for tag in i["tags"]}
    for image in (BASE, APP):
        assert images[image]["id"] == store.image_ids[image]
        assert images[image]["diff_ids"] == store.image_layers[image]
    containers = {c["name"]: c for c in doc["containers"]}
    assert set(containers) == {"changed", "logger", "sleeper", "bworking"}
    for name in ("changed", "logger"):
        entry, truth = containers[name], store.inspect[name]
        assert entry["id"] == truth["Id"]
        assert entry["engine"] == "podman" and entry["image"] == APP
        assert entry["status"] == "exited" and entry["running"] is False
        assert entry["exit_code"] == truth["State"]["ExitCode"] == 0
        assert entry["command"] == [truth["Path"], *truth["Args"]]
        assert entry["started"] is not None and entry["finished"] is not None
        assert Path(entry["upper_dir"]).is_dir()
        assert entry["log_path"] == truth["HostConfig"]["LogConfig"]["Path"]
    assert containers["sleeper"]["status"] == "exited" and containers["sleeper"]["exit_code"] != 0
    assert containers["bworking"]["engine"] == "buildah"
    assert containers["bworking"]["image"] == APP and containers["bworking"]["running"] is False


def test_a_running_container_is_seen_running(store: Store) -> None:
    assert store.running is not None and store.running.code == 0, store.running
    sleeper = next(c for c in store.running.json()["containers"] if c["name"] == "sleeper")
    assert sleeper["running"] is True and sleeper["status"] == "running"
    assert isinstance(sleeper["pid"], int) and sleeper["pid"] > 1


# -- diff ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["changed", "logger", "sleeper", "bworking"])
def test_diff_is_what_podman_diff_prints(store: Store, name: str) -> None:
    theirs = store.diffs[name]
    ours = diff_lines(_ours(store, name))
    if store.driver == "vfs":  # podman walks a Go map there: its order is random
        assert sorted(ours) == sorted(theirs)
    else:
        assert ours == theirs
    if name == "changed":
        assert set(theirs) >= EXPECTED_CORE | {"A /gone"}
        opaque = {"D /opq"} if store.driver == "overlay" else {"C /opq", "D /opq/x"}
        assert opaque <= set(theirs)
    if name == "bworking":
        assert {"A /built.txt", "D /etc/doomed"} <= set(theirs)


def test_diff_by_id_prefix_and_json(store: Store) -> None:
    cid = store.inspect["changed"]["Id"]
    assert diff_lines(_ours(store, cid[:10])) == diff_lines(_ours(store, "changed"))
    run = _ours(store, "changed", "--json")
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["engine"] == "podman" and doc["driver"] == store.driver
    assert doc["method"] == ("overlay" if store.driver == "overlay" else "naive")
    entries = {c["path"]: c for c in doc["changes"]}
    shown = {f"{c['kind']} {c['path']}" for c in doc["changes"] if not c["hidden"]}
    assert shown == set(store.diffs["changed"])
    hidden = {c["path"] for c in doc["changes"] if c["hidden"]}
    # buildah run left /etc/hostname, /dev, /proc … in the image's second layer; the
    # container's own start adds these
    assert hidden >= {"/run/.containerenv", "/etc/mtab"}
    assert all(entries[p]["engine"] for p in hidden)
    new = entries["/new.txt"]
    assert new["type"] == "file" and new["size"] == 4 and new["mode"] == "0644"
    assert new["sha256"] == "sha256:" + _sha256(b"new\n")
    assert entries["/lnk"]["link"] == "/etc/greeting"
    assert entries["/etc/doomed"]["kind"] == "D" and entries["/etc/doomed"]["type"] is None


def test_diff_all_shows_what_the_engine_wrote(store: Store) -> None:
    run = _ours(store, "changed", "--all")
    lines = diff_lines(run)
    marker = next(line for line in lines if line.split()[1] == "/run/.containerenv")
    assert "# written by the engine: container marker file" in marker and "hidden" in marker
    plain = _ours(store, "changed")
    assert "--all lists them" in plain.err


def test_diff_timeline(store: Store) -> None:
    doc = _ours(store, "changed", "--json").json()
    times = sorted(c["mtime"] for c in doc["changes"] if c["mtime"])
    run = _ours(store, "changed", "--since", "2000-01-01")
    lines = diff_lines(run)
    assert [line.split()[0] for line in lines] == sorted(line.split()[0] for line in lines)
    assert len(lines) == sum(1 for c in doc["changes"] if c["mtime"] and not c["hidden"])
    assert diff_lines(_ours(store, "changed", "--since", "2099-01-01")) == []
    assert times


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- export, logs, inspect -----------------------------------------------------------------------


def _tar_tree(data: bytes) -> dict[str, tuple[str, int, bytes | str | None]]:
    found: dict[str, tuple[str, int, bytes | str | None]] = {}
    contents: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            if member.isreg():
                extracted = tar.extractfile(member)
                contents[name] = extracted.read() if extracted else None
                found[name] = ("file", member.mode & 0o7777, contents[name])
            elif member.islnk():
                target = member.linkname.removeprefix("./").rstrip("/")
                found[name] = ("file", member.mode & 0o7777, contents[target])
            elif member.issym():
                found[name] = ("symlink", member.mode & 0o7777, member.linkname)
            elif member.isdir():
                found[name] = ("dir", member.mode & 0o7777, None)
            else:
                found[name] = ("other", member.mode & 0o7777, None)
    return found


@pytest.mark.parametrize("name", ["changed", "logger"])
def test_export_is_what_podman_export_writes(store: Store, name: str, tmp_path: Path) -> None:
    out = tmp_path / "ours.tar"
    run = read_evidence(
        store.graph, "container", "export", "--storage", store.graph, name, "-o", out
    )
    assert run.code == 0, run.err
    ours = _tar_tree(out.read_bytes())
    theirs = _tar_tree(store.exports[name].read_bytes())
    assert ours == theirs
    assert ours["new.txt" if name == "changed" else "layer2"][0] == "file"


def test_export_layer_is_an_oci_layer(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "layer.tar"
    args = (
        "container",
        "export",
        "--writable-layer",
        "--json",
        "--storage",
        store.graph,
        "changed",
        "-o",
        out,
    )
    run = read_evidence(store.graph, *args)
    assert run.code == 0, run.err
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert {"etc/.wh.doomed", "data/.wh.sub", "usr/share/doc/.wh.r", "new.txt"} <= names
    if store.driver == "overlay":
        assert "opq/.wh..wh..opq" in names and run.json()["summary"]["opaque"] == 1
    else:
        assert "opq/.wh.x" in names
    assert not [n for n in names if n.startswith("bin/")]


def test_logs_are_what_podman_logs_prints(store: Store) -> None:
    run = read_evidence(store.graph, "container", "logs", "--storage", store.graph, "logger")
    assert run.code == 0, run.err
    assert (run.out, run.err) == store.logs
    assert run.out == "out\nmore\n" and run.err == "err\n"
    stamped = read_evidence(
        store.graph, "container", "logs", "-t", "--storage", store.graph, "logger"
    )
    assert stamped.out.splitlines()[0].endswith(" out")


def test_inspect_decodes_libpod_and_storage_records(store: Store) -> None:
    run = read_evidence(store.graph, "container", "inspect", "--storage", store.graph, "changed")
    assert run.code == 0, run.err
    doc = run.json()
    files = doc["files"]
    cid = store.inspect["changed"]["Id"]
    entry = files[f"{store.driver}-containers/containers.json"]
    assert entry["id"] == cid and entry["names"] == ["changed"]
    assert entry["metadata"]["image-name"] == APP  # the JSON inside the string, decoded
    libpod = files["libpod/bolt_state.db"]
    assert libpod["config"]["spec"]["process"]["args"] == ["/bin/sh", "-c", CHANGES]
    assert libpod["state"]["state"] == 6  # exited
    spec = files[f"{store.driver}-containers/{cid}/userdata/config.json"]
    assert spec["process"]["args"][-1] == CHANGES


# -- save ----------------------------------------------------------------------------------------


def test_save_round_trip(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "app-oci"
    run = read_evidence(store.graph, "storage", "save", "--json", store.graph, APP, "-o", out)
    assert run.code == 0, run.err
    doc = run.json()
    assert doc["ok"] is True
    assert [lyr["computed"] for lyr in doc["layers"]] == store.image_layers[APP]
    assert [lyr["source"] for lyr in doc["layers"]] == ["tar-split", "tar-split"]
    assert doc["config_digest"] == store.image_ids[APP]
    verify = read_evidence(store.graph, "verify", out)
    assert verify.code == 0, verify.out
    skopeo = json.loads(store.peers.skopeo("inspect", f"oci:{out}"))
    assert skopeo["Layers"] == store.image_layers[APP]
    assert skopeo["Digest"] == doc["manifest_digest"]
    config = json.loads(store.peers.skopeo("inspect", "--config", "--raw", f"oci:{out}"))
    assert config["rootfs"]["diff_ids"] == store.image_layers[APP]


def test_save_names_a_tampered_layer(store: Store, tmp_path: Path) -> None:
    copy = tmp_path / "graph"
    subprocess.run(["cp", "-a", str(store.graph), str(copy)], check=True)
    base_layer = store.image_layers[BASE][0]
    doc = read_evidence(copy, "storage", "ls", "--json", copy).json()
    assert any(base_layer in i["diff_ids"] for i in doc["images"])
    layers = json.loads((copy / f"{store.driver}-layers" / "layers.json").read_text())
    [record] = [lyr for lyr in layers if lyr.get("diff-digest") == base_layer]
    directory = (
        copy / "overlay" / record["id"] / "diff"
        if store.driver == "overlay"
        else copy / "vfs" / "dir" / record["id"]
    )
    passwd = directory / "etc" / "passwd"
    passwd.chmod(stat.S_IMODE(passwd.stat().st_mode) | 0o200)
    passwd.write_text("root:x:0:0:evil:/root:/bin/sh\n")
    run = read_evidence(copy, "storage", "save", copy, BASE, "-o", tmp_path / "out")
    assert run.code == 1
    assert f"layer 0 (layer {record['id']})" in run.err
    assert "/etc/passwd (content differs)" in run.err
    assert not (tmp_path / "out").exists()


def test_podman_5_sqlite_state_is_read(store: Store, tmp_path: Path) -> None:
    """Podman 4.8+ may keep its state in SQLite (db.sql) instead of bolt_state.db: the same
    records, in the tables of libpod/sqlite_state_internal.go, read without a journal."""
    copy = tmp_path / "graph"
    subprocess.run(["cp", "-a", str(store.graph), str(copy)], check=True)
    expected = {
        c["name"]: (c["status"], c["exit_code"], c["running"], c["command"])
        for c in read_evidence(store.graph, "storage", "ls", "--json", store.graph).json()[
            "containers"
        ]
    }
    bolt = copy / "libpod" / "bolt_state.db"
    db = BoltDB(bolt.read_bytes(), name=str(bolt))
    ctrs = db.find(b"ctr")
    assert ctrs is not None
    rows = []
    for key, bucket in ctrs.items():
        assert isinstance(bucket, Bucket)
        config, state = bucket.value(b"config"), bucket.value(b"state")
        assert config is not None and state is not None
        parsed = json.loads(state)
        rows.append((key.decode(), json.loads(config)["name"], config.decode(), parsed, state))
    bolt.unlink()
    connection = sqlite3.connect(copy / "db.sql")
    connection.executescript(
        "CREATE TABLE DBConfig(ID INTEGER PRIMARY KEY NOT NULL, SchemaVersion INTEGER NOT NULL,"
        " OS TEXT NOT NULL, StaticDir TEXT NOT NULL, TmpDir TEXT NOT NULL, GraphRoot TEXT NOT"
        " NULL, RunRoot TEXT NOT NULL, GraphDriver TEXT NOT NULL, VolumeDir TEXT NOT NULL);"
        "CREATE TABLE ContainerConfig(ID TEXT PRIMARY KEY NOT NULL, Name TEXT UNIQUE NOT NULL,"
        " PodID TEXT, JSON TEXT NOT NULL);"
        "CREATE TABLE ContainerState(ID TEXT PRIMARY KEY NOT NULL, State INTEGER NOT NULL,"
        " ExitCode INTEGER, JSON TEXT NOT NULL);"
    )
    connection.execute(
        "INSERT INTO DBConfig VALUES (1, 1, 'linux', ?, ?, ?, ?, ?, ?)",
        (
            str(store.graph / "libpod"),
            str(store.peers.root / "tmp"),
            str(store.graph),
            str(store.peers.run),
            store.driver,
            str(store.graph / "volumes"),
        ),
    )
    for cid, name, config, parsed, state in rows:
        connection.execute(
            "INSERT INTO ContainerConfig VALUES (?, ?, NULL, ?)", (cid, name, config)
        )
        connection.execute(
            "INSERT INTO ContainerState VALUES (?, ?, ?, ?)",
            (cid, parsed["state"], parsed.get("exitCode", 0), state.decode()),
        )
    connection.commit()
    connection.close()
    doc = read_evidence(copy, "storage", "ls", "--json", copy).json()
    found = {
        c["name"]: (c["status"], c["exit_code"], c["running"], c["command"])
        for c in doc["containers"]
    }
    assert found == expected
    logger = next(c for c in doc["containers"] if c["name"] == "logger")
    assert Path(logger["log_path"]).is_relative_to(copy)
    run = read_evidence(copy, "container", "logs", "--storage", copy, "logger")
    assert (run.out, run.err) == store.logs
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith("db.sql")) == ["db.sql"]
