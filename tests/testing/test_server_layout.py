"""The embedded server's modules depend one way: dialects on the neutral wire model and the
dialect interface only, the server on everything, nothing back on the server."""

from __future__ import annotations

import ast
from pathlib import Path

import llm_async.testing
from llm_async.testing._dialect import Dialect
from llm_async.testing.dialects import DIALECTS

_ROOT = Path(llm_async.testing.__file__).parent
_PACKAGE = "llm_async.testing"


def _module_name(path: Path) -> str:
    parts = path.relative_to(_ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((_PACKAGE, *parts))


def _imports() -> dict[str, set[str]]:
    """Module -> the modules (package-internal or external top-level) it imports."""
    modules = {_module_name(p): p for p in _ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in modules else target)
        graph[name] = {dep for dep in found if dep != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep in graph and not state.get(dep):
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_in_the_testing_package() -> None:
    graph = _imports()
    assert f"{_PACKAGE}._server" in graph and f"{_PACKAGE}.dialects.openai" in graph
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_dialects_import_only_the_wire_model_the_interface_and_each_other() -> None:
    allowed_internal = {f"{_PACKAGE}._wire", f"{_PACKAGE}._dialect"}
    for name, deps in _imports().items():
        if not name.startswith(f"{_PACKAGE}.dialects."):
            continue
        internal = {d for d in deps if d.startswith(_PACKAGE)}
        assert internal <= allowed_internal | {
            d for d in internal if d.startswith(f"{_PACKAGE}.dialects.")
        }, name
        assert "aiohttp" not in deps, name


def test_every_registered_dialect_implements_the_interface() -> None:
    names = [dialect.name for dialect in DIALECTS]
    assert len(names) == len(set(names))
    for dialect in DIALECTS:
        assert issubclass(dialect, Dialect)
        assert dialect.chat_paths, dialect.name
        dialect()  # abstract methods all implemented
