"""How human output reads: counts with the noun that agrees with them (never ``secret(s)``),
and tables whole and without trailing blanks when stdout is a pipe or a file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from inspect_tool.render.text import agree, plural
from tests.support.cli import DOCKSCOPE, invoke
from tests.support.images import layer_tar, write_image

# a .env assignment the dotenv-secret rule reports
TOKENS = ("Xq7vR2mK9pL4sT8wZ3nB6yC1", "Hd5fJ8kQ2wE7rT4yU9iO3pA6")


@pytest.mark.parametrize(
    ("count", "args", "expected"),
    [
        (0, ("secret",), "0 secrets"),
        (1, ("secret",), "1 secret"),
        (2, ("secret",), "2 secrets"),
        (1, ("match", "matches"), "1 match"),
        (3, ("match", "matches"), "3 matches"),
        (1, ("history entry", "history entries"), "1 history entry"),
        (2, ("history entry", "history entries"), "2 history entries"),
    ],
)
def test_plural_agrees_with_the_count(count: int, args: tuple[str, ...], expected: str) -> None:
    assert plural(count, *args) == expected


def test_agree_gives_the_word_alone() -> None:
    assert agree(1, "has", "have") == "has"
    assert agree(2, "has", "have") == "have"
    assert agree(0, "container") == "containers"


def _image_with_secrets(path: Path, count: int) -> Path:
    files = {f"app{n}/.env": f"API_TOKEN={TOKENS[n]}\n".encode() for n in range(count)}
    return write_image(path, [layer_tar(files)])


@pytest.mark.parametrize(("count", "said"), [(1, ": 1 secret ("), (2, ": 2 secrets (")])
def test_secrets_counts_its_findings_in_words(tmp_path: Path, count: int, said: str) -> None:
    image = _image_with_secrets(tmp_path / "s.tar", count)
    result = invoke("secrets", image)
    assert result.code == 1, result.output
    assert said in result.out
    assert "(s)" not in result.out
    document = invoke("secrets", "--json", image).json()
    assert len(document["findings"]) == count


LONG_PATH = "srv/" + "/".join(f"a-rather-long-directory-name-{n}" for n in range(6)) + "/x.conf"


def _piped(*args: str | Path, columns: str | None = None) -> str:
    """``dockscope ARGS`` with stdout a pipe, in an environment that says nothing of a
    width (or COLUMNS=``columns``) and asks for no colour."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    env["NO_COLOR"] = "1"
    if columns is not None:
        env["COLUMNS"] = columns
    proc = subprocess.run(
        [*DOCKSCOPE, *map(str, args)],
        capture_output=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


@pytest.fixture(scope="module")
def long_named(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The long path written by two layers: efficiency lists it in its table of paths."""
    layers = [
        layer_tar({LONG_PATH: b"key = value\n", "etc/hostname": b"box\n"}),
        layer_tar({LONG_PATH: b"key = other value\n"}),
    ]
    return write_image(tmp_path_factory.mktemp("long") / "l.tar", layers)


@pytest.mark.parametrize(
    "args", [["efficiency", "{image}"], ["find", "{image}", "*.conf"], ["layers", "{image}"]]
)
def test_tables_in_a_pipe_are_whole_and_end_no_line_in_a_blank(
    long_named: Path, args: list[str]
) -> None:
    out = _piped(*(a.format(image=long_named) for a in args))
    if args[0] != "layers":
        assert any(("/" + LONG_PATH) in line for line in out.splitlines()), out
    assert len(LONG_PATH) > 80
    assert out.strip()
    blank_ended = [line for line in out.splitlines() if line != line.rstrip()]
    assert blank_ended == [], blank_ended


def test_a_pipe_keeps_the_width_columns_gives(long_named: Path) -> None:
    out = _piped("efficiency", long_named, columns="100")
    assert all(len(line) <= 100 for line in out.splitlines()), out
    assert not any(("/" + LONG_PATH) in line for line in out.splitlines())
    assert "a-rather-long-directory-name-5/x.conf" in out


def test_export_and_unpack_summaries_count_one_as_one(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "sample_images" / "docker-archive-v25.tar"
    code, out, err = invoke("export", str(sample), "-o", str(tmp_path / "flat.tar"))
    assert code == 0, err
    said = out + err
    assert "(4 layers)" in said and "1 symlink, 1 hard link" in said and "symlinks" not in said
    code, out, err = invoke("unpack", str(sample), str(tmp_path / "rootfs"))
    assert code == 0, err
    assert "20 directories, 1 symlink, 1 hard link" in out + err
