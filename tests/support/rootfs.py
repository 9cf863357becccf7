"""A root directory changed step by step by real tools (dpkg, pip, rpm), each step made into
an image layer: the entries added or changed since the last snapshot, whiteouts for the ones
removed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path


def _state(root: Path) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("l", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("d", "")
            else:
                found[rel] = ("f", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


class LayeredRoot:
    """``root`` and the layers taken of it so far (``snapshot`` after each change)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.before: dict[str, tuple[str, str]] = {}
        self.layers: list[bytes] = []

    def snapshot(self) -> bytes:
        now = _state(self.root)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for rel in sorted(now):
                if self.before.get(rel) == now[rel]:
                    continue
                info = tf.gettarinfo(str(self.root / rel), arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isfile():
                    with open(self.root / rel, "rb") as handle:
                        tf.addfile(info, handle)
                else:
                    tf.addfile(info)
            for rel in sorted(set(self.before) - set(now)):
                parent, _, name = rel.rpartition("/")
                if parent in self.before and parent not in now:
                    continue  # its parent's whiteout covers it
                whiteout = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
                whiteout.mtime = 0
                tf.addfile(whiteout)
        self.before = now
        layer = buffer.getvalue()
        self.layers.append(layer)
        return layer


def build_deb(
    workdir: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    *,
    arch: str = "all",
    extra: str = "",
) -> Path:
    """A .deb built by dpkg-deb holding ``files`` (absolute paths)."""
    tree = workdir / f"{name}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        f"Maintainer: Test <test@example.org>\n{extra}Description: test package {name}\n"
    )
    for path, data in files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    deb = workdir / f"{name}_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def dpkg(root: Path, *args: str) -> None:
    """dpkg acting on ``root`` (its own admin dir; no maintainer scripts in our packages)."""
    admin = root / "var/lib/dpkg"
    if not admin.is_dir():
        for sub in ("info", "updates"):
            (admin / sub).mkdir(parents=True)
        (admin / "status").touch()
    subprocess.run(
        [
            "dpkg",
            f"--root={root}",
            f"--admindir={admin}",
            "--force-not-root",
            "--log=/dev/null",
            *args,
        ],
        check=True,
        capture_output=True,
    )
    for leftover in ("lock", "lock-frontend", "status-old", "triggers/Lock"):
        (admin / leftover).unlink(missing_ok=True)


def make_wheel(workdir: Path, name: str, version: str, modules: dict[str, bytes]) -> Path:
    """A minimal wheel (PEP 427) for pip to install: the modules and a dist-info."""
    import base64
    import zipfile

    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = dict(modules)
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n\n"
    ).encode()
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: dockscope-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    rows = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(rows) + "\n").encode()
    wheel = workdir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return wheel


def pip_install(target: Path, wheel: Path) -> None:
    """pip installing a wheel into ``target`` (replacing an earlier version there)."""
    import sys

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )


def build_rpm(workdir: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A noarch .rpm built by rpmbuild holding ``files`` (absolute paths)."""
    top = workdir / f"rpmbuild-{name}-{version}"
    source = top / "content"
    for path, data in files.items():
        target = source / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    install = "\n".join(
        f"mkdir -p %{{buildroot}}{Path(p).parent}\ncp {source / p.lstrip('/')} %{{buildroot}}{p}"
        for p in files
    )
    spec = top / f"{name}.spec"
    spec.write_text(
        f"Name: {name}\nVersion: {version}\nRelease: 1\nSummary: test\nLicense: MIT\n"
        "BuildArch: noarch\n%description\ntest\n"
        f"%install\n{install}\n%files\n" + "\n".join(files) + "\n"
    )
    subprocess.run(
        [
            "rpmbuild",
            "-bb",
            "--define",
            f"_topdir {top}",
            "--define",
            "_build_id_links none",
            str(spec),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = (top / "RPMS" / "noarch").glob("*.rpm")
    return built


def rpm(root: Path, *args: str) -> str:
    """Debian's rpm acting on the database under ``root`` (records only: --justdb)."""
    return subprocess.run(
        ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
