"""What the explorer's screens show: hostile names escaped, two images compared, a runtime
trace, NO_COLOR, and text snapshots of the 80×24 screen (exported from its SVG screenshot)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log

from inspect_tool.explore.app import ContentScreen, TraceApp
from inspect_tool.explore.model import Kind
from inspect_tool.explore.trace import read_trace
from inspect_tool.render.text import visible
from tests.explore.images import HOSTILE, HOSTILE_COMMAND, HOSTILE_TARGET, hostile, layered
from tests.explore.pilot import (
    explore,
    label_of,
    move_to,
    press,
    screen_text,
    select_layer,
    static_text,
    synchronous,
    tree_rows,
)
from tests.support.images import write_image
from tests.support.tar_entries import build_layer, file_entry

SNAPSHOTS = Path(__file__).parent / "snapshots"
CONTROLS = {chr(c) for c in range(0x20)} - {"\n"} | {"\x9b", "\u202e"}


def check_snapshot(name: str, text: str, suffix: str = ".txt") -> None:
    """Compare with the committed snapshot; DOCKSCOPE_SNAPSHOTS=update rewrites it."""
    path = SNAPSHOTS / f"{name}{suffix}"
    if os.environ.get("DOCKSCOPE_SNAPSHOTS") == "update":
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8")


@pytest.fixture
def hostile_image(tmp_path: Path) -> Path:
    return hostile(tmp_path / "hostile.tar")


@synchronous
async def test_hostile_names_reach_the_screen_escaped(hostile_image: Path) -> None:
    async with explore(hostile_image, size=(160, 40)) as (app, pilot):
        await move_to(app, pilot, f"/d/{HOSTILE}")
        label = label_of(app, f"/d/{HOSTILE}").plain
        assert visible(HOSTILE) in label and not set(label) & CONTROLS
        link = label_of(app, "/d/link").plain
        assert link.endswith("→ " + visible(HOSTILE_TARGET))  # "[link=…]" stays literal text
        assert label_of(app, "/d/[red]markup").plain.endswith(" 1 B [red]markup")
        table = app.query_one("#layers", DataTable)
        command = table.get_row_at(0)[2].plain
        assert command == visible("RUN echo \x1b[2J[bold]boom[/bold]")
        assert "command: " + visible(HOSTILE_COMMAND) in static_text(app, "#details")
        screen = screen_text(app)
        assert not set(screen) & CONTROLS
        assert "[bold red]x" in screen and "[red]markup" in screen  # shown, not markup
        await move_to(app, pilot, f"/d/{HOSTILE}")
        await press(app, pilot, "enter")
        assert isinstance(app.screen, ContentScreen)
        lines = app.screen.query_one(Log).lines
        assert lines[0] == "\\x1b]0;content title\\x07\\x1b[2Jline"


@synchronous
async def test_two_images_compared(tmp_path: Path) -> None:
    a = layered(tmp_path / "a.tar")
    b = write_image(tmp_path / "b.tar", [build_layer([file_entry("a/new", b"changed\n")])])
    async with explore(a, b) as (app, pilot):
        kinds = {row.path: row.kind for _, row in tree_rows(app)}
        assert kinds["/c"] is Kind.REMOVED and kinds["/bin.dat"] is Kind.REMOVED
        assert kinds["/a"] is Kind.UNCHANGED
        await move_to(app, pilot, "/a/new")
        assert label_of(app, "/a/new").plain.lstrip().startswith("~ ")
        summary = static_text(app, "#compare-text")
        assert "A: layered:1 (4 layers)" in summary and "- 2 only in A" in summary
        assert "differences A → B" in static_text(app, "#status")
        footer = screen_text(app).splitlines()[-1]
        # no layers to search, nor packages and secrets to read
        assert "/ Filter" in footer and "f Find" not in footer and "p Packages" not in footer
        await press(app, pilot, "enter")  # B's version of a modified file
        assert isinstance(app.screen, ContentScreen)
        assert app.screen.content.data == b"changed\n"


@synchronous
async def test_trace_opens_as_a_timeline(tmp_path: Path) -> None:
    events = [
        {
            "step": "unshare",
            "title": "Unshare the namespaces",
            "explanation": "own views",
            "syscall": "unshare",
            "args": {"flags": "CLONE_NEWNS"},
            "result": "ok",
            "evidence": {},
            "pid": 1,
            "host_pid": 77,
            "time": 10.0,
            "phase": "done",
        },
        {
            "step": "execve",
            "title": "Run \x1b[2Jthe command",
            "explanation": "",
            "syscall": "execve",
            "args": {},
            "result": "EACCES",
            "evidence": {"argv": ["/x"]},
            "pid": 1,
            "host_pid": 77,
            "time": 10.25,
            "phase": "done",
        },
    ]
    trace = tmp_path / "run.jsonl"
    trace.write_text("".join(json.dumps(e) + "\n" for e in events))
    app = TraceApp(str(trace), read_trace(trace))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = app.query_one("#steps", DataTable)
        rows = [[c.plain for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [
            ["1", "0.000", "1", "Unshare the namespaces", "ok"],
            ["2", "0.250", "1", "Run \\x1b[2Jthe command", "EACCES"],
        ]
        assert "args.flags: CLONE_NEWNS" in static_text(app, "#step-text")  # type: ignore[arg-type]
        await pilot.press("down")
        await pilot.pause()
        assert 'evidence.argv: ["/x"]' in static_text(app, "#step-text")  # type: ignore[arg-type]


@synchronous
async def test_no_color_keeps_the_markers(monkeypatch: pytest.MonkeyPatch, corpus_copy) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    async with explore(corpus_copy("docker-save-legacy-dive.tar"), size=(80, 24)) as (app, pilot):
        assert app.no_color
        await select_layer(app, pilot, 4)
        await move_to(app, pilot, "/root/example/somefile1.txt")
        assert "~ -r--r--r--" in screen_text(app)
        assert "#" not in app.export_screenshot().split("<style>")[1].split("@font")[0]


def svg_screenshot(app: object) -> str:
    """Textual's own SVG screenshot (colours, styles and all), with a fixed title."""
    svg: str = app.export_screenshot(title="dockscope explore")  # type: ignore[attr-defined]
    assert svg.startswith("<svg") and "dockscope&#160;explore" in svg
    return svg


@synchronous
async def test_snapshots_at_80_by_24(corpus_copy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NO_COLOR", raising=False)  # the SVGs hold the colours
    async with explore(corpus_copy("docker-save-legacy-dive.tar"), size=(80, 24)) as (app, pilot):
        check_snapshot("start", screen_text(app))
        check_snapshot("start", svg_screenshot(app), ".svg")
        await select_layer(app, pilot, 4)
        await move_to(app, pilot, "/root/example/somefile1.txt")
        check_snapshot("layer4-modified", screen_text(app))
        check_snapshot("layer4-modified", svg_screenshot(app), ".svg")
        await press(app, pilot, "question_mark")
        check_snapshot("help", screen_text(app))


@synchronous
async def test_extraction_proposes_a_plain_name(hostile_image: Path, tmp_path: Path) -> None:
    from textual.widgets import Input

    async with explore(hostile_image, extract_to=tmp_path) as (app, pilot):
        await move_to(app, pilot, f"/d/{HOSTILE}")
        await press(app, pilot, "x")
        proposed = app.screen.query_one(Input).value
        assert proposed == str(tmp_path / "n__0_pwned___2J_31m_ame___bold_red_x_-layer0")
        await press(app, pilot, "enter")
        written = tmp_path / "n__0_pwned___2J_31m_ame___bold_red_x_-layer0" / "d" / HOSTILE
        assert written.read_bytes() == b"\x1b]0;content title\x07\x1b[2Jline\n"


@synchronous
async def test_a_layer_that_fails_its_diff_id_is_said_not_shown(tmp_path: Path) -> None:
    from tests.support.paths import SAMPLES

    image = tmp_path / "mismatch.tar"
    image.write_bytes((SAMPLES / "tampered" / "diff-id-mismatch.tar").read_bytes())
    async with explore(image) as (app, _):
        assert app.tree_model is None and app.tree_error is not None
        status = static_text(app, "#status")
        assert status.startswith("error: ") and "diff_id mismatch" in status
        assert "diff_id mismatch" in static_text(app, "#efficiency")
        assert app.query_one("#layers", DataTable).row_count == 4  # metadata still shown
