"""The layer rules of docs/ARCHITECTURE.md ("Import rules"), checked on every module's source:
every import statement, at module level, inside functions and under TYPE_CHECKING alike."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGES = ("inspect_tool", "runtime_lab")
CLI_FRAMEWORKS = ("typer", "click")

# inspect_tool's packages, bottom to top, and what each may import of inspect_tool
# ("inspect_tool" alone: the package's own __init__, for __version__)
INSPECT_TOOL_LAYERS: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    # bulk writes in small pieces, the heap kept for reuse: the standard library only,
    # usable from every package
    "diskio": frozenset(),
    "heap": frozenset(),
    # the dataclasses' generated code, compiled once: installed by the entry points only
    "classcode": frozenset({"diskio"}),
    "model": frozenset({"errors"}),
    "sources": frozenset({"errors", "model"}),
    "layout": frozenset({"errors", "diskio", "heap", "model"}),
    "layers": frozenset({"errors", "diskio", "heap", "model", "sources"}),
    "registry": frozenset({"errors", "diskio", "heap", "model", "sources"}),
    "analyze": frozenset({"errors", "diskio", "heap", "model", "sources", "layers"}),
    "storage": frozenset({"errors", "diskio", "heap", "model", "sources", "layers", "layout"}),
    "transfer": frozenset(
        {"errors", "diskio", "heap", "model", "sources", "layers", "layout", "analyze", "registry"}
    ),
    "render": frozenset(
        {
            "inspect_tool",
            "errors",
            "diskio",
            "heap",
            "model",
            "sources",
            "layout",
            "layers",
            "analyze",
            "storage",
            "transfer",
        }
    ),
    # the interactive explorer: above render, below the command line (only cli imports it)
    "explore": frozenset(
        {
            "inspect_tool",
            "errors",
            "diskio",
            "heap",
            "model",
            "sources",
            "layout",
            "layers",
            "analyze",
            "storage",
            "render",
        }
    ),
}


# The one way up: sources' open_location hands a location to the reader of its transport,
# and the reader of containers-storage: lives in storage (evidence, tar-split). Exactly these
# (module, target) pairs, each a function-level import.
UPWARD_OPENERS = frozenset(
    {
        ("inspect_tool.sources", "inspect_tool.storage.image_source"),
        ("inspect_tool.sources", "inspect_tool.storage.image_source.open_storage_source"),
    }
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (a module, or a module's attribute)
    line: int

    def __str__(self) -> str:
        path = self.module.replace(".", "/")
        return f"{path}.py:{self.line}: imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source``, relative ones resolved against ``module``. ``from a
    import b`` yields both ``a`` and ``a.b`` (b may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            yield Import(module, base, node.lineno)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno)


def all_imports() -> list[Import]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found += imports_in(
                path.read_text(encoding="utf-8"),
                module_name(path),
                is_package=path.name == "__init__.py",
            )
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def inspect_tool_package(name: str) -> str | None:
    """``inspect_tool.model.image`` → ``model``; the package itself → ``inspect_tool``."""
    parts = name.split(".")
    if parts[0] != "inspect_tool":
        return None
    below = REPO / "inspect_tool" / parts[1] if len(parts) > 1 else None
    if below is None or not (below.is_dir() or below.with_suffix(".py").is_file()):
        return "inspect_tool"  # the package's own names (__version__)
    return parts[1]


def is_runtime_command_module(name: str) -> bool:
    """runtime_lab's typer modules: the ``runtime_lab.cli`` package."""
    parts = name.split(".")
    return parts[0] == "runtime_lab" and len(parts) > 1 and parts[1] == "cli"


def is_cli(name: str) -> bool:
    """The command line: inspect_tool.cli (and ``python -m inspect_tool``) and runtime_lab's
    command modules."""
    return (
        name == "inspect_tool.__main__"
        or inspect_tool_package(name) == "cli"
        or is_runtime_command_module(name)
    )


# Imports a package may make only inside a function (or for type checking): sources opens a
# docker:// reference through the registry package, which imports sources' readers, and
# httpx must not load for local files.
LAZY_ONLY = frozenset({("sources", "registry")})


def eager_imports(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """The imports a module runs when it is imported: at module level, outside functions and
    ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source)
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body += node.orelse
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body.append(node)
    module_only = ast.Module(body=body, type_ignores=[])
    yield from imports_in(ast.unparse(module_only), module, is_package=is_package)


IMPORTS = all_imports()
MODULES = {i.module for i in IMPORTS}


def broken(rule: object) -> list[str]:
    assert callable(rule)
    return [str(i) for i in IMPORTS if rule(i)]


def test_the_checker_sees_every_kind_of_import() -> None:
    source = (
        "import typer\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from inspect_tool.cli import app\n"
        "def f():\n    from . import render\n    from ..errors import UsageError\n"
    )
    targets = {i.target for i in imports_in(source, "inspect_tool.sources.tree")}
    assert {"typer", "inspect_tool.cli", "inspect_tool.sources.render"} <= targets
    assert "inspect_tool.errors.UsageError" in targets
    assert len(IMPORTS) > 500  # the walk found the code


def test_only_the_command_line_imports_typer() -> None:
    assert broken(lambda i: top(i.target) in CLI_FRAMEWORKS and not is_cli(i.module)) == []


def test_libraries_never_import_the_command_line() -> None:
    assert broken(lambda i: not is_cli(i.module) and is_cli(i.target)) == []


def test_inspect_tool_never_imports_runtime_lab_below_its_cli() -> None:
    """inspect_tool.cli is where the ``dockscope`` command is put together (it registers
    runtime_lab's commands): the one place the two packages meet."""

    def rule(i: Import) -> bool:
        package = inspect_tool_package(i.module)
        return package not in (None, "cli", "__main__") and top(i.target) == "runtime_lab"

    assert broken(rule) == []


@pytest.mark.parametrize("package", sorted(INSPECT_TOOL_LAYERS))
def test_inspect_tool_packages_import_only_downward(package: str) -> None:
    allowed = INSPECT_TOOL_LAYERS[package] | {package}
    allowed |= {lazy for below, lazy in LAZY_ONLY if below == package}

    def rule(i: Import) -> bool:
        target = inspect_tool_package(i.target)
        return (
            inspect_tool_package(i.module) == package
            and (i.module, i.target) not in UPWARD_OPENERS
            and ((target is not None and target not in allowed) or top(i.target) == "runtime_lab")
        )

    assert broken(rule) == []


@pytest.mark.parametrize(("package", "lazy"), sorted(LAZY_ONLY))
def test_lazy_imports_stay_inside_functions(package: str, lazy: str) -> None:
    found = []
    for path in sorted((REPO / "inspect_tool" / package).rglob("*.py")):
        found += [
            str(i)
            for i in eager_imports(
                path.read_text(encoding="utf-8"),
                module_name(path),
                is_package=path.name == "__init__.py",
            )
            if inspect_tool_package(i.target) == lazy
        ]
    assert found == []
    uses = [i for i in IMPORTS if inspect_tool_package(i.module) == package]
    assert any(inspect_tool_package(i.target) == lazy for i in uses)  # the rule is not idle


def test_registry_imports_httpx_only_below_its_entry_points() -> None:
    """``inspect_tool.registry`` and its access module load without httpx (the CLI imports
    them for every command)."""
    for name in ("__init__.py", "access.py"):
        path = REPO / "inspect_tool" / "registry" / name
        eager = list(eager_imports(path.read_text(encoding="utf-8"), module_name(path)))
        assert [str(i) for i in eager if top(i.target) == "httpx"] == []
        assert [
            str(i)
            for i in eager
            if i.target.startswith("inspect_tool.registry.")
            and i.target.split(".")[2] not in ("access", "RegistryAccess")
        ] == []


def test_runtime_command_modules_import_no_cycle() -> None:
    """cli/__init__.py registers every command module; none imports it back, and no two import
    each other: what they share is in cli/common.py and the library."""
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if is_runtime_command_module(i.module) and is_runtime_command_module(i.target):
            target = ".".join(i.target.split(".")[:3])
            if target not in MODULES:
                target = ".".join(target.split(".")[:2])
            if target != i.module:
                edges.setdefault(i.module, set()).add(target)

    def cycle_from(start: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for following in sorted(edges.get(start, ())):
            if following in path:
                return (*path[path.index(following) :], following)
            found = cycle_from(following, (*path, following))
            if found:
                return found
        return None

    cycles = [c for m in sorted(edges) if (c := cycle_from(m, (m,)))]
    assert cycles == []


def test_upward_openers_are_imported_inside_functions_only() -> None:
    """Importing sources never loads storage: the opener is imported where it is called."""
    tree = ast.parse((REPO / "inspect_tool" / "sources" / "__init__.py").read_text())
    module_level = [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module is not None
    ]
    assert not [m for m in module_level if m.startswith("inspect_tool.storage")]
    found = {(i.module, i.target) for i in IMPORTS if (i.module, i.target) in UPWARD_OPENERS}
    assert found == UPWARD_OPENERS


def test_unpack_modules_never_import_their_entry_point() -> None:
    """layers/unpack/__init__.py (``unpack``) is built on audit, backend, parents, applier,
    disk, memory and twopass; none of them imports it back (export and the runtime's layer
    store use them alone)."""
    package = "inspect_tool.layers.unpack"
    modules = {m for m in MODULES if m.startswith(package + ".")}
    assert {f"{package}.{m}" for m in ("applier", "disk", "memory", "twopass")} <= modules
    assert broken(lambda i: i.module in modules and i.target == package) == []


def test_the_sample_generator_imports_only_the_standard_library() -> None:
    """sample_images/make_samples.py and its samples/ package are the independent oracle:
    the standard library, zstandard and their own modules only, never dockscope."""
    root = REPO / "sample_images"
    allowed = {*sys.stdlib_module_names, "zstandard", "samples", "__future__"}
    found = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        found += imports_in(
            path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
        )
    assert len(found) > 20  # the walk found the generator
    assert [str(i) for i in found if top(i.target) not in allowed] == []


def test_only_the_command_line_imports_the_explorer() -> None:
    def rule(i: Import) -> bool:
        return inspect_tool_package(i.target) == "explore" and inspect_tool_package(
            i.module
        ) not in ("explore", "cli")

    assert broken(rule) == []


# the package readers are pure parsers (bytes → records): only the scanner reads layers
PACKAGE_PARSERS_MAY_IMPORT = (
    "inspect_tool.errors",
    "inspect_tool.model",
    "inspect_tool.analyze.packages",
)


def test_package_parsers_read_bytes_not_layers() -> None:
    def rule(i: Import) -> bool:
        parts = i.module.split(".")
        if parts[:3] != ["inspect_tool", "analyze", "packages"] or parts[-1] == "scan":
            return False
        return i.target.startswith("inspect_tool") and not i.target.startswith(
            PACKAGE_PARSERS_MAY_IMPORT
        )

    assert broken(rule) == []


def test_only_the_explorers_app_imports_textual() -> None:
    """Textual is loaded by ``dockscope explore`` alone; the explorer's models stay pure."""
    assert (
        broken(lambda i: top(i.target) == "textual" and i.module != "inspect_tool.explore.app")
        == []
    )


LAZY_DEPENDENCIES = ("debian", "packaging")


def test_python_debian_and_packaging_are_imported_lazily() -> None:
    """Imported inside the functions that need them: ``dockscope --help`` never loads them."""
    found = []
    for path in sorted((REPO / "inspect_tool").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            found += [f"{path}: {n}" for n in names if top(n) in LAZY_DEPENDENCIES]
    assert found == []


# What a warm ``dockscope run`` (tests/runtime/test_run_imports.py) does not use, imported
# only where it is used: a named volume, skopeo's dir: transport.
FUNCTION_LEVEL_ONLY = ("runtime_lab.storage.volumes", "inspect_tool.sources.dir_transport")


def module_level_imports() -> list[Import]:
    found: list[Import] = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found += eager_imports(
                path.read_text(encoding="utf-8"),
                module_name(path),
                is_package=path.name == "__init__.py",
            )
    return found


def is_under(target: str, module: str) -> bool:
    return target == module or target.startswith(module + ".")


@pytest.mark.parametrize("lazy", FUNCTION_LEVEL_ONLY)
def test_modules_off_the_run_path_are_imported_inside_functions(lazy: str) -> None:
    eager = [
        str(i)
        for i in module_level_imports()
        if is_under(i.target, lazy) and not is_under(i.module, lazy)
    ]
    assert eager == []
    assert any(is_under(i.target, lazy) for i in IMPORTS)  # the rule is not idle


def test_runtime_modules_make_random_names_without_the_secrets_module() -> None:
    """``os.urandom(n).hex()`` is ``secrets.token_hex(n)`` without base64, hmac and random:
    only the volumes module (off the run path) imports it."""
    eager = {i.module for i in module_level_imports() if i.target == "secrets"}
    assert {m for m in eager if top(m) == "runtime_lab"} == {"runtime_lab.storage.volumes"}


def test_httpx_is_imported_through_registry_http_only() -> None:
    """registry/http.py loads httpx without its command line and with 1 MiB reads: a module
    importing httpx itself could load it first, without either."""
    direct = broken(
        lambda i: (
            top(i.target) in ("httpx", "httpcore") and i.module != "inspect_tool.registry.http"
        )
    )
    assert direct == []
    assert any(
        i.module == "inspect_tool.registry.http" and top(i.target) == "httpx" for i in IMPORTS
    )


def test_only_the_entry_points_install_the_dataclass_code_cache() -> None:
    """``classcode.install`` gives ``dataclasses`` another ``exec``: a process decides that
    once, where it starts, not a library module as a side effect of being imported."""
    entry_points = {"inspect_tool.cli", "runtime_lab.cli.oci_runtime"}
    # ``from inspect_tool import classcode`` is seen as inspect_tool.classcode
    users = {i.module for i in IMPORTS if i.target.startswith("inspect_tool.classcode")}
    assert users == entry_points
