"""Attacker text never reaches the terminal raw (docs/TERMINAL.md): the sanitiser's table; every
human command run on an image whose tag, ref, labels, env, user, created_by, file names and
symlink targets carry escape sequences, bidi controls and rich markup; engine storage with a
hostile container name and file; the runtime's narration; and the same on a real pty."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_tool.render.text import markup, safe_console, visible, visible_lines
from tests.support.cli import DOCKSCOPE, Result, dockscope, invoke
from tests.support.images import config_bytes, oci_layout, sha256, write_image, write_tar
from tests.support.runtime import PtySession, checked_root
from tests.support.tar_entries import build_layer, dir_entry, file_entry, symlink_entry

# an OSC title, a screen clear, an OSC 8 link, the 8-bit CSI, a bidi override and isolate,
# DEL, rich markup and a backslash
EVIL = (
    "\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil.example/\x1b\\link\x9b31m\u202eevil\u2066"
    "\x7f[bold red]r[/]\\"
)
# a file name (no slash): a line feed and a tab too, and a [link=…] tag
NAME = "n\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eame\n\t[link=evil]x\\"
TARGET = "\x1b]0;t\x07\u202e/target"
TAG = "evil\x1b]0;tag\x07\u202e:latest"
REF = "ref\x1b[2J\u2067\x9b"
CREATED = "[blink]\x1b[5m"  # a history entry's time

UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def raw_controls(text: str) -> set[str]:
    """What no human output may hold: control, format and separator characters (an
    oracle independent of render/text.py), but the line feeds between lines."""
    return {c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE_CATEGORIES}


# -- (1) the sanitiser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain/path.txt", "plain/path.txt"),
        ("é ü 日本 ☃ 👍", "é ü 日本 ☃ 👍"),  # printable non-ASCII stays
        ("a\\b", "a\\\\b"),  # the backslash itself: the form stays unambiguous
        ("\\x1b", "\\\\x1b"),  # a name that spells an escape is not confused with one
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x00\x01\x07\x08\x0b\x0c\x1f", "\\x00\\x01\\x07\\x08\\x0b\\x0c\\x1f"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC title
        ("\x1b[2J", "\\x1b[2J"),  # screen clear
        (
            "\x1b]8;;http://e/\x1b\\x\x1b]8;;\x1b\\",
            "\\x1b]8;;http://e/\\x1b\\\\x\\x1b]8;;\\x1b\\\\",
        ),
        ("\x7f", "\\x7f"),  # DEL
        ("\x80\x85\x9b\x9f", "\\x80\\x85\\x9b\\x9f"),  # C1, the 8-bit CSI among them
        ("\xa0\xad", "\xa0\\xad"),  # no-break space shown, soft hyphen (Cf) escaped
        ("\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # marks
        ("\u200b\ufeff\u2028\u2029", "\\u200b\\ufeff\\u2028\\u2029"),
        ("\u200c\u200d", "\u200c\u200d"),  # the joiners scripts and emoji need
        ("\U000e0001\U000e0041", "\\U000e0001\\U000e0041"),  # tags, above the BMP
        ("\udcff\udc80", "\\udcff\\udc80"),  # bytes that were not UTF-8
        ("[bold red]x[/]", "[bold red]x[/]"),  # markup is markup()'s business
    ],
)
def test_visible_escapes_as_a_python_literal_does(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert not raw_controls(visible(text)) - {"\u200c", "\u200d"}


def test_every_escape_is_the_one_repr_writes() -> None:
    for char in ["\\", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\x9b", "\u202e", "\U000e0001"]:
        assert visible(char) == repr(char)[1:-1] or (char == "\\" and visible(char) == "\\\\")


def test_the_escaped_set_is_unicodes_control_format_and_separator_characters() -> None:
    """Every code point of categories Cc, Cf, Cs, Zl, Zp (the joiners aside) is escaped, and
    nothing else is (the backslash aside)."""
    if unicodedata.unidata_version != "14.0.0":
        pytest.skip("the list in render/text.py is Unicode 14's (Python 3.11)")
    wrong = []
    for code in range(0x110000):
        char = chr(code)
        unsafe = unicodedata.category(char) in UNSAFE_CATEGORIES and code not in (0x200C, 0x200D)
        escaped = visible(char) != char
        if escaped != (unsafe or char == "\\"):
            wrong.append(hex(code))
    assert not wrong


def test_visible_lines_keeps_line_feeds_and_escapes_each_line() -> None:
    assert visible_lines("RUN a\\\nb\x1b[2J\n") == "RUN a\\\\\nb\\x1b[2J\n"


def test_markup_prints_literally_in_rich() -> None:
    import io

    out = io.StringIO()
    console = safe_console(
        file=out, force_terminal=True, color_system="truecolor", width=200, highlight=False
    )
    console.print(f"[dim]{markup('[bold red]x[/] [link=https://evil.example]y[/link]')}[/]")
    written = out.getvalue()
    assert "[bold red]x[/] [link=https://evil.example]y[/link]" in written
    assert "\x1b]8;" not in written  # no hyperlink was made


def test_a_trailing_backslash_survives_a_title(tmp_path: Path) -> None:
    """rich halves the backslashes just before a tag: a tag ending in one keeps it escaped."""
    image = write_image(tmp_path / "slash.tar", [build_layer([file_entry("x")])], tag="t:1\\")
    code, out, _ = human("inspect", image)
    assert code == 0
    assert "─ t:1\\\\ ─" in out  # the panel's title: the backslash shown as \\


def test_safe_console_escapes_what_a_call_site_forgot() -> None:
    import io

    from rich.table import Table
    from rich.text import Text

    out = io.StringIO()
    console = safe_console(file=out, force_terminal=True, color_system="standard", width=200)
    console.print(Text("a\x1b]0;x\x07b\x1b[2J\u202ec", style="bold"))
    table = Table()
    table.add_column("name")
    table.add_row(Text("q\x9b31m"))
    console.print(table)
    written = out.getvalue()
    # rich's own styling is kept (bold, then reset) ...
    assert "\x1b[1m" in written and "\x1b[0m" in written
    # ... and nothing of the text is obeyed
    assert "\x1b]0;" not in written and "\x1b[2J" not in written and "\x9b" not in written
    assert "\u202e" not in written
    assert "\\x1b]0;x" in written and "\\u202ec" in written
    # the net escapes after rich measured the cell, so the escaped text may be cut: call sites
    # escape first (the commands' tests below)
    assert "q\\x9" in written


# -- (2) every human command on a hostile image ---------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two layers: a setuid file with a hostile name (replaced by layer 1, so efficiency, find
    and diff show it), a symlink with a hostile target; the config's tag, author, user, env,
    labels, Cmd and created_by are hostile too."""
    folder = tmp_path_factory.mktemp("hostile")
    layer0 = build_layer(
        [
            dir_entry("a"),
            file_entry(f"a/{NAME}", b"#!/bin/sh\n", mode=0o4755),
            symlink_entry("a/link", TARGET),
            file_entry("a/plain", b"x"),
        ]
    )
    layer1 = build_layer([file_entry(f"a/{NAME}", b"#!/bin/sh\necho\n")])
    return write_image(
        folder / "hostile.tar",
        [layer0, layer1],
        tag=TAG,
        author=EVIL,
        config={
            "Cmd": [EVIL],
            "Env": [f"X={EVIL}"],
            "User": EVIL,
            "WorkingDir": f"/{EVIL}",
            "Labels": {EVIL: EVIL},
        },
        history=[{"created_by": f"/bin/sh -c {EVIL}", "created": CREATED}, {"created_by": EVIL}],
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image to diff against: one layer with a plain file."""
    folder = tmp_path_factory.mktemp("plain")
    return write_image(
        folder / "plain.tar", [build_layer([dir_entry("a"), file_entry("a/plain", b"x")])]
    )


@pytest.fixture(scope="module")
def hostile_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout listing one manifest under two hostile ref names."""
    root = tmp_path_factory.mktemp("layout") / "oci"
    oci_layout(root, [build_layer([file_entry("x", b"1")])], ref=REF)
    index = json.loads((root / "index.json").read_text())
    second = json.loads(json.dumps(index["manifests"][0]))
    second["annotations"]["org.opencontainers.image.ref.name"] = REF + "2"
    index["manifests"].append(second)
    (root / "index.json").write_text(json.dumps(index))
    return root


def human(*args: str | Path) -> Result:
    return invoke(*args, env={"COLUMNS": "400"}, catch_exceptions=False)


def shown_safely(out: str, err: str) -> None:
    assert not raw_controls(out), sorted(raw_controls(out))
    assert not raw_controls(err), sorted(raw_controls(err))


V_EVIL, V_NAME, V_TARGET, V_TAG = visible(EVIL), visible(NAME), visible(TARGET), visible(TAG)


# each command, and what it must show: the tag, author, user, env, labels, created_by, file
# names and symlink targets, escaped
IMAGE_COMMANDS = [
    (["inspect"], [V_TAG, V_EVIL, f"X={V_EVIL}", f"{V_EVIL}={V_EVIL}", f"RUN {V_EVIL}"]),
    (["layers"], [f"Layers of {V_TAG}", f"RUN {V_EVIL}"]),
    (["ls", "-R", "-l"], [f"a/{V_NAME}", f"link -> {V_TARGET}"]),
    (["ls", "-R", "--at", "0"], [f"a/{V_NAME}"]),
    (["find", "*"], [f"/a/{V_NAME}", f"-> {V_TARGET}", "(overwritten in layer 1)"]),
    (["diff", "--layer", "1"], [f"C /a/{V_NAME}"]),
    (["tree"], [V_TAG, V_NAME, f"-> {V_TARGET}", f"RUN {V_EVIL}"[:60]]),
    (["efficiency"], [V_TAG, f"/a/{V_NAME}"]),
    (["types"], [V_TAG, f"/a/{V_NAME}"]),
    (["history"], [V_TAG, f"RUN {V_EVIL}", visible(CREATED)]),
    (["verify"], ["OK"]),
    (["inspect", "--explain-ids"], ["How the identifiers"]),
    # DOT and HTML on stdout: escaped the same way, then for DOT (backslashes doubled) or HTML
    (["graph", "-o", "-"], ["digraph", "\\\\x1b]0;pwned\\\\x07"]),
    (["report", "-o", "-"], ["<!DOCTYPE html>", "\\x1b]0;pwned\\x07\\x1b[2J"]),
]


@pytest.mark.parametrize(
    ("args", "expected"), IMAGE_COMMANDS, ids=[" ".join(args) for args, _ in IMAGE_COMMANDS]
)
def test_image_commands_show_hostile_text_escaped(
    hostile: Path, args: list[str], expected: list[str]
) -> None:
    code, out, err = human(*args[:1], hostile, *args[1:])
    assert code in (0, 1), err
    shown_safely(out, err)
    for text in expected:
        assert text in out, (text, out)


def test_markup_in_names_is_printed_literally(hostile: Path) -> None:
    _, out, _ = human("inspect", hostile)
    assert "[bold red]r[/]" in out  # shown as written, not taken as a style
    _, out, _ = human("ls", "-R", hostile)
    assert "[link=evil]x" in out


def test_diff_of_two_images(hostile: Path, plain: Path) -> None:
    code, out, err = human("diff", plain, hostile)
    assert code == 1, err
    shown_safely(out, err)
    assert f"A /a/{V_NAME}" in out and "A /a/link" in out
    assert f"+ RUN {V_EVIL}" in out  # history
    assert visible(json.dumps(EVIL, ensure_ascii=False)) in out  # config values, as JSON


def test_listing_and_ref_of_a_layout(hostile_layout: Path) -> None:
    code, out, err = human("inspect", hostile_layout)
    assert code == 0, err
    shown_safely(out, err)
    assert visible(REF) in out and visible(REF + "2") in out
    code, out, err = human("inspect", "--ref", REF, hostile_layout)
    assert code == 0, err
    shown_safely(out, err)
    assert f"Ref name         {visible(REF)}" in out


def test_unpack_and_export_summaries(hostile: Path, tmp_path: Path) -> None:
    code, out, err = human("unpack", hostile, tmp_path / "root")
    assert code == 0, err
    shown_safely(out, err)
    assert f"Unpacked {V_TAG}" in out + err
    code, out, err = human("export", hostile, "-o", tmp_path / "root.tar")
    assert code == 0, err
    shown_safely(out, err)
    assert f"Exported {V_TAG}" in out + err


def test_history_dockerfile_is_exact_in_a_pipe(hostile: Path) -> None:
    code, out, _ = human("history", "--dockerfile", hostile)
    assert code == 0
    assert EVIL in out  # a file product: the exact text (on a terminal: escaped, below)


def test_json_output_stays_exact(hostile: Path) -> None:
    code, out, _ = human("inspect", "--json", hostile)
    assert code == 0
    document = json.loads(out)
    assert document["config"]["Labels"] == {EVIL: EVIL}
    assert document["author"] == EVIL
    assert document["repo_tags"] == [TAG]
    code, out, _ = human("ls", "--json", "-R", hostile)
    assert f"/a/{NAME}" in [e["path"] for e in json.loads(out)["entries"]]


def test_json_text_is_utf8_and_safe_on_a_terminal(hostile: Path, tmp_path: Path) -> None:
    """JSON escapes what a terminal would obey (C1, bidi) and a byte that is not UTF-8; the
    values decode exactly."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("x")
        info.name = "bad\udc9b[2J\u202ename"  # the byte 0x9b: the 8-bit CSI
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    image = write_image(tmp_path / "bytes.tar", [buffer.getvalue()])
    for args in (
        ["ls", "--json", image],
        ["inspect", "--json", hostile],
        ["find", "--json", hostile, "*"],
    ):
        code, out, _ = human(*args)
        assert code == 0
        assert not raw_controls(out.replace("\n", "")), args
        out.encode("utf-8")  # no lone surrogate left: valid UTF-8
    code, out, _ = human("ls", "--json", image)
    assert "\\udc9b[2J\\u202ename" in out
    path = json.loads(out)["entries"][0]["path"]
    assert os.fsencode(path) == b"/bad\x9b[2J\xe2\x80\xaename"


def hostile_error_image(folder: Path) -> Path:
    """A docker archive whose manifest names a layer that is not there, by a hostile path."""
    layer = build_layer([file_entry("x", b"1")])
    raw = config_bytes([sha256(layer)])
    name = hashlib.sha256(raw).hexdigest() + ".json"
    manifest = [{"Config": name, "RepoTags": ["t:1"], "Layers": [f"{NAME}/layer.tar"]}]
    return write_tar(
        folder / "missing.tar", {name: raw, "manifest.json": json.dumps(manifest).encode()}
    )


def test_error_lines_escape_what_they_name(hostile: Path, tmp_path: Path) -> None:
    code, out, err = human("inspect", hostile_error_image(tmp_path))
    assert code == 3
    shown_safely(out, err)
    assert err.startswith("dockscope: ") and err.count("\n") == 1
    assert f"layer 0 blob {V_NAME}/layer.tar is missing" in err
    code, out, err = human("verify", hostile_error_image(tmp_path))
    assert code == 1
    shown_safely(out, err)
    assert f"{V_NAME}/layer.tar" in out
    code, out, err = human("inspect", "--image", "nothing", hostile)
    assert code == 2
    shown_safely(out, err)
    assert V_TAG in err


# -- engine storage ------------------------------------------------------------------------------
EXITED = "9949fa153b778e39d6cab0a4e0ba60fa34a13fedb1f256d613a2f88c0c98408a"


@pytest.fixture(scope="module")
def hostile_storage(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus Docker root, one container renamed and given a file, both hostile."""
    target = tmp_path_factory.mktemp("docker-root")
    subprocess.run(
        ["tar", "xzf", str(corpus / "docker-root-overlay2.tgz"), "-C", str(target)], check=True
    )
    root = target / "docker"
    config = root / "containers" / EXITED / "config.v2.json"
    document = json.loads(config.read_text())
    document["Name"] = "/" + EVIL
    document["Path"] = EVIL
    config.write_text(json.dumps(document))
    mount_id = (root / "image/overlay2/layerdb/mounts" / EXITED / "mount-id").read_text()
    (root / "overlay2" / mount_id / "diff" / NAME).write_bytes(b"x")
    return root


def test_storage_ls_and_container_diff(hostile_storage: Path) -> None:
    code, out, err = human("storage", "ls", hostile_storage)
    assert code == 0, err
    shown_safely(out, err)
    assert f"/{V_EVIL}" in out
    code, out, err = human("container", "diff", "--storage", hostile_storage, EXITED)
    assert code == 0, err
    shown_safely(out, err)
    assert f"A /{V_NAME}" in out.splitlines()


# -- the runtime ---------------------------------------------------------------------------------


def test_run_explain_escapes_the_image_and_command(hostile: Path, tmp_path: Path) -> None:
    code, out, err = human("run", "--explain", hostile, EVIL)
    assert code == 0, err
    shown_safely(out, err)
    assert V_TAG in out and visible(json.dumps([EVIL])) in out


@pytest.fixture
def state_root(tmp_path: Path) -> Iterator[Path]:
    yield from checked_root(tmp_path / "state")


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
def test_trace_ps_and_errors_of_a_hostile_container(state_root: Path, busybox_image: Path) -> None:
    hostname = "h\x1b]0;host\x07\u202e"
    name = "c\x1b[2J\x9b"
    # names and hostnames are refused at the door (docker's name rule; a hostname of
    # printable ASCII), with the value escaped in the one line that says so
    for option, value in (("--name", name), ("--hostname", hostname)):
        refused = dockscope(state_root, "run", option, value, busybox_image, "true")
        assert refused.code == 2, refused.err
        shown_safely("", refused.err)
        assert visible(value) in refused.err and len(refused.err.splitlines()) == 1
    run = dockscope(state_root, "run", "--trace", "--name", "hostile", busybox_image, "echo", EVIL)
    assert run.code == 0, run.err
    assert EVIL in run.out  # the container's own output is its own (as docker's)
    shown_safely("", run.err)
    assert f"argv=echo,{V_EVIL[:30]}" in run.err  # the exec step, its argv
    listing = dockscope(state_root, "ps", "-a")
    assert listing.code == 0, listing.err
    shown_safely(listing.out, listing.err)
    assert "hostile" in listing.out
    assert dockscope(state_root, "rm", "hostile").code == 0
    missing = dockscope(state_root, "run", "--rm", busybox_image, f"/no/{EVIL}")
    assert missing.code == 127
    shown_safely("", missing.err)
    assert f"/no/{V_EVIL}" in missing.err
    # exec: the error comes from the helper inside the container's namespaces
    assert (
        dockscope(state_root, "run", "-d", "--name", "box", busybox_image, "sleep", "60").code == 0
    )
    try:
        missing = dockscope(state_root, "exec", "box", f"/no/{EVIL}")
        assert missing.code == 127, missing.err
        shown_safely("", missing.err)
        assert f"/no/{V_EVIL}" in missing.err
    finally:
        dockscope(state_root, "rm", "-f", "box")


# -- (3) a real terminal ------------------------------------------------------------------------


def on_a_terminal(*args: str | Path) -> tuple[int, bytes]:
    """``dockscope ARGS`` with a pty as its stdin, stdout and stderr: rich renders for a
    person (colours, a terminal's width)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    session = PtySession([*DOCKSCOPE, *map(str, args)], env, rows=50, columns=250)
    try:
        code = session.wait(timeout=60)
    finally:
        session.close()
    return code, session.seen


def no_sequence_from_the_image(seen: bytes) -> None:
    assert b"\x1b]" not in seen  # no OSC at all: titles, hyperlinks
    assert b"\x1b[2J" not in seen
    assert "\x9b".encode() not in seen and b"\x9b31m" not in seen.replace(b"\\x9b", b"")
    assert "\u202e".encode() not in seen and "\u2066".encode() not in seen
    assert b"\x07" not in seen and b"\x7f" not in seen


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["inspect"], V_EVIL),
        (["ls", "-R"], V_NAME),
        (["history"], V_EVIL),
        (["history", "--dockerfile"], V_EVIL),
        (["tree"], V_NAME),
        (["find", "*"], V_TARGET),
    ],
    ids=["inspect", "ls", "history", "history --dockerfile", "tree", "find"],
)
def test_on_a_real_terminal(hostile: Path, args: list[str], expected: str) -> None:
    code, seen = on_a_terminal(args[0], hostile, *args[1:])
    assert code == 0, seen
    no_sequence_from_the_image(seen)
    assert b"\x1b[" in seen or (args[0] == "history" and "--dockerfile" in args)  # styled
    assert expected.encode() in seen, seen  # the escaped form, as a person sees it


def test_an_error_on_a_real_terminal(tmp_path: Path) -> None:
    code, seen = on_a_terminal("inspect", hostile_error_image(tmp_path))
    assert code == 3
    no_sequence_from_the_image(seen)
    assert f"{V_NAME}/layer.tar".encode() in seen


def test_the_pty_check_sees_a_raw_sequence(tmp_path: Path) -> None:
    """The check above can fail: cat on a terminal writes a file's bytes as they are."""
    image = write_image(tmp_path / "cat.tar", [build_layer([file_entry("evil", EVIL.encode())])])
    code, seen = on_a_terminal("cat", image, "/evil")
    assert code == 0
    with pytest.raises(AssertionError):
        no_sequence_from_the_image(seen)


def test_importing_the_sanitiser_keeps_start_up_light() -> None:
    """render/text.py imports rich only when a console or markup is asked for."""
    code = "import sys, inspect_tool.render.text; print('rich' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_escaping_patterns_are_compiled_on_first_use() -> None:
    """A container's run imports render.text (PID 1 escapes its errors after pivot_root) and
    usually escapes nothing: importing it compiles none of its three patterns."""
    script = (
        "import re\n"
        "compiled = []\n"
        "real = re.compile\n"
        "re.compile = lambda *a, **k: compiled.append(a[0]) or real(*a, **k)\n"
        "from inspect_tool.render import text\n"
        "print(len(compiled))\n"
        "print(text.visible('a\\x1bb'), len(compiled))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == ["0", "a\\x1bb 1"]
