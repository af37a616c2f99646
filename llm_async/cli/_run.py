"""Running a command: delegation to the servers' own parsers, the library's log records on
stderr, one-line errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ._parser import PROG


def _delegate(command: str, argv: list[str]) -> int:
    if command == "mock-server":
        from ..testing.__main__ import main as mock_main

        return mock_main(argv, prog=f"{PROG} mock-server")
    from ..observability.dashboard.cli import main as dashboard_main

    return dashboard_main(argv)


class _LevelFormatter(logging.Formatter):
    """``llm-async: warning: circuit 'openai/gpt-4o': closed -> open``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


@contextmanager
def _library_logs(err: TextIO, *, debug: bool) -> Iterator[None]:
    """Show the library's log records on ``err`` with a level prefix while a command runs."""
    logger = logging.getLogger("llm_async")
    handler = logging.StreamHandler(err)
    handler.setFormatter(_LevelFormatter())
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    saved = logger.level
    if debug:
        logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _fail(err: TextIO, message: str) -> None:
    err.write(f"{PROG}: error: {message}\n")
    err.flush()
