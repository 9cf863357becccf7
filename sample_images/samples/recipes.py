"""Build recipes: the steps of a Dockerfile, and the history they leave."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from samples.basics import DEFAULT_PATH_ENV, Instant, sorted_map
from samples.filesystem import (
    ENTRYPOINT_SCRIPT,
    T_BASE_ADD,
    T_BASE_CMD,
    T_CMD,
    T_COPY,
    T_ENTRY,
    T_ENV,
    T_EXPOSE,
    T_HEALTH,
    T_LABEL,
    T_MAINTAINER,
    T_MULTI_CMD,
    T_MULTI_RUN,
    T_OTHER_CMD,
    T_OTHER_COPY,
    T_OTHER_ENTRY,
    T_RUN_CLEAN,
    T_RUN_SETUP,
    T_STOP,
    T_USER,
    T_VOLUME,
    T_WORKDIR,
    WORKER_SCRIPT,
    Layer,
    arch_layer,
    base_layer,
    cleanup_layer,
    content_hash,
    copy_layer,
    make_layer,
    setup_layer,
)
from samples.tarbuild import TarEntry


@dataclass(frozen=True)
class Step:
    """One build step. ``layer`` is None for metadata-only steps (``empty_layer``).

    ``classic`` is the history text the classic builder writes, ``buildkit`` BuildKit's; steps
    inherited from a base image keep the base's text and carry no BuildKit comment.
    """

    when: Instant
    classic: str
    buildkit: str
    layer: Layer | None = None
    from_base: bool = False


@dataclass(frozen=True)
class Recipe:
    """Everything needed to write one image's config: steps, runtime config, platform."""

    steps: tuple[Step, ...]
    runtime: dict[str, Any]
    architecture: str = "amd64"
    variant: str | None = None
    author: str | None = None

    @property
    def layers(self) -> list[Layer]:
        return [step.layer for step in self.steps if step.layer is not None]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def created(self) -> Instant:
        return self.steps[-1].when

    @property
    def platform(self) -> dict[str, str]:
        """OCI platform object (Go field order: architecture, os, variant)."""
        platform = {"architecture": self.architecture, "os": "linux"}
        if self.variant:
            platform["variant"] = self.variant
        return platform


MAINTAINER = "dockscope maintainers <maintainers@dockscope.invalid>"
HEALTH_CMD = "wget -q -O- http://localhost:8080/health || exit 1"
LABELS = {
    "org.opencontainers.image.description": "A tiny image for dockscope's tests and lessons",
    "org.opencontainers.image.title": "dockscope-sample",
    "org.opencontainers.image.version": "1.0",
}
SETUP_COMMAND = (
    "set -eux; mkdir -p /opt/app/bin /data; chown app:app /data;"
    " sed -i 's/^VERSION_ID=.*/VERSION_ID=1.1/' /etc/os-release;"
    " echo 'Welcome to the dockscope sample image' > /etc/motd;"
    " printf '#!/bin/sh\\nexec hello \"$@\"\\n' > /opt/app/bin/server;"
    " chmod 0755 /opt/app/bin/server"
)
CLEAN_COMMAND = (
    "rm -f /usr/share/doc/dockscope/README && rm -rf /var/cache/app"
    " && mkdir -p /var/cache/app && echo 'cache rebuilt' > /var/cache/app/stamp"
)


def nop(instruction: str) -> str:
    """Classic-builder history text of a metadata step (note the two spaces)."""
    return f"/bin/sh -c #(nop)  {instruction}"


def base_steps(base: Layer, base_entries: list[TarEntry]) -> list[Step]:
    """The two steps every sample inherits from its base image (built by the classic builder)."""
    add = f"/bin/sh -c #(nop) ADD file:{content_hash(base_entries)} in / "
    cmd = nop('CMD ["/bin/sh"]')
    return [
        Step(T_BASE_ADD, add, add, base, from_base=True),
        Step(T_BASE_CMD, cmd, cmd, from_base=True),
    ]


def app_steps(base: Layer, base_entries: list[TarEntry]) -> list[Step]:
    """Steps up to and including the cleanup RUN; the application and "other" images share them."""
    # Both builders log labels unquoted, in instruction order: title, version, description.
    label_text = " ".join(
        f"{key}={LABELS[key]}"
        for key in (
            "org.opencontainers.image.title",
            "org.opencontainers.image.version",
            "org.opencontainers.image.description",
        )
    )
    return [
        *base_steps(base, base_entries),
        Step(T_MAINTAINER, nop(f"MAINTAINER {MAINTAINER}"), f"MAINTAINER {MAINTAINER}"),
        Step(T_LABEL, nop(f"LABEL {label_text}"), f"LABEL {label_text}"),
        Step(T_ENV, nop("ENV APP_HOME=/opt/app"), "ENV APP_HOME=/opt/app"),
        Step(
            T_RUN_SETUP,
            f"/bin/sh -c {SETUP_COMMAND}",
            f"RUN /bin/sh -c {SETUP_COMMAND} # buildkit",
            make_layer(setup_layer()),
        ),
        Step(
            T_RUN_CLEAN,
            f"/bin/sh -c {CLEAN_COMMAND}",
            f"RUN /bin/sh -c {CLEAN_COMMAND} # buildkit",
            make_layer(cleanup_layer()),
        ),
    ]


def sample_recipe() -> Recipe:
    """The main sample image: 4 layers, 16 history entries, a full runtime config."""
    base_entries = base_layer()
    base = make_layer(base_entries)
    copied = copy_layer("docker-entrypoint.sh", ENTRYPOINT_SCRIPT, T_COPY.seconds)
    health_classic = f'HEALTHCHECK &{{["CMD-SHELL" "{HEALTH_CMD}"] "30s" "5s" "0s" \'\\x03\'}}'
    health_buildkit = (
        f'HEALTHCHECK &{{["CMD-SHELL" "{HEALTH_CMD}"] "30s" "5s" "0s" "0s" \'\\x03\'}}'
    )
    steps = [
        *app_steps(base, base_entries),
        Step(
            T_COPY,
            f"/bin/sh -c #(nop) COPY file:{content_hash(copied)} in /usr/local/bin/ ",
            "COPY docker-entrypoint.sh /usr/local/bin/ # buildkit",
            make_layer(copied),
        ),
        Step(T_WORKDIR, "/bin/sh -c #(nop) WORKDIR /opt/app", "WORKDIR /opt/app"),
        Step(T_USER, nop("USER app"), "USER app"),
        Step(T_EXPOSE, nop("EXPOSE 8080"), "EXPOSE map[8080/tcp:{}]"),
        Step(T_VOLUME, nop("VOLUME [/data]"), "VOLUME [/data]"),
        Step(T_HEALTH, nop(health_classic), health_buildkit),
        Step(T_STOP, nop("STOPSIGNAL SIGTERM"), "STOPSIGNAL SIGTERM"),
        Step(
            T_ENTRY,
            nop('ENTRYPOINT ["docker-entrypoint.sh"]'),
            'ENTRYPOINT ["docker-entrypoint.sh"]',
        ),
        Step(T_CMD, nop('CMD ["serve" "--port" "8080"]'), 'CMD ["serve" "--port" "8080"]'),
    ]
    runtime = {
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": [DEFAULT_PATH_ENV, "APP_HOME=/opt/app"],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["serve", "--port", "8080"],
        "Volumes": {"/data": {}},
        "WorkingDir": "/opt/app",
        "Labels": sorted_map(LABELS),
        "StopSignal": "SIGTERM",
        "Healthcheck": {
            "Test": ["CMD-SHELL", HEALTH_CMD],
            "Interval": 30_000_000_000,
            "Timeout": 5_000_000_000,
            "Retries": 3,
        },
    }
    return Recipe(tuple(steps), runtime, author=MAINTAINER)


def other_recipe() -> Recipe:
    """A second image on the same first three layers with its own top layer."""
    base_entries = base_layer()
    base = make_layer(base_entries)
    copied = copy_layer("worker.sh", WORKER_SCRIPT, T_OTHER_COPY.seconds)
    steps = [
        *app_steps(base, base_entries),
        Step(
            T_OTHER_COPY,
            f"/bin/sh -c #(nop) COPY file:{content_hash(copied)} in /usr/local/bin/ ",
            "COPY worker.sh /usr/local/bin/ # buildkit",
            make_layer(copied),
        ),
        Step(T_OTHER_ENTRY, nop('ENTRYPOINT ["worker.sh"]'), 'ENTRYPOINT ["worker.sh"]'),
        Step(T_OTHER_CMD, nop('CMD ["--queue" "default"]'), 'CMD ["--queue" "default"]'),
    ]
    labels = dict(LABELS, **{"org.opencontainers.image.title": "dockscope-sample-worker"})
    runtime = {
        "Env": [DEFAULT_PATH_ENV, "APP_HOME=/opt/app"],
        "Entrypoint": ["worker.sh"],
        "Cmd": ["--queue", "default"],
        "Labels": sorted_map(labels),
    }
    return Recipe(tuple(steps), runtime, author=MAINTAINER)


MULTI_PLATFORMS = (("amd64", None), ("arm64", "v8"), ("arm", "v7"))


def multiplatform_recipe(architecture: str, variant: str | None) -> Recipe:
    """One platform of the multi-platform image: the shared base plus a per-platform layer."""
    base_entries = base_layer()
    command = "uname -m > /etc/dockscope-arch"
    steps = [
        *base_steps(make_layer(base_entries), base_entries),
        Step(
            T_MULTI_RUN,
            f"/bin/sh -c {command}",
            f"RUN /bin/sh -c {command} # buildkit",
            make_layer(arch_layer(architecture)),
        ),
        Step(T_MULTI_CMD, nop('CMD ["hello"]'), 'CMD ["hello"]'),
    ]
    runtime = {"Env": [DEFAULT_PATH_ENV], "Cmd": ["hello"]}
    return Recipe(tuple(steps), runtime, architecture=architecture, variant=variant)
