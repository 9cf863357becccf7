"""``docker://HOST[:PORT]/NAME[:TAG|@DIGEST]``: skopeo's registry references, with docker's
short names (``busybox`` is ``docker.io/library/busybox:latest``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from inspect_tool.errors import UsageError
from inspect_tool.model.digest import Digest

PREFIX = "docker:"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

# distribution/reference's grammar
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?"
)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class RegistryReference:
    """A parsed reference. ``registry`` is the name as users write it (``docker.io``,
    ``127.0.0.1:5000``); ``host`` is where the API answers."""

    registry: str
    repository: str
    tag: str | None
    digest: Digest | None

    @classmethod
    def parse(cls, text: str) -> RegistryReference:
        """Parse ``docker://...`` (one slash is accepted too: a shell path joins them)."""
        if not text.startswith(PREFIX):
            raise UsageError(f"not a docker:// reference: {text!r}")
        rest = text[len(PREFIX) :]
        if not rest.startswith("/"):
            raise UsageError(f"{text!r}: a registry reference is docker://HOST/NAME[:TAG]")
        rest = rest[2:] if rest.startswith("//") else rest[1:]
        return cls.parse_name(rest, original=text)

    @classmethod
    def parse_name(cls, rest: str, *, original: str | None = None) -> RegistryReference:
        """``HOST[:PORT]/NAME[:TAG|@DIGEST]`` (or a docker short name)."""
        shown = original or rest

        def bad(why: str) -> UsageError:
            return UsageError(f"invalid registry reference {shown!r}: {why}")

        name, at, digest_text = rest.partition("@")
        digest = None
        if at:
            try:
                digest = Digest.parse(digest_text)
            except Exception:
                raise bad("the part after @ is not a sha256 or sha512 digest") from None
        tag = None
        last_slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > last_slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG_RE.fullmatch(tag):
                raise bad(f"tag {tag!r} is not 1 to 128 letters, digits, '_', '.' or '-'")
        if not name:
            raise bad("no repository name")
        first, slash, remainder = name.partition("/")
        if slash and (
            "." in first or ":" in first or first == "localhost" or first.startswith("[")
        ):
            registry, path = first, remainder
            if not _DOMAIN_RE.fullmatch(registry):
                raise bad(f"{registry!r} is not a host name with an optional port")
        else:
            registry, path = DOCKER_HUB, name
        if registry in (DOCKER_HUB, "index.docker.io"):
            registry = DOCKER_HUB
            if "/" not in path:
                path = "library/" + path
        if len(path) > MAX_NAME:
            raise bad(f"repository name longer than {MAX_NAME} characters")
        for component in path.split("/"):
            if not _PATH_COMPONENT_RE.fullmatch(component):
                raise bad(
                    f"repository component {component!r} is not lowercase letters and digits "
                    "separated by '.', '_', '__' or '-'"
                )
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, path, tag, digest)

    @property
    def host(self) -> str:
        """``HOST[:PORT]`` of the registry API."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def hostname(self) -> str:
        host = self.host
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.hostname)

    @property
    def name(self) -> str:
        """``REGISTRY/REPOSITORY``, as docker names images."""
        return f"{self.registry}/{self.repository}"

    @property
    def manifest_ref(self) -> str:
        """What the manifest is asked for by: the digest when there is one, else the tag."""
        return str(self.digest) if self.digest is not None else str(self.tag)

    def with_digest(self, digest: Digest) -> RegistryReference:
        return RegistryReference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def transport(self) -> str:
        return f"docker://{self}"


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def registry_host(text: str) -> str:
    """The registry part of ``dockscope login REGISTRY`` (``docker.io`` for Docker Hub's
    names, a URL's scheme and path dropped), as auth.json keys it."""
    host = text.strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0]
    if host in ("index.docker.io", DOCKER_HUB_API, DOCKER_HUB, ""):
        return DOCKER_HUB
    if not _DOMAIN_RE.fullmatch(host):
        raise UsageError(f"invalid registry {text!r}: expected HOST[:PORT]")
    return host
