"""The package's import graph: no cycles, arrows that point one way, aiohttp at the edges.

Every module of ``llm_async`` is parsed (not imported) and each ``import`` / ``from ... import``
statement is resolved to the module it loads, including imports inside functions. Two graphs are
built: the one that runs (imports under ``if TYPE_CHECKING:`` left out) for the layering rules,
and the one a type checker reads (those imports in) for cycles, which are barred in both.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import llm_async

PACKAGE = "llm_async"
ROOT = Path(llm_async.__file__).resolve().parent

#: Modules that may import aiohttp: the transports, the embedded provider server and the
#: dashboard's web app.
AIOHTTP_ALLOWED = (
    "llm_async.infrastructure.transports",
    "llm_async.testing",
    "llm_async.observability.dashboard",
)

#: Groups whose direct children are features (one policy or optimisation each).
FEATURE_GROUPS = ("llm_async.application", "llm_async.optimization")
#: Packages that are one feature as a whole.
FEATURE_PACKAGES = ("llm_async.observability",)
#: Modules that keep an older import path of a feature working (they only re-export it).
FEATURE_ALIASES = {"llm_async.application.rate_limit": "llm_async.application.limits"}

#: The only modules that may import the client: the public package, the pipeline (for its
#: type), the sync facade, the command line, the benchmark and the demo traffic, which all sit
#: above it. Layers, policies, transports and types never do.
CLIENT_USERS = (
    "llm_async._bench",
    "llm_async.cli",
    "llm_async.demo",
    "llm_async.facade",
    "llm_async.observability.dashboard",
)

#: Cycles still open in parts being reorganised elsewhere, each named by its modules. Empty
#: when the package has none; a cycle that disappears must leave this list (tested below).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()

#: Cycles closed only by an ``if TYPE_CHECKING:`` import, still open in modules being
#: reorganised elsewhere; each must leave this list once it is gone (tested below).
KNOWN_TYPE_CHECKING_CYCLES: frozenset[frozenset[str]] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, *,
                  type_checking: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, and with ``type_checking`` those under
    ``if TYPE_CHECKING:`` too."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if not type_checking and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: dict[str, Path], *,
               type_checking: bool = False) -> set[str]:
    """The modules (inside or outside the package) that ``name`` imports when it runs (and,
    with ``type_checking``, when a type checker reads it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(tree, type_checking=type_checking):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_longest_known(alias.name, modules))
            continue
        if node.level:
            base = name.split(".")
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        for alias in node.names:
            candidate = f"{target}.{alias.name}"
            found.add(candidate if candidate in modules else _longest_known(target, modules))
    found.discard(name)
    return found


def _longest_known(dotted: str, modules: dict[str, Path]) -> str:
    """``dotted`` itself when it is one of ours, else its longest known prefix (or as given)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return dotted


def import_graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules, type_checking=type_checking)
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def a_cycle_path(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """One concrete loop through a component (``a -> b -> a``), for the failure message."""
    inside = set(members)
    start = members[0]
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & inside):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return [*reversed(chain), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    return members


def feature_of(module: str) -> str | None:
    """The feature a module belongs to (``llm_async.optimization.cache``), if any."""
    if module in FEATURE_ALIASES:
        return FEATURE_ALIASES[module]
    for package in FEATURE_PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    for group in FEATURE_GROUPS:
        if module.startswith(group + "."):
            return ".".join(module.split(".")[: group.count(".") + 2])
    return None


def defines_layer(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if (isinstance(base, ast.Name) and base.id == "Layer") or (
                        isinstance(base, ast.Attribute) and base.attr == "Layer"):
                    return True
    return False


GRAPH = import_graph()
#: With the imports a type checker reads (``if TYPE_CHECKING:`` blocks) as well.
TYPED_GRAPH = import_graph(type_checking=True)


def test_the_walker_sees_the_package() -> None:
    assert "llm_async.client" in GRAPH
    assert "llm_async.context" in GRAPH["llm_async.client"]


def test_the_typed_graph_adds_type_checking_imports() -> None:
    # The package's names load lazily: the client is imported only for type checkers.
    assert "llm_async.client" not in GRAPH["llm_async"]
    assert "llm_async.client" in TYPED_GRAPH["llm_async"]
    assert all(GRAPH[name] <= TYPED_GRAPH[name] for name in GRAPH)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert a_cycle_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    found = [c for c in cycles(GRAPH) if frozenset(c) not in KNOWN_CYCLES]
    loops = [" -> ".join(a_cycle_path(GRAPH, c)) for c in found]
    assert not found, "import cycles:\n" + "\n".join(loops)


def test_no_import_cycles_for_type_checkers() -> None:
    """An ``if TYPE_CHECKING:`` import that closes a loop is a cycle too: the two modules are
    one unit to read and to move."""
    found = [c for c in cycles(TYPED_GRAPH) if frozenset(c) not in KNOWN_TYPE_CHECKING_CYCLES]
    loops = [" -> ".join(a_cycle_path(TYPED_GRAPH, c)) for c in found]
    assert not found, "import cycles through TYPE_CHECKING imports:\n" + "\n".join(loops)


def test_known_cycles_are_still_open() -> None:
    """An allowed cycle that no longer exists must leave the allow-list."""
    still = {frozenset(c) for c in cycles(GRAPH)}
    assert still >= KNOWN_CYCLES, KNOWN_CYCLES - still
    typed = {frozenset(c) for c in cycles(TYPED_GRAPH)}
    assert typed >= KNOWN_TYPE_CHECKING_CYCLES, KNOWN_TYPE_CHECKING_CYCLES - typed


def test_only_the_top_imports_the_client() -> None:
    offenders = sorted(name for name, deps in GRAPH.items()
                       if "llm_async.client" in deps and not name.startswith(CLIENT_USERS))
    assert not offenders, offenders


def layer_modules() -> set[str]:
    """Modules that define a layer, and packages whose ``__init__`` imports one of theirs."""
    modules = all_modules()
    found = {name for name, path in modules.items()
             if feature_of(name) is not None and defines_layer(path)}
    for name, path in modules.items():
        if path.name == "__init__.py" and any(
                dep in found and feature_of(dep) == feature_of(name) for dep in GRAPH[name]):
            found.add(name)
    return found


def test_layers_do_not_import_each_other() -> None:
    """A feature may use another's helpers (the token estimator, say), never its layer."""
    layers = layer_modules()
    assert "llm_async.optimization.cache.layer" in layers
    offenders = []
    for name, deps in GRAPH.items():
        own = feature_of(name)
        if own is None:
            continue
        offenders.extend(f"{name} -> {dep}" for dep in deps
                         if dep in layers and feature_of(dep) != own)
    assert not offenders, "\n".join(sorted(offenders))


@pytest.mark.parametrize("module", ["aiohttp"])
def test_only_the_network_edges_import_aiohttp(module: str) -> None:
    offenders = sorted(name for name, deps in GRAPH.items()
                       if any(d == module or d.startswith(module + ".") for d in deps)
                       and not name.startswith(AIOHTTP_ALLOWED))
    assert not offenders, offenders
