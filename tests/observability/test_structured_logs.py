"""One DEBUG line per call on the ``llm_async`` logger: request id, model, latency, tokens,
cost; nothing secret."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest

from llm_async import AsyncLLMClient, ChatRequest, ChatResponse, RateLimitError
from llm_async.context import CallContext
from llm_async.domain.ports import Layer
from llm_async.testing import Fault, MockProviderServer

API_KEY = "sk-observability-test-key-0123456789"
MESSAGES = [{"role": "user", "content": "echo: private words"}]
Otel = Any


class Priced(Layer):
    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        response = await self.inner.chat(request, ctx)
        ctx.cost = response.cost = Decimal("0.0042")
        return response


def _calls(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "llm_async" and hasattr(r, "llm_call")]


async def test_one_debug_line_per_call(mock_server: MockProviderServer, otel: Otel,
                                       obs: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_async")
    mock_server.add_fault(Fault(status=429, times=1, model="gpt-4o"))
    layers = [otel.layer(obs, capture_content=True), Priced]
    async with AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=mock_server.base_url,
                              layers=layers) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(RateLimitError):
            await client.chat(model="gpt-4o", messages=MESSAGES)
        async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
            pass
    records = _calls(caplog)
    assert len(records) == 3 and all(r.levelno == logging.DEBUG for r in records)
    first = records[0].llm_call  # type: ignore[attr-defined]
    assert first["request_id"] == reply.request_id and reply.request_id
    assert first["model"] == "gpt-4o-mini" and first["provider"] == "openai"
    assert first["status"] == "ok" and first["latency_ms"] >= 0
    assert (first["input_tokens"], first["output_tokens"]) == (reply.usage.input_tokens,
                                                               reply.usage.output_tokens)
    assert first["cost_usd"] == 0.0042
    message = records[0].getMessage()
    assert f"request_id={reply.request_id}" in message and "model=gpt-4o-mini" in message
    assert "cost_usd=0.0042" in message and "latency_ms=" in message
    failed = records[1].llm_call  # type: ignore[attr-defined]
    assert failed["status"] == "error" and failed["error_type"] == "rate_limited"
    streamed = records[2].llm_call  # type: ignore[attr-defined]
    assert streamed["stream"] is True and streamed["ttfc_ms"] is not None
    for record in caplog.records:
        text = record.getMessage()
        assert API_KEY not in text and "private words" not in text


async def test_nothing_is_logged_above_debug(mock_server: MockProviderServer, otel: Otel,
                                             obs: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_async")
    async with AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=mock_server.base_url,
                              layers=[otel.layer(obs)]) as client:
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    assert _calls(caplog) == []
    assert obs.get_dashboard_data()["total_requests"] == 1
