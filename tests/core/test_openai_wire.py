"""Exact wire format of the OpenAI transport, checked with aioresponses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aioresponses import aioresponses
from pydantic import BaseModel
from yarl import URL

from llm_async import AsyncLLMClient, RateLimitError
from llm_async.errors import ContextLengthExceededError, ProtocolError, QuotaExceededError
from llm_async.infrastructure.transports.openai_transport import OpenAITransport

BASE = "https://api.example.test/v1"
URL_ = f"{BASE}/chat/completions"
OK = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hi!", "refusal": None}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
              "prompt_tokens_details": {"cached_tokens": 8},
              "completion_tokens_details": {"reasoning_tokens": 2}},
}


def _sent(mocked: aioresponses) -> tuple[dict[str, Any], dict[str, str]]:
    call = mocked.requests[("POST", URL(URL_))][-1]
    return json.loads(call.kwargs["data"]), dict(call.kwargs["headers"])


@pytest.fixture
async def client() -> Any:
    async with AsyncLLMClient(provider="openai", api_key="sk-wire-test-000", base_url=BASE,
                              layers=[], headers={"X-Team": "core"}) as c:
        yield c


async def test_request_body_and_headers(client: AsyncLLMClient) -> None:
    class Answer(BaseModel):
        value: int

    with aioresponses() as mocked:
        structured = {**OK, "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": '{"value": 1}'}}]}
        mocked.post(URL_, payload=structured, headers={"x-request-id": "req_abc"})
        reply = await client.chat(
            model="gpt-4o", temperature=0.2, top_p=0.9, max_tokens=64, stop="END", seed=7,
            messages=[
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.png",
                                                        "detail": "low"}}]},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "function": {"name": "look", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            ],
            tools=[{"type": "function", "function": {"name": "look", "parameters": {
                "type": "object", "properties": {}}}}],
            tool_choice="auto", response_format=Answer,
            extra_body={"service_tier": "flex"}, extra_headers={"X-Trace": "t1"},
            user_id="u-1",
        )
        body, headers = _sent(mocked)
    assert body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.png",
                                                    "detail": "low"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "look", "arguments": "{}"}}]},
            {"role": "tool", "content": "a cat", "tool_call_id": "call_1"},
        ],
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "stop": ["END"], "seed": 7,
        "tools": [{"type": "function", "function": {"name": "look", "parameters": {
            "type": "object", "properties": {}}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "Answer", "schema": Answer.model_json_schema()}},
        "service_tier": "flex",
    }
    assert headers["Authorization"] == "Bearer sk-wire-test-000"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Team"] == "core" and headers["X-Trace"] == "t1"
    assert reply.parsed == Answer(value=1) and reply.request_id == "req_abc"
    assert reply.model == "gpt-4o-2024-08-06" and reply.requested_model == "gpt-4o"
    assert reply.usage.input_tokens == 20 and reply.usage.cache_read_tokens == 8
    assert reply.usage.uncached_input_tokens == 12 and reply.usage.reasoning_tokens == 2


async def test_reasoning_models_get_max_completion_tokens(client: AsyncLLMClient) -> None:
    with aioresponses() as mocked:
        mocked.post(URL_, payload=OK)
        await client.chat(model="o3-mini", max_tokens=10,
                          messages=[{"role": "user", "content": "x"}])
        body, _ = _sent(mocked)
    assert body["max_completion_tokens"] == 10 and "max_tokens" not in body


async def test_stream_body_asks_for_usage(client: AsyncLLMClient) -> None:
    sse = (b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
           b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
           b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
           b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
           b"data: [DONE]\n\n")
    with aioresponses() as mocked:
        mocked.post(URL_, body=sse, headers={"Content-Type": "text/event-stream"})
        stream = client.stream(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        chunks = [c async for c in stream]
        body, _ = _sent(mocked)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert [c.delta for c in chunks] == ["Hi", "", ""]
    assert stream.final_response is not None
    assert stream.final_response.usage.output_tokens == 1


async def test_vllm_style_null_choices_usage_chunk(client: AsyncLLMClient) -> None:
    sse = (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"A"}}]}\n\n'
           b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
           b'data: {"id":"c","choices":null,"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
           b"data: [DONE]\n\n")
    with aioresponses() as mocked:
        mocked.post(URL_, body=sse)
        stream = client.stream(model="m", messages=[{"role": "user", "content": "x"}])
        final = await stream.get_final_response()
    assert final.text == "A" and final.finish_reason == "length"
    assert final.usage.input_tokens == 3


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                         "param": None, "code": "insufficient_quota"}}, QuotaExceededError),
        (429, {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                         "code": "rate_limit_exceeded"}}, RateLimitError),
        (400, {"error": {"message": "This model's maximum context length is 8192 tokens",
                         "type": "invalid_request_error", "param": "messages",
                         "code": "context_length_exceeded"}}, ContextLengthExceededError),
    ],
)
async def test_error_bodies(client: AsyncLLMClient, status: int, body: dict[str, Any],
                            cls: type) -> None:
    with aioresponses() as mocked:
        mocked.post(URL_, status=status, payload=body, headers={"x-request-id": "req_e"})
        with pytest.raises(cls) as info:
            await client.chat(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.request_id == "req_e"
    assert info.value.code == body["error"]["code"]


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"choices": []}',
                                     b'{"choices": [{"message": {"content": 5}}]}'])
async def test_malformed_success_bodies(client: AsyncLLMClient, payload: bytes) -> None:
    with aioresponses() as mocked:
        mocked.post(URL_, body=payload)
        with pytest.raises(ProtocolError):
            await client.chat(model="m", messages=[{"role": "user", "content": "x"}])


def test_base_url_is_validated() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAITransport("sk-x", "ftp://nope")
