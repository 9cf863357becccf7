"""The explorer's packages (p) and secrets (S) screens: packages installed by dpkg and pip
(and an apk database), secrets planted and deleted; the layers they name are those of
``dockscope packages --json`` and ``dockscope secrets --json``; secrets redacted unless
``--show-secrets``; Enter jumps to the package's files and to the secret's file version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Log, Static

from inspect_tool.explore.app import ContentScreen, ExploreApp, PackagesScreen, SecretsScreen
from inspect_tool.render.text import visible
from tests.explore.images import APK_FIXTURE, PASSWORD, TOKEN, inventory, packaged
from tests.explore.pilot import (
    explore,
    move_to,
    press,
    screen_text,
    select_layer,
    static_text,
    synchronous,
    tree_names,
    type_text,
)
from tests.explore.test_screens import CONTROLS, check_snapshot
from tests.support.cli import invoke
from tests.support.images import write_image
from tests.support.paths import CORPUS, SAMPLES
from tests.support.tar_entries import build_layer, dir_entry, file_entry


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    apk = CORPUS / "packages" / APK_FIXTURE
    return packaged(tmp_path_factory.mktemp("packaged"), apk if apk.is_file() else None)


def table_rows(app: ExploreApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def command_json(*args: Any) -> dict[str, Any]:
    result = invoke(*args)
    assert result.code in (0, 1), result.err
    return result.json()  # type: ignore[no-any-return]


async def open_packages(app: ExploreApp, pilot: Any) -> list[list[str]]:
    await press(app, pilot, "p")
    assert isinstance(app.screen, PackagesScreen)
    return table_rows(app, "#packages-table")


async def choose(app: ExploreApp, pilot: Any, selector: str, column: int, value: str) -> None:
    """Move the screen's table cursor to the row whose ``column`` reads ``value``; Enter."""
    rows = table_rows(app, selector)
    index = next(i for i, row in enumerate(rows) if row[column] == value)
    app.screen.query_one(selector, DataTable).move_cursor(row=index)
    await press(app, pilot, "enter")


@synchronous
async def test_packages_are_listed_at_the_layers_packages_names(image: Path) -> None:
    document = command_json("packages", "--json", image)
    expected = {
        (p["ecosystem"], p["name"]): (str(p["layer"]), p["version"]) for p in document["packages"]
    }
    assert {"alpha", "beta", "tiny-ds"} <= {name for _, name in expected}
    async with explore(image) as (app, pilot):
        assert app.packages is None  # read on demand only
        rows = await open_packages(app, pilot)
        shown = {(r[1], r[2]): (r[0], r[3]) for r in rows}
        assert shown == expected
        changes = {r[2]: r[4] for r in rows}
        assert changes["alpha"] == "L1 upgraded from 1.0-1"
        assert changes["beta"] == "1 files changed later"
        if (CORPUS / "packages" / APK_FIXTURE).is_file():
            assert any(r[1] == "apk" and r[0] == "0" for r in rows)
        title = static_text(app, "#packages-title")
        assert title.startswith(f"{len(expected)} packages after layer 3")


@synchronous
async def test_the_packages_filter_and_the_jump_to_a_packages_files(image: Path) -> None:
    async with explore(image) as (app, pilot):
        await open_packages(app, pilot)
        await press(app, pilot, "slash")
        await type_text(app, pilot, "^deb (alpha|beta) ")
        assert [r[2] for r in table_rows(app, "#packages-table")] == ["beta", "alpha"]  # by layer
        await choose(app, pilot, "#packages-table", 2, "beta")
        assert not isinstance(app.screen, PackagesScreen)
        assert app.options.layer == 0 and app.options.aggregated
        names = tree_names(app)
        assert "/usr/share/beta/data" in names and "/etc/beta.conf" in names
        assert "/usr/bin/alpha" not in names and "/var" not in names
        assert "files of beta 2.0" in static_text(app, "#status")
        # an empty filter shows every file again
        await press(app, pilot, "slash")
        await type_text(app, pilot, "")
        assert app.options.only is None
        assert "/var" in tree_names(app)
        # a pip package: its RECORD lists its files
        await open_packages(app, pilot)
        await choose(app, pilot, "#packages-table", 2, "tiny-ds")
        assert app.options.layer == 3
        assert "/usr/lib/python3/dist-packages/tinyds/__init__.py" in tree_names(app)


def secrets_by_path(app: ExploreApp) -> dict[str, list[str]]:
    return {r[3].rsplit(":", 1)[0]: r for r in table_rows(app, "#secrets-table")}


@synchronous
async def test_secrets_are_redacted_with_the_commands_layers_and_fates(image: Path) -> None:
    document = command_json("secrets", "--json", image)
    expected = {f["path"]: f for f in document["findings"] if f["layer"] is not None}
    assert set(expected) == {"/app/.env", "/app/app.conf"}
    async with explore(image) as (app, pilot):
        await press(app, pilot, "S")
        assert isinstance(app.screen, SecretsScreen)
        rows = secrets_by_path(app)
        for path, finding in expected.items():
            layer, rule, fate, _, excerpt = rows[path]
            assert (layer, rule) == (str(finding["layer"]), finding["rule"])
            assert fate == f"{finding['fate']} by L{finding['by_layer']}"
            assert excerpt == finding["excerpt"]
        assert rows["/app/.env"][2] == "deleted by L2"
        assert rows["/app/app.conf"][2] == "overwritten by L2"
        screen = screen_text(app)
        assert TOKEN not in screen and PASSWORD not in screen
        assert "ghp_********" in screen
        # Enter: the deleted .env as layer 1 holds it, its token redacted in the viewer too
        await choose(app, pilot, "#secrets-table", 3, "/app/.env:2")
        assert isinstance(app.screen, ContentScreen)
        lines = app.screen.query_one(Log).lines
        assert lines[:2] == ["DEBUG=1", "GITHUB_TOKEN=ghp_********"]
        assert "1 secrets redacted" in static_text(app, "#content-title")
        assert app.options.layer == 1
        await press(app, pilot, "h")  # the hex dump is of the redacted bytes
        assert TOKEN[4:12] not in "".join(app.screen.query_one(Log).lines)
        await press(app, pilot, "escape")
        row = app.current_row()
        assert row is not None and row.path == "/app/.env"


@synchronous
async def test_show_secrets_shows_them_whole(image: Path) -> None:
    async with explore(image, show_secrets=True) as (app, pilot):
        await press(app, pilot, "S")
        rows = secrets_by_path(app)
        assert rows["/app/.env"][4] == TOKEN
        assert rows["/app/app.conf"][4] == PASSWORD
        await choose(app, pilot, "#secrets-table", 3, "/app/app.conf:3")
        assert isinstance(app.screen, ContentScreen)
        assert f"password = {PASSWORD}" in app.screen.query_one(Log).lines


@synchronous
async def test_content_viewed_from_the_tree_is_redacted_once_secrets_are_known(
    image: Path,
) -> None:
    async with explore(image) as (app, pilot):
        await select_layer(app, pilot, 1)
        await move_to(app, pilot, "/app/app.conf")
        await press(app, pilot, "enter")
        assert f"password = {PASSWORD}" in app.screen.query_one(Log).lines  # not scanned yet
        await press(app, pilot, "escape", "S", "escape")
        await move_to(app, pilot, "/app/app.conf")
        await press(app, pilot, "enter")
        assert "password = ********" in app.screen.query_one(Log).lines


@synchronous
async def test_packages_and_secrets_keys_are_off_when_comparing(
    image: Path, tmp_path: Path
) -> None:
    other = inventory(tmp_path / "inventory.tar")
    async with explore(image, other) as (app, pilot):
        await press(app, pilot, "p", "S")
        assert app.packages is None and app.secrets is None
        assert not isinstance(app.screen, (PackagesScreen, SecretsScreen))


@synchronous
async def test_snapshots_of_packages_and_secrets_at_80_by_24(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    image = inventory(tmp_path / "inventory.tar")
    async with explore(image, size=(80, 24)) as (app, pilot):
        await press(app, pilot, "p")
        check_snapshot("packages", screen_text(app))
        await press(app, pilot, "enter")  # hello: its file list
        check_snapshot("package-files", screen_text(app))
        await press(app, pilot, "S")
        screen = screen_text(app)
        assert TOKEN not in screen
        check_snapshot("secrets", screen)


@synchronous
async def test_hostile_package_names_paths_and_excerpts_are_escaped(tmp_path: Path) -> None:
    name = "evil\x1b]0;pwned\x07[bold red]x"
    version = "1.0\x1b[2J[/]"
    directory = "srv/[red]\x1b[2Jd\u202e"
    status = (
        f"Package: {name}\nStatus: install ok installed\nArchitecture: all\n"
        f"Version: {version}\nDescription: x\n\n"
    ).encode()
    layer = build_layer(
        [
            dir_entry("var/lib/dpkg"),
            file_entry("var/lib/dpkg/status", status),
            dir_entry(directory),
            file_entry(f"{directory}/.env", f"GITHUB_TOKEN={TOKEN}\x1b[2J\n".encode()),
        ]
    )
    image = write_image(tmp_path / "hostile.tar", [layer], tag="hostile:1")
    async with explore(image, size=(160, 30)) as (app, pilot):
        rows = await open_packages(app, pilot)
        assert [(r[2], r[3]) for r in rows] == [(visible(name), visible(version))]
        screen = screen_text(app)
        assert not set(screen) & CONTROLS and "[bold red]x" in screen
        await press(app, pilot, "escape", "S")
        rows = table_rows(app, "#secrets-table")
        assert rows and {r[3] for r in rows} == {visible(f"/{directory}/.env:1")}
        assert all(r[4].startswith("GITHUB_TOKEN=ghp_********") for r in rows)
        assert visible("ghp_********\x1b[2J") in {r[4][13:] for r in rows}  # shown escaped
        screen = screen_text(app)
        assert not set(screen) & CONTROLS and TOKEN not in screen


@synchronous
async def test_a_scan_waits_for_the_source_with_its_progress_in_the_status_line(
    image: Path,
) -> None:
    async with explore(image) as (app, pilot):
        with app._lock:  # another read holds the source (a find, a content view)
            await pilot.press("p")
            await pilot.pause(0.2)
            assert "packages: reading layers… 0%" in static_text(app, "#status")
            assert not isinstance(app.screen, PackagesScreen)
            await pilot.press("p")  # asked again meanwhile: still one scan
            assert list(app.scanning) == ["packages"]
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, PackagesScreen)
        status = app.screen_stack[0].query_one("#status", Static).content
        assert isinstance(status, Text) and "packages:" not in status.plain
        assert app.packages is not None


@synchronous
async def test_the_packaged_sample_as_the_lab_shows_it() -> None:
    sample = SAMPLES / "docker-archive-packages.tar"
    layers = {
        p["name"]: str(p["layer"]) for p in command_json("packages", "--json", sample)["packages"]
    }
    assert layers == {"greeter": "1", "libtiny1": "3"}
    async with explore(sample) as (app, pilot):
        rows = await open_packages(app, pilot)
        assert {r[2]: r[0] for r in rows} == layers
        assert {r[2]: r[4] for r in rows}["libtiny1"] == "L3 upgraded from 1.4-1"
        await press(app, pilot, "escape", "S")
        [row] = table_rows(app, "#secrets-table")
        assert row[:4] == ["2", "dotenv-secret", "deleted by L3", "/opt/app/.env:2"]
        await press(app, pilot, "enter")
        assert isinstance(app.screen, ContentScreen)
        assert app.screen.query_one(Log).lines[:2] == [
            "APP_ENV=production",
            "SESSION_TOKEN=q8Zf********",
        ]


@synchronous
async def test_a_scan_stops_when_the_explorer_closes(image: Path) -> None:
    async with explore(image) as (app, pilot):
        with app._lock:
            await pilot.press("S")
            await pilot.pause(0.1)
            [worker] = [w for w in app.workers if w.group == "secrets"]
            app.workers.cancel_all()  # what quitting does
        while not worker.is_finished:  # the thread runs on until the scan stops
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        assert app.secrets is None and not isinstance(app.screen, SecretsScreen)
        assert "error" not in static_text(app, "#status")
