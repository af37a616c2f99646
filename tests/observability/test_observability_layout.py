"""The shape of ``llm_async.observability``: no import cycle between its modules (every import
counted, at module level, in functions or for type checkers), aiohttp only in the dashboard's
web application and only when an application is built, the CLI command and the demo traffic
apart from the application, and modules of about 400 lines at most."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import llm_async.observability

PACKAGE = Path(llm_async.observability.__file__).resolve().parent
ROOT = PACKAGE.parents[1]
MAX_LINES = 430


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, ast.AST]]:
    """Every module ``path`` imports (absolute names), with the node that imports it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: list[tuple[str, ast.AST]] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node))
            out.extend((f"{target}.{alias.name}", node) for alias in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _ in _imports(path):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_observability_modules() -> None:
    graph = _graph()
    assert "llm_async.observability.tracing" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_aiohttp_only_in_the_dashboard_application_and_only_in_functions() -> None:
    users = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        top_level = {node.lineno for node in tree.body}
        checking = [range(node.lineno, (node.end_lineno or node.lineno) + 1)
                    for node in tree.body if isinstance(node, ast.If)
                    and ast.unparse(node.test) == "TYPE_CHECKING"]
        for target, node in _imports(path):
            if target == "aiohttp" or target.startswith("aiohttp."):
                line = getattr(node, "lineno", 0)
                users.setdefault(_module_name(path), set()).add(
                    "type-checking" if any(line in block for block in checking) else
                    "top-level" if line in top_level else "function")
    assert set(users) == {"llm_async.observability.dashboard.app"}, users
    assert users["llm_async.observability.dashboard.app"] == {"type-checking", "function"}


def test_the_command_and_the_demo_import_no_web_server() -> None:
    code = """
import json, sys
import llm_async.observability.dashboard
import llm_async.observability.dashboard.cli
import llm_async.observability.dashboard.demo
import llm_async.observability.dashboard.app
print(json.dumps(sorted(m for m in sys.modules if m.startswith("aiohttp.web"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert json.loads(out.stdout) == []


def test_modules_are_small() -> None:
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text("utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
