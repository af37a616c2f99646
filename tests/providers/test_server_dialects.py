"""The embedded server's Anthropic and OpenRouter dialects, seen from raw HTTP: validation,
response and stream shapes, usage (cache tokens, cost), error bodies and faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from llm_async.infrastructure.sse import SSEDecoder
from llm_async.testing import Fault, MockProviderServer
from llm_async.testing.dialects.openrouter import COMPLETION_PRICE, PROMPT_PRICE

KEY = "sk-ant-dialect-key"
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
OPENROUTER_HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(reply_words=5) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: Any,
               headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def events(raw: bytes) -> list[tuple[str, Any]]:
    decoder = SSEDecoder()
    out = decoder.feed(raw) + decoder.end()
    return [(e.event, json.loads(e.data) if e.data != b"[DONE]" else None) for e in out]


def messages_body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-3-5-haiku-latest", "max_tokens": 64,
            "messages": [{"role": "user", "content": "Hello"}], **extra}


# -- Anthropic --------------------------------------------------------------------------------


async def test_anthropic_message(server: MockProviderServer, http: aiohttp.ClientSession) -> None:
    status, headers, raw = await post(http, server.anthropic_base_url + "/v1/messages",
                                      messages_body(system="Be brief."), ANTHROPIC_HEADERS)
    assert status == 200
    body = json.loads(raw)
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["id"].startswith("msg_")
    assert body["stop_reason"] == "end_turn"
    assert body["content"][0]["type"] == "text"
    assert len(body["content"][0]["text"].split()) == 5
    # "Be brief." + "Hello": (2 + 3) + (1 + 3) tokens, none cached on a first call.
    assert body["usage"] == {"input_tokens": 9, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0, "output_tokens": 5}
    assert headers["request-id"].startswith("req_")
    assert server.requests[-1].headers["x-api-key"] == "***"  # recorded, redacted


@pytest.mark.parametrize(("change", "words"), [
    ({"max_tokens": None}, "max_tokens"),
    ({"messages": [{"role": "system", "content": "x"}]}, "role"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": ""}]}, "non-empty"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "content block"),
    ({"temperature": 1.5}, "temperature"),
    ({"tools": [{"name": "f"}]}, "input_schema"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"system": 5}, "system"),
])
async def test_anthropic_validation(server: MockProviderServer, http: aiohttp.ClientSession,
                                    change: dict[str, Any], words: str) -> None:
    body = {k: v for k, v in {**messages_body(), **change}.items() if v is not None}
    status, _, raw = await post(http, server.anthropic_base_url + "/v1/messages", body,
                                ANTHROPIC_HEADERS)
    assert status == 400
    error = json.loads(raw)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert words in error["error"]["message"]


async def test_anthropic_stream_event_sequence(server: MockProviderServer,
                                               http: aiohttp.ClientSession) -> None:
    _, headers, raw = await post(http, server.anthropic_base_url + "/v1/messages",
                                 messages_body(stream=True), ANTHROPIC_HEADERS)
    assert headers["Content-Type"].startswith("text/event-stream")
    seq = events(raw)
    names = [name for name, _ in seq]
    assert names == ["message_start", "content_block_start", "ping",
                     *["content_block_delta"] * 5, "content_block_stop", "message_delta",
                     "message_stop"]
    assert all(data["type"] == name for name, data in seq)
    assert seq[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert seq[-2][1]["usage"] == {"output_tokens": 5}
    assert seq[0][1]["message"]["usage"]["input_tokens"] == 4


async def test_anthropic_tool_use(server: MockProviderServer, http: aiohttp.ClientSession) -> None:
    tool = {"name": "get_weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}
    body = messages_body(tools=[tool], tool_choice={"type": "any"})
    _, _, raw = await post(http, server.anthropic_base_url + "/v1/messages", body,
                           ANTHROPIC_HEADERS)
    reply = json.loads(raw)
    assert reply["stop_reason"] == "tool_use"
    [block] = reply["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert block["name"] == "get_weather" and block["input"]["days"] == 42

    _, _, raw = await post(http, server.anthropic_base_url + "/v1/messages",
                           {**body, "stream": True}, ANTHROPIC_HEADERS)
    seq = events(raw)
    start = seq[1][1]["content_block"]
    assert (start["type"], start["id"], start["input"]) == ("tool_use", block["id"], {})
    pieces = [d["delta"]["partial_json"] for n, d in seq if n == "content_block_delta"]
    assert len(pieces) > 1 and json.loads("".join(pieces)) == block["input"]

    # After the tool result (a user turn of tool_result blocks) the model answers in text.
    follow = messages_body(tools=[tool], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
                                      "content": "sunny"}]},
    ])
    _, _, raw = await post(http, server.anthropic_base_url + "/v1/messages", follow,
                           ANTHROPIC_HEADERS)
    assert json.loads(raw)["stop_reason"] == "end_turn"


async def test_anthropic_cache_tokens(server: MockProviderServer,
                                      http: aiohttp.ClientSession) -> None:
    system = [{"type": "text", "text": "A long shared preamble of words",
               "cache_control": {"type": "ephemeral"}}]
    turns = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"},
             {"role": "user", "content": "second"}]
    url = server.anthropic_base_url + "/v1/messages"
    first = json.loads((await post(http, url, messages_body(system=system, messages=turns),
                                   ANTHROPIC_HEADERS))[2])["usage"]
    second = json.loads((await post(http, url, messages_body(system=system, messages=turns),
                                    ANTHROPIC_HEADERS))[2])["usage"]
    prefix = (6 + 3) + (1 + 3) + (1 + 3)  # system, first, reply
    assert first == {"input_tokens": 4, "cache_creation_input_tokens": prefix,
                     "cache_read_input_tokens": 0, "output_tokens": 5}
    assert second == {"input_tokens": 4, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": prefix, "output_tokens": 5}
    # Without a cache_control marker a new prefix is not written to the cache.
    fresh = [{"role": "user", "content": "new"}, {"role": "assistant", "content": "turns"},
             {"role": "user", "content": "here"}]
    plain = json.loads((await post(http, url, messages_body(messages=fresh),
                                   ANTHROPIC_HEADERS))[2])["usage"]
    assert (plain["cache_creation_input_tokens"], plain["cache_read_input_tokens"]) == (0, 0)


async def test_anthropic_faults(server: MockProviderServer, http: aiohttp.ClientSession) -> None:
    url = server.anthropic_base_url + "/v1/messages"
    server.add_fault(Fault(status=529, path="/v1/messages"))
    status, _, raw = await post(http, url, messages_body(), ANTHROPIC_HEADERS)
    assert status == 529
    assert json.loads(raw) == {"type": "error", "error": {
        "type": "overloaded_error", "message": "The server is overloaded."}}

    server.add_fault(Fault(error_after=2))
    _, _, raw = await post(http, url, messages_body(stream=True), ANTHROPIC_HEADERS)
    seq = events(raw)
    assert [n for n, _ in seq][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert seq[-1][1] == {"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "Overloaded"}}

    server.add_fault(Fault(error_after=0, error_body={"type": "api_error", "message": "boom"}))
    _, _, raw = await post(http, url, messages_body(stream=True), ANTHROPIC_HEADERS)
    assert events(raw)[-1][1]["error"] == {"type": "api_error", "message": "boom"}

    server.add_fault(Fault(malformed_after=1))
    _, _, raw = await post(http, url, messages_body(stream=True), ANTHROPIC_HEADERS)
    with pytest.raises(json.JSONDecodeError):
        events(raw)


async def test_anthropic_key_and_rate_limit_headers(http: aiohttp.ClientSession) -> None:
    async with MockProviderServer(require_api_key=KEY, rate_limit_headers=True) as server:
        url = server.anthropic_base_url + "/v1/messages"
        status, headers, raw = await post(http, url, messages_body(), ANTHROPIC_HEADERS)
        assert status == 200
        assert headers["anthropic-ratelimit-requests-remaining"] == "9999"
        assert headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
        status, _, raw = await post(http, url, messages_body(),
                                    {**ANTHROPIC_HEADERS, "x-api-key": "wrong"})
        assert status == 401
        assert json.loads(raw)["error"]["type"] == "authentication_error"


# -- OpenRouter -------------------------------------------------------------------------------


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}],
            **extra}


async def test_openrouter_completion_with_cost(server: MockProviderServer,
                                               http: aiohttp.ClientSession) -> None:
    status, headers, raw = await post(http, server.openrouter_base_url + "/chat/completions",
                                      chat_body(), OPENROUTER_HEADERS)
    assert status == 200
    body = json.loads(raw)
    assert body["id"].startswith("gen-") and body["provider"]
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (4, 5)
    assert usage["cost"] == pytest.approx((4 * PROMPT_PRICE + 5 * COMPLETION_PRICE) / 1e6)
    assert headers["x-generation-id"].startswith("req_")


async def test_openrouter_stream_comments_and_usage(server: MockProviderServer,
                                                    http: aiohttp.ClientSession) -> None:
    _, _, raw = await post(http, server.openrouter_base_url + "/chat/completions",
                           chat_body(stream=True), OPENROUTER_HEADERS)
    assert raw.startswith(b": OPENROUTER PROCESSING\n\n")
    assert raw.count(b": OPENROUTER PROCESSING") == 2
    seq = events(raw)
    assert seq[-1] == ("message", None)  # [DONE]
    last = seq[-2][1]
    assert last["choices"] == [] and last["usage"]["cost"] > 0


@pytest.mark.parametrize(("change", "param"), [
    ({"model": "gpt-4o-mini"}, "model"),
    ({"models": "openai/gpt-4"}, "models"),
    ({"provider": ["x"]}, "provider"),
    ({"route": "cheapest"}, "route"),
])
async def test_openrouter_validation(server: MockProviderServer, http: aiohttp.ClientSession,
                                     change: dict[str, Any], param: str) -> None:
    status, _, raw = await post(http, server.openrouter_base_url + "/chat/completions",
                                chat_body(**change), OPENROUTER_HEADERS)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["code"] == 400 and param in error["message"]


async def test_openrouter_faults(server: MockProviderServer, http: aiohttp.ClientSession) -> None:
    url = server.openrouter_base_url + "/chat/completions"
    server.add_fault(Fault(status=402))
    status, _, raw = await post(http, url, chat_body(), OPENROUTER_HEADERS)
    assert status == 402
    error = json.loads(raw)["error"]
    assert error["code"] == 402 and "credits" in error["message"]
    assert error["metadata"] == {"limit_source": "openrouter_credits"}

    server.add_fault(Fault(error_after=1))
    _, _, raw = await post(http, url, chat_body(stream=True), OPENROUTER_HEADERS)
    last = events(raw)[-1][1]
    assert last["error"]["code"] == 502
    assert last["choices"][0]["finish_reason"] == "error"


async def test_models_listings(server: MockProviderServer, http: aiohttp.ClientSession) -> None:
    async with http.get(server.openrouter_base_url + "/models") as resp:
        ids = [m["id"] for m in (await resp.json())["data"]]
    assert ids and all("/" in i for i in ids)
    async with http.get(server.base_url + "/models") as resp:
        assert (await resp.json())["object"] == "list"  # still OpenAI's
