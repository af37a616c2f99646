"""The tracing layer's spans: one CLIENT span per logical call on the GenAI conventions."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from llm_async import (
    AsyncLLMClient,
    AuthenticationError,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    LLMError,
    RateLimitError,
    ServerError,
    StreamError,
    Usage,
)
from llm_async.context import CallContext
from llm_async.domain.ports import Layer
from llm_async.errors import OverloadedError, register_secret
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.observability import ERROR_TYPES, Observability, TracingLayer, error_type
from llm_async.testing import Fault, MockProviderServer

HANG = 120.0  # a guard against a hang, never a speed check

MESSAGES = [{"role": "user", "content": "Tell me about rivers"}]
API_KEY = "sk-observability-test-key-0123456789"
Otel = Any


class StartRecorder(SpanProcessor):
    """Keeps the attributes each span had when it started (what a sampler sees)."""

    def __init__(self) -> None:
        self.at_start: dict[str, dict[str, Any]] = {}

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.at_start[span.name] = dict(span.attributes or {})


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_unary_span_name_kind_and_attributes(traced: AsyncLLMClient, otel: Otel,
                                                   mock_server: MockProviderServer) -> None:
    recorder = StartRecorder()
    otel.tracer_provider.add_span_processor(recorder)
    reply = await traced.chat(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=3, temperature=0.5, top_p=0.9,
        stop=["END"], seed=7, frequency_penalty=0.1, presence_penalty=0.2,
        response_format={"type": "text"},
    )
    span = otel.span()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    port = int(mock_server.base_url.split(":")[2].split("/")[0])
    start = recorder.at_start["chat gpt-4o-mini"]
    assert {k: start[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name",
                                  "gen_ai.request.model", "server.address", "server.port")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "server.address": "127.0.0.1",
        "server.port": port}
    a = attrs(span)
    assert a["gen_ai.request.max_tokens"] == 3
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.frequency_penalty"] == 0.1
    assert a["gen_ai.request.presence_penalty"] == 0.2
    assert a["gen_ai.output.type"] == "text"
    assert "gen_ai.request.stream" not in a
    assert a["gen_ai.response.model"] == reply.model
    assert a["gen_ai.response.id"] == reply.id and reply.id
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert a["gen_ai.usage.input_tokens"] == reply.usage.input_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == reply.usage.output_tokens == 3
    assert a["gen_ai.usage.cache_read.input_tokens"] == 0
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert a["llm_async.request_id"] == reply.request_id
    assert "error.type" not in a


async def test_stream_span_has_stream_flag_ttfc_and_usage(traced: AsyncLLMClient,
                                                          otel: Otel) -> None:
    async with traced.stream(model="gpt-4o", messages=MESSAGES) as stream:
        final = await stream.get_final_response()
    span = otel.span()
    a = attrs(span)
    assert span.name == "chat gpt-4o"
    assert a["gen_ai.request.stream"] is True
    ttfc = a["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9
    assert a["gen_ai.usage.input_tokens"] == final.usage.input_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == final.usage.output_tokens > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.response.id"] == final.id
    assert "llm_async.stream.completed" not in a


@pytest.mark.parametrize(("status", "expected", "exc"), [
    (429, "rate_limited", RateLimitError),
    (500, "server_error", ServerError),
    (503, "overloaded", OverloadedError),
    (401, "authentication_error", AuthenticationError),
])
async def test_failed_call_sets_error_type_and_status(
        traced: AsyncLLMClient, otel: Otel, mock_server: MockProviderServer,
        obs: Observability, status: int, expected: str, exc: type[Exception]) -> None:
    mock_server.add_fault(Fault(status=status, times=1))
    with pytest.raises(exc):
        await traced.chat(model="gpt-4o-mini", messages=MESSAGES)
    span = otel.span()
    a = attrs(span)
    assert a["error.type"] == expected
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description and f"status={status}" in span.status.description
    assert "gen_ai.usage.input_tokens" not in a
    data = obs.get_dashboard_data()
    assert data["failed_requests"] == 1 and data["errors_by_type"] == {expected: 1}


async def test_stream_cut_after_first_chunk_counts_under_what_cut_it(
        traced: AsyncLLMClient, otel: Otel, mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(cut_after=2, times=1))
    with pytest.raises(StreamError) as info:
        async for _ in traced.stream(model="gpt-4o-mini", messages=MESSAGES):
            pass
    a = attrs(otel.span())
    assert info.value.cause is not None
    assert a["error.type"] == "connection_error"  # the root cause: the connection broke
    assert a["llm_async.error.raised_type"] == "stream_interrupted"
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_stream_closed_early_ends_span_without_error(
        traced: AsyncLLMClient, otel: Otel, obs: Observability) -> None:
    async with traced.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        async for _ in stream:
            break
    span = otel.span()
    a = attrs(span)
    assert a["llm_async.stream.completed"] is False
    assert "error.type" not in a and span.status.status_code is StatusCode.UNSET
    assert obs.active_operations == 0
    assert obs.get_dashboard_data()["successful_requests"] == 1


class Capture(Layer):
    """Remembers the last request it saw (to inspect its CallContext)."""

    last: CallContext | None = None

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        Capture.last = ctx
        return await self.inner.chat(request, ctx)

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        Capture.last = ctx
        return self.inner.stream(request, ctx)


async def _client(server: MockProviderServer, otel: Otel, obs: Observability,
                  *inner: Any, **kwargs: Any) -> AsyncLLMClient:
    return AsyncLLMClient(
        provider="openai", api_key=API_KEY, base_url=server.base_url,
        layers=[otel.layer(obs, endpoints={"openai": server.base_url}, **kwargs), *inner])


@pytest.mark.parametrize("streaming", [False, True])
async def test_cancelled_call_ends_span_and_leaks_nothing(
        mock_server: MockProviderServer, otel: Otel, obs: Observability,
        streaming: bool) -> None:
    mock_server.add_fault(Fault(latency=30.0, times=1))
    client = await _client(mock_server, otel, obs, Capture)
    async with client:
        async def call() -> None:
            if streaming:
                async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
                    pass
            else:
                await client.chat(model="gpt-4o-mini", messages=MESSAGES)

        task = asyncio.create_task(call())
        deadline = time.monotonic() + HANG
        while not mock_server.request_count and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert mock_server.request_count == 1
        assert obs.active_operations == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        span = otel.span()
        assert attrs(span)["error.type"] == "cancelled"
        assert span.end_time is not None
        assert obs.active_operations == 0
        assert Capture.last is not None and Capture.last.listeners == []
        data = obs.get_dashboard_data()
        assert data["cancelled_requests"] == 1 and data["failed_requests"] == 0
        # The client still works after the cancellation.
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        assert len(otel.spans()) == 2


class Reporter(Layer):
    """Reports what resilience and optimization layers report, as they would."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        ctx.event("retry", attempt=1, delay=0.5, error=RateLimitError("slow down", status=429))
        ctx.event("circuit_rejected", breaker="openai/gpt-4o", retry_after=3.0)
        ctx.event("fallback", from_model="gpt-4o", to_model="gpt-4o-mini")
        ctx.event("dedup_join", key="abc123")
        ctx.event("cache_hit", similarity=0.97)
        ctx.event("custom", api_key=API_KEY, authorization=f"Bearer {API_KEY}",
                  note=f"key is {API_KEY}", obj=object())
        ctx.attempt = 2
        return await self.inner.chat(request, ctx)


async def test_context_events_become_span_events(mock_server: MockProviderServer, otel: Otel,
                                                 obs: Observability) -> None:
    register_secret(API_KEY)
    async with await _client(mock_server, otel, obs, Reporter) as client:
        await client.chat(model="gpt-4o", messages=MESSAGES)
    span = otel.span()
    events = {e.name: dict(e.attributes or {}) for e in span.events}
    assert list(events) == ["retry", "circuit_rejected", "fallback", "dedup_join", "cache_hit",
                            "custom"]
    assert events["retry"] == {"attempt": 1, "delay": 0.5, "error": "rate_limited"}
    assert events["circuit_rejected"] == {"breaker": "openai/gpt-4o", "retry_after": 3.0}
    assert events["fallback"] == {"from_model": "gpt-4o", "to_model": "gpt-4o-mini"}
    assert events["dedup_join"] == {"key": "abc123"}
    assert events["cache_hit"] == {"similarity": 0.97}
    assert events["custom"] == {"note": "key is ***"}
    a = attrs(span)
    assert a["llm_async.attempts"] == 2 and a["llm_async.retries"] == 1
    assert a["llm_async.cache_hit"] is True
    data = obs.get_dashboard_data()
    assert (data["retries"], data["circuit_rejections"], data["fallbacks"],
            data["dedup_joins"], data["cache_hits"]) == (1, 1, 1, 1, 1)


async def test_content_is_not_captured_by_default(traced: AsyncLLMClient, otel: Otel) -> None:
    await traced.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "echo: secret"}])
    dumped = otel.span().to_json()
    assert "gen_ai.input.messages" not in dumped and "gen_ai.output.messages" not in dumped
    assert "secret" not in dumped


async def test_content_is_captured_on_opt_in(mock_server: MockProviderServer, otel: Otel,
                                             obs: Observability) -> None:
    tools = [{"type": "function", "function": {
        "name": "lookup", "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "echo: Hello there"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "function": {"name": "lookup", "arguments": "{\"word\": \"x\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a letter"},
        {"role": "user", "content": [{"type": "text", "text": "echo: Hello there"},
                                     {"type": "image_url",
                                      "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]
    async with await _client(mock_server, otel, obs, capture_content=True) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=messages, tools=tools,
                                  tool_choice="none")
    a = attrs(otel.span())
    sent = json.loads(a["gen_ai.input.messages"])
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert sent[0]["parts"] == [{"type": "text", "content": "Be brief."}]
    assert sent[2]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "lookup",
                                 "arguments": "{\"word\": \"x\"}"}]
    assert sent[3]["parts"] == [{"type": "tool_call_response", "id": "call_1",
                                 "response": "a letter"}]
    assert sent[4]["parts"][1] == {"type": "uri", "modality": "image",
                                   "uri": "data:image/png;base64,..."}
    out = json.loads(a["gen_ai.output.messages"])
    assert out == [{"role": "assistant", "parts": [{"type": "text", "content": reply.text}],
                    "finish_reason": reply.finish_reason}]
    defs = json.loads(a["gen_ai.tool.definitions"])
    assert defs[0]["name"] == "lookup" and defs[0]["type"] == "function"


async def test_api_key_never_reaches_telemetry(mock_server: MockProviderServer, otel: Otel,
                                               obs: Observability,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="llm_async")
    mock_server.add_fault(Fault(status=401, times=1))
    async with await _client(mock_server, otel, obs, Reporter, capture_content=True) as client:
        with pytest.raises(AuthenticationError):
            await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
            pass
    spans = otel.spans()
    assert len(spans) == 3
    for span in spans:
        assert API_KEY not in span.to_json()
    for metric in otel.metrics().values():
        assert API_KEY not in metric.to_json()
    assert API_KEY not in json.dumps(obs.get_dashboard_data())
    assert caplog.records and all(API_KEY not in r.getMessage() for r in caplog.records)


class InnerSpan(Layer):
    """Starts a span of its own, as an HTTP instrumentation inside the stack would."""

    def __init__(self, inner: Any, tracer: Any) -> None:
        super().__init__(inner)
        self.tracer = tracer

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        with self.tracer.start_as_current_span("inner chat"):
            return await self.inner.chat(request, ctx)

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        self.tracer.start_span("inner stream").end()
        async for chunk in self.inner.stream(request, ctx):
            self.tracer.start_span("inner chunk").end()
            yield chunk


async def test_inner_spans_are_children_of_the_call_span(
        mock_server: MockProviderServer, otel: Otel, obs: Observability) -> None:
    tracer = otel.tracer_provider.get_tracer("test")
    layer = lambda inner: InnerSpan(inner, tracer)  # noqa: E731
    async with await _client(mock_server, otel, obs, layer) as client:
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        async for _ in client.stream(model="gpt-4o", messages=MESSAGES):
            pass
    spans = {s.name: s for s in otel.spans()}
    chat, stream = spans["chat gpt-4o-mini"], spans["chat gpt-4o"]
    assert spans["inner chat"].parent.span_id == chat.context.span_id
    assert spans["inner stream"].parent.span_id == stream.context.span_id
    chunks = [s for s in otel.spans() if s.name == "inner chunk"]
    assert chunks and all(s.parent.span_id == stream.context.span_id for s in chunks)
    # Outside the call, no span is current: nothing leaked across the stream's yields.
    from opentelemetry import trace

    assert not trace.get_current_span().get_span_context().is_valid


async def test_cache_tokens_and_reasoning_from_usage(otel: Otel, obs: Observability) -> None:
    usage = Usage(input_tokens=120, output_tokens=30, cache_read_tokens=80,
                  cache_write_tokens=15, reasoning_tokens=12)
    transport = MockLLMTransport(responses=[MockReply(text="ok", usage=usage)])
    async with AsyncLLMClient(provider="mock", transport=transport,
                              layers=[otel.layer(obs)]) as client:
        await client.chat(model="claude-x", messages=MESSAGES)
    a = attrs(otel.span())
    assert a["gen_ai.provider.name"] == "mock"
    assert "server.address" not in a and "server.port" not in a
    assert a["gen_ai.usage.input_tokens"] == 120  # cached tokens included
    assert a["gen_ai.usage.cache_read.input_tokens"] == 80
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 15
    assert a["gen_ai.usage.reasoning.output_tokens"] == 12
    assert a["gen_ai.usage.output_tokens"] == 30


async def test_prompt_cache_hit_on_the_server_is_reported(traced: AsyncLLMClient,
                                                          otel: Otel) -> None:
    long_prompt = [{"role": "system", "content": " ".join(["context"] * 300)},
                   {"role": "user", "content": "question"}]
    await traced.chat(model="gpt-4o-mini", messages=long_prompt)
    second = await traced.chat(model="gpt-4o-mini", messages=long_prompt)
    assert second.usage.cache_read_tokens > 0
    a = attrs(otel.spans()[1])
    assert a["gen_ai.usage.cache_read.input_tokens"] == second.usage.cache_read_tokens
    assert a["gen_ai.usage.input_tokens"] == second.usage.input_tokens


class CostLayer(Layer):
    """Sets the call's cost the way the cost layer does."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        response = await self.inner.chat(request, ctx)
        ctx.cost = response.cost = Decimal("0.0025")
        return response


async def test_cost_goes_on_the_span(mock_server: MockProviderServer, otel: Otel,
                                     obs: Observability) -> None:
    async with await _client(mock_server, otel, obs, CostLayer) as client:
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    assert attrs(otel.span())["llm_async.cost_usd"] == 0.0025
    assert obs.get_dashboard_data()["by_model"]["gpt-4o-mini"]["total_cost"] == 0.0025


def test_error_type_table_is_low_cardinality_and_specific() -> None:
    from llm_async.errors import OverloadedError, QuotaExceededError, ServerError

    assert error_type(QuotaExceededError("q")) == "quota_exceeded"
    assert error_type(OverloadedError("o")) == "overloaded"
    assert error_type(ServerError("s")) == "server_error"
    assert error_type(asyncio.CancelledError()) == "cancelled"
    assert error_type(KeyError("k")) == "_OTHER"
    assert all(re.fullmatch(r"[a-z_]+|_OTHER", v) for v in ERROR_TYPES.values())
    # Every error class of the tree has its own label (none falls back to _OTHER).
    import llm_async.errors as errors

    classes = [getattr(errors, n) for n in errors.__all__]
    for cls in classes:
        if isinstance(cls, type) and issubclass(cls, errors.LLMError) and cls is not LLMError:
            assert cls in ERROR_TYPES, cls


async def test_default_pipeline_puts_tracing_outermost(mock_server: MockProviderServer,
                                                       otel: Otel, obs: Observability) -> None:
    async with AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=mock_server.base_url,
                              capture_content=True, tracer_provider=otel.tracer_provider,
                              meter_provider=otel.meter_provider,
                              observability=obs) as client:
        layer = client.stack[0]
        assert isinstance(layer, TracingLayer)
        assert layer.capture_content is True and layer.observability is obs
        port = int(mock_server.base_url.split(":")[2].split("/")[0])
        assert layer.servers == {"openai": ("127.0.0.1", port)}
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    spans = [s for s in otel.spans() if s.name == "chat gpt-4o-mini"]
    assert len(spans) == 1 and "gen_ai.input.messages" in attrs(spans[0])
    async with AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=mock_server.base_url,
                              tracing=False) as client:
        assert client.layer(TracingLayer) is None


def test_output_type_follows_the_response_format() -> None:
    from pydantic import BaseModel

    from llm_async.observability.content import output_type as _output_type

    class Answer(BaseModel):
        value: int

    assert _output_type(None) is None
    assert _output_type({"type": "text"}) == "text"
    assert _output_type({"type": "json_object"}) == "json"
    assert _output_type({"type": "json_schema", "json_schema": {}}) == "json"
    assert _output_type(Answer) == "json"


def test_server_endpoint_parsing() -> None:
    from llm_async.observability.otel import server_endpoint

    assert server_endpoint("https://api.openai.com/v1") == ("api.openai.com", 443)
    assert server_endpoint("http://localhost/v1") == ("localhost", 80)
    assert server_endpoint("http://[::1]:8080/v1") == ("::1", 8080)
    assert server_endpoint("https://user:pw@host.example:8443") == ("host.example", 8443)
    assert server_endpoint(None) is None and server_endpoint("not a url") is None
