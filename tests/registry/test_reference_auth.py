"""docker:// reference grammar and where credentials are found."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from inspect_tool.registry import auth
from inspect_tool.registry.access import RegistryAccess
from inspect_tool.registry.reference import RegistryReference, registry_host

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "host", "repository", "tag", "digest"),
    [
        (
            "docker://busybox",
            "docker.io",
            "registry-1.docker.io",
            "library/busybox",
            "latest",
            None,
        ),
        ("docker://user/app:1.0", "docker.io", "registry-1.docker.io", "user/app", "1.0", None),
        ("docker://127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "127.0.0.1:5000", "a/b", "t", None),
        ("docker://localhost/app", "localhost", "localhost", "app", "latest", None),
        (f"docker://quay.io/x/y@{DIGEST}", "quay.io", "quay.io", "x/y", None, DIGEST),
        (f"docker://quay.io/x/y:t@{DIGEST}", "quay.io", "quay.io", "x/y", "t", DIGEST),
        ("docker:/ghcr.io/o/r:v", "ghcr.io", "ghcr.io", "o/r", "v", None),  # a Path's folding
        ("docker://[::1]:5000/r", "[::1]:5000", "[::1]:5000", "r", "latest", None),
    ],
)
def test_references_parse(
    text: str, registry: str, host: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = RegistryReference.parse(text)
    assert (ref.registry, ref.host, ref.repository, ref.tag) == (registry, host, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest


@pytest.mark.parametrize(
    "text",
    [
        "docker://",
        "docker://UPPER/case",
        "docker://host.io/Name",
        "docker://host.io/name:bad tag",
        "docker://host.io/name@sha256:short",
        "docker://host.io/a//b",
        "dockerhost/x",
    ],
)
def test_bad_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        RegistryReference.parse(text)


def test_loopback_hosts() -> None:
    for text in ("docker://127.0.0.1:5000/a", "docker://localhost:5000/a", "docker://[::1]/a"):
        assert RegistryReference.parse(text).is_loopback
    assert not RegistryReference.parse("docker://10.0.0.1:5000/a").is_loopback


def test_registry_host_for_login() -> None:
    assert registry_host("https://index.docker.io/v1/") == "docker.io"
    assert registry_host("localhost:5000") == "localhost:5000"
    with pytest.raises(UsageError):
        registry_host("bad host")


def _auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_credentials_are_looked_up_in_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    access = RegistryAccess()
    assert auth.lookup(access, "r.io", "a/b") is None
    write_json(
        home / "home/.docker/config.json",
        {"auths": {"https://r.io/v1/": _auth_entry("docker", "d-pass")}},
    )
    assert auth.lookup(access, "r.io", "a/b") == auth.Credentials("docker", "d-pass")
    write_json(
        home / "home/.config/containers/auth.json",
        {
            "auths": {
                "r.io": _auth_entry("config", "c-pass"),
                "r.io/a/b": _auth_entry("repo", "r-pass"),
            }
        },
    )
    assert auth.lookup(access, "r.io", "a/b") == auth.Credentials("repo", "r-pass")
    assert auth.lookup(access, "r.io", "a/c") == auth.Credentials("config", "c-pass")
    write_json(home / "run/containers/auth.json", {"auths": {"r.io": _auth_entry("run", "x")}})
    assert auth.lookup(access, "r.io", "a/c") == auth.Credentials("run", "x")
    env_file = write_json(home / "env.json", {"auths": {}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env_file))
    assert auth.lookup(access, "r.io", "a/c") is None  # REGISTRY_AUTH_FILE alone
    given = write_json(home / "given.json", {"auths": {"r.io": _auth_entry("given", "g")}})
    assert auth.lookup(RegistryAccess(authfile=given), "r.io", "a") == auth.Credentials(
        "given", "g"
    )
    assert auth.lookup(RegistryAccess(creds="u:p:q", authfile=given), "r.io", "a") == (
        auth.Credentials("u", "p:q")
    )
    with pytest.raises(UsageError):
        auth.lookup(RegistryAccess(authfile=home / "missing.json"), "r.io", "a")


def test_docker_hub_legacy_key(home: Path) -> None:
    write_json(
        home / "home/.docker/config.json",
        {"auths": {"https://index.docker.io/v1/": _auth_entry("hub", "h")}},
    )
    assert auth.lookup(RegistryAccess(), "docker.io", "library/busybox") == auth.Credentials(
        "hub", "h"
    )


def test_credential_helpers(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = home / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "h.io" ]; then '
        'echo \'{"ServerURL":"h.io","Username":"helped","Secret":"s3cret"}\'; exit 0; fi\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    write_json(home / "home/.docker/config.json", {"credHelpers": {"h.io": "fake"}})
    assert auth.lookup(RegistryAccess(), "h.io", "x") == auth.Credentials("helped", "s3cret")
    write_json(home / "home/.docker/config.json", {"credsStore": "fake"})
    assert auth.lookup(RegistryAccess(), "h.io", "x") == auth.Credentials("helped", "s3cret")
    assert auth.lookup(RegistryAccess(), "other.io", "x") is None


def test_store_and_remove_write_0600_atomically(home: Path) -> None:
    target = home / "auth" / "auth.json"
    write_json(target, {"auths": {"keep.io": _auth_entry("k", "k")}, "other": 1})
    auth.store(target, "r.io", auth.Credentials("u", "p"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    document = json.loads(target.read_text())
    assert document["other"] == 1 and set(document["auths"]) == {"keep.io", "r.io"}
    assert auth.lookup(RegistryAccess(authfile=target), "r.io", "x") == auth.Credentials("u", "p")
    auth.remove(target, "r.io")
    assert set(json.loads(target.read_text())["auths"]) == {"keep.io"}
    with pytest.raises(auth.NotLoggedInError):
        auth.remove(target, "r.io")
    assert [p.name for p in target.parent.iterdir()] == ["auth.json"]


def test_reprs_hide_secrets() -> None:
    assert "p4ss" not in repr(auth.Credentials("u", "p4ss"))
    assert "p4ss" not in repr(RegistryAccess(creds="u:p4ss"))
