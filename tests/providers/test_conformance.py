"""One test body, every provider: OpenAI, Anthropic, OpenRouter, Azure OpenAI, Gemini and Bedrock
over real HTTP to the embedded server (each in its own wire dialect), and the in-process mock
transport.

Whatever provider answered, the layers above the transport must see the same normalised
response, chunks, usage and errors. A provider that cannot do something is skipped in the test
that needs it, with the reason (``harness.skip_for``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from llm_async import ChatChunk
from llm_async.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InsufficientCreditsError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamError,
    StructuredOutputError,
    UnprocessableEntityError,
)


class City(BaseModel):
    name: str
    population: int


class HugeCity(BaseModel):
    name: str
    population: int = Field(gt=10**9)


CITY_JSON = '{"name": "Paris", "population": 2100000}'


async def collect(stream: Any) -> list[ChatChunk]:
    async with stream as s:
        return [chunk async for chunk in s]


# -- answers ----------------------------------------------------------------------------------


async def test_plain_text(harness: Any) -> None:
    reply = await harness.client.chat(model=harness.model,
                                      messages=harness.echo("hello from the suite"))
    assert reply.text == "hello from the suite"
    assert reply.finish_reason == "stop"
    assert reply.provider == harness.name
    assert reply.tool_calls == []
    assert reply.id
    assert reply.requested_model == harness.model
    # "echo: hello from the suite" is 5 words + 3 per message; the reply is 4 words.
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (8, 4)


async def test_multi_turn(harness: Any) -> None:
    harness.echo("second")
    messages = [
        {"role": "user", "content": "echo: first question"},
        {"role": "assistant", "content": "first answer here"},
        {"role": "user", "content": "echo: second"},
    ]
    reply = await harness.client.chat(model=harness.model, messages=messages)
    assert reply.text == "second"
    # Every turn arrived: (3 + 3) + (3 + 3) + (2 + 3) prompt tokens.
    assert reply.usage.input_tokens == 17


async def test_system_prompt(harness: Any) -> None:
    messages = harness.echo("ok then", system="You are terse and kind.")
    reply = await harness.client.chat(model=harness.model, messages=messages)
    assert reply.text == "ok then"
    # The system prompt counts as a turn whether it travels as a message or top-level.
    assert reply.usage.input_tokens == (5 + 3) + (3 + 3)


async def test_max_tokens_cuts_the_reply(harness: Any) -> None:
    reply = await harness.client.chat(model=harness.model, max_tokens=3,
                                      messages=harness.echo("one two three four five"))
    assert reply.text == "one two three"
    assert reply.finish_reason == "length"
    assert reply.usage.output_tokens == 3


async def test_stream(harness: Any) -> None:
    stream = harness.client.stream(model=harness.model,
                                   messages=harness.echo("streams arrive word by word"))
    chunks = await collect(stream)
    assert "".join(c.delta for c in chunks) == "streams arrive word by word"
    assert sum(1 for c in chunks if c.delta) == 5
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    final = stream.final_response
    assert final is not None
    assert final.text == "streams arrive word by word"
    assert final.finish_reason == "stop"
    assert final.provider == harness.name
    assert final.time_to_first_chunk is not None
    # Transports yield only chunks that carry something.
    assert all(c.delta or c.tool_calls or c.finish_reason or c.usage for c in chunks)


# -- tools ------------------------------------------------------------------------------------


async def test_tool_call(harness: Any) -> None:
    harness.expect_tool_call()
    reply = await harness.client.chat(
        model=harness.model, tools=[harness.weather_tool],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert reply.finish_reason == "tool_calls"
    assert reply.text == ""
    [call] = reply.tool_calls
    assert call.name == "get_weather"
    assert call.id
    arguments = call.parsed_arguments()
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)

    # The tool's result goes back and the model answers in text.
    messages = [
        *harness.echo("it is sunny"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"},
    ]
    answer = await harness.client.chat(model=harness.model, tools=[harness.weather_tool],
                                       messages=messages)
    assert answer.text == "it is sunny"
    assert answer.finish_reason == "stop"
    assert answer.tool_calls == []


async def test_tool_call_streamed_deltas(harness: Any) -> None:
    harness.expect_tool_call()
    stream = harness.client.stream(
        model=harness.model, tools=[harness.weather_tool],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    chunks = await collect(stream)
    fragments = [d for c in chunks for d in c.tool_calls]
    assert fragments, "no tool-call deltas were streamed"
    assert fragments[0].id and fragments[0].name == "get_weather"
    assert all(f.index == 0 for f in fragments)
    assert all(f.id is None and f.name is None for f in fragments[1:])
    if harness.is_http and harness.streams_tool_arguments:
        assert len(fragments) >= 2, "arguments should arrive in pieces"
    final = stream.final_response
    assert final is not None and final.finish_reason == "tool_calls"
    [call] = final.tool_calls
    assert call.id == fragments[0].id
    assert call.function.arguments == "".join(f.arguments for f in fragments)
    assert isinstance(call.parsed_arguments()["city"], str)


# -- structured output ------------------------------------------------------------------------


async def test_structured_output_model(harness: Any) -> None:
    reply = await harness.client.chat(model=harness.model, response_format=City,
                                      messages=harness.echo(CITY_JSON))
    assert isinstance(reply.parsed, City)
    assert reply.parsed.model_dump() == json.loads(reply.text)
    assert reply.finish_reason == "stop"
    assert reply.tool_calls == []

    stream = harness.client.stream(model=harness.model, response_format=City,
                                   messages=harness.echo(CITY_JSON))
    chunks = await collect(stream)
    assert stream.final_response is not None
    assert stream.final_response.parsed == reply.parsed
    assert "".join(c.delta for c in chunks) == stream.final_response.text


async def test_structured_output_json_schema(harness: Any) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "population": {"type": "integer"}},
              "required": ["name", "population"], "additionalProperties": False}
    reply = await harness.client.chat(
        model=harness.model, messages=harness.echo(CITY_JSON),
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    assert isinstance(reply.parsed, dict)
    assert set(reply.parsed) == {"name", "population"}
    assert isinstance(reply.parsed["population"], int)


async def test_structured_output_that_does_not_validate(harness: Any) -> None:
    # The echoing backends send population 2100000; Anthropic's forced tool gets 42 from the
    # server's schema-driven generator. Neither is over a billion.
    with pytest.raises(StructuredOutputError) as caught:
        await harness.client.chat(model=harness.model, response_format=HugeCity,
                                  messages=harness.echo(CITY_JSON))
    err = caught.value
    assert err.provider == harness.name
    assert "population" in err.message
    assert json.loads(err.raw_text)["population"] < 10**9

    with pytest.raises(StructuredOutputError) as caught_stream:
        await collect(harness.client.stream(model=harness.model, response_format=HugeCity,
                                            messages=harness.echo(CITY_JSON)))
    assert json.loads(caught_stream.value.raw_text) == json.loads(err.raw_text)


# -- usage ------------------------------------------------------------------------------------


async def test_usage_non_stream_and_stream(harness: Any) -> None:
    messages = [
        {"role": "user", "content": "echo: first question"},
        {"role": "assistant", "content": "first answer here"},
        {"role": "user", "content": "echo: the same words"},
    ]
    harness.echo("the same words")
    reply = await harness.client.chat(model=harness.model, messages=messages)
    harness.echo("the same words")
    stream = harness.client.stream(model=harness.model, messages=messages)
    chunks = await collect(stream)

    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1], "usage comes on the final chunk"
    final = stream.final_response
    assert final is not None
    # (3 + 3) + (3 + 3) + (4 + 3) prompt tokens, 3 reply words.
    assert final.usage.input_tokens == reply.usage.input_tokens == 19
    assert final.usage.output_tokens == reply.usage.output_tokens == 3
    assert final.usage.total_tokens == 22
    if harness.is_http:
        # The second call repeats the first two turns: the server reports them as cached.
        assert reply.usage.cache_read_tokens == 0
        assert final.usage.cache_read_tokens == (3 + 3) + (3 + 3)
        assert final.usage.uncached_input_tokens == 19 - 12


# -- errors -----------------------------------------------------------------------------------

STATUS_ERRORS = [
    (400, BadRequestError, False),
    (401, AuthenticationError, False),
    (402, InsufficientCreditsError, False),
    (403, PermissionDeniedError, False),
    (404, NotFoundError, False),
    (408, RequestTimeoutError, True),
    (409, ConflictError, True),
    (422, UnprocessableEntityError, False),
    (429, RateLimitError, True),
    (500, ServerError, True),
    (502, ServerError, True),
    (503, OverloadedError, True),
    (504, ServerError, True),
    (529, OverloadedError, True),
]


@pytest.mark.parametrize(("status", "cls", "retryable"), STATUS_ERRORS,
                         ids=[str(s) for s, _, _ in STATUS_ERRORS])
async def test_error_status(harness: Any, status: int, cls: type[APIStatusError],
                            retryable: bool) -> None:
    harness.skip_for("mock", reason="an in-process transport has no HTTP status; its errors are "
                                    "scripted objects (covered by the mid-stream tests)")
    harness.fail(status, stream=False)
    with pytest.raises(APIStatusError) as caught:
        await harness.client.chat(model=harness.model, messages=harness.echo("hi"))
    err = caught.value
    assert type(err) is cls
    assert (err.status, err.provider, err.retryable) == (status, harness.name, retryable)
    assert err.request_id and err.request_id.startswith("req_")

    # Before the first chunk a stream raises the same typed error, not StreamError.
    harness.fail(status, stream=True)
    with pytest.raises(APIStatusError) as caught_stream:
        await collect(harness.client.stream(model=harness.model, messages=harness.echo("hi")))
    assert type(caught_stream.value) is cls


async def test_rate_limit_carries_retry_after(harness: Any) -> None:
    harness.skip_for("mock", reason="no HTTP headers in-process")
    harness.fail(429, retry_after=7)
    with pytest.raises(RateLimitError) as caught:
        await harness.client.chat(model=harness.model, messages=harness.echo("hi"))
    assert caught.value.retry_after == 7.0


async def test_error_mid_stream(harness: Any) -> None:
    harness.fail_mid_stream(after=2)
    received: list[ChatChunk] = []
    with pytest.raises(StreamError) as caught:
        async with harness.client.stream(model=harness.model,
                                         messages=harness.echo("one two three four five")) as s:
            async for chunk in s:
                received.append(chunk)
    err = caught.value
    assert [c.delta for c in received] == ["one", " two"]
    assert err.chunks_received == 2
    assert err.retryable is False, "a stream that has started is never retried"
    assert isinstance(err.cause, APIStatusError)
    assert err.provider == harness.name


async def test_error_in_stream_before_first_chunk(harness: Any) -> None:
    harness.fail_mid_stream(after=0)
    with pytest.raises(APIStatusError) as caught:
        await collect(harness.client.stream(model=harness.model,
                                            messages=harness.echo("one two three")))
    assert not isinstance(caught.value, StreamError)
    assert caught.value.retryable is True
    assert caught.value.provider == harness.name


async def test_stream_cut_short(harness: Any) -> None:
    harness.cut_stream(after=2)
    with pytest.raises(StreamError) as caught:
        await collect(harness.client.stream(model=harness.model,
                                            messages=harness.echo("one two three four five")))
    assert caught.value.chunks_received == 2
    assert isinstance(caught.value.cause, APIConnectionError)
    if harness.is_http:
        assert harness.connections_in_use() == 0


async def test_cancellation_mid_stream_releases_the_connection(harness: Any) -> None:
    harness.slow_stream(token_delay=0.005)
    stream = harness.client.stream(model=harness.model,
                                   messages=harness.echo("one two three four five six seven"))
    first = asyncio.Event()
    received: list[ChatChunk] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 <= len(received) < 7
    assert [c async for c in stream] == [], "a cancelled stream is closed"
    assert stream.final_response is None
    if harness.is_http:
        assert harness.connections_in_use() == 0
    # The client is still usable afterwards.
    reply = await harness.client.chat(model=harness.model, messages=harness.echo("still here"))
    assert reply.text == "still here"
    if harness.is_http:
        assert harness.connections_in_use() == 0
        assert harness.idle_connections() == 1, "the finished call's connection is kept alive"


# -- bad input --------------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("no-messages", {"messages": []}, "messages"),
    ("bad-role", {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ("tool-without-id", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
    ("temperature", {"temperature": 5}, "temperature"),
    ("max-tokens", {"max_tokens": 0}, "max_tokens"),
    ("empty-tool-name", {"tools": [{"type": "function", "function": {"name": ""}}]},
     "tools[0].function.name"),
    ("response-format", {"response_format": {"type": "xml"}}, "response_format"),
]


@pytest.mark.parametrize(("kwargs", "field"), [(k, f) for _, k, f in BAD_INPUTS],
                         ids=[name for name, _, _ in BAD_INPUTS])
async def test_bad_input_rejected_before_sending(harness: Any, kwargs: dict[str, Any],
                                                 field: str) -> None:
    params: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], **kwargs}
    before = harness.request_count
    with pytest.raises(InvalidRequestError) as caught:
        await harness.client.chat(model=harness.model, **params)
    assert caught.value.field is not None and caught.value.field.startswith(field)
    with pytest.raises(InvalidRequestError):
        harness.client.stream(model=harness.model, **params)
    assert harness.request_count == before


async def test_a_misspelled_keyword_is_a_type_error_before_sending(harness: Any) -> None:
    before = harness.request_count
    params: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}],
                              "temprature": 0.5}
    with pytest.raises(TypeError, match="did you mean 'temperature'"):
        await harness.client.chat(model=harness.model, **params)
    with pytest.raises(TypeError, match="did you mean 'temperature'"):
        harness.client.stream(model=harness.model, **params)
    assert harness.request_count == before
