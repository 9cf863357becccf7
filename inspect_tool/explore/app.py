"""The explorer's Textual application: layers, their details and the image's efficiency on
the left, the selected layer's file tree on the right; content, find, extraction and help as
screens above them.

Every string from an image reaches a widget as a ``rich.text.Text`` built from
``render/text.py``'s ``visible`` (never as markup). Work that reads layers runs in a thread
worker, one at a time (the source is not shared between threads), so the screen paints first.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Log, Static, Tree
from textual.widgets.tree import TreeNode

from inspect_tool.analyze.efficiency import EfficiencyReport
from inspect_tool.errors import DockscopeError
from inspect_tool.explore.model import (
    MARKERS,
    FileTree,
    Kind,
    Node,
    Row,
    SizeCache,
    SortOrder,
    ViewOptions,
    compile_pattern,
    exact_pattern,
)
from inspect_tool.explore.trace import Step
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.model.image import Image
from inspect_tool.render.console import human_size, short_created_by
from inspect_tool.render.files import mode_string
from inspect_tool.render.text import visible
from inspect_tool.sources.source import Source

if TYPE_CHECKING:  # imported where they are used: the screen paints before they load
    from inspect_tool.analyze.packages.scan import PackagesReport
    from inspect_tool.analyze.secrets import SecretFinding, SecretsReport
    from inspect_tool.explore.inventory import PackageRow

T = TypeVar("T")

STYLES = {
    Kind.ADDED: "green",
    Kind.MODIFIED: "yellow",
    Kind.REMOVED: "red",
    Kind.UNCHANGED: "",
}
WORST_PATHS = 20  # as `dockscope efficiency`'s default --limit
CHUNK = 1000  # tree rows made at once below one directory
OPEN_FILES = 500  # a package of at most this many files has their directories opened


class ScanCancelled(Exception):
    """A packages or secrets scan stopped because the explorer is closing."""


@dataclass(frozen=True, slots=True)
class Opened:
    """One image the explorer reads: its source stays open for content and extraction."""

    source: Source
    image: Image


def row_label(row: Row, *, attributes: bool = True) -> Text:
    """A tree row: change marker, mode, uid:gid, size (without ``attributes``: the marker
    alone), name (and a symlink's target)."""
    info = row.info
    if row.is_dir:
        size = "" if row.size is None else human_size(row.size)
    elif info.type is EntryType.SYMLINK:
        size = ""
    else:
        size = human_size(max(info.size, 0))
    owner = "" if info.implicit else f"{info.uid}:{info.gid}"
    mode = "" if info.implicit else mode_string(info)
    columns = f" {mode:<10} {owner:>7} {size:>8}" if attributes else ""
    text = Text(f"{MARKERS[row.kind]}{columns} ", style=STYLES[row.kind])
    name = visible(row.node.name) + ("/" if row.is_dir else "")
    text.append(name, style=STYLES[row.kind] + (" bold" if row.is_dir else ""))
    if info.type is EntryType.SYMLINK:
        text.append(" → " + visible(info.linkname), style="dim")
    elif info.type is EntryType.HARDLINK:
        text.append(" link to /" + visible(info.linkname.lstrip("/")), style="dim")
    return text


def layer_details(image: Image, index: int) -> Text:
    layer = image.layers[index]
    text = Text()
    for label, value in (
        ("layer", f"{index} of 0–{len(image.layers) - 1}"),
        ("digest", str(layer.digest) if layer.digest else "-"),
        ("diff_id", str(layer.diff_id) if layer.diff_id else "-"),
        ("chain ID", str(layer.chain_id) if layer.chain_id else "-"),
        ("blob size", f"{human_size(layer.size)} ({layer.compression.value})"),
        ("command", layer.created_by or "-"),
    ):
        text.append(f"{label}: ", style="bold cyan")
        text.append(visible(value) + "\n")
    text.rstrip()
    return text


def image_panel(image: Image, report: EfficiencyReport | None, error: str | None) -> Text:
    """The figures `dockscope efficiency` prints, and its worst paths."""
    from inspect_tool.render.analysis import efficiency_figures

    text = Text()
    text.append("Image: ", style="bold cyan")
    text.append(visible(image.display_name) + "\n")
    if error is not None:
        text.append(visible(error), style="red")
        return text
    if report is None:
        text.append("computing efficiency…", style="dim")
        return text
    for label, value in efficiency_figures(report):
        text.append(f"{label}: ", style="bold cyan")
        text.append(value + "\n")
    paths = report.inefficient_paths
    text.append(f"Inefficient paths ({len(paths)}, worst first)\n", style="bold")
    text.append("count   wasted  layers  path\n", style="dim")
    for path in paths[:WORST_PATHS]:
        layers = ",".join(str(i) for i in path.layers)
        text.append(f"{path.count:>5} {human_size(path.cumulative_size):>8}  {layers:<6}  ")
        text.append(visible(path.path) + "\n")
    if len(paths) > WORST_PATHS:
        text.append(f"… {len(paths) - WORST_PATHS} more (dockscope efficiency --limit 0)\n")
    for note in report.notes:
        text.append("note: " + visible(note) + "\n", style="yellow")
    text.rstrip()
    return text


HELP = """\
Keys (the footer shows the most used)

  Tab / Shift+Tab   next / previous pane (layers, file tree)
  d / i             the layer details / image panel: ↑ ↓ PgUp PgDn scroll it,
                    Tab leaves it
  ↑ ↓ in layers     select a layer: the tree shows the filesystem after it
  ↑ ↓ ← → in tree   move; Space expands or collapses a directory
  a                 aggregated view (after layer N) ⇄ this layer's changes only
  1 2 3 4           hide or show added, removed, modified, unchanged entries
  c                 collapse every directory
  s                 sort by name ⇄ by size
  b                 show or hide mode, owner and size (narrow terminals)
  /                 filter paths with a regular expression (empty: no filter)
  Enter / v         view the file's content in the selected layer (removed: the
                    version the layer removed); in the viewer h switches text ⇄ hex
  t                 every layer that touched the selected path (dockscope find)
  f                 find names across all layers (shell pattern, as dockscope find)
  x                 extract the selected file or directory to disk (safe unpack)
  p                 packages (dockscope packages): the layer that installed each;
                    / filters, Enter shows its files in the tree (/ with an
                    empty pattern shows all again)
  S                 secrets in every layer (dockscope secrets), redacted unless
                    started with --show-secrets; Enter shows that version of the
                    file, its secrets redacted too
  ?                 this help;  q quit

Colours and markers: + added (green), ~ modified (yellow), - removed (red).
dive's ctrl+ keys differ here: Ctrl+M is Enter and Ctrl+Space is NUL in most
terminals, and Ctrl+A/Ctrl+L are taken by tmux and readline users.
Escape or q closes this screen.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(HELP), id="help-text")


class ContentScreen(ModalScreen[None]):
    """A file's content (escaped text, or a hex dump)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("h", "toggle_hex", "Text/hex"),
    ]

    def __init__(self, title: str, content: Any) -> None:
        super().__init__()
        self.title_text = title
        self.content = content
        self.hex: bool = content.binary

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title_text, style="bold"), id="content-title")
        yield Log(id="content-log", highlight=False, auto_scroll=False)
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        log = self.query_one("#content-log", Log)
        log.clear()
        log.write_lines(self.content.lines(hex_dump=self.hex))
        log.scroll_home(animate=False)

    def action_toggle_hex(self) -> None:
        self.hex = not self.hex
        self._show()


class PromptScreen(ModalScreen[str | None]):
    """One line of input (a pattern, a destination)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            yield Static(Text(self.prompt))
            yield Input(value=self.value, id="prompt-input")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class Found:
    """One version of a path that find turned up: the layer that stores it, whether it is still
    present or was deleted or replaced (and by which layer), and its entry type."""

    path: str
    layer: int
    fate: str
    by_layer: int | None
    info_type: str


class FoundScreen(ModalScreen[Found | None]):
    """Results of find (or of the layers that touched one path): Enter jumps to one."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss_none", "Close")]

    def __init__(self, title: str, found: list[Found]) -> None:
        super().__init__()
        self.title_text = title
        self.found = found

    def compose(self) -> ComposeResult:
        title = Text(self.title_text, style="bold")
        title.append(" · Enter: that layer, the entry selected", style="dim")
        yield Static(title, id="found-title")
        table: DataTable[Text] = DataTable(id="found-table", cursor_type="row")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#found-table", DataTable)
        table.add_columns("layer", "fate", "type", "path")
        for item in self.found:
            fate = item.fate if item.by_layer is None else f"{item.fate} by {item.by_layer}"
            table.add_row(
                Text(str(item.layer)), Text(fate), Text(item.info_type), Text(visible(item.path))
            )
        table.focus()

    @on(DataTable.RowSelected)
    def chosen(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self.found[event.cursor_row] if self.found else None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class PackagesScreen(ModalScreen["PackageRow | None"]):
    """The packages after the top layer (and those a later layer removed): Enter chooses one,
    / filters by a regular expression on "ecosystem name version"."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss_none", "Close"),
        Binding("slash", "filter", "Filter", key_display="/"),
    ]

    def __init__(self, report: Any, pattern: re.Pattern[str] | None = None) -> None:
        from inspect_tool.explore.inventory import package_rows

        super().__init__()
        self.report = report
        self.rows = package_rows(report)
        self.pattern = pattern
        self.shown: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Static(id="packages-title")
        table: DataTable[Text] = DataTable(id="packages-table", cursor_type="row")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#packages-table", DataTable)
        table.add_columns("layer", "type", "name", "version", "changes")
        self._fill()
        table.focus()

    def _fill(self) -> None:
        from inspect_tool.explore.inventory import filter_packages

        self.shown = filter_packages(self.rows, self.pattern)
        table = self.query_one("#packages-table", DataTable)
        table.clear()
        for row in self.shown:
            changes = Text(visible(row.changes()), style="yellow" if row.item.altered else "")
            if row.removed:
                changes = Text("removed: " + visible(row.changes()), style=STYLES[Kind.REMOVED])
            table.add_row(
                Text(str(row.layer)),
                Text(row.ecosystem),
                Text(visible(row.name)),
                Text(visible(row.version)),
                changes,
            )
        report = self.report
        title = Text(f"{len(report.packages)} packages after layer {report.upto}", style="bold")
        if report.removed:
            title.append(f", {len(report.removed)} removed", style="bold")
        if self.pattern is not None:
            title.append(f" · filter: {visible(self.pattern.pattern)} ({len(self.shown)})")
        if report.problems:
            title.append(f" · {len(report.problems)} problems (dockscope packages)", style="yellow")
        title.append(" · Enter: its files in the tree", style="dim")
        self.query_one("#packages-title", Static).update(title)

    def action_filter(self) -> None:
        current = self.pattern.pattern if self.pattern else ""

        def chosen(value: str | None) -> None:
            if value is None:
                return
            try:
                self.pattern = compile_pattern(value)
            except ValueError as exc:
                self.notify(visible(str(exc)), markup=False, severity="error")
                return
            self._fill()

        self.app.push_screen(
            PromptScreen("Filter packages (a regular expression on type, name, version):", current),
            chosen,
        )

    @on(DataTable.RowSelected)
    def chosen(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.shown):
            self.dismiss(self.shown[event.cursor_row])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class SecretsScreen(ModalScreen["SecretFinding | None"]):
    """Secrets found in every layer's files and in the config, redacted unless shown."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss_none", "Close")]

    def __init__(self, report: Any, *, show: bool) -> None:
        from inspect_tool.explore.inventory import secret_rows

        super().__init__()
        self.report = report
        self.show = show
        self.rows = secret_rows(report, show=show)

    def compose(self) -> ComposeResult:
        report = self.report
        hidden = sum(f.fate != "visible" for f in report.findings)
        title = Text(f"secrets: {len(report.findings)}", style="bold")
        if hidden:
            title.append(f" ({hidden} deleted/overwritten)", style="bold yellow")
        title.append(f" · {report.files_scanned} files")
        title.append(" · whole" if self.show else " · redacted", style="red" if self.show else "")
        title.append(" · Enter: view the file", style="dim")
        yield Static(title, id="secrets-title")
        table: DataTable[Text] = DataTable(id="secrets-table", cursor_type="row")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#secrets-table", DataTable)
        table.add_columns("layer", "rule", "fate", "where", "excerpt")
        for row in self.rows:
            f = row.finding
            layer = "config" if f.layer is None else str(f.layer)
            fate = Text(row.fate, style="" if f.fate == "visible" else "yellow")
            table.add_row(
                Text(layer),
                Text(visible(f.rule), style="red"),
                fate,
                Text(visible(row.where)),
                Text(visible(row.shown)),
            )
        if not self.rows:
            table.add_row(Text(""), Text("none found"), Text(""), Text(""), Text(""))
        table.focus()

    @on(DataTable.RowSelected)
    def chosen(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            self.dismiss(self.rows[event.cursor_row].finding)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class Pane(VerticalScroll):
    """A scrolling panel Tab passes by (Tab goes between the layers and the files, as in
    dive); a key focuses it, and it scrolls with the arrows until focus leaves it."""

    can_focus = False

    def visit(self) -> None:
        self.can_focus = True
        self.focus()

    def on_blur(self) -> None:
        self.can_focus = False


CSS = """
#left { width: 3fr; min-width: 28; }
#right { width: 5fr; }
#layers { height: 2fr; min-height: 5; border: round $secondary; overflow-x: hidden; }
#details-scroll { height: 1fr; border: round $secondary; padding: 0 1; }
#efficiency-scroll { height: 1fr; border: round $secondary; padding: 0 1; }
#status { height: 1; background: $boost; }
#files { height: 1fr; border: round $secondary; }
#layers:focus, #files:focus, #details-scroll:focus, #efficiency-scroll:focus {
    border: round $accent;
}
#compare { height: 1fr; border: round $secondary; padding: 0 1; }
#help { width: 84; max-width: 100%; height: 90%; border: round $accent; background: $panel; }
#prompt { width: 70; max-width: 100%; height: auto; border: round $accent; background: $panel;
          padding: 0 1; }
HelpScreen, PromptScreen { align: center middle; }
#content-title, #found-title, #packages-title, #secrets-title { height: 1; background: $boost; }
#content-log, #found-table, #packages-table, #secrets-table { height: 1fr; }
"""


class ExploreApp(App[None]):
    """One image (``first``), or two compared (``second``: the tree shows the differences)."""

    TITLE = "dockscope explore"
    CSS = CSS
    ENABLE_COMMAND_PALETTE = False  # its footer entry and key would be one more to learn
    # the footer shows these in this order, as many as 80 columns hold; ? lists them all
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("a", "toggle_aggregated", "Aggr/layer"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "toggle_sort", "Sort"),
        Binding("f", "find", "Find"),
        Binding("p", "packages", "Packages"),
        Binding("S", "secrets", "Secrets"),
        Binding("q", "quit", "Quit"),
        Binding("t", "touched", "Touched", show=False),
        Binding("x", "extract", "Extract", show=False),
        Binding("c", "collapse_all", "Collapse", show=False),
        Binding("b", "toggle_attributes", "Attributes", show=False),
        Binding("v", "view", "View", show=False),
        Binding("d", "visit('#details-scroll')", "Details", show=False),
        Binding("i", "visit('#efficiency-scroll')", "Image", show=False),
        Binding("1", "hide('added')", "Hide added", show=False),
        Binding("2", "hide('removed')", "Hide removed", show=False),
        Binding("3", "hide('modified')", "Hide modified", show=False),
        Binding("4", "hide('unchanged')", "Hide unchanged", show=False),
    ]

    def __init__(
        self,
        first: Opened,
        second: Opened | None = None,
        *,
        extract_to: Path | None = None,
        show_secrets: bool = False,
    ) -> None:
        super().__init__()
        self.show_secrets = show_secrets  # the secrets screen shows them whole
        self.first = first
        self.second = second
        self.extract_to = extract_to or Path.cwd()
        self.tree_model: FileTree | None = None
        self.options = ViewOptions(layer=1 if second else 0, aggregated=second is None)
        self.efficiency: EfficiencyReport | None = None
        self.efficiency_error: str | None = None
        self.tree_error: str | None = None
        self.expanded: set[str] = set()
        self._lock = threading.Lock()  # one reader of the sources at a time
        self._populated: set[int] = set()
        # "more" lines of long directories: (the directory, its rows, the next to show)
        self._more: dict[int, tuple[TreeNode[Row], list[Row], int]] = {}
        self.message = ""
        self.attributes = True  # mode, owner and size in the tree (b hides them)
        self.painted_at: float | None = None
        self._sizes: SizeCache | None = None
        self.bytes_read = 0  # of the layer blobs, while the tree is built
        self._progress: Timer | None = None  # redraws the status line while reading
        # packages and secrets: each scanned on demand (p, S), once, in a pass of its own
        self.packages: PackagesReport | None = None
        self.secrets: SecretsReport | None = None
        self.scanning: dict[str, int] = {}  # what is being scanned → bytes read so far
        self._scan_progress: Timer | None = None

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="left"):
                if self.second is None:
                    table: DataTable[Text] = DataTable(id="layers", cursor_type="row")
                    table.border_title = "Layers"
                    yield table
                    details = Pane(Static(id="details"), id="details-scroll")
                    details.border_title = "Layer details (d)"
                    yield details
                    scroll = Pane(Static(id="efficiency"), id="efficiency-scroll")
                    scroll.border_title = "Image (i)"
                    yield scroll
                else:
                    compare = VerticalScroll(Static(id="compare-text"), id="compare")
                    compare.border_title = "Compared"
                    yield compare
            with Vertical(id="right"):
                yield Static(id="status")
                tree: Tree[Row] = Tree("/", id="files")
                tree.show_root = False
                tree.auto_expand = False
                tree.guide_depth = 2
                tree.border_title = "Files"
                yield tree
        yield Footer()

    def on_mount(self) -> None:
        image = self.first.image
        if self.second is None:
            table = self.query_one("#layers", DataTable)
            table.add_column("#", key="index")
            table.add_column("size", key="size", width=8)
            table.add_column("command", key="command")
            for layer in image.layers:
                table.add_row(
                    Text(str(layer.index)),
                    Text("…"),
                    Text(visible(short_created_by(layer.created_by))),
                    key=str(layer.index),
                )
            self._show_details()
            self._show_efficiency()
            table.focus()
        else:
            self._show_compare(None)
            self.query_one("#files", Tree).focus()
        self._show_status()
        # the layers are read once the screen is painted: the reading thread holds the GIL
        # most of the time, and would slow the first paint down
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        self.painted_at = time.perf_counter()  # the benchmark's "first paint"
        self.load()
        self._progress = self.set_interval(0.5, self._show_status)

    # -- background work -----------------------------------------------------------------------
    def _locked(self, function: Callable[[], T]) -> T:
        with self._lock:
            return function()

    @work(thread=True, exclusive=True, group="load")
    def load(self) -> None:
        """The tree and the efficiency figures, in one pass over the layers."""
        if self.second is not None:
            self._load_compare()
            return
        from textual.worker import get_current_worker

        from inspect_tool.analyze.efficiency import EfficiencyCalculator
        from inspect_tool.explore.model import BuildCancelled, build_tree

        source, image = self.first.source, self.first.image
        calculator = EfficiencyCalculator()  # `dockscope efficiency`'s, fed in the same pass
        worker = get_current_worker()

        def read(count: int) -> None:  # called from the decompressing thread: a plain sum
            self.bytes_read += count

        try:
            tree = self._locked(
                lambda: build_tree(
                    source,
                    image,
                    calculator=calculator,
                    progress=read,
                    cancelled=lambda: worker.is_cancelled,
                )
            )
        except BuildCancelled:
            return  # the explorer is closing
        except DockscopeError as exc:
            self.efficiency_error = str(exc)
            self.call_from_thread(self._tree_failed, str(exc))
            self.call_from_thread(self._show_efficiency)
            return
        self.call_from_thread(self._tree_ready, tree)
        self.call_from_thread(self._efficiency_ready, calculator.report())

    def _load_compare(self) -> None:
        from inspect_tool.analyze.diff import diff_images
        from inspect_tool.explore.model import compare_tree

        assert self.second is not None
        a, b = self.first, self.second
        try:
            result = self._locked(lambda: diff_images(a.source, a.image, b.source, b.image))
        except DockscopeError as exc:
            self.call_from_thread(self._tree_failed, str(exc))
            return
        self.call_from_thread(self._show_compare, result)
        self.call_from_thread(self._tree_ready, compare_tree(result))

    def _tree_failed(self, message: str) -> None:
        self.tree_error = message
        self._stop_progress()
        self._show_status()

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _tree_ready(self, tree: FileTree) -> None:
        self.tree_model = tree
        self._stop_progress()
        self.refresh_tree()

    def _efficiency_ready(self, report: EfficiencyReport) -> None:
        self.efficiency = report
        self._show_efficiency()
        table = self.query_one("#layers", DataTable)
        for index, size in enumerate(report.layer_sizes):
            table.update_cell(str(index), "size", Text(human_size(size)))

    # -- panes ---------------------------------------------------------------------------------
    def _show_details(self) -> None:
        self.query_one("#details", Static).update(
            layer_details(self.first.image, self.options.layer)
        )

    def _show_efficiency(self) -> None:
        self.query_one("#efficiency", Static).update(
            image_panel(self.first.image, self.efficiency, self.efficiency_error)
        )

    def _show_compare(self, result: Any) -> None:
        assert self.second is not None
        text = Text()
        for label, opened in (("A", self.first), ("B", self.second)):
            text.append(f"{label}: ", style="bold cyan")
            text.append(visible(opened.image.display_name) + f" ({len(opened.image.layers)} ")
            text.append("layers)\n")
        if result is None:
            text.append("comparing…", style="dim")
        else:
            counts = {k: sum(f.change == k for f in result.files) for k in ("added", "removed")}
            modified = sum(f.change == "modified" for f in result.files)
            text.append(f"shared layers: {result.shared_layers}\n")
            text.append(f"+ {counts['added']} only in B\n", style=STYLES[Kind.ADDED])
            text.append(f"- {counts['removed']} only in A\n", style=STYLES[Kind.REMOVED])
            text.append(f"~ {modified} modified\n", style=STYLES[Kind.MODIFIED])
            if result.config:
                text.append("config:\n", style="bold")
                for value in result.config:
                    text.append("  " + visible(value.key) + "\n")
            text.rstrip()
        self.query_one("#compare-text", Static).update(text)

    def _show_status(self) -> None:
        options = self.options
        if self.second is not None:
            view = "differences A → B"
        elif options.aggregated:
            view = f"after layer {options.layer}"
        else:
            view = f"layer {options.layer} only"
        parts = [view, f"sort: {options.sort.value}"]
        if options.hidden:
            parts.append("hidden: " + ",".join(sorted(k.value for k in options.hidden)))
        if options.pattern is not None:
            parts.append("filter: " + visible(options.pattern.pattern))
        if options.only is not None:
            parts.append(options.only_label)
        for what, done in self.scanning.items():
            parts.append(self._scan_status(what, done))
        if self.tree_error is not None:
            parts = ["error: " + visible(self.tree_error)]
        elif self.tree_model is None:
            parts.append(self._reading())
        if self.message:
            parts.append(self.message)
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    def _reading(self) -> str:
        images = [self.first.image] if self.second is None else []
        total = sum(layer.size or 0 for image in images for layer in image.layers)
        if not total:
            return "reading layers…"
        share = min(self.bytes_read / total, 1.0)
        return f"reading layers… {share:.0%} of {human_size(total)}"

    def _scan_status(self, what: str, done: int) -> str:
        total = sum(layer.size or 0 for layer in self.first.image.layers)
        if self.tree_model is None and done == 0:
            return f"{what}: after the layer pass…"
        if not total:
            return f"{what}: reading layers…"
        return f"{what}: reading layers… {min(done / total, 1.0):.0%}"

    def notice(self, message: str) -> None:
        """A one-line message in the status bar (already escaped)."""
        self.message = message
        self._show_status()

    # -- the tree ------------------------------------------------------------------------------
    def refresh_tree(self) -> None:
        """Rebuild the tree pane for the current options; expanded directories stay open."""
        tree = self.query_one("#files", Tree)
        cursor = tree.cursor_node.data.path if tree.cursor_node and tree.cursor_node.data else None
        tree.clear()
        self._populated.clear()
        self._more.clear()
        self._sizes = SizeCache(self.tree_model, self.options) if self.tree_model else None
        self._show_status()
        if self.tree_model is None:
            return
        self._populate(tree.root, self.tree_model.root)
        if (cursor is None or not self.reveal(cursor, quiet=True)) and tree.last_line >= 0:
            tree.move_cursor_to_line(0)  # clear() left no cursor: Space would do nothing

    def _populate(self, parent: TreeNode[Row], node: Node) -> None:
        assert self.tree_model is not None
        self._populated.add(id(parent))
        sizes = self._sizes if self.options.sort is SortOrder.SIZE else None
        self._add_rows(parent, self.tree_model.children(node, self.options, sizes=sizes), 0)

    def _add_rows(self, parent: TreeNode[Row], rows: list[Row], start: int) -> None:
        """Rows ``start`` to ``start + CHUNK`` under ``parent``, then a "more" line for the
        rest: a directory of 100,000 entries opens as fast as one of a thousand."""
        for row in rows[start : start + CHUNK]:
            expandable = row.is_dir and bool(row.node.children)
            label = row_label(row, attributes=self.attributes)
            if not expandable:  # where an expandable row has its arrow: keeps columns aligned
                label = Text("  ") + label
            child = parent.add(label, data=row, allow_expand=expandable)
            if row.is_dir and row.path in self.expanded:
                self._populate(child, row.node)
                child.expand()
        rest = len(rows) - start - CHUNK
        if rest > 0:
            label = Text(
                f"  … {rest} more: Enter shows {min(rest, CHUNK)} more (/ filters)", style="dim"
            )
            more = parent.add_leaf(label)
            self._more[id(more)] = (parent, rows, start + CHUNK)

    def _show_more(self, more: TreeNode[Row]) -> TreeNode[Row] | None:
        """Replace a "more" line by the rows it stands for; the first of them, or None."""
        pending = self._more.pop(id(more), None)
        if pending is None:
            return None
        parent, rows, start = pending
        count = len(parent.children)
        more.remove()
        self._add_rows(parent, rows, start)
        return parent.children[count - 1] if len(parent.children) >= count else None

    @on(Tree.NodeExpanded, "#files")
    def expanded_node(self, event: Tree.NodeExpanded[Row]) -> None:
        node = event.node
        if node.data is None:
            return
        self.expanded.add(node.data.path)
        if id(node) not in self._populated:
            self._populate(node, node.data.node)

    @on(Tree.NodeCollapsed, "#files")
    def collapsed_node(self, event: Tree.NodeCollapsed[Row]) -> None:
        if event.node.data is not None:
            self.expanded.discard(event.node.data.path)

    @on(Tree.NodeSelected, "#files")
    def selected_node(self, event: Tree.NodeSelected[Row]) -> None:
        if event.node.data is None:
            first = self._show_more(event.node)
            if first is not None:
                tree = self.query_one("#files", Tree)
                _ = tree.last_line
                tree.move_cursor(first)
            return
        self.action_view()

    def reveal(self, path: str, *, quiet: bool = False) -> bool:
        """Expand the directories above ``path`` and put the cursor on it."""
        tree = self.query_one("#files", Tree)
        current = tree.root
        parts = [p for p in path.split("/") if p]
        for depth, part in enumerate(parts):
            match = self._child_named(current, part)
            if match is None:
                if not quiet:
                    self.notice(f"{visible(path)} is not shown in this view")
                return False
            current = match
            if depth < len(parts) - 1:
                current.expand()
                if current.data is not None:
                    self.expanded.add(current.data.path)
                if id(current) not in self._populated and current.data is not None:
                    self._populate(current, current.data.node)
        _ = tree.last_line  # lays the lines out now: a node's line is known only then
        tree.move_cursor(current)
        return True

    def _child_named(self, parent: TreeNode[Row], name: str) -> TreeNode[Row] | None:
        """The child row called ``name``, showing more of a long directory until it is."""
        while True:
            for child in parent.children:
                if child.data is not None and child.data.node.name == name:
                    return child
            more = next((c for c in parent.children if id(c) in self._more), None)
            if more is None:
                return None
            self._show_more(more)

    def current_row(self) -> Row | None:
        tree = self.query_one("#files", Tree)
        node = tree.cursor_node
        return node.data if node is not None else None

    # -- events and actions --------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#layers")
    def layer_highlighted(self, event: DataTable.RowHighlighted) -> None:
        layer = event.cursor_row
        if layer == self.options.layer or not 0 <= layer < len(self.first.image.layers):
            return
        self.options.layer = layer
        self._show_details()
        self.refresh_tree()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_visit(self, selector: str) -> None:
        with contextlib.suppress(Exception):  # comparing two images: no such pane
            self.query_one(selector, Pane).visit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Two images compared: no layers to switch or search (those keys leave the footer)."""
        return self.second is None or action not in (
            "toggle_aggregated",
            "find",
            "touched",
            "packages",
            "secrets",
        )

    def action_toggle_aggregated(self) -> None:
        if self.second is not None:
            return
        self.options.aggregated = not self.options.aggregated
        self.refresh_tree()

    def action_toggle_sort(self) -> None:
        self.options.sort = (
            SortOrder.SIZE if self.options.sort is SortOrder.NAME else SortOrder.NAME
        )
        self.refresh_tree()

    def action_toggle_attributes(self) -> None:
        self.attributes = not self.attributes
        self.refresh_tree()

    def action_hide(self, kind: str) -> None:
        self.options.hidden ^= {Kind(kind)}
        self.refresh_tree()

    def action_collapse_all(self) -> None:
        self.expanded.clear()
        tree = self.query_one("#files", Tree)
        for child in tree.root.children:
            child.collapse_all()

    def action_filter(self) -> None:
        current = self.options.pattern.pattern if self.options.pattern else ""

        def chosen(value: str | None) -> None:
            if value is None:
                return
            try:
                self.options.pattern = compile_pattern(value)
            except ValueError as exc:
                self.notice(visible(str(exc)))
                return
            if not value:  # an empty filter shows everything: a package's files too
                self.options.only, self.options.only_label = None, ""
            self.message = ""
            self.refresh_tree()

        self.push_screen(PromptScreen("Filter paths (a regular expression):", current), chosen)

    def _read_target(self, row: Row) -> tuple[Opened, int]:
        """The image and the layer to read a row's entry from (a removed entry: the layer
        below, where it still stands)."""
        if self.second is not None:
            opened = self.first if row.kind is Kind.REMOVED else self.second
            return opened, len(opened.image.layers) - 1
        layer = self.options.layer - 1 if row.kind is Kind.REMOVED else self.options.layer
        return self.first, layer

    def action_view(self) -> None:
        row = self.current_row()
        if row is None:
            return
        if row.info.type is not EntryType.FILE and row.info.type is not EntryType.HARDLINK:
            if row.info.type is EntryType.SYMLINK:
                self.notice(f"symlink to {visible(row.info.linkname)}")
            elif not row.is_dir:
                self.notice(f"{visible(row.path)} is a {row.info.type.value}: no content")
            return
        opened, layer = self._read_target(row)
        self.notice("reading…")
        self._view(opened, row.path, layer, row.info.size)

    @work(thread=True, exclusive=True, group="read")
    def _view(self, opened: Opened, path: str, layer: int, size: int) -> None:
        from inspect_tool.explore.content import read_content

        try:
            content = self._locked(
                lambda: read_content(opened.source, opened.image, path, layer, size=size)
            )
        except DockscopeError as exc:
            self.call_from_thread(self.notice, visible(str(exc)))
            return
        title = f"{visible(path)} after layer {layer} ({human_size(max(content.size, 0))})"
        if not self.show_secrets:
            from inspect_tool.explore.inventory import redacted

            content, count = redacted(content, self.secrets)
            if count:
                title += f" · {count} secrets redacted (--show-secrets shows them)"
        self.call_from_thread(self._content_ready, title, content)

    def _content_ready(self, title: str, content: Any) -> None:
        self.notice("")
        self.push_screen(ContentScreen(title, content))

    def action_find(self) -> None:
        if self.second is not None:
            return

        def chosen(value: str | None) -> None:
            if value:
                self.notice("finding…")
                self._find(value, f"find {visible(value)}")

        self.push_screen(PromptScreen("Find names in every layer (a shell pattern):"), chosen)

    def action_touched(self) -> None:
        row = self.current_row()
        if row is None or self.second is not None:
            return
        pattern = exact_pattern(row.path)
        self.notice("finding…")
        self._find(pattern, f"layers that touched {visible(row.path)}")

    @work(thread=True, exclusive=True, group="read")
    def _find(self, pattern: str, title: str) -> None:
        from inspect_tool.analyze.filesystem import find

        source, image = self.first.source, self.first.image
        try:
            found = self._locked(lambda: find(source, image, pattern))
        except DockscopeError as exc:
            self.call_from_thread(self.notice, visible(str(exc)))
            return
        rows = [
            Found(o.info.path, o.info.layer, o.fate, o.by_layer, o.info.type.value) for o in found
        ]
        self.call_from_thread(self._found_ready, f"{title}: {len(rows)} found", rows)

    def _found_ready(self, title: str, rows: list[Found]) -> None:
        self.notice("")

        def jump(item: Found | None) -> None:
            if item is None:
                return
            # a deleted or replaced version: the layer that put it there still shows it
            self.options.layer = item.layer
            with contextlib.suppress(Exception):
                self.query_one("#layers", DataTable).move_cursor(row=item.layer)
            self._show_details()
            self.refresh_tree()
            self.reveal(item.path)
            self.query_one("#files", Tree).focus()

        self.push_screen(FoundScreen(title, rows), jump)

    # -- packages and secrets ------------------------------------------------------------------
    def action_packages(self) -> None:
        if self.second is not None:
            return
        if self.packages is not None:
            self._show_packages()
        elif "packages" not in self.scanning:
            self._start_scan("packages")
            self._scan_packages()

    def action_secrets(self) -> None:
        if self.second is not None:
            return
        if self.secrets is not None:
            self._show_secrets()
        elif "secrets" not in self.scanning:
            self._start_scan("secrets")
            self._scan_secrets()

    def _start_scan(self, what: str) -> None:
        self.scanning[what] = 0
        if self._scan_progress is None:
            self._scan_progress = self.set_interval(0.5, self._show_status)
        self._show_status()

    def _scan_done(self, what: str, error: str | None = None) -> None:
        self.scanning.pop(what, None)
        if not self.scanning and self._scan_progress is not None:
            self._scan_progress.stop()
            self._scan_progress = None
        if error is not None:
            self.notice(visible(error))
        else:
            self._show_status()

    def _counter(self, what: str) -> Callable[[int], None]:
        """The scan's progress callback: counts the bytes read and, once the explorer is
        closing (the worker cancelled), stops the scan (the exception reaches the scan from
        the decompressing thread, as a read error would)."""
        from textual.worker import get_current_worker

        worker = get_current_worker()

        def read(count: int) -> None:  # from the decompressing thread: a plain sum
            if worker.is_cancelled:
                raise ScanCancelled
            self.scanning[what] = self.scanning.get(what, 0) + count

        return read

    @work(thread=True, exclusive=True, group="packages")
    def _scan_packages(self) -> None:
        """``dockscope packages``' scan: a pass of its own (after the tree's: one reader of
        the source at a time)."""
        from inspect_tool.analyze.packages.scan import scan_packages

        source, image = self.first.source, self.first.image
        read = self._counter("packages")
        try:
            report = self._locked(lambda: scan_packages(source, image, progress=read))
        except ScanCancelled:
            return  # the explorer is closing
        except DockscopeError as exc:
            self.call_from_thread(self._scan_done, "packages", f"packages: {exc}")
            return
        self.call_from_thread(self._packages_ready, report)

    @work(thread=True, exclusive=True, group="secrets")
    def _scan_secrets(self) -> None:
        """``dockscope secrets``' scan: every version of every file, in a pass of its own."""
        from inspect_tool.analyze.secrets import scan_secrets

        source, image = self.first.source, self.first.image
        read = self._counter("secrets")
        try:
            report = self._locked(lambda: scan_secrets(source, image, progress=read))
        except ScanCancelled:
            return  # the explorer is closing
        except DockscopeError as exc:
            self.call_from_thread(self._scan_done, "secrets", f"secrets: {exc}")
            return
        self.call_from_thread(self._secrets_ready, report)

    def _packages_ready(self, report: PackagesReport) -> None:
        self.packages = report
        self._scan_done("packages")
        if self.screen is self.screen_stack[0]:  # not over a screen opened meanwhile
            self._show_packages()
        else:
            self.notice("packages read: p shows them")

    def _secrets_ready(self, report: SecretsReport) -> None:
        self.secrets = report
        self._scan_done("secrets")
        if self.screen is self.screen_stack[0]:
            self._show_secrets()
        else:
            self.notice("secrets read: S shows them")

    def _show_packages(self) -> None:
        assert self.packages is not None
        self.push_screen(PackagesScreen(self.packages), self._package_chosen)

    def _show_secrets(self) -> None:
        assert self.secrets is not None
        self.push_screen(SecretsScreen(self.secrets, show=self.show_secrets), self._secret_chosen)

    def _go_to_layer(self, layer: int) -> None:
        self.options.layer = layer
        with contextlib.suppress(Exception):
            self.query_one("#layers", DataTable).move_cursor(row=layer)
        self._show_details()

    def _package_chosen(self, row: PackageRow | None) -> None:
        """The tree after the layer that installed the package, showing only its files (or,
        where its database lists none, the database that records it)."""
        if row is None:
            return
        package = row.item.package
        files = set(package.files) or {package.database}
        self._go_to_layer(row.layer)
        self.options.aggregated = True
        self.options.only = frozenset(files)
        self.options.only_label = (
            f"files of {visible(package.name)} {visible(package.version)} (/ then Enter: all)"
        )
        if len(files) <= OPEN_FILES:  # its directories open: the files in sight
            for path in files:
                parent = path.rstrip("/").rpartition("/")[0]
                while parent:
                    self.expanded.add(parent)
                    parent = parent.rpartition("/")[0]
        self.refresh_tree()
        deepest = sorted(files, key=lambda p: (-p.count("/"), p))
        if not any(self.reveal(path, quiet=True) for path in deepest[:OPEN_FILES]):
            self.notice(f"{visible(package.name)}: none of its files is in this view")
        self.query_one("#files", Tree).focus()

    def _secret_chosen(self, finding: SecretFinding | None) -> None:
        """The layer that holds the file's version with the secret, the file selected in the
        tree and its content shown (the secrets in it redacted unless --show-secrets)."""
        if finding is None:
            return
        if finding.layer is None:
            self.notice(f"{visible(finding.path)} is in the image config (dockscope inspect)")
            return
        self._go_to_layer(finding.layer)
        self.options.aggregated = True
        self.refresh_tree()
        self.reveal(finding.path, quiet=True)
        self.query_one("#files", Tree).focus()
        size = -1
        node = self.tree_model.node(finding.path) if self.tree_model is not None else None
        found = node.at(finding.layer) if node is not None else None
        if found is not None and found[1] is not None:
            size = found[1].size
        self.notice("reading…")
        self._view(self.first, finding.path, finding.layer, size)

    def action_extract(self) -> None:
        row = self.current_row()
        if row is None:
            return
        opened, layer = self._read_target(row)
        # the proposed name is typed into an input line: only plain characters of the name
        name = re.sub(r"[^A-Za-z0-9._-]", "_", row.node.name)[:64].lstrip(".") or "entry"
        default = str(self.extract_to / f"{name}-layer{layer}")

        def chosen(value: str | None) -> None:
            if value:
                self.notice("extracting…")
                self._extract(opened, row.path, layer, Path(value))

        self.push_screen(
            PromptScreen(f"Extract {visible(row.path)} (after layer {layer}) into:", default),
            chosen,
        )

    @work(thread=True, exclusive=True, group="read")
    def _extract(self, opened: Opened, path: str, layer: int, destination: Path) -> None:
        from inspect_tool.explore.extract import extract_path

        try:
            result = self._locked(
                lambda: extract_path(opened.source, opened.image, path, layer, destination)
            )
        except DockscopeError as exc:
            self.call_from_thread(self.notice, visible(str(exc)))
            return
        written = result.written
        message = (
            f"extracted {visible(path)} into {visible(str(destination))}: {written.files} files, "
            f"{written.directories} directories, {written.symlinks} symlinks"
        )
        if result.audit:
            message += f"; {len(result.audit)} entries refused (dockscope unpack --json lists why)"
        self.call_from_thread(self.notice, message)


class TraceApp(App[None]):
    """A runtime ``--trace-json`` file as a timeline of steps."""

    TITLE = "dockscope explore --trace"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #steps { height: 1fr; border: round $secondary; }
    #step-details { height: 1fr; border: round $secondary; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, label: str, steps: list[Step]) -> None:
        super().__init__()
        self.label = label
        self.steps = steps

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="steps", cursor_type="row")
        table.border_title = Text(visible(self.label))  # a str would be read as markup
        yield table
        details = VerticalScroll(Static(id="step-text"), id="step-details")
        details.border_title = "Step"
        yield details
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#steps", DataTable)
        table.add_columns("#", "+s", "pid", "step", "result")
        start = self.steps[0].time
        for number, step in enumerate(self.steps, 1):
            style = "" if step.ok else "red"
            table.add_row(
                Text(str(number)),
                Text(f"{step.time - start:.3f}"),
                Text("-" if step.pid is None else str(step.pid)),
                Text(visible(step.title) + ("" if step.phase == "done" else f" ({step.phase})")),
                Text(visible(step.result), style=style),
            )
        self._show(0)
        table.focus()

    @on(DataTable.RowHighlighted, "#steps")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    def _show(self, index: int) -> None:
        if not 0 <= index < len(self.steps):
            return
        text = Text()
        for label, value in self.steps[index].details():
            text.append(f"{visible(label)}: ", style="bold cyan")
            text.append(visible(value) + "\n")
        text.rstrip()
        self.query_one("#step-text", Static).update(text)

    def action_help(self) -> None:
        self.notify("↑ ↓ move between steps; q quits", markup=False)
