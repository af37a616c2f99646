"""Failures are counted by root cause: a call rejected by an open breaker counts under the failure
the breaker chains (``__cause__`` / ``cause``), an exhausted fallback under its last model's
failure; breaker rejections are counted separately. Spans, the duration histogram and the
dashboard agree. Real OpenTelemetry SDK with in-memory exporters."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from llm_async import (
    APIConnectionError,
    AsyncLLMClient,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CircuitBreakerOpenError,
    ServerError,
)
from llm_async.context import CallContext
from llm_async.domain.ports import Layer
from llm_async.errors import FallbackExhaustedError
from llm_async.observability import ERROR_TYPES, Observability, failure_type, root_cause
from llm_async.testing import MockProviderServer

API_KEY = "sk-observability-test-key-0123456789"
MESSAGES = [{"role": "user", "content": "hello"}]
Otel = Any


def _rejection(cause: BaseException | None) -> CircuitBreakerOpenError:
    return CircuitBreakerOpenError("circuit 'openai/gpt-4o' is open", name="openai/gpt-4o",
                                   retry_after=30.0, provider="openai", cause=cause)


def test_root_cause_follows_rejections_and_fallbacks() -> None:
    server = ServerError("upstream failed", status=500, provider="openai")
    assert root_cause(_rejection(server)) is server
    assert failure_type(_rejection(server)) == "server_error"
    assert failure_type(_rejection(None)) == "circuit_open"  # forced open: nothing behind it
    last = _rejection(APIConnectionError("refused"))
    exhausted = FallbackExhaustedError("all failed", errors=[("gpt-4o", server),
                                                             ("gpt-4o-mini", last)])
    exhausted.__cause__ = last  # the fallback layer raises it from the last failure
    assert failure_type(exhausted) == "connection_error"
    assert failure_type(FallbackExhaustedError("none")) == "fallback_exhausted"
    assert failure_type(server) == "server_error"
    assert ERROR_TYPES[CircuitBreakerOpenError] == "circuit_open"
    assert ERROR_TYPES[ServerError] == "server_error"


class OpenBreaker(Layer):
    """Rejects every call the way an open breaker does after upstream 500s."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        ctx.event("circuit_rejected", breaker="openai/gpt-4o", retry_after=30.0)
        raise _rejection(ServerError("upstream failed", status=500, provider="openai"))

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        await self.chat(request, ctx)
        yield ChatChunk(id="never", model=request.model)  # pragma: no cover


async def test_a_rejection_counts_under_its_root_cause(mock_server: MockProviderServer,
                                                       otel: Otel) -> None:
    obs = Observability()
    async with AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=mock_server.base_url,
                              layers=[otel.layer(obs), OpenBreaker]) as client:
        for _ in range(2):
            with pytest.raises(CircuitBreakerOpenError):
                await client.chat(model="gpt-4o", messages=MESSAGES)
        with pytest.raises(CircuitBreakerOpenError):
            async with client.stream(model="gpt-4o", messages=MESSAGES) as chunks:
                await chunks.get_final_response()

    spans = otel.spans()
    assert len(spans) == 3
    for span in spans:
        assert span.attributes["error.type"] == "server_error"
        assert span.attributes["llm_async.error.raised_type"] == "circuit_open"
        assert [e.name for e in span.events] == ["circuit_rejected"]
    durations = otel.points("gen_ai.client.operation.duration")
    assert {p.attributes["error.type"] for p in durations} == {"server_error"}
    assert sum(p.count for p in durations) == 3

    data = obs.get_dashboard_data()
    assert data["errors_by_type"] == {"server_error": 3}
    assert data["circuit_rejections"] == 3
    assert data["failed_requests"] == 3
    assert obs.last_failures()["openai/gpt-4o"]["type"] == "server_error"
    assert [c["error_type"] for c in obs.recent_calls()] == ["server_error"] * 3
