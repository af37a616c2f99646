"""Hostile input: the SSE decoder and every transport's response and stream parsers, fuzzed.

Parsers are fuzzed twice: directly (decoded JSON and events; many examples, checking that what
comes out is a valid model) and end to end through :class:`HTTPTransport` with raw bytes on the
wire (checking that only typed errors escape: the transport maps what a parser hook raises on a
body of the wrong shape to :class:`~llm_async.errors.ProtocolError`).

Whatever bytes a server sends — random bytes, valid bodies with fields replaced by random JSON,
truncated JSON, invalid UTF-8, reads split anywhere, huge lines — only errors from
:mod:`llm_async.errors` may come out (never a bare ``KeyError``/``ValueError``/``TypeError``/
``UnicodeDecodeError``/``AttributeError``), and what does come out is a valid model that the
client can assemble. A body or a single SSE event over the configured cap raises
:class:`~llm_async.errors.ResponseTooLargeError`.

Short in CI (profile ``ci``); set ``HYPOTHESIS_PROFILE=long`` for thousands of examples per test.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from aioresponses import aioresponses
from hypothesis import HealthCheck, given, settings, strategies as st

from llm_async.context import CallContext
from llm_async.errors import LLMError, ResponseTooLargeError, StreamError
from llm_async.infrastructure.sse import SSEDecoder, SSEEvent
from llm_async.infrastructure.transports.base import _PARSE_ERRORS, HTTPTransport
from llm_async.types import ChatChunk, ChatResponse, StreamAssembler, build_request

settings.register_profile(
    "fuzz-ci", max_examples=60, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-long", max_examples=3000, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile(
    "fuzz-long" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "fuzz-ci")

# -- the transports -------------------------------------------------------------------------------

_TRANSPORTS = {
    "openai": ("llm_async.infrastructure.transports.openai_transport", "OpenAITransport"),
    "openrouter": ("llm_async.infrastructure.transports.openrouter_transport",
                   "OpenRouterTransport"),
    "anthropic": ("llm_async.infrastructure.transports.anthropic_transport",
                  "AnthropicTransport"),
}


def _transport_class(provider: str) -> type[HTTPTransport]:
    module, name = _TRANSPORTS[provider]
    try:
        cls: type[HTTPTransport] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pytest.skip(f"the {provider} transport does not exist yet")
    return cls


def make_transport(provider: str, **kwargs: Any) -> HTTPTransport:
    return _transport_class(provider)(api_key="sk-fuzz-000000", base_url=BASE_URL, **kwargs)


BASE_URL = "http://fuzz.test/v1"
PROVIDERS = list(_TRANSPORTS)


def make_request(provider: str, *, stream: bool = False) -> Any:
    model = "claude-3-5-haiku-latest" if provider == "anthropic" else "gpt-4o-mini"
    return build_request(model=model, provider=provider, stream=stream,
                         messages=[{"role": "user", "content": "hi"}])


# -- valid samples of each wire format (the fuzzers mutate these) ------------------------------

OPENAI_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Hello there",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12, "cost": 0.001,
              "prompt_tokens_details": {"cached_tokens": 1},
              "completion_tokens_details": {"reasoning_tokens": 2}},
}
OPENAI_EVENTS: list[tuple[str | None, Any]] = [
    (None, {"id": "c1", "model": "gpt-4o-mini", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}),
    (None, {"id": "c1", "model": "gpt-4o-mini", "choices": [
        {"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}),
    (None, {"id": "c1", "model": "gpt-4o-mini", "choices": [
        {"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": "{\"q\""}}]}}]}),
    (None, {"id": "c1", "model": "gpt-4o-mini", "choices": [
        {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
         "finish_reason": "tool_calls"}]}),
    (None, {"id": "c1", "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "cost": 0.002,
                      "prompt_tokens_details": {"cached_tokens": 0}}}),
    (None, "[DONE]"),
]
ANTHROPIC_RESPONSE: dict[str, Any] = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
    "content": [{"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 1,
              "cache_creation_input_tokens": 0},
}
ANTHROPIC_EVENTS: list[tuple[str | None, Any]] = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
        "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"q\": 1}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                       "usage": {"output_tokens": 7}}),
    ("message_stop", {"type": "message_stop"}),
]
SAMPLES = {
    "openai": (OPENAI_RESPONSE, OPENAI_EVENTS),
    "openrouter": (OPENAI_RESPONSE, OPENAI_EVENTS),
    "anthropic": (ANTHROPIC_RESPONSE, ANTHROPIC_EVENTS),
}
EVENT_NAMES = sorted({name for _, events in SAMPLES.values() for name, _ in events if name}
                     | {"error", "message", "bogus"})
KEYS = sorted({"id", "model", "choices", "message", "content", "delta", "tool_calls", "index",
               "function", "name", "arguments", "finish_reason", "usage", "error", "type",
               "text", "input", "partial_json", "stop_reason", "code", "cost",
               "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
               "content_block", "prompt_tokens_details", "cached_tokens"})

# -- strategies -----------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["", "[DONE]", "stop", "tool_use", "text_delta", "error"]))
json_values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=3)
                   | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner,
                                     max_size=4)),
    max_leaves=12,
)


def _mutate(draw: Callable[[Any], Any], node: Any, depth: int = 0) -> Any:
    """Replace, delete or retype one spot of a JSON tree."""
    if isinstance(node, dict) and node and depth < 8 and draw(st.integers(0, 4)) > 0:
        node = dict(node)
        key = draw(st.sampled_from(sorted(node)))
        action = draw(st.sampled_from(["recurse", "recurse", "delete", "replace"]))
        if action == "delete":
            del node[key]
        elif action == "replace":
            node[key] = draw(json_values)
        else:
            node[key] = _mutate(draw, node[key], depth + 1)
        return node
    if isinstance(node, list) and node and depth < 8 and draw(st.integers(0, 4)) > 0:
        node = list(node)
        i = draw(st.integers(0, len(node) - 1))
        node[i] = _mutate(draw, node[i], depth + 1)
        return node
    return draw(json_values)


@st.composite
def mutated(draw: Callable[[Any], Any], sample: Any) -> Any:
    value = copy.deepcopy(sample)
    for _ in range(draw(st.integers(1, 3))):
        value = _mutate(draw, value)
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def body_bytes(draw: Callable[[Any], Any], sample: Any) -> bytes:
    """A response body: a mutated sample, a truncated one, random bytes or invalid UTF-8."""
    kind = draw(st.sampled_from(["mutated", "mutated", "truncated", "random", "json", "utf8"]))
    if kind == "mutated":
        return _dumps(draw(mutated(sample)))
    if kind == "truncated":
        raw = _dumps(sample)
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "json":
        return _dumps(draw(json_values))
    if kind == "utf8":
        raw = _dumps(sample)
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) \
            + raw[at:]
    data: bytes = draw(st.binary(max_size=200))
    return data


@st.composite
def event_list(draw: Callable[[Any], Any], events: list[tuple[str | None, Any]]
               ) -> list[tuple[str | None, bytes]]:
    """A stream's events: the valid sequence with some events mutated, dropped, repeated,
    renamed, truncated or replaced by random bytes."""
    out: list[tuple[str | None, bytes]] = []
    for name, payload in events:
        raw = payload.encode() if isinstance(payload, str) else _dumps(payload)
        action = draw(st.sampled_from(["keep", "keep", "keep", "mutate", "drop", "twice",
                                       "rename", "truncate", "random"]))
        if action == "drop":
            continue
        if action == "mutate" and not isinstance(payload, str):
            raw = _dumps(draw(mutated(payload)))
        elif action == "rename":
            name = draw(st.sampled_from(EVENT_NAMES))
        elif action == "truncate":
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif action == "random":
            raw = draw(st.binary(max_size=60))
        out.append((name, raw))
        if action == "twice":
            out.append((name, raw))
    return out


def sse_bytes(events: list[tuple[str | None, bytes]], newline: bytes = b"\n") -> bytes:
    parts = []
    for name, data in events:
        lines = data.split(b"\n") if data else [b""]
        block = b"".join(b"data: " + line.replace(b"\r", b"") + newline for line in lines)
        if name:
            block = b"event: " + name.encode() + newline + block
        parts.append(block + newline)
    return b"".join(parts)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def decode_all(pieces: list[bytes], cap: int = 1 << 20) -> list[SSEEvent]:
    decoder = SSEDecoder(cap)
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.end())
    return events


def assert_valid_chunk(chunk: Any) -> None:
    assert isinstance(chunk, ChatChunk)
    ChatChunk.model_validate(chunk.model_dump(warnings=False))


def assert_valid_response(response: Any) -> None:
    assert isinstance(response, ChatResponse)
    ChatResponse.model_validate(response.model_dump(warnings=False))
    assert isinstance(response.text, str)


def _assemble(chunks: list[ChatChunk]) -> None:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    assert_valid_response(assembler.response(provider="fuzz", latency=0.0))


# =================================================================================================
# The SSE decoder
# =================================================================================================


sse_text = st.lists(
    st.sampled_from([b"data: ", b"data:", b"event: ", b": keep-alive", b"id: 7", b"retry: 1",
                     b"\n", b"\r\n", b"\r", b"\n\n", b"{\"a\": 1}", b"[DONE]", b"\xff\xfe",
                     b"\xc3", b"x" * 40, b"data: {\"t\":\"\xe2\x82", b"\xac\"}"])
    | st.binary(max_size=20),
    max_size=30,
).map(b"".join)


@FUZZ
@given(data=sse_text, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_sse_events_do_not_depend_on_read_boundaries(data: bytes, cuts: list[int]) -> None:
    whole = decode_all([data])
    assert decode_all(split(data, cuts)) == whole
    for event in whole:
        assert isinstance(event.event, str)
        assert isinstance(event.data, bytes)


@FUZZ
@given(data=sse_text, cuts=st.lists(st.integers(0, 10_000), max_size=8),
       cap=st.integers(1, 64))
def test_sse_decoder_raises_only_the_size_error(data: bytes, cuts: list[int], cap: int) -> None:
    try:
        events = decode_all(split(data, cuts), cap)
    except ResponseTooLargeError:
        return
    assert all(len(e.data) <= cap for e in events)


@FUZZ
@given(size=st.integers(1025, 50_000), cuts=st.lists(st.integers(0, 60_000), max_size=6),
       prefix=st.sampled_from([b"data: ", b"", b": ", b"event: "]),
       newline=st.sampled_from([b"", b"\n", b"\r\n"]))
def test_a_huge_line_raises_response_too_large(size: int, cuts: list[int], prefix: bytes,
                                               newline: bytes) -> None:
    data = prefix + b"x" * size + newline
    with pytest.raises(ResponseTooLargeError):
        decode_all(split(data, cuts), cap=1024)


@FUZZ
@given(lines=st.integers(2, 40), cuts=st.lists(st.integers(0, 60_000), max_size=6))
def test_a_huge_multiline_event_raises_response_too_large(lines: int, cuts: list[int]) -> None:
    data = b"data: " + b"y" * 100 + b"\n"
    body = data * (lines * 20) + b"\n"  # one event of lines*20 data lines of 100 bytes
    with pytest.raises(ResponseTooLargeError):
        decode_all(split(body, cuts), cap=1000)


# =================================================================================================
# Parsers, fed decoded JSON and events directly
# =================================================================================================


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_parse_response_gives_a_valid_response_or_a_typed_error(provider: str,
                                                                data: st.DataObject) -> None:
    transport = make_transport(provider)
    sample = SAMPLES[provider][0]
    value = data.draw(mutated(sample) | json_values)
    try:
        response = transport.parse_response(value, make_request(provider))
    except (LLMError, *_PARSE_ERRORS):  # the transport maps the second kind to ProtocolError
        return
    assert_valid_response(response)


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_stream_parser_gives_valid_chunks_or_a_typed_error(provider: str,
                                                           data: st.DataObject) -> None:
    transport = make_transport(provider)
    events = data.draw(event_list(SAMPLES[provider][1]))
    parser = transport.stream_parser(make_request(provider, stream=True))
    chunks: list[ChatChunk] = []
    for name, raw in events:
        try:
            out = parser.feed(SSEEvent(name or "message", raw))
        except (LLMError, *_PARSE_ERRORS):  # the transport maps the second kind to ProtocolError
            break
        for chunk in out:
            assert_valid_chunk(chunk)
            chunks.append(chunk)
    _assemble(chunks)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unmutated_samples_parse(provider: str) -> None:
    """The fuzzers' starting points are valid, so mutations explore near real traffic."""
    transport = make_transport(provider)
    response = transport.parse_response(copy.deepcopy(SAMPLES[provider][0]),
                                        make_request(provider))
    assert response.text == ("Hello there" if provider != "anthropic" else "Hello")
    assert response.tool_calls[0].function.name == "lookup"
    parser = transport.stream_parser(make_request(provider, stream=True))
    chunks = [c for name, payload in SAMPLES[provider][1]
              for c in parser.feed(SSEEvent(name or "message", payload.encode()
                                            if isinstance(payload, str) else _dumps(payload)))]
    assert parser.done
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.text.startswith("Hel")
    assert assembler.tool_calls()[0].function.name == "lookup"


# =================================================================================================
# End to end through the HTTP transport: raw bytes on the wire
# =================================================================================================


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _chat(transport: HTTPTransport, provider: str, status: int, body: bytes,
                headers: dict[str, str]) -> Any:
    request = make_request(provider)
    try:
        with aioresponses() as mocked:
            mocked.post(transport.url(request), status=status, body=body, headers=headers)
            return await transport.chat(request, CallContext())
    finally:
        await transport.aclose()


async def _stream(transport: HTTPTransport, provider: str, body: bytes) -> list[ChatChunk]:
    request = make_request(provider, stream=True)
    chunks: list[ChatChunk] = []
    try:
        with aioresponses() as mocked:
            mocked.post(transport.url(request), status=200, body=body,
                        headers={"Content-Type": "text/event-stream"})
            async for chunk in transport.stream(request, CallContext()):
                chunks.append(chunk)
    finally:
        await transport.aclose()
    return chunks


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data(), status=st.sampled_from([200, 200, 200, 400, 401, 404, 429, 500, 502, 503,
                                               529, 418]),
       content_type=st.sampled_from(["application/json", "text/html", "text/plain"]))
def test_any_unary_body_gives_a_response_or_a_typed_error(provider: str, data: st.DataObject,
                                                          status: int, content_type: str) -> None:
    body = data.draw(body_bytes(SAMPLES[provider][0]))
    transport = make_transport(provider)
    try:
        response = _run(_chat(transport, provider, status, body, {"Content-Type": content_type}))
    except LLMError as err:
        if status >= 400:
            assert err.status == status
        return
    assert status < 400
    assert_valid_response(response)


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data(), newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
       noise=st.binary(max_size=30))
def test_any_stream_body_gives_chunks_or_a_typed_error(provider: str, data: st.DataObject,
                                                       newline: bytes, noise: bytes) -> None:
    events = data.draw(event_list(SAMPLES[provider][1]))
    body = sse_bytes(events, newline) + data.draw(st.sampled_from([b"", noise]))
    transport = make_transport(provider)
    try:
        chunks = _run(_stream(transport, provider, body))
    except LLMError as err:
        if isinstance(err, StreamError):
            assert isinstance(err.cause, LLMError)
        return
    for chunk in chunks:
        assert_valid_chunk(chunk)
    _assemble(chunks)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_over_the_cap_raises_response_too_large(provider: str) -> None:
    transport = make_transport(provider, max_response_bytes=4096)
    body = _dumps({**SAMPLES[provider][0], "padding": "z" * 20_000})
    with pytest.raises(ResponseTooLargeError):
        _run(_chat(transport, provider, 200, body, {"Content-Type": "application/json"}))
    transport = make_transport(provider, max_response_bytes=4096)
    with pytest.raises(ResponseTooLargeError):  # error bodies are capped too
        _run(_chat(transport, provider, 500, body, {"Content-Type": "application/json"}))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("position", ["first", "later"])
def test_an_event_over_the_cap_raises_response_too_large(provider: str, position: str) -> None:
    events = SAMPLES[provider][1]
    huge = (events[0][0], b"{\"pad\": \"" + b"z" * 20_000 + b"\"}")
    order = [huge, *events] if position == "first" else [*events[:4], huge, *events[4:]]
    body = sse_bytes([(name, p if isinstance(p, bytes) else
                       (p.encode() if isinstance(p, str) else _dumps(p))) for name, p in order])
    transport = make_transport(provider, max_event_bytes=4096)
    with pytest.raises(LLMError) as info:
        _run(_stream(transport, provider, body))
    err = info.value
    cause = err.cause if isinstance(err, StreamError) else err
    assert isinstance(cause, ResponseTooLargeError), repr(err)


def test_the_fuzz_profile_is_chosen_by_the_environment() -> None:
    expected = 3000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 60
    assert FUZZ.max_examples == expected
