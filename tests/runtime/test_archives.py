"""runtime_lab/storage/archives.py: the record of an image file a run read, and when the next
run may use it instead of the file. The files are the shipped samples, read by the real
readers; the layer store is directories named as the runtime names them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from inspect_tool.model.image import Image
from inspect_tool.sources import ImageSelection, open_image
from runtime_lab.storage.archives import LAYOUT, Recalled, identify, prune, recall, remember
from runtime_lab.storage.store import Store
from tests.support.paths import REPO

SAMPLES = REPO / "sample_images"
ALL = ImageSelection()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


def copied(tmp_path: Path, name: str = "docker-archive-v25.tar") -> Path:
    target = tmp_path / "images" / "image.tar"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLES / name, target)
    return target


def recall_at(store: Store, where: Path | str, selection: ImageSelection) -> Recalled | None:
    """What a run of ``where`` would take from the record, as ``create`` looks it up."""
    file = identify(store, where, selection)
    return None if file is None else recall(store, file)


def remember_at(store: Store, where: Path | str, selection: ImageSelection, image: Image) -> bool:
    """What a run that read ``where`` records, identified just before (as ``create`` does)."""
    file = identify(store, where, selection)
    return file is not None and remember(store, file, image)


def run_once(store: Store, path: Path | str, selection: ImageSelection = ALL) -> list[Path]:
    """What a first run leaves: the image read, its layers stored, the file recorded."""
    source, image = open_image(path, selection)
    with source:
        dirs = []
        for layer in image.layers:
            assert layer.diff_id is not None
            dirs.append(store.layer_dir(layer.diff_id.hex))
            dirs[-1].mkdir(parents=True, exist_ok=True)
        assert remember_at(store, path, selection, image)
        recalled = recall_at(store, path, selection)
        assert recalled is not None
        assert recalled.config == image.config  # the exact bytes, parsed, the same image ID
        assert recalled.layer_dirs == dirs
    return dirs


def the_record(store: Store) -> Path:
    (record,) = store.archives.glob("*.json")
    return record


def test_an_unchanged_file_is_recalled_with_its_config_and_layers(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copied(tmp_path)
    dirs = run_once(store, path)
    assert len(dirs) >= 1
    record = json.loads(the_record(store).read_text())
    assert record["layout"] == LAYOUT and record["source"] == str(path)
    assert set(record["file"]) == {"device", "inode", "size", "mtime_ns", "ctime_ns"}
    # a relative path to the same file is the same file
    monkeypatch.chdir(path.parent)
    assert recall_at(store, path.name, ALL) is not None


@pytest.mark.parametrize("change", ["touch", "append", "replace", "chmod"])
def test_a_changed_file_is_read_again(tmp_path: Path, store: Store, change: str) -> None:
    path = copied(tmp_path)
    run_once(store, path)
    if change == "touch":
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same times: ctime moves
    elif change == "append":
        with open(path, "ab") as stream:
            stream.write(b"\0" * 512)
    elif change == "replace":  # another image renamed over the path
        other = copied(tmp_path / "other", "docker-archive-legacy.tar")
        os.replace(other, path)
    else:
        path.chmod(0o600)
    assert recall_at(store, path, ALL) is None


def test_another_selection_or_location_is_another_record(tmp_path: Path, store: Store) -> None:
    path = copied(tmp_path, "docker-archive-multi.tar")
    run_once(store, path, ImageSelection(image="1"))
    assert recall_at(store, path, ImageSelection(image="2")) is None
    assert recall_at(store, path, ALL) is None
    assert recall_at(store, f"docker-archive:{path}", ImageSelection(image="1")) is None
    assert recall_at(store, path, ImageSelection(image="1")) is not None


def test_a_removed_layer_means_reading_the_file(tmp_path: Path, store: Store) -> None:
    path = copied(tmp_path)
    dirs = run_once(store, path)
    dirs[-1].rmdir()
    assert recall_at(store, path, ALL) is None


@pytest.mark.parametrize(
    "spoil",
    [
        "config",  # the config's bytes are not the recorded image ID's
        "image_id",
        "diff_ids",  # diff_ids that are not the config's
        "layout",
        "garbage",
        "not-an-object",
    ],
)
def test_a_record_that_does_not_hold_together_is_not_used(
    tmp_path: Path, store: Store, spoil: str
) -> None:
    path = copied(tmp_path)
    dirs = run_once(store, path)
    record_path = the_record(store)
    record = json.loads(record_path.read_text())
    if spoil == "config":
        config = json.loads(record["config"])
        config["config"]["Entrypoint"] = ["/bin/evil"]
        record["config"] = json.dumps(config)
    elif spoil == "image_id":
        record["image_id"] = "sha256:" + "0" * 64
    elif spoil == "diff_ids":
        other = "f" * 64
        store.layer_dir(other).mkdir()
        record["diff_ids"] = [*record["diff_ids"][:-1], other]
    elif spoil == "layout":
        record["layout"] = LAYOUT + 1
    text = json.dumps(record)
    if spoil == "garbage":
        text = text[: len(text) // 2]
    elif spoil == "not-an-object":
        text = "[]"
    record_path.write_text(text)
    assert all(d.is_dir() for d in dirs)
    assert recall_at(store, path, ALL) is None


def test_only_files_are_recorded(tmp_path: Path, store: Store) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(SAMPLES / "oci-layout", layout)
    source, image = open_image(layout, ALL)
    with source:
        assert not remember_at(store, layout, ALL, image)
    assert not store.archives.exists()
    assert recall_at(store, layout, ALL) is None
    assert recall_at(store, tmp_path / "missing.tar", ALL) is None
    assert recall_at(store, "docker://example.org/x:1", ALL) is None
    assert recall_at(store, "oci-arkive:missing.tar", ALL) is None  # a malformed location


def test_a_record_that_cannot_be_written_is_passed_over(tmp_path: Path, store: Store) -> None:
    path = copied(tmp_path)
    store.root.mkdir(parents=True)
    store.archives.write_text("a file where the directory would be")
    source, image = open_image(path, ALL)
    with source:
        assert not remember_at(store, path, ALL, image)
    assert recall_at(store, path, ALL) is None


def test_prune_removes_only_the_records_no_run_can_use(tmp_path: Path, store: Store) -> None:
    """``dockscope cleanup``: a record whose file is gone or changed goes, with any
    unfinished temporary and anything that is not a record; a usable one stays."""
    kept, gone, changed = (copied(tmp_path / n) for n in ("kept", "gone", "changed"))
    for path in (kept, gone, changed):
        run_once(store, path)
    records = {json.loads(r.read_text())["path"]: r for r in store.archives.glob("*.json")}
    gone.unlink()
    with open(changed, "ab") as stream:
        stream.write(b"\0" * 512)
    (store.archives / ".x.json.1234abcd.tmp").write_text("{")
    (store.archives / "junk.json").write_text("[]")
    report = prune(store)
    assert sorted(p.name for p in store.archives.iterdir()) == [records[str(kept)].name]
    assert f"archives: removed the record {records[str(gone)].name} ({gone} is gone)" in report
    assert f"({changed} changed since)" in "\n".join(report)
    assert "archives: removed an unfinished record (.x.json.1234abcd.tmp)" in report
    assert "archives: removed the record junk.json (not a record of this layout)" in report
    assert len(report) == 4
    assert recall_at(store, kept, ALL) is not None
    assert prune(store) == []


def test_a_file_written_while_it_was_read_is_not_recorded(tmp_path: Path, store: Store) -> None:
    """The identity is taken before the file is read: if the file changes before the record
    is written, what was read may not be what the file now holds, and nothing is recorded."""
    path = copied(tmp_path)
    file = identify(store, path, ALL)
    assert file is not None
    source, image = open_image(path, ALL)
    with source:
        with open(path, "ab") as stream:  # a writer meanwhile
            stream.write(b"\0" * 512)
        assert not remember(store, file, image)
    assert not store.archives.exists()
    assert recall_at(store, path, ALL) is None
