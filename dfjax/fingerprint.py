"""Fingerprints of the code that makes a cached artifact (a prepared dataset, a trained
detector, a stored row), so a cache made by other code is recognised, never reused.

A module's fingerprint is the sha256 of its *normalised* source: the file parsed with
`ast`, docstrings dropped, dumped without line numbers. Comments, docstrings and
formatting leave it unchanged; any change to the code changes it. A *scope* is a set of
root modules plus every dfjax module they import, directly or not (read from the
source, nothing is imported), except those under a `stop` prefix: a scope stops where
another fingerprint takes over (the data code for a detector) and at the modules that
only name things (`NAMING_MODULES`: specs, registries, settings, type aliases -- what
they change enters the cache keys already).

Everything here is pure hashing of dfjax's own files; the scopes of datasets,
detectors and rows are composed where their registries live
(`dfjax.data.dataset_fingerprint`, `dfjax.training.detectors.training_fingerprint`,
`dfjax.runner.environment.evaluation_fingerprint`).

Example:
    >>> code_fingerprint(["dfjax.losses"])  # doctest: +SKIP
    '3f1c...'
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Iterable
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PACKAGE = PACKAGE_ROOT.name
LENGTH = 16  # hex digits kept
# modules that name things (specs and their ids, registries, paths, type aliases)
NAMING_MODULES = ("dfjax.config", "dfjax.registry", "dfjax.settings", "dfjax.types",
                  "dfjax.fingerprint")


def module_path(module: str) -> Path | None:
    """The file of dfjax module `module` (a package is its __init__.py); None if none."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def read_source(module: str) -> str:
    """The source text of `module` (the seam tests patch to change "the code")."""
    path = module_path(module)
    if path is None:
        raise ValueError(f"fingerprint: {module!r} is not a module of {PACKAGE}")
    return path.read_text(encoding="utf-8")


def _drop_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalised_source(source: str, *, name: str = "<source>") -> str:
    """`source` as `ast.dump` of its tree without docstrings or positions. Raises
    ValueError naming `name` when it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"fingerprint: {name} does not parse ({e})") from None
    return ast.dump(_drop_docstrings(tree), include_attributes=False)


def _imported_modules(module: str, tree: ast.Module) -> set[str]:
    """The dfjax modules `module`'s import statements name (any depth, functions too)."""
    package = module if module_path(module) and module_path(module).name == "__init__.py" \
        else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # a submodule, else a name of the package
                sub = f"{base}.{alias.name}"
                found.add(sub if module_path(sub) is not None else base)
    return {m for m in found if module_path(m) is not None}


@functools.cache
def _module_facts(module: str) -> tuple[str, frozenset[str]]:
    """(sha256 of the normalised source, the dfjax modules it imports)."""
    source = read_source(module)
    normalised = normalised_source(source, name=str(module_path(module)))
    imports = _imported_modules(module, ast.parse(source))
    return hashlib.sha256(normalised.encode()).hexdigest(), frozenset(imports - {module})


def _stopped(module: str, stop: tuple[str, ...]) -> bool:
    return any(module == s or module.startswith(s + ".") for s in stop)


def scope(roots: Iterable[str], *, stop: Iterable[str] = ()) -> list[str]:
    """`roots` and every dfjax module they import transitively, sorted; modules under a
    `stop` prefix (and NAMING_MODULES) are left out and not followed (roots are kept)."""
    stop = tuple(stop) + NAMING_MODULES
    seen: set[str] = set()
    todo = list(roots)
    for root in todo:
        if module_path(root) is None:
            raise ValueError(f"fingerprint: {root!r} is not a module of {PACKAGE}")
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [m for m in _module_facts(module)[1] if m not in seen and not _stopped(m, stop)]
    return sorted(seen)


def code_fingerprint(roots: Iterable[str], *, stop: Iterable[str] = (),
                     shallow: Iterable[str] = ()) -> str:
    """The fingerprint (LENGTH hex digits) of `scope(roots, stop=stop)` plus the modules
    `shallow` (their own source only, their imports not followed): every module's name
    and normalised-source hash."""
    shallow = set(shallow)
    for module in shallow:
        if module_path(module) is None:
            raise ValueError(f"fingerprint: {module!r} is not a module of {PACKAGE}")
    modules = sorted(set(scope(roots, stop=stop)) | shallow)
    text = "\n".join(f"{m} {_module_facts(m)[0]}" for m in modules)
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def external_fingerprint(obj) -> str:
    """The fingerprint of a class or function defined outside dfjax (a user's model
    registered in MODELS): its own normalised source, not what it imports; its qualified
    name where the source cannot be read (a class made at run time)."""
    name = f"{obj.__module__}.{obj.__qualname__}"
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return combine("source not readable", name)
    return hashlib.sha256(normalised_source(source, name=name).encode()).hexdigest()[:LENGTH]


def combine(*parts: str) -> str:
    """One fingerprint from several (order matters), e.g. code and a version string."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:LENGTH]


_CACHES: list = []


def cached(function):
    """`functools.cache` for a function of fingerprints: `clear_cache` clears it too."""
    wrapped = functools.cache(function)
    _CACHES.append(wrapped)
    return wrapped


def clear_cache() -> None:
    """Forget every file's hash and every `cached` fingerprint (after patching
    `read_source` in a test)."""
    _module_facts.cache_clear()
    for wrapped in _CACHES:
        wrapped.cache_clear()
