"""The explorer's pure parts: the layered tree and its views, content, extraction, traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_tool.analyze.diff import diff_images
from inspect_tool.analyze.efficiency import EfficiencyCalculator, efficiency
from inspect_tool.explore.content import hexdump, is_binary, read_content, text_lines
from inspect_tool.explore.extract import extract_path
from inspect_tool.explore.model import (
    FileTree,
    Kind,
    SizeCache,
    SortOrder,
    ViewOptions,
    build_tree,
    compare_tree,
    compile_pattern,
    exact_pattern,
)
from inspect_tool.explore.trace import TraceError, read_trace
from inspect_tool.model.image import Image
from inspect_tool.sources import ImageSelection, open_image
from inspect_tool.sources.source import Source
from tests.explore.images import layered


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Source, Image]]:
    path = layered(tmp_path_factory.mktemp("layered") / "layered.tar")
    source, selected = open_image(path, ImageSelection())
    with source:
        yield source, selected


@pytest.fixture(scope="module")
def tree(image: tuple[Source, Image]) -> FileTree:
    return build_tree(*image)


def view(tree: FileTree, **options: object) -> dict[str, Kind]:
    return {row.path: row.kind for row in tree.walk(ViewOptions(**options))}  # type: ignore[arg-type]


def test_each_layer_shows_what_it_added_modified_and_removed(tree: FileTree) -> None:
    assert view(tree, layer=0) == {
        "/a": Kind.ADDED,
        "/a/one": Kind.ADDED,
        "/a/sub": Kind.ADDED,
        "/a/sub/deep": Kind.ADDED,
        "/a/two": Kind.ADDED,
        "/b": Kind.ADDED,
        "/b/keep": Kind.ADDED,
    }
    assert view(tree, layer=1) == {
        "/a": Kind.UNCHANGED,
        "/a/one": Kind.MODIFIED,
        "/a/sub": Kind.UNCHANGED,
        "/a/sub/deep": Kind.UNCHANGED,
        "/a/two": Kind.REMOVED,
        "/b": Kind.UNCHANGED,
        "/b/keep": Kind.UNCHANGED,
        "/c": Kind.ADDED,
    }
    # the opaque directory removes everything below /a from lower layers; .wh.b removes /b
    after_opaque = view(tree, layer=2)
    assert after_opaque["/a/new"] is Kind.ADDED
    assert after_opaque["/a/one"] is Kind.REMOVED
    assert after_opaque["/a/sub/deep"] is Kind.REMOVED
    assert after_opaque["/b"] is Kind.REMOVED and after_opaque["/b/keep"] is Kind.REMOVED
    assert "/a/two" not in after_opaque  # removed by layer 1: gone for good
    assert set(view(tree, layer=3)) == {"/a", "/a/new", "/bin.dat", "/c"}


def test_this_layer_only_keeps_its_changes_and_their_directories(tree: FileTree) -> None:
    assert view(tree, layer=1, aggregated=False) == {
        "/a": Kind.UNCHANGED,
        "/a/one": Kind.MODIFIED,
        "/a/two": Kind.REMOVED,
        "/c": Kind.ADDED,
    }


def test_hiding_kinds_and_the_path_filter(tree: FileTree) -> None:
    shown = view(tree, layer=1, hidden={Kind.UNCHANGED, Kind.ADDED})
    assert shown == {"/a": Kind.UNCHANGED, "/a/one": Kind.MODIFIED, "/a/two": Kind.REMOVED}
    assert set(view(tree, layer=1, pattern=compile_pattern("dee+p$"))) == {
        "/a",
        "/a/sub",
        "/a/sub/deep",
    }
    with pytest.raises(ValueError, match="not a regular expression"):
        compile_pattern("(")
    assert compile_pattern("") is None


def test_rows_carry_mode_owner_and_size(tree: FileTree) -> None:
    rows = {row.path: row for row in tree.walk(ViewOptions(layer=1))}
    one = rows["/a/one"].info
    assert (one.mode, one.uid, one.gid, one.size) == (0o600, 1000, 1000, 15)
    removed = rows["/a/two"].info  # a removed entry shows the version it removed
    assert removed.size == 4 and removed.layer == 0


def test_sort_by_size_with_directory_sizes(tree: FileTree) -> None:
    options = ViewOptions(layer=1, sort=SortOrder.SIZE)
    sizes = SizeCache(tree, options)
    rows = tree.children(tree.root, options, sizes=sizes)
    assert [r.path for r in rows] == ["/c", "/a", "/b"]
    assert [r.size for r in rows if r.is_dir] == [15 + 5, 5]  # /a: one + sub/deep (two removed)


def test_versions_of_a_path(tree: FileTree) -> None:
    node = tree.node("/a/one")
    assert node is not None
    assert [(layer, info is not None) for layer, info in node.history()] == [
        (0, True),
        (1, True),
        (2, False),
    ]


def test_one_pass_gives_efficiencys_own_figures(image: tuple[Source, Image]) -> None:
    calculator = EfficiencyCalculator()
    build_tree(*image, calculator=calculator)
    assert calculator.report() == efficiency(*image)


def test_compare_tree_shows_differences(tmp_path: Path, image: tuple[Source, Image]) -> None:
    from tests.support.images import write_image
    from tests.support.tar_entries import build_layer, file_entry

    other = write_image(
        tmp_path / "other.tar",
        [build_layer([file_entry("a/new", b"changed\n"), file_entry("z", b"z")])],
    )
    source_b, image_b = open_image(other, ImageSelection())
    with source_b:
        result = diff_images(*image, source_b, image_b)
    tree = compare_tree(result)
    shown = view(tree, layer=1, aggregated=False)
    assert shown["/z"] is Kind.ADDED
    assert shown["/a/new"] is Kind.MODIFIED
    assert shown["/c"] is Kind.REMOVED and shown["/bin.dat"] is Kind.REMOVED
    assert shown["/a"] is Kind.UNCHANGED  # only the parent of differences


def test_content_of_overwritten_and_deleted_versions(image: tuple[Source, Image]) -> None:
    assert read_content(*image, "/a/one", 0).data == b"one v0\n"
    assert read_content(*image, "/a/one", 1).data == b"one v1, longer\n"
    cut = read_content(*image, "/bin.dat", 3, size=512, limit=100)
    assert cut.truncated and len(cut.data) == 100
    assert cut.binary and cut.lines()[-1] == "… (first 100 of 512 bytes shown)"


def test_text_is_escaped_and_binary_is_dumped() -> None:
    assert text_lines(b"a\x1b]0;t\x07b\tc\n\xff") == ["a\\x1b]0;t\\x07b        c", "\\udcff"]
    assert not is_binary(b"caf\xc3")  # a character cut by the limit is still text
    assert is_binary(b"\x00ab") and is_binary(b"\xff\xfe" * 10)
    assert hexdump(b"0123456789abcdefXY") == [
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|",
        "00000010  58 59                                             |XY|",
    ]


def test_extract_a_directory_as_a_layer_left_it(
    image: tuple[Source, Image], tmp_path: Path
) -> None:
    extract_path(*image, "/a", 1, tmp_path / "one")
    assert sorted(str(p.relative_to(tmp_path / "one")) for p in (tmp_path / "one").rglob("*")) == [
        "a",
        "a/one",
        "a/sub",
        "a/sub/deep",
    ]
    assert (tmp_path / "one" / "a" / "one").read_bytes() == b"one v1, longer\n"
    extract_path(*image, "/a", 2, tmp_path / "two")  # the opaque layer: only its own entry
    assert sorted(p.name for p in (tmp_path / "two" / "a").iterdir()) == ["new"]
    extract_path(*image, "/a/sub/deep", 0, tmp_path / "file")
    assert (tmp_path / "file" / "a" / "sub" / "deep").read_bytes() == b"deep\n"
    assert not (tmp_path / "file" / "b").exists()


def test_exact_pattern_matches_only_its_path() -> None:
    import fnmatch

    for path in ("/a[b]/*?", "/plain"):
        assert fnmatch.fnmatchcase(path, exact_pattern(path))
    assert not fnmatch.fnmatchcase("/ab", exact_pattern("/a?"))


def _event(**fields: object) -> str:
    base = {
        "step": "unshare",
        "title": "Unshare the namespaces",
        "explanation": "why",
        "syscall": "unshare",
        "args": {"flags": "NEWNS"},
        "result": "ok",
        "evidence": {},
        "pid": 1,
        "host_pid": 4242,
        "time": 100.5,
        "phase": "done",
    }
    base.update(fields)
    return json.dumps(base)


def test_trace_lines_become_steps(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(_event() + "\n\n" + _event(step="execve", result="EPERM", time=101) + "\n")
    steps = read_trace(trace)
    assert [(s.number, s.step, s.ok) for s in steps] == [(1, "unshare", True), (3, "execve", False)]
    assert ("args.flags", "NEWNS") in steps[0].details()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "no trace events"),
        ("{not json\n", "line 1"),
        ("[1]\n", "line 1: not a trace event"),
        (_event() + "\n" + _event(time="soon") + "\n", "line 2: 'time' is not a number"),
        (_event(step=3) + "\n", "'step' is not a string"),
    ],
)
def test_a_bad_trace_is_one_clear_error(tmp_path: Path, content: str, problem: str) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(content)
    with pytest.raises(TraceError, match=problem) as caught:
        read_trace(trace)
    assert caught.value.subject == str(trace)


def test_extract_never_writes_outside_the_destination(tmp_path: Path) -> None:
    from tests.support.images import write_image
    from tests.support.tar_entries import build_layer, dir_entry, file_entry, symlink_entry

    outside = tmp_path / "outside"
    outside.mkdir()
    layers = [
        build_layer([dir_entry("d"), symlink_entry("d/escape", str(outside))]),
        build_layer([file_entry("d/escape/planted", b"gotcha"), file_entry("d/ok", b"ok")]),
    ]
    path = write_image(tmp_path / "evil.tar", layers)
    source, image = open_image(path, ImageSelection())
    with source:
        result = extract_path(source, image, "/d", 1, tmp_path / "dest")
    assert list(outside.iterdir()) == []
    assert (tmp_path / "dest" / "d" / "ok").read_bytes() == b"ok"
    # the symlink resolves inside the destination, as if it were the root
    assert (tmp_path / "dest" / "d" / "escape").is_symlink()
    planted = tmp_path / "dest" / str(outside).lstrip("/") / "planted"
    assert planted.read_bytes() == b"gotcha" and not result.audit


def test_building_stops_when_cancelled(image: tuple[Source, Image]) -> None:
    from inspect_tool.explore.model import BuildCancelled

    asked = []

    def cancelled() -> bool:
        asked.append(True)
        return True

    with pytest.raises(BuildCancelled):
        build_tree(*image, cancelled=cancelled)
    assert asked == [True]  # asked at the first entry, and nothing read after
