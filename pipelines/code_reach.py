"""What code a step runs: the project's sources that a function or module reaches through its imports.

A step's cached result is only as fresh as the code that computed it, and that code is more than the step's
own module: the functions it calls import others, often lazily inside a function body. ``reached_sources``
reads the imports (every ``import`` statement of a module, at any depth) and follows them, transitively,
through the modules of the roots' own top-level packages; a library is represented by its version elsewhere.

A function root counts as its own definition and the module-level definitions it names (transitively), with
its module's top-level imports; a module root, and every module reached, counts whole. The parent packages
of a reached module count too, since importing it runs their ``__init__``.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from types import ModuleType


def reached_sources(*roots: Callable | ModuleType | str) -> dict[str, str]:
    """Label -> source text of everything the roots reach inside their packages (a function root as
    ``module:function``, a module by its dotted name)."""
    scope = {_module_name(root).split(".")[0] for root in roots}
    sources: dict[str, str] = {}
    pending: list[str] = []
    for root in roots:
        if isinstance(root, (str, ModuleType)):
            pending.append(_module_name(root))
            continue
        module = root.__module__
        text, imported = _function_reach(module, root.__qualname__.split(".")[0])
        sources[f"{module}:{root.__qualname__}"] = text
        pending.extend(_with_parents(module)[:-1])
        pending.extend(imported)
    while pending:
        name = pending.pop()
        if name in sources or name.split(".")[0] not in scope:
            continue
        path = _module_file(name)
        if path is None:
            continue
        sources[name] = text = path.read_text()
        pending.extend(_with_parents(name)[:-1])
        pending.extend(_imports(text, name))
    return sources


def _module_name(root: Callable | ModuleType | str) -> str:
    if isinstance(root, str):
        return root
    return root.__name__ if isinstance(root, ModuleType) else root.__module__


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: n + 1]) for n in range(len(parts))]


def _module_file(name: str) -> Path | None:
    """The source file of a module, found on disk without importing it (nor its parent packages)."""
    top, *rest = name.split(".")
    origin = _top_level_file(top)
    if origin is None:
        return None
    if not rest:
        return origin
    if origin.name != "__init__.py":
        return None
    base = origin.parent.joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=64)
def _top_level_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _is_package(name: str) -> bool:
    path = _module_file(name)
    return path is not None and path.name == "__init__.py"


def _imported_names(node: ast.AST, module: str) -> list[str]:
    """The modules that the import statements under ``node`` may load (``from a import b``: ``a`` and, if
    it is a module, ``a.b``; names that are not modules are dropped when they are looked up)."""
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: list[str] = []
    for statement in ast.walk(node):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                found.extend(_with_parents(alias.name))
        elif isinstance(statement, ast.ImportFrom):
            if statement.level:
                anchor = package.split(".")[: len(package.split(".")) - (statement.level - 1)]
                base = ".".join([*anchor, *([statement.module] if statement.module else [])])
            else:
                base = statement.module or ""
            found.extend(_with_parents(base))
            found.extend(f"{base}.{alias.name}" for alias in statement.names if alias.name != "*")
    return found


# Keyed by the source text itself: a file edited twice within the file system's timestamp resolution is
# still read afresh.
@lru_cache(maxsize=512)
def _parsed(text: str) -> ast.Module:
    return ast.parse(text)


@lru_cache(maxsize=512)
def _imports(text: str, module: str) -> tuple[str, ...]:
    return tuple(_imported_names(_parsed(text), module))


def _function_reach(module: str, name: str) -> tuple[str, list[str]]:
    """A module-level function's source with the module-level definitions it names (transitively), and the
    modules its imports and its module's top-level imports load."""
    path = _module_file(module)
    if path is None:  # defined outside a source file (e.g. an interactive session): its own source only
        return inspect.getsource(getattr(importlib.import_module(module), name)), []
    text = path.read_text()
    tree = _parsed(text)
    definitions: dict[str, ast.stmt] = {}
    for statement in tree.body:
        for defined in _defined_names(statement):
            definitions.setdefault(defined, statement)
    chosen: list[ast.stmt] = []
    pending = [name]
    while pending:
        statement = definitions.get(pending.pop())
        if statement is None or statement in chosen:
            continue
        chosen.append(statement)
        pending.extend(n.id for n in ast.walk(statement) if isinstance(n, ast.Name))
    top_imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    imported = [m for s in [*top_imports, *chosen] for m in _imported_names(s, module)]
    chosen.sort(key=lambda s: s.lineno)
    return "\n".join(ast.get_source_segment(text, s) or "" for s in chosen), imported


def _defined_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []
