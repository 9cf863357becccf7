"""Odd values written to break dockscope: more layers than the bound, JSON numbers Python or
Go cannot hold, paths thousands of levels deep, link targets longer than the kernel takes,
a FIFO for /etc/passwd, a hard link to a symlink. Each is a documented bound (one line, exit
3) or a correct result, and stays cheap: the adversarial images are made here, small."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from inspect_tool.errors import InvalidJSONError
from inspect_tool.model.jsondoc import MAX_NUMBER_DIGITS, parse_json
from inspect_tool.render.json import dumps, dumps_deep
from inspect_tool.sources.build import MAX_LAYERS
from tests.support.cli import invoke
from tests.support.images import (
    OCI_LAYER_TAR,
    Layout,
    config_bytes,
    layer_tar,
    oci_layout,
    sha256,
)
from tests.support.tar_entries import (
    Entry,
    build_layer,
    dir_entry,
    file_entry,
    hardlink_entry,
    symlink_entry,
)


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dockscope: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _layout(root: Path, *, config: bytes, layer_count: int, layer: bytes) -> Path:
    """An OCI layout whose manifest lists ``layer`` ``layer_count`` times."""
    layout = Layout(root)
    layout.index([layout.manifest([(layer, OCI_LAYER_TAR)] * layer_count, config=config)])
    return root


# -- 1. more layers than the bound ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["ls", "inspect", "layers", "export"])
def test_more_layers_than_the_bound_is_one_line_exit_3(tmp_path: Path, command: str) -> None:
    """65,537 layers used to overflow the merged view's 16-bit layer index (exit 4) after
    reading every layer; now the image is refused as it is built, before any layer is read."""
    layer = layer_tar({"a": b"x"})
    count = MAX_LAYERS + 1
    config = config_bytes([sha256(layer)] * count)
    image = _layout(tmp_path / "many", config=config, layer_count=count, layer=layer)
    args: list[str | Path] = [command, image] + (["-o", tmp_path / "o.tar"] * (command == "export"))
    code, _, err = invoke(*args)
    assert code == 3, err
    assert_one_line_error(err, str(image), f"{count} layers", f"bound of {MAX_LAYERS}")


def test_more_diff_ids_than_the_bound_names_the_config(tmp_path: Path) -> None:
    layer = layer_tar({"a": b"x"})
    config = config_bytes([sha256(layer)] * (MAX_LAYERS + 5))
    config_digest = sha256(config)
    image = _layout(tmp_path / "many", config=config, layer_count=1, layer=layer)
    code, _, err = invoke("ls", image)
    assert code == 3
    assert_one_line_error(err, config_digest[7:], "rootfs.diff_ids lists 10005 layers")


def test_verify_reports_the_layer_bound_as_a_failed_check_then_exits_3(tmp_path: Path) -> None:
    layer = layer_tar({"a": b"x"})
    count = MAX_LAYERS + 1
    image = _layout(
        tmp_path / "many",
        config=config_bytes([sha256(layer)] * count),
        layer_count=count,
        layer=layer,
    )
    code, out, err = invoke("verify", image)
    assert code == 3
    assert "FAIL image-readable" in out and f"bound of {MAX_LAYERS}" in out
    assert_one_line_error(err, f"bound of {MAX_LAYERS}")


# -- 2. JSON numbers ----------------------------------------------------------------------------

BAD_NUMBERS = {
    "long integer": ("9" * (MAX_NUMBER_DIGITS + 1), f"{MAX_NUMBER_DIGITS}-digit bound"),
    "long negative integer": ("-" + "9" * 5000, "an integer of 5000 digits"),
    "float overflow": ("1e999", "beyond float64's range"),
    "negative float overflow": ("-1" + "0" * 400 + ".5", "beyond float64's range"),
    "NaN": ("NaN", "NaN is not a JSON value"),
    "Infinity": ("-Infinity", "-Infinity is not a JSON value"),
}


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
def test_numbers_json_cannot_hold_are_invalid_json(case: str) -> None:
    literal, message = BAD_NUMBERS[case]
    with pytest.raises(InvalidJSONError) as info:
        parse_json(f'{{"a": [1, {literal}]}}'.encode(), subject="doc.json")
    assert info.value.subject == "doc.json" and message in info.value.message


def test_numbers_within_bounds_parse_exactly() -> None:
    longest = "9" * MAX_NUMBER_DIGITS
    value = parse_json(f"[{longest}, -{longest}, 1e308, 0.1, -0]".encode(), subject="x")
    assert value == [int(longest), -int(longest), 1e308, 0.1, 0]


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
@pytest.mark.parametrize("where", ["config", "manifest"])
def test_an_image_with_a_bad_number_is_one_line_exit_3(
    tmp_path: Path, case: str, where: str
) -> None:
    literal, message = BAD_NUMBERS[case]
    layer = layer_tar({"a": b"x"})
    image = tmp_path / "img"
    digests = oci_layout(image, [layer])
    blob = image / "blobs" / "sha256" / digests[where][7:]
    raw = blob.read_bytes()
    blob.write_bytes(raw[:-1] + f', "x-odd": {literal}}}'.encode())  # digest now differs:
    # the error must still be about the number, found before any digest is compared
    for command in ("inspect", "ls"):
        code, _, err = invoke(command, image)
        assert code == 3, err
        assert_one_line_error(err, str(blob.relative_to(image)), message)


# -- 10. a hard link to a symlink -----------------------------------------------------------------


def _image(tmp_path: Path, *layers: list[Entry]) -> Path:
    root = tmp_path / "img"
    oci_layout(root, [build_layer(entries) for entries in layers])
    return root


def test_cat_of_a_hard_link_to_a_symlink_reads_what_the_symlink_names(tmp_path: Path) -> None:
    """Docker extracts a hard link with link(2), which does not follow a symlink: the name
    becomes a second symlink with the same target. ``cat`` follows it as it would any symlink,
    a relative target from the hard link's own directory."""
    image = _image(
        tmp_path,
        [
            dir_entry("etc"),
            file_entry("etc/real", b"content\n"),
            symlink_entry("etc/abs", "/etc/real"),
            symlink_entry("etc/rel", "real"),
            hardlink_entry("etc/twin", "etc/rel"),  # same directory: rel resolves as before
            hardlink_entry("abs-link", "etc/abs"),
            hardlink_entry("rel-link", "etc/rel"),  # at /: "real" names /real, which is missing
        ],
        [
            hardlink_entry("chain", "abs-link"),
            dir_entry("dir"),
            symlink_entry("etc/dirlink", "/dir"),
            file_entry("dir/inside", b"in"),
        ],
        [hardlink_entry("via", "etc/dirlink")],
    )
    for path in ("/abs-link", "/etc/twin", "/chain"):
        code, out, err = invoke("cat", image, path)
        assert (code, out) == (0, "content\n"), (path, err)
    code, out, _ = invoke("cat", image, "/via/inside")  # a hard link to a symlink to a directory
    assert (code, out) == (0, "in")
    code, _, err = invoke("cat", image, "/rel-link")
    assert code == 2
    assert_one_line_error(err, "no such file or directory in the image: /real")


def test_cat_of_a_hard_link_to_a_hard_link_reads_the_file(tmp_path: Path) -> None:
    image = _image(
        tmp_path, [file_entry("a", b"bytes"), hardlink_entry("b", "a")], [hardlink_entry("c", "b")]
    )
    code, out, err = invoke("cat", image, "/c")
    assert (code, out) == (0, "bytes"), err


# -- 7. /etc/passwd or /etc/group a FIFO -----------------------------------------------------------


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
@pytest.mark.parametrize("which", ["passwd", "group"])
def test_run_with_a_fifo_for_the_user_database_does_not_hang(tmp_path: Path, which: str) -> None:
    """PID 1 reads the image's /etc/passwd and /etc/group to become the user: a FIFO there
    blocked it forever. Only a regular file is read; a FIFO counts as missing (numeric
    users still run, a named one is not found) and the trace names it."""
    from tests.image.test_busybox_image import load_generator
    from tests.support.cli import dockscope
    from tests.support.runtime import events, step

    busybox, filesystem = load_generator("busybox"), load_generator("filesystem")
    binary = Path("/bin/busybox")
    base = filesystem.make_layer(
        busybox.busybox_layer(binary.read_bytes(), busybox.busybox_applets(binary))
    ).tar
    image = tmp_path / "fifo-image"
    oci_layout(image, [base, build_layer([Entry(f"etc/{which}", "fifo")])])
    state = tmp_path / "state"
    trace = tmp_path / "trace.json"
    # the command itself reads no user database (busybox id would block on the FIFO too)
    ids = ("busybox", "grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status")

    def who(*opts: str) -> tuple[int, list[str], str]:
        result = dockscope(state, "run", "--rm", *opts, image, *ids, timeout=30)
        return result.code, result.out.split(), result.err

    code, out, err = who("--trace-json", str(trace), "-u", "0")
    assert (code, out[:10]) == (0, ["Uid:", "0", "0", "0", "0", "Gid:", "0", "0", "0", "0"]), err
    user_step = step(events(trace), "user")
    assert user_step["evidence"]["ignored"] == [f"/etc/{which}: not a regular file (ignored)"]
    code, out, err = who("-u", "1000:1001")
    assert (code, out[:2], out[5:7]) == (0, ["Uid:", "1000"], ["Gid:", "1001"]), err
    if which == "passwd":
        code, out, err = who("-u", "user")
        assert code == 126 and "unable to find user user" in err


# -- 3, 4, 5. paths thousands of levels deep ---------------------------------------------------

# "/" + "a/" * 2045 + "file" is 4,095 bytes: the longest path an entry may have
DEEPEST = 2045


def _deep_image(tmp_path: Path, levels: int, *, name: str = "img") -> Path:
    path = "/".join(["a"] * levels) + "/file"
    root = tmp_path / name
    oci_layout(root, [build_layer([file_entry(path, b"deep\n", pax_path=True)])])
    return root


def _peak_rss(args: list[str], *, timeout: float = 60) -> tuple[int, int, str]:
    """Exit status, peak resident memory (VmHWM, polled) and stderr of ``dockscope ARGS``."""
    peak = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inspect_tool", *args], stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"{args} still runs after {timeout} s"
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            time.sleep(0.02)
        err.seek(0)
        return proc.returncode, peak, err.read().decode()


@pytest.mark.parametrize(
    "command",
    [
        ["ls", "-R", "IMAGE"],
        ["tree", "IMAGE"],
        ["layers", "IMAGE"],
        ["find", "IMAGE", "file"],
        ["cat", "IMAGE", "/a/file"],
        ["diff", "IMAGE", "--layer", "0"],
        ["types", "IMAGE"],
        ["efficiency", "IMAGE"],
        ["export", "IMAGE", "-o", "OUT"],
        ["unpack", "IMAGE", "OUT"],
    ],
    ids=lambda c: c[0],
)
def test_a_path_longer_than_path_max_is_one_line_exit_3(tmp_path: Path, command: list[str]) -> None:
    """Docker and containerd extract an entry by its full path, which the kernel refuses
    beyond PATH_MAX: no engine runs such a layer, and dockscope refuses it with the bound
    named, in every command, before building anything of that depth."""
    image = _deep_image(tmp_path, DEEPEST + 1)
    places = {"IMAGE": str(image), "OUT": str(tmp_path / "out")}
    code, _, err = invoke(*[places.get(a, a) for a in command])
    assert code == 3, err
    assert_one_line_error(err, str(image), "layer 0", "4097 bytes", "bound of 4095 bytes")


def test_the_deepest_path_allowed_works_everywhere(tmp_path: Path) -> None:
    """2,045 levels (4,095 bytes): deeper than Python's recursion limit. ``tree`` used to
    recurse (RecursionError from 1,000 levels on); its JSON nests deeper than json.dumps
    goes, so it is written without recursion, identical to what json.dumps would write."""
    image = _deep_image(tmp_path, DEEPEST)
    code, out, err = invoke("ls", "-R", image)
    assert code == 0, err
    assert len(out.splitlines()) == DEEPEST + 1
    code, out, err = invoke("tree", image)
    assert code == 0 and "+ a/" in out, err
    code, out, err = invoke("tree", "--json", image)
    assert code == 0, err
    assert out.count('"name": "a"') == DEEPEST and out.count('"name": "file"') == 1
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        document = json.loads(out)
    finally:
        sys.setrecursionlimit(previous)
    node, depth = document["layers"][0]["changes"][0], 1
    while node["children"]:
        (node,) = node["children"]
        depth += 1
    assert (depth, node["path"]) == (DEEPEST + 1, "/" + "a/" * DEEPEST + "file")
    code, out, err = invoke("cat", image, "/" + "a/" * DEEPEST + "file")
    assert (code, out) == (0, "deep\n"), err
    dest = tmp_path / "dest"
    try:
        code, _, err = invoke("unpack", image, dest)
        assert code == 0, err
        fd = os.open(dest / ("a/" * 1000), os.O_RDONLY | os.O_DIRECTORY)  # within PATH_MAX
        try:
            inner = os.open("a/" * (DEEPEST - 1000) + "file", os.O_RDONLY, dir_fd=fd)
            with os.fdopen(inner, "rb") as leaf:
                assert leaf.read() == b"deep\n"
        finally:
            os.close(fd)
    finally:
        # pytest removes old temporary folders with a recursive rmtree, which fails here
        subprocess.run(["rm", "-rf", str(dest)], check=True)
    code, _, err = invoke("export", image, "-o", tmp_path / "flat.tar")
    assert code == 0, err


def test_dumps_deep_writes_what_json_dumps_writes() -> None:
    document = {
        "a": [1, 2.5, None, True, False, 'x\u00e9\n"', [], {}, [[]], {"k": {}}],
        "b": {"nested": {"list": [{"c": 1}, {"d": [1, [2, [3]]]}]}},
        "": "",
        "é": [{"x": None}],
    }
    assert dumps_deep(document) == json.dumps(document, indent=2, ensure_ascii=False)
    assert dumps_deep([]) == "[]" and dumps_deep("s") == '"s"'
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(3000):
        deep = {"children": [deep]}
    text = dumps(deep)  # json.dumps alone raises RecursionError here
    assert text.count('"children": [') == 3000 and text.endswith("\n" + "}")


def test_ls_of_a_path_of_500k_levels_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """It used to grow to 24 GB (every prefix of the path held at once)."""
    image = _deep_image(tmp_path, 500_000)
    code, peak, err = _peak_rss(["ls", "-R", str(image)])
    assert code == 3 and "bound of 4095 bytes" in err, err
    assert peak < 150 * 10**6, f"ls -R peaked at {peak / 1e6:.0f} MB"
    image = _deep_image(tmp_path, DEEPEST, name="deepest")
    code, peak, err = _peak_rss(["ls", "-R", str(image)])
    assert code == 0, err
    assert peak < 150 * 10**6, f"ls -R peaked at {peak / 1e6:.0f} MB"


# -- 6. a writable layer thousands of levels deep ---------------------------------------------


def _nest(directory: Path, name: str, levels: int, leaf: bytes) -> None:
    """``levels`` directories ``name`` inside each other, then a file: made through
    descriptors, as a process inside a container can (the host path passes PATH_MAX)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with os.fdopen(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(leaf)
    finally:
        os.close(fd)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
def test_a_writable_layer_thousands_of_levels_deep(tmp_path: Path, busybox_image: Path) -> None:
    """container diff, ps -s, inspect -s, container export and rm walk the upper directory
    through descriptors: its host paths pass PATH_MAX (ENAMETOOLONG, exit 4 before), and
    os.walk and shutil.rmtree recursed past Python's limit."""
    from tests.support.cli import dockscope, ok
    from tests.support.runtime import only_container

    state = tmp_path / "state"
    ok(dockscope(state, "run", "--name", "deep", busybox_image, "true"))
    upper = state / "containers" / only_container(state) / "upper"
    levels = 3000  # 6 KB below the upper directory: past PATH_MAX and the recursion limit
    try:
        _nest(upper, "d", levels, b"xyz")
        lines = ok(dockscope(state, "container", "diff", "deep")).splitlines()
        deepest = "/d" * levels
        assert lines == [f"A {'/d' * n}" for n in range(1, levels + 1)] + [f"A {deepest}/leaf"]
        document = json.loads(ok(dockscope(state, "container", "diff", "--json", "deep")))
        leaf = document["changes"][-1]
        assert (leaf["path"], leaf["size"]) == (f"{deepest}/leaf", 3)
        assert leaf["sha256"] == sha256(b"xyz")
        assert "3B" in ok(dockscope(state, "ps", "-a", "-s"))
        inspected = json.loads(ok(dockscope(state, "container", "inspect", "-s", "deep")))
        assert inspected["size"]["rw"] == 3
        for args in ([], ["--writable-layer"]):
            out = tmp_path / f"export{len(args)}.tar"
            ok(dockscope(state, "container", "export", *args, "deep", "-o", out, timeout=120))
            with tarfile.open(out) as tf:
                names = tf.getnames()
                assert names.count(f"{deepest[1:]}/leaf") == 1
                member = tf.extractfile(f"{deepest[1:]}/leaf")
                assert member is not None and member.read() == b"xyz"
        ok(dockscope(state, "rm", "deep"))  # shutil.rmtree recursed: RecursionError, exit 4
        assert not upper.parent.exists()
    finally:
        subprocess.run(["rm", "-rf", str(upper.parent)], check=True)


def test_unpack_of_the_deepest_path_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    """Directories' modes are set at the end, from descriptors: every ancestor was kept open,
    so with 1,024 descriptors the 1,000-odd deepest directories silently stayed 0700."""
    import resource

    image = _deep_image(tmp_path, DEEPEST)
    dest = tmp_path / "dest"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    try:
        proc = subprocess.run(
            [sys.executable, "-m", "inspect_tool", "unpack", str(image), str(dest)],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=low_limit,
        )
        assert proc.returncode == 0, proc.stderr
        modes = set()
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(DEEPEST):
                modes.add(os.stat("a", dir_fd=fd, follow_symlinks=False).st_mode & 0o7777)
                inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = inner
        finally:
            os.close(fd)
        assert modes == {0o755}
    finally:
        subprocess.run(["rm", "-rf", str(dest)], check=True)


def test_a_directory_input_deeper_than_the_recursion_limit_is_listed(tmp_path: Path) -> None:
    """A directory given as the image (an OCI layout, an extracted archive) is listed
    without recursion (os.walk recurses on Python 3.11)."""
    from inspect_tool.sources.tree import open_tree

    root = tmp_path / "layout"
    root.mkdir()
    (root / "index.json").write_text("{}")
    try:
        _nest(root, "d", 1200, b"deep")
        names = open_tree(root).names()
        assert names == ["index.json", "d/" * 1200 + "leaf"]
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)  # pytest's rmtree would recurse


@pytest.mark.parametrize("command", [["ls", "IMAGE"], ["cat", "IMAGE", "/link"]], ids=str)
def test_a_hard_link_target_past_the_path_bound_is_refused_with_its_layer(
    tmp_path: Path, command: list[str]
) -> None:
    image = _image(tmp_path, [file_entry("a", b"x"), hardlink_entry("link", "d/" * 2100 + "a")])
    code, _, err = invoke(*[str(image) if a == "IMAGE" else a for a in command])
    assert code == 3
    assert_one_line_error(err, str(image), "layer 0", "bound of 4095 bytes")
