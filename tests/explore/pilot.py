"""Driving the explorer headless (Textual's pilot) and reading what its panes show."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Static, Tree

from inspect_tool.explore.app import ExploreApp, Opened
from inspect_tool.explore.model import Row
from inspect_tool.sources import ImageSelection, open_image


def synchronous(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """An async test run to its end in a fresh event loop (pytest runs it as a plain one)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


@asynccontextmanager
async def explore(
    path: Path,
    second: Path | None = None,
    *,
    size: tuple[int, int] = (120, 40),
    selection: ImageSelection | None = None,
    extract_to: Path | None = None,
    show_secrets: bool = False,
) -> AsyncIterator[tuple[ExploreApp, Pilot[None]]]:
    """The explorer on ``path`` (and ``second``), its layers read (tree and efficiency)."""
    source, image = open_image(path, selection or ImageSelection())
    with source:
        other = None
        if second is not None:
            source_b, image_b = open_image(second, ImageSelection())
            other = Opened(source_b, image_b)
        app = ExploreApp(
            Opened(source, image), other, extract_to=extract_to, show_secrets=show_secrets
        )
        try:
            async with app.run_test(size=size) as pilot:
                await settle(app, pilot)
                # the layers are read once the first frame is painted
                while app.tree_model is None and app.tree_error is None:
                    await pilot.pause(0.05)
                await settle(app, pilot)
                yield app, pilot
        finally:
            if other is not None:
                other.source.close()


async def settle(app: ExploreApp, pilot: Pilot[None]) -> None:
    """Wait for the workers and the screen to catch up."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def press(app: ExploreApp, pilot: Pilot[None], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(app, pilot)


async def type_text(app: ExploreApp, pilot: Pilot[None], text: str) -> None:
    """Type ``text`` into the focused input, key by key, then Enter."""
    await pilot.press(*[_key(c) for c in text], "enter")
    await settle(app, pilot)


_KEYS = {" ": "space", "/": "slash", ".": "full_stop", "*": "asterisk", "[": "left_square_bracket"}


def _key(char: str) -> str:
    return _KEYS.get(char, char)


def tree_rows(app: ExploreApp) -> list[tuple[str, Row]]:
    """The tree pane's visible lines: (label as plain text, the row it shows)."""
    tree: Tree[Row] = app.query_one("#files", Tree)
    found = []
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and node.data is not None:
            label = node.label
            found.append((label.plain if isinstance(label, Text) else str(label), node.data))
    return found


def tree_names(app: ExploreApp) -> list[str]:
    return [row.path for _, row in tree_rows(app)]


def label_of(app: ExploreApp, path: str) -> Text:
    tree: Tree[Row] = app.query_one("#files", Tree)
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and node.data is not None and node.data.path == path:
            assert isinstance(node.label, Text)
            return node.label
    raise AssertionError(f"{path} is not in the tree: {tree_names(app)}")


def styles(label: Text) -> set[str]:
    """Every style the label's text carries (its own and its spans')."""
    found = {str(label.style)} if label.style else set()
    found |= {str(span.style) for span in label.spans}
    return found


def static_text(app: ExploreApp, selector: str) -> str:
    widget = app.screen.query_one(selector, Static)
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)


async def move_to(app: ExploreApp, pilot: Pilot[None], path: str) -> None:
    """Put the tree's cursor on ``path`` (its directories expanded) and focus the tree."""
    assert app.reveal(path), f"{path} not shown: {tree_names(app)}"
    app.query_one("#files", Tree).focus()
    await settle(app, pilot)


async def select_layer(app: ExploreApp, pilot: Pilot[None], layer: int) -> None:
    """Move the layer list's cursor to ``layer`` with the arrow keys."""
    table = app.query_one("#layers")
    table.focus()
    await settle(app, pilot)
    while app.options.layer != layer:
        await press(app, pilot, "down" if app.options.layer < layer else "up")


def screen_text(app: ExploreApp | App[None]) -> str:
    """The screen as plain text: what ``export_screenshot`` draws into its SVG, exported by
    the same recording console as text instead."""
    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())
