"""A run of an image file it has run before, unchanged, takes the image from the file's
record (runtime_lab/storage/archives.py): real runs, the file changed between them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.runtime.test_runtime_images import busybox_variant
from tests.support.cli import dockscope
from tests.support.runtime import events, needs_root, step

pytestmark = needs_root


def image_event(
    root: Path, image: Path, trace: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The `image` step of ``run --rm --network none IMAGE true`` (with ``env``)."""
    args = ("run", "--rm", "--network", "none", "--trace-json", trace, image, "true")
    done = dockscope(root, *args, env=env)
    assert done.code == 0, done.err
    return step(events(trace), "image")


def test_a_run_reads_a_file_again_only_when_it_changed(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    """The second run of the same archive takes its config from the record; the same path
    holding another image is read, and that image runs."""
    path = tmp_path / "image.tar"
    first = run_a_copy(root, busybox_image, path)
    second = image_event(root, path, tmp_path / "2.jsonl")
    assert first["evidence"]["file_read"] is True and second["evidence"]["file_read"] is False
    for key in ("image_id", "argv", "layers"):
        assert first["evidence"][key] == second["evidence"][key]
    assert first["args"] == second["args"]
    stored = [e for e in events(tmp_path / "2.jsonl") if e["step"] == "layer-store"]
    assert [e["evidence"]["cached"] for e in stored] == [True]

    busybox_variant(tmp_path / "variant.tar", drop=("etc/passwd", "etc/group"))
    shutil.copyfile(tmp_path / "variant.tar", path)  # written in place: same inode
    third = image_event(root, path, tmp_path / "3.jsonl")
    assert third["evidence"]["file_read"] is True
    assert third["evidence"]["image_id"] != first["evidence"]["image_id"]
    fourth = image_event(root, path, tmp_path / "4.jsonl")
    assert fourth["evidence"]["file_read"] is False
    assert fourth["evidence"]["image_id"] == third["evidence"]["image_id"]


def run_a_copy(root: Path, busybox_image: Path, path: Path) -> dict[str, Any]:
    """busybox copied to ``path`` and run once (which records it): its `image` step."""
    shutil.copyfile(busybox_image, path)
    return image_event(root, path, path.with_suffix(".jsonl"))


def test_the_copy_fallback_always_reads_the_file(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    """Without overlayfs the image is unpacked into each container: the file is read."""
    path = tmp_path / "image.tar"
    run_a_copy(root, busybox_image, path)
    copied = image_event(root, path, tmp_path / "copy.jsonl", {"DOCKSCOPE_ROOTFS": "copy"})
    assert copied["evidence"]["file_read"] is True


def test_cleanup_removes_the_record_of_a_file_that_is_gone(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    path = tmp_path / "gone.tar"
    run_a_copy(root, busybox_image, path)
    records = list((root / "archives").glob("*.json"))
    (mine,) = [r for r in records if str(path) in r.read_text()]
    path.unlink()
    done = dockscope(root, "cleanup")
    assert done.code == 0, done.err
    assert f"archives: removed the record {mine.name} ({path} is gone)" in done.out
    assert not mine.exists()
