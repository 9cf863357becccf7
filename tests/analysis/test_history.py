"""dockscope history: entries aligned with layers, created_by parsed for every builder, and
the Dockerfile reconstructed from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspect_tool.analyze.history import go_string_list, go_unquote, parse_created_by
from tests.support.cli import invoke
from tests.support.images import oci_layout, write_image
from tests.support.paths import CORPUS, SAMPLES
from tests.support.tar_entries import build_layer, file_entry

HEX = "ce026b62356eec3ad1214f92be2c9dc063fe205bd5e600be3492c4dfb17148bd"


@pytest.mark.parametrize(
    ("created_by", "line", "builder"),
    [
        # Docker's classic builder
        (
            '/bin/sh -c #(nop)  CMD ["nginx" "-g" "daemon off;"]',
            'CMD ["nginx", "-g", "daemon off;"]',
            "docker",
        ),
        ('/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]', "CMD echo hi", "docker"),
        (
            "/bin/sh -c apt-get update && apt-get install -y curl",
            "RUN apt-get update && apt-get install -y curl",
            "docker/buildah",
        ),
        (f"/bin/sh -c #(nop) ADD file:{HEX} in / ", f"ADD file:{HEX} /", "docker/buildah"),
        (
            f"/bin/sh -c #(nop) COPY dir:{HEX} in /root/.data/ ",
            f"COPY dir:{HEX} /root/.data/",
            "docker/buildah",
        ),
        ("/bin/sh -c #(nop)  EXPOSE map[80/tcp:{} 443/tcp:{}]", "EXPOSE 80/tcp 443/tcp", "docker"),
        ("/bin/sh -c #(nop)  EXPOSE 80", "EXPOSE 80", "docker"),
        ("/bin/sh -c #(nop)  VOLUME [/var/lib/mysql]", 'VOLUME ["/var/lib/mysql"]', "docker"),
        ("/bin/sh -c #(nop)  ENV NGINX_VERSION=1.19.6", "ENV NGINX_VERSION=1.19.6", "docker"),
        (
            "/bin/sh -c #(nop)  LABEL maintainer=NGINX Docker Maintainers <docker-maint@nginx.com>",
            'LABEL maintainer="NGINX Docker Maintainers <docker-maint@nginx.com>"',
            "docker",
        ),
        ("/bin/sh -c #(nop)  STOPSIGNAL SIGQUIT", "STOPSIGNAL SIGQUIT", "docker"),
        ("/bin/sh -c #(nop) WORKDIR /app", "WORKDIR /app", "buildah"),
        (
            '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] '
            '"5m0s" "3s" "0s" \'\\x00\'}',
            "HEALTHCHECK --interval=5m0s --timeout=3s CMD curl -f http://localhost/ || exit 1",
            "docker",
        ),
        (
            '/bin/sh -c #(nop)  HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}',
            "HEALTHCHECK NONE",
            "docker",
        ),
        # BuildKit
        ("RUN /bin/sh -c apt-get update # buildkit", "RUN apt-get update", "buildkit"),
        (
            "COPY --from=build /out/app /usr/local/bin/app # buildkit",
            "COPY --from=build /out/app /usr/local/bin/app",
            "buildkit",
        ),
        (
            "ADD https://example.com/x.tgz /opt/ # buildkit",
            "ADD https://example.com/x.tgz /opt/",
            "buildkit",
        ),
        ('CMD ["serve" "--port" "8080"]', 'CMD ["serve", "--port", "8080"]', "buildkit"),
        ("EXPOSE map[8080/tcp:{}]", "EXPOSE 8080/tcp", "buildkit"),
        (
            "SHELL [/bin/bash -o pipefail -c]",
            'SHELL ["/bin/bash", "-o", "pipefail", "-c"]',
            "buildkit",
        ),
        (
            'HEALTHCHECK &{["CMD" "/bin/check" "--quick"] "30s" "5s" "0s" "0s" \'\\x03\'}',
            'HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/bin/check", "--quick"]',
            "buildkit",
        ),
        ("ARG VERSION=1.2", "ARG VERSION=1.2", "buildkit"),
        ("WORKDIR /srv", "WORKDIR /srv", "buildkit"),
        # buildah 1.28.2, exactly as it wrote them for a test build
        ('/bin/sh -c #(nop) LABEL x="hello world"', 'LABEL x="hello world"', "buildah"),
        ('/bin/sh -c #(nop) CMD ["/bin/busybox", "sh"]', 'CMD ["/bin/busybox", "sh"]', "buildah"),
        (
            "/bin/sh -c #(nop) HEALTHCHECK --interval=5s CMD /bin/busybox true",
            "HEALTHCHECK --interval=5s CMD /bin/busybox true",
            "buildah",
        ),
        ("/bin/sh -c #(nop) VOLUME /data", "VOLUME /data", "buildah"),
        ("/bin/sh -c #(nop) ARG VERSION", "ARG VERSION", "buildah"),
    ],
)
def test_created_by_forms(created_by: str, line: str, builder: str) -> None:
    comment = "buildkit.dockerfile.v0" if builder == "buildkit" else None
    step = parse_created_by(created_by, comment=comment)
    assert step.line == line
    assert step.builder == builder


def test_build_arguments_prefix() -> None:
    classic = parse_created_by("|2 A=1 B=two /bin/sh -c make all")
    assert classic.line == "RUN make all"
    assert classic.notes == ("build arguments in effect: A=1 B=two",)
    buildkit = parse_created_by("RUN |1 VERSION=2 /bin/sh -c make # buildkit")
    assert buildkit.line == "RUN make" and buildkit.builder == "buildkit"
    assert "VERSION=2" in buildkit.notes[0]


def test_buildah_exec_form_run() -> None:
    step = parse_created_by(
        '|1 VERSION=2 /bin/sh -c ["/bin/busybox", "ln", "-s", "busybox", "/bin/sh"]'
    )
    assert step.line == 'RUN ["/bin/busybox", "ln", "-s", "busybox", "/bin/sh"]'


def test_exec_form_without_shell_is_flagged() -> None:
    step = parse_created_by("RUN /usr/bin/apk add curl # buildkit")
    assert step.line == "RUN /usr/bin/apk add curl"
    assert any("exec form" in note for note in step.notes)


def test_kaniko_lines_are_dockerfile_lines() -> None:
    step = parse_created_by("RUN apt-get update && apt-get install -y git", author="kaniko")
    assert step.line == "RUN apt-get update && apt-get install -y git"
    assert step.builder == "kaniko"
    assert parse_created_by("COPY app.py /app/", author="kaniko").line == "COPY app.py /app/"
    cmd = parse_created_by('CMD ["python", "app.py"]', author="kaniko")
    assert cmd.line == 'CMD ["python", "app.py"]'


def test_not_an_instruction_is_a_comment() -> None:
    step = parse_created_by("ko")
    assert step.keyword == "" and step.line == ""
    assert "ko" in step.notes[0]
    assert parse_created_by(None).notes == ("no created_by recorded",)


def test_go_strings() -> None:
    assert go_unquote(r'"a\"b\\c\x41\u00e9\n"') == 'a"b\\cAé\n'
    assert go_unquote(r'"\xc3\xa9"') == "é"
    assert go_string_list('["a b" "c"]') == ["a b", "c"]
    assert go_string_list('["a", "b"]') == ["a", "b"]
    assert go_string_list("[not quoted]") is None


def test_table_aligns_empty_entries_with_layers() -> None:
    code, out, err = invoke("history", "--json", str(SAMPLES / "docker-archive-legacy.tar"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "history"
    layers = [e["layer"] for e in doc["entries"]]
    assert layers[:8] == [0, None, None, None, None, 1, 2, 3]
    assert all(layer is None for layer in layers[8:]) and len(layers) == 16
    assert [e["empty_layer"] for e in doc["entries"]] == [x is None for x in layers]
    assert doc["entries"][0]["keyword"] == "ADD" and doc["entries"][0]["size"] > 0
    assert doc["base"] == {
        "name": None,
        "source": "the base image's last CMD/ENTRYPOINT; timestamps agree: entry 2 was created "
        "60 days after entry 1",
        "history_entries": 2,
        "layers": 1,
        "recorded": False,
        "certain_entries": 2,
    }
    assert doc["warnings"] == []
    assert doc["dockerfile"].startswith("# Reconstructed")


def test_console_table() -> None:
    code, out, _ = invoke("history", str(SAMPLES / "docker-archive-v25.tar"))
    assert code == 0
    assert "EXPOSE 8080/tcp" in out and "(base)" in out
    assert "buildkit (14)" in out


def test_dockerfile_of_the_dive_test_image_matches_its_recipe() -> None:
    code, out, _ = invoke("history", "--dockerfile", str(CORPUS / "docker-save-legacy-dive.tar"))
    assert code == 0
    lines = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM scratch"
    recipe = (CORPUS / "Dockerfile.dive-test-image").read_text().splitlines()
    runs = [line for line in lines if line.startswith("RUN ")]
    assert runs == [line for line in recipe if line.startswith("RUN ")]
    adds = [line.split()[-1] for line in lines if line.startswith("ADD ")]
    assert adds == ["/", "/somefile.txt", "/root/.data/"]  # base's ADD, then the recipe's
    assert (
        out.index('CMD ["sh"]') < out.index("this image's own steps") < out.index("/somefile.txt")
    )


def test_dockerfile_of_a_buildkit_image() -> None:
    code, out, _ = invoke("history", "--dockerfile", str(SAMPLES / "oci-layout"))
    assert code == 0
    assert "entries before BuildKit's first step" in out
    assert "COPY docker-entrypoint.sh /usr/local/bin/\n" in out
    assert (
        "HEALTHCHECK --interval=30s --timeout=5s --retries=3 "
        "CMD wget -q -O- http://localhost:8080/health || exit 1\n" in out
    )
    assert out.rstrip().endswith('CMD ["serve", "--port", "8080"]')


BUILDAH_HISTORY = [
    {"created_by": f"/bin/sh -c #(nop) COPY file:{HEX} in /bin/busybox ", "empty_layer": True},
    {"created_by": "/bin/sh -c #(nop) ENV A=b", "empty_layer": True},
    {"created_by": '/bin/sh -c #(nop) CMD ["/bin/busybox", "sh"]'},
    {"created_by": "/bin/sh -c echo two > /data/two", "comment": "FROM localhost/bbtest:latest"},
    {"created_by": f"/bin/sh -c #(nop) COPY file:{HEX} in /etc/ ", "comment": "FROM 32070c600294"},
    {
        "created_by": "/bin/sh -c #(nop) USER 1000",
        "comment": "FROM 7749a11c9b7f",
        "empty_layer": True,
    },
    {
        "created_by": '/bin/sh -c #(nop) ENTRYPOINT ["/bin/busybox"]',
        "comment": "FROM a3f345f8d286",
        "empty_layer": True,
    },
]


def three_layers() -> list[bytes]:
    return [build_layer([file_entry(f"file{i}", b"x")]) for i in range(3)]


def test_buildah_from_comment_names_the_base(tmp_path: Path) -> None:
    image = write_image(tmp_path / "b.tar", three_layers(), history=BUILDAH_HISTORY)
    code, out, _ = invoke("history", "--json", str(image))
    assert code == 0
    doc = json.loads(out)
    assert doc["base"]["name"] == "localhost/bbtest:latest"
    assert doc["base"]["history_entries"] == 3 and doc["base"]["layers"] == 1
    text = doc["dockerfile"]
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == [
        "FROM localhost/bbtest:latest",
        "RUN echo two > /data/two",
        f"COPY file:{HEX} /etc/",
        "USER 1000",
        'ENTRYPOINT ["/bin/busybox"]',
    ]
    assert {e["builder"] for e in doc["entries"][3:]} == {"buildah"}


def test_base_name_annotation_label(tmp_path: Path) -> None:
    image = write_image(
        tmp_path / "l.tar",
        three_layers(),
        config={
            "Labels": {
                "org.opencontainers.image.base.name": "docker.io/library/alpine:3.19",
                "org.opencontainers.image.base.digest": "sha256:" + HEX,
            }
        },
        history=[
            {"created_by": f"/bin/sh -c #(nop) ADD file:{HEX} in / "},
            {"created_by": '/bin/sh -c #(nop)  CMD ["/bin/sh"]', "empty_layer": True},
            {"created_by": "RUN /bin/sh -c apk add curl # buildkit"},
            {"created_by": "COPY app /app # buildkit"},
        ],
    )
    code, out, _ = invoke("history", "--dockerfile", str(image))
    assert code == 0
    body = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert body == [
        f"FROM docker.io/library/alpine:3.19@sha256:{HEX}",
        "RUN apk add curl",
        "COPY app /app",
    ]


def test_shell_instruction_changes_how_run_is_read(tmp_path: Path) -> None:
    image = write_image(
        tmp_path / "s.tar",
        three_layers()[:1],
        history=[
            {"created_by": "SHELL [/bin/ash -eo pipefail -c]", "empty_layer": True},
            {"created_by": "RUN /bin/ash -eo pipefail -c wget -O- x | sh # buildkit"},
        ],
    )
    doc = json.loads(invoke("history", "--json", str(image))[1])
    assert doc["entries"][1]["instruction"] == "RUN wget -O- x | sh"


def test_layers_without_history_are_listed(tmp_path: Path) -> None:
    image = write_image(
        tmp_path / "h.tar", three_layers(), history=[{"created_by": "/bin/sh -c true"}]
    )
    code, out, _ = invoke("history", "--json", str(image))
    assert code == 0
    doc = json.loads(out)
    assert [(e["index"], e["layer"]) for e in doc["entries"]] == [(0, 0), (None, 1), (None, 2)]
    assert doc["warnings"] == ["2 layers have no history entry"]
    code, out, _ = invoke("history", str(image))
    assert "warning: 2 layers have no history entry" in out


def test_history_reads_no_layer(tmp_path: Path) -> None:
    # a missing layer blob does not matter: history is metadata only
    broken = tmp_path / "oci"
    import shutil

    shutil.copytree(SAMPLES / "tampered" / "missing-blob", broken)
    code, out, err = invoke("history", "--dockerfile", str(broken))
    assert code == 0, err
    assert "FROM scratch" in out


def test_no_sign_of_a_base_draws_no_boundary() -> None:
    code, out, _ = invoke("history", "--json", str(CORPUS / "docker-save-v25-hello-world.tar"))
    assert code == 0
    doc = json.loads(out)
    assert doc["base"]["history_entries"] == 0
    assert doc["base"]["layers"] == 1  # layer 0 still counts as the base, as in dive
    body = [line for line in doc["dockerfile"].splitlines() if line and line[0] != "#"]
    assert body == ["FROM scratch", "COPY hello /", 'CMD ["/hello"]']
    assert not any(entry["base"] for entry in doc["entries"])


# -- the base boundary on a local base built with BuildKit ------------------------------------
# busybox as the classic builder wrote it, then a local base (FROM busybox, RUN x, no CMD) and
# the application (FROM base, RUN y), both built with BuildKit: its history entries carry
# created, created_by, comment and empty_layer in Go field order, each layer stamped with the
# time its snapshot was made.
BUSYBOX = [
    {
        "created": "2024-01-10T10:00:00.123456789Z",
        "created_by": f"/bin/sh -c #(nop) ADD file:{HEX} in / ",
    },
    {
        "created": "2024-01-10T10:00:01.5Z",
        "created_by": '/bin/sh -c #(nop)  CMD ["sh"]',
        "empty_layer": True,
    },
]


def buildkit_step(created: str, created_by: str, *, empty: bool = False) -> dict[str, object]:
    entry: dict[str, object] = {
        "created": created,
        "created_by": created_by,
        "comment": "buildkit.dockerfile.v0",
    }
    if empty:
        entry["empty_layer"] = True
    return entry


def local_base_history(base_time: str, app_time: str) -> list[dict[str, object]]:
    return [
        *BUSYBOX,
        buildkit_step(base_time, "RUN /bin/sh -c echo x > /x # buildkit"),
        buildkit_step(app_time, "ENV A=b", empty=True),
        buildkit_step(app_time, "RUN /bin/sh -c echo y > /y # buildkit"),
    ]


def local_base_oci(root: Path, history: list[dict[str, object]]) -> Path:
    oci_layout(
        root,
        three_layers(),
        config={"history": history},
        annotations={
            "org.opencontainers.image.base.name": "localhost/base:1",
            "org.opencontainers.image.base.digest": "sha256:" + HEX,
        },
    )
    return root


def body(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_local_buildkit_base_is_split_where_the_timestamps_show_a_later_build(
    tmp_path: Path,
) -> None:
    history = local_base_history("2024-03-01T09:00:00Z", "2024-03-01T11:00:00.5Z")
    image = local_base_oci(tmp_path / "oci", history)
    doc = json.loads(invoke("history", "--json", str(image))[1])
    assert doc["base"]["history_entries"] == 3 and doc["base"]["layers"] == 2
    assert doc["base"]["certain_entries"] == 2 and doc["base"]["recorded"] is False
    assert "entry 3 was created 2 hours after entry 2: a later build" in doc["base"]["source"]
    text = doc["dockerfile"]
    # the base's own RUN is not repeated as a step, but stays visible, commented out
    assert body(text) == [f"FROM localhost/base:1@sha256:{HEX}", "ENV A=b", "RUN echo y > /y"]
    assert "\n# RUN echo x > /x\n" in text
    assert "probably the base image's own build (a guess)" in text
    assert [e["base"] for e in doc["entries"]] == [True, True, True, False, False]


def test_local_buildkit_base_without_a_pause_says_the_boundary_is_a_guess(
    tmp_path: Path,
) -> None:
    # one timestamp for every step (SOURCE_DATE_EPOCH): nothing tells base from app
    when = "2024-03-01T09:00:00Z"
    image = local_base_oci(tmp_path / "oci", local_base_history(when, when))
    code, out, _ = invoke("history", "--dockerfile", str(image))
    assert code == 0
    assert body(out) == [
        f"FROM localhost/base:1@sha256:{HEX}",
        "RUN echo x > /x",
        "ENV A=b",
        "RUN echo y > /y",
    ]
    # never a precise claim that can be wrong: the uncertain steps are flagged as such
    assert "entries 0-1 belong to the base image (certain)" in out
    assert "the boundary is a guess; delete any step the base image already contains" in out
    assert out.index("the boundary is a guess") < out.index("RUN echo x > /x")


def test_the_docker_archive_of_the_same_image_starts_from_scratch(tmp_path: Path) -> None:
    history = local_base_history("2024-03-01T09:00:00Z", "2024-03-01T11:30:00Z")
    image = write_image(tmp_path / "d.tar", three_layers(), history=history)
    doc = json.loads(invoke("history", "--json", str(image))[1])
    assert body(doc["dockerfile"])[0] == "FROM scratch"
    assert body(doc["dockerfile"]).count("RUN echo x > /x") == 1
    assert doc["base"]["history_entries"] == 3


def test_buildah_squashed_build_puts_its_from_comment_on_the_last_entry(tmp_path: Path) -> None:
    # buildah bud without --layers, exactly as buildah 1.28.2 wrote it
    history = [
        {
            "created": "2026-12-06T20:42:10.756724779Z",
            "created_by": f"/bin/sh -c #(nop) COPY dir:{HEX} in / ",
            "empty_layer": True,
        },
        {
            "created": "2026-12-06T20:42:10.766065742Z",
            "created_by": '/bin/sh -c #(nop) CMD ["/bin/busybox", "sh"]',
        },
        {
            "created": "2026-12-06T20:42:11.150959277Z",
            "created_by": "/bin/sh -c echo hi > /x",
            "empty_layer": True,
        },
        {
            "created": "2026-12-06T20:42:11.151020147Z",
            "created_by": "/bin/sh -c #(nop) ENV A=b",
            "empty_layer": True,
        },
        {
            "created": "2026-12-06T20:42:12.000916792Z",
            "created_by": "/bin/sh -c touch /y",
            "comment": "FROM localhost/i11base:1",
        },
    ]
    image = write_image(tmp_path / "b.tar", three_layers()[:2], history=history)
    doc = json.loads(invoke("history", "--json", str(image))[1])
    assert doc["base"]["name"] == "localhost/i11base:1"
    assert doc["base"]["history_entries"] == 2 and doc["base"]["recorded"] is True
    assert body(doc["dockerfile"]) == [
        "FROM localhost/i11base:1",
        "RUN echo hi > /x",
        "ENV A=b",
        "RUN touch /y",
    ]


def test_buildah_commit_marker_is_no_instruction(tmp_path: Path) -> None:
    history = [
        {"created_by": f"/bin/sh -c #(nop) COPY dir:{HEX} in / ", "empty_layer": True},
        {"created_by": '/bin/sh -c #(nop) CMD ["/bin/busybox", "sh"]'},
        {"created_by": "/bin/sh", "comment": "FROM localhost/i11base:1"},
    ]
    image = write_image(tmp_path / "c.tar", three_layers()[:2], history=history)
    doc = json.loads(invoke("history", "--json", str(image))[1])
    last = doc["entries"][2]
    assert last["keyword"] is None and last["instruction"] is None
    assert last["builder"] == "buildah" and last["notes"][0].startswith("buildah commit")
    assert "RUN /bin/sh" not in doc["dockerfile"]
    assert body(doc["dockerfile"]) == ["FROM localhost/i11base:1"]
    assert (
        "# buildah commit: the commands run in the container are not recorded"
        in (doc["dockerfile"])
    )
    code, out, _ = invoke("history", str(image))
    assert code == 0
    assert "buildah commit" in out and "RUN /bin/sh" not in out
    assert "recorded base: 2 history entries" in out
