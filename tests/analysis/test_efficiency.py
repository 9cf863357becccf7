"""dockscope efficiency: dive's figures, to the last digit, and dive's CI gates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from inspect_tool.analyze.efficiency import (
    EfficiencyCalculator,
    evaluate_gates,
    go_clean,
    parse_bytes,
)
from inspect_tool.layers.tarreader import TarReader
from tests.support.cli import invoke
from tests.support.images import write_image
from tests.support.paths import CORPUS, SAMPLES
from tests.support.tar_entries import Entry, build_layer, dir_entry, file_entry

DIVE_IMAGE = CORPUS / "docker-save-legacy-dive.tar"

# dive's own assertions for this image (dive/image/docker/image_archive_analysis_test.go and
# the export test's inefficientFiles, worst first)
DIVE_EFFICIENCY = 0.9844212134184309
DIVE_SIZE = 1220598
DIVE_USER_SIZE = 66237
DIVE_WASTED = 32025
DIVE_USER_WASTED_PERCENT = 0.4834911001404049
DIVE_INEFFICIENT = [
    (2, 12810, "/root/saved.txt"),
    (2, 12810, "/root/example/somefile1.txt"),
    (2, 6405, "/root/example/somefile3.txt"),
]


def calculate(*layers: list[Entry]) -> EfficiencyCalculator:
    import io

    calculator = EfficiencyCalculator()
    for entries in layers:
        calculator.add_layer(TarReader(io.BytesIO(build_layer(entries))))
    return calculator


def test_dive_test_image_matches_dive_exactly() -> None:
    code, out, err = invoke("efficiency", "--json", str(DIVE_IMAGE))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "efficiency" and doc["schema_version"] == 1
    assert doc["efficiency"] == DIVE_EFFICIENCY
    assert doc["wasted_bytes"] == DIVE_WASTED
    assert doc["size_bytes"] == DIVE_SIZE
    assert doc["user_size_bytes"] == DIVE_USER_SIZE
    assert doc["user_wasted_percent"] == DIVE_USER_WASTED_PERCENT
    listed = [(p["count"], p["size_bytes"], p["path"]) for p in doc["inefficient_paths"]]
    assert listed == DIVE_INEFFICIENT
    assert doc["inefficient_paths"][0]["layers"] == [7, 13]
    assert len(doc["layer_sizes"]) == 14 and sum(doc["layer_sizes"]) == DIVE_SIZE
    assert doc["gates"] == [] and doc["ok"] is True and doc["notes"] == []


def test_console_output_shows_the_figures() -> None:
    code, out, _ = invoke("efficiency", str(DIVE_IMAGE))
    assert code == 0
    assert "0.9844212134184309" in out
    assert "32025" in out
    assert "48.3491 %" in out
    assert out.index("/root/saved.txt") < out.index("/root/example/somefile3.txt")


def test_layer_compression_does_not_change_the_figures() -> None:
    docs = []
    for name in ("gzip", "zstd", "uncompressed"):
        code, out, err = invoke(
            "efficiency", "--json", str(CORPUS / f"oci-archive-{name}-dive.tar")
        )
        assert code == 0, err
        doc = json.loads(out)
        docs.append({k: doc[k] for k in ("efficiency", "wasted_bytes", "size_bytes")})
    assert docs[0] == docs[1] == docs[2]
    assert docs[0]["size_bytes"] > 0


def test_dive_unit_case_implicit_parent_whiteout_counts_nothing() -> None:
    # dive's TestEfficency: parents are never listed, so /etc/nginx has no metadata in the
    # stacked tree and its whiteout removes "0 bytes": score 15000 / 20000.
    report = calculate(
        [file_entry("etc/nginx/nginx.conf", 2000), file_entry("etc/nginx/public", 3000)],
        [file_entry("etc/nginx/nginx.conf", 5000), file_entry("etc/athing", 10000)],
        [file_entry("etc/.wh.nginx")],
    ).report()
    assert report.efficiency == 0.75
    assert [(p.path, p.cumulative_size, p.layers) for p in report.inefficient_paths] == [
        ("/etc/nginx/nginx.conf", 7000, (0, 1))
    ]
    assert report.wasted_bytes == 7000


def test_whiteout_of_a_listed_directory_counts_what_it_removes() -> None:
    report = calculate(
        [
            dir_entry("etc"),
            dir_entry("etc/nginx"),
            file_entry("etc/nginx/nginx.conf", 2000),
            file_entry("etc/nginx/public", 3000),
        ],
        [
            dir_entry("etc"),
            dir_entry("etc/nginx"),
            file_entry("etc/nginx/nginx.conf", 5000),
            file_entry("etc/athing", 10000),
        ],
        [file_entry("etc/.wh.nginx")],
    ).report()
    # every layer lists the parents (as docker writes layers), so /etc/nginx stays a
    # directory in the stacked tree and the whiteout removes nginx.conf (5000, as stacked)
    # and public (3000): /etc/nginx occurs once, so its 8000 count on both sides:
    # (2000 + 3000 + 10000 + 8000) / (7000 + 3000 + 10000 + 8000)
    assert report.efficiency == 23000 / 28000
    assert report.size_bytes == 20000 and report.user_size_bytes == 15000


def test_whiteout_of_a_file_counts_zero_and_makes_the_path_inefficient() -> None:
    report = calculate([file_entry("a", 100), file_entry("b", 7)], [file_entry(".wh.a")]).report()
    assert [(p.path, p.count, p.cumulative_size, p.min_size) for p in report.inefficient_paths] == [
        ("/a", 2, 100, 0)
    ]
    assert report.efficiency == 7 / 107
    assert report.wasted_bytes == 100
    assert math.isinf(report.user_wasted_percent)  # nothing above layer 0 has bytes


def test_scratch_image_is_fully_efficient() -> None:
    report = calculate([file_entry("nothing")]).report()
    assert report.efficiency == 1.0
    assert report.inefficient_paths == ()
    assert math.isnan(report.user_wasted_percent) and report.user_wasted_ratio is None


def test_opaque_markers_are_ignored_as_dive_ignores_them() -> None:
    report = calculate(
        [file_entry("dir/x", 10)], [file_entry("dir/.wh..wh..opq"), file_entry("dir/y", 5)]
    ).report()
    assert report.inefficient_paths == ()
    assert report.efficiency == 1.0


def test_whiteout_of_a_missing_target_stops_the_layer_as_in_dive() -> None:
    # ".wh.b" sorts before "a": dive fails on it and never counts /a of layer 1; the failed
    # record keeps dive's initial minimum of -1.
    calculator = calculate([file_entry("a", 10)], [file_entry(".wh.b"), file_entry("a", 5)])
    report = calculator.report()
    assert report.efficiency == (10 - 1) / 10
    assert report.inefficient_paths == ()
    assert report.notes and "/b" in report.notes[0]


def test_go_clean() -> None:
    assert go_clean("./etc/passwd") == "etc/passwd"
    assert go_clean("root/example/") == "root/example"
    assert go_clean("./") == "."
    assert go_clean("a/../../b") == "../b"
    assert go_clean("/a/../..") == "/"


@pytest.mark.parametrize(
    ("text", "value"),
    [("1B", 1), ("50kB", 50_000), ("50KB", 50_000), ("2MiB", 2 * 1024**2), ("1,000", 1000)],
)
def test_parse_bytes_reads_sizes_like_go_humanize(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["1BB", "-1BB", "", "k", "1.2.3"])
def test_parse_bytes_refuses_what_go_humanize_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_gates_all_fail_exit_1() -> None:
    # dive's Test_Evaluator "allFail": 0.99, 1B, 0.01
    code, out, _ = invoke(
        "efficiency",
        "--json",
        "--lowest-efficiency",
        "0.99",
        "--highest-wasted-bytes",
        "1B",
        "--highest-user-wasted-percent",
        "0.01",
        str(DIVE_IMAGE),
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert [(g["rule"], g["ok"]) for g in doc["gates"]] == [
        ("lowestEfficiency", False),
        ("highestWastedBytes", False),
        ("highestUserWastedPercent", False),
    ]


def test_gates_all_pass_exit_0() -> None:
    # dive's Test_Evaluator "allPass": 0.9, 50kB, 0.5
    code, out, _ = invoke(
        "efficiency",
        "--lowest-efficiency",
        "0.9",
        "--highest-wasted-bytes",
        "50kB",
        "--highest-user-wasted-percent",
        "0.5",
        str(DIVE_IMAGE),
    )
    assert code == 0
    assert "PASS lowestEfficiency" in out and "FAIL" not in out


def test_one_failing_gate_is_enough() -> None:
    code, out, _ = invoke("efficiency", "--highest-wasted-bytes", "32024", str(DIVE_IMAGE))
    assert code == 1
    assert "FAIL highestWastedBytes" in out
    code, _, _ = invoke("efficiency", "--highest-wasted-bytes", "32025", str(DIVE_IMAGE))
    assert code == 0


@pytest.mark.parametrize(
    "args",
    [
        ("--lowest-efficiency", "1.1"),
        ("--lowest-efficiency", "-9"),
        ("--highest-wasted-bytes", "1BB"),
        ("--highest-user-wasted-percent", "10"),
    ],
)
def test_misconfigured_gates_are_usage_errors(args: tuple[str, str]) -> None:
    # dive's "misconfigured" cases: refused before anything is read
    code, out, err = invoke("efficiency", *args, str(DIVE_IMAGE))
    assert code == 2
    assert out == "" and args[0] in err


def test_evaluate_gates_nan_passes_like_go() -> None:
    report = calculate([file_entry("a", 1)]).report()
    (gate,) = evaluate_gates(report, highest_user_wasted_percent=0.0)
    assert gate.ok  # NaN compares false in Go, so the rule passes


def test_crafted_archive_through_the_cli(tmp_path: Path) -> None:
    image = write_image(
        tmp_path / "img.tar",
        [
            build_layer(
                [dir_entry("app"), file_entry("app/big.bin", 1000), file_entry("app/keep", 10)]
            ),
            build_layer([file_entry("app/big.bin", 1000, mode=0o755)]),
            build_layer([dir_entry("app"), file_entry("app/.wh.big.bin")]),
        ],
    )
    code, out, err = invoke("efficiency", "--json", str(image))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["inefficient_paths"] == [
        {
            "path": "/app/big.bin",
            "count": 3,
            "size_bytes": 2000,
            "min_size_bytes": 0,
            "layers": [0, 1, 2],
        }
    ]
    assert doc["wasted_bytes"] == 2000
    assert doc["efficiency"] == 10 / 2010
    assert doc["user_wasted_percent"] == 2000 / 1000


def test_a_corrupted_layer_is_refused() -> None:
    code, _, err = invoke("efficiency", str(SAMPLES / "tampered" / "layer-byte-flipped.tar"))
    assert code == 3
    assert "diff_id mismatch" in err
