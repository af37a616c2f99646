"""Gemini native API wire format, checked with aioresponses against the shapes of Google's
documented examples: the exact URL, header and JSON we send, and how we read answers, streams,
thought parts, safety stops, usage and error bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses
from pydantic import BaseModel
from yarl import URL

from llm_async import AsyncLLMClient
from llm_async.context import CallContext
from llm_async.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
    StreamError,
)
from llm_async.infrastructure.transports.gemini_transport import (
    GeminiTransport,
    finish_reason,
    gemini_usage,
)
from llm_async.types import build_request

BASE = "https://generativelanguage.googleapis.com/v1beta"
MODEL = "gemini-2.5-flash"
URL_CHAT = f"{BASE}/models/{MODEL}:generateContent"
URL_STREAM = f"{BASE}/models/{MODEL}:streamGenerateContent?alt=sse"
KEY = "AIzaSyWireTestKey0123456789"

WEATHER_SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}},
                  "required": ["location"]}
WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "description": "Current weather",
                                            "parameters": WEATHER_SCHEMA}}


def answer(parts: list[dict[str, Any]], finish: str = "STOP",
           usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish,
                        "index": 0}],
        "usageMetadata": usage or {"promptTokenCount": 9, "candidatesTokenCount": 3,
                                   "totalTokenCount": 12},
        "modelVersion": MODEL,
        "responseId": "mIMnaNLyN8aW1dkP2reUoQs",
    }


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\r\n\r\n".encode() for e in events)


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncLLMClient]:
    monkeypatch.delenv("GEMINI_BASE_URL", raising=False)
    async with AsyncLLMClient("gemini", transport=GeminiTransport(KEY), layers=[]) as c:
        yield c


def sent(m: aioresponses, url: str = URL_CHAT,
         index: int = -1) -> tuple[dict[str, Any], dict[str, str]]:
    call = m.requests[("POST", URL(url))][index]
    return json.loads(call.kwargs["data"]), call.kwargs["headers"]


async def test_request_shape(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(URL_CHAT, payload=answer([{"text": "Hello!"}]))
    reply = await client.chat(
        model=MODEL, temperature=0.2, top_p=0.9, max_tokens=64, stop=["END"], seed=3,
        presence_penalty=0.1, frequency_penalty=0.2, messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpeg"}},
            ]},
        ], extra_body={"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                           "threshold": "BLOCK_ONLY_HIGH"}],
                       "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}})
    body, headers = sent(mocked)
    assert body == {
        "systemInstruction": {"parts": [{"text": "You are terse."},
                                        {"text": "Answer in English."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                {"fileData": {"mimeType": "image/jpeg",
                              "fileUri": "https://example.com/cat.jpeg"}},
            ]},
        ],
        "generationConfig": {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 64,
                             "stopSequences": ["END"], "seed": 3, "presencePenalty": 0.1,
                             "frequencyPenalty": 0.2, "thinkingConfig": {"thinkingBudget": 0}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                            "threshold": "BLOCK_ONLY_HIGH"}],
    }
    assert headers["x-goog-api-key"] == KEY
    assert "Authorization" not in headers
    assert (reply.text, reply.finish_reason, reply.id, reply.model) == (
        "Hello!", "stop", "mIMnaNLyN8aW1dkP2reUoQs", MODEL)
    assert reply.provider == "gemini"


async def test_function_calling_round_trip(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(URL_CHAT, payload=answer([
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
    ]))
    question = {"role": "user", "content": "Weather in Paris?"}
    reply = await client.chat(model=MODEL, tools=[WEATHER], messages=[question],
                              tool_choice={"type": "function",
                                           "function": {"name": "get_weather"}})
    body, _ = sent(mocked)
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Current weather",
        "parametersJsonSchema": WEATHER_SCHEMA}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert reply.finish_reason == "tool_calls"  # Gemini says STOP
    [call] = reply.tool_calls
    assert call.id.startswith("call_") and call.name == "get_weather"
    assert call.parsed_arguments() == {"location": "Paris"}

    mocked.post(URL_CHAT, payload=answer([{"text": "It is sunny."}]))
    await client.chat(model=MODEL, tools=[WEATHER], messages=[
        question,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 22 C"},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 22}'},
    ])
    body, _ = sent(mocked)
    assert body["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                      "args": {"location": "Paris"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "sunny, 22 C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"temp": 22}}},
        ]},
    ]


async def test_tool_choice_modes(mocked: aioresponses, client: AsyncLLMClient) -> None:
    for choice, expected in (("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}),
                             ("required", {"mode": "ANY"})):
        mocked.post(URL_CHAT, payload=answer([{"text": "ok"}]))
        await client.chat(model=MODEL, tools=[WEATHER], tool_choice=choice,
                          messages=[{"role": "user", "content": "hi"}])
        assert sent(mocked)[0]["toolConfig"] == {"functionCallingConfig": expected}
    with pytest.raises(InvalidRequestError) as caught:
        await client.chat(model=MODEL, messages=[
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}])
    assert caught.value.field == "messages[1].tool_call_id"


class City(BaseModel):
    name: str
    population: int


async def test_structured_output_through_the_response_schema(mocked: aioresponses,
                                                             client: AsyncLLMClient) -> None:
    mocked.post(URL_CHAT, payload=answer([{"text": '{"name": "Paris", "population": 2}'}]))
    reply = await client.chat(model=MODEL, response_format=City,
                              messages=[{"role": "user", "content": "A city"}])
    body, _ = sent(mocked)
    assert body["generationConfig"] == {"responseMimeType": "application/json",
                                        "responseJsonSchema": City.model_json_schema()}
    assert reply.parsed == City(name="Paris", population=2)


async def test_thought_parts_are_not_text(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(URL_CHAT, payload=answer(
        [{"text": "Let me count the letters.", "thought": True},
         {"text": "There are three.", "thoughtSignature": "CiQBVKhc7g=="}],
        usage={"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 30,
               "cachedContentTokenCount": 6, "totalTokenCount": 44}))
    reply = await client.chat(model=MODEL, messages=[{"role": "user", "content": "r in cherry?"}])
    assert reply.text == "There are three."
    assert reply.reasoning == "Let me count the letters."
    assert [(type(p).__name__, getattr(p, "text", ""), getattr(p, "signature", None))
            for p in reply.parts] == [
        ("ReasoningPart", "Let me count the letters.", None),
        ("ReasoningPart", "", "CiQBVKhc7g=="),
        ("TextPart", "There are three.", None)]
    usage = reply.usage
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (10, 34, 30)
    assert (usage.cache_read_tokens, usage.uncached_input_tokens) == (6, 4)


async def test_thought_signatures_go_back_where_they_came_from(mocked: aioresponses,
                                                              client: AsyncLLMClient) -> None:
    mocked.post(URL_CHAT, payload=answer([
        {"text": "I should look it up.", "thought": True},
        {"functionCall": {"name": "get_weather", "args": {"location": "Oslo"}},
         "thoughtSignature": "c2lnLWNhbGw="}]))
    question = {"role": "user", "content": "Oslo weather?"}
    reply = await client.chat(model=MODEL, tools=[WEATHER], messages=[question])
    assert reply.reasoning == "I should look it up."
    mocked.post(URL_CHAT, payload=answer([{"text": "Cold."}]))
    await client.chat(model=MODEL, tools=[WEATHER], messages=[
        question, reply.message,
        {"role": "tool", "tool_call_id": reply.tool_calls[0].id, "content": "-3 C"}])
    body, _ = sent(mocked)
    assert body["contents"][1] == {"role": "model", "parts": [
        {"text": "I should look it up.", "thought": True},
        {"functionCall": {"name": "get_weather", "args": {"location": "Oslo"}},
         "thoughtSignature": "c2lnLWNhbGw="}]}


async def test_safety_stops(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(URL_CHAT, payload={
        "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
             "blocked": True}]}],
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": MODEL})
    reply = await client.chat(model=MODEL, messages=[{"role": "user", "content": "..."}])
    assert (reply.finish_reason, reply.text, reply.usage.input_tokens) == ("content_filter", "", 7)
    assert reply.refusal is not None and reply.refusal.category == "SAFETY"
    assert reply.extras["safetyRatings"][0]["category"] == "HARM_CATEGORY_DANGEROUS_CONTENT"

    mocked.post(URL_CHAT, payload={
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}, "modelVersion": MODEL})
    reply = await client.chat(model=MODEL, messages=[{"role": "user", "content": "..."}])
    assert (reply.finish_reason, reply.text) == ("content_filter", "")
    assert reply.refusal is not None and reply.refusal.category == "PROHIBITED_CONTENT"
    assert reply.extras["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    assert reply.usage.input_tokens == 5, "a blocked prompt is still billed"

    mocked.post(URL_STREAM, body=sse({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}),
        headers={"Content-Type": "text/event-stream"})
    stream = client.stream(model=MODEL, messages=[{"role": "user", "content": "..."}])
    async with stream as chunks:
        [final_chunk] = [c async for c in chunks]
    assert final_chunk.finish_reason == "content_filter"
    assert stream.final_response is not None
    assert stream.final_response.refusal is not None
    assert stream.final_response.refusal.category == "SAFETY"

    assert [finish_reason(r) for r in ("RECITATION", "BLOCKLIST", "SPII", "MAX_TOKENS",
                                       "OTHER", "MALFORMED_FUNCTION_CALL")] == [
        "content_filter", "content_filter", "content_filter", "length", "stop", "stop"]


async def test_stream(mocked: aioresponses, client: AsyncLLMClient) -> None:
    partial = {"promptTokenCount": 9, "totalTokenCount": 9}
    mocked.post(URL_STREAM, body=sse(
        {**answer([{"text": "thinking...", "thought": True}], usage=partial),
         "candidates": [{"content": {"role": "model", "parts": [
             {"text": "thinking...", "thought": True}]}, "index": 0}]},
        {**answer([{"text": "Hel"}], usage=partial),
         "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]},
        answer([{"text": "lo!"}], usage={"promptTokenCount": 9, "candidatesTokenCount": 2,
                                         "thoughtsTokenCount": 3, "totalTokenCount": 14}),
    ), headers={"Content-Type": "text/event-stream"})
    stream = client.stream(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    async with stream as chunks:
        received = [c async for c in chunks]
    assert [c.delta for c in received if c.delta] == ["Hel", "lo!"]
    assert [c.reasoning for c in received if c.reasoning] == ["thinking..."]
    assert received[-1].finish_reason == "stop"
    final = stream.final_response
    assert final is not None and final.text == "Hello!"
    assert final.reasoning == "thinking..."
    assert (final.usage.output_tokens, final.usage.reasoning_tokens) == (5, 3)
    assert sent(mocked, URL_STREAM)[0]["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


async def test_streamed_function_call(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(URL_STREAM, body=sse(answer([
        {"functionCall": {"id": "fc-1", "name": "get_weather", "args": {"location": "Rome"}}}])),
        headers={"Content-Type": "text/event-stream"})
    stream = client.stream(model=MODEL, tools=[WEATHER],
                           messages=[{"role": "user", "content": "Rome?"}])
    async with stream as chunks:
        received = [c async for c in chunks]
    [fragment] = [d for c in received for d in c.tool_calls]
    assert (fragment.id, fragment.name) == ("fc-1", "get_weather")
    final = stream.final_response
    assert final is not None and final.finish_reason == "tool_calls"
    assert final.tool_calls[0].parsed_arguments() == {"location": "Rome"}


async def test_error_bodies_are_typed(mocked: aioresponses, client: AsyncLLMClient) -> None:
    hi = [{"role": "user", "content": "hi"}]
    mocked.post(URL_CHAT, status=429, payload={"error": {
        "code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}})
    with pytest.raises(RateLimitError) as rate:
        await client.chat(model=MODEL, messages=hi)
    assert type(rate.value) is RateLimitError
    assert (rate.value.retry_after, rate.value.error_type, rate.value.retryable) == (
        37.0, "RESOURCE_EXHAUSTED", True)

    mocked.post(URL_CHAT, status=429, payload={"error": {
        "code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}})
    with pytest.raises(QuotaExceededError) as quota:
        await client.chat(model=MODEL, messages=hi)
    assert quota.value.retryable is False

    mocked.post(URL_CHAT, status=400, payload={"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com"}]}})
    with pytest.raises(AuthenticationError) as auth:
        await client.chat(model=MODEL, messages=hi)
    assert (auth.value.status, auth.value.code) == (400, "API_KEY_INVALID")
    assert KEY not in str(auth.value)

    mocked.post(URL_CHAT, status=400, payload={"error": {
        "code": 400, "message": "* GenerateContentRequest.contents: contents is not specified",
        "status": "INVALID_ARGUMENT"}})
    with pytest.raises(BadRequestError) as bad:
        await client.chat(model=MODEL, messages=hi)
    assert bad.value.error_type == "INVALID_ARGUMENT"

    mocked.post(URL_CHAT, status=503, payload={"error": {
        "code": 503, "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE"}})
    with pytest.raises(OverloadedError):
        await client.chat(model=MODEL, messages=hi)


async def test_error_event_mid_stream(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(URL_STREAM, body=sse(
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]},
        {"error": {"code": 500, "message": "An internal error has occurred.",
                   "status": "INTERNAL"}}), headers={"Content-Type": "text/event-stream"})
    with pytest.raises(StreamError) as caught:
        async with client.stream(model=MODEL, messages=[{"role": "user", "content": "x"}]) as s:
            async for _ in s:
                pass
    assert caught.value.cause is not None and caught.value.cause.status == 500


async def test_key_from_the_environment(mocked: aioresponses,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaGoogleKey000000")
    assert GeminiTransport().auth_headers() == {"x-goog-api-key": "AIzaGoogleKey000000"}
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaGeminiKey000000")
    mocked.post(URL_CHAT, payload=answer([{"text": "ok"}]))
    async with GeminiTransport() as transport:
        await transport.chat(build_request(model=f"models/{MODEL}",
                                           messages=[{"role": "user", "content": "x"}]),
                             CallContext())
    assert sent(mocked)[1]["x-goog-api-key"] == "AIzaGeminiKey000000"


def test_usage_mapping() -> None:
    assert gemini_usage(None) is None
    usage = gemini_usage({"promptTokenCount": 100, "cachedContentTokenCount": 60,
                          "candidatesTokenCount": 20, "thoughtsTokenCount": 5,
                          "toolUsePromptTokenCount": 4, "totalTokenCount": 129})
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
            usage.reasoning_tokens, usage.total_tokens) == (104, 25, 60, 5, 129)
