"""image_fs.read_layers: every layer's members in order, read whole by forked workers where the
source allows, the same as one process reads them; a bad layer stops it at its turn."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

import inspect_tool.layers.image_fs as image_fs_module
from inspect_tool.errors import InvalidImageError
from inspect_tool.layers.image_fs import read_layers
from inspect_tool.sources import open_source
from tests.support.images import oci_layout, sha256
from tests.support.tar_entries import build_layer, dir_entry, file_entry, symlink_entry

LAYERS = [
    build_layer(
        [dir_entry("etc"), file_entry("etc/hosts", b"127.0.0.1 localhost\n")]
        + [file_entry(f"srv/f{i:04d}", bytes([i % 251]) * i) for i in range(300)]
    ),
    build_layer([file_entry("etc/.wh.hosts"), symlink_entry("etc/hosts", "/run/hosts")]),
    build_layer([dir_entry("srv"), file_entry("srv/.wh..wh..opq"), file_entry("srv/new", b"n")]),
]


def _read(path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> list[Any]:
    forked: list[int] = []
    real = image_fs_module.iter_forked

    def counting(*args: Any, **kwargs: Any) -> Any:
        forked.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(image_fs_module, "usable_workers", lambda asked: workers)
    monkeypatch.setattr(image_fs_module, "iter_forked", counting)
    got: list[Any] = []
    with (
        open_source(path) as source,
        contextlib.closing(
            read_layers(source, source.candidates[0].image().layers, None)
        ) as layers,
    ):
        for layer, members, digest in layers:
            got.append((layer.index, [(m.name, m.type, m.size, m.offset) for m in members], digest))
    assert forked == ([3] if workers > 1 else [])
    return got


def test_workers_give_what_one_process_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oci_layout(tmp_path / "image", LAYERS)
    alone = _read(tmp_path / "image", monkeypatch, 1)
    assert [index for index, _, _ in alone] == [0, 1, 2]
    assert [f"sha256:{digest}" for _, _, digest in alone] == [sha256(layer) for layer in LAYERS]
    assert len(alone[0][1]) == 302 and alone[2][1][1][0] == "srv/.wh..wh..opq"
    assert _read(tmp_path / "image", monkeypatch, 2) == alone


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_layer_stops_it_at_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    diff_ids = [sha256(layer) for layer in LAYERS]
    diff_ids[1] = sha256(b"another layer")
    oci_layout(tmp_path / "image", LAYERS, diff_ids=diff_ids)
    monkeypatch.setattr(image_fs_module, "usable_workers", lambda asked: workers)
    given: list[int] = []
    with open_source(tmp_path / "image") as source:
        layers = source.candidates[0].image().layers
        with pytest.raises(InvalidImageError, match="diff_id mismatch") as raised:
            for layer, _, _ in read_layers(source, layers, None):
                given.append(layer.index)
    assert given == [0]
    assert raised.value.subject is not None and raised.value.subject.endswith(": layer 1")
