"""Bedrock Converse wire format: the exact JSON we send (aioresponses), SigV4 signatures checked
by an independent implementation of the algorithm against what a loopback server received, the
standard credential chain, AWS event-stream decoding and the exception mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aioresponses import aioresponses
from pydantic import BaseModel
from yarl import URL

from llm_async import AsyncLLMClient
from llm_async.context import CallContext
from llm_async.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextLengthExceededError,
    InvalidRequestError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamError,
)
from llm_async.infrastructure.transports.bedrock_transport import (
    BedrockTransport,
    EventStreamDecoder,
    bedrock_usage,
)
from llm_async.testing.dialects.bedrock import encode_message
from llm_async.types import build_request

REGION = "us-west-2"
ENDPOINT = f"https://bedrock-runtime.{REGION}.amazonaws.com"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
# Percent-encoded as sent (and signed): the model id's colon is %3A on the wire.
CHAT = URL(f"{ENDPOINT}/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
           encoded=True)
STREAM = URL(f"{ENDPOINT}/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
             encoded=True)
KEY_ID = "AKIDWIRETEST0000"
SECRET = "wire/test/secret/key/0123456789abcdef"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
                  "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": WEATHER_SCHEMA}}


def converse(content: list[dict[str, Any]], stop: str = "end_turn",
             usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage or {"inputTokens": 12, "outputTokens": 4, "totalTokens": 16},
            "metrics": {"latencyMs": 321}}


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return encode_message({":event-type": kind, ":content-type": "application/json",
                           ":message-type": "event"}, json.dumps(payload).encode())


def exception(kind: str, message: str) -> bytes:
    return encode_message({":exception-type": kind, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


STREAM_HEADERS = {"Content-Type": "application/vnd.amazon.eventstream",
                  "x-amzn-RequestId": "5d1a3c2e-req"}


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real AWS configuration, no instance metadata: only what a test sets."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[AsyncLLMClient]:
    transport = BedrockTransport(region=REGION, aws_access_key_id=KEY_ID,
                                 aws_secret_access_key=SECRET)
    async with AsyncLLMClient("bedrock", transport=transport, layers=[]) as c:
        yield c


def sent(m: aioresponses, url: URL = CHAT, index: int = -1) -> tuple[dict[str, Any], Any]:
    call = m.requests[("POST", url)][index]
    return json.loads(call.kwargs["data"]), call.kwargs["headers"]


# -- requests ---------------------------------------------------------------------------------


async def test_request_shape(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(CHAT, payload=converse([{"text": "Hello!"}]),
                headers={"x-amzn-RequestId": "b7e1-req"})
    reply = await client.chat(model=MODEL, max_tokens=256, temperature=0.5, top_p=0.9,
                              stop=["END"], messages=[
                                  {"role": "system", "content": "You are terse."},
                                  {"role": "user", "content": "Hi"},
                                  {"role": "user", "content": [
                                      {"type": "text", "text": "Look:"},
                                      {"type": "image_url",
                                       "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                              ], extra_body={"additionalModelRequestFields": {"top_k": 5}})
    body, headers = sent(mocked)
    assert body == {
        "system": [{"text": "You are terse."}],
        "messages": [{"role": "user", "content": [
            {"text": "Hi"}, {"text": "Look:"},
            {"image": {"format": "png", "source": {"bytes": "iVBOR"}}}]}],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.5, "topP": 0.9,
                            "stopSequences": ["END"]},
        "additionalModelRequestFields": {"top_k": 5},
    }
    assert headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in headers["Authorization"]
    assert "X-Amz-Date" in headers
    assert (reply.text, reply.finish_reason, reply.request_id, reply.id) == (
        "Hello!", "stop", "b7e1-req", "b7e1-req")
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 4)


async def test_tool_use_round_trip(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(CHAT, payload=converse([
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather",
                     "input": {"city": "Seattle"}}}], stop="tool_use"))
    question = {"role": "user", "content": "Weather in Seattle?"}
    reply = await client.chat(model=MODEL, tools=[WEATHER], tool_choice="required",
                              messages=[question])
    body, _ = sent(mocked)
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather",
                                "inputSchema": {"json": WEATHER_SCHEMA}}}],
        "toolChoice": {"any": {}}}
    assert reply.finish_reason == "tool_calls"
    [call] = reply.tool_calls
    assert (call.id, call.parsed_arguments()) == ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                  {"city": "Seattle"})

    mocked.post(CHAT, payload=converse([{"text": "Rainy."}]))
    await client.chat(model=MODEL, tools=[WEATHER], messages=[
        question,
        {"role": "assistant", "content": reply.content,
         "tool_calls": [c.model_dump() for c in reply.tool_calls]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "rain"}'},
        {"role": "tool", "tool_call_id": call.id, "content": "12 C"},
    ])
    body, _ = sent(mocked)
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather",
                         "input": {"city": "Seattle"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                            "content": [{"json": {"sky": "rain"}}]}},
            {"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                            "content": [{"text": "12 C"}]}}]},
    ]
    assert "toolChoice" not in body["toolConfig"]  # none asked for: Bedrock's default (auto)
    with pytest.raises(InvalidRequestError) as caught:
        await client.chat(model=MODEL, tools=[WEATHER], tool_choice="none",
                          messages=[question])
    assert caught.value.field == "tool_choice"


class City(BaseModel):
    name: str
    population: int


async def test_structured_output_is_a_forced_tool(mocked: aioresponses,
                                                  client: AsyncLLMClient) -> None:
    mocked.post(CHAT, payload=converse([{"toolUse": {
        "toolUseId": "tooluse_1", "name": "City", "input": {"name": "Oslo", "population": 7}}}],
        stop="tool_use"))
    reply = await client.chat(model=MODEL, response_format=City,
                              messages=[{"role": "user", "content": "A city"}])
    body, _ = sent(mocked)
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "City"}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": City.model_json_schema()}
    assert reply.parsed == City(name="Oslo", population=7)
    assert (reply.finish_reason, reply.tool_calls) == ("stop", [])


async def test_usage_with_cache_tokens(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(CHAT, payload=converse([{"text": "ok"}], usage={
        "inputTokens": 20, "outputTokens": 5, "totalTokens": 1525,
        "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 500}))
    reply = await client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    usage = reply.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
            usage.uncached_input_tokens, usage.total_tokens) == (1520, 1000, 500, 20, 1525)
    assert bedrock_usage(None) is None


async def test_bedrock_api_key_is_a_bearer_token(mocked: aioresponses,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSKQmVkcm9ja0FQSUtleQ==")
    mocked.post(CHAT, payload=converse([{"text": "ok"}]))
    async with BedrockTransport(region=REGION) as transport:
        assert not transport.signs_requests
        await transport.chat(build_request(model=MODEL,
                                           messages=[{"role": "user", "content": "x"}]),
                             CallContext())
    _, headers = sent(mocked)
    assert headers["Authorization"] == "Bearer ABSKQmVkcm9ja0FQSUtleQ=="
    assert "X-Amz-Date" not in headers


# -- SigV4 against an independent implementation ------------------------------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(method: str, raw_path: str, headers: dict[str, str], body: bytes,
                       secret: str) -> str:
    """SigV4 as AWS documents it: the canonical request (path segments encoded twice for
    services other than S3), the string to sign, the derived key, the HMAC."""
    authorization = headers["authorization"]
    fields = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
    signed = fields["SignedHeaders"].split(";")
    scope = fields["Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    canonical = "\n".join([method, quote(raw_path, safe="/~"), "", canonical_headers,
                           fields["SignedHeaders"], hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", headers["x-amz-date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service),
                "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback server that records the raw request line, headers and body it gets."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"raw_path": request.raw_path,
                     "headers": {k.lower(): v for k, v in request.headers.items()},
                     "body": await request.read()})
        return web.json_response(converse([{"text": "signed"}]))

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_sigv4_signature_verifies(recorder: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = recorder
    token = "FwoGZXIvYXdzEJr//////////wEaDTemporarySessionToken"
    async with BedrockTransport(base_url=base, region=REGION, aws_access_key_id=KEY_ID,
                                aws_secret_access_key=SECRET,
                                aws_session_token=token) as transport:
        reply = await transport.chat(build_request(
            model=MODEL, messages=[{"role": "user", "content": "sign me"}]), CallContext())
    assert reply.text == "signed"
    [request] = seen
    # The model id's colon travels percent-encoded, exactly as it was signed.
    assert request["raw_path"] == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    headers = request["headers"]
    assert headers["x-amz-security-token"] == token
    assert "x-amz-security-token" in headers["authorization"]
    assert "host" in headers["authorization"].split("SignedHeaders=")[1]
    signature = headers["authorization"].rsplit("Signature=", 1)[1]
    assert signature == expected_signature("POST", request["raw_path"], headers,
                                           request["body"], SECRET)
    assert signature != expected_signature("POST", request["raw_path"], headers,
                                           request["body"], SECRET + "x")


async def test_credentials_from_the_standard_chain(recorder: tuple[str, list[dict[str, Any]]],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    base, seen = recorder
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    async with BedrockTransport(base_url=base) as transport:
        await transport.chat(build_request(model=MODEL,
                                           messages=[{"role": "user", "content": "x"}]),
                             CallContext())
    headers = seen[-1]["headers"]
    assert "Credential=AKIDFROMENVIRONMENT/" in headers["authorization"]
    assert "/eu-central-1/bedrock/aws4_request" in headers["authorization"]
    assert headers["authorization"].rsplit("Signature=", 1)[1] == expected_signature(
        "POST", seen[-1]["raw_path"], headers, seen[-1]["body"], "environment-secret")

    # A named profile from the shared credentials file.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "credentials").write_text(
        "[team]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret\n")
    async with BedrockTransport(base_url=base, profile="team") as transport:
        await transport.chat(build_request(model=MODEL,
                                           messages=[{"role": "user", "content": "x"}]),
                             CallContext())
    assert "Credential=AKIDFROMPROFILE/" in seen[-1]["headers"]["authorization"]


async def test_missing_region_or_credentials(recorder: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = recorder
    with pytest.raises(ConfigurationError) as region:
        BedrockTransport()
    assert region.value.variable == "AWS_REGION"
    async with BedrockTransport(base_url=base, region=REGION) as transport:
        with pytest.raises(AuthenticationError):
            await transport.chat(build_request(model=MODEL,
                                               messages=[{"role": "user", "content": "x"}]),
                             CallContext())
    assert seen == [], "nothing is sent without credentials"
    with pytest.raises(TypeError):
        BedrockTransport(region=REGION, aws_access_key_id=KEY_ID)


# -- event streams ----------------------------------------------------------------------------


async def test_converse_stream(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(STREAM, body=b"".join([
        event("messageStart", {"role": "assistant", "p": "abc"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
            "toolUseId": "tooluse_9", "name": "get_weather"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1,
                                    "delta": {"toolUse": {"input": '{"city": '}}}),
        event("contentBlockDelta", {"contentBlockIndex": 1,
                                    "delta": {"toolUse": {"input": '"Oslo"}'}}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 30, "outputTokens": 9, "totalTokens": 139,
                                     "cacheReadInputTokens": 100},
                           "metrics": {"latencyMs": 400}}),
    ]), headers=STREAM_HEADERS)
    stream = client.stream(model=MODEL, tools=[WEATHER],
                           messages=[{"role": "user", "content": "Oslo?"}])
    async with stream as chunks:
        received = [c async for c in chunks]
    assert [c.delta for c in received if c.delta] == ["Hel", "lo"]
    fragments = [d for c in received for d in c.tool_calls]
    assert [(f.id, f.name, f.arguments) for f in fragments] == [
        ("tooluse_9", "get_weather", ""), (None, None, '{"city": '), (None, None, '"Oslo"}')]
    final = stream.final_response
    assert final is not None
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls[0].parsed_arguments() == {"city": "Oslo"}
    assert (final.usage.input_tokens, final.usage.cache_read_tokens) == (130, 100)
    assert received[-1].usage is not None


async def test_stream_exceptions(mocked: aioresponses, client: AsyncLLMClient) -> None:
    hi = [{"role": "user", "content": "hi"}]
    mocked.post(STREAM, body=exception("throttlingException", "Too many requests"),
                headers=STREAM_HEADERS)
    with pytest.raises(RateLimitError) as throttled:
        async with client.stream(model=MODEL, messages=hi) as s:
            async for _ in s:
                pass
    assert throttled.value.retryable is True
    assert throttled.value.error_type == "ThrottlingException"

    mocked.post(STREAM, body=event("contentBlockDelta", {
        "contentBlockIndex": 0, "delta": {"text": "Hi"}}) + exception(
        "modelStreamErrorException", "The model stream failed"), headers=STREAM_HEADERS)
    with pytest.raises(StreamError) as broken:
        async with client.stream(model=MODEL, messages=hi) as s:
            async for _ in s:
                pass
    assert isinstance(broken.value.cause, ServerError)
    assert broken.value.chunks_received == 1


async def test_a_corrupt_frame_is_a_protocol_error(mocked: aioresponses,
                                                   client: AsyncLLMClient) -> None:
    frame = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0,
                                                  "delta": {"text": "Hi"}}))
    frame[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    mocked.post(STREAM, body=bytes(frame), headers=STREAM_HEADERS)
    with pytest.raises(ProtocolError):
        async with client.stream(model=MODEL, messages=[{"role": "user", "content": "x"}]) as s:
            async for _ in s:
                pass


def test_decoder_takes_frames_split_anywhere() -> None:
    data = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}}) + \
        exception("internalServerException", "boom")
    decoder = EventStreamDecoder(1024)
    events = [e for i in range(len(data)) for e in decoder.feed(data[i:i + 1])]
    assert [e.event for e in events] == ["contentBlockDelta",
                                         "exception:internalServerException"]
    assert json.loads(events[1].data) == {"message": "boom"}


# -- errors -----------------------------------------------------------------------------------

ERRORS = [
    (429, "ThrottlingException", "Too many requests, please wait.", RateLimitError, True),
    (503, "ServiceUnavailableException", "Service unavailable.", OverloadedError, True),
    (408, "ModelTimeoutException", "Model timed out.", RequestTimeoutError, True),
    (500, "InternalServerException", "Internal error.", ServerError, True),
    (403, "AccessDeniedException", "You don't have access to the model.",
     PermissionDeniedError, False),
    (403, "ExpiredTokenException", "The security token included in the request is expired",
     AuthenticationError, False),
    (400, "ValidationException", "Input is too long for requested model.",
     ContextLengthExceededError, False),
    (400, "ServiceQuotaExceededException", "Quota exceeded.", QuotaExceededError, False),
]


@pytest.mark.parametrize(("status", "name", "message", "cls", "retryable"), ERRORS,
                         ids=[e[1] for e in ERRORS])
async def test_exceptions_map_to_the_error_tree(mocked: aioresponses, client: AsyncLLMClient,
                                                status: int, name: str, message: str,
                                                cls: type[Exception], retryable: bool) -> None:
    mocked.post(CHAT, status=status, payload={"message": message}, headers={
        "x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-RequestId": "err-req-1"})
    with pytest.raises(cls) as caught:
        await client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}])
    err = caught.value
    assert type(err) is cls
    assert (err.status, err.retryable, err.message, err.request_id) == (  # type: ignore[attr-defined]
        status, retryable, message, "err-req-1")
    assert SECRET not in str(err)


# -- reasoning and guardrails -------------------------------------------------------------------


async def test_reasoning_blocks_round_trip(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(CHAT, payload=converse([
        {"reasoningContent": {"reasoningText": {"text": "The user greets me.",
                                                "signature": "RXVnZW5pYQ=="}}},
        {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}},
        {"text": "Hello!"}]))
    question = {"role": "user", "content": "Hi"}
    reply = await client.chat(model=MODEL, messages=[question])
    assert (reply.text, reply.reasoning) == ("Hello!", "The user greets me.")
    assert [p.signature for p in reply.reasoning_parts] == ["RXVnZW5pYQ==", None]
    assert reply.reasoning_parts[1].redacted

    mocked.post(CHAT, payload=converse([{"text": "Fine."}]))
    await client.chat(model=MODEL, messages=[question, reply.message,
                                             {"role": "user", "content": "How are you?"}])
    body, _ = sent(mocked)
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "The user greets me.",
                                                "signature": "RXVnZW5pYQ=="}}},
        {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}},
        {"text": "Hello!"}]}


async def test_streamed_reasoning(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(STREAM, body=b"".join([
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0,
                                    "delta": {"reasoningContent": {"text": "Think"}}}),
        event("contentBlockDelta", {"contentBlockIndex": 0,
                                    "delta": {"reasoningContent": {"text": "ing."}}}),
        event("contentBlockDelta", {"contentBlockIndex": 0,
                                    "delta": {"reasoningContent": {"signature": "c2ln"}}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Done"}}),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14}}),
    ]), headers=STREAM_HEADERS)
    stream = client.stream(model=MODEL, messages=[{"role": "user", "content": "x"}])
    async with stream as chunks:
        received = [c async for c in chunks]
    assert [c.reasoning for c in received if c.reasoning] == ["Think", "ing."]
    final = stream.final_response
    assert final is not None
    assert (final.text, final.reasoning) == ("Done", "Thinking.")
    assert final.reasoning_parts[0].signature == "c2ln"


async def test_guardrail_stop_is_a_refusal(mocked: aioresponses, client: AsyncLLMClient) -> None:
    mocked.post(CHAT, payload={**converse([{"text": "Sorry, I can't help with that."}],
                                          stop="guardrail_intervened"),
                               "trace": {"guardrail": {"actionReason": "blocked"}}})
    reply = await client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert reply.finish_reason == "content_filter"
    assert reply.refusal is not None and reply.refusal.category == "guardrail_intervened"
    assert reply.extras["trace"] == {"guardrail": {"actionReason": "blocked"}}
