"""What the embedded provider server counts and remembers: request counters, the recorded
requests (credentials redacted) and the rate-limit window its headers report."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._wire import RateLimitSnapshot

__all__ = ["BilledRequest", "Counters", "RateLimitWindow", "RecordedRequest", "redact"]

_REDACTED_HEADERS = frozenset(
    {"authorization", "x-api-key", "proxy-authorization", "api-key", "x-goog-api-key"}
)


@dataclass(slots=True)
class BilledRequest:
    """One chat request the server billed, the way a provider bills: every request whose reply
    it generated, with the real usage, however its delivery ended (``delivered``:
    ``complete``, ``cut`` mid-stream, or ``client_gone`` when the client left first)."""

    number: int
    model: str
    path: str
    stream: bool
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    delivered: str = "complete"

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class Counters:
    """Chat request counters of one server (every dialect), and what it billed."""

    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    faults_applied: int = 0
    streams: int = 0
    billed: list[BilledRequest] = field(default_factory=list)

    def bill(self, entry: BilledRequest) -> BilledRequest:
        """Record that the server billed ``entry``."""
        self.billed.append(entry)
        return entry

    def arrived(self, path: str) -> int:
        """Count a chat request arriving on ``path``; returns its number (from 1)."""
        self.requests += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        return self.requests

    def finished(self) -> None:
        """Count a chat request as answered (or abandoned)."""
        self.in_flight -= 1

    def reset(self) -> None:
        """Zero every counter; requests in flight stay counted as in flight."""
        self.requests = 0
        self.by_path.clear()
        self.max_in_flight = self.in_flight
        self.faults_applied = 0
        self.streams = 0
        self.billed.clear()

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-able mapping."""
        return {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults_applied": self.faults_applied,
            "streams": self.streams,
            "billed": [entry.as_dict() for entry in self.billed],
        }


@dataclass(slots=True, frozen=True)
class RecordedRequest:
    """A chat request as received (credentials redacted)."""

    path: str
    #: Lower-cased header names; ``authorization`` / ``x-api-key`` values replaced by ``***``.
    headers: dict[str, str]
    #: Parsed JSON body, or ``None`` when the body was not JSON.
    body: Any
    #: ``time.time()`` at arrival.
    received_at: float



    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-able mapping."""
        return {
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "received_at": self.received_at,
        }


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased ``headers`` with credential values replaced by ``***``."""
    result: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        result[key] = "***" if key in _REDACTED_HEADERS else value
    return result


class RateLimitWindow:
    """A simple fixed one-minute window of requests and tokens."""

    def __init__(
        self,
        rpm_limit: int,
        tpm_limit: int,
        *,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.period = period
        self._clock = clock
        self._start = clock()
        self._requests = 0
        self._tokens = 0

    def reset(self) -> None:
        """Start a fresh window."""
        self._start = self._clock()
        self._requests = 0
        self._tokens = 0

    def record(self, tokens: int) -> RateLimitSnapshot:
        """Account one request using ``tokens`` tokens and return the window state."""
        now = self._clock()
        if now - self._start >= self.period:
            self._start = now
            self._requests = 0
            self._tokens = 0
        self._requests += 1
        self._tokens += tokens
        reset_in = self.period - (now - self._start)
        return RateLimitSnapshot(
            limit_requests=self.rpm_limit,
            remaining_requests=max(0, self.rpm_limit - self._requests),
            reset_requests=reset_in if self._requests else 0.0,
            limit_tokens=self.tpm_limit,
            remaining_tokens=max(0, self.tpm_limit - self._tokens),
            reset_tokens=reset_in if self._tokens else 0.0,
        )


