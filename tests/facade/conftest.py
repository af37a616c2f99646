"""Fixtures of the sync facade tests.

A sync call blocks its thread, so the provider server must not run on the calling thread's
event loop: here it runs on a loop of its own, in a thread, behind an anyio blocking portal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from llm_async.application.cost_manager import set_cost_manager
from llm_async.facade import reset_llm_client_service
from llm_async.testing import Fault, MockProviderServer

T = TypeVar("T")


@dataclass
class ThreadedServer:
    """A :class:`MockProviderServer` on its own loop; touch it only through :meth:`call`."""

    server: MockProviderServer
    portal: BlockingPortal

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def call(self, func: Callable[..., T], *args: Any) -> T:
        return self.portal.call(func, *args)  # type: ignore[arg-type]

    def add_fault(self, fault: Fault) -> None:
        self.call(self.server.add_fault, fault)

    def stats(self) -> dict[str, Any]:
        return self.call(self.server.stats)


@contextmanager
def serve_in_thread(**options: Any) -> Iterator[ThreadedServer]:
    with start_blocking_portal() as portal:
        server = MockProviderServer(**options)
        with portal.wrap_async_context_manager(server):
            yield ThreadedServer(server, portal)


@pytest.fixture
def threaded_server() -> Iterator[ThreadedServer]:
    with serve_in_thread() as handle:
        yield handle


@pytest.fixture
def slow_stream_server() -> Iterator[ThreadedServer]:
    """Long replies, one word every millisecond: a stream is still going when a test breaks."""
    with serve_in_thread(reply_words=400, token_delay=0.001) as handle:
        yield handle


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No LLM_* / provider variables from the outer environment; a fresh process-wide service
    and cost manager."""
    import os

    for name in list(os.environ):
        if name.startswith(("LLM_", "OPENAI_", "ANTHROPIC_", "OPENROUTER_")):
            monkeypatch.delenv(name)
    reset_llm_client_service()
    set_cost_manager(None)  # the process-wide ledger starts empty, budgets from this env
    yield monkeypatch
    reset_llm_client_service()
    set_cost_manager(None)


@pytest.fixture
def mock_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """``LLM_FORCE_MOCK=1``: the design document's examples run with no API key."""
    clean_env.setenv("LLM_FORCE_MOCK", "1")
    return clean_env
