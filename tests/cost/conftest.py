"""Cost tests: load the exact tokenizers (when installed) once, up front, so no test races the
background loader and token counts are the same whichever test runs first."""

from __future__ import annotations

import pytest

from llm_async.application.tokens import get_token_estimator


@pytest.fixture(scope="session", autouse=True)
def _tokenizers_loaded() -> None:
    estimator = get_token_estimator()
    for encoding in ("o200k_base", "cl100k_base"):
        estimator.exact_counter(encoding, wait=True)
