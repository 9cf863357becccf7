"""Pushing images (the library function `copy` uses) and login/logout, against the real
registries."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.registry.push import push_image
from inspect_tool.sources import open_image
from tests.registry.servers import (
    BASIC_PASSWORD,
    BASIC_USER,
    TOKEN_PASSWORD,
    TOKEN_USER,
    Pki,
    Registry,
    run_skopeo,
)
from tests.support.cli import invoke, ok
from tests.support.paths import CORPUS

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("registry", ["plain", "basic", "token"], indirect=True)
def test_push_keeps_every_digest(
    registry: Registry, layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    access = registry.access(pki, tmp_path / "certs")
    layout = layouts["dive-zstd"].removeprefix("oci:")
    destination = registry.ref("pushed/dive-zstd:v1")
    source, image = open_image(layout)
    with source:
        result = push_image(source, image, destination, access)
        assert image.manifest is not None
        assert result.manifest_digest == image.manifest.digest
        assert {b.action for b in result.blobs} == {"uploaded"}
        raw = run_skopeo("inspect", "--raw", *registry.skopeo_read_args(), destination)
        assert raw.encode() == image.manifest.raw
        summary = json.loads(run_skopeo("inspect", *registry.skopeo_read_args(), destination))
        assert summary["Layers"] == [str(layer.digest) for layer in image.layers]
        again = push_image(source, image, destination, access)
        assert {b.action for b in again.blobs} == {"exists"}
    args = registry.access_args(pki, tmp_path / "certs2")
    ok(invoke("verify", *args, destination))


def test_push_mounts_from_another_repository(
    registry_set: dict[str, Registry], layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    registry = registry_set["token"]
    access = registry.access(pki, tmp_path)
    source, image = open_image(layouts["dive-gzip"].removeprefix("oci:"))
    with source:
        push_image(source, image, registry.ref("mount/first:v1"), access)
        result = push_image(
            source, image, registry.ref("mount/second:v1"), access, mount_from="mount/first"
        )
    assert {b.action for b in result.blobs} == {"mounted"}
    ok(invoke("verify", "--creds", str(registry.creds), registry.ref("mount/second:v1")))


def test_push_of_a_legacy_docker_save_makes_a_docker_manifest(
    registry_set: dict[str, Registry],
) -> None:
    registry = registry_set["plain"]
    destination = registry.ref("pushed/legacy:v1")
    source, image = open_image(CORPUS / "docker-save-legacy-dive.tar")
    with source:
        result = push_image(source, image, destination)
    summary = json.loads(run_skopeo("inspect", "--tls-verify=false", destination))
    assert summary["Digest"] == str(result.manifest_digest)
    config = run_skopeo("inspect", "--config", "--raw", "--tls-verify=false", destination)
    assert config.encode() == image.config.raw
    document = ok(invoke("verify", "--json", destination))
    assert all(f["ok"] for f in json.loads(document)["findings"])


def test_push_to_a_digest_that_is_not_the_manifests_is_refused(
    registry_set: dict[str, Registry], layouts: dict[str, str]
) -> None:
    from inspect_tool.errors import RegistryError

    registry = registry_set["plain"]
    source, image = open_image(layouts["dive-gzip"].removeprefix("oci:"))
    with source, pytest.raises(RegistryError, match="not the sha256:0000"):
        push_image(source, image, registry.ref("pushed/x@sha256:" + "0" * 64))


@pytest.mark.parametrize("registry", ["basic", "token"], indirect=True)
def test_login_logout(
    registry: Registry, layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    user, password = (
        (BASIC_USER, BASIC_PASSWORD) if registry.kind == "basic" else (TOKEN_USER, TOKEN_PASSWORD)
    )
    ref = registry.push(layouts["dive-gzip"], "dockscope/dive-gzip:v1")
    authfile = tmp_path / "auth" / "auth.json"
    tls = ["--cert-dir", str(pki.cert_dir(tmp_path / "certs"))] if registry.tls else []

    def login(typed: str) -> Any:
        return invoke(
            "login",
            "--authfile",
            authfile,
            *tls,
            "-u",
            user,
            "--password-stdin",
            registry.host,
            input=typed + "\n",
        )

    refused = login("wrong-password-42")
    assert refused.code == 3, refused.output
    assert "wrong-password-42" not in refused.output
    assert not authfile.exists()

    result = login(password)
    assert result.code == 0, result.output
    assert "Login Succeeded" in result.out and password not in result.output
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600
    assert registry.host in json.loads(authfile.read_text())["auths"]

    ok(invoke("inspect", "--authfile", authfile, *tls, ref))
    # skopeo reads the file dockscope wrote
    run_skopeo("inspect", "--authfile", str(authfile), "--tls-verify=false", ref)

    ok(invoke("logout", "--authfile", authfile, registry.host))
    assert json.loads(authfile.read_text())["auths"] == {}
    assert invoke("inspect", "--authfile", authfile, *tls, ref).code == 3
    assert invoke("logout", "--authfile", authfile, registry.host).code == 1


def test_tls_needs_the_ca_or_no_verification(
    registry_set: dict[str, Registry], layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    registry = registry_set["tls"]
    ref = registry.push(layouts["dive-gzip"], "dockscope/dive-gzip:v1")
    untrusted = invoke("inspect", ref)
    assert untrusted.code == 3
    assert "TLS certificate not trusted" in untrusted.err
    ok(invoke("inspect", "--tls-verify=false", ref))
    ok(invoke("inspect", "--cert-dir", pki.cert_dir(tmp_path / "certs"), ref))
    # plain HTTP is never tried against a TLS registry that is verified
    assert invoke("inspect", "--tls-verify", "maybe", ref).code == 2


def test_anonymous_token_is_refused_where_the_issuer_grants_nothing(
    registry_set: dict[str, Registry], layouts: dict[str, str]
) -> None:
    registry = registry_set["token"]
    ref = registry.push(layouts["dive-gzip"], "dockscope/dive-gzip:v1")
    result = invoke("inspect", ref)
    assert result.code == 3
    assert "authentication required (no credentials)" in result.err


def test_client_certificates_from_the_cert_dir(
    registry_set: dict[str, Registry], layouts: dict[str, str], pki: Pki, tmp_path: Path
) -> None:
    from tests.registry.servers import start_registry

    registry = start_registry("mtls", tmp_path / "mtls", pki=pki)
    try:
        with_client = pki.cert_dir(tmp_path / "client-certs", client=True)
        ref = registry.ref("dockscope/dive-gzip:v1")
        run_skopeo("copy", "--dest-cert-dir", str(with_client), layouts["dive-gzip"], ref)
        refused = invoke("inspect", "--cert-dir", pki.cert_dir(tmp_path / "ca-only"), ref)
        assert refused.code == 3
        assert "refused the TLS client certificate, or wants one" in refused.err
        assert refused.err.startswith(f"dockscope: {ref}: ")
        ok(invoke("verify", "--cert-dir", with_client, ref))
    finally:
        registry.stop()
