"""The explorer driven headless by Textual's pilot: real key presses on corpus images, and
assertions on what each pane shows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log

from inspect_tool.explore.app import ContentScreen, FoundScreen, HelpScreen
from inspect_tool.explore.model import Kind
from tests.explore.pilot import (
    explore,
    label_of,
    move_to,
    press,
    screen_text,
    select_layer,
    static_text,
    styles,
    synchronous,
    tree_names,
    tree_rows,
    type_text,
)
from tests.support.cli import invoke

DIVE = "docker-save-legacy-dive.tar"


@pytest.fixture
def dive(corpus_copy) -> Path:  # type: ignore[no-untyped-def]
    path: Path = corpus_copy(DIVE)
    return path


@synchronous
async def test_layer_list_shows_each_layer_with_its_size_and_command(dive: Path) -> None:
    async with explore(dive) as (app, _):
        table = app.query_one("#layers", DataTable)
        assert table.row_count == 14
        rows = [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][0] == "0" and rows[0][2].startswith("ADD file:ce026b62356e")
        assert rows[3][2] == "RUN cp /somefile.txt /root/example/somefile1.txt"
        # the size column is dive's (tar header sizes), filled in from the efficiency pass
        assert [r[1] for r in rows[:3]] == ["1.2 MB", "6.4 kB", "0 B"]


@synchronous
async def test_layer_details_follow_the_selected_layer(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 4)
        details = static_text(app, "#details")
        layer = app.first.image.layers[4]
        assert f"digest: {layer.digest}" in details
        assert f"diff_id: {layer.diff_id}" in details
        assert f"chain ID: {layer.chain_id}" in details
        assert "command: /bin/sh -c chmod 444 /root/example/somefile1.txt" in details


@synchronous
async def test_image_panel_shows_the_figures_efficiency_prints(dive: Path) -> None:
    result = invoke("efficiency", "--json", str(dive))
    document = json.loads(result.out)
    async with explore(dive) as (app, _):
        panel = static_text(app, "#efficiency")
    efficiency = document["efficiency"]
    assert f"Efficiency: {efficiency * 100:.4f} % ({efficiency!r})" in panel
    assert f"Wasted bytes: {document['wasted_bytes']} (32.0 kB)" in panel
    assert f"User wasted: {document['user_wasted_percent'] * 100:.4f} %" in panel
    assert f"Size: {document['size_bytes']} (1.2 MB), of which above layer 0: " in panel
    worst = [p["path"] for p in document["inefficient_paths"]]
    assert worst == [
        "/root/saved.txt",
        "/root/example/somefile1.txt",
        "/root/example/somefile3.txt",
    ]
    positions = [panel.index(path) for path in worst]
    assert positions == sorted(positions)  # worst first, as efficiency lists them
    # and the human output agrees line for line
    human = invoke("efficiency", str(dive)).out
    assert f"{efficiency * 100:.4f} % ({efficiency!r})" in human
    assert not math.isnan(efficiency)


@synchronous
async def test_tree_colours_and_marks_what_the_layer_changed(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 4)  # RUN chmod 444 /root/example/somefile1.txt
        await move_to(app, pilot, "/root/example/somefile1.txt")
        label = label_of(app, "/root/example/somefile1.txt")
        assert label.plain.lstrip().startswith("~ -r--r--r--")
        assert "yellow" in styles(label)
        assert "0:0" in label.plain and "6.4 kB" in label.plain
        rows = {row.path: row for _, row in tree_rows(app)}
        assert rows["/root/example/somefile1.txt"].kind is Kind.MODIFIED
        assert rows["/root"].kind is Kind.UNCHANGED
        await select_layer(app, pilot, 5)  # cp /somefile.txt /root/example/somefile2.txt
        added = label_of(app, "/root/example/somefile2.txt")
        assert added.plain.lstrip().startswith("+ ") and "green" in styles(added)
        unchanged = label_of(app, "/root/example/somefile1.txt")
        assert unchanged.plain.lstrip().startswith("-r--r--r--")  # no marker
        assert not styles(unchanged) & {"green", "yellow", "red"}
        await select_layer(app, pilot, 9)  # rm -rf /root/example/
        removed = label_of(app, "/root/example")
        assert removed.plain.lstrip().startswith("- ") and "red" in styles(removed)
        assert "/root/example/somefile2.txt" in tree_names(app)  # still open, removed too
        assert label_of(app, "/root/example/somefile2.txt").plain.lstrip().startswith("- ")
        await select_layer(app, pilot, 10)  # the next layer: gone
        assert "/root/example" not in tree_names(app)


@synchronous
async def test_layer_only_view_and_hiding_kinds(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 3)
        await press(app, pilot, "tab")  # to the tree
        assert app.focused is app.query_one("#files")
        await press(app, pilot, "a")  # this layer's changes only
        await move_to(app, pilot, "/root/example/somefile1.txt")
        assert tree_names(app) == ["/root", "/root/example", "/root/example/somefile1.txt"]
        assert "layer 3 only" in static_text(app, "#status")
        await press(app, pilot, "a")  # aggregated again
        assert "/bin" in tree_names(app) and "/somefile.txt" in tree_names(app)
        await press(app, pilot, "4")  # hide unchanged
        assert tree_names(app) == ["/root", "/root/example", "/root/example/somefile1.txt"]
        assert "hidden: unchanged" in static_text(app, "#status")
        await press(app, pilot, "1")  # hide added too: nothing left
        assert tree_names(app) == []
        await press(app, pilot, "1", "4")
        assert "/bin" in tree_names(app)


@synchronous
async def test_regex_filter_sort_and_collapse(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 13)
        await press(app, pilot, "tab", "slash")
        await type_text(app, pilot, "saved")
        names = tree_names(app)
        assert "/root" in names and "/bin" not in names
        await move_to(app, pilot, "/root/saved.txt")
        assert {"/root/saved.txt", "/root/.saved.txt"} <= set(tree_names(app))
        assert "filter: saved" in static_text(app, "#status")
        await press(app, pilot, "slash")
        await type_text(app, pilot, "[")  # not a regular expression: said, filter kept
        assert "not a regular expression" in static_text(app, "#status")
        assert "/bin" not in tree_names(app)
        await press(app, pilot, "slash", "ctrl+u", "enter")  # empty: no filter
        assert "/bin" in tree_names(app)
        await press(app, pilot, "s")  # by size: the biggest directory first
        top = [row for _, row in tree_rows(app) if row.path.count("/") == 1]
        sizes = [row.size if row.is_dir else row.info.size for row in top]
        assert sizes == sorted(sizes, reverse=True)
        assert top[0].path == "/bin"
        await press(app, pilot, "s", "c")  # by name, every directory collapsed
        assert all(row.path.count("/") == 1 for _, row in tree_rows(app))


@synchronous
async def test_content_view_text_hex_and_removed_versions(dive: Path) -> None:
    expected = invoke("cat", "--at", "8", str(dive), "/root/example/somefile1.txt").out_bytes
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 9)  # the layer that removed it: its last version shows
        await move_to(app, pilot, "/root/example/somefile1.txt")
        await press(app, pilot, "enter")
        screen = app.screen
        assert isinstance(screen, ContentScreen)
        assert screen.content.data == expected
        log = screen.query_one(Log)
        assert log.lines[0] == expected.decode().split("\n")[0]
        assert "after layer 8" in static_text(app, "#content-title")
        await press(app, pilot, "h")
        assert log.lines[0].startswith("00000000  ")
        assert log.lines[0][10:33] == " ".join(f"{b:02x}" for b in expected[:8])
        await press(app, pilot, "escape")
        assert not isinstance(app.screen, ContentScreen)


@synchronous
async def test_extract_writes_the_file_through_the_safe_unpack(dive: Path, tmp_path: Path) -> None:
    expected = invoke("cat", "--at", "7", str(dive), "/root/saved.txt").out_bytes
    async with explore(dive, extract_to=tmp_path) as (app, pilot):
        await select_layer(app, pilot, 7)
        await move_to(app, pilot, "/root")
        await press(app, pilot, "x", "enter")  # the proposed destination
        destination = tmp_path / "root-layer7"
        assert (destination / "root" / "saved.txt").read_bytes() == expected
        assert (destination / "root" / "example" / "somefile1.txt").is_file()
        assert not (destination / "bin").exists()  # only the directory asked for
        assert "extracted /root into" in static_text(app, "#status")
        await press(app, pilot, "x", "enter")  # again: not empty, said, nothing touched
        assert "is not empty" in static_text(app, "#status")


@synchronous
async def test_find_names_across_layers_and_jump(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await press(app, pilot, "f")
        await type_text(app, pilot, "somefile3*")
        screen = app.screen
        assert isinstance(screen, FoundScreen)
        found = [(f.path, f.layer, f.fate, f.by_layer) for f in screen.found]
        assert found == [("/root/example/somefile3.txt", 6, "deleted", 7)]
        await press(app, pilot, "enter")
        assert app.options.layer == 6
        assert app.current_row() is not None and app.current_row().path == found[0][0]  # type: ignore[union-attr]


@synchronous
async def test_touched_lists_every_layer_of_a_path(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 13)
        await move_to(app, pilot, "/root/saved.txt")
        await press(app, pilot, "t")
        screen = app.screen
        assert isinstance(screen, FoundScreen)
        assert [(f.layer, f.fate, f.by_layer) for f in screen.found] == [
            (7, "replaced", 13),
            (13, "present", None),
        ]


@synchronous
async def test_help_lists_the_keys(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await press(app, pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for key in (
            "Tab",
            "Space",
            "regular expression",
            "extract",
            "Ctrl+Space",
            "--show-secrets",
        ):
            assert key in text
        await press(app, pilot, "escape")
        assert not isinstance(app.screen, HelpScreen)
        footer = screen_text(app).splitlines()[-1]
        for key in ("q Quit", "? Help", "/ Filter", "p Packages", "S Secrets", "a Aggr/layer"):
            assert key in footer


@synchronous
async def test_attributes_hide_and_show(dive: Path) -> None:
    async with explore(dive) as (app, pilot):
        await select_layer(app, pilot, 1)
        await press(app, pilot, "tab")
        assert (
            label_of(app, "/somefile.txt").plain == "  + -rw-rw-r--     0:0   6.4 kB somefile.txt"
        )
        await press(app, pilot, "b")
        assert label_of(app, "/somefile.txt").plain == "  + somefile.txt"
        await press(app, pilot, "b")
        assert "-rw-rw-r--" in label_of(app, "/somefile.txt").plain


def _made(node) -> int:  # type: ignore[no-untyped-def]
    return sum(1 + _made(child) for child in node.children)


@synchronous
async def test_tree_nodes_are_made_when_a_directory_opens(tmp_path: Path) -> None:
    from tests.support.images import write_image
    from tests.support.tar_entries import build_layer, dir_entry, file_entry

    entries = []
    for top in ("a", "b", "c"):
        entries.append(dir_entry(top))
        entries += [file_entry(f"{top}/f{i:04d}", b"x") for i in range(2000)]
    image = write_image(tmp_path / "wide.tar", [build_layer(entries)])
    async with explore(image) as (app, pilot):
        tree = app.query_one("#files")
        assert app.tree_model is not None and app.tree_model.entries == 6003
        assert _made(tree.root) == 3  # type: ignore[attr-defined]
        await move_to(app, pilot, "/b/f0000")
        # a long directory shows 1000 rows, then a line for the rest
        assert _made(tree.root) == 3 + 1000 + 1  # type: ignore[attr-defined]
        last = tree.root.children[1].children[-1]  # type: ignore[attr-defined]
        assert last.data is None and "1000 more" in last.label.plain
        await move_to(app, pilot, "/b/f0999")
        await press(app, pilot, "down", "enter")  # Enter on that line: the next rows
        assert _made(tree.root) == 3 + 2000  # type: ignore[attr-defined]
        assert app.current_row().path == "/b/f1000"  # type: ignore[union-attr]
        await press(app, pilot, "c", "s", "s")  # all closed, the tree made again
        assert _made(tree.root) == 3  # type: ignore[attr-defined]
        await move_to(app, pilot, "/b/f1999")  # reaching a row beyond the first 1000
        assert app.current_row().path == "/b/f1999"  # type: ignore[union-attr]


@synchronous
async def test_details_and_image_panels_scroll_from_the_keyboard(corpus_copy) -> None:  # type: ignore[no-untyped-def]
    async with explore(corpus_copy(DIVE), size=(80, 24)) as (app, pilot):
        image = app.query_one("#efficiency-scroll")
        await press(app, pilot, "i")
        assert app.focused is image
        await press(app, pilot, "end")
        assert image.scroll_y > 0  # the worst paths, below the figures at 80×24
        await press(app, pilot, "tab")
        assert app.focused is app.query_one("#files")
        await press(app, pilot, "tab")  # Tab passes the panels by
        assert app.focused is app.query_one("#layers")
        await press(app, pilot, "d")
        assert app.focused is app.query_one("#details-scroll")
