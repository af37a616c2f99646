"""One error classification: every error class carries a ``kind`` that retry, the breaker,
fallback, the rate limiter and telemetry read."""

from __future__ import annotations

import asyncio
import pickle

import pytest

import llm_async.errors as errors
from llm_async.application.circuit_breaker import default_is_failure
from llm_async.application.fallback import default_should_fallback
from llm_async.application.retry_strategy import classify_error
from llm_async.errors import (
    CircuitBreakerOpenError,
    ErrorKind,
    FallbackExhaustedError,
    LLMError,
    OverloadedError,
    ServerError,
    StreamError,
    error_from_response,
    error_kind,
    error_type,
    root_cause,
)

CLASSES = [cls for name in errors.__all__
           if isinstance(cls := getattr(errors, name), type) and issubclass(cls, LLMError)]


def test_every_error_class_has_its_own_kind() -> None:
    kinds = {cls: cls.kind for cls in CLASSES if cls is not LLMError}
    assert LLMError.kind is ErrorKind.UNKNOWN
    assert all(kind is not ErrorKind.UNKNOWN for kind in kinds.values())
    # Every class says something its parent does not.
    for cls, kind in kinds.items():
        assert kind is not cls.__mro__[1].kind or cls.__mro__[1] is LLMError, cls
    assert ErrorKind("rate_limit") is errors.RateLimitError.kind


def test_telemetry_labels_come_from_the_kinds() -> None:
    from llm_async.observability.tracing import ERROR_TYPES

    for cls in CLASSES:
        assert error_type(cls("x")) == ERROR_TYPES[cls], cls
    assert error_type(asyncio.CancelledError()) == "cancelled"
    assert error_type(KeyError("k")) == "_OTHER"
    assert error_kind(TimeoutError()) is ErrorKind.TIMEOUT
    assert error_kind(ConnectionResetError()) is ErrorKind.CONNECTION
    assert error_kind(asyncio.CancelledError()) is ErrorKind.CANCELLED


@pytest.mark.parametrize(("status", "kind", "retry", "breaker", "fallback"), [
    (400, ErrorKind.BAD_REQUEST, ErrorKind.FATAL, False, False),
    (401, ErrorKind.AUTH, ErrorKind.FATAL, False, False),
    (402, ErrorKind.INSUFFICIENT_CREDITS, ErrorKind.FATAL, False, True),
    (404, ErrorKind.NOT_FOUND, ErrorKind.FATAL, False, True),
    (408, ErrorKind.REQUEST_TIMEOUT, ErrorKind.REQUEST_TIMEOUT, True, True),
    (409, ErrorKind.CONFLICT, ErrorKind.CONFLICT, False, True),
    (429, ErrorKind.RATE_LIMIT, ErrorKind.RATE_LIMIT, False, True),
    (500, ErrorKind.SERVER, ErrorKind.SERVER, True, True),
    (503, ErrorKind.OVERLOADED, ErrorKind.OVERLOADED, True, True),
])
def test_retry_breaker_and_fallback_read_the_kind(status: int, kind: ErrorKind,
                                                  retry: ErrorKind, breaker: bool,
                                                  fallback: bool) -> None:
    error = error_from_response(status, {"error": {"message": "m"}})
    assert error.kind is kind
    assert classify_error(error) is retry
    assert default_is_failure(error) is breaker
    assert default_should_fallback(error) is fallback


def test_quota_and_context_length_move_on_without_retrying() -> None:
    quota = error_from_response(429, {"error": {"code": "insufficient_quota", "message": "q"}})
    context = error_from_response(400, {"error": {"code": "context_length_exceeded",
                                                  "message": "too long"}})
    for error, kind in ((quota, ErrorKind.QUOTA), (context, ErrorKind.CONTEXT_LENGTH)):
        assert error.kind is kind and kind.moves_on and not kind.provider_fault
        assert classify_error(error) is ErrorKind.FATAL
        assert default_should_fallback(error) and default_is_failure(error) is False


def test_root_cause_sees_through_breakers_fallbacks_and_streams() -> None:
    server = ServerError("HTTP 500", status=500)
    rejected = CircuitBreakerOpenError("circuit 'a' is open", cause=server)
    assert rejected.__cause__ is server and "last failure: ServerError: HTTP 500" in str(rejected)
    assert root_cause(rejected) is server
    try:
        raise FallbackExhaustedError("every model failed", errors=[("a", rejected)]) \
            from rejected
    except FallbackExhaustedError as exhausted:
        assert root_cause(exhausted) is server
    overloaded = OverloadedError("busy")
    assert root_cause(StreamError("cut", cause=overloaded)) is overloaded
    assert root_cause(server) is server
    # A rejection survives pickling with the failure named in its message.
    again = pickle.loads(pickle.dumps(rejected))
    assert "last failure: ServerError" in str(again)
