"""How human output reads: counts with the noun that agrees with them (never ``secret(s)``),
and tables whole and without trailing blanks when stdout is a pipe or a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_tool.render.text import agree, plural
from tests.support.cli import invoke
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
