"""Every ```python block of every page in docs/ runs, in order, one namespace per page."""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)), m.group(1)) for m in FENCE.finditer(text)]


PAGES = sorted(p for p in DOCS.rglob("*.md") if _blocks(p))


def test_docs_have_examples() -> None:
    assert PAGES, "no executable examples found in docs/"


async def _cleanup(namespace: dict[str, Any]) -> None:
    for value in list(namespace.values()):
        if inspect.isclass(value) or inspect.ismodule(value):
            continue
        closer = getattr(value, "aclose", None) or getattr(value, "close", None)
        if closer is None or not callable(closer):
            continue
        try:
            result = closer()
            if inspect.isawaitable(result):
                await result
        except Exception:
            pass


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
async def test_doc_page_examples(page: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    saved_env = dict(os.environ)
    try:
        for line, source in _blocks(page):
            code = compile("\n" * line + source, str(page), "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)
            if inspect.isawaitable(result):
                await result
    finally:
        await _cleanup(namespace)
        os.environ.clear()
        os.environ.update(saved_env)   # a page may set LLM_* variables for its examples
