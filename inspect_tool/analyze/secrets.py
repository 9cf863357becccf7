"""Secrets in an image: every version of every file in every layer (those a later layer
deleted or overwrote too: that is the forensic finding), and the config's env, labels and
history commands. The rules are the table in docs/SECRETS.md; this module is their one
definition.

Each regular file's first ``MAX_SCAN`` bytes are read as its layer streams past (nothing is
unpacked); a file with a NUL byte in its first ``BINARY_PROBE`` bytes is binary and skipped.
Each rule names literal anchors (``AKIA``, ``PRIVATE KEY-----``, ``password``, …): its
pattern runs only on the lines that hold one, so a file costs a few ``bytes.find`` calls
unless it holds something secret-shaped. Rules whose matches all hold a ``:`` or ``=``
(``Rule.needs``) are skipped for files, and lines, without one. With ``parallel``, the
rules run in a child process while this one reads and decompresses the layers.
A match is dropped when its value is a placeholder (``AKIAIOSFODNN7EXAMPLE``, ``changeme``,
``${VAR}``, …) and set aside, counted but not reported, when the file is documentation or
tests (``/usr/share/doc``, ``tests/``, ``*.md``, …): test keys ship there. Entropy is
computed only on values of 20 to 128 characters.

A finding names the layer, the path, the rule, the line, a redacted excerpt and a
fingerprint (the secret's sha256, shortened, to follow one secret across layers); the secret
itself travels in ``Finding.secret`` for ``--show`` and is never rendered otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.union import FileInfo, UnionFS
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

MAX_SCAN = 1024 * 1024  # bytes of each file scanned
BINARY_PROBE = 8192
MAX_FINDINGS_PER_FILE = 100
MAX_LINE = 200  # characters of a line kept around a match for the excerpt


@dataclass(frozen=True, slots=True)
class Rule:
    """One kind of secret to look for, a row of the table in docs/SECRETS.md: the pattern that finds
    it, the anchors and bytes that let a line or file be skipped cheaply, and where it applies."""

    id: str
    title: str
    pattern: re.Pattern[bytes]  # group "secret" is the secret
    # literal strings one of which every match holds: only the lines holding one are matched
    # (or, for whole-file rules, only files holding one); ``fold``: searched lower-cased
    anchors: tuple[bytes, ...] = ()
    fold: bool = False
    # bytes one of which every match holds (the ":" or "=" of an assignment): a file, and for
    # line rules a line, without any of them is skipped before the anchors are looked for
    needs: bytes = b""
    lines: bool = True  # a match lies within one line
    paths: Callable[[str, str], bool] | None = None  # only files whose (path, name) pass
    check: Callable[[bytes], bool] | None = None  # the secret must pass too
    content: bool = True  # applies to config strings (env, labels, history) as well
    gate: re.Pattern[bytes] | None = field(init=False, repr=False, compare=False)
    need_mask: int = field(init=False, repr=False, compare=False)  # ``needs`` as _BYTE_BITS

    def __post_init__(self) -> None:
        # anchors sharing a first byte ("ghp_|gho_|…", "AKIA|ASIA|…") become one regex, which
        # re factors into a prefix it skips to quickly; other anchors are looked for one by
        # one with bytes.find, much faster than a regex alternation without a prefix
        shared = len({a[:1] for a in self.anchors}) == 1
        gate = re.compile(b"|".join(re.escape(a) for a in self.anchors)) if shared else None
        object.__setattr__(self, "gate", gate)
        unknown = set(self.needs) - set(_BYTE_BITS)
        if unknown:
            raise ValueError(f"{self.id}: needs only {bytes(_BYTE_BITS)!r}, not {bytes(unknown)!r}")
        object.__setattr__(self, "need_mask", sum(_BYTE_BITS[b] for b in set(self.needs)))


_BYTE_BITS = {ord(":"): 1, ord("="): 2}  # the bytes a rule may need, as bits of a mask


def _byte_mask(data: bytes) -> int:
    """Which of the bytes in ``_BYTE_BITS`` ``data`` holds: one C-level search each."""
    return (b":" in data) | (b"=" in data) << 1


# -- value checks -------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(
    rb"(?i)example|sample|dummy|placeholder|changeme|change_me|your[_-]?|xxxx|\*\*\*|"
    rb"^<.*>$|^\$[{(]?[A-Za-z_(]|^%\(|^\{|^\[|^(none|null|nil|true|false|yes|no|password|secret|"
    rb"token|pass|passwd|empty|redacted|test|string|undefined|required|\.\.\.)$|"
    rb"%[sdr]|%\(|\{\d*\}"
)


def is_placeholder(value: bytes) -> bool:
    stripped = value.strip(b"\"' ")
    return not stripped or bool(_PLACEHOLDER.search(stripped))


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per character (of at most 128 characters)."""
    value = value[:128]
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


_HEX = re.compile(rb"^[0-9a-fA-F]+$")


def high_entropy(value: bytes) -> bool:
    """Random-looking and not a hash: hex strings (checksums, digests) never count."""
    if not 20 <= len(value) <= 128 or _HEX.match(value):
        return False
    classes = sum(bool(re.search(p, value)) for p in (rb"[a-z]", rb"[A-Z]", rb"[0-9]"))
    return classes >= 2 and entropy(value) >= 4.0


def _registry_auth(value: bytes) -> bool:
    """A docker auth value: base64 of user:password."""
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    user, colon, password = decoded.partition(b":")
    return bool(colon and user and password and not is_placeholder(password))


def _pem_body(value: bytes) -> bool:
    return len(re.sub(rb"[^A-Za-z0-9+/=]", b"", value)) >= 64


def _not_placeholder(value: bytes) -> bool:
    return not is_placeholder(value)


# -- which files ---------------------------------------------------------------------------------
def _named(*names: str) -> Callable[[str, str], bool]:
    wanted = set(names)
    return lambda path, name: name in wanted


def _dotenv(path: str, name: str) -> bool:
    if name != ".env" and not name.startswith(".env."):
        return False
    return not name.endswith((".example", ".sample", ".template", ".dist", ".defaults"))


_CONFIG_SUFFIXES = (
    ".conf",
    ".cfg",
    ".cnf",
    ".ini",
    ".yaml",
    ".yml",
    ".json",
    ".xml",
    ".properties",
    ".toml",
    ".env",
    ".rc",
)
_CONFIG_NAMES = (
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".my.cnf",
    ".git-credentials",
    ".s3cfg",
    "credentials",
    "wp-config.php",
    "settings.php",
)
_CODE_SUFFIXES = (
    ".py",
    ".js",
    ".mjs",
    ".cjs",
    ".ts",
    ".php",
    ".rb",
    ".go",
    ".java",
    ".sh",
    ".bash",
    ".pl",
    ".lua",
    ".groovy",
    ".kt",
    ".cs",
    ".ps1",
)


def _config(path: str, name: str) -> bool:
    return name in _CONFIG_NAMES or (
        (path.startswith("/etc/") or name.endswith(_CONFIG_SUFFIXES))
        and not name.endswith(_CODE_SUFFIXES)
    )


def _code(path: str, name: str) -> bool:
    return name.endswith(_CODE_SUFFIXES) and not _config(path, name)


def _kubeconfig(path: str, name: str) -> bool:
    return path.endswith("/.kube/config") or name in (
        "kubeconfig",
        "admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    )


def _docker_auth(path: str, name: str) -> bool:
    return (
        path.endswith(("/.docker/config.json", "/containers/auth.json", "/.dockercfg"))
        or name == "auth.json"
    )


_HISTORIES = (
    ".bash_history",
    ".zsh_history",
    ".ash_history",
    ".sh_history",
    ".history",
    ".mysql_history",
    ".psql_history",
    ".python_history",
    ".node_repl_history",
)


# -- the rules -----------------------------------------------------------------------------------
# a secret's name: ``password``, ``db_password``, ``MYSQL_ROOT_PASSWORD``, ``client.secret``
_NAME = (
    rb"(?:[A-Za-z0-9]{1,32}[_.-]){0,8}(?:password|passwd|pass|pwd|secret|secret[_.-]?key|credentials?|"
    rb"api[_.-]?key|apikey|access[_.-]?key|private[_.-]?key|auth[_.-]?token|access[_.-]?token)"
)
_NAME_ANCHORS = (b"pass", b"pwd", b"secret", b"credential", b"key", b"token")

RULES: tuple[Rule, ...] = (
    Rule(
        "private-key",
        "private key (PEM or OpenSSH)",
        re.compile(
            rb"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
            rb"[ \t]*\r?\n(?:[A-Za-z][A-Za-z-]{0,32}:[^\n]{0,256}\n){0,8}+"
            rb"(?P<secret>[A-Za-z0-9+/=\s]{64,65536}+)-----END \1-----"
        ),
        anchors=(b"PRIVATE KEY-----",),
        lines=False,
        check=_pem_body,
    ),
    Rule(
        "aws-access-key-id",
        "AWS access key ID",
        re.compile(rb"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[A-Z0-9]{16})\b"),
        anchors=(b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AROA", b"AIDA"),
        check=_not_placeholder,
    ),
    Rule(
        "aws-secret-access-key",
        "AWS secret access key",
        re.compile(
            rb"(?i)aws[_.-]?secret[_.-]?(?:access[_.-]?)?key[\"']?[ \t]{0,16}[:=][ \t]{0,16}[\"']?"
            rb"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"
        ),
        anchors=(b"aws",),
        fold=True,
        check=_not_placeholder,
        needs=b":=",
    ),
    Rule(
        "gcp-service-account",
        "GCP service-account key (JSON)",
        re.compile(
            rb"\"type\"\s{0,16}:\s{0,16}\"service_account\"[\s\S]{0,4096}?\"private_key\"\s{0,16}:"
            rb"\s{0,16}"
            rb"\"(?P<secret>-----BEGIN PRIVATE KEY-----[^\"]{64,})\""
        ),
        anchors=(b"service_account",),
        lines=False,
        needs=b":",
    ),
    Rule(
        "github-token",
        "GitHub token",
        re.compile(
            rb"\b(?P<secret>(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b"
        ),
        anchors=(b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        check=_not_placeholder,
    ),
    Rule(
        "gitlab-token",
        "GitLab token",
        re.compile(rb"\b(?P<secret>gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20})(?![A-Za-z0-9_-])"),
        anchors=(b"glpat-", b"gldt-", b"glrt-", b"glptt-"),
        check=_not_placeholder,
    ),
    Rule(
        "slack-token",
        "Slack token or webhook",
        re.compile(
            rb"\b(?P<secret>xox[baprs]-[A-Za-z0-9-]{10,}|"
            rb"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,})"
        ),
        anchors=(b"xox", b"hooks.slack.com"),
        check=_not_placeholder,
    ),
    Rule(
        "registry-auth",
        "container registry credentials (docker config.json, auth.json)",
        re.compile(
            rb"\"(?:auth|identitytoken|password)\"\s{0,16}:\s{0,16}\"(?P<secret>[A-Za-z0-9+/=_.-]{8,})\""
        ),
        lines=False,
        paths=_docker_auth,
        check=lambda v: _registry_auth(v) or (len(v) >= 16 and not is_placeholder(v)),
        content=False,
        needs=b":",
    ),
    Rule(
        "kubeconfig-credential",
        "kubeconfig token, password or client key",
        re.compile(
            rb"(?m)^[ \t]{0,64}(?:token|password|client-key-data|auth-provider-token)[ \t]{0,16}:"
            rb"[ \t]{0,16}[\"']?"
            rb"(?P<secret>[^\s\"']{8,})"
        ),
        lines=False,
        paths=_kubeconfig,
        check=_not_placeholder,
        content=False,
        needs=b":",
    ),
    Rule(
        "dotenv-secret",
        ".env file assignment of a secret",
        re.compile(
            rb"(?im)^[ \t]{0,64}(?:export[ \t]{1,16})?(?:[A-Za-z0-9]{1,32}_){0,8}[A-Za-z0-9]{0,32}"
            rb"(?:pass|pwd|secret|token|key|credential|auth)[A-Za-z0-9_]{0,64}[ \t]{0,16}="
            rb"[ \t]{0,16}[\"']?(?P<secret>[^\s\"'#]{4,})"
        ),
        lines=False,
        paths=_dotenv,
        check=_not_placeholder,
        content=False,
        needs=b"=",
    ),
    Rule(
        "shell-history-password",
        "password on a command line in a shell history",
        re.compile(
            rb"(?:\bsshpass[ \t]{1,16}-p[ \t]{0,16}|\bmysql(?:dump|admin)?\b[^\n]{0,256}?[ \t]-p|"
            rb"--password[= ]|\bPGPASSWORD=|\bcurl\b[^\n]{0,256}?[ \t]-u[ \t]{0,16}[^\s:]{1,128}:|"
            rb"\bhtpasswd\b[^\n]{0,256}?[ \t]-b[^\s]{0,8}[ \t]{1,16}[^\s]{1,256}[ \t]{1,16}"
            rb"[^\s]{1,128}[ \t]{1,16})[\"']?(?P<secret>[^\s\"']{3,})"
        ),
        lines=False,
        paths=_named(*_HISTORIES),
        check=_not_placeholder,
        content=True,  # history commands too
    ),
    Rule(
        "password-assignment",
        "password or secret assigned in a configuration file",
        re.compile(
            rb"(?i)(?<![A-Za-z0-9_.-])" + _NAME + rb"[\"']?[ \t]*(?::|=|=>)[ \t]*[\"']?"
            rb"(?P<secret>[^\s\"'#;,<>{}()\[\]]{4,128})"
        ),
        anchors=_NAME_ANCHORS,
        fold=True,
        paths=_config,
        check=_not_placeholder,
        needs=b":=",
    ),
    Rule(
        "password-literal",
        "password or secret assigned a string literal in source code",
        re.compile(
            rb"(?i)(?:(?P<key>[\"'])"
            + _NAME
            + rb"(?P=key)[ \t]*:|(?<![A-Za-z0-9_.-])"
            + _NAME
            + rb"[ \t]*(?:=|=>|:=))[ \t]*(?P<quote>[\"'])(?P<secret>[^\s\"']{4,128})(?P=quote)"
        ),
        anchors=_NAME_ANCHORS,
        fold=True,
        paths=_code,
        check=_not_placeholder,
        content=False,
        needs=b":=",
    ),
    Rule(
        "url-credentials",
        "password in a URL (scheme://user:password@host)",
        re.compile(
            rb"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@\"']{1,64}:(?P<secret>[^\s:/@\"']{3,64})@"
            rb"[A-Za-z0-9.-]+"
        ),
        anchors=(b"://",),
        check=_not_placeholder,
        needs=b":",
    ),
    Rule(
        "shadow-password-hash",
        "password hash of an account in /etc/shadow",
        re.compile(rb"(?m)^[^:\n]+:(?P<secret>\$[0-9a-z]+\$[^:\n]{8,}):"),
        lines=False,
        paths=lambda path, name: path in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow"),
        content=False,
        needs=b":",
    ),
    Rule(
        "high-entropy-assignment",
        "random-looking value assigned to a key, token or secret",
        re.compile(
            rb"(?i)(?:api[_.-]?key|apikey|secret|token|access[_.-]?key|auth[_.-]?key|"
            rb"client[_.-]?secret)[A-Za-z0-9_.-]{0,64}[\"']?[ \t]{0,16}(?::|=|=>)[ \t]{0,16}[\"']?"
            rb"(?P<secret>[A-Za-z0-9+/_=-]{20,128})(?![A-Za-z0-9+/_=-])"
        ),
        anchors=(b"key", b"secret", b"token"),
        fold=True,
        check=lambda v: high_entropy(v) and not is_placeholder(v),
        needs=b":=",
    ),
)

RULE_IDS = tuple(rule.id for rule in RULES)
MAX_LINES_PER_RULE = 10_000  # lines holding an anchor matched per rule and file


# -- where findings are set aside ------------------------------------------------------------------
_DOC_PREFIXES = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/licenses/",
    "/usr/share/common-licenses/",
    "/usr/share/locale/",
)
_TEST_DIRS = {
    "test",
    "tests",
    "testdata",
    "testing",
    "__tests__",
    "spec",
    "specs",
    "fixtures",
    "examples",
    "example",
    "docs",
    "doc",
    "samples",
    "sample",
}


# distribution files whose secret-looking lines are not secrets: nsswitch's "passwd: files",
# OpenSSL's sample config ("secret = pass:insta"), PAM's and login's settings
_DISTRIBUTION_DEFAULTS = (
    "/etc/nsswitch.conf",
    "/etc/ssl/openssl.cnf",
    "/etc/login.defs",
    "/usr/lib/ssl/openssl.cnf",
)
_DISTRIBUTION_DIRS = ("/etc/pam.d/", "/etc/security/")


# installed libraries: their code and docstrings are full of example credentials; the
# generic rules are not applied there (the rules for a specific format still are)
_LIBRARY_PARTS = (
    "/site-packages/",
    "/dist-packages/",
    "/node_modules/",
    "/usr/share/perl",
    "/usr/lib/python",
    "/usr/lib/ruby/",
    "/usr/share/javascript/",
    "/vendor/",
)
GENERIC_RULES = frozenset(
    {"password-assignment", "password-literal", "high-entropy-assignment", "url-credentials"}
)


def set_aside(path: str, rule: str | None = None) -> str | None:
    """Why a finding at this path is counted but not reported: documentation, tests, a
    distribution default, or a generic rule's match in an installed library."""
    if path in _DISTRIBUTION_DEFAULTS or path.startswith(_DISTRIBUTION_DIRS):
        return "distribution defaults"
    if path.endswith((".example", ".sample", ".template", ".dist", ".tmpl")):
        return "tests or examples"
    if (rule is None or rule in GENERIC_RULES) and any(p in path for p in _LIBRARY_PARTS):
        return "installed libraries (generic rules)"
    if path.startswith(_DOC_PREFIXES) or path.endswith((".md", ".rst", ".adoc", ".html")):
        return "documentation"
    if any(part in _TEST_DIRS for part in path.split("/")[:-1]):
        return "tests or examples"
    return None


# -- scanning ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Match:
    """One secret a rule found in a file or config string: the line it is on, that line with the
    secret redacted, the secret itself and its fingerprint."""

    rule: str
    line: int  # 1-based
    excerpt: str  # the line with the secret redacted
    secret: str
    fingerprint: str


def redact(secret: str) -> str:
    """Eight stars; a long secret (a token: ``ghp_``, ``AKIA``) keeps its first four
    characters, which name its kind without giving it away."""
    if len(secret) < 20:
        return "*" * 8
    return secret[:4] + "*" * 8


def scan_text(data: bytes, path: str | None) -> Iterator[Match]:
    """The rules' matches in ``data`` (a file at ``path``, or a config string: None)."""
    lower: bytes | None = None
    name = "" if path is None else path[path.rfind("/") + 1 :]
    found = 0
    seen: set[tuple[int, int]] = set()  # one finding per secret, whichever rule came first
    present: dict[bytes, bool] = {}  # anchor → found (in the data, in its lower case)
    present_folded: dict[bytes, bool] = {}
    holds = _byte_mask(data)
    for rule in RULES:
        if rule.need_mask and not rule.need_mask & holds:
            continue
        if path is None:
            if not rule.content:
                continue
        elif rule.paths is not None and not rule.paths(path, name):
            continue
        haystack = data
        if rule.fold:
            if lower is None:
                lower = data.lower()
            haystack = lower
        if rule.gate is None and rule.anchors:
            cache = present_folded if rule.fold else present
            anchors = [a for a in rule.anchors if _present(cache, haystack, a)]
            if not anchors:
                continue
        else:
            anchors = list(rule.anchors)
        for start, end in _regions(rule, anchors, data, haystack):
            for match in rule.pattern.finditer(data, start, end):
                value = match.group("secret")
                span = match.span("secret")
                if span in seen or (rule.check is not None and not rule.check(value)):
                    continue
                if rule.id == "password-assignment" and _commented(data, span[0]):
                    continue
                seen.add(span)
                found += 1
                if rule.id == "private-key":  # the whole block: --show gives a usable key
                    yield _pem_match(data, match)
                else:
                    yield _match(rule.id, data, *span)
                if found >= MAX_FINDINGS_PER_FILE:
                    return


def _present(cache: dict[bytes, bool], haystack: bytes, anchor: bytes) -> bool:
    found = cache.get(anchor)
    if found is None:
        found = cache[anchor] = anchor in haystack
    return found


def _commented(data: bytes, at: int) -> bool:
    """The line holding ``at`` is a comment (#, ;, //): configuration files are full of
    commented-out examples."""
    line = data[data.rfind(b"\n", 0, at) + 1 : at].lstrip()
    return line.startswith((b"#", b";", b"//"))


def _regions(
    rule: Rule, anchors: list[bytes], data: bytes, haystack: bytes
) -> Iterator[tuple[int, int]]:
    """Where the rule's pattern may match: the lines that hold one of ``anchors``, in order
    (or the whole data, for whole-file rules holding one)."""
    if not anchors:
        yield 0, len(data)
        return
    gate = rule.gate
    if not rule.lines:
        if gate.search(haystack) if gate is not None else anchors:
            yield 0, len(data)
        return
    lines: set[tuple[int, int]] = set()
    for anchor in [None] if gate is not None else anchors:
        position = 0
        while len(lines) < MAX_LINES_PER_RULE:
            if gate is not None:
                hit = gate.search(haystack, position)
                at = -1 if hit is None else hit.start()
            else:
                assert anchor is not None
                at = haystack.find(anchor, position)
            if at < 0:
                break
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            if end < 0:
                end = len(data)
            lines.add((start, end))
            position = end + 1
    # every line holding an anchor counts towards MAX_LINES_PER_RULE, as it did before the
    # lines without a byte the rule needs were dropped: the same lines are matched
    needs = [rule.needs[i : i + 1] for i in range(len(rule.needs))]
    for start, end in sorted(lines):
        if not needs or any(data.find(byte, start, end) >= 0 for byte in needs):
            yield start, end


def _match(rule: str, data: bytes, start: int, end: int) -> Match:
    secret = data[start:end].decode("utf-8", "surrogateescape")
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    if line_end < 0 or line_end > end:
        line_end = data.find(b"\n", end)
    if line_end < 0:
        line_end = len(data)
    before = data[max(line_start, start - MAX_LINE // 2) : start]
    after = data[end : min(line_end, end + MAX_LINE // 2)]
    text = (
        before.decode("utf-8", "surrogateescape").lstrip()
        + redact(secret.split("\n", 1)[0])
        + after.decode("utf-8", "surrogateescape").rstrip()
    )
    return Match(
        rule,
        data.count(b"\n", 0, start) + 1,
        text,
        secret,
        hashlib.sha256(data[start:end]).hexdigest()[:16],
    )


def _pem_match(data: bytes, match: re.Match[bytes]) -> Match:
    start, end = match.span()
    body = match.group("secret")
    header = data[start : data.find(b"\n", start)].decode("utf-8", "surrogateescape").strip()
    return Match(
        "private-key",
        data.count(b"\n", 0, start) + 1,
        f"{header}********",
        data[start:end].decode("utf-8", "surrogateescape"),
        hashlib.sha256(body).hexdigest()[:16],
    )


@dataclass(frozen=True, slots=True)
class SecretFinding:
    """One secret found in the image: where it is (a layer's file or the config), the rule that
    found it, a redacted excerpt, and whether a later layer deleted or overwrote it."""

    layer: int | None  # None: the image config
    path: str  # a file's path, or config.Env[N], config.Labels[KEY], history[N].created_by
    rule: str
    line: int
    excerpt: str  # redacted
    fingerprint: str
    secret: str  # whole: only ``--show`` prints it
    fate: str = "visible"  # "visible", "deleted" or "overwritten" (by ``by_layer``)
    by_layer: int | None = None


@dataclass(slots=True)
class SecretsReport:
    """The secrets found in an image, with counts of the findings set aside (documentation, tests…)
    and of the files scanned, skipped as binary or read only in part."""

    findings: list[SecretFinding] = field(default_factory=list)
    set_aside: dict[str, int] = field(default_factory=dict)  # reason -> findings not reported
    files_scanned: int = 0
    binary_skipped: int = 0
    truncated: int = 0  # files larger than MAX_SCAN: only their first MAX_SCAN bytes read


def scan_config(image: Image, report: SecretsReport) -> None:
    """The config's env, labels and history commands."""
    config = image.config.config
    strings: list[tuple[str, str]] = []
    env = config.get("Env")
    if isinstance(env, list):
        strings += [(f"config.Env[{i}]", e) for i, e in enumerate(env) if isinstance(e, str)]
    labels = config.get("Labels")
    if isinstance(labels, dict):
        strings += [
            (f"config.Labels[{k}]", f"{k}={v}") for k, v in labels.items() if isinstance(v, str)
        ]
    for i, entry in enumerate(image.config.history_raw):
        if isinstance(entry, dict) and isinstance(entry.get("created_by"), str):
            strings.append((f"history[{i}].created_by", entry["created_by"]))
    for where, value in strings:
        data = value.encode("utf-8", "surrogateescape")[:MAX_SCAN]
        for match in scan_text(data, None):
            report.findings.append(
                SecretFinding(
                    None,
                    where,
                    match.rule,
                    match.line,
                    match.excerpt,
                    match.fingerprint,
                    match.secret,
                )
            )


def scan_secrets(
    source: Source,
    image: Image,
    *,
    progress: Callable[[int], None] | None = None,
    parallel: bool = False,
) -> SecretsReport:
    """Every layer streamed once (verified against its diff_id); every version of every
    regular file scanned; each finding's fate decided by the layers above it.

    ``parallel``: the rules run in a child process (``_Worker``) while this one reads and
    decompresses the layers; the findings, their order and their fates are the same."""
    from inspect_tool.layers.image_fs import open_layer

    report = SecretsReport()
    scan_config(image, report)
    # (path, layer) of the file versions with findings → their indexes in report.findings
    versions: dict[tuple[str, int], list[int]] = {}
    worker = _Worker() if parallel else None
    # parallel: the removals of regular files, kept until the findings are back
    removals: list[tuple[str, int, str, int, int]] = []

    def on_remove(info: FileInfo, layer: int, reason: str) -> None:
        fate = "overwritten" if reason == "replaced" else "deleted"
        if worker is not None:
            if info.type is EntryType.FILE:
                removals.append((info.path, info.layer, fate, layer, worker.sent))
            return
        for index in versions.get((info.path, info.layer), ()):
            finding = report.findings[index]
            if finding.by_layer is None:
                report.findings[index] = _with_fate(finding, fate, layer)

    union = UnionFS(on_remove=on_remove)
    try:
        for item in image.layers:
            with open_layer(source, item, progress=progress) as opened:
                if worker is not None:
                    worker.layer(item.index)
                hook = _file_hook(opened.reader, item.index, report, versions, worker)
                union.apply(item.index, opened.reader, record=False, on_entry=hook)
                opened.finish(item, label=source.label)
        if worker is not None:
            _merge(worker.results(), report, removals, worker.layers)
    finally:
        if worker is not None:
            worker.close()
    return report


def spare_core() -> bool:
    """Whether ``scan_secrets(parallel=True)`` pays: more than one CPU this process may run on,
    and a 1-minute load average below twice their number. The worker process halves the wall
    time when a second core is free or shared with one other busy process (on 2 CPUs at load
    1.8-2.2: 6.5-6.7 s against 8.5-9.2 s in one process, the same CPU time); on a machine
    loaded several times over it only shares the CPU time this one would get, and pickling the
    files to it is a cost (at load 5 to 9: 1.31× a plain read against 1.11× in one process)."""
    import os

    from inspect_tool.layers.forked import cpus

    cores = cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return cores > 1 and load < 2 * cores


class _Worker:
    """A child process running ``scan_text`` on the files sent to it, in order: batches of
    ``(path, data)`` pickled to its stdin; once that ends, the matches of each file that has
    any (``(number, path, matches)``, files numbered from 0 as sent) pickled to its stdout.
    A thread writes the batches to the pipe (made 1 MiB where Linux allows): reading the
    layers waits only when ``QUEUED`` batches are waiting for the child, not at every pipe
    buffer's worth, which on a busy machine costs a scheduler round trip each."""

    BATCH = 4 * 1024 * 1024  # bytes of file content per batch
    QUEUED = 8  # pickled batches waiting for the pipe

    def __init__(self) -> None:
        import os
        import subprocess
        import sys
        from pathlib import Path

        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from inspect_tool.analyze.secrets import _work; _work()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None
        try:
            import fcntl

            fcntl.fcntl(self._process.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1024 * 1024)
        except (ImportError, AttributeError, OSError):
            pass  # the default pipe size: slower, the same
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUED)
        self._error: OSError | None = None
        self._writer = threading.Thread(target=self._write, name="secrets-pipe", daemon=True)
        self._writer.start()
        self._batch: list[tuple[str, bytes]] = []
        self._size = 0
        self.sent = 0  # files sent so far
        self.layers: list[tuple[int, int]] = []  # (first file number, layer index)

    def layer(self, index: int) -> None:
        self.layers.append((self.sent, index))

    def send(self, path: str, data: bytes) -> None:
        self._batch.append((path, data))
        self._size += len(data)
        self.sent += 1
        if self._size >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        import pickle

        if self._batch:
            self._queue.put(pickle.dumps(self._batch, protocol=pickle.HIGHEST_PROTOCOL))
            self._batch, self._size = [], 0

    def _write(self) -> None:
        """The writer thread: batches to the pipe until None; after an error (the child
        gone), the queue is still drained so that nothing waits on it."""
        stdin = self._process.stdin
        assert stdin is not None
        while (blob := self._queue.get()) is not None:
            if self._error is None:
                try:
                    stdin.write(blob)
                except OSError as exc:
                    self._error = exc
        try:
            stdin.close()
        except OSError as exc:
            self._error = self._error or exc

    def _stop_writing(self) -> None:
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()

    def results(self) -> list[tuple[int, str, list[Match]]]:
        import pickle

        self._flush()
        self._stop_writing()
        if self._error is not None:
            raise RuntimeError(f"the secrets worker process failed: {self._error}")
        assert self._process.stdout is not None
        try:
            results: list[tuple[int, str, list[Match]]] = pickle.load(self._process.stdout)
        except (EOFError, pickle.UnpicklingError) as exc:
            raise RuntimeError(f"the secrets worker process failed: {exc}") from exc
        if self._process.wait() != 0:
            raise RuntimeError(f"the secrets worker process exited {self._process.returncode}")
        return results

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()  # a write blocked on the pipe fails: the writer ends
        self._stop_writing()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()


def _work() -> None:
    """The worker process's side of ``_Worker``."""
    import pickle
    import sys

    results: list[tuple[int, str, list[Match]]] = []
    number = 0
    while True:
        try:
            batch: list[tuple[str, bytes]] = pickle.load(sys.stdin.buffer)
        except EOFError:
            break
        for path, data in batch:
            matches = list(scan_text(data, path))
            if matches:
                results.append((number, path, matches))
            number += 1
    pickle.dump(results, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


def _merge(
    results: list[tuple[int, str, list[Match]]],
    report: SecretsReport,
    removals: list[tuple[str, int, str, int, int]],
    layers: list[tuple[int, int]],
) -> None:
    """The worker's matches as findings, in the order a scan in this process appends them;
    then each removal applied to the findings of the versions sent before it (first wins)."""
    import bisect

    starts = [first for first, _ in layers]
    # (path, layer) → (index in report.findings, file number) of its findings
    versions: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for number, path, matches in results:
        layer = layers[bisect.bisect_right(starts, number) - 1][1]
        for index in _record(report, layer, path, matches):
            versions.setdefault((path, layer), []).append((index, number))
    for path, version_layer, fate, layer, sent in removals:
        for index, number in versions.get((path, version_layer), ()):
            finding = report.findings[index]
            if number < sent and finding.by_layer is None:
                report.findings[index] = _with_fate(finding, fate, layer)


def _with_fate(finding: SecretFinding, fate: str, layer: int) -> SecretFinding:
    from dataclasses import replace

    return replace(finding, fate=fate, by_layer=layer)


def _file_hook(
    reader: TarReader,
    layer: int,
    report: SecretsReport,
    versions: dict[tuple[str, int], list[int]],
    worker: _Worker | None = None,
) -> Callable[[TarMember, str], None]:
    def on_entry(member: TarMember, path: str) -> None:
        if member.type is not EntryType.FILE or member.size == 0:
            return
        data = reader.read(min(member.size, BINARY_PROBE))
        if b"\0" in data:
            report.binary_skipped += 1
            return
        if member.size > BINARY_PROBE:
            data += reader.read(min(member.size, MAX_SCAN) - BINARY_PROBE)
        report.files_scanned += 1
        if member.size > MAX_SCAN:
            report.truncated += 1
        if worker is not None:
            worker.send(path, data)
            return
        for index in _record(report, layer, path, scan_text(data, path)):
            versions.setdefault((path, layer), []).append(index)

    return on_entry


def _record(
    report: SecretsReport,
    layer: int,
    path: str,
    matches: Iterable[Match],
) -> list[int]:
    """A file version's matches as findings (or set aside); their indexes."""
    indexes: list[int] = []
    for match in matches:
        reason = set_aside(path, match.rule)
        if reason is not None:
            report.set_aside[reason] = report.set_aside.get(reason, 0) + 1
            continue
        indexes.append(len(report.findings))
        report.findings.append(
            SecretFinding(
                layer,
                path,
                match.rule,
                match.line,
                match.excerpt,
                match.fingerprint,
                match.secret,
            )
        )
    return indexes
