"""dockscope tree: layers → changes, colours, --depth, --layer and --json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from inspect_tool.analyze.filesystem import changes_by_layer, layer_rows
from inspect_tool.layers.union import ChangeKind
from inspect_tool.render.tree import change_tree, render_tree
from inspect_tool.sources import open_source
from tests.support.cli import invoke
from tests.support.images import write_image
from tests.support.paths import CORPUS, SAMPLES
from tests.support.tar_entries import build_layer, dir_entry, file_entry, symlink_entry

LEGACY = SAMPLES / "docker-archive-legacy.tar"
DIVE = CORPUS / "docker-save-legacy-dive.tar"


def tree_json(*args: str | Path) -> dict[str, Any]:
    result = invoke("tree", "--json", *(str(a) for a in args))
    assert result.code == 0, result.output
    document: dict[str, Any] = json.loads(result.out)
    return document


def flatten(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for node in nodes:
        found[node["path"]] = node
        found.update(flatten(node["children"]))
    return found


def test_layer_changes_as_a_tree() -> None:
    result = invoke("tree", str(LEGACY))
    assert result.code == 0, result.output
    out = result.out
    assert out.splitlines()[0].startswith("dockscope/sample:legacy  sha256:09441cb83423  4 layers")
    layer2 = out[out.index("layer 2") : out.index("layer 3")]
    # rm of README (whiteout), rm -rf of /var/cache/app and mkdir again (opaque directory)
    assert re.search(r"└── - README  330 B", layer2)
    assert "- index.db  432 B" in layer2 and "- old.log  476 B" in layer2
    assert "+ stamp  14 B" in layer2
    assert "+1 ~0 -3" in layer2
    layer1 = out[out.index("layer 1") : out.index("layer 2")]
    assert "~ os-release  99 B" in layer1 and "+ motd  38 B" in layer1
    # /etc only holds changes in layer 1: shown without a mark
    assert re.search(r"├── etc/\n", layer1)
    layer0 = out[out.index("layer 0") : out.index("layer 1")]
    assert "+ sh-link -> hello" in layer0 and "+ hi => bin/hello" in layer0


def test_counts_agree_with_layer_rows() -> None:
    with open_source(DIVE) as source:
        image = source.candidates[0].image()
        rows = layer_rows(source, image)
        changes = changes_by_layer(source, image)
    assert [(c.added, c.modified, c.deleted) for c in changes] == [
        (r.added, r.modified, r.deleted) for r in rows
    ]
    for layer in changes:
        assert len(layer.changes) == layer.added + layer.modified + layer.deleted


@pytest.mark.parametrize("depth", [0, 1, 2, 3, None])
def test_depth_cuts_the_tree_and_counts_what_is_below(depth: int | None) -> None:
    with open_source(DIVE) as source:
        image = source.candidates[0].image()
        changes = changes_by_layer(source, image)
    for layer in changes:
        root = change_tree(layer, depth)
        shown = 0
        hidden = 0
        deepest = 0
        stack = [(root, 0)]
        while stack:
            node, level = stack.pop()
            shown += node.change is not None
            hidden += sum(node.hidden.values())
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.children.values())
        assert shown + hidden == len(layer.changes)
        if depth is not None:
            assert deepest <= depth
            # nothing is shown exactly when every change lies deeper than the cut
            deep = all(len([p for p in c.path.split("/") if p]) > depth for c in layer.changes)
            assert deep == (shown == 0)


def test_depth_on_the_command_line() -> None:
    result = invoke("tree", "--depth", "1", "--layer", "2", str(LEGACY))
    assert result.code == 0, result.output
    lines = result.out.splitlines()
    assert "- README" not in result.out
    assert any(re.search(r"usr/  … 1 more below \+0 ~0 -1$", line) for line in lines)
    assert any(re.search(r"var/  … 3 more below \+1 ~0 -2$", line) for line in lines)
    result = invoke("tree", "-d", "0", "--layer", "2", str(LEGACY))
    assert result.out.splitlines()[-1].endswith("… 4 more below +1 ~0 -3")


def test_colours_mark_added_modified_and_deleted() -> None:
    with open_source(LEGACY) as source:
        image = source.candidates[0].image()
        changes = changes_by_layer(source, image)
    console = Console(force_terminal=True, color_system="standard", width=200)
    with console.capture() as captured:
        render_tree(console, image, changes[1:3])
    out = captured.get()
    # green for added, yellow for modified, red (struck through) for deleted
    assert re.search(r"\x1b\[32m\+ \x1b\[0m\x1b\[32mmotd", out)
    assert re.search(r"\x1b\[33m~ \x1b\[0m\x1b\[33mos-release", out)
    assert re.search(r"\x1b\[31m- \x1b\[0m\x1b\[9;31mREADME", out)


def test_json_document() -> None:
    doc = tree_json("--layer", "2", LEGACY)
    assert doc["schema_version"] == 1 and doc["kind"] == "tree" and doc["depth"] is None
    assert [layer["index"] for layer in doc["layers"]] == [2]
    layer = doc["layers"][0]
    assert (layer["added"], layer["modified"], layer["deleted"]) == (1, 0, 3)
    assert layer["diff_id"].startswith("sha256:741ed006ab80")
    nodes = flatten(layer["changes"])
    assert nodes["/usr"]["change"] is None and nodes["/usr"]["type"] == "dir"
    readme = nodes["/usr/share/doc/dockscope/README"]
    assert readme == {
        "name": "README",
        "path": "/usr/share/doc/dockscope/README",
        "change": "deleted",
        "type": "file",
        "size": 330,
        "link": None,
        "layer": 0,
        "hidden": None,
        "children": [],
    }
    assert nodes["/var/cache/app/stamp"]["change"] == "added"
    assert nodes["/var/cache/app/stamp"]["layer"] == 2
    cut = tree_json("--layer", "2", "--depth", "2", LEGACY)["layers"][0]
    shallow = flatten(cut["changes"])
    assert set(shallow) == {"/usr", "/usr/share", "/var", "/var/cache"}
    assert shallow["/usr/share"]["hidden"] == {"added": 0, "modified": 0, "deleted": 1}
    assert shallow["/var/cache"]["hidden"] == {"added": 1, "modified": 0, "deleted": 2}


def test_whiteouts_of_a_real_image() -> None:
    doc = tree_json(CORPUS / "docker-save-whiteouts-ggcr.tar")
    assert [flatten(layer["changes"]) for layer in doc["layers"]][1] == {
        "/foo.txt": {
            "name": "foo.txt",
            "path": "/foo.txt",
            "change": "deleted",
            "type": "file",
            "size": 4,
            "link": None,
            "layer": 0,
            "hidden": None,
            "children": [],
        }
    }


def test_hostile_names_are_shown_not_obeyed(tmp_path: Path) -> None:
    evil = "\x1b[2J\x1b]0;owned\x07[red]x[bold]"
    layer = build_layer(
        [dir_entry("a"), file_entry(f"a/{evil}", b"1"), symlink_entry("a/link", "\n/x")]
    )
    path = write_image(tmp_path / "evil.tar", [layer])
    result = invoke("tree", str(path), color=True)
    assert result.code == 0, result.output
    assert "\x1b" not in result.out and "\x07" not in result.out
    assert "+ \\x1b[2J\\x1b]0;owned\\x07[red]x[bold]  1 B" in result.out
    assert "+ link -> \\n/x" in result.out


def test_usage_errors() -> None:
    result = invoke("tree", "--layer", "9", str(LEGACY))
    assert result.code == 2 and "layers 0 to 3" in result.output
    result = invoke("tree", "--depth", "-1", str(LEGACY))
    assert result.code == 2 and "must be 0 or more" in result.output
    result = invoke("tree", str(SAMPLES / "oci-multiplatform"))
    assert result.code == 2 and "choose one with --image" in result.output


def test_a_layer_that_fails_its_diff_id_is_an_error() -> None:
    result = invoke("tree", str(SAMPLES / "tampered" / "layer-byte-flipped.tar"))
    assert result.code == 3
    assert "diff_id mismatch" in result.output


def test_change_tree_kinds() -> None:
    with open_source(LEGACY) as source:
        image = source.candidates[0].image()
        changes = changes_by_layer(source, image, upto=2)
    assert len(changes) == 3
    root = change_tree(changes[2])
    cache = root.children["var"].children["cache"].children["app"]
    assert cache.change is ChangeKind.MODIFIED or cache.change is None
    assert {n: c.change for n, c in cache.children.items()} == {
        "index.db": ChangeKind.DELETED,
        "old.log": ChangeKind.DELETED,
        "stamp": ChangeKind.ADDED,
    }


@pytest.mark.parametrize("width", [1000, 200, 60])
def test_a_tree_deeper_than_the_width_continues_as_trees_of_its_own(
    tmp_path: Path, width: int
) -> None:
    """Past the depth the width indents, a directory's entries are drawn as a tree of its
    own after the first: every line fits the width (rich no longer wraps labels into no
    room beside thousands of guides, which cost it time in the square of the depth), and
    each entry is shown once."""
    levels = 300
    entries = [dir_entry("/".join(["d"] * n)) for n in range(1, levels + 1)]
    entries.append(file_entry("/".join(["d"] * levels) + "/leaf", b"x"))
    path = write_image(tmp_path / "deep.tar", [build_layer(entries)])
    with open_source(path) as source:
        image = source.candidates[0].image()
        changes = changes_by_layer(source, image)
    console = Console(width=width, no_color=True, highlight=False)
    with console.capture() as captured:
        render_tree(console, image, changes)
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= width
    assert sum(line.endswith("+ d/") for line in lines) == levels
    assert sum(line.endswith("+ leaf  1 B") for line in lines) == 1
    parts = [line for line in lines if line.endswith("(continued)")]
    # render_tree's: 64 levels at most, 39 at 200 columns, 8 at 60
    nest = min(64, max(8, (width - 40) // 4 - 1))
    assert len(parts) == levels // nest  # d/ at each multiple of nest, down to d/ x 300
    marks = [line for line in lines if line.endswith("… continued below")]
    assert len(marks) == len(parts)
    assert "layer 0  /" + "d/" * 3 in "".join(lines)
