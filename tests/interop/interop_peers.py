"""Build real images offline with the real peers (buildah, skopeo, podman, umoci) and read
the ground truth back from them.

Every tool runs against an isolated store (vfs graph root, run root, config, policy and
registries files all under one temporary directory); nothing touches /var/lib/containers,
and every proxy variable points at a closed local port, so an accidental registry lookup
fails at once instead of reaching the network.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.support.trees import extract_trusted

# Debian package that provides each command the fixture needs.
REQUIRED_COMMANDS: Mapping[str, str] = {
    "buildah": "buildah",
    "skopeo": "skopeo",
    "podman": "podman",
    "umoci": "umoci",
    "busybox": "busybox-static",
    "zstd": "zstd",
}
MAKE_HINT = "run `make debs-test` (it installs: busybox-static buildah skopeo podman umoci zstd)"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"

OCI_FORMATS = frozenset({"oci-layout", "oci-archive"})
DOCKER_FORMATS = frozenset({"docker-archive", "docker-dir"})

# Images in the isolated store.
BASE = "localhost/dockscope-interop/base:1"
APP = "localhost/dockscope-interop/app:2"
APP_DOCKER = "localhost/dockscope-interop/app:3-docker"
MULTI_AMD64 = "localhost/dockscope-interop/multi:amd64"
MULTI_ARM64 = "localhost/dockscope-interop/multi:arm64"
MULTI_LIST = "localhost/dockscope-interop/list:1"

# Tags written into docker archives (fully qualified so nothing normalises them).
TAG_APP = "example.org/dockscope/app:2"
TAG_APP_DOCKER = "example.org/dockscope/app:3"
TAG_SKOPEO = "example.org/dockscope/app:skopeo"
TAG_SKOPEO_EXTRA = "example.org/dockscope/app:extra"
TAG_PODMAN_EXTRA = "example.org/dockscope/podman:two"

# What the builder sets, asserted against both the peer's config and dockscope's output.
BASE_ENV = ("FOO=bar", "PATH=/bin")
BASE_LABELS = {"org.example.k": "v"}
BASE_ENTRYPOINT = ["/bin/sh", "-c"]
BASE_CMD = ["echo hello from dockscope"]


@dataclass(frozen=True)
class ImageSpec:
    """One image inside an artifact, and how to reach it from dockscope and from the peers."""

    peer_ref: str  # containers-image reference skopeo reads the ground truth from
    select: tuple[str, ...] = ()  # dockscope selection arguments (empty: the only image)
    alt_selects: tuple[tuple[str, ...], ...] = ()  # other selections naming the same image
    peer_flags: tuple[str, ...] = ()  # global skopeo flags (--override-arch ...)
    platform: str = "linux/amd64"
    compression: str = "gzip"  # expected compression of every layer blob
    repo_tags: tuple[str, ...] | None = None  # None: not asserted
    ref_name: str | None = None  # None: not asserted
    env: tuple[str, ...] = ()  # entries that must be in config.Env
    labels: Mapping[str, str] = field(default_factory=dict)  # must be in config.Labels
    cmd: list[str] | None = None  # config.Cmd exactly (None: not asserted)
    entrypoint: list[str] | None = None
    whiteout: str | None = None  # path of a whiteout entry the top layer holds


@dataclass(frozen=True)
class Artifact:
    """One file or directory written by a peer, with what dockscope should make of it."""

    name: str
    path: Path
    tool: str  # the command (or commands) that wrote it
    format: str | None  # expected dockscope `format`; None: not an image dockscope reads
    images: tuple[ImageSpec, ...] = ()
    archive_compression: str | None = None
    truth_path: Path | None = None  # where the peer reads it from (when dockscope's input
    # is a re-packed copy: compressed tarball, extracted directory)
    verify_failures: frozenset[str] = frozenset()  # checks verify must fail (and no others)

    @property
    def is_oci(self) -> bool:
        return self.format in OCI_FORMATS

    @property
    def blob_source(self) -> Path:
        return self.truth_path or self.path


@dataclass(frozen=True)
class Truth:
    """What the peers say about one image."""

    manifest_bytes: bytes  # raw manifest (synthesised by skopeo for docker archives)
    manifest: dict[str, Any]
    manifest_descriptor: dict[str, Any] | None  # descriptor naming it in its index, if any
    parent_index_digest: str | None  # digest of the index blob naming it (not index.json)
    config_bytes: bytes
    config: dict[str, Any]

    @property
    def image_id(self) -> str:
        return sha256_digest(self.config_bytes)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest_bytes)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config["rootfs"]["diff_ids"])


class PeerError(RuntimeError):
    pass


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else sha256_digest(f"{chain[-1]} {diff_id}".encode()))
    return chain


def missing_commands() -> list[str]:
    """Debian packages whose command is missing."""
    return sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if shutil.which(cmd) is None})


class Peers:
    """Runs the peers against one isolated store under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.graph = root / "graph"
        self.run = root / "run"
        home = root / "home"
        conf = home / ".config" / "containers"
        for d in (self.graph, self.run, conf, root / "tmp", root / "xdg-run", root / "cni"):
            d.mkdir(parents=True, exist_ok=True)
        (root / "xdg-run").chmod(0o700)
        self.storage_conf = conf / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.graph}"\nrunroot = "{self.run}"\n'
        )
        self.registries_conf = conf / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        self.policy = conf / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        self.containers_conf = conf / "containers.conf"
        self.containers_conf.write_text(
            '[engine]\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n'
            f'[network]\nnetwork_config_dir = "{root / "cni"}"\n'
        )
        (home / "auth.json").write_text('{"auths": {}}\n')
        closed = "http://127.0.0.1:9"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONTAINERS_", "REGISTRY_", "BUILDAH_", "XDG_", "DOCKER_"))
            and k.lower() not in {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
        }
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            XDG_RUNTIME_DIR=str(root / "xdg-run"),
            TMPDIR=str(root / "tmp"),
            CONTAINERS_STORAGE_CONF=str(self.storage_conf),
            CONTAINERS_REGISTRIES_CONF=str(self.registries_conf),
            CONTAINERS_CONF=str(self.containers_conf),
            REGISTRY_AUTH_FILE=str(home / "auth.json"),
            BUILDAH_ISOLATION="chroot",
            HTTP_PROXY=closed,
            HTTPS_PROXY=closed,
            http_proxy=closed,
            https_proxy=closed,
            NO_PROXY="",
            no_proxy="",
        )
        self.env = env
        self.log: list[str] = []

    # -- running ---------------------------------------------------------------------------

    def _store_flags(self) -> list[str]:
        return ["--root", str(self.graph), "--runroot", str(self.run), "--storage-driver", "vfs"]

    def cmd(self, *argv: str | Path, timeout: float = 120) -> bytes:
        args = [str(a) for a in argv]
        started = time.monotonic()
        proc = subprocess.run(
            args, env=self.env, capture_output=True, timeout=timeout, check=False, cwd=self.root
        )
        self.log.append(f"{time.monotonic() - started:6.2f}s rc={proc.returncode} {args}")
        if proc.returncode != 0:
            raise PeerError(
                f"{' '.join(args)} exited {proc.returncode}\n"
                f"stderr: {proc.stderr.decode(errors='replace')}"
            )
        return proc.stdout

    def buildah(self, *argv: str | Path) -> str:
        return self.cmd("buildah", *self._store_flags(), *argv).decode().strip()

    def podman(self, *argv: str | Path) -> str:
        flags = [*self._store_flags(), "--tmpdir", str(self.root / "tmp"), "--cgroup-manager"]
        return self.cmd("podman", *flags, "cgroupfs", *argv).decode().strip()

    def skopeo(self, *argv: str | Path, flags: Sequence[str] = ()) -> bytes:
        return self.cmd(
            "skopeo",
            "--policy",
            self.policy,
            "--registries-conf",
            self.registries_conf,
            *flags,
            *argv,
        )

    def umoci(self, *argv: str | Path) -> str:
        return self.cmd("umoci", *argv).decode().strip()

    # -- clean-up --------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Unmount and remove every working container, then delete the store."""
        for argv in (("umount", "--all"), ("rm", "--all")):
            with contextlib.suppress(PeerError, subprocess.TimeoutExpired):
                self.buildah(*argv)
        prefix = str(self.root) + "/"
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.graph, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)

    # -- ground truth ----------------------------------------------------------------------

    def truth(self, artifact: Artifact, spec: ImageSpec) -> Truth:
        """Manifest and config of one image as the peers report them.

        skopeo gives the raw manifest (or the index it sits in) and the raw config; when the
        reference names an index, the manifest is the blob the index names for ``platform``,
        read from the layout and checked against the digest skopeo reported.
        """
        raw = self.skopeo("inspect", "--raw", spec.peer_ref, flags=spec.peer_flags)
        top = json.loads(raw)
        descriptor: dict[str, Any] | None = None
        parent_index: str | None = None
        if top.get("mediaType") in {OCI_INDEX, DOCKER_LIST} or "manifests" in top:
            matches = [
                d for d in top["manifests"] if platform_of(d.get("platform")) == spec.platform
            ]
            if len(matches) != 1:
                raise PeerError(f"{spec.peer_ref}: {len(matches)} entries for {spec.platform}")
            descriptor = matches[0]
            parent_index = sha256_digest(raw)
            raw = read_blob(artifact.blob_source, descriptor["digest"])
            if sha256_digest(raw) != descriptor["digest"]:
                raise PeerError(f"{spec.peer_ref}: manifest blob does not match its descriptor")
        elif artifact.is_oci:
            descriptor = index_descriptor(artifact.blob_source, sha256_digest(raw))
        manifest = json.loads(raw)
        config_bytes = self.skopeo(
            "inspect", "--config", "--raw", spec.peer_ref, flags=spec.peer_flags
        )
        if sha256_digest(config_bytes) != manifest["config"]["digest"]:
            raise PeerError(f"{spec.peer_ref}: skopeo's config does not match the manifest")
        return Truth(
            raw, manifest, descriptor, parent_index, config_bytes, json.loads(config_bytes)
        )


class TruthLookup:
    """Callable: (artifact, image spec) -> Truth, asking skopeo once per image."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers
        self._cache: dict[tuple[str, str, tuple[str, ...]], Truth] = {}

    def __call__(self, artifact: Artifact, spec: ImageSpec) -> Truth:
        key = (artifact.name, spec.peer_ref, spec.peer_flags)
        if key not in self._cache:
            self._cache[key] = self._peers.truth(artifact, spec)
        return self._cache[key]


# -- reading layouts (only to fetch bytes whose digest a peer reported) -----------------------


def platform_of(platform: Mapping[str, str] | None) -> str | None:
    if not platform:
        return None
    parts = [platform.get("os", ""), platform.get("architecture", "")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def read_member(source: Path, name: str) -> bytes:
    """A file of an OCI layout directory or of an (uncompressed) archive of one."""
    if source.is_dir():
        return (source / name).read_bytes()
    with tarfile.open(source) as tar:
        member = tar.extractfile(name)
        if member is None:
            raise PeerError(f"{source}: {name} is not a regular file")
        return member.read()


def read_blob(source: Path, digest: str) -> bytes:
    algorithm, hex_digest = digest.split(":", 1)
    return read_member(source, f"blobs/{algorithm}/{hex_digest}")


def index_descriptor(source: Path, manifest_digest: str) -> dict[str, Any] | None:
    index = json.loads(read_member(source, "index.json"))
    for descriptor in index.get("manifests", []):
        if descriptor.get("digest") == manifest_digest:
            return dict(descriptor)
    return None


def docker_manifest_entry(source: Path, config_digest: str) -> dict[str, Any]:
    """The `docker save` manifest.json entry whose Config is ``config_digest``."""
    entries = json.loads(read_member(source, "manifest.json"))
    hex_digest = config_digest.split(":", 1)[1]
    for entry in entries:
        if hex_digest in entry["Config"]:
            return dict(entry)
    raise PeerError(f"{source}: no manifest.json entry for {config_digest}")


def layer_member(artifact: Artifact, truth: Truth, index: int) -> str:
    """Name, inside the artifact's blob source, of the file holding layer ``index``."""
    if artifact.is_oci:
        algorithm, hex_digest = truth.manifest["layers"][index]["digest"].split(":", 1)
        return f"blobs/{algorithm}/{hex_digest}"
    entry = docker_manifest_entry(artifact.blob_source, truth.manifest["config"]["digest"])
    return str(entry["Layers"][index])


def layer_blob(artifact: Artifact, truth: Truth, index: int) -> bytes:
    return read_member(artifact.blob_source, layer_member(artifact, truth, index))


def decompress(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        proc = subprocess.run(["zstd", "-d", "-c"], input=blob, capture_output=True, check=True)
        return proc.stdout
    return blob


def compression_of(blob_head: bytes) -> str:
    if blob_head[:2] == b"\x1f\x8b":
        return "gzip"
    if blob_head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


# -- building ----------------------------------------------------------------------------------


def _stage_rootfs(stage: Path) -> None:
    """A tiny root file system: static busybox, a few applet links, files, a hard link."""
    (stage / "bin").mkdir(parents=True)
    (stage / "etc").mkdir()
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy2(Path(busybox).resolve(), stage / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo"):
        (stage / "bin" / applet).symlink_to("busybox")
    (stage / "etc" / "greeting").write_text("hello\n")
    os.link(stage / "etc" / "greeting", stage / "etc" / "greeting.hard")
    (stage / "etc" / "doomed").write_text("deleted in the next layer\n")
    (stage / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")


def _build_store(peers: Peers, work: Path) -> None:
    buildah = peers.buildah
    stage = work / "stage"
    _stage_rootfs(stage)

    # base:1 -- one layer, OCI format, every config knob.
    ctr = buildah("from", "--pull=never", "--name", "ds-base", "scratch")
    buildah("copy", ctr, f"{stage}/", "/")
    buildah(
        "config",
        "--entrypoint",
        json.dumps(BASE_ENTRYPOINT),
        "--cmd",
        json.dumps(BASE_CMD),
        *[a for e in BASE_ENV for a in ("--env", e)],
        *[a for k, v in BASE_LABELS.items() for a in ("--label", f"{k}={v}")],
        "--workingdir",
        "/work",
        "--port",
        "8080/tcp",
        "--user",
        "1000:1000",
        "--author",
        "dockscope interop",
        "--created-by",
        "COPY rootfs /",
        ctr,
    )
    buildah("commit", "--quiet", "--rm", "--format", "oci", ctr, BASE)

    # app:2 -- second layer deletes /etc/doomed (a whiteout) and adds /data/two.txt.
    ctr = buildah("from", "--pull=never", "--name", "ds-app", BASE)
    mnt = Path(buildah("mount", ctr))
    (mnt / "etc" / "doomed").unlink()
    (mnt / "data").mkdir()
    (mnt / "data" / "two.txt").write_text("layer two\n")
    buildah("umount", ctr)
    buildah("config", "--env", "STAGE=two", "--label", "layer=2", "--created-by", "RUN rm+add", ctr)
    buildah("commit", "--quiet", "--rm", "--format", "oci", ctr, APP)

    # app:3-docker -- Docker (v2s2) format, third layer, volume and stop signal.
    ctr = buildah("from", "--pull=never", "--name", "ds-docker", APP)
    mnt = Path(buildah("mount", ctr))
    (mnt / "data" / "three.txt").write_text("layer three\n")
    (mnt / "data" / "two.txt").unlink()
    buildah("umount", ctr)
    buildah(
        "config",
        "--env",
        "STAGE=three",
        "--cmd",
        '["/bin/ls", "-l", "/data"]',
        "--volume",
        "/data",
        "--stop-signal",
        "SIGTERM",
        "--label",
        "layer=3",
        "--created-by",
        "ADD three.txt",
        ctr,
    )
    buildah("commit", "--quiet", "--rm", "--format", "docker", ctr, APP_DOCKER)

    # Two single-layer images with different platforms, gathered in a manifest list.
    for arch, variant, image in (("amd64", "", MULTI_AMD64), ("arm64", "v8", MULTI_ARM64)):
        arch_stage = work / f"stage-{arch}"
        arch_stage.mkdir()
        (arch_stage / "arch.txt").write_text(f"{arch}\n")
        ctr = buildah("from", "--pull=never", "--name", f"ds-{arch}", "scratch")
        buildah("copy", ctr, f"{arch_stage}/", "/")
        variant_flags = ["--variant", variant] if variant else []
        buildah(
            "config",
            "--arch",
            arch,
            "--os",
            "linux",
            *variant_flags,
            "--label",
            f"arch={arch}",
            ctr,
        )
        buildah("config", "--cmd", '["/arch.txt"]', "--created-by", f"COPY arch.txt ({arch})", ctr)
        buildah("commit", "--quiet", "--rm", "--format", "oci", ctr, image)
    buildah("manifest", "create", MULTI_LIST)
    buildah("manifest", "add", MULTI_LIST, MULTI_AMD64)
    buildah(
        "manifest",
        "add",
        "--arch",
        "arm64",
        "--os",
        "linux",
        "--variant",
        "v8",
        MULTI_LIST,
        MULTI_ARM64,
    )

    peers.podman("tag", APP, TAG_PODMAN_EXTRA)


def _app_spec(peer_ref: str, **kw: Any) -> ImageSpec:
    defaults: dict[str, Any] = {
        "env": (*BASE_ENV, "STAGE=two"),
        "labels": {**BASE_LABELS, "layer": "2"},
        "cmd": BASE_CMD,
        "entrypoint": BASE_ENTRYPOINT,
        "whiteout": "etc/.wh.doomed",
    }
    defaults.update(kw)
    return ImageSpec(peer_ref=peer_ref, **defaults)


# Artifacts build_all writes: name -> number of images inside; 0 marks containers-image
# `dir:` layouts, which none of dockscope's documented formats covers.
CATALOG: Mapping[str, int] = {
    "buildah-docker-archive": 1,
    "buildah-oci-archive": 1,
    "buildah-oci-layout": 1,
    "buildah-oci-archive-zstd": 1,
    "buildah-docker-format-archive": 1,
    "buildah-docker-format-oci-layout": 1,
    "skopeo-oci-zstd": 1,
    "skopeo-oci-uncompressed": 1,
    "skopeo-oci-mislabeled": 1,
    "skopeo-docker-archive": 1,
    "skopeo-oci-archive-from-docker": 1,
    "podman-docker-archive": 1,
    "podman-oci-archive": 1,
    "podman-oci-dir": 1,
    "podman-multi-docker-archive": 2,
    "extracted-docker-save": 1,
    "gzip-docker-archive": 1,
    "zstd-oci-archive": 1,
    "buildah-multiarch-oci-layout": 2,
    "buildah-multiarch-oci-archive": 2,
    "umoci-layout": 2,
    "umoci-repack-layout": 1,
    "buildah-dir": 0,
    "podman-docker-dir": 0,
    "skopeo-decompressed-dir": 0,
}


def build_all(peers: Peers, out: Path) -> dict[str, Artifact]:
    """Build every image once and write every archive; return them by name."""
    _build_store(peers, peers.root)
    buildah, skopeo = peers.buildah, peers.skopeo
    arts: dict[str, Artifact] = {}

    def add(art: Artifact) -> Artifact:
        arts[art.name] = art
        return art

    # --- buildah push ---------------------------------------------------------------------
    def buildah_push(
        name: str,
        path: Path,
        dest: str,
        tool: str,
        kind: str,
        *images: ImageSpec,
        flags: tuple[str, ...] = (),
    ) -> Artifact:
        """``buildah push FLAGS APP DEST``: the artifact NAME at PATH."""
        buildah("push", "--quiet", *flags, APP, dest)
        return add(Artifact(name, path, tool, kind, images))

    p = out / "buildah-docker-archive.tar"
    da = buildah_push(
        "buildah-docker-archive",
        p,
        f"docker-archive:{p}:{TAG_APP}",
        f"buildah push {APP} docker-archive:PATH:{TAG_APP}",
        "docker-archive",
        _app_spec(f"docker-archive:{p}", compression="none", repo_tags=(TAG_APP, APP)),
    )
    p = out / "buildah-oci-archive.tar"
    oa = buildah_push(
        "buildah-oci-archive",
        p,
        f"oci-archive:{p}:v2",
        f"buildah push {APP} oci-archive:PATH:v2",
        "oci-archive",
        _app_spec(f"oci-archive:{p}:v2", ref_name="v2"),
    )
    p = out / "buildah-oci-layout"
    ol = buildah_push(
        "buildah-oci-layout",
        p,
        f"oci:{p}:v2",
        f"buildah push {APP} oci:DIR:v2",
        "oci-layout",
        _app_spec(f"oci:{p}:v2", ref_name="v2"),
    )
    p = out / "buildah-oci-archive-zstd.tar"
    buildah_push(
        "buildah-oci-archive-zstd",
        p,
        f"oci-archive:{p}:v2",
        f"buildah push --compression-format zstd {APP} oci-archive:PATH:v2",
        "oci-archive",
        _app_spec(f"oci-archive:{p}:v2", ref_name="v2", compression="zstd"),
        flags=("--compression-format", "zstd"),
    )
    p = out / "buildah-docker-format-archive.tar"
    buildah("push", "--quiet", APP_DOCKER, f"docker-archive:{p}:{TAG_APP_DOCKER}")
    docker3_spec = ImageSpec(
        peer_ref=f"docker-archive:{p}",
        compression="none",
        repo_tags=(TAG_APP_DOCKER, APP_DOCKER),
        env=(*BASE_ENV, "STAGE=three"),
        labels={**BASE_LABELS, "layer": "3"},
        cmd=["/bin/ls", "-l", "/data"],
        whiteout="data/.wh.two.txt",
    )
    dd3 = add(
        Artifact(
            "buildah-docker-format-archive",
            p,
            f"buildah commit --format docker; buildah push {APP_DOCKER} docker-archive:PATH",
            "docker-archive",
            (docker3_spec,),
        )
    )
    p = out / "buildah-docker-format-oci-layout"
    buildah("push", "--quiet", APP_DOCKER, f"oci:{p}:v3")
    add(
        Artifact(
            "buildah-docker-format-oci-layout",
            p,
            f"buildah push {APP_DOCKER} oci:DIR:v3 (v2s2 image converted)",
            "oci-layout",
            (
                replace(
                    docker3_spec,
                    peer_ref=f"oci:{p}:v3",
                    compression="gzip",
                    repo_tags=None,
                    ref_name="v3",
                ),
            ),
        )
    )
    p = out / "buildah-dir"
    buildah("push", "--quiet", APP, f"dir:{p}")
    add(Artifact("buildah-dir", p, f"buildah push {APP} dir:DIR", None))

    # --- skopeo copy ----------------------------------------------------------------------
    p = out / "skopeo-oci-zstd"
    skopeo(
        "copy", "--quiet", "--dest-compress-format", "zstd", f"oci:{ol.path}:v2", f"oci:{p}:v2-zstd"
    )
    add(
        Artifact(
            "skopeo-oci-zstd",
            p,
            "skopeo copy --dest-compress-format zstd oci:... oci:DIR:v2-zstd",
            "oci-layout",
            (_app_spec(f"oci:{p}:v2-zstd", ref_name="v2-zstd", compression="zstd"),),
        )
    )
    # Uncompressed OCI layers: decompress into a `dir:` layout, then copy to OCI accepting
    # uncompressed layers (the media types say .tar, truthfully).
    p_dir = out / "skopeo-decompressed-dir"
    skopeo("copy", "--quiet", "--dest-decompress", f"oci:{ol.path}:v2", f"dir:{p_dir}")
    add(Artifact("skopeo-decompressed-dir", p_dir, "skopeo copy --dest-decompress dir:", None))
    p = out / "skopeo-oci-uncompressed"
    skopeo(
        "copy", "--quiet", "--dest-oci-accept-uncompressed-layers", f"dir:{p_dir}", f"oci:{p}:plain"
    )
    add(
        Artifact(
            "skopeo-oci-uncompressed",
            p,
            "skopeo copy --dest-oci-accept-uncompressed-layers dir:(decompressed) oci:DIR:plain",
            "oci-layout",
            (_app_spec(f"oci:{p}:plain", ref_name="plain", compression="none"),),
        )
    )
    # The same flag straight from a docker archive: skopeo 1.9 writes the uncompressed tars
    # but labels them tar+gzip (it trusts the docker-archive's synthesised manifest), so
    # bytes and media type disagree -- exactly what verify's media-type check is for.
    p = out / "skopeo-oci-mislabeled"
    skopeo(
        "copy",
        "--quiet",
        "--dest-oci-accept-uncompressed-layers",
        f"docker-archive:{da.path}",
        f"oci:{p}:mislabeled",
    )
    add(
        Artifact(
            "skopeo-oci-mislabeled",
            p,
            "skopeo copy --dest-oci-accept-uncompressed-layers docker-archive:... oci:DIR",
            "oci-layout",
            (_app_spec(f"oci:{p}:mislabeled", ref_name="mislabeled", compression="none"),),
            verify_failures=frozenset({"media-type"}),
        )
    )
    p = out / "skopeo-docker-archive.tar"
    skopeo(
        "copy",
        "--quiet",
        "--additional-tag",
        TAG_SKOPEO_EXTRA,
        f"oci-archive:{oa.path}:v2",
        f"docker-archive:{p}:{TAG_SKOPEO}",
    )
    add(
        Artifact(
            "skopeo-docker-archive",
            p,
            "skopeo copy --additional-tag ... oci-archive:... docker-archive:PATH:TAG",
            "docker-archive",
            (
                _app_spec(
                    f"docker-archive:{p}",
                    compression="none",
                    repo_tags=(TAG_SKOPEO, TAG_SKOPEO_EXTRA),
                ),
            ),
        )
    )
    p = out / "skopeo-oci-archive-from-docker.tar"
    skopeo("copy", "--quiet", f"docker-archive:{dd3.path}", f"oci-archive:{p}:from-docker")
    add(
        Artifact(
            "skopeo-oci-archive-from-docker",
            p,
            "skopeo copy docker-archive:(v2s2 image) oci-archive:PATH:from-docker",
            "oci-archive",
            (
                replace(
                    docker3_spec,
                    peer_ref=f"oci-archive:{p}:from-docker",
                    compression="gzip",
                    repo_tags=None,
                    ref_name="from-docker",
                ),
            ),
        )
    )

    # --- podman save ----------------------------------------------------------------------
    podman = peers.podman

    def podman_save(
        fmt: str, path: Path, kind: str | None, *images: ImageSpec, tool: str = ""
    ) -> Artifact:
        """``podman save --format FMT -o PATH`` of the app image: the artifact podman-FMT."""
        podman("save", "--quiet", "--format", fmt, "-o", path, APP)
        tool = tool or f"podman save --format {fmt} {APP}"
        return add(Artifact(f"podman-{fmt}", path, tool, kind, images))

    p = out / "podman-docker-archive.tar"
    pda = podman_save(
        "docker-archive",
        p,
        "docker-archive",
        _app_spec(f"docker-archive:{p}", compression="none", repo_tags=(APP,)),
    )
    p = out / "podman-oci-archive.tar"
    podman_save("oci-archive", p, "oci-archive", _app_spec(f"oci-archive:{p}:{APP}", ref_name=APP))
    p = out / "podman-oci-dir"
    podman_save("oci-dir", p, "oci-layout", _app_spec(f"oci:{p}:{APP}", ref_name=APP))
    p = out / "podman-docker-dir"
    podman_save("docker-dir", p, None, tool="podman save --format docker-dir (c/image dir:)")
    p = out / "podman-multi-docker-archive.tar"
    podman(
        "save", "--quiet", "-m", "--format", "docker-archive", "-o", p, BASE, APP, TAG_PODMAN_EXTRA
    )
    base_spec = ImageSpec(
        peer_ref=f"docker-archive:{p}:@0",
        select=("--image", "1"),
        alt_selects=(("--image", BASE),),
        compression="none",
        repo_tags=(BASE,),
        env=BASE_ENV,
        labels=BASE_LABELS,
        cmd=BASE_CMD,
        entrypoint=BASE_ENTRYPOINT,
    )
    add(
        Artifact(
            "podman-multi-docker-archive",
            p,
            f"podman save -m --format docker-archive {BASE} {APP} {TAG_PODMAN_EXTRA}",
            "docker-archive",
            (
                base_spec,
                _app_spec(
                    f"docker-archive:{p}:@1",
                    select=("--image", "2"),
                    alt_selects=(("--image", TAG_PODMAN_EXTRA),),
                    compression="none",
                    repo_tags=(APP, TAG_PODMAN_EXTRA),
                ),
            ),
        )
    )

    # --- re-packed copies: extracted docker save, compressed archives ----------------------
    p = out / "extracted-docker-save"
    p.mkdir()
    with tarfile.open(pda.path) as tar:
        extract_trusted(tar, p, "tar")
    add(
        Artifact(
            "extracted-docker-save",
            p,
            "tar -x of podman-docker-archive",
            "docker-dir",
            pda.images,
            truth_path=pda.path,
        )
    )
    p = out / "buildah-docker-archive.tar.gz"
    with gzip.GzipFile(p, "wb", mtime=0) as gz:
        gz.write(da.path.read_bytes())
    add(
        Artifact(
            "gzip-docker-archive",
            p,
            "gzip of buildah-docker-archive",
            "docker-archive",
            da.images,
            archive_compression="gzip",
            truth_path=da.path,
        )
    )
    p = out / "buildah-oci-archive.tar.zst"
    peers.cmd("zstd", "-q", "-o", p, oa.path)
    add(
        Artifact(
            "zstd-oci-archive",
            p,
            "zstd of buildah-oci-archive",
            "oci-archive",
            oa.images,
            archive_compression="zstd",
            truth_path=oa.path,
        )
    )

    # --- multi-platform index -------------------------------------------------------------
    for name, transport, fmt in (
        ("buildah-multiarch-oci-layout", "oci", "oci-layout"),
        ("buildah-multiarch-oci-archive", "oci-archive", "oci-archive"),
    ):
        p = out / (name + (".tar" if transport == "oci-archive" else ""))
        buildah("manifest", "push", "--quiet", "--all", MULTI_LIST, f"{transport}:{p}:multi")
        ref = f"{transport}:{p}:multi"
        add(
            Artifact(
                name,
                p,
                f"buildah manifest create/add --arch/--variant; manifest push --all {transport}:",
                fmt,
                (
                    ImageSpec(
                        peer_ref=ref,
                        select=("--image", "1"),
                        alt_selects=(("--platform", "linux/amd64"),),
                        peer_flags=("--override-arch", "amd64", "--override-os", "linux"),
                        platform="linux/amd64",
                        labels={"arch": "amd64"},
                        cmd=["/arch.txt"],
                    ),
                    ImageSpec(
                        peer_ref=ref,
                        select=("--image", "2"),
                        alt_selects=(("--platform", "linux/arm64/v8"),),
                        peer_flags=(
                            "--override-arch",
                            "arm64",
                            "--override-os",
                            "linux",
                            "--override-variant",
                            "v8",
                        ),
                        platform="linux/arm64/v8",
                        labels={"arch": "arm64"},
                        cmd=["/arch.txt"],
                    ),
                ),
            )
        )

    # --- umoci: an OCI layout from nothing, two refs --------------------------------------
    p = out / "umoci-layout"
    umoci = peers.umoci
    stage = peers.root / "stage"
    umoci("init", "--layout", p)
    umoci("new", "--image", f"{p}:base")
    umoci("insert", "--image", f"{p}:base", stage / "bin", "/bin")
    umoci("insert", "--image", f"{p}:base", stage / "etc", "/etc")
    umoci("insert", "--image", f"{p}:base", "--whiteout", "/etc/doomed")
    umoci(
        "config",
        "--image",
        f"{p}:base",
        "--tag",
        "v1",
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "FOO=umoci",
        "--config.label",
        "made.by=umoci",
        "--config.workingdir",
        "/tmp",
        "--history.created_by",
        "umoci config",
    )
    add(
        Artifact(
            "umoci-layout",
            p,
            "umoci init/new/insert/insert --whiteout/config --tag v1",
            "oci-layout",
            (
                ImageSpec(
                    peer_ref=f"oci:{p}:base",
                    select=("--image", "1"),
                    alt_selects=(("--ref", "base"),),
                    ref_name="base",
                    whiteout="etc/.wh.doomed",
                ),
                ImageSpec(
                    peer_ref=f"oci:{p}:v1",
                    select=("--image", "2"),
                    alt_selects=(("--ref", "v1"),),
                    ref_name="v1",
                    env=("FOO=umoci",),
                    labels={"made.by": "umoci"},
                    cmd=["/bin/sh"],
                    whiteout="etc/.wh.doomed",
                ),
            ),
            # umoci 0.4.7's `insert` never closes its tar writer (umoci#436, fixed by #534):
            # no end-of-archive blocks, and the /etc layer also lacks its last padding: Go's
            # archive/tar (Docker, containerd, umoci) reads it, GNU tar and Python's tarfile
            # reject it -- verify's layer-tar-ambiguous check must say so.
            verify_failures=frozenset({"layer-tar-ambiguous"}),
        )
    )

    # --- umoci unpack/repack: well-formed layers, one ref, unreferenced blobs collected ----
    p = out / "umoci-repack-layout"
    bundle = peers.root / "umoci-bundle"
    umoci("init", "--layout", p)
    umoci("new", "--image", f"{p}:latest")
    umoci("unpack", "--image", f"{p}:latest", bundle)
    peers.cmd("cp", "-a", f"{stage}/.", bundle / "rootfs")
    umoci(
        "repack",
        "--image",
        f"{p}:latest",
        "--refresh-bundle",
        "--history.created_by",
        "umoci repack rootfs",
        bundle,
    )
    (bundle / "rootfs" / "etc" / "doomed").unlink()
    (bundle / "rootfs" / "etc" / "added").write_text("added by the second repack\n")
    umoci("repack", "--image", f"{p}:latest", "--history.created_by", "umoci repack rm", bundle)
    umoci(
        "config",
        "--image",
        f"{p}:latest",
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "FOO=repack",
        "--config.label",
        "made.by=umoci-repack",
        "--history.created_by",
        "umoci config",
    )
    umoci("gc", "--layout", p)
    shutil.rmtree(bundle)
    add(
        Artifact(
            "umoci-repack-layout",
            p,
            "umoci init/new/unpack; cp; repack; rm; repack; config; gc",
            "oci-layout",
            (
                ImageSpec(
                    peer_ref=f"oci:{p}:latest",
                    ref_name="latest",
                    env=("FOO=repack",),
                    labels={"made.by": "umoci-repack"},
                    cmd=["/bin/sh"],
                    whiteout="etc/.wh.doomed",
                ),
            ),
        )
    )
    return arts
