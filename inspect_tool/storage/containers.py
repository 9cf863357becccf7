"""containers/storage (Podman, Buildah, CRI-O): ``/var/lib/containers/storage``, from a copy.

- ``<driver>-layers/layers.json`` (and ``volatile-layers.json``): every layer with its
  ``parent``, ``diff-digest`` (the diff_id) and ``<id>.tar-split.gz`` beside it;
- ``<driver>-images/images.json``: images, their ``names`` and top ``layer``; each image's
  config is a "big data" file in ``<driver>-images/<id>/``, named ``=`` + base64 of its key
  (``sha256:<id>``) when the key is not a plain name;
- ``<driver>-containers/containers.json``: containers, their ``names``, ``image`` and
  writable ``layer``; ``<driver>-containers/<id>/userdata/`` holds ``config.json`` (the OCI
  spec), ``ctr.log`` (the k8s-file log) or Buildah's ``buildah.json``;
- ``overlay/<id>/diff`` or ``vfs/dir/<id>``: each layer's files;
- ``libpod/bolt_state.db`` (or ``db.sql``): Podman's own record of each container, with its
  state (running, exited, exit code, times).

``podman diff`` leaves out what libpod itself creates in every container (mount points,
/etc/hostname, /etc/hosts, /etc/resolv.conf, /run/.containerenv, …): those entries are
flagged as written by the engine and hidden unless asked for.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sqlite3
from typing import Any

from inspect_tool.errors import DockscopeError
from inspect_tool.model.jsondoc import expect_list, expect_object, parse_json
from inspect_tool.storage.boltdb import BoltDB
from inspect_tool.storage.evidence import Evidence, LayerDir, StorageError, check_name
from inspect_tool.storage.model import (
    ContainerRecord,
    EngineStorage,
    ImageLayer,
    ImageRecord,
    WritableLayer,
)
from inspect_tool.storage.writable import CSTORAGE_OVERLAY, CopyTree, UnionView, Whiteouts

DRIVERS = ("overlay", "vfs")
UNSUPPORTED = ("btrfs", "zfs", "devmapper", "aufs")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9._-]+")
_ZERO = "0001-01-01"
MAX_DB_BYTES = 256 * 1024 * 1024
BOLT_DB = "libpod/bolt_state.db"  # Podman before 5
SQLITE_DBS = ("db.sql", "libpod/db.sql")  # Podman 4.8 and later can use SQLite

# libpod's initInodes (libpod/diff.go): left out of `podman diff`
HIDDEN_PATHS = {
    "/dev": "mount point",
    "/etc/hostname": "hostname (bind mount)",
    "/etc/hosts": "hosts (bind mount)",
    "/etc/resolv.conf": "resolv.conf (bind mount)",
    "/proc": "mount point",
    "/run": "mount point",
    "/run/notify": "notify socket mount point",
    "/run/.containerenv": "container marker file",
    "/run/secrets": "secrets mount point",
    "/run/podman-init": "init binary mount point",
    "/sys": "mount point",
    "/etc/mtab": "mtab link",
}
# libpod's ContainerStatus values
STATES = {
    0: "unknown",
    1: "configured",
    2: "created",
    3: "running",
    4: "stopped",
    5: "paused",
    6: "exited",
    7: "removing",
    8: "stopping",
}


def detect(evidence: Evidence) -> list[str] | None:
    """The drivers a containers/storage graph root has records for (None: not one)."""
    found = []
    for name in evidence.listdir(""):
        for suffix, record in (
            ("-layers", "layers.json"),
            ("-images", "images.json"),
            ("-containers", "containers.json"),
        ):
            if name.endswith(suffix) and evidence.is_file(f"{name}/{record}"):
                driver = name.removesuffix(suffix)
                if driver not in found:
                    found.append(driver)
    return sorted(found) or None


def _bigdata_name(key: str) -> str:
    """containers/storage's file name for a big-data key."""
    if _PLAIN_KEY.fullmatch(key) and not key.startswith("."):
        return key
    return "=" + base64.b64encode(key.encode()).decode()


class ContainersStorage(EngineStorage):
    engine = "containers-storage"

    def __init__(self, evidence: Evidence, drivers: list[str]) -> None:
        super().__init__(evidence, drivers)
        self.notes: list[str] = []
        self._layers: dict[str, dict[str, dict[str, Any]]] = {}
        self._images: list[ImageRecord] | None = None
        self._containers: list[ContainerRecord] | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._libpod: dict[str, dict[str, Any]] | None = None
        self._graph_root: str | None = None
        self._log_rel: dict[str, str] = {}

    # -- records -------------------------------------------------------------------------------

    def _list(self, rel: str) -> list[dict[str, Any]]:
        if not self.evidence.is_file(rel):
            return []
        subject = str(self.evidence.path(rel))
        items = expect_list(self.evidence.read_json(rel), subject=subject, what=rel)
        return [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]

    def layers(self, driver: str) -> dict[str, dict[str, Any]]:
        if driver not in self._layers:
            found: dict[str, dict[str, Any]] = {}
            for name in ("layers.json", "volatile-layers.json"):
                for layer in self._list(f"{driver}-layers/{name}"):
                    found[layer["id"]] = layer
            self._layers[driver] = found
        return self._layers[driver]

    def _chain(self, driver: str, top: str | None) -> list[str]:
        """Layer IDs from ``top`` down to the base layer."""
        layers = self.layers(driver)
        chain: list[str] = []
        current = top
        while current:
            check_name(current, what="layer ID", subject=f"{driver}-layers/layers.json")
            if current in chain:
                raise StorageError(f"the layer chain loops at {current}", subject=driver)
            chain.append(current)
            record = layers.get(current)
            if record is None:
                raise StorageError(f"layer {current} is not in layers.json", subject=driver)
            parent = record.get("parent")
            current = parent if isinstance(parent, str) and parent else None
        return chain

    def images(self) -> list[ImageRecord]:
        if self._images is not None:
            return self._images
        found = []
        for driver in self.drivers:
            for entry in self._list(f"{driver}-images/images.json"):
                image_id = entry["id"]
                if not _HEX64.fullmatch(image_id):
                    self.notes.append(f"{driver}-images/images.json: bad image ID {image_id!r}")
                    continue
                names = [n for n in entry.get("names") or [] if isinstance(n, str)]
                digest = entry.get("digest")
                digests = []
                if isinstance(digest, str):
                    digests = [f"{n.rsplit(':', 1)[0]}@{digest}" for n in names] or [digest]
                diff_ids: tuple[str, ...] = ()
                size = None
                try:
                    config = self._config_json(driver, image_id)
                    rootfs = config.get("rootfs")
                    if isinstance(rootfs, dict) and isinstance(rootfs.get("diff_ids"), list):
                        diff_ids = tuple(str(d) for d in rootfs["diff_ids"])
                    layers = self.layers(driver)
                    chain = self._chain(driver, _str(entry.get("layer")))
                    sizes = [layers[c].get("diff-size") for c in chain]
                    if all(isinstance(s, int) for s in sizes):
                        size = sum(s for s in sizes if isinstance(s, int))
                except DockscopeError as exc:
                    self.notes.append(f"image {image_id[:12]}: {exc}")
                found.append(
                    ImageRecord(
                        id=f"sha256:{image_id}",
                        tags=tuple(names),
                        digests=tuple(sorted(set(digests))),
                        created=_str(entry.get("created")),
                        diff_ids=diff_ids,
                        driver=driver,
                        size=size,
                        key=image_id,
                    )
                )
        self._images = found
        return found

    def _config_rel(self, driver: str, image_id: str) -> str:
        check_name(image_id, what="image ID", subject=f"{driver}-images/images.json")
        return f"{driver}-images/{image_id}/{_bigdata_name('sha256:' + image_id)}"

    def _config_json(self, driver: str, image_id: str) -> dict[str, Any]:
        rel = self._config_rel(driver, image_id)
        subject = str(self.evidence.path(rel))
        return expect_object(self.evidence.read_json(rel), subject=subject, what="image config")

    def image_config(self, image: ImageRecord) -> bytes:
        return self.evidence.read_bytes(self._config_rel(image.driver, image.key))

    def image_layers(self, image: ImageRecord) -> list[ImageLayer]:
        entry = next(
            (e for e in self._list(f"{image.driver}-images/images.json") if e["id"] == image.key),
            None,
        )
        if entry is None:
            raise StorageError("not in images.json", subject=image.id)
        chain = list(reversed(self._chain(image.driver, _str(entry.get("layer")))))
        if len(chain) != len(image.diff_ids):
            raise StorageError(
                f"the config lists {len(image.diff_ids)} diff_ids but the layer chain has "
                f"{len(chain)} layers",
                subject=image.id,
            )
        layers = self.layers(image.driver)
        result = []
        for index, (layer_id, diff_id) in enumerate(zip(chain, image.diff_ids, strict=True)):
            record = layers[layer_id]
            split = f"{image.driver}-layers/{layer_id}.tar-split.gz"
            size = record.get("diff-size")
            result.append(
                ImageLayer(
                    index=index,
                    diff_id=diff_id,
                    recorded=_str(record.get("diff-digest")),
                    label=f"layer {layer_id}",
                    directory=_layer_dir(image.driver, layer_id),
                    whiteouts=Whiteouts.OVERLAY if image.driver == "overlay" else Whiteouts.NONE,
                    tar_split=split if self.evidence.is_file(split) else None,
                    size=size if isinstance(size, int) else None,
                )
            )
        return result

    # -- libpod's database ---------------------------------------------------------------------

    def libpod(self) -> dict[str, dict[str, Any]]:
        """container ID -> {"config": …, "state": …} from libpod's database ({} if none)."""
        if self._libpod is not None:
            return self._libpod
        self._libpod = {}
        try:
            if self.evidence.is_file(BOLT_DB):
                self._read_bolt(BOLT_DB)
            else:
                sqlite_db = next((p for p in SQLITE_DBS if self.evidence.is_file(p)), None)
                if sqlite_db is not None:
                    self._read_sqlite(sqlite_db)
        except DockscopeError as exc:
            self.notes.append(f"libpod database: {exc}")
        return self._libpod

    def _read_bolt(self, rel: str) -> None:
        assert self._libpod is not None
        db = BoltDB(self.evidence.read_bytes(rel, limit=MAX_DB_BYTES), name=str(rel))
        runtime = db.find(b"runtime-config")
        if runtime is not None:
            root = runtime.value(b"graph-root")
            self._graph_root = root.decode("utf-8", "replace") if root else None
        ctrs = db.find(b"ctr")
        if ctrs is None:
            return
        for key, bucket in ctrs.items():
            if isinstance(bucket, bytes):
                continue
            record: dict[str, Any] = {}
            for name in ("config", "state"):
                raw = bucket.value(name.encode())
                if raw is not None:
                    with contextlib.suppress(DockscopeError):
                        record[name] = parse_json(raw, subject=f"{rel}: ctr/{key!r}/{name}")
            self._libpod[key.decode("utf-8", "replace")] = record

    def _read_sqlite(self, rel: str) -> None:
        assert self._libpod is not None
        fd = self.evidence.open_file(rel)
        try:
            # immutable: SQLite writes nothing (no journal, no lock file) beside the evidence
            uri = f"file:/proc/self/fd/{fd}?mode=ro&immutable=1"
            connection = sqlite3.connect(uri, uri=True)
            try:
                rows = connection.execute(
                    "SELECT c.ID, c.JSON, s.JSON FROM ContainerConfig c "
                    "LEFT JOIN ContainerState s ON s.ID = c.ID"
                ).fetchall()
                with contextlib.suppress(sqlite3.Error):
                    row = connection.execute("SELECT GraphRoot FROM DBConfig").fetchone()
                    self._graph_root = row[0] if row else None
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise StorageError(f"not a readable libpod database: {exc}", subject=rel) from None
        finally:
            os.close(fd)
        for cid, config, state in rows:
            record: dict[str, Any] = {}
            for name, raw in (("config", config), ("state", state)):
                if isinstance(raw, str | bytes):
                    data = raw.encode() if isinstance(raw, str) else raw
                    with contextlib.suppress(DockscopeError):
                        record[name] = parse_json(data, subject=f"{rel}: {cid}/{name}")
            self._libpod[str(cid)] = record

    def _in_root(self, host_path: object) -> str | None:
        """A host path the engine recorded, as a path under ROOT when it lies in the graph
        root (never followed elsewhere)."""
        if not isinstance(host_path, str) or not self._graph_root:
            return None
        prefix = self._graph_root.rstrip("/") + "/"
        if not host_path.startswith(prefix):
            return None
        rel = host_path[len(prefix) :]
        return rel if ".." not in rel.split("/") else None

    # -- containers ----------------------------------------------------------------------------

    def containers(self) -> list[ContainerRecord]:
        if self._containers is not None:
            return self._containers
        found = []
        libpod = self.libpod()
        for driver in self.drivers:
            for entry in self._list(f"{driver}-containers/containers.json"):
                cid = entry["id"]
                if not _HEX64.fullmatch(cid):
                    self.notes.append(f"{driver}-containers: bad container ID {cid!r}")
                    continue
                self._entries[cid] = entry
                try:
                    found.append(self._container(driver, entry, libpod.get(cid, {})))
                except DockscopeError as exc:
                    self.notes.append(f"container {cid[:12]}: {exc}; skipped")
                    self.skipped_containers[cid] = exc
        self._containers = found
        return found

    def _userdata(self, driver: str, cid: str, name: str) -> str | None:
        rel = f"{driver}-containers/{cid}/userdata/{name}"
        return rel if self.evidence.is_file(rel) else None

    def _container(
        self, driver: str, entry: dict[str, Any], pod: dict[str, Any]
    ) -> ContainerRecord:
        cid = entry["id"]
        names = [n for n in entry.get("names") or [] if isinstance(n, str)]
        metadata: dict[str, Any] = {}
        if isinstance(entry.get("metadata"), str):
            with contextlib.suppress(DockscopeError):
                value = parse_json(entry["metadata"].encode(), subject=f"{cid}: metadata")
                metadata = value if isinstance(value, dict) else {}
        config = pod.get("config") if isinstance(pod.get("config"), dict) else {}
        state = pod.get("state") if isinstance(pod.get("state"), dict) else {}
        assert isinstance(config, dict) and isinstance(state, dict)
        image_id = _str(entry.get("image"))
        image = (
            _str(metadata.get("image-name"))
            or _str(config.get("rootfsImageName"))
            or (image_id or "")
        )
        command = _args(config.get("spec"))
        spec_rel = self._userdata(driver, cid, "config.json")
        if command is None and spec_rel is not None:
            with contextlib.suppress(DockscopeError):
                command = _args(self.evidence.read_json(spec_rel))
        buildah = self._userdata(driver, cid, "buildah.json")
        engine = "podman" if pod else "buildah" if buildah else "containers-storage"
        if engine == "buildah" and buildah is not None and image == image_id:
            with contextlib.suppress(DockscopeError):
                recorded = self.evidence.read_json(buildah)
                if isinstance(recorded, dict) and _str(recorded.get("image")):
                    image = str(recorded["image"])
        status = "unknown"
        running: bool | None = None
        exit_code = None
        if state:
            status = STATES.get(state.get("state"), "unknown")  # type: ignore[arg-type]
            running = status in ("running", "paused")
            code = state.get("exitCode", 0)  # Go's omitempty: 0 is left out
            exit_code = code if isinstance(code, int) and status in ("exited", "stopped") else None
        elif engine == "buildah":
            status, running = "created", False
        layer = _str(entry.get("layer"))
        upper = None
        if layer is not None and driver in DRIVERS:
            try:
                upper = str(self.evidence.path(_layer_dir(driver, layer)))
            except DockscopeError as exc:
                self.notes.append(f"container {cid[:12]}: {exc}")
        log_rel = self._in_root(config.get("logPath"))
        if log_rel is None or not self.evidence.is_file(log_rel):
            log_rel = self._userdata(driver, cid, "ctr.log")
        if log_rel is not None:
            self._log_rel[cid] = log_rel
        pid = state.get("pid")
        return ContainerRecord(
            id=cid,
            name=names[0] if names else _str(config.get("name")) or cid[:12],
            image=image,
            image_id=f"sha256:{image_id}" if image_id else None,
            created=_str(entry.get("created")) or _str(config.get("createdTime")),
            running=running,
            status=status,
            exit_code=exit_code,
            started=_time(state.get("startedTime")),
            finished=_time(state.get("finishedTime")),
            pid=pid if isinstance(pid, int) and pid > 0 else None,
            command=command,
            driver=driver,
            engine=engine,
            upper_dir=upper,
            log_path=str(self.evidence.path(log_rel)) if log_rel else None,
            key=layer or "",
        )

    def writable(self, container: ContainerRecord) -> WritableLayer:
        driver = container.driver
        if driver not in DRIVERS:
            raise StorageError(f"the {driver!r} storage driver is not supported", subject=driver)
        if not container.key:
            raise StorageError("the container has no layer", subject=container.id)
        chain = self._chain(driver, container.key)
        opened: list[LayerDir] = []

        def layer(layer_id: str) -> LayerDir:
            opened.append(self.evidence.layer(_layer_dir(driver, layer_id)))
            return opened[-1]

        try:
            upper = layer(chain[0])
            lowers = [layer(i) for i in chain[1:]]
        except BaseException:
            for item in opened:
                item.close()
            raise
        if driver == "overlay":
            result = WritableLayer(
                container, upper, lowers, Whiteouts.OVERLAY, "overlay", CSTORAGE_OVERLAY
            )
            result.merged = UnionView([upper, *lowers], Whiteouts.OVERLAY)
        else:
            # vfs: every layer is a full copy; the diff is against the parent's copy only
            result = WritableLayer(container, upper, lowers[:1], Whiteouts.NONE, "naive", None)
            result.new_tree = CopyTree(upper)
            result.old_tree = CopyTree(lowers[0]) if lowers else None
            result.merged = result.new_tree
        result.opened = opened
        engine_paths = dict(HIDDEN_PATHS)
        for point in self._mount_points(container):
            engine_paths.setdefault(point, "mount point")
        result.engine_paths = engine_paths
        result.hidden_paths = frozenset(HIDDEN_PATHS)
        return result

    def _mount_points(self, container: ContainerRecord) -> list[str]:
        spec_rel = self._userdata(container.driver, container.id, "config.json")
        if spec_rel is None:
            return []
        try:
            spec = self.evidence.read_json(spec_rel)
        except DockscopeError:
            return []
        mounts = spec.get("mounts") if isinstance(spec, dict) else None
        return [
            m["destination"]
            for m in mounts or []
            if isinstance(m, dict) and isinstance(m.get("destination"), str)
        ]

    def inspect(self, container: ContainerRecord) -> dict[str, Any]:
        files: dict[str, Any] = {}
        self.containers()
        entry = dict(self._entries.get(container.id, {}))
        if isinstance(entry.get("metadata"), str):
            with contextlib.suppress(DockscopeError):
                entry["metadata"] = parse_json(entry["metadata"].encode(), subject="metadata")
        files[f"{container.driver}-containers/containers.json"] = entry
        for name in ("config.json", "buildah.json"):
            rel = self._userdata(container.driver, container.id, name)
            if rel is not None:
                files[rel] = self.evidence.read_json(rel)
        pod = self.libpod().get(container.id)
        if pod:
            databases = [BOLT_DB, *SQLITE_DBS]
            files[next((d for d in databases if self.evidence.is_file(d)), BOLT_DB)] = pod
        if container.key:
            layer = self.layers(container.driver).get(container.key)
            if layer is not None:
                files[f"{container.driver}-layers/layers.json"] = layer
        return files

    def log_file(self, container: ContainerRecord) -> tuple[str, str]:
        config = self.libpod().get(container.id, {}).get("config") or {}
        driver = config.get("logDriver") if isinstance(config, dict) else None
        self.containers()
        rel = self._log_rel.get(container.id)
        if rel is None:
            where = f"to {driver!r}" if driver else "nowhere under ROOT"
            raise StorageError(f"the container logged {where}", subject=container.name)
        return "k8s-file", rel


def _layer_dir(driver: str, layer_id: str) -> str:
    check_name(layer_id, what="layer ID", subject=driver)
    return f"overlay/{layer_id}/diff" if driver == "overlay" else f"vfs/dir/{layer_id}"


def _args(spec: object) -> tuple[str, ...] | None:
    if not isinstance(spec, dict):
        return None
    process = spec.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("args"), list):
        return None
    return tuple(str(a) for a in process["args"])


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> str | None:
    text = _str(value)
    return None if text is None or text.startswith(_ZERO) else text
