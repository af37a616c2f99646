"""Cost tests: the process-wide token estimator is the offline heuristic (the default), so
token counts do not depend on which tokenizers are installed or which test runs first."""

from __future__ import annotations

import pytest

from llm_async.application.tokens import get_token_estimator


@pytest.fixture(scope="session", autouse=True)
def _heuristic_estimator() -> None:
    assert not get_token_estimator().use_exact
