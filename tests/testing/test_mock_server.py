"""Tests of the embedded mock provider server, driven by a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from llm_async.testing import MockProviderServer
from llm_async.testing._faults import Fault
from llm_async.testing._replies import VOCABULARY
from llm_async.testing._wire import go_duration

CHAT = "/v1/chat/completions"
# A guard against a hung subprocess (the test fails instead of blocking), not a speed check.
HANG = 120

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "ratio": {"type": "number"},
                "metric": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object"},
                "whatever": {},
            },
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


# -- helpers ----------------------------------------------------------------------------------


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chat(text: str = "hello there", model: str = "mock-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": user(text), **extra}


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events = [event for event in text.split("\n\n") if event.strip()]
    assert all(event.startswith("data: ") for event in events), events
    return [event[len("data: ") :] for event in events]


async def post(
    session: aiohttp.ClientSession,
    server: MockProviderServer,
    payload: Any,
    path: str = CHAT,
    **kwargs: Any,
) -> tuple[int, Any, Any]:
    """POST and return (status, headers, parsed JSON or text)."""
    async with session.post(server.url + path, json=payload, **kwargs) as resp:
        text = await resp.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return resp.status, resp.headers, body


async def stream(
    session: aiohttp.ClientSession, server: MockProviderServer, payload: dict[str, Any]
) -> tuple[int, list[str]]:
    async with session.post(server.base_url + "/chat/completions", json=payload) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return resp.status, sse_data(await resp.text())


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer() as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# -- content ----------------------------------------------------------------------------------


async def test_non_stream_shape(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello please"},
    ]
    status, headers, body = await post(session, server, {"model": "m-1", "messages": messages})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" not in headers
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "m-1"
    assert body["system_fingerprint"] == "fp_mock"
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert "tool_calls" not in choice["message"]
    words = choice["message"]["content"].split(" ")
    assert len(words) == 12
    assert set(words) <= set(VOCABULARY)
    assert body["usage"] == {
        "prompt_tokens": (3 + 3) + (3 + 3),
        "completion_tokens": 12,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def test_replies_are_deterministic(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    def content(body: Any) -> str:
        return str(body["choices"][0]["message"]["content"])

    first = content((await post(session, server, chat("what is up?")))[2])
    again = content((await post(session, server, chat("what is up?"), path="/chat/completions"))[2])
    other_text = content((await post(session, server, chat("what is down?")))[2])
    other_model = content((await post(session, server, chat("what is up?", model="x")))[2])
    assert first == again
    assert len({first, other_text, other_model}) == 3
    async with MockProviderServer(seed=1, reply_words=5) as seeded:
        reseeded = content((await post(session, seeded, chat("what is up?")))[2])
    assert reseeded != first
    assert len(reseeded.split()) == 5
    assert server.stats()["by_path"] == {CHAT: 3, "/chat/completions": 1}


async def test_echo_and_content_parts(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    _, _, body = await post(session, server, chat("echo:  repeat   after me  "))
    assert body["choices"][0]["message"]["content"] == "repeat   after me"
    assert body["usage"]["completion_tokens"] == 3
    parts = [
        {"type": "text", "text": "echo: one two"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "three"},
    ]
    messages = [{"role": "user", "content": parts}, {"role": "assistant", "content": None}]
    _, _, body = await post(session, server, {"model": "m", "messages": messages})
    assert body["choices"][0]["message"]["content"] == "one two three"
    assert body["usage"]["prompt_tokens"] == (4 + 3) + (0 + 3)


async def test_max_tokens_truncates(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    _, _, full = await post(session, server, chat("count"))
    _, _, short = await post(session, server, chat("count", max_tokens=5))
    _, _, newer = await post(session, server, chat("count", max_completion_tokens=3))
    _, _, roomy = await post(session, server, chat("count", max_tokens=100))
    full_words = full["choices"][0]["message"]["content"].split()
    assert short["choices"][0]["message"]["content"].split() == full_words[:5]
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 5
    assert newer["choices"][0]["message"]["content"].split() == full_words[:3]
    assert newer["choices"][0]["finish_reason"] == "length"
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["choices"][0]["message"]["content"].split() == full_words


async def test_stream_sequence(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    _, _, plain = await post(session, server, chat("stream me"))
    status, data = await stream(session, server, chat("stream me", stream=True))
    assert status == 200
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert len(chunks) == 1 + 12 + 1  # role, words, finish; no usage chunk unless asked
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["choices"][0]["finish_reason"] is None
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert not pieces[0].startswith(" ")
    assert all(p.startswith(" ") and len(p.split()) == 1 for p in pieces[1:])
    assert "".join(pieces) == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert server.stats()["streams"] == 1


async def test_stream_usage_chunk(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    payload = chat("echo: a b c d", stream=True, stream_options={"include_usage": True})
    _, data = await stream(session, server, {**payload, "max_tokens": 2})
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["a", " b"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 2
    assert usage_chunk["usage"]["prompt_tokens"] == 5 + 3
    assert usage_chunk["usage"]["total_tokens"] == 10


async def test_tool_call_non_stream_and_stream(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    payload = chat("weather in paris?", tools=[WEATHER_TOOL, TIME_TOOL])
    _, _, body = await post(session, server, payload)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    arguments = call["function"]["arguments"]
    args = json.loads(arguments)
    assert list(args) == ["city", "days", "ratio", "metric", "tags", "extra", "whatever"]
    assert args["city"] in VOCABULARY
    assert args["days"] == 42 and args["ratio"] == 1.5 and args["metric"] is True
    assert args["tags"] == [] and args["extra"] == {} and args["whatever"] is None
    assert body["usage"]["completion_tokens"] == len(arguments.split())

    _, data = await stream(session, server, {**payload, "stream": True})
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    head = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert head["id"] == call["id"]
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"] for c in chunks[1:-1]]
    assert 2 <= len(fragments) <= 4
    assert "".join(f["arguments"] for f in fragments) == arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_choice_rules(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL]

    async def outcome(**extra: Any) -> Any:
        payload = {"model": "m", "messages": user("what now?"), "tools": tools, **extra}
        status, _, body = await post(session, server, payload)
        return body if status != 200 else body["choices"][0]

    assert (await outcome(tool_choice="none"))["finish_reason"] == "stop"
    named = await outcome(tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert named["message"]["tool_calls"][0]["function"]["name"] == "get_time"
    assert json.loads(named["message"]["tool_calls"][0]["function"]["arguments"])["zone"]
    after_tool = [
        *user("what now?"),
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    answered = await outcome(messages=after_tool)
    assert answered["finish_reason"] == "stop"
    assert answered["message"]["content"]
    forced = await outcome(messages=after_tool, tool_choice="required")
    assert forced["finish_reason"] == "tool_calls"
    unknown = await outcome(tool_choice={"type": "function", "function": {"name": "nope"}})
    assert unknown["error"]["param"] == "tool_choice"


async def test_cached_tokens_on_repeated_prefix(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    system = {"role": "system", "content": "you are a very helpful bot"}  # 6 words + 3

    async def cached(text: str, sys_msg: dict[str, str] = system) -> int:
        payload = {"model": "m", "messages": [sys_msg, *user(text)]}
        _, _, body = await post(session, server, payload)
        return int(body["usage"]["prompt_tokens_details"]["cached_tokens"])

    assert await cached("first question") == 0
    assert await cached("second question") == 9
    assert await cached("third") == 9
    assert await cached("first question", {"role": "system", "content": "other"}) == 0
    server.reset()
    assert await cached("fourth") == 0


async def test_invalid_requests(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    async with session.post(server.url + CHAT, data=b"{not json") as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["type"] == "invalid_request_error"
        assert set(error) == {"message", "type", "param", "code"}
    cases: list[tuple[Any, str]] = [
        ({"messages": user("hi")}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": user("hi"), "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": user("hi"), "tool_choice": "maybe"}, "tool_choice"),
    ]
    for payload, param in cases:
        status, headers, body = await post(session, server, payload)
        assert status == 400, payload
        assert body["error"]["param"] == param
        assert headers["x-request-id"].startswith("req_")
    assert server.request_count == len(cases) + 1


async def test_models_endpoint(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    async with session.get(server.base_url + "/models") as resp:
        body = await resp.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids[:2] == ["mock-model", "gpt-4o-mini"]
    assert server.request_count == 0


# -- faults -----------------------------------------------------------------------------------


async def test_fault_status_default_body_and_retry_headers(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    server.add_fault(Fault(status=429, retry_after=2, retry_after_ms=1500))
    status, headers, body = await post(session, server, chat())
    assert status == 429
    assert headers["Retry-After"] == "2"
    assert headers["retry-after-ms"] == "1500"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["param"] is None
    status, _, _ = await post(session, server, chat())
    assert status == 200  # times=1 by default
    server.add_fault(Fault(status=503, retry_after=0.5, stream=True))
    async with session.post(server.url + CHAT, json=chat(stream=True)) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "0.5"
        assert resp.headers["Content-Type"].startswith("application/json")
    assert server.stats()["faults_applied"] == 2


@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),  # as OpenAI sends a bad key
        (403, "permission_error", "permission_denied"),
        (404, "invalid_request_error", "model_not_found"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "server_error", "internal_error"),
        (503, "overloaded_error", "service_unavailable"),
        (529, "overloaded_error", "overloaded"),
        (418, "invalid_request_error", None),
    ],
)
async def test_fault_default_error_bodies(
    server: MockProviderServer,
    session: aiohttp.ClientSession,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    server.add_fault(Fault(status=status))
    got, _, body = await post(session, server, chat(model="gpt-x"))
    assert got == status
    assert body["error"]["type"] == error_type
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    if status == 404:
        assert "gpt-x" in body["error"]["message"]


async def test_fault_custom_json_and_html_bodies(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    server.add_fault(Fault(status=502, body=html))
    server.add_fault(Fault(status=400, body={"detail": "custom"}, headers={"x-extra": "1"}))
    server.add_fault(Fault(status=500, body="plain failure"))
    async with session.post(server.url + CHAT, json=chat()) as resp:
        assert resp.status == 502
        assert resp.headers["Content-Type"].startswith("text/html")
        assert await resp.text() == html
    status, headers, body = await post(session, server, chat())
    assert (status, body, headers["x-extra"]) == (400, {"detail": "custom"}, "1")
    async with session.post(server.url + CHAT, json=chat()) as resp:
        assert resp.status == 500
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert await resp.text() == "plain failure"


async def test_fault_latency_and_token_delay(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    server.add_fault(Fault(latency=0.2))
    started = time.perf_counter()
    status, _, _ = await post(session, server, chat())
    assert status == 200
    assert time.perf_counter() - started >= 0.2
    server.add_fault(Fault(token_delay=0.02))
    started = time.perf_counter()
    _, data = await stream(session, server, chat("echo: a b c d e f g h i j", stream=True))
    assert time.perf_counter() - started >= 10 * 0.02
    assert data[-1] == "[DONE]"
    assert len(data) == 1 + 10 + 1 + 1


async def test_fault_cut_after(
    server: MockProviderServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server.add_fault(Fault(cut_after=3))
    received: list[bytes] = []
    with caplog.at_level(logging.WARNING), pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(server.url + CHAT, json=chat(stream=True)) as resp:
            assert resp.status == 200
            async for line in resp.content:
                received.append(line)
    data = [line[6:].strip() for line in received if line.startswith(b"data: ")]
    assert len(data) == 1 + 3
    assert b"[DONE]" not in b"".join(received)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    deadline = time.monotonic() + HANG
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.stats()["in_flight"] == 0
    status, _, _ = await post(session, server, chat())  # the server is still healthy
    assert status == 200


async def test_fault_malformed_after(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    server.add_fault(Fault(malformed_after=2))
    _, data = await stream(session, server, chat("echo: one two three four", stream=True))
    parsed: list[Any] = []
    for item in data:
        try:
            parsed.append(json.loads(item))
        except ValueError:
            parsed.append(None)
    assert parsed.index(None) == 3  # role chunk, 2 content chunks, then the garbled line
    assert parsed.count(None) == 2  # the garbled line and "[DONE]"
    assert data[-1] == "[DONE]"
    contents = [p["choices"][0]["delta"].get("content") for p in parsed if p and p["choices"]]
    assert "".join(c for c in contents if c) == "one two three four"


async def test_fault_error_after(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    server.add_fault(Fault(error_after=2))
    status, data = await stream(session, server, chat("echo: one two three four", stream=True))
    assert status == 200
    assert len(data) == 1 + 2 + 1
    assert json.loads(data[-1]) == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "code": None,
        }
    }
    custom = {"message": "boom", "type": "overloaded", "code": "x"}
    server.add_fault(Fault(error_after=0, error_body=custom))
    _, data = await stream(session, server, chat("echo: one two", stream=True))
    assert [json.loads(d) for d in data[1:]] == [{"error": custom}]


async def test_fault_reset(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    server.add_fault(Fault(reset=True))
    with pytest.raises(aiohttp.ClientError):
        await post(session, server, chat())
    status, _, _ = await post(session, server, chat())
    assert status == 200
    assert server.request_count == 2
    assert server.stats()["faults_applied"] == 1


async def test_fault_times(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    server.add_fault(Fault(status=500, times=2))
    statuses = [(await post(session, server, chat()))[0] for _ in range(3)]
    assert statuses == [500, 500, 200]
    server.add_fault(Fault(status=503, times=None))
    statuses = [(await post(session, server, chat()))[0] for _ in range(4)]
    assert statuses == [503] * 4
    assert server.clear_faults() == 1
    assert (await post(session, server, chat()))[0] == 200


async def test_fault_probability_is_reproducible(session: aiohttp.ClientSession) -> None:
    async def run(srv: MockProviderServer) -> list[int]:
        srv.add_fault(Fault(status=503, times=None, probability=0.5))
        return [(await post(session, srv, chat()))[0] for _ in range(16)]

    async with MockProviderServer(seed=7) as first, MockProviderServer(seed=7) as second:
        outcome = await run(first)
        assert outcome == await run(second)
        assert set(outcome) == {200, 503}
        first.reset()
        assert await run(first) == outcome


async def test_fault_filters(server: MockProviderServer, session: aiohttp.ClientSession) -> None:
    server.add_fault(Fault(status=500, model="broken-model"))
    assert (await post(session, server, chat(model="fine-model")))[0] == 200
    assert (await post(session, server, chat(model="broken-model")))[0] == 500

    server.add_fault(Fault(status=502, stream=True))
    assert (await post(session, server, chat()))[0] == 200
    assert (await post(session, server, chat(stream=True)))[0] == 502

    server.add_fault(Fault(status=504, path="/v1/"))
    assert (await post(session, server, chat(), path="/chat/completions"))[0] == 200
    assert (await post(session, server, chat()))[0] == 504

    server.add_fault(Fault(cut_after=1))  # stream-only effect: non-stream requests pass by
    assert (await post(session, server, chat()))[0] == 200
    assert len(server.pending_faults) == 1


def test_fault_validation() -> None:
    bad: list[dict[str, Any]] = [
        {"status": 99},
        {"status": "500"},
        {"body": {"x": 1}},
        {"status": 200},
        {"latency": -1},
        {"times": 0},
        {"probability": 1.5},
        {"cut_after": -1},
        {"cut_after": 1, "error_after": 2},
        {"status": 500, "cut_after": 1},
        {"reset": True, "status": 500},
        {"error_body": {"message": "x"}},
        {"cut_after": 1, "stream": False},
        {"headers": {"x": 1}},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            Fault(**kwargs)
    with pytest.raises(ValueError, match="unknown Fault field"):
        Fault.from_dict({"status": 500, "bogus": 1})
    fault = Fault.from_dict({"status": 503, "times": None, "retry_after": 1})
    assert fault == Fault(status=503, times=None, retry_after=1)
    assert Fault.from_dict(fault.to_dict()) == fault


# -- control, auth, counters ------------------------------------------------------------------


async def test_control_endpoints(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    async with session.post(server.url + "/_mock/faults", json={"status": 503, "times": 2}) as r:
        assert r.status == 200
        assert (await r.json())["pending"] == 1
    async with session.post(server.url + "/_mock/faults", json={"nope": 1}) as r:
        assert r.status == 400
        assert "nope" in (await r.json())["error"]["message"]
    assert (await post(session, server, chat()))[0] == 503
    async with session.get(server.url + "/_mock/stats") as r:
        stats = await r.json()
    assert stats == {
        "requests": 1,
        "by_path": {CHAT: 1},
        "in_flight": 0,
        "max_in_flight": 1,
        "faults_applied": 1,
        "streams": 0,
        "billed": [],  # the 503 generated nothing, so nothing was billed
    }
    async with session.get(server.url + "/_mock/faults") as r:
        (pending,) = (await r.json())["faults"]
    assert (pending["status"], pending["remaining"]) == (503, 1)
    async with session.get(server.url + "/_mock/requests") as r:
        (recorded,) = (await r.json())["requests"]
    assert recorded["path"] == CHAT and recorded["body"] == chat()
    async with session.delete(server.url + "/_mock/faults") as r:
        assert (await r.json())["cleared"] == 1
    assert (await post(session, server, chat()))[0] == 200
    async with session.post(server.url + "/_mock/reset") as r:
        assert r.status == 200
    assert server.stats()["requests"] == 0
    assert len(server.requests) == 0


async def test_require_api_key_and_recording(session: aiohttp.ClientSession) -> None:
    async with MockProviderServer(require_api_key="sk-test") as srv:
        status, _, body = await post(session, srv, chat())
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        wrong = {"Authorization": "Bearer sk-wrong"}
        assert (await post(session, srv, chat(), headers=wrong))[0] == 401
        right = {"Authorization": "Bearer sk-test", "X-Custom": "yes"}
        sent = time.time()
        assert (await post(session, srv, chat("echo: ok"), headers=right))[0] == 200
        assert srv.request_count == 3
        record = srv.requests[-1]
        assert record.path == CHAT
        assert record.headers["authorization"] == "***"
        assert record.headers["x-custom"] == "yes"
        assert record.body == chat("echo: ok")
        assert sent <= record.received_at <= time.time()


async def test_in_flight_returns_to_zero_after_client_breaks_out(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    server.add_fault(Fault(token_delay=0.03))
    resp = await session.post(server.url + CHAT, json=chat(stream=True))
    seen = 0
    async for line in resp.content:
        if line.startswith(b"data: "):
            seen += 1
        if seen == 3:
            break
    assert server.stats()["in_flight"] == 1
    resp.close()
    deadline = time.monotonic() + HANG
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    stats = server.stats()
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 1
    assert stats["requests"] == 1 and stats["streams"] == 1


async def test_max_in_flight_under_concurrency(
    server: MockProviderServer, session: aiohttp.ClientSession
) -> None:
    server.add_fault(Fault(latency=0.15, times=None))
    results = await asyncio.gather(*(post(session, server, chat(str(i))) for i in range(8)))
    assert [status for status, _, _ in results] == [200] * 8
    stats = server.stats()
    assert stats["max_in_flight"] == 8
    assert stats["in_flight"] == 0
    assert stats["faults_applied"] == 8


async def test_rate_limit_headers(session: aiohttp.ClientSession) -> None:
    duration = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")
    async with MockProviderServer(rate_limit_headers=True, rpm_limit=100, tpm_limit=1000) as srv:
        _, first, body = await post(session, srv, chat())
        _, second, _ = await post(session, srv, chat())
    assert first["x-ratelimit-limit-requests"] == "100"
    assert first["x-ratelimit-remaining-requests"] == "99"
    assert second["x-ratelimit-remaining-requests"] == "98"
    assert first["x-ratelimit-limit-tokens"] == "1000"
    assert int(first["x-ratelimit-remaining-tokens"]) == 1000 - body["usage"]["total_tokens"]
    assert duration.match(first["x-ratelimit-reset-requests"])
    assert duration.match(first["x-ratelimit-reset-tokens"])
    assert [go_duration(s) for s in (0.02, 1, 360, 3723.5, 0)] == [
        "20ms",
        "1s",
        "6m0s",
        "1h2m3.5s",
        "0s",
    ]


async def test_command_line(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llm_async.testing",
        "--port",
        "0",
        "--reply-words",
        "4",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode()
        match = re.fullmatch(r"LISTENING (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1)
        async with session.post(url + CHAT, json=chat()) as resp:
            body = await resp.json()
        assert len(body["choices"][0]["message"]["content"].split()) == 4
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), HANG) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_close_aborts_in_flight_streams(session: aiohttp.ClientSession) -> None:
    srv = MockProviderServer(token_delay=0.5, reply_words=50)
    await srv.start()
    resp = await session.post(srv.url + CHAT, json=chat(stream=True))
    assert resp.status == 200
    assert srv.stats()["in_flight"] == 1
    await srv.close()  # does not wait the ~25 s the stream would take to finish
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    resp.close()
    assert srv.stats()["in_flight"] == 0
    await srv.close()  # idempotent
