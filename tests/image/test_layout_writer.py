"""The OCI layout writer (inspect_tool/layout/writer.py): blobs named by what they hash to,
one JSON encoding, index.json written last and atomically, nothing left by a failure."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from inspect_tool.layout import writer as layout_writer
from inspect_tool.layout.writer import (
    BlobDigestError,
    LayoutWriter,
    create_layout,
    descriptor_json,
    index_entry,
)
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import Descriptor, Platform
from inspect_tool.model.reference import Reference
from inspect_tool.sources import open_source

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _writer(tmp_path: Path) -> LayoutWriter:
    root = tmp_path / "layout"
    root.mkdir()
    return LayoutWriter(root)


def test_json_has_one_encoding_and_is_named_by_its_digest(tmp_path: Path) -> None:
    layout = _writer(tmp_path)
    descriptor = layout.add_json({"b": [1, "é"], "a": None}, CONFIG)
    data = b'{"b":[1,"\\u00e9"],"a":null}'  # compact, keys as given, ASCII
    assert descriptor == Descriptor(CONFIG, Digest.of_bytes(data), len(data))
    assert (layout.root / "blobs/sha256" / descriptor.digest.hex).read_bytes() == data
    assert _files(layout.root) == ["blobs", "blobs/sha256", f"blobs/sha256/{descriptor.digest.hex}"]


def test_a_stream_is_hashed_as_it_is_written(tmp_path: Path) -> None:
    layout = _writer(tmp_path)
    data = os.urandom(3 * layout_writer.CHUNK + 5)
    descriptor = layout.add_blob(io.BytesIO(data), LAYER)
    assert descriptor.digest == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert descriptor.size == len(data)
    assert (layout.root / "blobs/sha256" / descriptor.digest.hex).read_bytes() == data
    # the same bytes again are the same blob; another algorithm has its own directory
    assert layout.add_blob(io.BytesIO(data), LAYER) == descriptor
    sha512 = Digest("sha512", hashlib.sha512(data).hexdigest())
    assert layout.add_blob(io.BytesIO(data), LAYER, expected=sha512).digest == sha512
    assert (layout.root / "blobs/sha512" / sha512.hex).read_bytes() == data
    assert not [p for p in layout.root.rglob(".*")]  # no temporary file left


def test_bytes_that_do_not_match_the_expected_digest_are_refused(tmp_path: Path) -> None:
    layout = _writer(tmp_path)
    claimed = Digest.of_bytes(b"what the manifest says")
    with pytest.raises(
        BlobDigestError, match=f"blob digest mismatch: got sha256:.*, expected {claimed}"
    ):
        layout.add_blob(io.BytesIO(b"what the registry sent"), LAYER, expected=claimed)
    assert _files(layout.root) == ["blobs", "blobs/sha256"]  # neither blob nor temporary


def test_a_blob_left_uncommitted_is_removed(tmp_path: Path) -> None:
    layout = _writer(tmp_path)
    with layout.blob() as blob:
        blob.write(b"half")
        assert blob.digest == Digest.of_bytes(b"half") and blob.size == 4
    assert _files(layout.root) == ["blobs", "blobs/sha256"]
    with pytest.raises(RuntimeError), layout.blob() as blob:
        blob.write(b"half")
        raise RuntimeError("the source broke")
    assert _files(layout.root) == ["blobs", "blobs/sha256"]


def test_finish_writes_the_index_and_the_layout_file(tmp_path: Path) -> None:
    layout = _writer(tmp_path)
    manifest = layout.add_json({"schemaVersion": 2}, MANIFEST)
    layout.finish(
        [
            index_entry(
                manifest, name="example.org/app:v1", platform=Platform("linux", "arm64", "v8")
            ),
            index_entry(manifest, name="localhost:5000/app"),
            index_entry(manifest),
        ]
    )
    entry = {"mediaType": MANIFEST, "digest": str(manifest.digest), "size": manifest.size}
    assert json.loads((layout.root / "index.json").read_bytes()) == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                **entry,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                "annotations": {
                    "io.containerd.image.name": "example.org/app:v1",
                    "org.opencontainers.image.ref.name": "v1",
                },
            },
            {
                **entry,
                "annotations": {
                    "io.containerd.image.name": "localhost:5000/app",
                    "org.opencontainers.image.ref.name": "latest",
                },
            },
            entry,
        ],
    }
    assert (layout.root / "oci-layout").read_bytes() == b'{"imageLayoutVersion": "1.0.0"}'
    assert not [p for p in layout.root.glob(".*")]


def test_an_interrupted_index_write_leaves_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = _writer(tmp_path)
    manifest = layout.add_json({"schemaVersion": 2}, MANIFEST)
    real_replace = os.replace

    def interrupted(source: str | Path, target: str | Path) -> None:
        if Path(target).name == "index.json":
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(layout_writer.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        layout.finish([index_entry(manifest)])
    assert not (layout.root / "index.json").exists() and not layout.finished
    assert not [p for p in layout.root.glob(".*")]  # the half-written index is gone too


def test_a_layout_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), create_layout(output) as layout:
        layout.add_json({"schemaVersion": 2}, MANIFEST)
        raise KeyboardInterrupt
    with create_layout(output) as layout:
        layout.add_json({"schemaVersion": 2}, MANIFEST)  # never finished
    assert _files(tmp_path) == []
    with create_layout(output) as layout:
        config = layout.add_json({"architecture": "amd64", "os": "linux", "rootfs": {}}, CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": descriptor_json(config)}
        manifest_descriptor = layout.add_json({**manifest, "layers": []}, MANIFEST)
        layout.finish([index_entry(manifest_descriptor, name="app")])
        assert not output.exists()  # renamed into place only when the block ends
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with open_source(output) as source:  # and dockscope reads what it wrote
        [candidate] = source.candidates
        assert candidate.image().image_id == config.digest


def test_the_destination_must_be_missing_or_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to("empty")
    for name, message in (
        ("full", "exists and is not empty"),
        ("file", "exists and is not a directory"),
        ("link", "exists and is not a directory"),
        ("missing/out", "the parent directory does not exist"),
    ):
        with pytest.raises(UsageError, match=message), create_layout(tmp_path / name):
            pass
    for output, parents in ((tmp_path / "empty", False), (tmp_path / "new" / "out", True)):
        with create_layout(output, parents=parents) as layout:
            layout.finish([])
        assert _files(output) == ["index.json", "oci-layout"]


@pytest.mark.parametrize(
    ("text", "name", "tag"),
    [
        ("app", "app", "latest"),
        ("example.org/app:1.0", "example.org/app", "1.0"),
        ("localhost:5000/team/app", "localhost:5000/team/app", "latest"),
        ("localhost:5000/app:v_2", "localhost:5000/app", "v_2"),
    ],
)
def test_one_reference_parser(text: str, name: str, tag: str) -> None:
    assert Reference.split(text) == Reference.parse(text) == Reference(name, tag)


@pytest.mark.parametrize("text", ["Upper/case:1", "x:bad tag", "x@sha256:00", "x:", ":1", "a//b"])
def test_references_outside_the_grammar_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="expected NAME"):
        Reference.parse(text)
