"""The OpenAI transport over real loopback HTTP to the embedded provider server."""

from __future__ import annotations

import asyncio
import time

import pytest

from llm_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncLLMClient,
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    StreamError,
    Timeout,
)
from llm_async.errors import NotFoundError, OverloadedError, ProtocolError, ResponseTooLargeError
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.testing import Fault, MockProviderServer

HANG = 120.0  # a guard against a hang, never a speed check

USER = [{"role": "user", "content": "Hello there"}]
WEATHER = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                   "days": {"type": "integer"}}},
}}]


def _acquired(client: AsyncLLMClient) -> int:
    connector = client.transports["openai"].connector  # type: ignore[attr-defined]
    assert connector is not None
    return len(connector._acquired)


async def test_chat_roundtrip(openai_client: AsyncLLMClient,
                              mock_server: MockProviderServer) -> None:
    reply = await openai_client.chat(model="gpt-4o-mini", messages=USER)
    again = await openai_client.chat(model="gpt-4o-mini", messages=USER)
    assert reply.text and reply.text == again.text            # deterministic
    assert len(reply.text.split()) == 12
    assert reply.finish_reason == "stop"
    assert reply.usage.output_tokens == 12 and reply.usage.input_tokens == 5
    assert reply.request_id and reply.request_id.startswith("req_")
    assert reply.provider == "openai" and reply.model == "gpt-4o-mini"
    assert reply.raw["object"] == "chat.completion"
    assert reply.latency > 0
    assert mock_server.request_count == 2
    sent = mock_server.requests[-1]
    assert sent.headers["authorization"] == "***"             # recorded redacted, but sent
    assert sent.body["messages"] == USER


async def test_echo_and_length(openai_client: AsyncLLMClient) -> None:
    reply = await openai_client.chat(model="m", messages=[
        {"role": "user", "content": "echo: one two three four"}], max_tokens=2)
    assert reply.text == "one two" and reply.finish_reason == "length"


async def test_stream_roundtrip(openai_client: AsyncLLMClient,
                                mock_server: MockProviderServer) -> None:
    unary = await openai_client.chat(model="gpt-4o-mini", messages=USER)
    stream = openai_client.stream(model="gpt-4o-mini", messages=USER)
    deltas = [chunk.delta async for chunk in stream]
    final = stream.final_response
    assert final is not None
    assert "".join(deltas) == unary.text == final.text
    assert len([d for d in deltas if d]) == 12                 # one chunk per word
    assert final.usage.output_tokens == 12                     # usage chunk arrived
    assert final.finish_reason == "stop"
    assert final.time_to_first_chunk is not None
    body = mock_server.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert _acquired(openai_client) == 0


async def test_tool_calls_unary_and_streamed(openai_client: AsyncLLMClient) -> None:
    unary = await openai_client.chat(model="m", messages=USER, tools=WEATHER)
    assert unary.finish_reason == "tool_calls" and unary.content is None
    call = unary.tool_calls[0]
    assert call.name == "get_weather"
    args = call.parsed_arguments()
    assert set(args) == {"city", "days"} and args["days"] == 42
    async with openai_client.stream(model="m", messages=USER, tools=WEATHER) as stream:
        streamed = await stream.get_final_response()
    assert streamed.tool_calls == unary.tool_calls
    assert streamed.finish_reason == "tool_calls"


async def test_multi_turn_with_tool_result(openai_client: AsyncLLMClient) -> None:
    first = await openai_client.chat(model="m", messages=USER, tools=WEATHER)
    call = first.tool_calls[0]
    reply = await openai_client.chat(model="m", tools=WEATHER, messages=[
        *USER,
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ])
    assert reply.finish_reason == "stop" and reply.text


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError),
     (429, RateLimitError), (500, ServerError), (503, OverloadedError)],
)
async def test_error_statuses(openai_client: AsyncLLMClient, mock_server: MockProviderServer,
                              status: int, cls: type) -> None:
    mock_server.add_fault(Fault(status=status, retry_after=7 if status == 429 else None))
    with pytest.raises(cls) as info:
        await openai_client.chat(model="m", messages=USER)
    assert info.value.status == status
    assert info.value.request_id
    if status == 429:
        assert info.value.retry_after == 7.0
    assert _acquired(openai_client) == 0


async def test_error_status_on_stream(openai_client: AsyncLLMClient,
                                      mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(status=429, retry_after_ms=1500))
    with pytest.raises(RateLimitError) as info:
        async for _ in openai_client.stream(model="m", messages=USER):
            pass
    assert info.value.retry_after == 1.5
    assert _acquired(openai_client) == 0


async def test_html_502_and_non_json_error_body(openai_client: AsyncLLMClient,
                                                mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(status=502, body="<html><h1>502 Bad Gateway</h1></html>"))
    with pytest.raises(ServerError, match="502 Bad Gateway"):
        await openai_client.chat(model="m", messages=USER)
    mock_server.add_fault(Fault(status=500, body="upstream exploded"))
    with pytest.raises(ServerError, match="upstream exploded"):
        await openai_client.chat(model="m", messages=USER)


async def test_stream_cut_midway_is_stream_error(openai_client: AsyncLLMClient,
                                                  mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(cut_after=3))
    got = []
    with pytest.raises(StreamError) as info:
        async for chunk in openai_client.stream(model="m", messages=USER):
            got.append(chunk)
    assert len(got) == 3 and info.value.chunks_received == 3
    assert isinstance(info.value.cause, APIConnectionError)
    assert not info.value.retryable
    await asyncio.sleep(0)
    assert _acquired(openai_client) == 0


async def test_stream_cut_before_content_is_connection_error(
        openai_client: AsyncLLMClient, mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(cut_after=0))
    with pytest.raises(APIConnectionError) as info:
        async for _ in openai_client.stream(model="m", messages=USER):
            pass
    assert not isinstance(info.value, StreamError) and info.value.retryable


async def test_malformed_chunk(openai_client: AsyncLLMClient,
                               mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(malformed_after=2))
    with pytest.raises(StreamError) as info:
        async for _ in openai_client.stream(model="m", messages=USER):
            pass
    assert isinstance(info.value.cause, ProtocolError)
    mock_server.add_fault(Fault(malformed_after=0))
    with pytest.raises(ProtocolError):
        async for _ in openai_client.stream(model="m", messages=USER):
            pass


async def test_in_stream_error_event(openai_client: AsyncLLMClient,
                                     mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(error_after=0))
    with pytest.raises(ServerError) as info:
        async for _ in openai_client.stream(model="m", messages=USER):
            pass
    assert info.value.retryable
    mock_server.add_fault(Fault(error_after=4))
    with pytest.raises(StreamError) as after:
        async for _ in openai_client.stream(model="m", messages=USER):
            pass
    assert isinstance(after.value.cause, ServerError)


async def test_connection_reset(openai_client: AsyncLLMClient,
                                mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(reset=True))
    with pytest.raises(APIConnectionError):
        await openai_client.chat(model="m", messages=USER)
    assert (await openai_client.chat(model="m", messages=USER)).text


async def test_unreachable_server() -> None:
    async with MockProviderServer() as server:
        url = server.base_url
    async with AsyncLLMClient(provider="openai", api_key="sk-x", base_url=url,
                              layers=[]) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.chat(model="m", messages=USER)
    assert info.value.retryable


async def test_timeouts(openai_client: AsyncLLMClient, mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(latency=1.0))
    with pytest.raises(APITimeoutError) as info:
        await openai_client.chat(model="m", messages=USER,
                                 timeout=Timeout(first_chunk=0.05, total=5))
    assert info.value.phase == "first_chunk"
    mock_server.add_fault(Fault(latency=1.0))
    with pytest.raises(APITimeoutError) as info:
        await openai_client.chat(model="m", messages=USER, timeout=0.05)
    assert info.value.phase in ("total", "first_chunk")
    mock_server.add_fault(Fault(token_delay=1.0, stream=True))
    with pytest.raises(StreamError) as idle:
        async for _ in openai_client.stream(model="m", messages=USER,
                                            timeout=Timeout(first_chunk=5, idle=0.05)):
            pass
    assert isinstance(idle.value.cause, APITimeoutError)
    assert idle.value.cause.phase == "idle"
    mock_server.add_fault(Fault(latency=1.0, stream=True))
    with pytest.raises(APITimeoutError) as first:
        async for _ in openai_client.stream(model="m", messages=USER,
                                            timeout=Timeout(first_chunk=0.05)):
            pass
    assert first.value.phase == "first_chunk"
    await asyncio.sleep(0)
    assert _acquired(openai_client) == 0


async def test_break_out_releases_connection(openai_client: AsyncLLMClient,
                                             mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(token_delay=0.01, stream=True))
    async with openai_client.stream(model="m", messages=USER) as stream:
        async for _ in stream:
            assert _acquired(openai_client) == 1
            break
    assert _acquired(openai_client) == 0                       # at once with async with
    stream2 = openai_client.stream(model="m", messages=USER)
    async for _ in stream2:
        break
    await stream2.aclose()
    assert _acquired(openai_client) == 0
    async for _ in openai_client.stream(model="m", messages=USER):
        break                                                  # bare break: next loop tick
    for _ in range(3):
        await asyncio.sleep(0)
    assert _acquired(openai_client) == 0
    assert (await openai_client.chat(model="m", messages=USER)).text   # pool still healthy


async def test_cancel_mid_stream_releases_connection(openai_client: AsyncLLMClient,
                                                     mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(token_delay=0.05, stream=True))
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in openai_client.stream(model="m", messages=USER):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    assert _acquired(openai_client) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _acquired(openai_client) == 0
    deadline = time.monotonic() + HANG
    while mock_server.stats()["in_flight"] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert mock_server.stats()["in_flight"] == 0


async def test_cancel_unary_releases_connection(openai_client: AsyncLLMClient,
                                                mock_server: MockProviderServer) -> None:
    mock_server.add_fault(Fault(latency=0.5))
    task = asyncio.create_task(openai_client.chat(model="m", messages=USER))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _acquired(openai_client) == 0


async def test_bad_input_is_never_sent(openai_client: AsyncLLMClient,
                                       mock_server: MockProviderServer) -> None:
    bad_calls = [
        {"messages": []},
        {"messages": [{"role": "narrator", "content": "x"}]},
        {"messages": USER, "max_tokens": 0},
        {"messages": USER, "temperature": 9},
    ]
    for bad in bad_calls:
        with pytest.raises(InvalidRequestError):
            await openai_client.chat(model="m", **bad)
        with pytest.raises(InvalidRequestError):
            openai_client.stream(model="m", **bad)
    with pytest.raises(InvalidRequestError, match="model"):
        await openai_client.chat(messages=USER)
    assert mock_server.request_count == 0


async def test_response_too_large() -> None:
    async with MockProviderServer(reply_words=500) as server:
        transport = OpenAITransport("sk-x", server.base_url, max_response_bytes=1000,
                                    max_event_bytes=100)
        async with AsyncLLMClient(provider="openai", transport=transport, layers=[]) as client:
            with pytest.raises(ResponseTooLargeError):
                await client.chat(model="m", messages=USER)
            text = await client.chat(model="m", messages=[
                {"role": "user", "content": "echo: " + "word " * 60}], max_tokens=1)
            assert text.text == "word"


async def test_api_key_never_leaks(mock_server: MockProviderServer) -> None:
    key = "sk-very-secret-key-0123456789"
    mock_server.add_fault(Fault(status=401, body={"error": {
        "message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
        "code": "invalid_api_key"}}))
    async with AsyncLLMClient(provider="openai", api_key=key, base_url=mock_server.base_url,
                              layers=[]) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.chat(model="m", messages=USER)
        assert key not in str(info.value) and key not in repr(info.value)
        assert key not in repr(client) and key not in repr(client.transports["openai"])


async def test_concurrent_chats_share_the_pool(openai_client: AsyncLLMClient,
                                               mock_server: MockProviderServer) -> None:
    replies = await asyncio.gather(*(
        openai_client.chat(model="m", messages=[{"role": "user", "content": f"q{i}"}])
        for i in range(100)))
    assert len({r.text for r in replies}) > 50
    assert mock_server.request_count == 100
    assert _acquired(openai_client) == 0
