"""Provider answers to typed errors, in one place: the status table, the provider error
``type``/``code`` names, error bodies (OpenAI, Anthropic, OpenRouter shapes, or raw text) and
``Retry-After``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .provider import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentFilterError,
    ContextLengthExceededError,
    InsufficientCreditsError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    UnprocessableEntityError,
)

__all__ = [
    "ERROR_TYPE_STATUS",
    "STATUS_ERRORS",
    "error_from_body",
    "error_from_response",
    "parse_retry_after",
    "status_of_error_body",
]


#: Status code → error class. Anything else ≥ 500 is a ServerError, anything else ≥ 400 an
#: APIStatusError.
STATUS_ERRORS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: BadRequestError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: ServerError,
    502: ServerError,
    503: OverloadedError,
    504: ServerError,
    529: OverloadedError,
}

# Provider error ``type`` / ``code`` values that refine the status mapping.
_TYPE_ERRORS: Mapping[str, type[APIStatusError]] = {
    "context_length_exceeded": ContextLengthExceededError,
    "string_above_max_length": ContextLengthExceededError,
    "content_filter": ContentFilterError,
    "insufficient_quota": QuotaExceededError,
    "enforced_spend_limit_reached": QuotaExceededError,
    "billing_error": QuotaExceededError,
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitError,
    "rate_limit_exceeded": RateLimitError,
    "authentication_error": AuthenticationError,
    "invalid_api_key": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "model_not_found": NotFoundError,
    "api_error": ServerError,
    "server_error": ServerError,
    "timeout_error": ServerError,
}

#: Provider error ``type`` / ``code`` → the HTTP status it stands for: an error object sent with
#: HTTP 200 (in a body or an SSE event) is classified as if it had come with that status.
ERROR_TYPE_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "string_above_max_length": 400,
    "invalid_api_key": 401,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "request_too_large": 413,
    "insufficient_quota": 429,
    "enforced_spend_limit_reached": 429,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "tokens_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_CONTEXT_HINTS = ("context length", "context window", "maximum context", "too many tokens",
                  "prompt is too long")


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Read ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0 and ms == ms and ms != float("inf"):
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils
        import time

        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    if seconds != seconds or seconds == float("inf"):
        return None
    return max(0.0, seconds)


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI, Anthropic or OpenRouter error body."""
    if not isinstance(body, Mapping):
        return None, None, None
    err = body.get("error", body)
    if not isinstance(err, Mapping):
        return (str(err) if err else None), None, None
    message = err.get("message")
    etype = err.get("type")
    code = err.get("code")
    details = err.get("details")
    if isinstance(details, Mapping) and details.get("error_code"):
        code = details.get("error_code")
    return (
        str(message) if message is not None else None,
        str(etype) if etype is not None else None,
        str(code) if code is not None else None,
    )


def status_of_error_body(body: Any, default: int = 500) -> int:
    """The HTTP status an error object stands for when it arrived with HTTP 200.

    A numeric ``code`` in the 4xx/5xx range wins (OpenRouter), then the ``code`` and ``type``
    names of :data:`ERROR_TYPE_STATUS`; ``default`` when nothing says more.
    """
    err = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return default
    code = err.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return code
    if isinstance(code, str) and code.isdigit() and 400 <= int(code) < 600:
        return int(code)
    for key in (code, err.get("type")):
        if isinstance(key, str) and key in ERROR_TYPE_STATUS:
            return ERROR_TYPE_STATUS[key]
    return default


def error_from_body(
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """The typed error for an error object received with HTTP 200 (a unary body or a stream
    event): the same class, retryability and hints as the status it stands for."""
    return error_from_response(status_of_error_body(body), body, headers=headers,
                               provider=provider, request_id=request_id)


def error_from_response(
    status: int,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    request_id: str | None = None,
) -> APIStatusError:
    """Map a provider's error status and body (parsed JSON, or raw text) to a typed error."""
    message, etype, code = _error_fields(body)
    if message is None:
        if isinstance(body, str) and body.strip():
            text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
            message = f"HTTP {status}: {text[:200]}"
        else:
            message = f"HTTP {status}"
    cls: type[APIStatusError] = STATUS_ERRORS.get(
        status, ServerError if status >= 500 else APIStatusError
    )
    refined = _TYPE_ERRORS.get(code or "") or _TYPE_ERRORS.get(etype or "")
    if refined is not None and (issubclass(refined, cls) or cls is APIStatusError
                                or (status >= 500 and issubclass(refined, ServerError))):
        cls = refined
    if cls is BadRequestError and any(h in message.lower() for h in _CONTEXT_HINTS):
        cls = ContextLengthExceededError
    retryable: bool | None = None
    should = headers.get("x-should-retry") if headers else None
    if should in ("true", "false"):
        retryable = should == "true"
    return cls(
        message,
        provider=provider,
        status=status,
        request_id=request_id,
        body=body,
        error_type=etype,
        code=code,
        retry_after=parse_retry_after(headers),
        retryable=retryable,
    )
