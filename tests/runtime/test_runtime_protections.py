"""What keeps a container off the host, probed from inside a real container (as root).

Each probe is one an attacker who read the code tried: writing the host's kernel settings
(/proc/sys/kernel/core_pattern, vm.overcommit_memory), reading what leaks about the host
(/proc/keys, /proc/timer_list, /sys/firmware), opening a device node made inside for the
host's disk, device nodes shipped in an image, and overlayfs's own xattrs shipped in a layer
(a redirect or an opaque mark the kernel would follow while ``ls`` shows another tree). Each
fails as it fails under docker's defaults, and the trace names the protection.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from runtime_lab.kernel.devices import DEFAULT_RULES, v1_writes
from runtime_lab.kernel.hardening import MASKED_PATHS, READONLY_PATHS
from tests.support.cli import dockscope, ok
from tests.support.images import oci_layout
from tests.support.runtime import events, needs_root, step
from tests.support.tar_entries import Entry, build_layer, dir_entry, file_entry

pytestmark = needs_root

DOCKER_DEVICES_LIST = [
    "c 1:5 rwm",
    "c 1:3 rwm",
    "c 1:9 rwm",
    "c 1:8 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c *:* m",
    "b *:* m",
    "c 1:7 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
]


def busybox_layer(image: Path) -> bytes:
    with tarfile.open(image) as archive:
        extracted = archive.extractfile("manifest.json")
        assert extracted is not None
        manifest = json.load(extracted)
        member = archive.extractfile(manifest[0]["Layers"][0])
        assert member is not None
        return member.read()


def busybox_with(tmp_path: Path, image: Path, *layers: list[Entry]) -> Path:
    """An OCI layout: busybox's layer, then the given layers."""
    out = tmp_path / "image"
    oci_layout(out, [busybox_layer(image), *(build_layer(entries) for entries in layers)])
    return out


def sh(root: Path, image: Path, script: str, *opts: str) -> tuple[int, str, str]:
    result = dockscope(root, "run", "--rm", *opts, image, "sh", "-c", script)
    return result.code, result.out, result.err


# -- the host's kernel settings ---------------------------------------------------------------


def test_kernel_settings_are_read_only(root: Path, busybox_image: Path) -> None:
    pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    overcommit = Path("/proc/sys/vm/overcommit_memory").read_text()
    _code, out, err = sh(
        root,
        busybox_image,
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern; echo 1 > /proc/sys/vm/overcommit_memory;"
        "cat /proc/sys/kernel/core_pattern >/dev/null && echo readable",
    )
    assert out.strip() == "readable"  # read-only, not hidden
    assert err.count("Read-only file system") == 2, err  # EROFS, as under docker
    assert Path("/proc/sys/kernel/core_pattern").read_text() == pattern
    assert Path("/proc/sys/vm/overcommit_memory").read_text() == overcommit


def test_masked_paths_read_empty(root: Path, busybox_image: Path) -> None:
    present = [
        p for p in ("/proc/keys", "/proc/timer_list", "/proc/interrupts") if Path(p).exists()
    ]
    assert present, "this kernel has none of the masked files to probe"
    script = "; ".join(f"echo {p} $(wc -c < {p})" for p in present)
    script += "; echo firmware $(ls -A /sys/firmware | wc -l)"
    code, out, err = sh(root, busybox_image, script)
    assert code == 0, err
    sizes = dict(line.split() for line in out.splitlines())
    assert all(sizes[p] == "0" for p in present), out
    if Path("/sys/firmware").is_dir() and os.listdir("/sys/firmware"):
        assert sizes["firmware"] == "0"


def test_the_trace_names_each_protection(root: Path, busybox_image: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    ok(dockscope(root, "run", "--rm", "--trace-json", trace, busybox_image, "true"))
    found = events(trace)
    readonly = step(found, "readonly-paths")["evidence"]["paths"]
    assert set(readonly) == set(READONLY_PATHS)
    assert readonly["/proc/sys"] == "read-only"
    masked = step(found, "masked-paths")["evidence"]["paths"]
    assert set(MASKED_PATHS) <= set(masked)
    if Path("/proc/keys").exists():
        assert masked["/proc/keys"] == "/dev/null"
    if Path("/sys/firmware").is_dir():
        assert masked["/sys/firmware"] == "empty read-only tmpfs"
    devices = step(found, "cgroup-devices")
    assert devices["evidence"]["devices.list"] == DOCKER_DEVICES_LIST
    assert [(w["file"].rsplit("/", 1)[1], w["value"]) for w in devices["evidence"]["written"]] == [
        *v1_writes(DEFAULT_RULES)
    ]
    order = [e["step"] for e in found if e.get("phase", "done") == "done"]
    assert order.index("pivot_root") < order.index("readonly-paths") < order.index("user")
    assert order.index("cgroup-devices") < order.index("fork-shim")


def test_explain_lists_the_protections(root: Path, busybox_image: Path) -> None:
    out = ok(dockscope(root, "run", "--explain", busybox_image))
    for title in (
        "Allow only docker's default devices",
        "Make the kernel's settings read-only",
        "Mask what leaks about the host",
    ):
        assert title in out


# -- devices ------------------------------------------------------------------------------------


def test_a_node_for_the_hosts_disk_cannot_be_opened(root: Path, busybox_image: Path) -> None:
    """mknod is allowed (docker allows `b *:* m`), opening is not (EPERM from the devices
    controller); the allowed devices still work."""
    _code, out, err = sh(
        root,
        busybox_image,
        "mknod /tmp/disk b 8 0 && echo made; head -c1 /tmp/disk; "
        "mknod /tmp/kmsg c 1 11 && echo made; head -c1 /tmp/kmsg; "
        "head -c4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
    )
    assert out.split() == ["made", "made", "4", "null-ok"], (out, err)
    assert err.count("Operation not permitted") == 2, err


def test_device_nodes_in_an_image_are_never_made(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    image = busybox_with(
        tmp_path,
        busybox_image,
        [
            dir_entry("dev/"),
            Entry("dev/sda", "block", devmajor=8, devminor=0, mode=0o666),
            Entry("dev/mem", "char", devmajor=1, devminor=1, mode=0o666),
            file_entry("etc/marker", b"layer applied\n"),
        ],
    )
    trace = tmp_path / "trace.jsonl"
    result = dockscope(
        root, "run", "--rm", "--trace-json", trace, image, "sh", "-c",
        "cat /etc/marker; ls /dev; head -c1 /dev/sda",
    )  # fmt: skip
    assert result.out.splitlines()[0] == "layer applied"
    listing = result.out.splitlines()[1:]
    assert "sda" not in listing and "mem" not in listing and "null" in listing
    assert "No such file or directory" in result.err
    stored = [e for e in events(trace) if e["step"] == "layer-store" and e["args"]["layer"] == 1]
    refused = stored[0]["evidence"]["refused"]
    assert any(r.startswith("dev/sda: block device 8:0 not created") for r in refused), refused
    assert any(r.startswith("dev/mem: char device 1:1 not created") for r in refused), refused
    layer_dir = Path(stored[0]["evidence"]["path"])
    assert not (layer_dir / "dev" / "sda").exists() and not (layer_dir / "dev" / "mem").exists()


# -- overlayfs's own xattrs in image content ---------------------------------------------------


def test_overlay_xattrs_in_a_layer_are_not_followed(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    """A layer marks /d opaque and /b a redirect to /a with trusted.overlay.* xattrs, not
    with whiteouts: dockscope's ls shows the lower files, and so must the container (the
    kernel would hide /d's lower files and show /a's under /b if the marks were copied)."""
    image = busybox_with(
        tmp_path,
        busybox_image,
        [
            dir_entry("d/"),
            file_entry("d/lower", b"1\n"),
            dir_entry("a/"),
            file_entry("a/secret", b"s\n"),
        ],
        [
            dir_entry("d/", xattrs=(("trusted.overlay.opaque", "y"),)),
            file_entry("d/upper", b"2\n"),
            dir_entry("b/", xattrs=(("trusted.overlay.redirect", "/a"),)),
        ],
    )
    listing = ok(dockscope(root, "ls", image, "/d"))
    assert "lower" in listing and "upper" in listing
    assert "secret" not in ok(dockscope(root, "ls", image, "/b"))
    trace = tmp_path / "trace.jsonl"
    result = dockscope(
        root, "run", "--rm", "--trace-json", trace, image, "sh", "-c",
        "ls /d; echo --; ls -A /b",
    )  # fmt: skip
    ran_d, _, ran_b = result.out.partition("--\n")
    assert ran_d.split() == ["lower", "upper"], result
    assert ran_b.split() == [], result
    stored = [e for e in events(trace) if e["step"] == "layer-store" and e["args"]["layer"] == 2]
    refused = " ".join(stored[0]["evidence"]["refused"])
    assert "'trusted.overlay.opaque' not set" in refused
    assert "'trusted.overlay.redirect' not set" in refused
    layer_dir = Path(stored[0]["evidence"]["path"])
    assert not [x for x in os.listxattr(layer_dir / "d") if x.startswith("trusted.overlay.")]


def test_unpack_drops_overlay_xattrs_and_says_so(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    image = tmp_path / "layout"
    oci_layout(
        image,
        [
            build_layer(
                [dir_entry("d/", xattrs=(("trusted.overlay.opaque", "y"), ("user.note", "kept")))]
            )
        ],
    )
    dest = tmp_path / "dest"
    result = dockscope(root, "unpack", "--json", image, dest)
    document = json.loads(result.out)
    reasons = [entry["reason"] for entry in document["audit"]]
    assert "union-xattr" in reasons
    assert os.listxattr(dest / "d") == ["user.note"]
