"""``dockscope packages`` and ``secrets``: what an image's layers installed, and what they
hid."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspect_tool.cli._common import (
    IMAGE_ARGUMENT,
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    ByteProgress,
    handle_errors,
    stdout_console,
    write_json,
)
from inspect_tool.errors import UsageError

if TYPE_CHECKING:
    from inspect_tool.sources import ImageSelection


SBOM_FORMATS = ("spdx-json", "cyclonedx-json")


def packages(
    path: Path = IMAGE_ARGUMENT,
    layer: int | None = typer.Option(
        None,
        "--layer",
        "-L",
        metavar="N",
        help="Only what layer N did: the packages it installed, upgraded or removed.",
    ),
    at: int | None = typer.Option(
        None,
        "--at",
        metavar="N",
        help="The packages installed after layer N (0 is the bottom; default: the top).",
    ),
    files: bool = typer.Option(
        False, "--files", help="List the files each package owns (where its database does)."
    ),
    limit: int = typer.Option(
        20,
        "--limit",
        min=0,
        metavar="N",
        help="List at most N owned files changed by later layers (0: all). JSON lists all.",
    ),
    sbom: str | None = typer.Option(
        None,
        "--sbom",
        metavar="FORMAT",
        help="Write an SBOM instead: spdx-json (SPDX 2.3) or cyclonedx-json (CycloneDX 1.5).",
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Installed packages, each with the layer that installed it and the layers that changed it.

    Reads the package databases from the layers (nothing runs, nothing is unpacked): dpkg
    (var/lib/dpkg/status, distroless status.d/), apk (lib/apk/db/installed), rpm (sqlite,
    NDB and BerkeleyDB databases, read without rpm), Python (*.dist-info, *.egg-info), npm
    (node_modules/*/package.json), Go ELF binaries' build information (Go 1.13 and later)
    and Java archives. Each package is shown at the layer that installed its current
    version; upgrades, downgrades and removals by later layers are listed, and so are files
    a package owns that a later layer modified or deleted. A malformed database is reported
    with its layer and path; the rest is read.

    Examples:

      dockscope packages image.tar

      dockscope packages --layer 2 image.tar     (what layer 2 installed or changed)

      dockscope packages --at 2 image.tar        (everything installed after layer 2)

      dockscope packages --json image.tar | jq '.packages[] | select(.ecosystem == "deb")'

      dockscope packages --sbom cyclonedx-json image.tar > sbom.json
    """
    from inspect_tool.analyze.packages.scan import changed_in, scan_packages

    with handle_errors():
        if layer is not None and at is not None:
            raise UsageError("--layer and --at cannot be used together")
        if sbom is not None and sbom not in SBOM_FORMATS:
            raise UsageError(f"--sbom {sbom}: expected one of {', '.join(SBOM_FORMATS)}")
        if sbom is not None and (json_output or layer is not None):
            raise UsageError("--sbom is a document of its own: not with --json or --layer")
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, ByteProgress("reading package databases") as progress:
            progress.start(sum(lyr.size or 0 for lyr in selected.layers))
            report = scan_packages(
                source,
                selected,
                layer=layer if layer is not None else at,
                progress=progress.advance,
            )
        if layer is not None:
            report = changed_in(report, layer)
        if sbom is not None:
            from inspect_tool.render.sbom import cyclonedx_document, spdx_document

            make = spdx_document if sbom == "spdx-json" else cyclonedx_document
            write_json(make(selected, report))
        elif json_output:
            from inspect_tool.render.packages import packages_document

            write_json(packages_document(selected, report, files=files))
        else:
            from inspect_tool.render.packages import render_packages

            render_packages(
                stdout_console(),
                selected,
                report,
                show_files=files,
                limit=limit,
                only_layer=layer is not None,
            )


def secrets(
    path: Path = IMAGE_ARGUMENT,
    show: bool = typer.Option(
        False, "--show", help="Print each secret whole (default: a redacted excerpt)."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Secrets in every layer's files, deleted and overwritten ones too, and in the config.

    Private keys, AWS, GCP, GitHub, GitLab and Slack credentials, registry auths (docker
    config.json, auth.json), kubeconfig tokens and keys, .env files, passwords in shell
    histories, configuration files and URLs, password hashes in /etc/shadow and random-looking
    values assigned to keys and tokens (the rules: docs/SECRETS.md). Every version of every
    file is scanned (its first 1 MiB; binary files skipped), so a secret a later layer
    deleted is found in the layer that still ships it. The env, labels and history commands
    are scanned too. Matches in documentation and tests are counted, not reported.

    Each finding names the layer, the path and line, the rule and a redacted excerpt; --show
    prints the secret itself. The exit status is 1 when any secret is found (a CI gate).

    Examples:

      dockscope secrets image.tar

      dockscope secrets --json image.tar | jq '.findings[] | select(.fate != "visible")'
    """
    from inspect_tool.analyze.secrets import scan_secrets, spare_core
    from inspect_tool.errors import ExitCode

    with handle_errors():
        from inspect_tool.sources import ImageSelection, open_image

        source, selected = open_image(path, ImageSelection(image, ref, platform))
        with source, ByteProgress("scanning files") as progress:
            progress.start(sum(lyr.size or 0 for lyr in selected.layers))
            report = scan_secrets(
                source, selected, progress=progress.advance, parallel=spare_core()
            )
        if json_output:
            from inspect_tool.render.secrets import secrets_document

            write_json(secrets_document(selected, report, show=show))
        else:
            from inspect_tool.render.secrets import render_secrets

            render_secrets(stdout_console(), selected, report, show=show)
        if report.findings:
            raise typer.Exit(int(ExitCode.PROBLEMS))


def diff_packages_command(
    path_a: Path,
    path_b: Path,
    selection_a: ImageSelection,
    selection_b: ImageSelection,
    *,
    json_output: bool,
) -> None:
    """``diff --packages``: both images' packages read, then compared (exit 1 if they differ)."""
    from inspect_tool.analyze.packages.compare import diff_packages
    from inspect_tool.analyze.packages.scan import scan_packages
    from inspect_tool.errors import ExitCode
    from inspect_tool.sources import open_image

    source_a, a = open_image(path_a, selection_a)
    with source_a:
        source_b, b = open_image(path_b, selection_b)
        with source_b, ByteProgress("reading package databases") as progress:
            progress.start(sum(lyr.size or 0 for lyr in (*a.layers, *b.layers)))
            report_a = scan_packages(source_a, a, progress=progress.advance)
            report_b = scan_packages(source_b, b, progress=progress.advance)
    differences = diff_packages(report_a, report_b)
    if json_output:
        from inspect_tool.render.packages import package_diff_document

        write_json(package_diff_document(a, b, differences))
    else:
        from inspect_tool.render.packages import render_package_diff

        render_package_diff(stdout_console(), a, b, differences)
    if differences:
        raise typer.Exit(int(ExitCode.PROBLEMS))


def register(app: typer.Typer) -> None:
    app.command()(packages)
    app.command()(secrets)
