"""The package's import graph, read from the source with `ast` (nothing is imported).

Every `import` statement under dfjax/ counts -- module level and inside functions (a
function-level import only postpones a circle to the first call) -- except those under
`if TYPE_CHECKING:`, which never run. Edges are kept only between dfjax modules:

- `import dfjax.a.b` and `from dfjax.a.b import name` -> dfjax.a.b;
- `from dfjax.a import b` where b is a submodule (dfjax/a/b.py or dfjax/a/b/) -> dfjax.a.b,
  and where b is any other name -> dfjax.a (its __init__.py);
- relative imports are resolved against the importing module's package first.

The parent packages Python initialises on the way to dfjax.a.b are not edges: when
dfjax.a/__init__.py imports its own submodules, each finds dfjax.a already in
sys.modules and only needs its __path__, so that pattern is no circle. An explicit
import of the package dfjax.a (`import dfjax.a`, `from dfjax.a import SOME_NAME`) is an
edge to its __init__.py: it needs the package's names, so it is a circle if __init__.py
(transitively) imports the importer.

The same walk checks that configuration is read in one place (only dfjax/settings.py
touches os.environ) and that no module sets the matplotlib backend for its caller.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

PACKAGE = "dfjax"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
SETTINGS = f"{PACKAGE}.settings"


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool

    def where(self) -> str:
        return f"line {self.line}" + (", in a function" if self.in_function else "")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module name of the package at `root` -> its file (a package is its
    __init__.py)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST):
    """(node, inside a function) for every node that runs, skipping `if TYPE_CHECKING:`
    bodies (their `else:` still runs)."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        yield node, in_function
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        else:
            children = list(ast.iter_child_nodes(node))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda))
        stack.extend((child, inner) for child in reversed(children))


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(known: dict[str, Path], package: str = PACKAGE
                 ) -> tuple[list[Edge], list[str]]:
    """All edges between the package's modules, and its imports that name no module."""
    edges, missing = [], []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"

        def add(target: str, node: ast.stmt, in_function: bool):
            if target != package and not target.startswith(package + "."):
                return
            if target not in known:
                missing.append(f"{module}:{node.lineno}: {target}")
            elif target != module:
                edges.append(Edge(module, target, node.lineno, in_function))

        for node, in_function in _statements(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node, in_function)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    add(submodule if submodule in known else base, node, in_function)
    return edges, missing


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    parents, frontier = {start: None}, [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & within):
                if child == start:
                    path = [node]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return path[::-1] + [start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return []


def describe(cycle: list[str], edges: dict[tuple[str, str], Edge]) -> str:
    steps = [cycle[0]]
    for a, b in zip(cycle, cycle[1:]):
        steps.append(f"  -> {b}   ({a} {edges[a, b].where()})")
    return "\n".join(steps)


def test_every_dfjax_import_names_a_module():
    _, missing = import_edges(modules())
    assert not missing, "imports of dfjax modules that do not exist:\n" + "\n".join(missing)


def import_circles(root: Path = ROOT) -> tuple[list[list[str]], str]:
    """The groups of modules that import each other, and a report with one circle each."""
    known = modules(root)
    edge_list, _ = import_edges(known, root.name)
    graph = {m: set() for m in known}
    first_edge = {}
    for e in edge_list:
        graph[e.source].add(e.target)
        first_edge.setdefault((e.source, e.target), e)
    components = strongly_connected(graph)
    report = []
    for component in components:
        cycle = shortest_cycle(graph, component[0], set(component))
        report.append(f"{len(component)} modules import each other: {', '.join(component)}\n"
                      f"one circle:\n{describe(cycle, first_edge)}")
    return components, "\n\n".join(report)


def test_the_walk_finds_hidden_circles_and_ignores_parent_packages(tmp_path):
    """The walker itself, on a made-up package: a circle through a function-level relative
    import, one through `from pkg.a import b` (a submodule) and `from pkg import NAME`
    (the __init__), and no circle for __init__.py importing its own submodules."""
    files = {
        "__init__.py": "from pkg.a import VALUE\n",
        "a/__init__.py": "from pkg.a.b import VALUE\n",
        "a/b.py": "from pkg.a import c\nVALUE = 1\n",
        "a/c.py": "def f():\n    from .b import VALUE\n    return VALUE\n",
        "d.py": "import pkg.e as e\n",
        "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n"
                "from pkg import VALUE\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    components, report = import_circles(tmp_path / "pkg")
    assert components == [["pkg.a.b", "pkg.a.c"]], report
    assert "(pkg.a.c line 2, in a function)" in report
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg.a import VALUE\nimport pkg.e\n")
    components, report = import_circles(tmp_path / "pkg")
    assert ["pkg", "pkg.e"] in components, report


def test_import_graph_has_no_cycle():
    components, report = import_circles()
    print(report)
    assert not components, f"{len(components)} import circle(s) in {PACKAGE}/:\n\n{report}"


def _os_names(tree: ast.AST) -> tuple[set[str], list[int]]:
    """Names bound to the os module, and lines that import environ/getenv from it."""
    names, lines = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(a.name in ("environ", "getenv", "putenv", "unsetenv") for a in node.names):
                lines.append(node.lineno)
    return names, lines


def test_only_settings_reads_the_environment():
    """Environment variables are read in dfjax/settings.py alone, so every knob is
    documented and validated in one place."""
    offenders = []
    for module, path in modules().items():
        if module == SETTINGS:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        os_names, lines = _os_names(tree)
        lines += [node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute)
                  and node.attr in ("environ", "getenv", "putenv", "unsetenv")
                  and isinstance(node.value, ast.Name) and node.value.id in os_names]
        offenders += [f"{path.relative_to(ROOT.parent)}:{line}" for line in sorted(lines)]
    assert not offenders, ("os.environ read outside dfjax/settings.py:\n"
                           + "\n".join(offenders))


def test_no_module_sets_the_matplotlib_backend():
    """matplotlib.use switches the backend of the whole process, the caller's included: a
    library must leave that choice to the program that imports it."""
    offenders = []
    for path in modules().values():
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases, functions = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names if a.name == "matplotlib"}
            elif isinstance(node, ast.ImportFrom) and node.module == "matplotlib":
                functions |= {a.asname or a.name for a in node.names if a.name == "use"}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "use" and isinstance(f.value, ast.Name)
                    and f.value.id in aliases) or (isinstance(f, ast.Name) and f.id in functions):
                offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not offenders, "matplotlib.use called in:\n" + "\n".join(offenders)
