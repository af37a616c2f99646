"""With content capture off, no prompt or completion text reaches spans (attributes, status,
events), logs or the dashboard, even when the provider's error message echoes the prompt; a key
passed per call is never recorded. Real OpenTelemetry SDK with in-memory exporters, real HTTP to
the embedded server, the default pipeline."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llm_async import AsyncLLMClient, BadRequestError, LLMError
from llm_async.application.cost_manager import CostManager
from llm_async.observability import Observability
from llm_async.observability.content import MIN_RUN, ContentScrubber
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import build_request

API_KEY = "sk-observability-test-key-0123456789"
PER_CALL_KEY = "per-call-secret-token-5b1f0e97c2"
PROMPT = "Draft the confidential merger memo for Project Bluebird, due Friday"
Otel = Any


def _echo(status: int, text: str) -> Fault:
    """A provider error whose message quotes the prompt back (as some providers do)."""
    return Fault(status=status, times=1, body={"error": {
        "message": f"Invalid request: the message '{text}' could not be processed",
        "type": "invalid_request_error"}})


def _recorded(otel: Otel) -> str:
    """Everything the spans hold, as one string: names, attributes, status, events."""
    parts: list[str] = []
    for span in otel.spans():
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        parts.append(str(span.status.description))
        for event in span.events:
            parts.append(event.name)
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
    return "\n".join(parts)


@pytest.fixture
async def client_pair(otel: Otel) -> AsyncIterator[tuple[AsyncLLMClient, MockProviderServer,
                                                         Observability]]:
    obs = Observability()
    async with MockProviderServer(reply_words=8) as server, AsyncLLMClient(
            provider="openai", api_key=API_KEY, base_url=server.base_url, observability=obs,
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider,
            retry_config=None, cost_manager=CostManager()) as client:
        yield client, server, obs


async def test_a_provider_error_echoing_the_prompt_leaves_no_content_anywhere(
        client_pair: tuple[AsyncLLMClient, MockProviderServer, Observability], otel: Otel,
        caplog: pytest.LogCaptureFixture) -> None:
    client, server, obs = client_pair
    caplog.set_level(logging.DEBUG, logger="llm_async")
    server.add_fault(_echo(400, PROMPT))
    with pytest.raises(BadRequestError):
        await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    reply = await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    assert reply.content

    spans = otel.spans()
    assert len(spans) == 2
    failed = next(s for s in spans if s.status.description)
    assert failed.attributes["error.type"] == "bad_request"
    # The status keeps the provider's words around the echo, not the echo.
    assert "Invalid request: the message '[content]'" in failed.status.description
    recorded = _recorded(otel)
    for words in (PROMPT, PROMPT[:MIN_RUN], PROMPT[-MIN_RUN:], reply.content):
        assert words not in recorded
    assert "gen_ai.input.messages" not in recorded and "gen_ai.output.messages" not in recorded
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert PROMPT[:MIN_RUN] not in logs and reply.content not in logs
    dashboard = json.dumps(obs.get_dashboard_data())
    assert PROMPT[:MIN_RUN] not in dashboard and reply.content not in dashboard
    assert all("prompt" not in call for call in obs.recent_calls())


async def test_a_server_error_echoing_the_prompt_is_scrubbed_from_the_breaker_panel(
        client_pair: tuple[AsyncLLMClient, MockProviderServer, Observability],
        otel: Otel) -> None:
    client, server, obs = client_pair
    server.add_fault(_echo(500, PROMPT))
    with pytest.raises(LLMError):
        await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    failure = obs.get_dashboard_data()["circuit_breakers"]["openai/gpt-4o-mini"]["last_failure"]
    assert failure["type"] == "server_error"
    assert "[content]" in failure["message"] and PROMPT[:MIN_RUN] not in failure["message"]
    assert PROMPT[:MIN_RUN] not in _recorded(otel)


async def test_a_per_call_key_is_never_recorded(
        client_pair: tuple[AsyncLLMClient, MockProviderServer, Observability], otel: Otel,
        caplog: pytest.LogCaptureFixture) -> None:
    client, server, obs = client_pair
    caplog.set_level(logging.DEBUG, logger="llm_async")
    server.add_fault(Fault(status=401, times=1, body={"error": {
        "message": f"Incorrect API key provided: {PER_CALL_KEY}", "type": "invalid_api_key"}}))
    with pytest.raises(LLMError):
        await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                          extra_headers={"Authorization": f"Bearer {PER_CALL_KEY}"})
    assert PER_CALL_KEY not in _recorded(otel)
    assert PER_CALL_KEY not in json.dumps(obs.get_dashboard_data())
    assert all(PER_CALL_KEY not in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


async def test_with_capture_on_the_content_is_recorded(otel: Otel) -> None:
    obs = Observability()
    async with MockProviderServer(reply_words=8) as server, AsyncLLMClient(
            provider="openai", api_key=API_KEY, base_url=server.base_url, observability=obs,
            tracer_provider=otel.tracer_provider, capture_content=True,
            cost_manager=CostManager()) as client:
        reply = await client.chat(model="gpt-4o-mini",
                                  messages=[{"role": "user", "content": PROMPT}])
    assert PROMPT in otel.span().attributes["gen_ai.input.messages"]
    (call,) = obs.recent_calls()
    assert call["prompt"] == PROMPT and call["completion"] == reply.content


def test_the_scrubber_removes_long_runs_and_whole_short_texts() -> None:
    request = build_request(model="m", messages=[
        {"role": "system", "content": "Be terse"},
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": "ok", "tool_calls": [{
            "id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"ticker": "BLUEBIRD-PRIVATE"}'}}]},
    ])
    scrub = ContentScrubber(request)
    assert scrub(f"bad: {PROMPT}!") == "bad: [content]!"
    middle = PROMPT[10:10 + MIN_RUN]
    assert scrub(f"x{middle}y") == "x[content]y"
    assert scrub("said: Be terse") == "said: [content]"
    assert scrub('args {"ticker": "BLUEBIRD-PRIVATE"} rejected') == "args [content] rejected"
    # JSON-escaped echoes too.
    said = 'say "hello there, friend of mine" twice'
    quoted = build_request(model="m", messages=[{"role": "user", "content": said}])
    assert ContentScrubber(quoted)(json.dumps({"m": said})) == '{"m": "[content]"}'
    # Unrelated text and runs shorter than MIN_RUN stay.
    assert scrub("upstream timeout after 30 s") == "upstream timeout after 30 s"
    assert scrub(PROMPT[:8]) == PROMPT[:8]
