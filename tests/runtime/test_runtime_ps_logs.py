"""ps and logs as docker's: columns that fit (short IDs, the command cut with …), -q,
--format, logs -f and --tail; and what a user other than root is told."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_lab.render.ps import Template, tabwriter
from tests.support.cli import DOCKSCOPE, dockscope, dockscope_as_nobody, env_for, ok, popen
from tests.support.paths import CORPUS
from tests.support.runtime import checked_root, needs_root, ps, wait_until

pytestmark = needs_root

LONG = "echo a fairly long command that does not fit; exec sleep 60"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield from checked_root(tmp_path / "state")


def test_ps_rows_fit_and_cut_the_command_as_docker(root: Path, busybox_image: Path) -> None:
    cid = ok(
        dockscope(root, "run", "-d", "--name", "long", busybox_image, "sh", "-c", LONG)
    ).strip()
    try:
        env = dict(env_for(root), COLUMNS="80")
        out = subprocess.run(
            [*DOCKSCOPE, "ps"], capture_output=True, text=True, env=env, check=True
        ).stdout
        header, row = out.splitlines()  # one line a container: nothing folded
        assert re.split(" {3,}", header)[:3] == ["CONTAINER ID", "IMAGE", "COMMAND"]
        assert row.startswith(cid[:12] + "   ")
        assert '"sh -c echo a fairly…"' in row  # 20 characters, the last one …
        assert header.index("COMMAND") == row.index('"sh -c')  # columns line up
        assert row.rstrip().endswith("long")
        assert ok(dockscope(root, "ps", "-q")) == cid[:12] + "\n"
        assert ok(dockscope(root, "ps", "-aq")) == cid[:12] + "\n"
        shown = ok(dockscope(root, "ps", "--format", "{{.ID}}|{{.Names}}|{{.Image}}|{{.Status}}"))
        assert shown.startswith(f"{cid[:12]}|long|{busybox_image}|Up ")
        table = ok(dockscope(root, "ps", "--format", "table {{.Names}}\\t{{.State}}"))
        assert table.splitlines() == ["NAMES     STATE", "long      running"]
        record = json.loads(ok(dockscope(root, "ps", "--format", "{{json .}}")))
        assert (record["ID"], record["Names"], record["State"]) == (cid[:12], "long", "running")
        assert record["Command"] == '"sh -c echo a fairly…"'
        quiet = dockscope(root, "ps", "-q", "--format", "{{.Names}}")
        assert ok(quiet) == cid[:12] + "\n"
        assert "Ignoring custom format" in quiet.err
    finally:
        ok(dockscope(root, "rm", "-f", "long"))


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Nope}}", "no field 'Nope'"),
        ("{{if .ID}}x{{end}}", "dockscope's templates take"),
        ("{{.ID", "unclosed action"),
    ],
)
def test_ps_format_refuses_what_it_does_not_know(root: Path, template: str, message: str) -> None:
    result = dockscope(root, "ps", "--format", template)
    assert result.code == 2
    assert message in result.err and len(result.err.splitlines()) == 1


def test_template_and_tabwriter_as_dockers() -> None:
    rows = [{"ID": "0123456789ab", "Names": "a"}, {"ID": "ba9876543210", "Names": "bb"}]
    assert Template.parse("{{.ID}}\\t{{.Names}}").render(rows) == (
        "0123456789ab\ta\nba9876543210\tbb\n"
    )
    assert Template.parse("table {{.Names}}\\t{{.ID}}").render(rows) == (
        "NAMES     CONTAINER ID\na         0123456789ab\nbb        ba9876543210\n"
    )
    assert tabwriter(["a\tb", "ccccccccccccc\td"]) == "a               b\nccccccccccccc   d\n"


def test_logs_tail_and_follow(root: Path, busybox_image: Path) -> None:
    script = "echo err >&2; sleep 0.3; for i in 1 2 3; do echo out $i; done; sleep 4; echo late"
    ok(dockscope(root, "run", "-d", "--name", "talker", busybox_image, "sh", "-c", script))
    try:
        wait_until(lambda: "out 3" in dockscope(root, "logs", "talker").out, what="the first lines")
        every = dockscope(root, "logs", "talker")
        assert (every.out, every.err) == ("out 1\nout 2\nout 3\n", "err\n")
        tail = dockscope(root, "logs", "--tail", "2", "talker")
        assert (tail.out, tail.err) == ("out 2\nout 3\n", "")  # the last 2 records
        assert dockscope(root, "logs", "--tail", "0", "talker").out == ""
        started = time.monotonic()
        follow = popen(root, "logs", "-f", "--tail", "1", "talker")
        out, _ = follow.communicate(timeout=30)
        assert follow.returncode == 0
        assert out == "out 3\nlate\n"  # the last line at the start, then until the end
        assert time.monotonic() - started < 10
        assert ps(root)["talker"]["status"] == "exited"
        bad = dockscope(root, "logs", "--tail", "many", "talker")
        assert bad.code == 2 and "--tail 'many'" in bad.err
    finally:
        ok(dockscope(root, "rm", "-f", "talker"))


def test_logs_follow_of_an_exited_container_ends(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "--name", "done", busybox_image, "echo", "hi"))
    assert ok(dockscope(root, "logs", "-f", "done", timeout=10)) == "hi\n"


# -- a user other than root ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("ps",), ("ps", "-a"), ("logs", "web"), ("container", "diff", "web"), ("volume", "ls")],
)
def test_unprivileged_user_is_told_what_to_do(
    root: Path, busybox_image: Path, command: tuple[str, ...]
) -> None:
    """The state belongs to root: one line, exit 3, saying to use sudo or another root."""
    ok(dockscope(root, "run", "--name", "web", "-v", "data:/data", busybox_image, "true"))
    result = dockscope_as_nobody(root, *command)
    assert result.code == 3, result.err
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "permission denied" in result.err and "sudo" in result.err
    assert "internal error" not in result.err
    ok(dockscope(root, "rm", "web"))


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may pass through (pytest's own are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="dockscope-nobody-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_unprivileged_user_and_engine_storage(shared: Path) -> None:
    """container diff/inspect/logs --root ENGINE_ROOT that only root may read."""
    corpus = CORPUS / "docker-root-overlay2.tgz"
    subprocess.run(["tar", "xzf", str(corpus), "-C", str(shared)], check=True)
    engine = shared / "docker"
    os.chmod(engine, 0o711)  # as /var/lib/docker: others may pass, not read
    assert ok(
        dockscope(shared / "unused", "container", "diff", "--root", engine, "festive_perlman")
    )
    for command in ("diff", "inspect", "logs"):
        result = dockscope_as_nobody(
            shared / "unused", "container", command, "--root", engine, "festive_perlman"
        )
        assert result.code == 3, result.err
        assert result.err == (
            f"dockscope: {engine}: cannot read this engine storage: permission denied (the "
            "engine's files belong to root: run this with sudo, or read a copy you own)\n"
        )


def test_unprivileged_user_with_a_state_root_of_their_own(shared: Path) -> None:
    """Nothing to read is no error: an empty list, as for a new root."""
    own = shared / "mine"
    own.mkdir()
    os.chown(own, 65534, 65534)
    result = dockscope_as_nobody(own, "ps")
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith("CONTAINER ID")
