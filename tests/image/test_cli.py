"""The CLI through typer's CliRunner and as a real process: exit codes, JSON, selection."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from tests.support.cli import invoke
from tests.support.images import docker_archive_members, layer_tar, oci_layout, write_tar

IMAGE_KEYS = {
    "schema_version",
    "kind",
    "source",
    "format",
    "archive_compression",
    "repo_tags",
    "ref_name",
    "image_id",
    "manifest_digest",
    "manifest_media_type",
    "config_media_type",
    "architecture",
    "os",
    "variant",
    "created",
    "author",
    "config",
    "history",
    "layers",
    "warnings",
}
LAYER_KEYS = {
    "index",
    "digest",
    "diff_id",
    "chain_id",
    "media_type",
    "compression",
    "size",
    "uncompressed_size",
    "created_by",
    "history_index",
}
FINDING_KEYS = {"check", "subject", "expected", "actual", "ok", "message"}
CHECKS = {
    "blob-exists",
    "blob-size",
    "blob-digest",
    "image-id",
    "diff-id",
    "diff-id-count",
    "chain-id",
    "manifest-digest",
    "docker25-agreement",
    "legacy-json",
    "legacy-repositories",
    "media-type",
    "duplicate-path",
    "layer-tar",
    "layer-tar-ambiguous",
    "oci-layout",
    "image-readable",
    "index-cycle",
    "index-json",
    "layer-sources",
    "archive-members",
}


def test_inspect_json_schema(corpus: Path) -> None:
    code, out, _ = invoke("inspect", "--json", str(corpus / "oci-archive-zstd-dive.tar"))
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == IMAGE_KEYS
    assert doc["kind"] == "image"
    assert doc["format"] == "oci-archive"
    assert doc["architecture"] == "arm64" and doc["os"] == "linux"
    for layer in doc["layers"]:
        assert set(layer) == LAYER_KEYS
    assert doc["layers"][0]["compression"] == "zstd"
    assert doc["layers"][0]["media_type"].endswith("+zstd")
    assert doc["layers"][0]["uncompressed_size"] is None


def test_inspect_json_legacy_has_no_manifest(corpus: Path) -> None:
    code, out, _ = invoke("inspect", "--json", str(corpus / "docker-save-legacy-dive.tar"))
    assert code == 0
    doc = json.loads(out)
    assert doc["manifest_digest"] is None
    assert doc["repo_tags"] == ["dive-test:latest"]
    assert len(doc["layers"]) == 14
    assert doc["layers"][0]["uncompressed_size"] == 1369600
    assert sum(1 for h in doc["history"] if h.get("empty_layer")) == 1


def test_verify_json_schema_and_exit_codes(corpus: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("verify", "--json", str(corpus / "docker-save-legacy-dive.tar"))
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["schema_version"] == 1
    assert doc["summary"]["failed"] == 0
    assert doc["summary"]["passed"] == len(doc["findings"])
    for finding in doc["findings"]:
        assert set(finding) == FINDING_KEYS
        assert finding["check"] in CHECKS


def test_verify_collects_every_failure(tmp_path: Path) -> None:
    """Two independent defects: both are reported (no fail-fast), exit 1."""
    digests = oci_layout(tmp_path / "img", [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})])
    blobs = tmp_path / "img/blobs/sha256"
    manifest = json.loads((blobs / digests["manifest"].split(":")[1]).read_text())
    for layer in manifest["layers"]:
        path = blobs / layer["digest"].split(":")[1]
        data = bytearray(path.read_bytes())
        data[600] ^= 0xFF  # inside the first member's data: same size, different bytes
        path.write_bytes(bytes(data))
    code, out, _ = invoke("verify", "--json", str(tmp_path / "img"))
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    digest_failures = [f for f in failed if f["check"] == "blob-digest"]
    diff_failures = [f for f in failed if f["check"] == "diff-id"]
    assert len(digest_failures) == 2 and len(diff_failures) == 2
    assert all(f["expected"] != f["actual"] for f in failed)


def test_verify_catches_media_type_lie(tmp_path: Path) -> None:
    digests = oci_layout(tmp_path / "img", [layer_tar({"a": b"1"})])
    blobs = tmp_path / "img/blobs/sha256"
    manifest_path = blobs / digests["manifest"].split(":")[1]
    manifest = json.loads(manifest_path.read_text())
    manifest["layers"][0]["mediaType"] += "+gzip"
    data = json.dumps(manifest).encode()
    manifest_path.unlink()
    import hashlib

    new_hex = hashlib.sha256(data).hexdigest()
    (blobs / new_hex).write_bytes(data)
    index = json.loads((tmp_path / "img/index.json").read_text())
    index["manifests"][0].update(digest=f"sha256:{new_hex}", size=len(data))
    (tmp_path / "img/index.json").write_text(json.dumps(index))
    code, out, _ = invoke("verify", "--json", str(tmp_path / "img"))
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    assert [f["check"] for f in failed] == ["media-type"]
    assert failed[0]["actual"] == "none"


def test_verify_reports_duplicate_paths(tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for content in (b"first", b"second"):
            info = tarfile.TarInfo("etc/passwd")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    path = write_tar(tmp_path / "dup.tar", docker_archive_members([buffer.getvalue()]))
    code, out, _ = invoke("verify", "--json", str(path))
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    assert [(f["check"], f["actual"]) for f in failed] == [("duplicate-path", "etc/passwd")]


def test_several_images_are_listed_then_selected(tmp_path: Path) -> None:
    first = docker_archive_members([layer_tar({"a": b"1"})], tag="one:1")
    second = docker_archive_members([layer_tar({"b": b"2"})], tag="two:2")
    manifest = json.loads(first.pop("manifest.json")) + json.loads(second.pop("manifest.json"))  # type: ignore[arg-type]
    # the second image's layer directory collides by name with the first: rename it
    layer = second.pop(f"{0:064x}/layer.tar")
    second.pop(f"{0:064x}/VERSION")
    second[f"{1:064x}/layer.tar"] = layer
    manifest[1]["Layers"] = [f"{1:064x}/layer.tar"]
    members = {**first, **second, "manifest.json": json.dumps(manifest).encode()}
    path = write_tar(tmp_path / "multi.tar", members)

    code, out, _ = invoke("inspect", "--json", str(path))
    assert code == 0
    listing = json.loads(out)
    assert listing["kind"] == "listing"
    assert [i["repo_tags"] for i in listing["images"]] == [["one:1"], ["two:2"]]
    assert [i["selector"] for i in listing["images"]] == ["1", "2"]

    code, out, _ = invoke("inspect", "--json", "--image", "two:2", str(path))
    assert code == 0 and json.loads(out)["repo_tags"] == ["two:2"]
    code, out, _ = invoke("inspect", "--json", "--image", "1", str(path))
    assert code == 0 and json.loads(out)["repo_tags"] == ["one:1"]
    code, out, _ = invoke("inspect", "--json", "--image", "docker.io/library/one:1", str(path))
    assert code == 0 and json.loads(out)["repo_tags"] == ["one:1"]

    code, _, err = invoke("inspect", "--image", "three:3", str(path))
    assert code == 2
    assert "one:1" in err and "two:2" in err
    code, _, err = invoke("inspect", "--image", "7", str(path))
    assert code == 2
    code, out, _ = invoke("verify", "--json", str(path))
    assert code == 0
    subjects = " ".join(f["subject"] for f in json.loads(out)["findings"])
    assert "one:1" in subjects and "two:2" in subjects


def test_ref_and_platform_selection(corpus: Path) -> None:
    path = str(corpus / "oci-layout-index-ggcr")
    code, out, _ = invoke("inspect", "--json", "--ref", "2", path)
    assert code == 0
    assert json.loads(out)["manifest_digest"].startswith("sha256:325899857025")
    code, _, err = invoke("inspect", "--ref", "nope", path)
    assert code == 2 and "1, 2, 3, 4" in err
    code, out, _ = invoke("inspect", "--json", "--platform", "linux/amd64", path)
    assert code == 0 and json.loads(out)["kind"] == "listing"
    code, _, err = invoke("inspect", "--platform", "linux/s390x", path)
    assert code == 2 and "linux/amd64" in err
    code, _, err = invoke("inspect", "--platform", "linux", path)
    assert code == 2 and "os/arch" in err


def test_explain_ids(corpus: Path) -> None:
    code, out, _ = invoke(
        "inspect", "--explain-ids", "--json", str(corpus / "oci-archive-gzip-dive.tar")
    )
    assert code == 0
    doc = json.loads(out)
    titles = [s["title"] for s in doc["steps"]]
    assert titles == ["Image ID", "diff_id of layer 0", "chain ID of layer 0", "Manifest digest"]
    assert all(s["matches"] is True for s in doc["steps"])
    code, out, _ = invoke("inspect", "--explain-ids", str(corpus / "docker-save-legacy-dive.tar"))
    assert code == 0
    assert "ChainID(L13) = sha256(ChainID(L12) + ' ' + DiffID(L13))" in out
    assert "no" in out and "manifest digest" in out
    assert "DIFFERS" not in out


def test_explain_ids_commands_really_recompute(corpus: Path) -> None:
    """The shell commands --explain-ids prints give the values it claims."""
    code, out, _ = invoke(
        "inspect", "--explain-ids", "--json", str(corpus / "oci-archive-gzip-dive.tar")
    )
    assert code == 0
    for step in json.loads(out)["steps"]:
        if step["command"] is None:
            continue
        result = subprocess.run(
            ["bash", "-c", step["command"]], capture_output=True, text=True, check=True
        )
        assert result.stdout.split()[0] == step["value"].split(":")[1], step["title"]


def test_explain_ids_needs_one_image(corpus: Path) -> None:
    code, _, err = invoke("inspect", "--explain-ids", str(corpus / "oci-layout-index-ggcr"))
    assert code == 2 and "choose one" in err


def test_help_has_examples() -> None:
    for command in ("inspect", "verify"):
        code, out, _ = invoke(command, "--help")
        assert code == 0
        assert "Examples:" in out and f"dockscope {command}" in out


def test_usage_errors_exit_2() -> None:
    assert invoke("inspect")[0] == 2
    assert invoke("inspect", "--no-such-option", "x")[0] == 2


def test_real_process_module_entry_and_no_color(corpus: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color", "FORCE_COLOR": ""}
    env.pop("FORCE_COLOR")
    result = subprocess.run(
        [sys.executable, "-m", "inspect_tool", "verify", str(corpus / "oci-archive-zstd-dive.tar")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK: all" in result.stdout
    assert "\x1b[" not in result.stdout
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_debug_flag_after_the_command(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "inspect_tool", "inspect", str(path), "--debug"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "inspect_tool", "inspect", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3 and "Traceback" not in result.stderr


def test_version_is_the_package_version() -> None:
    from importlib import metadata

    expected = f"dockscope {metadata.version('dockscope')}\n"
    for flag in ("--version", "-V"):
        assert tuple(invoke(flag)) == (0, expected, "")
    # as the console script runs it: the root answers, no command module is imported
    code = (
        "import os, sys; sys.argv = ['dockscope', '--debug', '--version']; "
        "from inspect_tool import cli; leave = os._exit; "
        "os._exit = lambda code: (print(sorted(m for m in sys.modules if m.startswith("
        "('inspect_tool.cli.', 'inspect_tool.sources', 'runtime_lab', 'rich')))), "
        "sys.stdout.flush(), leave(code)); "
        "cli.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    version, listing = result.stdout.split("\n", 1)
    assert f"{version}\n" == expected
    loaded = ast.literal_eval(listing)
    assert "inspect_tool.cli._usage" in loaded  # the list is read right
    assert [m for m in loaded if not m.startswith("inspect_tool.cli._")] == []


def test_cli_start_is_lazy() -> None:
    code = (
        "import sys, inspect_tool.cli; "
        "heavy = [m for m in ('rich.console', 'zstandard', 'magic', 'tarfile', "
        "'inspect_tool.sources', 'inspect_tool.analyze.verify') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["docker-save-v25-hello-world.tar", "oci-archive-gzip-dive.tar"])
def test_human_inspect_shows_key_fields(corpus: Path, name: str) -> None:
    code, out, _ = invoke("inspect", str(corpus / name))
    assert code == 0
    for label in ("Image ID", "Platform", "Created", "Cmd", "Env", "Layers"):
        assert label in out
    assert "linux/arm64" in out


def test_each_command_line_loads_only_the_module_it_names() -> None:
    """main() builds the app with only the module that registers the command given (a fast
    start); the table must stay true to what each module registers."""
    from inspect_tool.cli import COMMAND_MODULES, build_app

    def names(app: typer.Typer) -> set[str]:
        found = {
            c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
        }
        groups = {
            g.name or (g.typer_instance.info.name if g.typer_instance else None) or ""
            for g in app.registered_groups
        }
        return found | groups

    full = names(build_app())
    assert set(COMMAND_MODULES) <= full
    for command in COMMAND_MODULES:
        assert command in names(build_app(command)), command
    # a command the table does not know still works: every module is loaded then
    assert names(build_app("no-such-command")) == full
