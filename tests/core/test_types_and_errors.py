"""Request validation, stream assembly, timeouts, error mapping and secret redaction."""

from __future__ import annotations

import pickle

import pytest

from llm_async import (
    AuthenticationError,
    BadRequestError,
    ChatChunk,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    Timeout,
    Usage,
)
from llm_async.errors import (
    APIStatusError,
    ConflictError,
    InsufficientCreditsError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RequestTimeoutError,
    UnprocessableEntityError,
    error_from_response,
    parse_retry_after,
    redact,
    register_secret,
)
from llm_async.types import StreamAssembler, ToolCallDelta, build_request

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "", "messages": USER}, "model"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": USER, "max_tokens": -5}, "max_tokens"),
        ({"model": "m", "messages": USER, "temperature": 2.5}, "temperature"),
        ({"model": "m", "messages": USER, "temperature": -0.1}, "temperature"),
        ({"model": "m", "messages": USER, "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": USER, "response_format": {"type": "xml"}}, "response_format"),
        ({"model": "m", "messages": USER, "bogus": 1}, "bogus"),
    ],
)
def test_bad_requests_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build_request(**fields)
    assert info.value.field == field
    assert field in str(info.value)
    assert not info.value.retryable


def test_valid_request_normalises_stop_and_parts() -> None:
    req = build_request(model="m", stop="END", messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url",
                                      "image_url": {"url": "data:image/png;base64,AA=="}}]},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ], metadata={"user_id": "u1", "project_id": "p1"})
    assert req.stop == ["END"]
    assert req.messages[1].text == "look"
    assert req.user_id == "u1" and req.project_id == "p1"
    assert req.with_model("other").model == "other" and req.model == "m"


def test_stream_assembler_builds_text_tools_and_usage() -> None:
    asm = StreamAssembler()
    asm.add(ChatChunk(delta="Hel", id="x", model="m"))
    asm.add(ChatChunk(delta="lo"))
    asm.add(ChatChunk(tool_calls=[ToolCallDelta(index=0, id="c", name="f", arguments='{"a"')]))
    asm.add(ChatChunk(tool_calls=[ToolCallDelta(index=0, arguments=": 1}")]))
    asm.add(ChatChunk(finish_reason="tool_calls"))
    asm.add(ChatChunk(usage=Usage(input_tokens=3, output_tokens=4)))
    resp = asm.response(provider="p")
    assert resp.text == "Hello"
    assert resp.tool_calls[0].parsed_arguments() == {"a": 1}
    assert resp.finish_reason == "tool_calls"
    assert resp.usage.total_tokens == 7
    assert resp.id == "x" and resp.provider == "p"


def test_timeout_coerce_and_validation() -> None:
    t = Timeout.coerce(5.0, Timeout(connect=10, first_chunk=60, idle=30, total=600))
    assert t == Timeout(connect=5.0, first_chunk=5.0, idle=5.0, total=5.0)
    assert Timeout.coerce(None) == Timeout()
    with pytest.raises(InvalidRequestError):
        Timeout(total=0)
    with pytest.raises(InvalidRequestError):
        Timeout.coerce("soon")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable"),
    [
        (400, {"error": {"message": "bad"}}, BadRequestError, False),
        (401, {"error": {"message": "no key"}}, AuthenticationError, False),
        (402, {"error": {"code": 402, "message": "Insufficient credits"}},
         InsufficientCreditsError, False),
        (403, {"error": {"message": "nope"}}, PermissionDeniedError, False),
        (404, {"error": {"message": "no model", "code": "model_not_found"}}, NotFoundError, False),
        (408, None, RequestTimeoutError, True),
        (409, None, ConflictError, True),
        (422, {"detail": "x"}, UnprocessableEntityError, False),
        (429, {"error": {"message": "slow", "type": "requests"}}, RateLimitError, True),
        (500, {"error": {"message": "boom", "type": "server_error"}}, ServerError, True),
        (503, "Service Unavailable", OverloadedError, True),
        (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         OverloadedError, True),
        (418, {"error": {"message": "teapot"}}, APIStatusError, False),
        (599, None, ServerError, True),
    ],
)
def test_status_table(status: int, body: object, cls: type, retryable: bool) -> None:
    err = error_from_response(status, body, provider="openai", request_id="req_1")
    assert type(err) is cls
    assert err.status == status and err.retryable is retryable
    assert err.provider == "openai" and err.request_id == "req_1"


def test_x_should_retry_overrides() -> None:
    err = error_from_response(400, None, headers={"x-should-retry": "true"})
    assert err.retryable
    err = error_from_response(500, None, headers={"x-should-retry": "false"})
    assert not err.retryable


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "garbage"}) is None
    when = parse_retry_after({"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"})
    assert when is not None and when > 1e6
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None


def test_secrets_never_in_messages() -> None:
    register_secret("custom-secret-value-xyz")
    err = error_from_response(
        401, {"error": {"message": "Incorrect API key provided: sk-proj-abcdef123456 "
                                   "and custom-secret-value-xyz"}})
    assert "sk-proj-abcdef123456" not in str(err) and "sk-proj-abcdef123456" not in repr(err)
    assert "custom-secret-value-xyz" not in str(err)
    assert redact("Bearer abcdefghijklmnop") == "***"


def test_errors_pickle() -> None:
    err = error_from_response(429, {"error": {"message": "slow"}}, headers={"retry-after": "2"})
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is RateLimitError and again.retry_after == 2.0 and again.status == 429


def test_every_error_class_pickles_and_loads_from_its_public_path() -> None:
    import re

    from llm_async import errors

    classes = [getattr(errors, name) for name in errors.__all__
               if isinstance(getattr(errors, name), type)
               and issubclass(getattr(errors, name), errors.LLMError)]
    assert len(classes) >= 30
    for cls in classes:
        err = cls("boom", provider="p", status=500)
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is cls and str(again) == str(err)
        # A pickle that names every class and the rebuilder by the package path (as
        # llm_async.errors.X) loads to the same error.
        text = pickle.dumps(err, protocol=0)
        public = re.sub(rb"cllm_async\.errors\.[a-z_]+\n", b"cllm_async.errors\n", text)
        assert public != text and b"llm_async.errors." not in public
        loaded = pickle.loads(public)
        assert type(loaded) is cls and str(loaded) == str(err)


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "m", "messages": USER},
        {"model": "m", "messages": USER, "provider": "openai", "stream": True},
        {"model": "m", "messages": [{"role": "system", "content": "s"},
                                    {"role": "assistant", "content": "a"}, *USER],
         "temperature": 1, "top_p": 0.5, "max_tokens": 3, "seed": 9},
        {"model": "m", "messages": USER, "temperature": 0},
    ],
)
def test_fast_path_builds_what_validation_builds(fields: dict[str, object]) -> None:
    from llm_async.types import ChatRequest, _simple_request

    fast = _simple_request(dict(fields))
    assert fast is not None
    slow = ChatRequest.model_validate(fields)
    assert fast == slow and repr(fast) == repr(slow)
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert type(fast.temperature) is type(slow.temperature)
    again = _simple_request(dict(fields))
    assert again is not None  # every mutable default is fresh, never shared between requests
    for name in ("metadata", "extra_body", "extra_headers", "options"):
        assert getattr(again, name) is not getattr(fast, name)


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "m", "messages": USER, "temperature": True},
        {"model": "m", "messages": USER, "temperature": 2.5},
        {"model": "m", "messages": USER, "max_tokens": 0},
        {"model": "m", "messages": USER, "max_tokens": 1.5},
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
        {"model": "m", "messages": [{"role": "user", "content": None}]},
        {"model": "m", "messages": [{"role": "user", "content": "x", "name": "n"}]},
        {"model": "", "messages": USER},
        {"model": "m", "messages": []},
        {"model": "m", "messages": USER, "stop": "x"},
    ],
)
def test_fast_path_declines_what_it_does_not_check(fields: dict[str, object]) -> None:
    from llm_async.types import _simple_request

    assert _simple_request(dict(fields)) is None


def test_a_request_is_plain_data_with_no_call_state() -> None:
    req = build_request(model="m", messages=USER)
    assert not hasattr(req, "context") and "context" not in req.model_dump()
    assert req.model_copy() == req


def test_trusted_copy_is_model_copy_without_its_machinery() -> None:
    """The cache hands every hit out as a trusted copy: the same fields, the same fields-set and
    the same shallow sharing as ``model_copy(update=...)``, and the original untouched."""
    from decimal import Decimal

    from llm_async.types import ChatResponse, Usage
    from llm_async.types._base import trusted_copy

    original = ChatResponse(id="r1", model="m", content="hello", finish_reason="stop",
                            usage=Usage(input_tokens=3, output_tokens=5), extras={"x": 1})
    update = {"cache_hit": True, "cost": Decimal(0), "latency": 0.001,
              "requested_model": "m-alias"}
    copied = trusted_copy(original, update)
    expected = original.model_copy(update=update)
    assert copied == expected and copied.model_dump() == expected.model_dump()
    assert copied.model_fields_set == expected.model_fields_set
    assert copied.usage is original.usage  # shallow, as model_copy
    assert not original.cache_hit and original.cost is None
    assert original.model_fields_set != copied.model_fields_set


def test_request_metadata_extras_are_read_by_name() -> None:
    from llm_async.types.request import RequestMetadata

    meta = RequestMetadata(user_id="u", tenant_id="acme", conversation_id="c-1")
    assert meta.extra_value("tenant_id") == "acme"
    assert meta.extra_value("conversation_id") == "c-1"
    assert meta.extra_value("missing") is None and meta.extra_value("user_id") is None
    assert RequestMetadata().extra_value("tenant_id") is None
