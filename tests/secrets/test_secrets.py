"""``dockscope secrets``: planted secrets of every rule in added, overwritten and deleted files
and in the config; false positives that must not fire (documentation, tests, placeholders,
hashes, binaries)."""

from __future__ import annotations

import base64
import io
import json
import random
import tarfile
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.analyze.secrets import RULE_IDS, entropy, high_entropy, redact, scan_text
from tests.support.cli import invoke
from tests.support.images import layer_tar, write_image

RNG = random.Random(15)


def token(alphabet: str, length: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(length))


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def pem(kind: str) -> str:
    body = base64.encodebytes(RNG.randbytes(600)).decode()
    return f"-----BEGIN {kind}-----\n{body}-----END {kind}-----\n"


GITHUB = "ghp_" + token(ALNUM, 36)
GITLAB = "glpat-" + token(ALNUM, 20)
SLACK = "xoxb-" + token("0123456789", 12) + "-" + token(ALNUM, 24)
AWS_ID = "AKIA" + token(UPPER, 16)
AWS_SECRET = token(ALNUM + "/+", 40)
KUBE_TOKEN = token(ALNUM, 40)
ENV_TOKEN = token(ALNUM, 32)
SHADOW = "$6$saltsalt$" + token(ALNUM + "./", 86)
GCP_KEY = pem("PRIVATE KEY").replace("\n", "\\n")

PLANTED: dict[str, bytes] = {
    "root/.ssh/id_rsa": pem("RSA PRIVATE KEY").encode(),
    "root/.ssh/id_ed25519": pem("OPENSSH PRIVATE KEY").encode(),
    "app/config.yml": b"database:\n  host: db\n  db_password: hunter2x9\n",
    "app/.env": f"DEBUG=1\nAPI_TOKEN={ENV_TOKEN}\n".encode(),
    "root/.bash_history": b"ls\nmysql -u root -pS3cretPass mydb\ncd /\n",
    "root/.docker/config.json": json.dumps(
        {"auths": {"registry.example.org": {"auth": base64.b64encode(b"deploy:pa55w0rd").decode()}}}
    ).encode(),
    "root/.kube/config": (
        f"apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: {KUBE_TOKEN}\n"
    ).encode(),
    "app/gcp.json": (
        '{"type": "service_account", "project_id": "p", "private_key_id": "1",\n'
        f' "private_key": "{GCP_KEY}", "client_email": "a@p.iam.gserviceaccount.com"}}\n'
    ).encode(),
    "app/settings.py": f'GITHUB = "{GITHUB}"\nSLACK_BOT = "{SLACK}"\nCI = "{GITLAB}"\n'.encode(),
    "app/aws.ini": (
        f"[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    ).encode(),
    "app/db.url": b"DATABASE_URL=postgres://app:Sup3rSecret@db:5432/app\n",
    "etc/shadow": f"root:{SHADOW}:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n".encode(),
    "app/client.py": b'client = Client(api_key="' + token(ALNUM, 30).encode() + b'")\n',
}

# rule each planted file must raise (at least)
EXPECTED = {
    "/root/.ssh/id_rsa": "private-key",
    "/root/.ssh/id_ed25519": "private-key",
    "/app/config.yml": "password-assignment",
    "/app/.env": "dotenv-secret",
    "/root/.bash_history": "shell-history-password",
    "/root/.docker/config.json": "registry-auth",
    "/root/.kube/config": "kubeconfig-credential",
    "/app/gcp.json": "gcp-service-account",
    "/app/aws.ini": "aws-access-key-id",
    "/app/db.url": "url-credentials",
    "/etc/shadow": "shadow-password-hash",
    "/app/client.py": "password-literal",
}

NOT_SECRETS: dict[str, bytes] = {
    # documentation and tests ship test keys and examples: set aside
    "usr/share/doc/tool/README": f"Example: {AWS_ID}\n{pem('RSA PRIVATE KEY')}".encode(),
    "app/lib/tests/server.key": pem("PRIVATE KEY").encode(),
    "app/NOTES.md": f"token: {GITHUB}\n".encode(),
    # placeholders, hashes, references: never fire
    "app/docs.txt": b"Set AKIAIOSFODNN7EXAMPLE and wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "app/aws.cfg": b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    "app/checksums.conf": (
        b"secret_sha256 = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
        b"token_md5: d41d8cd98f00b204e9800998ecf8427e\n"
    ),
    "app/app.conf": b"password = ${DB_PASSWORD}\nsecret: <your-secret-here>\npass=changeme\n"
    b"# password = commented-out-example\n",
    "app/.env.example": b"API_TOKEN=abcdefghijklmnop1234\n",
    "app/pem.py": b'HEADER = "-----BEGIN RSA PRIVATE KEY-----"\n',
    "app/types.py": b'def sign(private_key: "RSAPrivateKey", password: str = None): ...\n',
    "app/url.txt": b"see https://user:{password}@host and http://example.com:8080/x\n",
    "etc/nsswitch.conf": b"passwd:         files systemd\n",
    "usr/lib/python3/dist-packages/oauthlib/x.py": b'access_token = "2YotnFZFEjr1zCsicMWpAA"\n',
    # binary files are skipped by type
    "app/blob.bin": b"\x7fELF\0\0\0" + f"{AWS_ID}".encode(),
}


def tar_with(files: dict[str, bytes], whiteouts: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name in whiteouts:
            tf.addfile(tarfile.TarInfo(name))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layers = [
        tar_with({**PLANTED, **NOT_SECRETS}),
        # layer 1 deletes the key and overwrites the config with a reference
        tar_with(
            {"app/config.yml": b"database:\n  db_password: ${DB_PASSWORD}\n"},
            whiteouts=("root/.ssh/.wh.id_rsa",),
        ),
    ]
    config = {
        "config": {
            "Env": [
                "PATH=/usr/bin",
                "DB_PASSWORD=hunter2secret",
                "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
                "PYTHON_SHA256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ],
            "Labels": {"maintainer": "team@example.org", "ci.token": GITHUB},
        },
        "history": [
            {"created_by": "RUN curl -u admin:Passw0rd1 https://x.example/install.sh | sh"},
            {"created_by": "ARG NPM_TOKEN=npm_" + token(ALNUM, 36)},
        ],
    }
    return write_image(tmp_path_factory.mktemp("secrets") / "i.tar", layers, **config)


def secrets_json(image: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke("secrets", "--json", *args, image)
    assert result.code in (0, 1), result.err
    return result.code, result.json()


def test_every_planted_secret_is_found_and_nothing_else(image: Path) -> None:
    code, document = secrets_json(image)
    assert code == 1
    files = [f for f in document["findings"] if f["layer"] is not None]
    found = {(f["path"], f["rule"]) for f in files}
    for path, rule in EXPECTED.items():
        assert (path, rule) in found, path
    flagged = {f["path"] for f in files}
    assert flagged - set(EXPECTED) == {"/app/settings.py"}
    settings = {f["rule"] for f in files if f["path"] == "/app/settings.py"}
    assert settings == {"github-token", "slack-token", "gitlab-token"}
    aws = {f["rule"] for f in files if f["path"] == "/app/aws.ini"}
    assert aws == {"aws-access-key-id", "aws-secret-access-key"}
    assert not any(f["path"].startswith("/app/blob") for f in files)
    assert document["binary_skipped"] == 1
    assert document["set_aside"] == {
        "distribution defaults": 1,
        "documentation": 3,
        "installed libraries (generic rules)": 1,
        "tests or examples": 2,
    }
    assert set(document["rules"]) == set(RULE_IDS)


def test_deleted_and_overwritten_versions_are_the_forensic_finding(image: Path) -> None:
    _, document = secrets_json(image)
    fates = {
        (f["path"], f["layer"]): (f["fate"], f["by_layer"])
        for f in document["findings"]
        if f["layer"] is not None
    }
    assert fates[("/root/.ssh/id_rsa", 0)] == ("deleted", 1)
    assert fates[("/app/config.yml", 0)] == ("overwritten", 1)
    assert fates[("/root/.ssh/id_ed25519", 0)] == ("visible", None)
    assert ("/app/config.yml", 1) not in fates  # the new version holds a reference only


def test_config_env_labels_and_history(image: Path) -> None:
    _, document = secrets_json(image)
    config = {(f["path"], f["rule"]) for f in document["findings"] if f["layer"] is None}
    assert config == {
        ("config.Env[1]", "password-assignment"),
        ("config.Labels[ci.token]", "github-token"),
        ("history[0].created_by", "shell-history-password"),
        ("history[1].created_by", "high-entropy-assignment"),
    }


def test_secrets_are_redacted_unless_shown(image: Path) -> None:
    result = invoke("secrets", image)
    assert result.code == 1
    for secret in (GITHUB, AWS_SECRET, KUBE_TOKEN, "hunter2x9", "S3cretPass", "Sup3rSecret"):
        assert secret not in result.output
    _, document = secrets_json(image)
    assert "secret" not in document["findings"][0]
    serialized = json.dumps(document)
    assert GITHUB not in serialized and "hunter2x9" not in serialized
    assert "/root/.ssh/id_rsa" in result.out
    assert "deleted by layer 1" in result.out
    _, shown = secrets_json(image, "--show")
    secrets = {f["secret"] for f in shown["findings"]}
    assert {GITHUB, AWS_ID, AWS_SECRET, KUBE_TOKEN, "hunter2x9", "S3cretPass"} <= secrets
    result = invoke("secrets", "--show", image)
    assert GITHUB in result.out


def test_the_same_secret_has_one_fingerprint_across_places(image: Path) -> None:
    _, document = secrets_json(image)
    github = [f for f in document["findings"] if f["rule"] == "github-token"]
    assert len(github) == 2  # settings.py and the label
    assert len({f["fingerprint"] for f in github}) == 1


def test_a_clean_image_exits_0(tmp_path: Path) -> None:
    clean = write_image(tmp_path / "c.tar", [layer_tar({"etc/hostname": b"box\n"})])
    result = invoke("secrets", clean)
    assert result.code == 0
    assert "No secrets found" in result.out


def test_hostile_names_and_excerpts_are_escaped(tmp_path: Path) -> None:
    name = "app/\x1b]0;pwned\x07/.env"
    layers = [tar_with({name: b"TOKEN=" + token(ALNUM, 24).encode() + b" \x1b[2J\n"})]
    image = write_image(tmp_path / "h.tar", layers)
    result = invoke("secrets", image)
    assert result.code == 1
    assert "\x1b" not in result.out
    assert "\\x1b]0;pwned\\x07" in result.out
    assert "\\x1b[2J" in result.out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz9KEYabc", True),
        (b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", False),  # hex
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", False),
        (b"short1A", False),
        (b"x" * 200, False),  # past the bound: not computed
    ],
)
def test_entropy_is_bounded_and_hashes_never_count(value: bytes, expected: bool) -> None:
    assert high_entropy(value) is expected
    assert entropy(b"") == 0.0


def test_redaction_keeps_at_most_four_characters() -> None:
    assert redact("hunter2") == "********"
    assert redact(GITHUB) == "ghp_********"


def test_a_huge_line_is_bounded() -> None:
    data = b"password=" + b"a" * 5_000_000
    assert len(list(scan_text(data[: 1024 * 1024], "/etc/x.conf"))) <= 1
    many = b"\n".join(b"token = " + token(ALNUM, 30).encode() for _ in range(500))
    assert len(list(scan_text(many, "/etc/app.conf"))) == 100  # MAX_FINDINGS_PER_FILE


ADVERSARIAL = {
    # each of these once made a rule backtrack over the whole input for every start
    "/root/.bash_history": b"mysql " * 170_000,
    "/app/.env": b"pass" * 250_000 + b"\n",
    "/root/.kube/config": b"\n" * 1_000_000,
    "/app/a.key": b"-----BEGIN RSA PRIVATE KEY-----\n" * 30_000,
    "/app/b.key": b"-----BEGIN RSA PRIVATE KEY-----\n" + b"A" * 1_000_000,
    "/app/c.json": b'"type"' + b" " * 1_000_000,
    "/app/d.conf": b"token" * 200_000,
    "/app/e.conf": b"db_" * 300_000 + b"password",
    "/app/f.py": b"x" * 1_000_000,
}


@pytest.mark.parametrize("path", sorted(ADVERSARIAL))
def test_adversarial_inputs_stay_linear(path: str) -> None:
    import time

    start = time.perf_counter()
    list(scan_text(ADVERSARIAL[path], path))
    list(scan_text(ADVERSARIAL[path][:100_000], None))  # as a config string too
    assert time.perf_counter() - start < 5


def test_a_private_key_is_shown_whole_and_excerpted_by_its_header(image: Path) -> None:
    _, shown = secrets_json(image, "--show")
    (key,) = [f for f in shown["findings"] if f["path"] == "/root/.ssh/id_rsa"]
    assert key["secret"] == PLANTED["root/.ssh/id_rsa"].decode().strip()
    assert key["excerpt"] == "-----BEGIN RSA PRIVATE KEY-----********"
    assert key["line"] == 1


def test_the_bytes_a_rule_needs_are_in_every_match_of_its_pattern() -> None:
    # a rule's ``needs`` lets a file (or a line) without them skip the rule: wrong bytes
    # there would lose secrets silently, so every match of every pattern, run on the planted
    # and not-secret files without the prefilter, must hold one
    from inspect_tool.analyze.secrets import RULES

    texts = [*PLANTED.values(), *NOT_SECRETS.values(), b"\n".join(ADVERSARIAL.values())]
    checked = 0
    for rule in RULES:
        if not rule.needs:
            continue
        for text in texts:
            for match in rule.pattern.finditer(text):
                assert any(byte in match.group() for byte in rule.needs), (rule.id, match)
                checked += 1
    assert checked >= 10


def test_a_rule_is_skipped_only_where_the_bytes_it_needs_are_missing() -> None:
    # the same anchors with and without "=": only the assignment finds its secret
    assignment = b'API_TOKEN = "' + token(ALNUM, 32).encode() + b'"\n'
    assert [m.rule for m in scan_text(assignment, "/app/a.py")] == ["high-entropy-assignment"]
    assert list(scan_text(assignment.replace(b"=", b" "), "/app/a.py")) == []
    # a line rule: the needed byte on another line of the file does not make the line match
    split = b'API_TOKEN "' + token(ALNUM, 32).encode() + b'"\nx = 1\n'
    assert list(scan_text(split, "/app/a.py")) == []


def test_a_scan_in_a_worker_process_gives_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # versions overwritten in the same layer, then in later ones, deleted, re-added; batches
    # of one file each: the findings, their order and their fates as a scan in one process
    from inspect_tool.analyze import secrets
    from inspect_tool.sources import ImageSelection, open_image

    key = PLANTED["root/.ssh/id_rsa"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for data in (PLANTED["app/config.yml"], b"db_password: s3cond-version\n"):
            info = tarfile.TarInfo("app/config.yml")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    layers = [
        tar_with(PLANTED),
        buffer.getvalue(),
        tar_with(
            {"app/.env": b"API_TOKEN=other-token-value\n"}, whiteouts=("root/.ssh/.wh.id_rsa",)
        ),
        tar_with({"root/.ssh/id_rsa": key, "app/config.yml": b"db_password: third-version\n"}),
        tar_with({}, whiteouts=("app/.wh.config.yml", "root/.wh..ssh")),
    ]
    path = write_image(tmp_path / "i.tar", layers)
    monkeypatch.setattr(secrets._Worker, "BATCH", 1)
    reports = []
    for parallel in (False, True):
        source, selected = open_image(str(path), ImageSelection(None, None, None))
        with source:
            reports.append(secrets.scan_secrets(source, selected, parallel=parallel))
    alone, worker = reports
    assert worker == alone
    fates = {(f.path, f.layer, f.fate, f.by_layer) for f in alone.findings}
    assert ("/root/.ssh/id_rsa", 0, "deleted", 2) in fates
    assert ("/root/.ssh/id_rsa", 3, "deleted", 4) in fates
    # written twice in layer 1: both versions are layer 1's, overwritten by layer 3
    second = [(f.secret, f.fate, f.by_layer) for f in alone.findings if f.layer == 1]
    assert second == [("hunter2x9", "overwritten", 3), ("s3cond-version", "overwritten", 3)]
    assert ("/app/config.yml", 3, "deleted", 4) in fates


def test_a_worker_process_that_dies_is_an_error_not_a_hang(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from inspect_tool.analyze import secrets
    from inspect_tool.sources import ImageSelection, open_image

    monkeypatch.setattr(sys, "executable", "/bin/false")
    monkeypatch.setattr(secrets._Worker, "BATCH", 1)
    source, selected = open_image(str(image), ImageSelection(None, None, None))
    with source, pytest.raises(RuntimeError, match="secrets worker process"):
        secrets.scan_secrets(source, selected, parallel=True)


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [
        (2, 0.3, True),
        (2, 3.5, True),
        (2, 4.5, False),
        (1, 0.0, False),
        (8, 15.0, True),
        (8, 17.0, False),
    ],
)
def test_the_worker_process_is_used_only_with_a_spare_core(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, expected: bool
) -> None:
    import os

    from inspect_tool.analyze.secrets import spare_core

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert spare_core() is expected
