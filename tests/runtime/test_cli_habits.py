"""docker's everyday commands on real containers (as root): ps --filter, logs --since/-t,
container inspect -f, top, stats, pause/unpause, kill -s, wait, rename. Output and exit codes
are docker's, each checked against what the kernel says (the freezer's file, the cgroup's
PIDs)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import dockscope, ok, popen
from tests.support.runtime import needs_root, pty_session, wait_until

pytestmark = needs_root

TICKER = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"


@pytest.fixture(scope="module")
def ticker(root: Path, busybox_image: Path) -> Iterator[str]:
    """A running container that prints a line every 0.1 s, labelled lab=habits."""
    name = "habits-ticker"
    ok(
        dockscope(
            root, "run", "-d", "--name", name, "-l", "lab=habits", busybox_image, "sh", "-c", TICKER
        )
    )
    yield name
    dockscope(root, "rm", "-f", name)


@pytest.fixture(scope="module")
def exited(root: Path, busybox_image: Path) -> Iterator[str]:
    name = "habits-exit3"
    result = dockscope(root, "run", "--name", name, busybox_image, "sh", "-c", "exit 3")
    assert result.code == 3
    yield name
    dockscope(root, "rm", "-f", name)


def lines(text: str) -> list[str]:
    return text.splitlines()


# -- ps --filter ----------------------------------------------------------------------------------


def test_ps_filter_status_lists_stopped_without_a(root: Path, ticker: str, exited: str) -> None:
    assert lines(
        ok(dockscope(root, "ps", "--filter", "status=exited", "--format", "{{.Names}}"))
    ) == [exited]
    assert lines(ok(dockscope(root, "ps", "-f", "status=running", "--format", "{{.Names}}"))) == [
        ticker
    ]
    both = ok(
        dockscope(
            root, "ps", "-f", "status=running", "-f", "status=exited", "--format", "{{.Names}}"
        )
    )
    assert sorted(lines(both)) == sorted([ticker, exited])


def test_ps_filter_exited_needs_a(root: Path, ticker: str, exited: str) -> None:
    assert ok(dockscope(root, "ps", "--filter", "exited=3", "-q")) == ""
    exited_id = ok(dockscope(root, "ps", "-a", "--filter", "exited=3", "-q")).strip()
    assert re.fullmatch(r"[0-9a-f]{12}", exited_id)
    assert ok(dockscope(root, "ps", "-a", "--filter", "exited=0", "-q")) == ""
    by_id = dockscope(root, "ps", "-a", "--filter", f"id={exited_id[:6]}", "--format", "{{.Names}}")
    assert lines(ok(by_id)) == [exited]


def test_ps_filter_name_label_ancestor(
    root: Path, busybox_image: Path, ticker: str, exited: str
) -> None:
    def names(*filters: str) -> list[str]:
        args = [x for f in filters for x in ("--filter", f)]
        return sorted(lines(ok(dockscope(root, "ps", "-a", *args, "--format", "{{.Names}}"))))

    assert names("name=ticker") == [ticker]  # a regular expression searched in the name
    assert names("name=^habits-") == sorted([ticker, exited])
    assert names("label=lab") == [ticker]
    assert names("label=lab=habits") == [ticker]
    assert names("label=lab=other") == []
    assert names("ancestor=busybox.tar") == sorted([ticker, exited])
    assert names("ancestor=busybox.tar", "name=exit") == [exited]  # different keys: all
    assert names("before=habits-exit3") == [ticker]  # created before it
    assert names("since=habits-ticker") == [exited]
    assert lines(
        ok(dockscope(root, "ps", "-f", "since=habits-ticker", "--format", "{{.Names}}"))
    ) == [exited]  # since= lists stopped ones without -a, as docker's
    assert names("network=bridge") == sorted([ticker, exited])  # run's default, as docker's
    assert names("network=none") == []
    assert names("network=host") == []
    assert names("volume=/data") == []
    image_id = ok(dockscope(root, "container", "inspect", "-f", "{{.Config.ImageId}}", ticker))
    assert names(f"ancestor={image_id.strip()}") == sorted([ticker, exited])


def test_ps_last_latest_no_trunc(root: Path, ticker: str, exited: str) -> None:
    # exited was made after ticker (fixture order): -l is it, whatever its state
    assert lines(ok(dockscope(root, "ps", "-l", "--format", "{{.Names}}"))) == [exited]
    last_two = lines(ok(dockscope(root, "ps", "-n", "2", "--format", "{{.Names}}")))
    assert last_two == [exited, ticker]
    full = ok(
        dockscope(
            root, "ps", "--no-trunc", "-f", f"name={ticker}", "--format", "{{.ID}} {{.Command}}"
        )
    )
    full_id, command = full.rstrip("\n").split(" ", 1)
    assert len(full_id) == 64
    assert command == '"sh -c ' + TICKER + '"'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("status=sleeping", "invalid filter 'status=sleeping'"),
        ("colour=red", "invalid filter 'colour'"),
        ("exited", "bad format of filter (expected name=value)"),
        ("exited=x", "invalid filter 'exited=x'"),
    ],
)
def test_ps_bad_filter_is_a_usage_error(root: Path, value: str, message: str) -> None:
    result = dockscope(root, "ps", "--filter", value)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.splitlines()) == 1


# -- logs --since / -t ----------------------------------------------------------------------------

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def test_logs_timestamps_and_since(root: Path, ticker: str) -> None:
    wait_until(lambda: "tick 3" in dockscope(root, "logs", ticker).out, what="3 ticks")
    stamped = lines(ok(dockscope(root, "logs", "-t", "--tail", "2", ticker)))
    assert len(stamped) == 2
    assert all(re.fullmatch(STAMP + r" tick \d+", line) for line in stamped), stamped
    everything = lines(ok(dockscope(root, "logs", "--since", "1h", ticker)))
    assert everything[0] == "tick 1"
    assert ok(dockscope(root, "logs", "--since", "2099-01-01T00:00:00Z", ticker)) == ""
    # an RFC 3339 time between two lines: only the later ones
    third = lines(ok(dockscope(root, "logs", "-t", ticker)))[2].split()[0]
    after = lines(ok(dockscope(root, "logs", "--since", third, ticker)))
    assert after[0] == "tick 3"
    until = lines(ok(dockscope(root, "logs", "--until", third, ticker)))
    assert until == ["tick 1", "tick 2", "tick 3"]


def test_logs_bad_since_is_a_usage_error(root: Path, ticker: str) -> None:
    result = dockscope(root, "logs", "--since", "yesterday", ticker)
    assert result.code == 2
    assert "--since 'yesterday'" in result.err


# -- container inspect -f ------------------------------------------------------------------------


def test_inspect_format(root: Path, ticker: str) -> None:
    out = ok(
        dockscope(
            root,
            "container",
            "inspect",
            "-f",
            "{{.State.Pid}} {{.State.Status}} {{json .Config.Labels}} {{.Name}}",
            ticker,
        )
    )
    pid, status, labels, name = out.split()
    assert Path(f"/proc/{pid}").is_dir()
    assert (status, labels, name) == ("running", '{"lab":"habits"}', ticker)
    assert (
        ok(
            dockscope(
                root,
                "container",
                "inspect",
                "-f",
                '{{index .Config.Labels "lab"}} {{.Nope}} {{len .Config.Command}}',
                ticker,
            )
        )
        == "habits <no value> 3\n"
    )
    ranged = ok(
        dockscope(
            root, "container", "inspect", "-f", "{{range .Config.Command}}[{{.}}]{{end}}", ticker
        )
    )
    assert ranged == f"[sh][-c][{TICKER}]\n"
    bad = dockscope(root, "container", "inspect", "-f", "{{printf .Name}}", ticker)
    assert bad.code == 2 and "template" in bad.err


# -- top and stats --------------------------------------------------------------------------------


def test_top_shows_the_container_processes_only(root: Path, ticker: str) -> None:
    pid = ok(dockscope(root, "container", "inspect", "-f", "{{.State.Pid}}", ticker)).strip()
    out = lines(ok(dockscope(root, "top", ticker)))
    assert out[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    pids = [row.split()[1] for row in out[1:]]
    assert pid in pids
    assert str(Path("/proc/self").resolve().name) not in pids  # not the host's
    custom = lines(ok(dockscope(root, "top", ticker, "-o", "pid,comm")))
    assert custom[0].split() == ["PID", "COMMAND"]
    assert f"{pid} sh".split() in [row.split() for row in custom[1:]]


def test_top_of_a_stopped_container(root: Path, exited: str) -> None:
    result = dockscope(root, "top", exited)
    assert result.code == 3
    assert "is not running" in result.err


def test_stats_no_stream(root: Path, ticker: str) -> None:
    out = lines(ok(dockscope(root, "stats", "--no-stream", ticker)))
    assert out[0].split() == [
        "CONTAINER",
        "ID",
        "NAME",
        "CPU",
        "%",
        "MEM",
        "USAGE",
        "/",
        "LIMIT",
        "MEM",
        "%",
        "NET",
        "I/O",
        "BLOCK",
        "I/O",
        "PIDS",
    ]
    fields = ok(
        dockscope(
            root,
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.CPUPerc}}|{{.PIDs}}",
            ticker,
        )
    ).strip()
    name, usage, cpu, pids = fields.split("|")
    assert name == ticker
    assert re.fullmatch(r"[\d.]+(B|KiB|MiB) / [\d.]+(MiB|GiB|TiB)", usage), usage
    assert re.fullmatch(r"\d+\.\d\d%", cpu)
    assert pids in ("1", "2")  # sh, and sleep when it runs
    document = dockscope(root, "stats", "--no-stream", "--json", ticker).json()
    entry = document["containers"][0]
    assert entry["memory"] > 0 and entry["pids"] >= 1
    assert any(path.endswith("pids.current") for path in entry["files"])


def test_stats_redraws_on_a_terminal(root: Path, ticker: str) -> None:
    session = pty_session(root, "stats", ticker)
    try:
        session.expect(b"\x1b[2J\x1b[H", timeout=20)  # docker's: clear the screen, home
        session.expect(ticker.encode(), timeout=20)
        session.expect(b"\x1b[2J\x1b[H", timeout=20)  # and again a second later
        session.send(b"\x03")  # Ctrl-C ends it
        assert session.wait() == 0
    finally:
        session.close()


# -- pause / unpause / kill / wait / rename --------------------------------------------------------


def count_ticks(root: Path, name: str) -> int:
    return len(dockscope(root, "logs", name).out.splitlines())


def test_pause_freezes_every_process(root: Path, ticker: str) -> None:
    ok(dockscope(root, "pause", ticker))
    try:
        status = ok(
            dockscope(root, "ps", "--format", "{{.Status}}|{{.State}}", "-f", f"name={ticker}")
        )
        assert re.fullmatch(r"Up .* \(Paused\)\|paused\n", status), status
        paths = dockscope(root, "container", "inspect", ticker).json()["state"]["cgroup_paths"]
        assert Path(paths["freezer"], "freezer.state").read_text().strip() == "FROZEN"
        paused = dockscope(root, "ps", "-q", "--filter", "status=paused")
        assert ok(paused) == ok(dockscope(root, "ps", "-q", "-f", f"name={ticker}"))
        assert ok(dockscope(root, "ps", "-q", "-f", "status=running", "-f", f"name={ticker}")) == ""
        before = count_ticks(root, ticker)
        time.sleep(0.6)
        assert count_ticks(root, ticker) == before  # nothing ran
        again = dockscope(root, "pause", ticker)
        assert again.code == 3 and "already paused" in again.err
    finally:
        unpaused = dockscope(root, "unpause", "--trace", ticker)
    assert unpaused.code == 0
    assert "THAWED" in unpaused.err
    before = count_ticks(root, ticker)
    wait_until(lambda: count_ticks(root, ticker) > before, what="ticks after unpause")
    result = dockscope(root, "unpause", ticker)
    assert result.code == 3 and "is not paused" in result.err


def test_kill_signal_and_wait(root: Path, busybox_image: Path) -> None:
    name = "habits-trap"
    script = "trap 'exit 7' HUP; while true; do sleep 0.1; done"
    ok(dockscope(root, "run", "-d", "--name", name, busybox_image, "sh", "-c", script))
    try:
        waiter = popen(root, "wait", name)
        bad = dockscope(root, "kill", "-s", "BOGUS", name)
        assert bad.code == 2 and "invalid signal: BOGUS" in bad.err
        assert ok(dockscope(root, "kill", "--signal", "hup", name)) == f"{name}\n"
        out, _ = waiter.communicate(timeout=30)
        assert waiter.returncode == 0
        assert out == "7\n"
        assert ok(dockscope(root, "wait", name)) == "7\n"  # an exited one: at once
        stopped = dockscope(root, "kill", name)
        assert stopped.code == 3 and "is not running" in stopped.err
    finally:
        dockscope(root, "rm", "-f", name)


def test_kill_default_is_sigkill(root: Path, busybox_image: Path) -> None:
    name = "habits-kill9"
    ok(dockscope(root, "run", "-d", "--name", name, busybox_image, "sleep", "600"))
    try:
        ok(dockscope(root, "kill", name))
        assert ok(dockscope(root, "wait", name)) == "137\n"
    finally:
        dockscope(root, "rm", "-f", name)


def test_rename(root: Path, busybox_image: Path, exited: str) -> None:
    name = "habits-old"
    ok(dockscope(root, "run", "--name", name, busybox_image, "true"))
    try:
        assert ok(dockscope(root, "rename", name, "habits-new")) == ""
        assert lines(
            ok(dockscope(root, "ps", "-a", "-f", "name=habits-new", "--format", "{{.Names}}"))
        ) == ["habits-new"]
        gone = dockscope(root, "container", "inspect", name)
        assert gone.code == 2 and f"no such container: {name}" in gone.err
        taken = dockscope(root, "rename", "habits-new", exited)
        assert taken.code == 2 and "already in use" in taken.err
        invalid = dockscope(root, "rename", "habits-new", "-bad/name")
        assert invalid.code == 2
    finally:
        dockscope(root, "rm", "-f", "habits-new", name)


def test_ps_filter_volume(root: Path, busybox_image: Path) -> None:
    name = "habits-vol"
    ok(dockscope(root, "run", "--name", name, "-v", "habitsvol:/data", busybox_image, "true"))
    try:
        for value in ("volume=habitsvol", "volume=/data"):
            out = ok(dockscope(root, "ps", "-a", "-f", value, "--format", "{{.Names}}"))
            assert lines(out) == [name]
        assert ok(dockscope(root, "ps", "-a", "-f", "volume=other", "-q")) == ""
    finally:
        dockscope(root, "rm", "-f", name)
        dockscope(root, "volume", "rm", "habitsvol")
