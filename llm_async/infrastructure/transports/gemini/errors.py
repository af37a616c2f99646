"""Gemini's error body as a typed error.

An error body (``{"error": {"code", "message", "status", "details"}}``, also as a stream
event) is a typed error whose ``error_type`` is Gemini's ``status`` and ``code`` the reason of
its ``ErrorInfo`` detail; a ``RetryInfo`` detail's delay becomes ``retry_after``; an invalid key
(``API_KEY_INVALID``, sent with 400) is an :class:`~llm_async.errors.AuthenticationError`, a
per-day quota a :class:`~llm_async.errors.QuotaExceededError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ....errors import (
    APIStatusError,
    AuthenticationError,
    LLMError,
    QuotaExceededError,
    error_from_response,
)

__all__ = ["event_status", "google_error"]

#: Gemini's ``status`` → the error status that stands for it (in-stream errors carry no HTTP
#: status of their own when their ``code`` is missing).
_STATUS_CODES: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

_DURATION = re.compile(r"^(?P<seconds>\d+(?:\.\d+)?)s$")
_RPC = "type.googleapis.com/google.rpc."


def event_status(data: Mapping[str, Any]) -> int:
    """The HTTP status an error object sent with HTTP 200 stands for: its ``code``, else its
    ``status``."""
    error = data.get("error")
    code = error.get("code") if isinstance(error, Mapping) else None
    if not (isinstance(code, int) and 400 <= code < 600):
        gstatus = error.get("status") if isinstance(error, Mapping) else None
        code = _STATUS_CODES.get(str(gstatus), 500)
    return code


def google_error(status: int, error: Mapping[str, Any], body: Any, headers: Mapping[str, str],
                 *, provider: str, request_id: str | None) -> LLMError:
    """The typed error of Google's ``error`` object (``body`` is the whole answer)."""
    gstatus = error.get("status")
    reason: str | None = None
    retry_after: float | None = None
    daily = False
    for detail in error.get("details") or ():
        if not isinstance(detail, Mapping):
            continue
        kind = str(detail.get("@type") or "")
        if kind == _RPC + "ErrorInfo" and detail.get("reason"):
            reason = str(detail["reason"])
        elif kind == _RPC + "RetryInfo":
            match = _DURATION.match(str(detail.get("retryDelay") or ""))
            if match:
                retry_after = float(match["seconds"])
        elif kind == _RPC + "QuotaFailure":
            for violation in detail.get("violations") or ():
                quota = str(violation.get("quotaId") or "") \
                    if isinstance(violation, Mapping) else ""
                daily = daily or "PerDay" in quota
    normalized = {"error": {"message": error.get("message") or f"HTTP {status}",
                            "type": gstatus, "code": reason}}
    err = error_from_response(status, normalized, headers=headers, provider=provider,
                              request_id=request_id)
    cls: type[APIStatusError] | None = None
    if reason == "API_KEY_INVALID":
        cls = AuthenticationError
    elif status == 429 and daily:
        cls = QuotaExceededError
    if cls is not None:
        err = cls(err.message, provider=provider, status=status,
                  request_id=err.request_id, error_type=gstatus, code=reason)
    err.body = body
    if retry_after is not None and err.retry_after is None:
        err.retry_after = retry_after
    return err
