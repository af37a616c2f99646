"""Anthropic Messages API wire format, checked with aioresponses against the shapes of
Anthropic's documented examples: the exact JSON we send, and how we read what comes back."""

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
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    StreamError,
)
from llm_async.infrastructure.transports.anthropic_transport import (
    AnthropicTransport,
    anthropic_usage,
    stop_reason,
)
from llm_async.types import build_request

API = "https://api.anthropic.com/v1/messages"
KEY = "sk-ant-api03-wire-test-key"
MODEL = "claude-3-5-sonnet-20241022"

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string",
                                "description": "The city and state, e.g. San Francisco, CA"}},
    "required": ["location"],
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather",
                 "description": "Get the current weather in a given location",
                 "parameters": WEATHER_SCHEMA},
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": WEATHER_SCHEMA,
}

HELLO_REPLY = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "Hello!"}],
    "model": MODEL,
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 6},
}


def sse(*events: tuple[str, Any]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncLLMClient]:
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    transport = AnthropicTransport(KEY)
    async with AsyncLLMClient("anthropic", transport=transport, layers=[]) as c:
        yield c


def sent(m: aioresponses, index: int = -1, url: str = API) -> tuple[dict[str, Any], dict[str, str]]:
    call = m.requests[("POST", URL(url))][index]
    return json.loads(call.kwargs["data"]), call.kwargs["headers"]


# -- requests ---------------------------------------------------------------------------------


async def test_basic_request_and_response(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload=HELLO_REPLY, headers={"request-id": "req_018EeWyXxfu5pfWkrYcMdjWG"})
    reply = await client.chat(model=MODEL, max_tokens=1024,
                              messages=[{"role": "user", "content": "Hello, world"}])
    body, headers = sent(mocked)
    assert body == {"model": MODEL, "max_tokens": 1024,
                    "messages": [{"role": "user", "content": "Hello, world"}]}
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in headers
    assert (reply.text, reply.finish_reason, reply.id) == ("Hello!", "stop", HELLO_REPLY["id"])
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 6)
    assert reply.request_id == "req_018EeWyXxfu5pfWkrYcMdjWG"
    assert reply.provider == "anthropic"


async def test_max_tokens_default_is_always_sent(mocked: aioresponses) -> None:
    mocked.post(API, payload=HELLO_REPLY)
    mocked.post(API, payload=HELLO_REPLY)
    async with AnthropicTransport(KEY, "https://api.anthropic.com") as t:
        await t.chat(build_request(model=MODEL, messages=[{"role": "user", "content": "Hi"}]),
                     CallContext())
    async with AnthropicTransport(KEY, "https://api.anthropic.com/v1/",
                                  default_max_tokens=256) as t:
        await t.chat(build_request(model=MODEL, messages=[{"role": "user", "content": "Hi"}]),
                     CallContext())
    assert sent(mocked, 0)[0]["max_tokens"] == 4096
    assert sent(mocked, 1)[0]["max_tokens"] == 256  # and a base URL ending in /v1 works too
    with pytest.raises(ValueError):
        AnthropicTransport(KEY, default_max_tokens=0)


async def test_system_goes_top_level_and_same_roles_merge(mocked: aioresponses,
                                                          client: AsyncLLMClient) -> None:
    mocked.post(API, payload=HELLO_REPLY)
    await client.chat(model=MODEL, messages=[
        {"role": "system", "content": "You are a seasoned data scientist."},
        {"role": "developer", "content": "Answer in one sentence."},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Are you there?"}]},
        {"role": "assistant", "content": "Yes."},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "Summarise this."},
    ])
    body, _ = sent(mocked)
    assert body["system"] == "You are a seasoned data scientist.\n\nAnswer in one sentence."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                     {"type": "text", "text": "Are you there?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."},
                                          {"type": "text", "text": "How can I help?"}]},
        {"role": "user", "content": "Summarise this."},
    ]


async def test_sampling_options_pass_through(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload=HELLO_REPLY)
    await client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=50,
                      temperature=0.7, top_p=0.9, stop=["\n\nHuman:", "END"], seed=7,
                      presence_penalty=0.5, user_id="user-42", project_id="p1",
                      extra_body={"top_k": 5}, extra_headers={"anthropic-beta": "x-1"})
    body, headers = sent(mocked)
    assert body == {
        "model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.7, "top_p": 0.9, "stop_sequences": ["\n\nHuman:", "END"],
        "metadata": {"user_id": "user-42"}, "top_k": 5,
    }  # seed and penalties have no Anthropic equivalent and are not sent
    assert headers["anthropic-beta"] == "x-1"


async def test_tool_use_round_trip(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload={
        "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": MODEL,
        "stop_reason": "tool_use", "stop_sequence": None,
        "content": [
            {"type": "text", "text": "<thinking>I need the get_weather tool.</thinking>"},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "San Francisco, CA", "unit": "celsius"}},
        ],
        "usage": {"input_tokens": 384, "output_tokens": 79},
    })
    question = {"role": "user", "content": "What's the weather like in San Francisco?"}
    reply = await client.chat(model=MODEL, max_tokens=1024, tools=[WEATHER],
                              messages=[question])
    body, _ = sent(mocked)
    assert body == {"model": MODEL, "max_tokens": 1024, "messages": [question],
                    "tools": [WEATHER_ANTHROPIC]}
    assert reply.finish_reason == "tool_calls"
    assert reply.text == "<thinking>I need the get_weather tool.</thinking>"
    [call] = reply.tool_calls
    assert (call.id, call.name) == ("toolu_01A09q90qw90lq917835lq9", "get_weather")
    assert call.parsed_arguments() == {"location": "San Francisco, CA", "unit": "celsius"}

    mocked.post(API, payload=HELLO_REPLY)
    await client.chat(model=MODEL, max_tokens=1024, tools=[WEATHER], messages=[
        question,
        {"role": "assistant", "content": reply.content,
         "tool_calls": [c.model_dump() for c in reply.tool_calls]},
        {"role": "tool", "tool_call_id": call.id, "content": "15 degrees"},
    ])
    body, _ = sent(mocked)
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "<thinking>I need the get_weather tool.</thinking>"},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"location": "San Francisco, CA", "unit": "celsius"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
             "content": "15 degrees"},
        ]},
    ]


async def test_parallel_tool_results_and_a_question_share_one_user_turn(
        mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload=HELLO_REPLY)
    calls = [
        {"id": "toolu_a", "function": {"name": "get_weather", "arguments": '{"location":"A"}'}},
        {"id": "toolu_b", "function": {"name": "get_weather", "arguments": ""}},
    ]
    await client.chat(model=MODEL, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in A and B?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "Which is warmer?"},
    ])
    body, _ = sent(mocked)
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather",
             "input": {"location": "A"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_b",
             "content": [{"type": "text", "text": "rain"}]},
            {"type": "text", "text": "Which is warmer?"},
        ]},
    ]


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
    ({"type": "any", "disable_parallel_tool_use": True},
     {"type": "any", "disable_parallel_tool_use": True}),
])
async def test_tool_choice(mocked: aioresponses, client: AsyncLLMClient, choice: Any,
                           expected: dict[str, Any]) -> None:
    mocked.post(API, payload=HELLO_REPLY)
    await client.chat(model=MODEL, tools=[WEATHER], tool_choice=choice,
                      messages=[{"role": "user", "content": "Weather?"}])
    assert sent(mocked)[0]["tool_choice"] == expected


async def test_images(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, payload=HELLO_REPLY)
    await client.chat(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "Describe these images."},
    ]}])
    body, _ = sent(mocked)
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                     "data": "/9j/4AAQSkZJRg=="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "text", "text": "Describe these images."},
    ]}]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"temperature": 1.5}, "temperature"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "  "}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "t1", "function": {"name": "f", "arguments": "[1, 2]"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
     "tool_choice"),
])
async def test_input_anthropic_cannot_take_is_rejected_before_sending(
        mocked: aioresponses, client: AsyncLLMClient, kwargs: dict[str, Any], field: str) -> None:
    params: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(InvalidRequestError) as caught:
        await client.chat(model=MODEL, **params)
    assert caught.value.field == field
    assert caught.value.provider == "anthropic"
    assert not mocked.requests


# -- responses --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "ours"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("something_new", "stop"),
    (None, None),
])
def test_stop_reasons(raw: str | None, ours: str | None) -> None:
    assert stop_reason(raw) == ours


def test_usage_counts_cached_tokens_as_input() -> None:
    usage = anthropic_usage({"input_tokens": 21, "cache_creation_input_tokens": 188086,
                             "cache_read_input_tokens": 0, "output_tokens": 393})
    assert usage is not None
    assert usage.input_tokens == 21 + 188086
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (188086, 0)
    assert usage.uncached_input_tokens == 21
    assert anthropic_usage(None) is None


async def test_529_is_overloaded_and_retryable(mocked: aioresponses,
                                               client: AsyncLLMClient) -> None:
    mocked.post(API, status=529, headers={"request-id": "req_overloaded"}, payload={
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(OverloadedError) as caught:
        await client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    err = caught.value
    assert (err.status, err.retryable, err.error_type) == (529, True, "overloaded_error")
    assert (err.request_id, err.provider, err.message) == ("req_overloaded", "anthropic",
                                                           "Overloaded")


async def test_error_bodies(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, status=401, payload={"type": "error", "error": {
        "type": "authentication_error", "message": "invalid x-api-key"}})
    mocked.post(API, status=429, headers={"retry-after": "12"}, payload={"type": "error", "error": {
        "type": "rate_limit_error", "message": "Number of request tokens has exceeded your "
                                              "per-minute rate limit"}})
    with pytest.raises(AuthenticationError):
        await client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(RateLimitError) as caught:
        await client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.retry_after == 12.0


# -- streams ----------------------------------------------------------------------------------

TEXT_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant",
        "content": [], "model": MODEL, "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_read_input_tokens": 10,
                  "cache_creation_input_tokens": 5, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello"}}),
    ("some_future_event", {"type": "some_future_event", "detail": 1}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "!"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 15}}),
    ("message_stop", {"type": "message_stop"}),
)


async def test_text_stream(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, body=TEXT_STREAM, headers={"Content-Type": "text/event-stream"})
    stream = client.stream(model=MODEL, messages=[{"role": "user", "content": "Hello"}])
    async with stream:
        chunks = [c async for c in stream]
    assert sent(mocked)[0]["stream"] is True
    assert [c.delta for c in chunks] == ["Hello", "!", ""]
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (40, 15)
    assert (last.usage.cache_read_tokens, last.usage.cache_write_tokens) == (10, 5)
    assert stream.final_response is not None
    assert stream.final_response.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert stream.final_response.text == "Hello!"


TOOL_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-3-haiku-20240307", "stop_sequence": None, "content": [],
        "stop_reason": None, "usage": {"input_tokens": 472, "output_tokens": 2}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Checking the weather."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
        "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta",
                                       "partial_json": "{\"location\": \"San Fra"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta",
                                       "partial_json": "ncisco, CA\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 89}}),
    ("message_stop", {"type": "message_stop"}),
)


async def test_tool_use_stream(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(API, body=TOOL_STREAM, headers={"Content-Type": "text/event-stream"})
    stream = client.stream(model=MODEL, tools=[WEATHER],
                           messages=[{"role": "user", "content": "Weather in SF?"}])
    async with stream:
        chunks = [c async for c in stream]
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""),
        (0, None, None, '{"location": "San Fra'),
        (0, None, None, 'ncisco, CA"}'),
    ]
    final = stream.final_response
    assert final is not None
    assert final.finish_reason == "tool_calls"
    assert final.text == "Checking the weather."
    assert final.tool_calls[0].parsed_arguments() == {"location": "San Francisco, CA"}
    assert final.usage.output_tokens == 89


async def test_error_event_before_first_chunk_is_overloaded(mocked: aioresponses,
                                                            client: AsyncLLMClient) -> None:
    mocked.post(API, body=sse(
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}}),
        ("error", {"type": "error", "error": {"type": "overloaded_error",
                                              "message": "Overloaded"}}),
    ), headers={"Content-Type": "text/event-stream", "request-id": "req_stream"})
    with pytest.raises(OverloadedError) as caught:
        async with client.stream(model=MODEL, messages=[{"role": "user", "content": "Hi"}]) as s:
            async for _ in s:
                pass
    assert caught.value.retryable is True
    assert caught.value.status == 529
    assert caught.value.request_id == "req_stream"


async def test_error_event_after_first_chunk_is_a_stream_error(mocked: aioresponses,
                                                               client: AsyncLLMClient) -> None:
    mocked.post(API, body=sse(
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
        ("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}}),
    ), headers={"Content-Type": "text/event-stream"})
    got: list[str] = []
    with pytest.raises(StreamError) as caught:
        async with client.stream(model=MODEL, messages=[{"role": "user", "content": "Hi"}]) as s:
            async for chunk in s:
                got.append(chunk.delta)
    assert got == ["Hel"]
    assert caught.value.status == 500
    assert caught.value.retryable is False


# -- structured output through a forced tool ---------------------------------------------------


class Weather(BaseModel):
    """Today's weather."""

    city: str
    celsius: float


async def test_structured_output_is_a_forced_tool(mocked: aioresponses,
                                                  client: AsyncLLMClient) -> None:
    mocked.post(API, payload={
        "id": "msg_s", "type": "message", "role": "assistant", "model": MODEL,
        "stop_reason": "tool_use", "stop_sequence": None,
        "content": [{"type": "tool_use", "id": "toolu_s", "name": "Weather",
                     "input": {"city": "Oslo", "celsius": -3.5}}],
        "usage": {"input_tokens": 30, "output_tokens": 12},
    })
    reply = await client.chat(model=MODEL, response_format=Weather,
                              messages=[{"role": "user", "content": "Weather in Oslo?"}])
    body, _ = sent(mocked)
    assert body["tools"] == [{"name": "Weather", "description": "Today's weather.",
                              "input_schema": Weather.model_json_schema()}]
    assert body["tool_choice"] == {"type": "tool", "name": "Weather"}
    assert reply.parsed == Weather(city="Oslo", celsius=-3.5)
    assert reply.tool_calls == [] and reply.finish_reason == "stop"
    assert json.loads(reply.text) == {"city": "Oslo", "celsius": -3.5}


async def test_structured_output_with_a_non_object_schema_is_wrapped(
        mocked: aioresponses, client: AsyncLLMClient) -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    fmt = {"type": "json_schema", "json_schema": {"name": "tags", "schema": schema}}
    wrapped_input = {"value": ["a", "b"]}
    mocked.post(API, payload={
        "id": "msg_w", "type": "message", "role": "assistant", "model": MODEL,
        "stop_reason": "tool_use", "stop_sequence": None,
        "content": [{"type": "tool_use", "id": "toolu_w", "name": "tags", "input": wrapped_input}],
        "usage": {"input_tokens": 3, "output_tokens": 3},
    })
    mocked.post(API, headers={"Content-Type": "text/event-stream"}, body=sse(
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_w", "name": "tags", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"value": ["a",'}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": ' "b"]}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 3}}),
        ("message_stop", {"type": "message_stop"}),
    ))
    messages = [{"role": "user", "content": "Tags?"}]
    reply = await client.chat(model=MODEL, response_format=fmt, messages=messages)
    body, _ = sent(mocked)
    assert body["tools"][0]["input_schema"] == {
        "type": "object", "properties": {"value": schema}, "required": ["value"]}
    assert reply.parsed == ["a", "b"]

    stream = client.stream(model=MODEL, response_format=fmt, messages=messages)
    async with stream:
        chunks = [c async for c in stream]
    texts = [c.delta for c in chunks if c.delta]
    assert len(texts) == 1, "a wrapped answer arrives whole, when its block ends"
    assert json.loads(texts[0]) == ["a", "b"]
    assert stream.final_response is not None
    assert stream.final_response.parsed == ["a", "b"]
    assert stream.final_response.finish_reason == "stop"


async def test_beta_header(mocked: aioresponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    mocked.post(API, payload=HELLO_REPLY)
    async with AnthropicTransport(KEY, beta=["prompt-caching-2024-07-31", "x"]) as t:
        await t.chat(build_request(model=MODEL, messages=[{"role": "user", "content": "Hi"}]),
                     CallContext())
    assert sent(mocked)[1]["anthropic-beta"] == "prompt-caching-2024-07-31,x"
