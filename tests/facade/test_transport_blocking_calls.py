"""A transport's blocking ``chat_completion`` (for synchronous code) next to its awaitable
``achat_completion``, and what the first positional argument of a transport may be."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from anyio.from_thread import start_blocking_portal

from llm_async.infrastructure.transports import (
    MockLLMTransport,
    OpenAITransport,
    OpenRouterTransport,
)
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport

if TYPE_CHECKING:
    from conftest import ThreadedServer

KEY = "sk-blocking-call-key-0123456789"
HELLO = [{"role": "user", "content": "echo: hello there"}]


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def test_blocking_calls_reuse_one_pooled_session(threaded_server: ThreadedServer) -> None:
    transport = OpenAITransport(KEY, threaded_server.base_url)
    first = transport.chat_completion(messages=HELLO, model="gpt-4o-mini")
    session = transport._session
    second = transport.chat_completion(messages=HELLO, model="gpt-4o-mini", max_tokens=1)
    assert (first.text, first.provider) == ("hello there", "openai")
    assert second.usage.output_tokens == 1
    assert session is not None and transport._session is session  # one pool for both calls
    transport.close()
    assert session.closed and transport._session is None
    assert threaded_server.stats()["requests"] == 2


def test_a_session_on_an_application_loop_is_used_on_that_loop(
        threaded_server: ThreadedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    with start_blocking_portal() as portal:
        session = portal.call(_session)
        try:
            transport = OpenRouterTransport(session, threaded_server.server.openrouter_base_url)
            assert transport._api_key == KEY  # the key still comes from the environment
            reply = transport.chat_completion(messages=HELLO, model="openai/gpt-4o-mini")
            assert (reply.text, reply.provider) == ("hello there", "openrouter")
            transport.close()
            assert not session.closed  # the application's session is the application's
        finally:
            portal.call(session.close)


@pytest.mark.parametrize("first", [42, object(), {"api_key": KEY}, b"sk-bytes"])
def test_anything_but_a_key_or_a_session_is_a_type_error(first: Any) -> None:
    for cls in (OpenRouterTransport, OpenAITransport, AnthropicTransport):
        with pytest.raises(TypeError, match=r"takes an API key \(str\) or an aiohttp\."
                                            r"ClientSession as its first argument, got"):
            cls(first)


async def test_a_session_given_twice_or_a_foreign_session_is_a_type_error() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TypeError, match="two aiohttp sessions"):
            OpenRouterTransport(session, session=session)
        with pytest.raises(TypeError, match=r"session must be an aiohttp\.ClientSession"):
            OpenAITransport(KEY, session=object())  # type: ignore[arg-type]


async def test_on_the_loop_of_its_own_session_the_blocking_call_names_the_awaitable(
        mock_server: Any) -> None:
    async with aiohttp.ClientSession() as session:  # a session of the running loop
        transport = OpenAITransport(session, mock_server.base_url)
        with pytest.raises(RuntimeError, match=r"await OpenAITransport\.achat_completion"):
            transport.chat_completion(messages=HELLO, model="gpt-4o-mini")
        reply = await transport.achat_completion(messages=HELLO, model="gpt-4o-mini")
        assert reply.text == "hello there"
        assert mock_server.stats()["requests"] == 1


async def test_inside_a_running_loop_a_blocking_call_runs_on_the_background_loop() -> None:
    mock = MockLLMTransport("fine")
    reply = mock.chat_completion(messages=HELLO, model="m")  # blocks this loop, like any call
    assert reply.text == "fine" and mock.call_count == 1
    assert (await mock.achat_completion(messages=HELLO, model="m")).text == "fine"


def test_a_session_whose_loop_has_ended_is_a_clear_error(threaded_server: ThreadedServer) -> None:
    loop = asyncio.new_event_loop()
    session = loop.run_until_complete(_session())
    try:
        transport = OpenAITransport(session, threaded_server.base_url)
        with pytest.raises(RuntimeError, match="session is not running"):
            transport.chat_completion(messages=HELLO, model="gpt-4o-mini")
        assert threaded_server.stats()["requests"] == 0
    finally:
        loop.run_until_complete(session.close())
        loop.close()


def test_the_blocking_mock_call(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = MockLLMTransport(default_response="Test response")
    reply = transport.chat_completion(messages=HELLO, model="mock-model")
    assert reply.text == "Test response" and transport.call_count == 1
