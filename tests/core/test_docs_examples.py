"""Every ```python block of every page in docs/ runs, in order, one namespace per page.

A block followed by an output block (```` ```text title="Output" ````, after blank lines or the
``</div>`` closing a side-by-side grid) must print exactly that: what a page shows as an
example's output is what the example prints.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
# Blank lines, or the end of a side-by-side grid, may stand between an example and its output.
OUTPUT = re.compile(r"[ \t]*\n(?:[ \t]*\n)*(?:</div>[ \t]*\n(?:[ \t]*\n)*)?"
                    r"```text title=\"Output\"[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, source, expected output or None)`` of each ```python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    blocks: list[tuple[int, str, str | None]] = []
    for m in FENCE.finditer(text):
        shown = OUTPUT.match(text, m.end())
        blocks.append((text.count("\n", 0, m.start(1)), m.group(1),
                       shown.group(1) if shown else None))
    return blocks


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
        for line, source, expected in _blocks(page):
            code = compile("\n" * line + source, str(page), "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed) if expected is not None \
                    else contextlib.nullcontext():
                result = eval(code, namespace)
                if inspect.isawaitable(result):
                    await result
            if expected is not None:
                assert printed.getvalue().rstrip("\n") == expected.rstrip("\n"), (
                    f"{page.name}, the block at line {line}: printed output differs from the "
                    f"page's Output block")
    finally:
        await _cleanup(namespace)
        os.environ.clear()
        os.environ.update(saved_env)   # a page may set LLM_* variables for its examples


def test_every_output_block_follows_an_example() -> None:
    """An output block that follows no ```python block would be shown but never checked."""
    for page in DOCS.rglob("*.md"):
        shown = page.read_text(encoding="utf-8").count('```text title="Output"')
        checked = sum(expected is not None for _, _, expected in _blocks(page))
        assert shown == checked, f"{page.relative_to(DOCS)}: an Output block follows no example"


async def test_a_wrong_output_block_fails(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text('```python\nprint("four")\n```\n\n```text title="Output"\nfive\n```\n',
                    encoding="utf-8")
    assert _blocks(page)[0][1:] == ('print("four")\n', "five\n")
    with pytest.raises(AssertionError, match="printed output differs"):
        await test_doc_page_examples(page)
