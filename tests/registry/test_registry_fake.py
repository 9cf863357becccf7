"""The registry client against a fake registry's odd behaviours: redirects to blob storage,
429, no or a wrong Docker-Content-Digest, blobs that break off, bytes that do not match."""

from __future__ import annotations

import base64
import inspect
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.registry.fake_registry import PASSWORD, USER, Behaviour, FakeRegistry, serve
from tests.support.cli import Result, invoke, ok
from tests.support.paths import CORPUS
from tests.support.trees import extract_trusted


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("fake-layout")
    with tarfile.open(CORPUS / "oci-archive-gzip-dive.tar") as tar:
        extract_trusted(tar, target)
    return target


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("DOCKSCOPE_CACHE", str(directory))
    return directory


@pytest.fixture
def fake(layout: Path, cache: Path) -> Iterator[FakeRegistry]:
    with serve(layout) as registry:
        yield registry


def cached_blobs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "blobs").rglob("*") if p.is_file())


def top_layer(fake: FakeRegistry, layout: Path) -> str:
    """The digest of the served image's last layer."""
    import json

    manifest = json.loads(
        (layout / "blobs" / "sha256" / fake.manifest_digest().split(":")[1]).read_bytes()
    )
    digest: str = manifest["layers"][-1]["digest"]
    return digest


def one_line_error(result_err: str, ref: str) -> str:
    lines = result_err.strip().splitlines()
    assert len(lines) == 1, result_err
    assert lines[0].startswith(f"dockscope: {ref}: "), lines[0]
    return lines[0]


def test_verify_reads_every_blob_once_and_the_cache_serves_the_next_commands(
    fake: FakeRegistry, cache: Path
) -> None:
    ref = fake.ref()
    ok(invoke("inspect", ref))
    first_inspect = fake.blob_requests()
    # inspect fetched the config whole; the layer only its first bytes (a Range request)
    assert [r[3] for r in first_inspect] == [None, "bytes=0-511"]
    fake.requests.clear()
    result = invoke("verify", "--json", ref)
    assert result.code == 0, result.output
    fetched = [r[1] for r in fake.blob_requests() if r[3] is None]
    assert len(fetched) == len(set(fetched))  # each blob once
    assert cached_blobs(cache)
    # the user's alone: blobs of private images
    assert {p.stat().st_mode & 0o777 for p in cached_blobs(cache)} == {0o600}
    assert {p.stat().st_mode & 0o777 for p in cache.rglob("*") if p.is_dir()} == {0o700}
    fake.requests.clear()
    ok(invoke("verify", ref))
    ok(invoke("inspect", ref))
    ok(invoke("ls", ref))
    assert fake.blob_requests() == []
    # by digest, not even the manifest is asked for again
    fake.requests.clear()
    ok(invoke("inspect", fake.ref(f"dive@{fake.manifest_digest()}")))
    assert fake.requests == []


def test_redirected_blobs_never_get_the_authorization_header(fake: FakeRegistry) -> None:
    fake.behaviour = Behaviour(require_auth=True, redirect_blobs=True)
    result = invoke("verify", "--creds", f"{USER}:{PASSWORD}", fake.ref())
    assert result.code == 0, result.output
    storage = [r for r in fake.requests if r[1].startswith("/storage/")]
    api = [r for r in fake.requests if r[1].startswith("/v2/") and "/blobs/" in r[1]]
    assert storage and api
    assert all(r[2] is None for r in storage)
    assert all(r[2] is not None and r[2].startswith("Basic ") for r in api)
    assert PASSWORD not in result.output


def test_throttled_requests_are_retried(fake: FakeRegistry) -> None:
    fake.behaviour = Behaviour(throttle=2)
    result = invoke("verify", fake.ref())
    assert result.code == 0, result.output
    config = [r for r in fake.requests if "/blobs/" in r[1]]
    assert len(config) >= 3 * 2  # two 429s before each blob's first answer


def test_a_manifest_without_docker_content_digest_is_read(fake: FakeRegistry) -> None:
    fake.behaviour = Behaviour(no_content_digest=True)
    document = invoke("inspect", "--json", fake.ref()).json()
    assert document["manifest_digest"] == fake.manifest_digest()


def test_a_wrong_docker_content_digest_is_an_error(fake: FakeRegistry, cache: Path) -> None:
    fake.behaviour = Behaviour(wrong_content_digest=True)
    ref = fake.ref()
    result = invoke("inspect", ref)
    assert result.code == 3
    line = one_line_error(result.err, ref)
    assert "Docker-Content-Digest" in line
    assert cached_blobs(cache) == []


def test_a_manifest_that_is_not_the_digest_asked_for_is_refused(
    fake: FakeRegistry, layout: Path, cache: Path
) -> None:
    digest = fake.manifest_digest()
    real = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    fake.behaviour = Behaviour(manifest_bytes=real.replace(b"{", b"{ ", 1))
    ref = fake.ref(f"dive@{digest}")
    result = invoke("inspect", ref)
    assert result.code == 3
    assert f"not the {digest} asked for" in one_line_error(result.err, ref)
    assert cached_blobs(cache) == []


def test_a_blob_that_breaks_off_is_resumed_with_range(fake: FakeRegistry) -> None:
    fake.behaviour = Behaviour(break_blobs_after=100)
    result = invoke("verify", fake.ref())
    assert result.code == 0, result.output
    assert any(r[3] == "bytes=100-" for r in fake.requests)


def test_a_stalled_blob_read_times_out_and_resumes(
    fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from inspect_tool.registry import client

    monkeypatch.setattr(client, "TIMEOUT", httpx.Timeout(0.5))
    fake.behaviour = Behaviour(stall_blobs_after=100)
    result = invoke("verify", fake.ref())
    assert result.code == 0, result.output
    assert any(r[3] == "bytes=100-" for r in fake.requests)


def test_a_server_that_ignores_range_is_read_again_from_the_start(
    fake: FakeRegistry, cache: Path
) -> None:
    fake.behaviour = Behaviour(break_blobs_after=100, break_times=1, ignore_range=True)
    result = invoke("verify", fake.ref())
    assert result.code == 0, result.output
    assert any(r[3] == "bytes=100-" for r in fake.requests)
    assert len(cached_blobs(cache)) == 3  # manifest, config, layer


def test_a_blob_that_keeps_breaking_is_truncated_exit_3_and_not_cached(
    fake: FakeRegistry, cache: Path
) -> None:
    fake.behaviour = Behaviour(break_blobs_after=100, ignore_range=True)
    ref = fake.ref()
    result = invoke("ls", ref)
    assert result.code == 3
    assert "truncated: ends after 100 of " in one_line_error(result.err, ref)
    assert [p.name for p in cached_blobs(cache)] == [fake.manifest_digest().split(":")[1]]


def test_a_blob_whose_bytes_do_not_match_is_an_error_and_is_not_cached(
    fake: FakeRegistry, layout: Path, cache: Path
) -> None:
    layer = top_layer(fake, layout)
    fake.behaviour = Behaviour(corrupt_blob=layer)
    ref = fake.ref()
    result = invoke("ls", ref)
    assert result.code == 3
    line = one_line_error(result.err, ref)
    assert f"blob {layer}: content does not match its digest" in line
    names = [p.name for p in cached_blobs(cache)]
    assert layer.split(":")[1] not in names
    assert not [n for n in names if n.startswith(".")]  # no temporary file left behind
    verified = invoke("verify", ref)
    assert verified.code == 1  # verify reports it among its findings
    assert "content does not match its digest" in verified.output


@pytest.mark.parametrize(
    ("tail", "args", "expected"),
    [
        ("dive:nope", [], "manifest nope: not found (404 MANIFEST_UNKNOWN)"),
        ("dive:v1", [], "authentication required (no credentials) (401 UNAUTHORIZED)"),
        ("dive:v1", ["--creds", "fakeuser:wrong-secret-1234"], "credentials were refused"),
    ],
)
def test_registry_errors_are_one_line_exit_3(
    fake: FakeRegistry, tail: str, args: list[str], expected: str
) -> None:
    if "404" not in expected:
        fake.behaviour = Behaviour(require_auth=True)
    ref = fake.ref(tail)
    result = invoke("inspect", *args, ref)
    assert result.code == 3
    assert expected in one_line_error(result.err, ref)
    assert "wrong-secret-1234" not in result.output


def test_unknown_host_is_one_line_exit_3() -> None:
    ref = "docker://no-such-registry.invalid/dive:v1"
    result = invoke("inspect", ref)
    assert result.code == 3
    assert "unknown host" in one_line_error(result.err, ref)


def test_credentials_never_appear_in_output(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.behaviour = Behaviour(require_auth=True, redirect_blobs=True)
    creds = f"{USER}:{PASSWORD}"
    ref = fake.ref()
    outputs = [
        invoke("inspect", "--json", "--creds", creds, ref),
        invoke("verify", "--json", "--creds", creds, ref),
        invoke("inspect", "--creds", creds, ref),
        invoke("inspect", "--creds", "fakeuser:" + PASSWORD + "x", ref),
        invoke(
            "--debug",
            "inspect",
            "--creds",
            "fakeuser:" + PASSWORD + "x",
            ref,
            catch_exceptions=True,
        ),
    ]
    report = tmp_path / "report.html"
    outputs.append(invoke("report", "--creds", creds, "-o", report, ref))
    assert outputs[0].code == 0 and outputs[1].code == 0
    for result in outputs:
        assert PASSWORD not in result.output
    assert report.is_file() and PASSWORD not in report.read_text()
    encoded = __import__("base64").b64encode(creds.encode()).decode()
    for result in outputs:
        assert encoded not in result.output


def test_push_sends_no_credentials_to_an_upload_location_on_another_host(
    fake: FakeRegistry, layout: Path
) -> None:
    from inspect_tool.registry.access import RegistryAccess
    from inspect_tool.registry.push import push_image
    from inspect_tool.sources import open_image

    fake.behaviour = Behaviour(require_auth=True, upload_elsewhere=True)
    source, image = open_image(layout)
    with source:
        result = push_image(
            source, image, fake.ref("pushed:v1"), RegistryAccess(creds=f"{USER}:{PASSWORD}")
        )
    assert image.manifest is not None
    assert result.manifest_digest == image.manifest.digest
    assert fake.uploaded["/v2/pushed/manifests/v1"] == image.manifest.raw
    puts = [r for r in fake.requests if r[0] == "PUT" and r[1].startswith("/upload/")]
    assert len(puts) == 2 and all(r[2] is None for r in puts)  # config and layer
    posts = [r for r in fake.requests if r[0] == "POST"]
    assert posts and all(str(r[2]).startswith("Basic ") for r in posts)


def test_credentials_are_not_sent_to_a_plain_http_token_service(fake: FakeRegistry) -> None:
    fake.behaviour = Behaviour(require_auth=True, bearer_realm="http://192.0.2.1/token")
    ref = fake.ref()
    result = invoke("inspect", "--creds", f"{USER}:{PASSWORD}", ref)
    assert result.code == 3
    assert "token service is plain HTTP" in one_line_error(result.err, ref)


def test_pull_fetches_each_blob_once_and_the_cache_links_the_files_written(
    fake: FakeRegistry, cache: Path, tmp_path: Path
) -> None:
    """pull writes each layer straight to the layout (one GET each) and the cache takes the
    verified file as a hard link: the next command on the reference reads nothing remote."""
    out = tmp_path / "pulled"
    result = invoke("pull", "--json", fake.ref().removeprefix("docker://"), str(out))
    assert result.code == 0, result.output
    assert result.json()["verified"]["failed"] == []
    fetched = [r[1] for r in fake.blob_requests() if r[3] is None]
    assert len(fetched) == len(set(fetched)) == 2  # config and layer, whole, once
    # the config was cached when the image was read; the layer is the file written
    [layer] = result.json()["layers"]
    hex_digest = layer["digest"].split(":")[1]
    written = out / "blobs" / "sha256" / hex_digest
    assert (cache / "blobs" / "sha256" / hex_digest).stat().st_ino == written.stat().st_ino
    fake.requests.clear()
    ok(invoke("ls", fake.ref()))
    assert fake.blob_requests() == []


def test_pull_of_a_blob_whose_bytes_do_not_match_leaves_nothing(
    fake: FakeRegistry, layout: Path, cache: Path, tmp_path: Path
) -> None:
    layer = top_layer(fake, layout)
    fake.behaviour = Behaviour(corrupt_blob=layer)
    ref = fake.ref()
    result = invoke("pull", ref, str(tmp_path / "pulled"))
    assert result.code == 3
    assert "blob digest mismatch" in one_line_error(result.err, ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert layer.split(":")[1] not in [p.name for p in cached_blobs(cache)]


def with_a_wrong_diff_id(layout: Path, target: Path) -> Path:
    """A copy of ``layout`` whose config claims a wrong diff_id for its last layer (the blob
    digests all right: only decompressing the layer tells)."""
    import hashlib
    import json
    import shutil

    shutil.copytree(layout, target)
    blobs = target / "blobs" / "sha256"
    index = json.loads((target / "index.json").read_text())
    entry = index["manifests"][0]
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    config["rootfs"]["diff_ids"][-1] = "sha256:" + "0" * 64

    def put(data: bytes) -> str:
        hex_digest = hashlib.sha256(data).hexdigest()
        (blobs / hex_digest).write_bytes(data)
        return f"sha256:{hex_digest}"

    config_bytes = json.dumps(config).encode()
    manifest["config"] = {
        **manifest["config"],
        "digest": put(config_bytes),
        "size": len(config_bytes),
    }
    manifest_bytes = json.dumps(manifest).encode()
    entry.update(digest=put(manifest_bytes), size=len(manifest_bytes))
    (target / "index.json").write_text(json.dumps(index))
    return target


def test_pull_checks_the_transport_by_default_and_the_diff_ids_with_verify(
    layout: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer whose diff_id the config gets wrong: the default pull checks what the transport
    proves (every blob's digest, the manifest's, the config's) and decompresses nothing, so it
    passes and says the diff_ids were not checked; pull --verify and verify catch it."""
    from inspect_tool.layers import decompress

    bad = with_a_wrong_diff_id(layout, tmp_path / "bad-layout")
    with serve(bad) as registry:
        ref = registry.ref().removeprefix("docker://")
        with monkeypatch.context() as patched:

            def refuse(*args: object, **kwargs: object) -> None:
                raise AssertionError("a layer was decompressed")

            patched.setattr(decompress.LayerStream, "__init__", refuse)
            result = invoke("pull", "--json", ref, str(tmp_path / "default"))
        assert result.code == 0, result.output
        verified = result.json()["verified"]
        assert verified["ok"] is True and verified["diff_ids_checked"] is False
        assert {"blob-digest", "manifest-digest", "image-id", "media-type"} <= set(
            verified["checked"]
        )
        assert "diff-id" not in verified["checked"]
        text = ok(invoke("pull", ref, str(tmp_path / "text")))
        assert "diff_ids not checked: --verify does" in text

        after = invoke("verify", "--json", str(tmp_path / "default"))
        assert after.code == 1
        assert [f["check"] for f in after.json()["findings"] if not f["ok"]] == [
            "diff-id",
            "chain-id",
        ]

        checked = invoke("pull", "--verify", "--json", ref, str(tmp_path / "checked"))
        assert checked.code == 1
        assert checked.json()["verified"]["diff_ids_checked"] is True
        failed = {f["check"] for f in checked.json()["verified"]["failed"]}
        assert "diff-id" in failed
        assert not (tmp_path / "checked").exists()


def test_a_warm_pull_links_the_cached_blobs_and_still_checks_their_digests(
    fake: FakeRegistry, cache: Path, tmp_path: Path
) -> None:
    """With the blobs in the cache, pull asks the registry for none: each is hard-linked
    into the layout (no bytes written) and hashed there; a cached blob whose bytes changed is
    a digest mismatch (exit 3) and the layout is not left behind."""
    ref = fake.ref().removeprefix("docker://")
    ok(invoke("pull", ref, str(tmp_path / "first")))
    fake.requests.clear()
    result = invoke("pull", "--json", ref, str(tmp_path / "second"))
    assert result.code == 0, result.output
    assert fake.blob_requests() == []
    [layer] = result.json()["layers"]
    hex_digest = layer["digest"].split(":")[1]
    written = tmp_path / "second" / "blobs" / "sha256" / hex_digest
    cached = cache / "blobs" / "sha256" / hex_digest
    assert written.stat().st_ino == cached.stat().st_ino
    assert written.stat().st_mode & 0o777 == 0o644
    ok(invoke("verify", str(tmp_path / "second")))

    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    broken = invoke("pull", ref, str(tmp_path / "third"))
    assert broken.code == 3
    assert "blob digest mismatch" in broken.err
    assert not (tmp_path / "third").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".third")]


def _takes_an_image(command: Callable[..., Any]) -> bool:
    """Whether a command has a parameter parsed as an IMAGE (cli/_common.image_location)."""
    from inspect_tool.cli._common import image_location

    parameters = inspect.signature(command).parameters.values()
    return any(getattr(p.default, "parser", None) is image_location for p in parameters)


ACCESS_OPTIONS = ("--creds", "--authfile", "--cert-dir", "--tls-verify")


def test_every_command_that_takes_an_image_has_the_registry_options() -> None:
    from inspect_tool.cli import app

    commands = {
        info.name or info.callback.__name__.replace("_", "-"): info.callback
        for info in app.registered_commands
        if info.callback is not None
    }
    taking = {name for name, callback in commands.items() if _takes_an_image(callback)}
    assert {"inspect", "packages", "secrets", "unpack"} <= taking
    for name in sorted(taking):
        shown = invoke(name, "--help", env={"COLUMNS": "200"}).out
        for option in ACCESS_OPTIONS:
            assert option in shown, f"dockscope {name} --help lacks {option}"


@pytest.mark.parametrize("command", ["packages", "secrets", "unpack"])
def test_the_registry_options_reach_the_registry(
    fake: FakeRegistry, tmp_path: Path, command: str
) -> None:
    """packages, secrets and unpack read a registry that wants credentials: refused without
    them, read with --creds, and with --authfile naming an auth.json that holds them."""
    fake.behaviour = Behaviour(require_auth=True)
    ref = fake.ref()

    def run(*options: str, dest: str) -> Result:
        extra = [str(tmp_path / dest)] if command == "unpack" else []
        return invoke(command, *options, ref, *extra)

    refused = run(dest="none")
    assert refused.code == 3
    assert "authentication required (no credentials)" in one_line_error(refused.err, ref)
    with_creds = run("--creds", f"{USER}:{PASSWORD}", dest="creds")
    assert with_creds.code in (0, 1), with_creds.output
    authfile = tmp_path / "auth.json"
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {fake.host: {"auth": encoded}}}))
    with_authfile = run("--authfile", str(authfile), dest="authfile")
    assert with_authfile.code == with_creds.code, with_authfile.output
    if command == "unpack":
        assert any((tmp_path / "creds").iterdir())
    wrong = run("--creds", f"{USER}:wrong-secret-1234", dest="wrong")
    assert wrong.code == 3 and "credentials were refused" in wrong.err
    assert PASSWORD not in with_creds.output + with_authfile.output
