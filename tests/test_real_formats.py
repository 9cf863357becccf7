"""Layouts real tools write that are no defect: kaniko's gzip layers in a docker save archive,
estargz layers (containerd's stargz snapshotter, nerdctl) and zstd:chunked (containers/storage).

No such tool is installed, so each layout is written here the way its writer writes it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from inspect_tool.cli import app
from tests.helpers import config_bytes, layer_tar, sha256

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def findings(path: Path) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = run("verify", "--json", str(path))
    assert code in (0, 1), err
    return code, json.loads(out)["findings"]


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# -- kaniko: go-containerregistry's tarball.Write -------------------------------------------------


def kaniko_archive(path: Path, layers: list[bytes]) -> Path:
    """As tarball.Write lays it out: the config as ``sha256:<hex>``, each layer compressed as
    ``<hex of the compressed blob>.tar.gz``, manifest.json without LayerSources."""
    config = config_bytes([sha256(layer) for layer in layers])
    config_name = sha256(config)
    members = {config_name: config}
    names = []
    for layer in layers:
        blob = gzip.compress(layer, mtime=0)
        name = hashlib.sha256(blob).hexdigest() + ".tar.gz"
        members[name] = blob
        names.append(name)
    manifest = [{"Config": config_name, "RepoTags": ["kaniko/app:1"], "Layers": names}]
    members["manifest.json"] = json.dumps(manifest).encode()
    return _tar(path, members)


def test_kaniko_gzip_layers_verify(tmp_path: Path) -> None:
    layers = [layer_tar({"etc/a": b"one\n"}), layer_tar({"etc/b": b"two\n", "etc/a": b"1\n"})]
    image = kaniko_archive(tmp_path / "kaniko.tar", layers)
    code, checks = findings(image)
    failed = [f for f in checks if not f["ok"]]
    assert code == 0 and not failed, failed
    media = [f for f in checks if f["check"] == "media-type"]
    assert len(media) == 2 and all(f["actual"] == "gzip" for f in media), media
    code, out, _ = run("inspect", "--json", str(image))
    assert code == 0
    shown = json.loads(out)["layers"]
    assert [lyr["compression"] for lyr in shown] == ["gzip", "gzip"]
    assert {lyr["media_type"] for lyr in shown} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }


def test_kaniko_gzip_layers_every_layer_command(tmp_path: Path) -> None:
    layers = [layer_tar({"etc/a": b"one\n"}), layer_tar({"etc/b": b"two\n", "etc/a": b"1\n"})]
    image = str(kaniko_archive(tmp_path / "kaniko.tar", layers))
    code, out, err = run("ls", image, "/etc")
    assert code == 0, err
    assert "/etc/a" in out or " a" in out
    code, out, err = run("cat", image, "/etc/a")
    assert (code, out) == (0, "1\n"), err
    code, out, err = run("cat", "--layer", "0", image, "/etc/a")
    assert (code, out) == (0, "one\n"), err
    code, out, err = run("find", "--json", image, "/etc/*")
    assert code == 0, err
    code, _, err = run("unpack", image, str(tmp_path / "root"))
    assert code == 0, err
    assert (tmp_path / "root/etc/b").read_bytes() == b"two\n"
    code, _, err = run("export", image, "-o", str(tmp_path / "flat.tar"))
    assert code == 0, err
    with tarfile.open(tmp_path / "flat.tar") as tf:
        assert sorted(tf.getnames()) == ["etc", "etc/a", "etc/b"]
    for command in ("layers", "types", "tree", "efficiency"):
        code, _, err = run(command, image)
        assert code == 0, (command, err)
    code, _, err = run("diff", image, "--layer", "1")
    assert code == 0, err


def test_legacy_archive_with_garbage_layer_still_fails(tmp_path: Path) -> None:
    """A legacy layer that is neither tar, gzip nor zstd is still a failed check."""
    layers = [layer_tar({"etc/a": b"one\n"})]
    config = config_bytes([sha256(layers[0])])
    members = {
        "c.json": config,
        "l/layer.tar": b"\x00\x01not a layer" * 100,
        "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l/layer.tar"]}]).encode(),
    }
    image = _tar(tmp_path / "bad.tar", members)
    code, checks = findings(image)
    media = [f for f in checks if f["check"] == "media-type"]
    assert code == 1 and media and not media[0]["ok"], media
