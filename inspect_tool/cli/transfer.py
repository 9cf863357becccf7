"""``dockscope copy`` and ``dockscope pull``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from inspect_tool.cli._common import (
    IMAGE_OPTION,
    JSON_OPTION,
    PLATFORM_OPTION,
    REF_OPTION,
    ByteProgress,
    handle_errors,
    image_location,
    write_json,
)

SOURCE_ARGUMENT = typer.Argument(
    ...,
    metavar="SRC",
    help="The image to copy: a path or a location (oci:DIR[:REF], oci-archive:FILE[:REF], "
    "docker-archive:FILE[:NAME:TAG|@N], dir:DIR, containers-storage:[STORE]NAME, docker://REF).",
    show_default=False,
    parser=image_location,
)
DEST_ARGUMENT = typer.Argument(
    ...,
    metavar="DEST",
    help="Where to: oci:DIR[:REF] (created, or added to), oci-archive:FILE[:REF], "
    "docker-archive:FILE[:NAME:TAG], dir:DIR, docker://REF; a plain directory is an OCI layout.",
    show_default=False,
    parser=image_location,
)
VERIFY_OPTION = typer.Option(
    False,
    "--verify",
    help="Also decompress every layer (beside the download, in worker processes) and check its "
    "diff_id against the config's rootfs.diff_ids, and the chain IDs: what dockscope verify "
    "checks on them, less the tar scan. Without it, what the transport proves is checked "
    "(every blob's digest as it streams, the manifest's and the config's), as skopeo does.",
)


class _Phases(ByteProgress):
    """One progress display (rich allows one at a time) whose bar is named by the phase
    each ``start`` begins: copying, then verifying."""

    def __init__(self, *names: str) -> None:
        super().__init__(names[0])
        self._names = iter(names)

    def start(self, total: int) -> None:
        self._description = next(self._names, self._description)
        super().start(total)


def _run(
    src: Path,
    dest: Path,
    image: str | None,
    ref: str | None,
    platform: str | None,
    json_output: bool,
    check_diff_ids: bool,
) -> None:
    from inspect_tool.sources import ImageSelection
    from inspect_tool.transfer.copy import CopyVerifyError, copy_image

    with handle_errors(), _Phases("copying", "verifying") as progress:
        try:
            result = copy_image(
                src,
                dest,
                ImageSelection(image, ref, platform),
                progress=progress,
                verify_progress=progress,
                check_diff_ids=check_diff_ids,
            )
        except CopyVerifyError as exc:
            if json_output and exc.result is not None:
                from inspect_tool.render.transfer import copy_document

                write_json(copy_document(exc.result))
            raise
    if json_output:
        from inspect_tool.render.transfer import copy_document

        write_json(copy_document(result))
    else:
        from inspect_tool.render.transfer import copy_lines

        sys.stdout.write("\n".join(copy_lines(result)) + "\n")


def copy(
    src: Path = SOURCE_ARGUMENT,
    dest: Path = DEST_ARGUMENT,
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
    check_diff_ids: bool = VERIFY_OPTION,
) -> None:
    """Copy one image between transports, as skopeo copy does: every blob streamed byte for
    byte and checked against its digest (zstd stays zstd), the manifest kept where the
    destination can hold it, the copy verified before it is put in place. A failure leaves
    nothing behind. The layers are not decompressed unless --verify asks for their diff_ids
    to be checked too (as skopeo and containerd, the transport's digests are what a copy
    needs; decompressing costs as much CPU again); an uncompressed layer's digest is its
    diff_id, and is checked. Exit 0: copied and verified; 1: the copy did not verify; 2:
    usage (the destination exists, cannot be written, or lies inside the source); 3: the
    source is unreadable or a blob does not match its digest.

    Examples:

      dockscope copy oci-archive:app.tar oci:layout:app

      dockscope copy --verify oci-archive:app.tar oci:layout:app

      dockscope copy containers-storage:localhost/app:1 docker-archive:app.tar:app:1

      dockscope copy --json docker-archive:saved.tar:@0 dir:app-dir
    """
    _run(src, dest, image, ref, platform, json_output, check_diff_ids)


def pull(
    reference: str = typer.Argument(
        ...,
        metavar="REF",
        help="A registry reference: HOST[:PORT]/NAME[:TAG|@DIGEST] (docker:// optional).",
        show_default=False,
    ),
    dest: Path = DEST_ARGUMENT,
    platform: str | None = PLATFORM_OPTION,
    json_output: bool = JSON_OPTION,
    check_diff_ids: bool = VERIFY_OPTION,
) -> None:
    """Copy an image from a registry: dockscope copy docker://REF DEST. Every blob is checked
    against its digest as it streams, the manifest against the reference and the registry's
    Docker-Content-Digest; --verify also checks each layer's diff_id (decompressing it).
    A local image (a path, oci:DIR, docker-archive:FILE, …) is a usage error naming the
    dockscope copy command that copies it.

    Examples:

      dockscope pull registry.example/app:1 oci:layout:app

      dockscope pull --verify registry.example/app:1 oci:layout:app

      dockscope pull --platform linux/arm64 registry.example/app:1 docker-archive:app.tar
    """
    with handle_errors():
        source = _registry_source(reference, dest)
    _run(source, dest, None, None, platform, json_output, check_diff_ids)


def _registry_source(reference: str, dest: Path) -> Path:
    """pull's REF as the docker:// location it copies from; a local image (a path, an
    oci:/dir:/… location) is refused with the copy command that does what was meant."""
    import shlex

    from inspect_tool.errors import UsageError
    from inspect_tool.sources.location import (
        local_image,
        location_text,
        parse_location,
        written_as_path,
        written_path,
    )

    if local_image(reference):
        registry = ""
        if not written_as_path(reference) and parse_location(reference).is_path:
            # only its being a file here made it local: say how to mean the registry
            registry = f" (an image in a registry: docker://{reference})"
        command = f"dockscope copy {shlex.quote(reference)} {shlex.quote(location_text(dest))}"
        raise UsageError(
            f"a local image: pull reads from a registry; copy it with {command}{registry}",
            subject=reference,
        )
    if "://" in reference and not reference.startswith("docker://"):
        parse_location(written_path(reference))  # a mistyped transport (dokcer://) is named
    source = reference if reference.startswith("docker://") else f"docker://{reference}"
    return written_path(source)


def register(app: typer.Typer) -> None:
    app.command()(copy)
    app.command()(pull)
