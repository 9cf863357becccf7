"""The code ``@dataclass`` generates, compiled once and kept beside the bytecode.

A dataclass's methods (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, a frozen class's
``__setattr__`` and ``__delattr__``) are written as source text and compiled with ``exec``
each time the class is built, that is at every import: Python 3.11 compiles each method
apart, ~0.1 ms each. A warm ``dockscope run`` builds 49 classes, 246 methods: ~22 ms of a
run of ~115 ms. The text of a method depends only on the class's definition, and its
compiled code on nothing else, so the code is kept as a template engine keeps its compiled
templates: for each module of ours, a ``marshal`` file beside its bytecode (``__pycache__/
image.cpython-311.dataclasses``, or under ``sys.pycache_prefix``), headed by the interpreter's
bytecode magic number, the text of each method its key, read when the module builds its first
class (~25 µs a method against ~90 µs to compile it). The file has the trust of the ``.pyc``
beside it; one that cannot be read, or is of another interpreter, is ignored.

``install`` (at the start of a command) gives the ``dataclasses`` module an ``exec`` that
looks the text up before compiling it; ``save`` (at its end) writes, atomically, the files
of the modules that compiled something new, never where bytecode is not written
(``sys.dont_write_bytecode``). ``python -m inspect_tool.classcode`` imports every module of
both packages and saves, whatever ``PYTHONDONTWRITEBYTECODE`` says, as ``compileall`` does:
``make bytecode`` runs it after ``compileall``.

``install`` also spares a command the ``inspect`` module, 6 ms of imports here (``ast``,
``dis``, ``tokenize``...): ``dataclasses`` imports it for one call, ``inspect.signature``,
to write the docstring of a class that has none. ``dataclasses`` is imported with a
stand-in in its place that imports the real module at its first use (a class of ours has a
docstring: a test holds it); the stand-in is taken out of ``sys.modules`` at once, so any
other ``import inspect`` gets the real module.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from types import CodeType, ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_HOOKED = "__dockscope_classcode__"
_PACKAGES = ("inspect_tool.", "runtime_lab.")  # the modules whose classes are cached
_SUFFIX = ".dataclasses"  # beside the module's bytecode: image.cpython-311.dataclasses
# after the magic number: 2 since the code is compiled without this module's __future__ flags
_FORMAT = b"dataclasses 2\n"


class CodeCache:
    """Compiled code by source text, a file per module beside its bytecode, read when the
    module builds its first class. Every class of a module is built when it is imported, so
    a module's file holds exactly the texts of its last import."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix  # sys.pycache_prefix for the files' places
        self.modules: dict[str, _Module] = {}

    def exec(
        self,
        source: Any,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        /,
    ) -> None:
        """``exec`` as the builtin does it for ``dataclasses`` (whose code has no __future__
        flags), a text's compiled code taken from the cache."""
        if globals is None:  # the builtin's default: the caller's namespaces
            frame = sys._getframe(1)
            globals = frame.f_globals
            if locals is None:
                locals = frame.f_locals
        if type(source) is str:
            module = self._module(globals)
            if module is not None:
                source = module.code(source)
            else:  # the builtin would compile it with this module's __future__ flags
                source = compile(source, "<string>", "exec", dont_inherit=True)
        builtins.exec(source, globals, locals)

    def _module(self, namespace: dict[str, Any]) -> _Module | None:
        name = namespace.get("__name__")
        if type(name) is not str or not name.startswith(_PACKAGES):
            return None
        module = self.modules.get(name)
        if module is None:
            source = namespace.get("__file__")
            if type(source) is not str or not source.endswith(".py"):
                return None
            module = self.modules[name] = _Module(self._path(source))
        return module

    def _path(self, source: str) -> str:
        from importlib.util import cache_from_source

        saved, sys.pycache_prefix = sys.pycache_prefix, self.prefix
        try:
            return cache_from_source(source).removesuffix(".pyc") + _SUFFIX
        finally:
            sys.pycache_prefix = saved

    def save(self, *, force: bool = False) -> int:
        """Write the file of each module that compiled something; how many were written.
        None where bytecode is not written (``sys.dont_write_bytecode``) unless ``force``;
        a directory that refuses a file is passed over."""
        if sys.dont_write_bytecode and not force:
            return 0
        return sum(module.save() for module in self.modules.values() if module.compiled)


class _Module:
    """One module's compiled texts and their file."""

    __slots__ = ("codes", "compiled", "path", "used")

    def __init__(self, path: str) -> None:
        self.path = path
        self.codes = _load(path)
        self.used: dict[str, CodeType] = {}
        self.compiled = 0

    def code(self, text: str) -> CodeType:
        code = self.codes.get(text)
        if code is None:
            # as the builtin exec compiles dataclasses' text: without this module's __future__
            # flags (annotations stay objects, not strings)
            code = compile(text, "<string>", "exec", dont_inherit=True)
            self.compiled += 1
        self.used[text] = code
        return code

    def save(self) -> bool:
        if _store(self.path, self.used):
            self.compiled = 0
            return True
        return False


def _header() -> bytes:
    """The interpreter's bytecode magic number, then the version of this file's layout."""
    from importlib.util import MAGIC_NUMBER

    return MAGIC_NUMBER + _FORMAT


def _load(path: str) -> dict[str, CodeType]:
    """A file's entries; none where it cannot be read or is of another interpreter."""
    header = _header()
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError:
        return {}
    if data[: len(header)] != header:
        return {}
    try:
        codes = marshal.loads(data[len(header) :])
    except (EOFError, ValueError, TypeError):
        return {}
    if isinstance(codes, dict) and all(
        type(key) is str and type(value) is CodeType for key, value in codes.items()
    ):
        return codes
    return {}


def _store(path: str, codes: dict[str, CodeType]) -> bool:
    """``codes`` written to ``path`` through a new file renamed over it; False on refusal."""
    from inspect_tool.diskio import replace_file

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        replace_file(path, _header() + marshal.dumps(codes), 0o644)
    except OSError:
        return False
    return True


_cache: CodeCache | None = None


class _DeferredInspect(ModuleType):
    """``dataclasses``' ``inspect``: the real module, imported at the first attribute asked."""

    def __getattr__(self, name: str) -> Any:
        import importlib

        return getattr(importlib.import_module("inspect"), name)


def _import_dataclasses() -> ModuleType:
    """``dataclasses``, imported (when it is not yet) without importing ``inspect``."""
    if "dataclasses" in sys.modules or "inspect" in sys.modules:
        import dataclasses

        return dataclasses
    stand_in = _DeferredInspect("inspect")
    sys.modules["inspect"] = stand_in
    try:
        import dataclasses
    finally:
        if sys.modules.get("inspect") is stand_in:
            del sys.modules["inspect"]
    return dataclasses


def install() -> CodeCache:
    """Give ``dataclasses`` the cache's ``exec`` (once per process)."""
    global _cache
    dataclasses = _import_dataclasses()
    cache = _cache if _cache is not None else CodeCache(sys.pycache_prefix)
    _cache = cache
    if getattr(dataclasses, _HOOKED, None) is not cache:
        dataclasses.exec = cache.exec  # type: ignore[attr-defined]
        setattr(dataclasses, _HOOKED, cache)
    return cache


def uninstall() -> None:
    """``dataclasses`` back to the builtin ``exec``; the cache dropped."""
    global _cache
    import dataclasses

    if getattr(dataclasses, _HOOKED, None) is not None:
        del dataclasses.exec  # type: ignore[attr-defined]
        delattr(dataclasses, _HOOKED)
    _cache = None


def save() -> int:
    """Write the installed cache's files where this process compiled something new."""
    return _cache.save() if _cache is not None else 0


def _skip(name: str) -> None:
    """A package that cannot be imported here: walked past."""


def _warm() -> int:
    """Import every module of both packages so that every class is built; save."""
    import importlib
    import pkgutil

    cache = install()
    for package in ("inspect_tool", "runtime_lab"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}.", onerror=_skip):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # e.g. an optional library missing here: its classes are
                continue  # compiled at its first import instead
    cache.save(force=True)  # as compileall writes bytecode whatever the environment says
    return 0


if __name__ == "__main__":
    raise SystemExit(_warm())
