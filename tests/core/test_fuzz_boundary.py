"""Fuzzing the inputs of the HTTP boundary: every failure is a typed library error.

Header names and values, base URLs and per-call option values are drawn by hypothesis; a call
either succeeds or raises an :class:`~llm_async.LLMError` (a bad input before anything is sent),
never a foreign exception (aiohttp's ``ValueError``, a ``RecursionError``, a ``TypeError``).
Calls go to the embedded server on loopback, run on a loop of their own in a thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from llm_async import AsyncLLMClient
from llm_async.errors import ConfigurationError, InvalidRequestError, LLMError
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.testing import MockProviderServer

T = TypeVar("T")
KEY = "sk-fuzz-test-key-0123456789"
USER = [{"role": "user", "content": "hi"}]
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


class Loop:
    """An event loop in a thread with the embedded server and one client on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = MockProviderServer(shutdown_timeout=0.05)
        self.run(self.server.start())
        self.client = self.run(self._client())

    async def _client(self) -> AsyncLLMClient:
        return AsyncLLMClient(provider="openai", api_key=KEY, base_url=self.server.base_url,
                              layers=[])

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def looped() -> Iterator[Loop]:
    loop = Loop()
    try:
        yield loop
    finally:
        loop.close()


def _outcome(looped: Loop, stream: bool = False, **params: Any) -> Any:
    async def call() -> Any:
        if stream:
            return [c async for c in looped.client.stream(model="gpt-4o-mini", messages=USER,
                                                            **params)]
        return await looped.client.chat(model="gpt-4o-mini", messages=USER, **params)

    try:
        return looped.run(call())
    except LLMError as exc:
        return exc


header_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
headers = st.dictionaries(header_text, header_text, max_size=4)


@FUZZ
@given(extra=headers, stream=st.booleans())
def test_any_extra_headers_succeed_or_fail_typed_before_sending(
        looped: Loop, extra: dict[str, str], stream: bool) -> None:
    before = looped.server.request_count
    outcome = _outcome(looped, stream=stream, extra_headers=extra)
    if isinstance(outcome, LLMError):
        assert isinstance(outcome, InvalidRequestError), repr(outcome)
        assert looped.server.request_count == before  # rejected before sending
        for value in extra.values():
            if len(value) >= 4:
                assert value not in str(outcome)  # header values are never shown


@FUZZ
@given(extra=headers)
def test_any_client_headers_build_or_fail_typed(extra: dict[str, str]) -> None:
    try:
        OpenAITransport(KEY, "http://127.0.0.1:9/v1", headers=extra)
    except ConfigurationError as exc:
        assert exc.variable is not None and exc.variable.startswith("headers")


@FUZZ
@given(url=st.one_of(
    st.text(max_size=40),
    st.builds(lambda scheme, rest: f"{scheme}{rest}",
              st.sampled_from(["http://", "https://", "ftp://", "http:", "//", "HTTP://", ""]),
              st.text(max_size=30)),
))
def test_any_base_url_builds_or_fails_typed(url: str) -> None:
    try:
        transport = OpenAITransport(KEY, url)
    except ConfigurationError as exc:
        assert exc.variable == "base_url"
    else:
        assert transport.base_url.lower().startswith(("http://", "https://"))


@FUZZ
@given(path=st.text(max_size=30), query=st.text(max_size=20))
def test_any_path_on_a_loopback_server_fails_typed(looped: Loop, path: str, query: str) -> None:
    url = f"{looped.server.url}/{path}?{query}"

    async def call() -> Any:
        try:
            transport = OpenAITransport(KEY, url)
        except ConfigurationError as exc:
            return exc
        try:
            async with AsyncLLMClient(provider="openai", transport=transport,
                                      layers=[]) as client:
                return await client.chat(model="gpt-4o-mini", messages=USER)
        except LLMError as exc:
            return exc

    looped.run(call())  # anything but an LLMError or an answer propagates and fails the test


numbers = st.one_of(st.none(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.booleans(), st.text(max_size=5))


@FUZZ
@given(temperature=numbers, max_tokens=numbers, top_p=numbers, seed=numbers,
       timeout=numbers, stop=st.one_of(st.none(), st.text(max_size=5),
                                       st.lists(st.text(max_size=5), max_size=5), numbers))
def test_any_option_values_succeed_or_fail_typed(
        looped: Loop, temperature: Any, max_tokens: Any, top_p: Any, seed: Any, timeout: Any,
        stop: Any) -> None:
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) \
            and math.isfinite(timeout) and 0 < timeout < 5:
        timeout = 5  # a valid but tiny timeout is a legitimate timeout, not a fuzz finding
    params = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens,
                                "top_p": top_p, "seed": seed, "timeout": timeout,
                                "stop": stop}.items() if v is not None}
    before = looped.server.request_count
    outcome = _outcome(looped, **params)
    if isinstance(outcome, InvalidRequestError):
        assert looped.server.request_count == before


@FUZZ
@given(body=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=20))
def test_any_extra_body_succeeds_or_fails_typed(looped: Loop, body: Any) -> None:
    _outcome(looped, extra_body={"x": body})
