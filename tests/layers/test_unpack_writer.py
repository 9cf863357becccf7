"""unpack with its writer thread gives exactly what applying each entry in turn gives: the same
tree (types, modes, contents, link targets, hard-link groups, mtimes, owners), the same stats
and the same audit in the same order, on the hostile layers, the corpus images and layers made
to hit the thread's edges (files over lower layers' entries, names twice, a stream cut inside a
file)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from inspect_tool.errors import DockscopeError
from inspect_tool.layers import unpack as unpack_package
from inspect_tool.layers.unpack import UnpackOptions, unpack
from inspect_tool.layers.unpack.applier import LayerApplier
from inspect_tool.sources import open_source
from tests.image.test_corpus import CORPUS_IMAGES
from tests.layers.test_unpack_hostile import CASES as HOSTILE_CASES
from tests.layers.test_unpack_hostile import Env
from tests.support.images import oci_layout
from tests.support.tar_entries import (
    Entry,
    build_layer,
    dir_entry,
    file_entry,
    hardlink_entry,
    symlink_entry,
)
from tests.support.trees import dest_tree

_MADE_NOW = 1_750_000_000 * 10**9  # after every mtime the layers here carry


def _times(dest: Path) -> dict[str, tuple[object, int, int]]:
    found = {}
    for top, dirs, files in os.walk(dest):
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            # a directory made for an entry keeps the time it was made: "now" on both sides
            mtime = "now" if st.st_mtime_ns > _MADE_NOW else st.st_mtime_ns
            found[os.path.relpath(os.path.join(top, name), dest)] = (
                mtime,
                st.st_uid,
                st.st_gid,
            )
    return found


def _unpack(image: Path, dest: Path, *, thread: bool, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        if not thread:
            patch.setattr(
                unpack_package,
                "LayerApplier",
                functools.partial(_sequential_applier, LayerApplier),
            )
        try:
            with open_source(image) as source:
                result = unpack(source, source.candidates[0].image(), dest, options=UnpackOptions())
        except DockscopeError as exc:
            return ("error", exc.message, dest_tree(dest), _times(dest))
    audit = [(a.layer, a.name, a.action, a.reason, a.message, a.offset) for a in result.audit]
    return (result.stats, result.written, audit, dest_tree(dest), _times(dest))


def _sequential_applier(cls: type, *args: object, **kwargs: object) -> object:
    kwargs["writer_thread"] = False
    return cls(*args, **kwargs)


def assert_same_unpack(image: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    threaded = _unpack(image, tmp / "threaded", thread=True, monkeypatch=monkeypatch)
    in_turn = _unpack(image, tmp / "in-turn", thread=False, monkeypatch=monkeypatch)
    assert threaded == in_turn
    return threaded


def _image(tmp: Path, layers: list[bytes]) -> Path:
    image = tmp / "image"
    oci_layout(image, layers)
    return image


def _files(directory: str, count: int, start: int = 0) -> list[Entry]:
    return [
        file_entry(f"{directory}/f{i:03}", b"%d" % i * (i % 7), mode=0o640 + (i % 2))
        for i in range(start, start + count)
    ]


EDGE_LAYERS: dict[str, list[list[Entry]]] = {
    "over-lower-entries": [
        [
            dir_entry("d"),
            *_files("d", 5),
            dir_entry("d/f007"),
            file_entry("d/f007/below", b"x"),
            symlink_entry("d/f008", "/etc"),
            hardlink_entry("d/f009", "d/f000"),
        ],
        [dir_entry("d"), *_files("d", 12)],
    ],
    "names-twice": [[dir_entry("d"), *_files("d", 6), *_files("d", 6), *_files("d", 3, 2)]],
    "file-then-into-it": [
        [dir_entry("d"), *_files("d", 4), file_entry("d/f001/x", b"y"), *_files("d", 3, 5)]
    ],
    "two-directories": [
        [dir_entry("a"), dir_entry("b"), *_files("a", 3), *_files("b", 3), *_files("a", 3, 4)]
    ],
    "whiteout-between": [
        [dir_entry("d"), *_files("d", 6)],
        [dir_entry("d"), *_files("d", 2), file_entry("d/.wh.f004"), *_files("d", 2, 5)],
    ],
    "setuid-and-owners": [
        [
            dir_entry("d"),
            *[file_entry(f"d/s{i}", b"s", mode=0o4755, uid=1000 + i, gid=7) for i in range(5)],
        ]
    ],
    "many": [[dir_entry("d"), *_files("d", 300)]],
    "big-files": [[dir_entry("d"), *_files("d", 2), file_entry("d/big", 300_000), *_files("d", 2)]],
}


@pytest.mark.parametrize("label", sorted(EDGE_LAYERS))
def test_edge_layers(label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path, [build_layer(layer) for layer in EDGE_LAYERS[label]])
    result = assert_same_unpack(image, tmp_path, monkeypatch)
    assert result[0] != "error"  # type: ignore[index]


def test_stream_cut_inside_a_handed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = build_layer([dir_entry("d"), *_files("d", 5), file_entry("d/cut", 5000)])
    cut = layer[: layer.index(b"x" * 5000) + 1000]
    image = tmp_path / "image"
    oci_layout(image, [cut], diff_ids=["sha256:" + "0" * 64])
    result = assert_same_unpack(image, tmp_path, monkeypatch)
    assert result[0] == "error"  # type: ignore[index]


def test_hostile_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for number, case in enumerate(HOSTILE_CASES):
        work = tmp_path / str(number)
        env = Env(work, work / "dest", work / "victim", "marker")
        work.mkdir()
        layers = [build_layer(layer) for layer in case.layers(env)]
        assert_same_unpack(_image(work, layers), work, monkeypatch)


@pytest.mark.parametrize("name", CORPUS_IMAGES)
def test_corpus(name: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = assert_same_unpack(corpus / name, tmp_path, monkeypatch)
    assert result[0] != "error"  # type: ignore[index]
