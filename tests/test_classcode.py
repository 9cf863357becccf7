"""inspect_tool/classcode.py: the dataclasses' generated methods compiled once, kept beside
the bytecode, and the classes built from them the same as classes compiled afresh."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from inspect_tool import classcode

REPO = Path(__file__).resolve().parent.parent

PROBE = """
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, order=True)
class Frozen:
    name: str
    size: int = 0
    tags: tuple[str, ...] = ()


@dataclass
class Plain:
    items: list[int] = field(default_factory=list)
    label: str = "x"
"""


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cache installed by this process leaks into the test, nor the test's out of it."""
    saved = (dataclasses.__dict__.get("exec"), dataclasses.__dict__.get(classcode._HOOKED))
    monkeypatch.setattr(classcode, "_cache", None)
    classcode.uninstall()
    yield
    classcode.uninstall()
    if saved[0] is not None:
        dataclasses.exec = saved[0]  # type: ignore[attr-defined]
        setattr(dataclasses, classcode._HOOKED, saved[1])


def load(path: Path, name: str) -> ModuleType:
    """The module at ``path`` imported under ``name`` (one of our packages' names, so that
    the cache takes its classes)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def stored_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.dataclasses"))


def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


def behaves(module: ModuleType) -> None:
    """The generated methods do what dataclasses' own do."""
    a, b = module.Frozen("a", 1), module.Frozen("a", 1)
    assert a == b and hash(a) == hash(b) and a < module.Frozen("b")
    assert repr(a) == "Frozen(name='a', size=1, tags=())"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.size = 2
    assert not hasattr(a, "__dict__")  # slots=True
    first, second = module.Plain(), module.Plain()
    first.items.append(1)
    assert second.items == [] and first != second and module.Plain([1]) == first
    assert repr(module.Plain()) == "Plain(items=[], label='x')"


def test_a_second_import_compiles_nothing_and_builds_the_same_classes(
    tmp_path: Path, hooked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = probe(tmp_path)
    name = "inspect_tool._classcode_probe"
    first = classcode.install()
    behaves(load(path, name))
    compiled = first.modules[name].compiled
    assert compiled >= 8  # __init__, __repr__, __eq__, the order methods, __hash__, ...
    assert first.save(force=True) == 1
    stored = tmp_path / "__pycache__" / f"probe.{sys.implementation.cache_tag}.dataclasses"
    assert stored.is_file()
    assert not list(stored.parent.glob("*.tmp"))

    classcode.uninstall()
    second = classcode.install()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(classcode, "compile", refuse, raising=False)
    behaves(load(path, name))
    assert second.modules[name].compiled == 0
    assert len(second.modules[name].used) == compiled
    assert second.save(force=True) == 0  # nothing new: the file is left as it is


@pytest.mark.parametrize(
    "content", [b"", b"\0\0\0\0garbage", importlib.util.MAGIC_NUMBER + b"\xff\xfe", b"x" * 9]
)
def test_a_file_that_cannot_be_read_is_compiled_over(
    tmp_path: Path, hooked: None, content: bytes
) -> None:
    path = probe(tmp_path)
    name = "runtime_lab._classcode_probe"
    stored = tmp_path / "__pycache__" / f"probe.{sys.implementation.cache_tag}.dataclasses"
    stored.parent.mkdir()
    stored.write_bytes(content)
    cache = classcode.install()
    behaves(load(path, name))
    assert cache.modules[name].compiled >= 8
    assert cache.save(force=True) == 1
    assert stored.read_bytes().startswith(classcode._header())


def test_a_file_of_the_first_layout_is_compiled_over(tmp_path: Path, hooked: None) -> None:
    """The first layout (magic number, then the entries) held code compiled with the
    module's own __future__ flags: its entries are not taken."""
    import marshal

    path = probe(tmp_path)
    name = "inspect_tool._classcode_probe"
    first = classcode.install()
    behaves(load(path, name))
    stored = tmp_path / "__pycache__" / f"probe.{sys.implementation.cache_tag}.dataclasses"
    stored.parent.mkdir(exist_ok=True)  # the probe's own .pyc may be there already
    stored.write_bytes(importlib.util.MAGIC_NUMBER + marshal.dumps(first.modules[name].used))
    classcode.uninstall()
    second = classcode.install()
    behaves(load(path, name))
    assert second.modules[name].compiled == first.modules[name].compiled


@pytest.mark.parametrize("cached", [False, True])
def test_the_methods_annotations_are_dataclasses_own(
    tmp_path: Path, hooked: None, cached: bool
) -> None:
    """The generated ``__init__`` is compiled as dataclasses compiles it: its annotations
    are the fields' types (here strings: the probe has ``from __future__ import
    annotations``), not the names of the generated code's locals."""
    path = probe(tmp_path)
    name = "inspect_tool._classcode_probe"
    cache = classcode.install()
    module = load(path, name)
    if cached:
        cache.save(force=True)
        classcode.uninstall()
        cache = classcode.install()
        module = load(path, name)
        assert cache.modules[name].compiled == 0
    assert module.Frozen.__init__.__annotations__ == {
        "name": "str",
        "size": "int",
        "tags": "tuple[str, ...]",
        "return": None,
    }


def test_a_file_of_other_values_is_not_taken(tmp_path: Path, hooked: None) -> None:
    """A file that reads, but not as texts and code, is ignored whole."""
    import marshal

    path = probe(tmp_path)
    name = "inspect_tool._classcode_probe"
    stored = tmp_path / "__pycache__" / f"probe.{sys.implementation.cache_tag}.dataclasses"
    stored.parent.mkdir()
    stored.write_bytes(importlib.util.MAGIC_NUMBER + marshal.dumps({"def f(): pass": 1}))
    cache = classcode.install()
    behaves(load(path, name))
    assert cache.modules[name].compiled >= 8


def test_nothing_is_written_where_bytecode_is_not(
    tmp_path: Path, hooked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = probe(tmp_path)
    cache = classcode.install()
    behaves(load(path, "inspect_tool._classcode_probe"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert classcode.save() == 0
    assert stored_files(tmp_path) == []  # (the probe's .pyc may be there: bytecode is Python's)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert cache.save() == 1


def test_a_directory_that_refuses_the_file_is_passed_over(tmp_path: Path, hooked: None) -> None:
    path = probe(tmp_path)
    (tmp_path / "__pycache__").write_text("a file where the directory would be")
    cache = classcode.install()
    behaves(load(path, "inspect_tool._classcode_probe"))
    assert cache.save(force=True) == 0
    assert (tmp_path / "__pycache__").read_text() == "a file where the directory would be"


def test_other_modules_classes_are_compiled_as_usual(tmp_path: Path, hooked: None) -> None:
    path = probe(tmp_path)
    cache = classcode.install()
    behaves(load(path, "someone_elses_probe"))
    assert cache.modules == {}
    assert cache.save(force=True) == 0
    assert stored_files(tmp_path) == []  # (the probe's .pyc may be there: bytecode is Python's)


def test_exec_keeps_the_builtins_namespaces(hooked: None) -> None:
    cache = classcode.install()
    namespace: dict[str, Any] = {"__name__": "inspect_tool._classcode_probe"}
    cache.exec("value = 6 * 7", namespace)  # no __file__: compiled, not cached
    assert namespace["value"] == 42
    local: dict[str, Any] = {}
    cache.exec("value = 1", namespace, local)
    assert local == {"value": 1} and namespace["value"] == 42
    code = compile("value = 2", "<string>", "exec")
    cache.exec(code, namespace)  # code objects pass through
    assert namespace["value"] == 2 and cache.modules == {}


DEFERRED = """
import sys
from inspect_tool import classcode
classcode.install()
from dataclasses import dataclass
assert "inspect" not in sys.modules

@dataclass
class Documented:
    \"\"\"A class of ours: documented.\"\"\"
    size: int = 0

assert "inspect" not in sys.modules, "a documented class needs no signature"

@dataclass
class Bare:
    size: int = 0

print(Bare.__doc__)
import inspect
assert sys.modules["inspect"] is inspect and type(inspect).__name__ == "module"
print(inspect.signature(Documented))
"""


def test_dataclasses_imports_inspect_only_when_a_class_needs_it() -> None:
    """``inspect`` (6 ms of imports) is imported at the first class without a docstring, which
    gets the docstring dataclasses writes; ``import inspect`` elsewhere is the real module."""
    done = subprocess.run(
        [sys.executable, "-c", DEFERRED], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Bare(size: int = 0)", "(size: int = 0) -> None"]


def _child_env(prefix: Path, *, write: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(prefix)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


COUNT = """
from inspect_tool import classcode
cache = classcode.install()
import runtime_lab.cli.run_args, runtime_lab.lifecycle.create, runtime_lab.lifecycle.start
modules = cache.modules.values()
print(sum(m.compiled for m in modules), sum(len(m.used) for m in modules))
"""


def test_the_warmed_cache_serves_a_run_s_modules(tmp_path: Path) -> None:
    """``python -m inspect_tool.classcode`` (``make bytecode``) writes every module's file,
    even under PYTHONDONTWRITEBYTECODE; a run's modules then compile none of their methods."""
    prefix = tmp_path / "pycache"
    env = _child_env(prefix, write=False)
    cold = subprocess.run([sys.executable, "-c", COUNT], env=env, cwd=REPO, capture_output=True)
    compiled, used = map(int, cold.stdout.split())
    assert compiled == used > 100
    subprocess.run([sys.executable, "-m", "inspect_tool.classcode"], env=env, cwd=REPO, check=True)
    files = list(prefix.rglob("*.dataclasses"))
    assert len(files) > 30
    warm = subprocess.run([sys.executable, "-c", COUNT], env=env, cwd=REPO, capture_output=True)
    assert warm.stdout.split() == [b"0", str(used).encode()]


@pytest.mark.parametrize("write", [True, False])
def test_a_command_saves_what_it_compiled_where_bytecode_is_written(
    tmp_path: Path, write: bool
) -> None:
    prefix = tmp_path / "pycache"
    image = REPO / "sample_images" / "docker-archive-v25.tar"
    command = [sys.executable, "-m", "inspect_tool", "inspect", "--json", str(image)]
    env = _child_env(prefix, write=write)
    subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
    files = list(prefix.rglob("*.dataclasses"))
    assert bool(files) is write
    if write:
        assert any(f.name.startswith(f"image.{sys.implementation.cache_tag}") for f in files)


def test_every_dataclass_of_ours_has_a_docstring() -> None:
    """A dataclass without one makes dataclasses import ``inspect`` (6 ms) to write it."""
    import ast

    bare = []
    for package in ("inspect_tool", "runtime_lab"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef) or ast.get_docstring(node) is not None:
                    continue
                if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                    bare.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert bare == []
