"""Docker's ``/var/lib/docker``: images, containers and their layers, read from a copy.

- ``image/<driver>/repositories.json`` names images; ``image/<driver>/imagedb/content/sha256/
  <id>`` is each image's config (its sha256 is the image ID).
- ``image/<driver>/layerdb/sha256/<chain ID>/`` records each image layer: ``cache-id`` (its
  directory in the driver), ``diff`` (its diff_id), ``size``, ``parent`` and
  ``tar-split.json.gz`` (the original tar's headers, to rebuild its exact bytes).
- ``image/<driver>/layerdb/mounts/<container>/`` names a container's layers: ``mount-id``
  (the writable layer), ``init-id`` (the layer the engine writes: hostname, hosts,
  resolv.conf, mount points) and ``parent`` (the image's top chain ID).
- ``containers/<id>/config.v2.json`` (config and state), ``hostconfig.json``,
  ``<id>-json.log`` (the json-file log).
- The driver's directories: ``overlay2/<id>/diff`` (``lower`` lists the layers below through
  the ``l/`` short links), ``aufs/diff/<id>`` (``aufs/layers/<id>`` lists the parents),
  ``vfs/dir/<id>`` (full copies), ``overlay/<id>/root`` for image layers and
  ``overlay/<id>/upper`` + ``lower-id`` for containers (overlay v1).

``docker diff`` compares the writable layer with the init layer and the image below it, so
what the engine wrote at start-up does not show: ``init`` entries are flagged, never listed.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from inspect_tool.errors import DockscopeError, UnsafePathError
from inspect_tool.model.jsondoc import expect_list, expect_object
from inspect_tool.storage.evidence import Evidence, LayerDir, StorageError, check_name
from inspect_tool.storage.model import (
    ContainerRecord,
    EngineStorage,
    ImageLayer,
    ImageRecord,
    WritableLayer,
)
from inspect_tool.storage.writable import (
    MOBY_AUFS,
    MOBY_OVERLAY,
    CopyTree,
    UnionView,
    Whiteouts,
)

DRIVERS = ("overlay2", "overlay", "aufs", "vfs")
UNSUPPORTED = ("btrfs", "zfs", "devicemapper", "fuse-overlayfs", "windowsfilter")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHORT_LINK = re.compile(r"\.\./([A-Za-z0-9][A-Za-z0-9_.-]*)/diff")

# what the engine itself puts into every container (the init layer), and why
ENGINE_PATHS = {
    "/.dockerenv": "docker marker file",
    "/etc/hostname": "hostname (bind mount)",
    "/etc/hosts": "hosts (bind mount)",
    "/etc/resolv.conf": "resolv.conf (bind mount)",
    "/etc/mtab": "mtab link",
    "/dev": "mount point",
    "/dev/console": "mount point",
    "/dev/pts": "mount point",
    "/dev/shm": "mount point",
    "/proc": "mount point",
    "/sys": "mount point",
}


def detect(evidence: Evidence) -> list[str] | None:
    """The graph drivers a Docker root holds images or containers for (None: not Docker)."""
    if not evidence.is_dir("image"):
        return None
    found = []
    for driver in evidence.listdir("image"):
        base = f"image/{driver}"
        if not (evidence.is_dir(f"{base}/imagedb") or evidence.is_dir(f"{base}/layerdb")):
            continue
        used = any(
            evidence.is_dir(d) and evidence.listdir(d)
            for d in (
                f"{base}/imagedb/content/sha256",
                f"{base}/layerdb/sha256",
                f"{base}/layerdb/mounts",
            )
        )
        if used:
            found.append(driver)
    if not found and not evidence.is_dir("containers"):
        return None
    return found


class DockerStorage(EngineStorage):
    engine = "docker"

    def __init__(self, evidence: Evidence, drivers: list[str]) -> None:
        super().__init__(evidence, drivers)
        self.notes: list[str] = []
        self._images: list[ImageRecord] | None = None
        self._containers: list[ContainerRecord] | None = None
        self._configs: dict[str, dict[str, Any]] = {}

    # -- images --------------------------------------------------------------------------------

    def _repositories(self, driver: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """image ID -> tags, image ID -> digests."""
        tags: dict[str, list[str]] = {}
        digests: dict[str, list[str]] = {}
        rel = f"image/{driver}/repositories.json"
        if not self.evidence.is_file(rel):
            return tags, digests
        doc = expect_object(self.evidence.read_json(rel), subject=rel, what="repositories.json")
        repos = expect_object(doc.get("Repositories") or {}, subject=rel, what="Repositories")
        for names in repos.values():
            if not isinstance(names, dict):
                continue
            for name, image_id in names.items():
                if isinstance(name, str) and isinstance(image_id, str):
                    (digests if "@" in name else tags).setdefault(image_id, []).append(name)
        return tags, digests

    def images(self) -> list[ImageRecord]:
        if self._images is not None:
            return self._images
        found: list[ImageRecord] = []
        for driver in self.drivers:
            content = f"image/{driver}/imagedb/content/sha256"
            if not self.evidence.is_dir(content):
                continue
            try:
                tags, digests = self._repositories(driver)
            except DockscopeError as exc:
                self.notes.append(f"{exc}; image names unknown")
                tags, digests = {}, {}
            for name in self.evidence.listdir(content):
                if not _HEX64.fullmatch(name):
                    self.notes.append(f"{content}/{name}: not an image ID; skipped")
                    continue
                rel = f"{content}/{name}"
                try:
                    data = self.evidence.read_bytes(rel)
                    config = _object(self.evidence, data, rel)
                except DockscopeError as exc:
                    self.notes.append(f"{exc}; image skipped")
                    continue
                if hashlib.sha256(data).hexdigest() != name:
                    self.notes.append(f"{rel}: the config's sha256 is not its name (altered?)")
                image_id = f"sha256:{name}"
                self._configs[image_id] = config
                rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), dict) else {}
                assert isinstance(rootfs, dict)
                diff_ids = tuple(
                    str(d)
                    for d in expect_list(rootfs.get("diff_ids"), subject=rel, what="diff_ids")
                )
                found.append(
                    ImageRecord(
                        id=image_id,
                        tags=tuple(sorted(tags.get(image_id, []))),
                        digests=tuple(sorted(digests.get(image_id, []))),
                        created=_text(config.get("created")),
                        diff_ids=diff_ids,
                        driver=driver,
                        size=self._image_size(driver, diff_ids),
                        key=name,
                    )
                )
        self._images = found
        return found

    def _image_size(self, driver: str, diff_ids: tuple[str, ...]) -> int | None:
        total = 0
        for chain in _chain_ids(diff_ids):
            rel = f"image/{driver}/layerdb/sha256/{chain}/size"
            if not self.evidence.is_file(rel):
                return None
            try:
                size = _decimal(self.evidence.read_text(rel))
            except DockscopeError:  # unreadable or oversized: the size is unknown, no more
                size = None
            if size is None:
                return None
            total += size
        return total

    def image_config(self, image: ImageRecord) -> bytes:
        return self.evidence.read_bytes(f"image/{image.driver}/imagedb/content/sha256/{image.key}")

    def _layer_record(self, driver: str, chain: str) -> dict[str, str | None]:
        base = f"image/{driver}/layerdb/sha256/{chain}"
        if not self.evidence.is_dir(base):
            raise StorageError("the layer database has no such layer", subject=base)
        record: dict[str, str | None] = {}
        for key in ("cache-id", "diff", "size", "parent"):
            rel = f"{base}/{key}"
            record[key] = self.evidence.read_text(rel) if self.evidence.is_file(rel) else None
        split = f"{base}/tar-split.json.gz"
        record["tar-split"] = split if self.evidence.is_file(split) else None
        if record["cache-id"] is None:
            raise StorageError("no cache-id: the layer's directory is unknown", subject=base)
        check_name(record["cache-id"], what="cache-id", subject=f"{base}/cache-id")
        return record

    def image_layers(self, image: ImageRecord) -> list[ImageLayer]:
        layers = []
        for index, (diff_id, chain) in enumerate(
            zip(image.diff_ids, _chain_ids(image.diff_ids), strict=True)
        ):
            record = self._layer_record(image.driver, chain)
            cache = str(record["cache-id"])
            size = record["size"]
            layers.append(
                ImageLayer(
                    index=index,
                    diff_id=diff_id,
                    recorded=record["diff"],
                    label=f"cache-id {cache}",
                    directory=_image_layer_dir(image.driver, cache),
                    whiteouts=_whiteouts(image.driver),
                    tar_split=record["tar-split"],
                    size=_decimal(size),
                )
            )
        return layers

    # -- containers ----------------------------------------------------------------------------

    def _container_config(self, cid: str) -> dict[str, Any]:
        rel = f"containers/{cid}/config.v2.json"
        return _object(self.evidence, self.evidence.read_bytes(rel), rel)

    def containers(self) -> list[ContainerRecord]:
        if self._containers is not None:
            return self._containers
        found: list[ContainerRecord] = []
        names = self.evidence.listdir("containers") if self.evidence.is_dir("containers") else []
        for cid in names:
            if not _HEX64.fullmatch(cid):
                self.notes.append(f"containers/{cid}: not a container ID; skipped")
                continue
            try:
                # a symlink or a file where the container's directory should be is refused
                # by the lookups (UnsafePathError): that container is skipped, not the listing
                if not self.evidence.is_file(f"containers/{cid}/config.v2.json"):
                    self.notes.append(f"containers/{cid}: no config.v2.json; skipped")
                    continue
                found.append(self._container(cid))
            except DockscopeError as exc:
                self.notes.append(f"{exc}; container skipped")
                self.skipped_containers[cid] = exc
        self._containers = found
        return found

    def _container(self, cid: str) -> ContainerRecord:
        config = self._container_config(cid)
        if config.get("ID") not in (cid, None):
            self.notes.append(f"containers/{cid}/config.v2.json: its ID is {config.get('ID')!r}")
        state = config.get("State") if isinstance(config.get("State"), dict) else {}
        assert isinstance(state, dict)
        inner = config.get("Config") if isinstance(config.get("Config"), dict) else {}
        assert isinstance(inner, dict)
        driver = _text(config.get("Driver")) or (self.drivers[0] if self.drivers else "")
        running = bool(state.get("Running"))
        started = _time(state.get("StartedAt"))
        if state.get("Dead"):
            status = "dead"
        elif running and state.get("Paused"):
            status = "paused"
        elif running and state.get("Restarting"):
            status = "restarting"
        elif running:
            status = "running"
        elif started is None:
            status = "created"
        else:
            status = "exited"
        path = config.get("Path")
        args = config.get("Args") if isinstance(config.get("Args"), list) else []
        assert isinstance(args, list)
        command = (str(path), *(str(a) for a in args)) if isinstance(path, str) else None
        try:
            mount = self._mount_ids(driver, cid)
        except DockscopeError as exc:
            self.notes.append(f"{exc}; its writable layer is unknown")
            mount = None
        upper = None
        if mount is not None and driver in DRIVERS:
            upper = str(self.evidence.path(_upper_dir(driver, mount["mount-id"])))
        _, log_rel = self._log(cid)
        pid = state.get("Pid")
        exit_code = state.get("ExitCode")
        return ContainerRecord(
            id=cid,
            name=_text(config.get("Name")) or cid[:12],
            image=_text(inner.get("Image")) or _text(config.get("Image")) or "",
            image_id=_text(config.get("Image")),
            created=_text(config.get("Created")),
            running=running,
            status=status,
            exit_code=exit_code
            if isinstance(exit_code, int) and status in ("exited", "dead")
            else None,
            started=started,
            finished=_time(state.get("FinishedAt")),
            pid=pid if isinstance(pid, int) and pid > 0 else None,
            command=command,
            driver=driver,
            engine="docker",
            upper_dir=upper,
            log_path=str(self.evidence.path(log_rel)) if log_rel else None,
            key=mount["mount-id"] if mount else "",
        )

    def _mount_ids(self, driver: str, cid: str) -> dict[str, str] | None:
        base = f"image/{driver}/layerdb/mounts/{cid}"
        if not self.evidence.is_dir(base):
            return None
        found = {}
        for key in ("mount-id", "init-id", "parent"):
            rel = f"{base}/{key}"
            if self.evidence.is_file(rel):
                found[key] = self.evidence.read_text(rel)
        if "mount-id" not in found:
            return None
        check_name(found["mount-id"], what="mount-id", subject=f"{base}/mount-id")
        if "init-id" in found:
            check_name(found["init-id"], what="init-id", subject=f"{base}/init-id")
        return found

    def _log(self, cid: str) -> tuple[str, str | None]:
        host = f"containers/{cid}/hostconfig.json"
        kind = "json-file"
        if self.evidence.is_file(host):
            hostconfig = _object(self.evidence, self.evidence.read_bytes(host), host)
            log_config = hostconfig.get("LogConfig")
            if isinstance(log_config, dict) and isinstance(log_config.get("Type"), str):
                kind = log_config["Type"] or "json-file"
        if kind == "json-file":
            return kind, f"containers/{cid}/{cid}-json.log"
        if kind == "local":
            return kind, f"containers/{cid}/local-logs/container.log"
        return kind, None

    def _image_chain(self, driver: str, top: str | None) -> list[str]:
        """Cache IDs of the image layers below a container, topmost first."""
        caches = []
        chain = top
        seen: set[str] = set()
        while chain:
            hex_part = chain.removeprefix("sha256:")
            if not _HEX64.fullmatch(hex_part) or hex_part in seen:
                raise StorageError(f"bad or looping layer chain at {chain!r}", subject=driver)
            seen.add(hex_part)
            record = self._layer_record(driver, hex_part)
            caches.append(str(record["cache-id"]))
            chain = record["parent"]
        return caches

    def _lower_from_links(self, mount: str) -> list[str]:
        """overlay2's ``lower`` file: ``l/SHORT:l/SHORT…``, each link ``../<id>/diff``."""
        rel = f"overlay2/{mount}/lower"
        if not self.evidence.is_file(rel):
            return []
        ids = []
        for entry in self.evidence.read_text(rel, limit=1 << 20).split(":"):
            short = entry.removeprefix("l/")
            check_name(short, what="short link name", subject=rel)
            target = self.evidence.readlink(f"overlay2/l/{short}")
            match = _SHORT_LINK.fullmatch(target)
            if match is None:
                raise UnsafePathError(
                    f"link {short} points at {target!r}, not ../<id>/diff", subject=rel
                )
            ids.append(match.group(1))
        return ids

    def writable(self, container: ContainerRecord) -> WritableLayer:
        driver = container.driver
        if driver in UNSUPPORTED or driver not in DRIVERS:
            raise StorageError(f"the {driver!r} storage driver is not supported", subject=driver)
        mount = self._mount_ids(driver, container.id)
        if mount is None:
            raise StorageError(
                "no layerdb mount record: the container's writable layer is unknown",
                subject=str(self.evidence.path(f"image/{driver}/layerdb/mounts/{container.id}")),
            )
        mount_id = mount["mount-id"]
        init_id = mount.get("init-id")
        if mount.get("parent"):
            image_caches = self._image_chain(driver, mount.get("parent"))
        elif driver == "overlay2":  # no parent recorded: the lower file names the layers
            image_caches = [c for c in self._lower_from_links(mount_id) if c != init_id]
        else:
            image_caches = []  # an image from scratch with no layer
        config = self._container_config(container.id)
        engine_paths = dict(ENGINE_PATHS)
        points = config.get("MountPoints")
        if isinstance(points, dict):
            for point in points.values():
                if isinstance(point, dict) and isinstance(point.get("Destination"), str):
                    engine_paths[point["Destination"]] = (
                        f"{point.get('Type') or 'volume'} mount point"
                    )
        opened: list[LayerDir] = []

        def layer(rel: str) -> LayerDir:
            opened.append(self.evidence.layer(rel))
            return opened[-1]

        try:
            if driver == "overlay2":
                upper = layer(f"overlay2/{mount_id}/diff")
                lowers = [layer(f"overlay2/{init_id}/diff")] if init_id else []
                base = [layer(f"overlay2/{c}/diff") for c in image_caches]
                result = WritableLayer(
                    container, upper, lowers + base, Whiteouts.OVERLAY, "overlay", MOBY_OVERLAY
                )
                result.merged = UnionView([upper, *lowers, *base], Whiteouts.OVERLAY)
            elif driver == "aufs":
                upper = layer(f"aufs/diff/{mount_id}")
                lowers = [layer(f"aufs/diff/{init_id}")] if init_id else []
                base = [layer(f"aufs/diff/{c}") for c in image_caches]
                result = WritableLayer(
                    container, upper, lowers + base, Whiteouts.AUFS, "aufs", MOBY_AUFS
                )
                result.merged = UnionView([upper, *lowers, *base], Whiteouts.AUFS)
            elif driver == "vfs":
                upper = layer(f"vfs/dir/{mount_id}")
                parent = layer(f"vfs/dir/{init_id or image_caches[0]}")
                result = WritableLayer(container, upper, [parent], Whiteouts.NONE, "naive", None)
                result.new_tree, result.old_tree = CopyTree(upper), CopyTree(parent)
                result.merged = result.new_tree
            else:  # overlay (v1): image layers are full trees, containers an upper on one
                upper = layer(f"overlay/{mount_id}/upper")
                lower_id = check_name(
                    self.evidence.read_text(f"overlay/{mount_id}/lower-id"),
                    what="lower-id",
                    subject=f"overlay/{mount_id}/lower-id",
                )
                root = layer(f"overlay/{lower_id}/root")
                parent_upper = layer(f"overlay/{init_id}/upper") if init_id else None
                result = WritableLayer(container, upper, [root], Whiteouts.OVERLAY, "naive", None)
                result.new_tree = UnionView([upper, root], Whiteouts.OVERLAY)
                result.old_tree = UnionView(
                    [parent_upper, root] if parent_upper else [root], Whiteouts.OVERLAY
                )
                result.merged = result.new_tree
        except BaseException:
            for opened_layer in opened:
                opened_layer.close()
            raise
        result.engine_paths = engine_paths
        result.opened = opened
        return result

    def inspect(self, container: ContainerRecord) -> dict[str, Any]:
        files: dict[str, Any] = {}
        for name in ("config.v2.json", "hostconfig.json"):
            rel = f"containers/{container.id}/{name}"
            if self.evidence.is_file(rel):
                files[rel] = self.evidence.read_json(rel)
        base = f"image/{container.driver}/layerdb/mounts/{container.id}"
        if self.evidence.is_dir(base):
            for name in self.evidence.listdir(base):
                rel = f"{base}/{name}"
                if self.evidence.is_file(rel):
                    files[rel] = self.evidence.read_text(rel, limit=1 << 16)
        for name in ("hostname", "hosts", "resolv.conf", "resolv.conf.hash"):
            rel = f"containers/{container.id}/{name}"
            if self.evidence.is_file(rel):
                files[rel] = self.evidence.read_bytes(rel, limit=1 << 20).decode("utf-8", "replace")
        return files

    def log_file(self, container: ContainerRecord) -> tuple[str, str]:
        kind, rel = self._log(container.id)
        if rel is None:
            raise StorageError(
                f"the container logged to {kind!r}, which keeps nothing under ROOT",
                subject=container.name,
            )
        return kind, rel


def _decimal(text: str | None) -> int | None:
    """A size the engine wrote as decimal digits; None for anything else (an integer of
    thousands of digits included: no layer is that large)."""
    if text and text.isascii() and text.isdigit() and len(text) <= 20:
        return int(text)
    return None


def _chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    result = []
    for c in chain:
        hex_part = c.removeprefix("sha256:")
        if not _HEX64.fullmatch(hex_part):
            raise StorageError(f"not a sha256 digest: {c!r:.80}", subject="rootfs.diff_ids")
        result.append(hex_part)
    return result


def _image_layer_dir(driver: str, cache: str) -> str:
    return {
        "overlay2": f"overlay2/{cache}/diff",
        "aufs": f"aufs/diff/{cache}",
        "vfs": f"vfs/dir/{cache}",
        "overlay": f"overlay/{cache}/root",
    }.get(driver) or _unsupported(driver)


def _upper_dir(driver: str, mount: str) -> str:
    return {
        "overlay2": f"overlay2/{mount}/diff",
        "aufs": f"aufs/diff/{mount}",
        "vfs": f"vfs/dir/{mount}",
        "overlay": f"overlay/{mount}/upper",
    }[driver]


def _whiteouts(driver: str) -> Whiteouts:
    if driver == "aufs":
        return Whiteouts.AUFS
    return Whiteouts.NONE if driver in ("vfs", "overlay") else Whiteouts.OVERLAY


def _unsupported(driver: str) -> str:
    raise StorageError(f"the {driver!r} storage driver is not supported", subject=driver)


def _object(evidence: Evidence, data: bytes, rel: str) -> dict[str, Any]:
    from inspect_tool.model.jsondoc import parse_json

    subject = str(evidence.path(rel))
    return expect_object(parse_json(data, subject=subject), subject=subject, what=rel)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> str | None:
    text = _text(value)
    return None if text is None or text.startswith("0001-01-01") else text
