"""Layouts real tools write that are no defect: kaniko's gzip layers in a docker save archive,
estargz layers (containerd's stargz snapshotter, nerdctl) and zstd:chunked (containers/storage).

No such tool is installed, so each layout is written here the way its writer writes it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import invoke
from tests.support.images import Layout, config_bytes, layer_tar, sha256


def findings(path: Path) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = invoke("verify", "--json", str(path))
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
    code, out, _ = invoke("inspect", "--json", str(image))
    assert code == 0
    shown = json.loads(out)["layers"]
    assert [lyr["compression"] for lyr in shown] == ["gzip", "gzip"]
    assert {lyr["media_type"] for lyr in shown} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }


def test_kaniko_gzip_layers_every_layer_command(tmp_path: Path) -> None:
    layers = [layer_tar({"etc/a": b"one\n"}), layer_tar({"etc/b": b"two\n", "etc/a": b"1\n"})]
    image = str(kaniko_archive(tmp_path / "kaniko.tar", layers))
    code, out, err = invoke("ls", image, "/etc")
    assert code == 0, err
    assert "/etc/a" in out or " a" in out
    code, out, err = invoke("cat", image, "/etc/a")
    assert (code, out) == (0, "1\n"), err
    code, out, err = invoke("cat", "--layer", "0", image, "/etc/a")
    assert (code, out) == (0, "one\n"), err
    code, out, err = invoke("find", "--json", image, "/etc/*")
    assert code == 0, err
    code, _, err = invoke("unpack", image, str(tmp_path / "root"))
    assert code == 0, err
    assert (tmp_path / "root/etc/b").read_bytes() == b"two\n"
    code, _, err = invoke("export", image, "-o", str(tmp_path / "flat.tar"))
    assert code == 0, err
    with tarfile.open(tmp_path / "flat.tar") as tf:
        assert sorted(tf.getnames()) == ["etc", "etc/a", "etc/b"]
    for command in ("layers", "types", "tree", "efficiency"):
        code, _, err = invoke(command, image)
        assert code == 0, (command, err)
    code, _, err = invoke("diff", image, "--layer", "1")
    assert code == 0, err
    code, _, err = invoke("report", image, "-o", str(tmp_path / "report.html"))
    assert code == 0, err
    assert "kaniko/app:1" in (tmp_path / "report.html").read_text()


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


# -- estargz: written as the spec (containerd/stargz-snapshotter docs/estargz.md) says ----------

TOC_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"


class _Members:
    """A blob of gzip members, and the uncompressed stream they hold."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.diff = bytearray()
        self._z: Any = None

    def open(self) -> None:
        if self._z is None:
            self._z = zlib.compressobj(9, zlib.DEFLATED, 31)

    def close(self) -> None:
        if self._z is not None:
            self.blob += self._z.flush()
            self._z = None

    def write(self, data: bytes) -> None:
        self.open()
        self.blob += self._z.compress(data)
        self.diff += data


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def estargz_footer(toc_offset: int) -> bytes:
    """The 51-byte footer: an empty gzip member whose extra field holds the TOC's offset."""
    subfield = b"%016xSTARGZ" % toc_offset
    extra = b"SG" + struct.pack("<H", len(subfield)) + subfield
    header = b"\x1f\x8b\x08\x04" + bytes(4) + b"\x00\xff" + struct.pack("<H", len(extra))
    footer = header + extra + b"\x01\x00\x00\xff\xff" + bytes(8)
    assert len(footer) == 51
    return footer


def estargz_layer(
    files: dict[str, bytes],
    *,
    chunk: int = 4 << 20,
    toc_after_end: bool = True,
    drop_from_toc: str | None = None,
    after_toc: bytes = b"",
) -> tuple[bytes, str, str]:
    """(blob, diff_id, TOC digest): a directory, a no-prefetch landmark, then each file's data
    in chunks of ``chunk`` bytes, each chunk starting a gzip member; the TOC in a member of
    its own (a second tar after the first end-of-archive marker, or the tar's last entry);
    the footer."""
    out = _Members()
    entries: list[dict[str, Any]] = [{"name": "app/", "type": "dir", "mode": 0o40755}]
    out.write(_header("app/", 0, tarfile.DIRTYPE))
    for name, data in {".no.prefetch.landmark": b"\x0f", **files}.items():
        out.write(_header(name, len(data)))
        written = 0
        while written < len(data):
            out.close()
            piece = data[written : written + chunk]
            entry: dict[str, Any] = {
                "name": name,
                "type": "reg" if written == 0 else "chunk",
                "offset": len(out.blob),
                "chunkOffset": written,
                "chunkDigest": sha256(piece),
            }
            if written == 0:
                entry.update(size=len(data), mode=0o100644, digest=sha256(data))
            if len(piece) == chunk and written + chunk < len(data):
                entry["chunkSize"] = chunk
            out.write(piece)
            written += len(piece)
            if name != drop_from_toc:
                entries.append(entry)
        out.write(bytes(-len(data) % 512))
    if toc_after_end:
        out.write(bytes(1024))  # the layer's tar ends here
    out.close()
    toc_offset = len(out.blob)
    toc = json.dumps({"version": 1, "entries": entries}, indent="\t").encode()
    out.write(_header("stargz.index.json", len(toc)) + toc + bytes(-len(toc) % 512))
    out.write(bytes(1024) + after_toc)
    out.close()
    out.blob += estargz_footer(toc_offset)
    return bytes(out.blob), sha256(bytes(out.diff)), sha256(toc)


def layout_with(
    root: Path, blob: bytes, diff_id: str, media: str, annotations: dict[str, str]
) -> Path:
    layout = Layout(root)
    layer = {"mediaType": media, "digest": layout.put(blob), "size": len(blob)}
    if annotations:
        layer["annotations"] = annotations
    layout.index([layout.manifest([layer], config=config_bytes([diff_id]))])
    return root


GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FILES = {"app/big.bin": bytes(range(256)) * 40, "app/run.sh": b"#!/bin/sh\necho hi\n"}


def check_of(checks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [f for f in checks if f["check"] == name]


@pytest.mark.parametrize("toc_after_end", [True, False])
def test_estargz_layer_verifies_and_its_toc_is_checked(tmp_path: Path, toc_after_end: bool) -> None:
    blob, diff_id, toc_digest = estargz_layer(FILES, chunk=4096, toc_after_end=toc_after_end)
    image = layout_with(tmp_path / "img", blob, diff_id, GZIP_LAYER, {TOC_ANNOTATION: toc_digest})
    code, checks = findings(image)
    failed = [f for f in checks if not f["ok"]]
    assert code == 0 and not failed, failed
    (toc,) = check_of(checks, "estargz-toc")
    assert toc["ok"] and toc_digest in toc["actual"], toc
    assert ("after the end-of-archive marker" in toc["actual"]) is toc_after_end
    (tar,) = check_of(checks, "layer-tar")
    assert tar["actual"] == "well-formed"
    code, out, err = invoke("ls", str(image), "/app")
    assert code == 0, err
    assert "big.bin" in out and "run.sh" in out
    code, out, err = invoke("cat", str(image), "/app/big.bin")
    assert code == 0 and out.encode("latin-1", "replace") != b"", err
    code, _, err = invoke("unpack", str(image), str(tmp_path / "root"))
    assert code == 0, err
    assert (tmp_path / "root/app/big.bin").read_bytes() == FILES["app/big.bin"]
    # Go stops at the first end marker: a TOC after it is not a file of the image
    assert (tmp_path / "root/stargz.index.json").exists() is not toc_after_end


def test_estargz_toc_digest_against_the_annotation(tmp_path: Path) -> None:
    blob, diff_id, _ = estargz_layer(FILES)
    wrong = "sha256:" + "0" * 64
    image = layout_with(tmp_path / "img", blob, diff_id, GZIP_LAYER, {TOC_ANNOTATION: wrong})
    code, checks = findings(image)
    (toc,) = check_of(checks, "estargz-toc")
    assert code == 1 and not toc["ok"] and wrong in toc["expected"], toc


def test_estargz_toc_that_omits_an_entry(tmp_path: Path) -> None:
    blob, diff_id, toc_digest = estargz_layer(FILES, drop_from_toc="app/run.sh")
    image = layout_with(tmp_path / "img", blob, diff_id, GZIP_LAYER, {TOC_ANNOTATION: toc_digest})
    code, checks = findings(image)
    (toc,) = check_of(checks, "estargz-toc")
    assert code == 1 and not toc["ok"] and "omits 1 entries" in toc["actual"], toc
    assert "app/run.sh" in toc["actual"]


def test_garbage_after_the_estargz_toc_is_still_garbage(tmp_path: Path) -> None:
    blob, diff_id, toc_digest = estargz_layer(FILES, after_toc=b"junk" * 10)
    image = layout_with(tmp_path / "img", blob, diff_id, GZIP_LAYER, {TOC_ANNOTATION: toc_digest})
    code, checks = findings(image)
    (tar,) = check_of(checks, "layer-tar")
    assert code == 1 and not tar["ok"] and "40 non-zero bytes" in tar["actual"], tar


def test_a_second_tar_without_a_footer_is_garbage(tmp_path: Path) -> None:
    """A plain gzip layer with a tar after its end marker: no footer, so not estargz."""
    second = layer_tar({"stargz.index.json": b'{"version": 1, "entries": []}'})
    diff = layer_tar({"app/a": b"a"}) + second
    image = layout_with(tmp_path / "img", gzip.compress(diff), sha256(diff), GZIP_LAYER, {})
    code, checks = findings(image)
    (tar,) = check_of(checks, "layer-tar")
    assert code == 1 and not tar["ok"] and "after the tar's end-of-archive" in tar["actual"]
    assert not check_of(checks, "estargz-toc")


def test_an_annotation_on_a_layer_that_is_not_estargz(tmp_path: Path) -> None:
    diff = layer_tar({"app/a": b"a"})
    annotations = {TOC_ANNOTATION: "sha256:" + "1" * 64}
    image = layout_with(
        tmp_path / "img", gzip.compress(diff), sha256(diff), GZIP_LAYER, annotations
    )
    code, checks = findings(image)
    (toc,) = check_of(checks, "estargz-toc")
    assert code == 1 and not toc["ok"] and "no estargz footer" in toc["actual"], toc


# -- zstd:chunked: containers/storage's layout -----------------------------------------------------

ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
CHECKSUM = "io.github.containers.zstd-chunked.manifest-checksum"
POSITION = "io.github.containers.zstd-chunked.manifest-position"


def _skippable(payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A50, len(payload)) + payload


def zstd_chunked_layer(files: dict[str, bytes]) -> tuple[bytes, str, dict[str, str]]:
    """(blob, diff_id, annotations): each file's content in a zstd frame of its own, the tar's
    headers and padding in frames between; then the manifest, the tar-split record and the
    footer in three skippable frames."""
    import zstandard

    tar = layer_tar(files)
    cctx = zstandard.ZstdCompressor()
    blob = bytearray()
    entries = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        cut = 0
        for member in tf.getmembers():
            blob += cctx.compress(tar[cut : member.offset_data])
            cut = member.offset_data
            if member.size:
                offset = len(blob)
                data = tar[cut : cut + member.size]
                blob += cctx.compress(data)
                cut += member.size
                entries.append(
                    {
                        "type": "reg",
                        "name": member.name,
                        "size": member.size,
                        "digest": sha256(data),
                        "offset": offset,
                        "endOffset": len(blob),
                    }
                )
        blob += cctx.compress(tar[cut:])
    manifest_json = json.dumps({"version": 1, "entries": entries}).encode()
    manifest = cctx.compress(manifest_json)
    manifest_offset = len(blob) + 8
    blob += _skippable(manifest)
    tar_split = cctx.compress(b'{"type":2,"payload":"","position":0}\n')
    split_offset = len(blob) + 8
    blob += _skippable(tar_split)
    footer = struct.pack(
        "<7Q",
        manifest_offset,
        len(manifest),
        len(manifest_json),
        1,
        split_offset,
        len(tar_split),
        38,
    )
    blob += _skippable(footer + b"GNUlInUx")
    annotations = {
        CHECKSUM: sha256(manifest),
        POSITION: f"{manifest_offset}:{len(manifest)}:{len(manifest_json)}:1",
    }
    return bytes(blob), sha256(tar), annotations


def test_zstd_chunked_layer_verifies_and_its_manifest_is_checked(tmp_path: Path) -> None:
    blob, diff_id, annotations = zstd_chunked_layer(FILES)
    image = layout_with(tmp_path / "img", blob, diff_id, ZSTD_LAYER, annotations)
    code, checks = findings(image)
    failed = [f for f in checks if not f["ok"]]
    assert code == 0 and not failed, failed
    (manifest,) = check_of(checks, "zstd-chunked-manifest")
    assert manifest["ok"] and annotations[CHECKSUM] in manifest["actual"], manifest
    assert "2 entries" in manifest["actual"]
    code, out, err = invoke("ls", str(image), "/app")
    assert code == 0 and "run.sh" in out, err
    code, out, err = invoke("cat", str(image), "/app/run.sh")
    assert (code, out) == (0, FILES["app/run.sh"].decode()), err


def test_zstd_chunked_manifest_checksum_against_the_annotation(tmp_path: Path) -> None:
    blob, diff_id, annotations = zstd_chunked_layer(FILES)
    annotations[CHECKSUM] = "sha256:" + "2" * 64
    image = layout_with(tmp_path / "img", blob, diff_id, ZSTD_LAYER, annotations)
    code, checks = findings(image)
    (manifest,) = check_of(checks, "zstd-chunked-manifest")
    assert code == 1 and not manifest["ok"], manifest
    assert "the manifest's digest is sha256:" in manifest["actual"]


def test_estargz_without_annotation_is_recognised(tmp_path: Path) -> None:
    """A descriptor without toc.digest (a layer pushed by a tool that drops annotations): the
    TOC is still found and checked against the tar, and its digest shown."""
    blob, diff_id, toc_digest = estargz_layer(FILES)
    image = layout_with(tmp_path / "img", blob, diff_id, GZIP_LAYER, {})
    code, checks = findings(image)
    (toc,) = check_of(checks, "estargz-toc")
    assert code == 0 and toc["ok"] and toc_digest in toc["actual"], toc
    assert "no toc.digest annotation" in toc["expected"]


def test_estargz_footer_pointing_elsewhere(tmp_path: Path) -> None:
    """A footer whose offset names no gzip member: the TOC after the end marker is then
    unexplained, and both checks fail."""
    blob, diff_id, toc_digest = estargz_layer(FILES)
    bad = blob[:-51] + estargz_footer(7)
    image = layout_with(tmp_path / "img", bad, diff_id, GZIP_LAYER, {TOC_ANNOTATION: toc_digest})
    code, checks = findings(image)
    (toc,) = check_of(checks, "estargz-toc")
    (tar,) = check_of(checks, "layer-tar")
    assert code == 1 and not toc["ok"] and "byte 7" in toc["actual"], toc
    assert not tar["ok"] and "non-zero bytes after" in tar["actual"], tar
