"""Cost tests: the process-wide token estimator is the offline heuristic (the default), so
token counts do not depend on which tokenizers are installed or which test runs first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llm_async.application.tokens import get_token_estimator


@pytest.fixture(scope="session", autouse=True)
def _heuristic_estimator() -> None:
    assert not get_token_estimator().use_exact


# The chaos scenarios (``_chaos.py``) are shared with the worker processes, which run as scripts
# from this folder: make them importable by the tests too (pytest imports tests with importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))
